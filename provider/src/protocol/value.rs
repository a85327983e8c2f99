//! Terraform values: null, unknown (with optional refinements) or known, for every cty type.
//!
//! A `Value` does not carry its type: the schema's [`Type`] drives encoding and decoding. The one
//! exception is a value in a `dynamic` slot, which carries its concrete type ([`Value::Dynamic`])
//! because that is what the wire format does.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use super::types::Type;

#[derive(Clone, Debug, Default)]
pub enum Value {
    #[default]
    Null,
    Unknown(Refinements),
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    /// Elements in no particular order; equality ignores order.
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Tuple(Vec<Value>),
    /// Every attribute of the object type is present (null when unset).
    Object(BTreeMap<String, Value>),
    /// A known-typed value sitting in a `dynamic` slot.
    Dynamic(Box<Dynamic>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dynamic {
    pub ty: Type,
    pub value: Value,
}

/// What Terraform already knows about an unknown value (the wire's extension 12). All optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Refinements {
    /// `Some(false)`: definitely not null.
    pub nullable: Option<bool>,
    pub string_prefix: Option<String>,
    pub number_lower: Option<(Number, bool)>,
    pub number_upper: Option<(Number, bool)>,
    pub length_lower: Option<u64>,
    pub length_upper: Option<u64>,
}

impl Refinements {
    pub fn is_empty(&self) -> bool {
        *self == Refinements::default()
    }
}

/// A Terraform number: arbitrary precision on the wire. Integers and exact floats stay native;
/// anything else is kept as the decimal text Terraform sent, normalised.
#[derive(Clone, Debug)]
pub enum Number {
    Int(i64),
    Float(f64),
    /// A decimal that neither i64 nor f64 holds exactly (e.g. `1e400` or 30 significant digits).
    Big(String),
}

impl Number {
    /// Builds the most compact exact representation of a decimal string.
    pub fn parse(text: &str) -> Option<Number> {
        let t = text.trim();
        if t.is_empty() {
            return None;
        }
        if let Ok(i) = t.parse::<i64>() {
            return Some(Number::Int(i));
        }
        if !is_decimal(t) {
            return None;
        }
        if let Ok(f) = t.parse::<f64>()
            && f.is_finite()
            && decimal_eq(&format_f64(f), t)
        {
            return Some(Number::from_f64(f));
        }
        Some(Number::Big(normalise_decimal(t)))
    }

    pub fn from_f64(f: f64) -> Number {
        if f.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
            Number::Int(f as i64)
        } else {
            Number::Float(f)
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Number::Int(i) => Some(*i as f64),
            Number::Float(f) => Some(*f),
            Number::Big(s) => s.parse().ok().filter(|f: &f64| f.is_finite()),
        }
    }

    /// Decimal text, as Terraform would print it.
    pub fn to_decimal_string(&self) -> String {
        match self {
            Number::Int(i) => i.to_string(),
            Number::Float(f) => format_f64(*f),
            Number::Big(s) => s.clone(),
        }
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (Number::Float(a), Number::Float(b)) => a == b,
            _ => decimal_eq(&self.to_decimal_string(), &other.to_decimal_string()),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string())
    }
}

fn format_f64(f: f64) -> String {
    // Rust prints the shortest text that round-trips, which is what we want.
    format!("{f}")
}

fn is_decimal(t: &str) -> bool {
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next().unwrap_or("");
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = (!int.is_empty() || !frac.is_empty()) && digits_ok(int) && digits_ok(frac);
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.len() < 10 && digits_ok(e)
        }
    };
    mantissa_ok && exponent_ok
}

/// Canonical decimal: sign, digits without leading/trailing zeros, exponent. `("-", "12", -1)`.
fn canonical(t: &str) -> Option<(bool, String, i64)> {
    if !is_decimal(t) {
        return None;
    }
    let negative = t.starts_with('-');
    let body = t.trim_start_matches(['-', '+']);
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = format!("{int}{frac}");
    let mut exponent = exp - frac.len() as i64;
    let trimmed = digits.trim_start_matches('0').to_string();
    digits = trimmed;
    if digits.is_empty() {
        return Some((false, "0".into(), 0));
    }
    while digits.ends_with('0') {
        digits.pop();
        exponent += 1;
    }
    Some((negative, digits, exponent))
}

fn decimal_eq(a: &str, b: &str) -> bool {
    match (canonical(a), canonical(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn normalise_decimal(t: &str) -> String {
    match canonical(t) {
        Some((neg, digits, exp)) => {
            let sign = if neg { "-" } else { "" };
            if exp == 0 {
                format!("{sign}{digits}")
            } else {
                format!("{sign}{digits}e{exp}")
            }
        }
        None => t.to_string(),
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            // Two unknowns are never known to be equal; the plan logic relies on this.
            (Unknown(_), _) | (_, Unknown(_)) => false,
            (Bool(a), Bool(b)) => a == b,
            (Number(a), Number(b)) => a == b,
            (String(a), String(b)) => a == b,
            (List(a), List(b)) | (Tuple(a), Tuple(b)) => a == b,
            (Set(a), Set(b)) => set_eq(a, b),
            (Map(a), Map(b)) | (Object(a), Object(b)) => a == b,
            (Dynamic(a), Dynamic(b)) => a == b,
            _ => false,
        }
    }
}

fn set_eq(a: &[Value], b: &[Value]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        let found = b
            .iter()
            .enumerate()
            .find(|(i, y)| !used[*i] && x.same(y))
            .map(|(i, _)| i);
        match found {
            Some(i) => {
                used[i] = true;
                true
            }
            None => false,
        }
    })
}

