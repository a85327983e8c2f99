//! The JSON form of values, as Terraform stores state (`RawState.json` in `UpgradeResourceState`).
//!
//! Attributes missing from stored state (added in a later schema) decode as null, so old state
//! always fits the current object type. Unknown values cannot appear in JSON.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::diagnostics::AttributePath;
use super::msgpack::{CodecError, MAX_DEPTH};
use super::types::Type;
use super::value::{Dynamic, Number, Value};

pub fn decode(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let json: Json = serde_json::from_slice(bytes).map_err(|e| CodecError {
        path: AttributePath::root(),
        message: format!("state is not valid JSON: {e}"),
    })?;
    decode_json(&json, ty, &mut AttributePath::root(), 0)
}

/// Encodes a wholly known value as JSON (used for state fixtures and diagnostics).
pub fn encode(value: &Value) -> Json {
    match value {
        Value::Null | Value::Unknown(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => match n {
            Number::Int(i) => Json::from(*i),
            // serde_json writes a float's shortest text with its own algorithm, which for some
            // 17-digit floats picks the other of two equally short texts than `Number`'s own
            // (`-1146922762554380.2` for `-1146922762554380.3`): a different decimal to a reader
            // with decimal precision such as Terraform. Such a float goes as its own decimal
            // text in a string, as a `Big` does (found by `codec_props`).
            Number::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(j) if Number::parse(&j.to_string()).as_ref() == Some(n) => Json::Number(j),
                Some(_) => Json::String(n.to_decimal_string()),
                None => Json::Null,
            },
            Number::Big(s) => Json::String(s.clone()),
        },
        Value::String(s) => Json::String(s.clone()),
        Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
            Json::Array(v.iter().map(encode).collect())
        }
        Value::Map(m) | Value::Object(m) => {
            Json::Object(m.iter().map(|(k, v)| (k.clone(), encode(v))).collect())
        }
        Value::Dynamic(d) => {
            serde_json::json!({ "value": encode(&d.value), "type": d.ty.to_json() })
        }
    }
}

fn fail<T>(path: &AttributePath, message: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError {
        path: path.clone(),
        message: message.into(),
    })
}

fn decode_json(
    json: &Json,
    ty: &Type,
    path: &mut AttributePath,
    depth: usize,
) -> Result<Value, CodecError> {
    if depth > MAX_DEPTH {
        return fail(path, "value nests too deeply");
    }
    if json.is_null() {
        return Ok(Value::Null);
    }
    match ty {
        Type::Bool => match json {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            // cty's JSON decoder accepts the strings Terraform itself may have written.
            Json::String(s) if s == "true" => Ok(Value::Bool(true)),
            Json::String(s) if s == "false" => Ok(Value::Bool(false)),
            _ => fail(path, "expected a bool"),
        },
        Type::String => match json {
            Json::String(s) => Ok(Value::String(s.clone())),
            Json::Number(n) => Ok(Value::String(n.to_string())),
            Json::Bool(b) => Ok(Value::String(b.to_string())),
            _ => fail(path, "expected a string"),
        },
        Type::Number => {
            let text = match json {
                Json::Number(n) => n.to_string(),
                Json::String(s) => s.clone(),
                _ => return fail(path, "expected a number"),
            };
            Number::parse(&text)
                .map(Value::Number)
                .map_or_else(|| fail(path, format!("{text:?} is not a number")), Ok)
        }
        Type::Dynamic => {
            let Some(obj) = json.as_object() else {
                return fail(path, "a dynamic value is {\"value\":…,\"type\":…}");
            };
            let (Some(t), Some(v)) = (obj.get("type"), obj.get("value")) else {
                return fail(path, "a dynamic value is {\"value\":…,\"type\":…}");
            };
            let inner = Type::from_json(t).or_else(|e| fail(path, e.to_string()))?;
            let value = decode_json(v, &inner, path, depth + 1)?;
            Ok(Value::Dynamic(Box::new(Dynamic { ty: inner, value })))
        }
        Type::List(elem) | Type::Set(elem) => {
            let Some(items) = json.as_array() else {
                return fail(path, "expected an array");
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push_index(i as i64);
                out.push(decode_json(item, elem, path, depth + 1)?);
                path.pop();
            }
            Ok(if matches!(ty, Type::Set(_)) {
                Value::Set(out)
            } else {
                Value::List(out)
            })
        }
        Type::Tuple(elems) => {
            let Some(items) = json.as_array().filter(|a| a.len() == elems.len()) else {
                return fail(
                    path,
                    format!("expected an array of {} elements", elems.len()),
                );
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, (item, elem)) in items.iter().zip(elems).enumerate() {
                path.push_index(i as i64);
                out.push(decode_json(item, elem, path, depth + 1)?);
                path.pop();
            }
            Ok(Value::Tuple(out))
        }
        Type::Map(elem) => {
            let Some(entries) = json.as_object() else {
                return fail(path, "expected an object");
            };
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                path.push_key(k);
                out.insert(k.clone(), decode_json(v, elem, path, depth + 1)?);
                path.pop();
            }
            Ok(Value::Map(out))
        }
        Type::Object { attributes, .. } => {
            let Some(entries) = json.as_object() else {
                return fail(path, "expected an object");
            };
            if let Some(extra) = entries.keys().find(|k| !attributes.contains_key(*k)) {
                return fail(
                    path,
                    format!("unsupported attribute {extra:?} in stored state"),
                );
            }
            let mut out = BTreeMap::new();
            for (name, attr_ty) in attributes {
                path.push_attr(name);
                let v = match entries.get(name) {
                    Some(j) => decode_json(j, attr_ty, path, depth + 1)?,
                    None => Value::Null,
                };
                path.pop();
                out.insert(name.clone(), v);
            }
            Ok(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_float_keeps_its_decimal_through_json() {
        let f = -1_146_922_762_554_380.3_f64;
        let v = Value::Number(Number::Float(f));
        let text = serde_json::to_vec(&encode(&v)).unwrap();
        let back = decode(&text, &Type::Number).unwrap();
        assert!(back.same(&v), "{v:?} came back as {back:?}");
        assert_eq!(
            back.as_number().map(|n| n.to_decimal_string()),
            Some(format!("{f}"))
        );
        // An ordinary float stays a JSON number.
        let v = Value::Number(Number::Float(1.5));
        assert_eq!(encode(&v), serde_json::json!(1.5));
    }

    #[test]
    fn missing_attributes_become_null_and_extra_ones_are_refused() {
        let ty = Type::object([("id", Type::String), ("added_later", Type::Bool)]);
        let v = decode(br#"{"id":"x"}"#, &ty).unwrap();
        assert_eq!(v.attr("added_later"), &Value::Null);
        let e = decode(br#"{"id":"x","gone":1}"#, &ty).unwrap_err();
        assert!(e.message.contains("gone"));
    }

    #[test]
    fn round_trips_through_encode() {
        let ty = Type::object([
            ("n", Type::Number),
            ("l", Type::list(Type::String)),
            ("d", Type::Dynamic),
        ]);
        let v = Value::object([
            ("n", Value::int(3)),
            ("l", Value::List(vec!["a".into()])),
            (
                "d",
                Value::Dynamic(Box::new(Dynamic {
                    ty: Type::Bool,
                    value: Value::Bool(true),
                })),
            ),
        ]);
        let bytes = serde_json::to_vec(&encode(&v)).unwrap();
        assert_eq!(decode(&bytes, &ty).unwrap(), v);
    }
}
