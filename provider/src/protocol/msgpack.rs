//! The msgpack form of `DynamicValue` (Terraform's object wire format), in both directions.
//!
//! - Unknown values are msgpack extensions: any extension code reads as unknown; code 12 carries
//!   refinements (a map with integer keys) and is what we write when there are refinements, code 0
//!   otherwise.
//! - A value in a `dynamic` slot is `[JSON type bytes, value]`.
//! - Objects always carry every attribute of their type.
//!
//! The decoder takes untrusted bytes: it never panics, bounds nesting, and never allocates more
//! than the input could describe.

use std::collections::BTreeMap;

use rmp::Marker;

use super::diagnostics::AttributePath;
use super::types::Type;
use super::value::{Dynamic, Number, Refinements, Value};

/// Deepest value nesting accepted on decode.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} at {path}")]
pub struct CodecError {
    pub path: AttributePath,
    pub message: String,
}

fn err<T>(path: &AttributePath, message: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError {
        path: path.clone(),
        message: message.into(),
    })
}

const EXT_UNKNOWN: i8 = 0;
const EXT_REFINED_UNKNOWN: i8 = 12;
const REFINE_NULLNESS: u64 = 1;
const REFINE_STRING_PREFIX: u64 = 2;
const REFINE_NUMBER_MIN: u64 = 3;
const REFINE_NUMBER_MAX: u64 = 4;
const REFINE_LENGTH_MIN: u64 = 5;
const REFINE_LENGTH_MAX: u64 = 6;

// ---------------------------------------------------------------- encode

pub fn encode(value: &Value, ty: &Type) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    encode_into(&mut out, value, ty, &mut AttributePath::root())?;
    Ok(out)
}