impl Value {
    pub fn unknown() -> Value {
        Value::Unknown(Refinements::default())
    }

    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    pub fn int(i: i64) -> Value {
        Value::Number(Number::Int(i))
    }

    /// Builds an object from (name, value) pairs.
    pub fn object<I, K>(attrs: I) -> Value
    where
        I: IntoIterator<Item = (K, Value)>,
        K: Into<String>,
    {
        Value::Object(attrs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Optional string: `None` becomes null.
    pub fn opt_string(s: Option<impl Into<String>>) -> Value {
        s.map(|s| Value::String(s.into())).unwrap_or(Value::Null)
    }

    /// A list of strings.
    pub fn string_list(items: impl IntoIterator<Item = String>) -> Value {
        Value::List(items.into_iter().map(Value::String).collect())
    }

    /// A map of strings.
    pub fn string_map<'a>(entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    /// The string entries of a map (null, unknown and non-string entries left out).
    pub fn to_string_map(&self) -> BTreeMap<String, String> {
        self.as_map()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown(_))
    }

    pub fn is_known(&self) -> bool {
        !self.is_unknown()
    }

    /// True when no unknown appears anywhere inside.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown(_) => false,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                v.iter().all(Value::is_wholly_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            Value::Dynamic(d) => d.value.is_wholly_known(),
            _ => true,
        }
    }

    /// Structural identity: like `==`, but two unknowns with the same refinements are the same.
    /// Used to compare plans, where "unknown stays unknown" is not a change.
    pub fn same(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Unknown(a), Unknown(b)) => a == b,
            (Unknown(_), _) | (_, Unknown(_)) => false,
            (List(a), List(b)) | (Tuple(a), Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (Set(a), Set(b)) => set_eq(a, b),
            (Map(a), Map(b)) | (Object(a), Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka == kb && va.same(vb))
            }
            (Dynamic(a), Dynamic(b)) => a.ty == b.ty && a.value.same(&b.value),
            _ => self == other,
        }
    }

    /// The attribute of an object; null for null/unknown objects and absent names.
    pub fn attr(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        match self {
            Value::Object(m) => {
                debug_assert!(
                    m.contains_key(name),
                    "attribute {name:?} is not in the object: the code and the schema disagree"
                );
                m.get(name).unwrap_or(&NULL)
            }
            _ => &NULL,
        }
    }

    pub fn attr_mut(&mut self, name: &str) -> Option<&mut Value> {
        match self {
            Value::Object(m) => m.get_mut(name),
            _ => None,
        }
    }

    /// Sets an attribute of a known object (no effect on null or unknown objects).
    pub fn set_attr(&mut self, name: &str, value: Value) {
        if let Value::Object(m) = self {
            m.insert(name.to_string(), value);
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        self.as_number().and_then(Number::as_i64)
    }

    pub fn as_elements(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) | Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// A null value shaped like `ty`: for objects, every attribute null.
    pub fn null_object(ty: &Type) -> Value {
        match ty {
            Type::Object { attributes, .. } => Value::Object(
                attributes
                    .keys()
                    .map(|k| (k.clone(), Value::Null))
                    .collect(),
            ),
            _ => Value::Null,
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::int(i)
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self.as_f64(), other.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value_not_spelling() {
        assert_eq!(Number::parse("5").unwrap(), Number::Int(5));
        assert_eq!(Number::parse("5.0").unwrap(), Number::Int(5));
        assert_eq!(Number::parse("1.5").unwrap(), Number::Float(1.5));
        let big = Number::parse("123456789012345678901234567890").unwrap();
        assert!(matches!(big, Number::Big(_)));
        assert_eq!(
            big,
            Number::parse("1.2345678901234567890123456789e29").unwrap()
        );
        assert_ne!(
            big,
            Number::parse("123456789012345678901234567891").unwrap()
        );
        assert_eq!(Number::parse("0.1").unwrap(), Number::Float(0.1));
        assert!(Number::parse("1e").is_none());
        assert!(Number::parse("abc").is_none());
        assert!(matches!(Number::parse("1e400").unwrap(), Number::Big(_)));
    }

    #[test]
    fn unknowns_are_never_equal_but_are_the_same() {
        let a = Value::unknown();
        assert_ne!(a, Value::unknown());
        assert!(a.same(&Value::unknown()));
        assert!(!a.same(&Value::Null));
    }

    #[test]
    fn sets_ignore_order() {
        let a = Value::Set(vec![Value::from("x"), Value::from("y")]);
        let b = Value::Set(vec![Value::from("y"), Value::from("x")]);
        assert_eq!(a, b);
        let c = Value::Set(vec![Value::from("x"), Value::from("x")]);
        assert_ne!(a, c);
    }

    #[test]
    fn string_maps_and_lists_round_trip() {
        let map = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert_eq!(Value::string_map(&map).to_string_map(), map);
        let mut mixed = Value::string_map(&map);
        if let Value::Map(m) = &mut mixed {
            m.insert("b".into(), Value::unknown());
            m.insert("c".into(), Value::Null);
        }
        assert_eq!(mixed.to_string_map(), map, "only known strings are taken");
        assert!(Value::Null.to_string_map().is_empty());
        assert!(Value::string_list(["x".to_string()]).same(&Value::List(vec![Value::string("x")])));
    }
}