fn encode_into(
    out: &mut Vec<u8>,
    value: &Value,
    ty: &Type,
    path: &mut AttributePath,
) -> Result<(), CodecError> {
    // `write_*` into a Vec cannot fail.
    match (value, ty) {
        (Value::Unknown(r), _) => encode_unknown(out, r),
        (Value::Null, _) => {
            rmp::encode::write_nil(out).ok();
            Ok(())
        }
        (Value::Dynamic(d), Type::Dynamic) => {
            if matches!(d.ty, Type::Dynamic) {
                return err(path, "a dynamic value must carry a concrete type");
            }
            rmp::encode::write_array_len(out, 2).ok();
            let json = d.ty.to_json_bytes();
            rmp::encode::write_bin(out, &json).ok();
            encode_into(out, &d.value, &d.ty, path)
        }
        (_, Type::Dynamic) => err(path, "a value in a dynamic slot must carry its type"),
        (Value::Bool(b), Type::Bool) => {
            rmp::encode::write_bool(out, *b).ok();
            Ok(())
        }
        (Value::String(s), Type::String) => {
            rmp::encode::write_str(out, s).ok();
            Ok(())
        }
        (Value::Number(n), Type::Number) => {
            // Every number travels as its decimal text, integers included (go-cty reads a string
            // in a number slot with `cty.ParseNumberVal`). Terraform then holds exactly the value
            // it decodes from the state file's JSON, to the bit: the same 512-bit `big.Float`.
            // A msgpack integer (or float64) decodes to a 64-bit (53-bit) `big.Float` instead:
            // equal by value, printed the same, but Terraform 1.11 compares the refreshed state
            // with the stored one by Go `reflect.DeepEqual`, so every refresh of a resource with a
            // number attribute counted as a state change and `plan -refresh-only
            // -detailed-exitcode` exited 2 on a clean resource (measured: artifortress_backup,
            // 5 of 5 runs; 0 with numbers as text). 1.234 as f64 would also not be 1.234.
            rmp::encode::write_str(out, &n.to_decimal_string()).ok();
            Ok(())
        }
        (Value::List(items), Type::List(elem)) | (Value::Set(items), Type::Set(elem)) => {
            write_array_len(out, items.len(), path)?;
            for (i, item) in items.iter().enumerate() {
                path.push_index(i as i64);
                encode_into(out, item, elem, path)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Tuple(items), Type::Tuple(elems)) => {
            if items.len() != elems.len() {
                return err(
                    path,
                    format!(
                        "tuple has {} elements, its type {}",
                        items.len(),
                        elems.len()
                    ),
                );
            }
            write_array_len(out, items.len(), path)?;
            for (i, (item, elem)) in items.iter().zip(elems).enumerate() {
                path.push_index(i as i64);
                encode_into(out, item, elem, path)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Map(entries), Type::Map(elem)) => {
            write_map_len(out, entries.len(), path)?;
            for (k, v) in entries {
                rmp::encode::write_str(out, k).ok();
                path.push_key(k);
                encode_into(out, v, elem, path)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Object(attrs), Type::Object { attributes, .. }) => {
            if let Some(extra) = attrs.keys().find(|k| !attributes.contains_key(*k)) {
                return err(
                    path,
                    format!("attribute {extra:?} is not in the object type"),
                );
            }
            write_map_len(out, attributes.len(), path)?;
            for (name, attr_ty) in attributes {
                rmp::encode::write_str(out, name).ok();
                path.push_attr(name);
                let v = attrs.get(name).unwrap_or(&Value::Null);
                encode_into(out, v, attr_ty, path)?;
                path.pop();
            }
            Ok(())
        }
        (v, t) => err(
            path,
            format!("value {} does not conform to type {t}", kind(v)),
        ),
    }
}

fn write_array_len(out: &mut Vec<u8>, len: usize, path: &AttributePath) -> Result<(), CodecError> {
    let len = u32::try_from(len).or_else(|_| err(path, "collection too large"))?;
    rmp::encode::write_array_len(out, len).ok();
    Ok(())
}

fn write_map_len(out: &mut Vec<u8>, len: usize, path: &AttributePath) -> Result<(), CodecError> {
    let len = u32::try_from(len).or_else(|_| err(path, "map too large"))?;
    rmp::encode::write_map_len(out, len).ok();
    Ok(())
}

fn encode_unknown(out: &mut Vec<u8>, r: &Refinements) -> Result<(), CodecError> {
    if r.is_empty() {
        // fixext1, code 0, one zero byte: what tftypes and go-cty write.
        rmp::encode::write_ext_meta(out, 1, EXT_UNKNOWN).ok();
        out.push(0);
        return Ok(());
    }
    let mut payload = Vec::new();
    let mut entries = 0u32;
    let mut body = Vec::new();
    if let Some(nullable) = r.nullable {
        entries += 1;
        rmp::encode::write_uint(&mut body, REFINE_NULLNESS).ok();
        rmp::encode::write_bool(&mut body, nullable).ok();
    }
    if let Some(prefix) = &r.string_prefix {
        entries += 1;
        rmp::encode::write_uint(&mut body, REFINE_STRING_PREFIX).ok();
        rmp::encode::write_str(&mut body, prefix).ok();
    }
    for (key, bound) in [
        (REFINE_NUMBER_MIN, &r.number_lower),
        (REFINE_NUMBER_MAX, &r.number_upper),
    ] {
        if let Some((n, inclusive)) = bound {
            entries += 1;
            rmp::encode::write_uint(&mut body, key).ok();
            rmp::encode::write_array_len(&mut body, 2).ok();
            // Bounds never reach the state: integers stay msgpack integers here, as go-cty
            // writes them.
            match n {
                Number::Int(i) => {
                    rmp::encode::write_sint(&mut body, *i).ok();
                }
                _ => encode_into(
                    &mut body,
                    &Value::Number(n.clone()),
                    &Type::Number,
                    &mut AttributePath::root(),
                )?,
            }
            rmp::encode::write_bool(&mut body, *inclusive).ok();
        }
    }
    for (key, bound) in [
        (REFINE_LENGTH_MIN, r.length_lower),
        (REFINE_LENGTH_MAX, r.length_upper),
    ] {
        if let Some(n) = bound {
            entries += 1;
            rmp::encode::write_uint(&mut body, key).ok();
            rmp::encode::write_uint(&mut body, n).ok();
        }
    }
    rmp::encode::write_map_len(&mut payload, entries).ok();
    payload.extend_from_slice(&body);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    rmp::encode::write_ext_meta(out, len, EXT_REFINED_UNKNOWN).ok();
    out.extend_from_slice(&payload);
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Unknown(_) => "unknown",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::List(_) => "list",
        Value::Set(_) => "set",
        Value::Map(_) => "map",
        Value::Tuple(_) => "tuple",
        Value::Object(_) => "object",
        Value::Dynamic(_) => "dynamic",
    }
}

// ---------------------------------------------------------------- decode

pub fn decode(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let mut rd = Reader { buf: bytes };
    let mut path = AttributePath::root();
    let value = decode_value(&mut rd, ty, &mut path, 0)?;
    if !rd.buf.is_empty() {
        return err(
            &path,
            format!("{} bytes left after the value", rd.buf.len()),
        );
    }
    Ok(value)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, path: &AttributePath) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return err(path, "unexpected end of msgpack data");
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self, path: &AttributePath) -> Result<u8, CodecError> {
        Ok(self.take(1, path)?[0])
    }
    fn be<const N: usize>(&mut self, path: &AttributePath) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, path)?);
        Ok(a)
    }
    fn marker(&mut self, path: &AttributePath) -> Result<Marker, CodecError> {
        Ok(Marker::from_u8(self.u8(path)?))
    }
    fn peek_marker(&self) -> Option<Marker> {
        self.buf.first().map(|b| Marker::from_u8(*b))
    }
    /// Length fields for str/bin/ext/array/map following a marker.
    fn len8(&mut self, p: &AttributePath) -> Result<usize, CodecError> {
        Ok(self.u8(p)? as usize)
    }
    fn len16(&mut self, p: &AttributePath) -> Result<usize, CodecError> {
        Ok(u16::from_be_bytes(self.be(p)?) as usize)
    }
    fn len32(&mut self, p: &AttributePath) -> Result<usize, CodecError> {
        Ok(u32::from_be_bytes(self.be(p)?) as usize)
    }
}

/// A msgpack scalar or container header, read generically.
enum Item<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(usize),
    Map(usize),
    Ext(i8, &'a [u8]),
}

fn read_item<'a>(rd: &mut Reader<'a>, path: &AttributePath) -> Result<Item<'a>, CodecError> {
    use Marker::*;
    let m = rd.marker(path)?;
    Ok(match m {
        Null => Item::Nil,
        True => Item::Bool(true),
        False => Item::Bool(false),
        FixPos(n) => Item::Int(n as i64),
        FixNeg(n) => Item::Int(n as i64),
        U8 => Item::Int(rd.u8(path)? as i64),
        U16 => Item::Int(u16::from_be_bytes(rd.be(path)?) as i64),
        U32 => Item::Int(u32::from_be_bytes(rd.be(path)?) as i64),
        U64 => {
            let v = u64::from_be_bytes(rd.be(path)?);
            match i64::try_from(v) {
                Ok(i) => Item::Int(i),
                Err(_) => Item::UInt(v),
            }
        }
        I8 => Item::Int(rd.u8(path)? as i8 as i64),
        I16 => Item::Int(i16::from_be_bytes(rd.be(path)?) as i64),
        I32 => Item::Int(i32::from_be_bytes(rd.be(path)?) as i64),
        I64 => Item::Int(i64::from_be_bytes(rd.be(path)?)),
        F32 => Item::Float(f32::from_be_bytes(rd.be(path)?) as f64),
        F64 => Item::Float(f64::from_be_bytes(rd.be(path)?)),
        FixStr(n) => Item::Str(rd.take(n as usize, path)?),
        Str8 => {
            let n = rd.len8(path)?;
            Item::Str(rd.take(n, path)?)
        }
        Str16 => {
            let n = rd.len16(path)?;
            Item::Str(rd.take(n, path)?)
        }
        Str32 => {
            let n = rd.len32(path)?;
            Item::Str(rd.take(n, path)?)
        }
        Bin8 => {
            let n = rd.len8(path)?;
            Item::Bin(rd.take(n, path)?)
        }
        Bin16 => {
            let n = rd.len16(path)?;
            Item::Bin(rd.take(n, path)?)
        }
        Bin32 => {
            let n = rd.len32(path)?;
            Item::Bin(rd.take(n, path)?)
        }
        FixArray(n) => Item::Array(n as usize),
        Array16 => Item::Array(rd.len16(path)?),
        Array32 => Item::Array(rd.len32(path)?),
        FixMap(n) => Item::Map(n as usize),
        Map16 => Item::Map(rd.len16(path)?),
        Map32 => Item::Map(rd.len32(path)?),
        FixExt1 | FixExt2 | FixExt4 | FixExt8 | FixExt16 => {
            let n = match m {
                FixExt1 => 1,
                FixExt2 => 2,
                FixExt4 => 4,
                FixExt8 => 8,
                _ => 16,
            };
            let code = rd.u8(path)? as i8;
            Item::Ext(code, rd.take(n, path)?)
        }
        Ext8 | Ext16 | Ext32 => {
            let n = match m {
                Ext8 => rd.len8(path)?,
                Ext16 => rd.len16(path)?,
                _ => rd.len32(path)?,
            };
            let code = rd.u8(path)? as i8;
            Item::Ext(code, rd.take(n, path)?)
        }
        Reserved => return err(path, "reserved msgpack marker 0xc1"),
    })
}

/// Capacity for a collection of `len` claimed elements: never more than the bytes left could hold.
fn capacity(len: usize, rd: &Reader<'_>) -> usize {
    len.min(rd.buf.len())
}

fn decode_value(
    rd: &mut Reader<'_>,
    ty: &Type,
    path: &mut AttributePath,
    depth: usize,
) -> Result<Value, CodecError> {
    if depth > MAX_DEPTH {
        return err(path, "value nests too deeply");
    }
    // Unknown and null are type-independent.
    match rd.peek_marker() {
        Some(Marker::Null) => {
            rd.marker(path)?;
            return Ok(Value::Null);
        }
        Some(
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32,
        ) => {
            let Item::Ext(code, payload) = read_item(rd, path)? else {
                unreachable!("an ext marker reads as an ext item")
            };
            let refinements = if code == EXT_REFINED_UNKNOWN {
                decode_refinements(payload, path)?
            } else {
                Refinements::default()
            };
            return Ok(Value::Unknown(refinements));
        }
        None => return err(path, "unexpected end of msgpack data"),
        _ => {}
    }
    match ty {
        Type::Dynamic => {
            match read_item(rd, path)? {
                Item::Array(2) => {}
                _ => return err(path, "a dynamic value is a [type, value] pair"),
            }
            let type_json = match read_item(rd, path)? {
                Item::Bin(b) | Item::Str(b) => b,
                _ => return err(path, "a dynamic value's type is JSON bytes"),
            };
            let inner_ty =
                Type::from_json_bytes(type_json).or_else(|e| err(path, e.to_string()))?;
            if matches!(inner_ty, Type::Dynamic) {
                return err(path, "a dynamic value's type must be concrete");
            }
            let value = decode_value(rd, &inner_ty, path, depth + 1)?;
            Ok(Value::Dynamic(Box::new(Dynamic {
                ty: inner_ty,
                value,
            })))
        }
        Type::Bool => match read_item(rd, path)? {
            Item::Bool(b) => Ok(Value::Bool(b)),
            _ => err(path, "expected a bool"),
        },
        Type::String => match read_item(rd, path)? {
            Item::Str(b) => Ok(Value::String(utf8(b, path)?)),
            _ => err(path, "expected a string"),
        },
        Type::Number => match read_item(rd, path)? {
            Item::Int(i) => Ok(Value::Number(Number::Int(i))),
            Item::UInt(u) => Ok(Value::Number(Number::Big(u.to_string()))),
            Item::Float(f) if f.is_finite() => Ok(Value::Number(Number::from_f64(f))),
            Item::Float(_) => err(path, "numbers must be finite"),
            Item::Str(b) => {
                let s = utf8(b, path)?;
                Number::parse(&s)
                    .map(Value::Number)
                    .map_or_else(|| err(path, format!("{s:?} is not a number")), Ok)
            }
            _ => err(path, "expected a number"),
        },
        Type::List(elem) | Type::Set(elem) => {
            let Item::Array(len) = read_item(rd, path)? else {
                return err(path, "expected an array");
            };
            let mut items = Vec::with_capacity(capacity(len, rd));
            for i in 0..len {
                path.push_index(i as i64);
                items.push(decode_value(rd, elem, path, depth + 1)?);
                path.pop();
            }
            Ok(if matches!(ty, Type::Set(_)) {
                Value::Set(items)
            } else {
                Value::List(items)
            })
        }
        Type::Tuple(elems) => {
            let Item::Array(len) = read_item(rd, path)? else {
                return err(path, "expected an array");
            };
            if len != elems.len() {
                return err(
                    path,
                    format!("tuple needs {} elements, got {len}", elems.len()),
                );
            }
            let mut items = Vec::with_capacity(len);
            for (i, elem) in elems.iter().enumerate() {
                path.push_index(i as i64);
                items.push(decode_value(rd, elem, path, depth + 1)?);
                path.pop();
            }
            Ok(Value::Tuple(items))
        }
        Type::Map(elem) => {
            let Item::Map(len) = read_item(rd, path)? else {
                return err(path, "expected a map");
            };
            let mut entries = BTreeMap::new();
            for _ in 0..len {
                let key = match read_item(rd, path)? {
                    Item::Str(b) => utf8(b, path)?,
                    _ => return err(path, "map keys are strings"),
                };
                path.push_key(&key);
                let v = decode_value(rd, elem, path, depth + 1)?;
                path.pop();
                if entries.insert(key.clone(), v).is_some() {
                    return err(path, format!("duplicate map key {key:?}"));
                }
            }
            Ok(Value::Map(entries))
        }
        Type::Object { attributes, .. } => {
            let Item::Map(len) = read_item(rd, path)? else {
                return err(path, "expected an object");
            };
            let mut attrs = BTreeMap::new();
            for _ in 0..len {
                let name = match read_item(rd, path)? {
                    Item::Str(b) => utf8(b, path)?,
                    _ => return err(path, "attribute names are strings"),
                };
                let Some(attr_ty) = attributes.get(&name) else {
                    return err(path, format!("unsupported attribute {name:?}"));
                };
                path.push_attr(&name);
                let v = decode_value(rd, attr_ty, path, depth + 1)?;
                path.pop();
                if attrs.insert(name.clone(), v).is_some() {
                    return err(path, format!("duplicate attribute {name:?}"));
                }
            }
            // Every attribute is present in what Terraform sends; fill any gap with null so the
            // rest of the provider can rely on it.
            for name in attributes.keys() {
                attrs.entry(name.clone()).or_insert(Value::Null);
            }
            Ok(Value::Object(attrs))
        }
    }
}

fn utf8(b: &[u8], path: &AttributePath) -> Result<String, CodecError> {
    String::from_utf8(b.to_vec()).or_else(|_| err(path, "string is not UTF-8"))
}

fn decode_refinements(payload: &[u8], path: &AttributePath) -> Result<Refinements, CodecError> {
    let mut rd = Reader { buf: payload };
    let mut r = Refinements::default();
    let Item::Map(len) = read_item(&mut rd, path)? else {
        return err(path, "unknown-value refinements must be a map");
    };
    for _ in 0..len {
        let key = match read_item(&mut rd, path)? {
            Item::Int(k) if k >= 0 => k as u64,
            _ => return err(path, "refinement keys are non-negative integers"),
        };
        match key {
            REFINE_NULLNESS => match read_item(&mut rd, path)? {
                Item::Bool(b) => r.nullable = Some(b),
                _ => return err(path, "nullness refinement must be a bool"),
            },
            REFINE_STRING_PREFIX => match read_item(&mut rd, path)? {
                Item::Str(b) => r.string_prefix = Some(utf8(b, path)?),
                _ => return err(path, "prefix refinement must be a string"),
            },
            REFINE_NUMBER_MIN | REFINE_NUMBER_MAX => {
                let Item::Array(2) = read_item(&mut rd, path)? else {
                    return err(path, "number bound refinement is [number, inclusive]");
                };
                let Value::Number(n) =
                    decode_value(&mut rd, &Type::Number, &mut path.clone(), MAX_DEPTH)?
                else {
                    return err(path, "number bound must be a known number");
                };
                let Item::Bool(inclusive) = read_item(&mut rd, path)? else {
                    return err(path, "number bound inclusivity must be a bool");
                };
                if key == REFINE_NUMBER_MIN {
                    r.number_lower = Some((n, inclusive));
                } else {
                    r.number_upper = Some((n, inclusive));
                }
            }
            REFINE_LENGTH_MIN | REFINE_LENGTH_MAX => {
                let n = match read_item(&mut rd, path)? {
                    Item::Int(n) if n >= 0 => n as u64,
                    Item::UInt(n) => n,
                    _ => return err(path, "length refinement must be a non-negative integer"),
                };
                if key == REFINE_LENGTH_MIN {
                    r.length_lower = Some(n);
                } else {
                    r.length_upper = Some(n);
                }
            }
            // Refinement kinds added after this provider was written are ignored.
            _ => skip_item(&mut rd, path, 0)?,
        }
    }
    Ok(r)
}

fn skip_item(rd: &mut Reader<'_>, path: &AttributePath, depth: usize) -> Result<(), CodecError> {
    if depth > MAX_DEPTH {
        return err(path, "value nests too deeply");
    }
    match read_item(rd, path)? {
        Item::Array(n) => (0..n).try_for_each(|_| skip_item(rd, path, depth + 1)),
        Item::Map(n) => (0..n * 2).try_for_each(|_| skip_item(rd, path, depth + 1)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_travel_as_decimal_text_and_come_back_equal() {
        let v = Value::Number(Number::Float(1.234));
        let bytes = encode(&v, &Type::Number).unwrap();
        let mut expected = Vec::new();
        rmp::encode::write_str(&mut expected, "1.234").unwrap();
        assert_eq!(bytes, expected);
        assert_eq!(decode(&bytes, &Type::Number).unwrap(), v);
    }

    #[test]
    fn integers_travel_as_decimal_text_and_come_back_equal() {
        // A msgpack integer would reach Terraform as a big.Float of another precision than the
        // one it reads from the state's JSON (see encode_into).
        for (v, text) in [
            (7, "7"),
            (-7, "-7"),
            (57797, "57797"),
            (i64::MIN, "-9223372036854775808"),
        ] {
            let bytes = encode(&Value::int(v), &Type::Number).unwrap();
            let mut expected = Vec::new();
            rmp::encode::write_str(&mut expected, text).unwrap();
            assert_eq!(bytes, expected, "{v}");
            assert_eq!(decode(&bytes, &Type::Number).unwrap(), Value::int(v));
        }
    }

    #[test]
    fn integer_refinement_bounds_stay_msgpack_integers() {
        let r = Refinements {
            number_lower: Some((Number::Int(1), true)),
            ..Default::default()
        };
        let bytes = encode(&Value::Unknown(r.clone()), &Type::Number).unwrap();
        // ext8, length, code 12, {3: [1, true]}
        assert_eq!(bytes, [0xc7, 5, 12, 0x81, 0x03, 0x92, 0x01, 0xc3]);
        match decode(&bytes, &Type::Number).unwrap() {
            Value::Unknown(back) => assert_eq!(back, r),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_is_written_like_tftypes() {
        assert_eq!(
            encode(&Value::unknown(), &Type::String).unwrap(),
            [0xd4, 0, 0]
        );
    }

    #[test]
    fn any_extension_code_reads_as_unknown() {
        for bytes in [
            &[0xd4, 0, 0][..],
            &[0xd4, 5, 1],
            &[0xc7, 0, 0],
            &[0xd5, 0, 1, 2],
        ] {
            assert!(
                decode(bytes, &Type::Number).unwrap().is_unknown(),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn refined_unknown_round_trips() {
        let r = Refinements {
            nullable: Some(false),
            string_prefix: Some("https://".into()),
            ..Default::default()
        };
        let bytes = encode(&Value::Unknown(r.clone()), &Type::String).unwrap();
        assert_eq!(bytes[0], 0xc7, "ext8");
        assert_eq!(bytes[2] as i8, EXT_REFINED_UNKNOWN);
        match decode(&bytes, &Type::String).unwrap() {
            Value::Unknown(back) => assert_eq!(back, r),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refinements_decode_go_cty_bytes() {
        // go-cty: cty.UnknownVal(cty.Number).Refine().NotNull().NumberRangeInclusive(1, 10)
        // ext 12 payload: {1: false, 3: [1, true], 4: [10, true]}
        let payload = [
            0x83, 0x01, 0xc2, 0x03, 0x92, 0x01, 0xc3, 0x04, 0x92, 0x0a, 0xc3,
        ];
        let mut bytes = vec![0xc7, payload.len() as u8, 12];
        bytes.extend_from_slice(&payload);
        let Value::Unknown(r) = decode(&bytes, &Type::Number).unwrap() else {
            panic!("not unknown")
        };
        assert_eq!(r.nullable, Some(false));
        assert_eq!(r.number_lower, Some((Number::Int(1), true)));
        assert_eq!(r.number_upper, Some((Number::Int(10), true)));
    }

    #[test]
    fn objects_are_written_with_every_attribute() {
        let ty = Type::object([("a", Type::String), ("b", Type::Bool)]);
        let v = Value::object([("a", Value::from("x"))]);
        let bytes = encode(&v, &ty).unwrap();
        let back = decode(&bytes, &ty).unwrap();
        assert_eq!(
            back,
            Value::object([("a", Value::from("x")), ("b", Value::Null)])
        );
        assert_eq!(bytes[0], 0x82, "a two-entry map");
    }

    #[test]
    fn dynamic_values_carry_their_type() {
        let inner = Type::list(Type::String);
        let v = Value::Dynamic(Box::new(Dynamic {
            ty: inner,
            value: Value::List(vec![Value::from("a")]),
        }));
        let bytes = encode(&v, &Type::Dynamic).unwrap();
        assert_eq!(decode(&bytes, &Type::Dynamic).unwrap(), v);
        // A bare value in a dynamic slot has no type: refused.
        assert!(encode(&Value::from("a"), &Type::Dynamic).is_err());
    }

    #[test]
    fn decode_errors_name_the_path() {
        let ty = Type::object([("tags", Type::map(Type::Number))]);
        let mut bytes = Vec::new();
        rmp::encode::write_map_len(&mut bytes, 1).unwrap();
        rmp::encode::write_str(&mut bytes, "tags").unwrap();
        rmp::encode::write_map_len(&mut bytes, 1).unwrap();
        rmp::encode::write_str(&mut bytes, "env").unwrap();
        rmp::encode::write_bool(&mut bytes, true).unwrap();
        let e = decode(&bytes, &ty).unwrap_err();
        assert_eq!(e.path.to_string(), "tags[\"env\"]");
    }

    #[test]
    fn hostile_lengths_do_not_allocate() {
        // array32 claiming 4 billion elements, then nothing.
        let bytes = [0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(decode(&bytes, &Type::list(Type::Bool)).is_err());
        assert!(
            decode(&[0x91, 0x01, 0x02], &Type::list(Type::Number)).is_err(),
            "trailing"
        );
    }

    #[test]
    fn big_and_fractional_numbers() {
        for text in ["0.5", "123456789012345678901234567890", "-7"] {
            let v = Value::Number(Number::parse(text).unwrap());
            let back = decode(&encode(&v, &Type::Number).unwrap(), &Type::Number).unwrap();
            assert_eq!(back, v, "{text}");
        }
        // u64 beyond i64 as sent by some encoders.
        let mut bytes = vec![0xcf];
        bytes.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            decode(&bytes, &Type::Number).unwrap(),
            Value::Number(Number::parse("18446744073709551615").unwrap())
        );
    }
}
