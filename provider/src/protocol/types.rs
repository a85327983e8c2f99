//! The cty type system as Terraform sends it, and its JSON form (`"string"`, `["list","number"]`,
//! `["object",{"a":"bool"},["a"]]`), used in schema attributes and inside dynamic values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value as Json;

/// A cty type. Objects keep their attribute names sorted, as cty does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    Bool,
    Number,
    String,
    /// `"dynamic"`: any type; a value in such a slot carries its concrete type on the wire.
    Dynamic,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Tuple(Vec<Type>),
    Object {
        attributes: BTreeMap<String, Type>,
        /// Attribute names declared optional (the third element of the JSON form).
        optional: BTreeSet<String>,
    },
}

/// Deepest type nesting we accept from the wire; real schemas stay far below it.
pub const MAX_TYPE_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid type JSON: {0}")]
pub struct TypeError(pub String);

impl Type {
    pub fn list(element: Type) -> Type {
        Type::List(Box::new(element))
    }
    pub fn set(element: Type) -> Type {
        Type::Set(Box::new(element))
    }
    pub fn map(element: Type) -> Type {
        Type::Map(Box::new(element))
    }
    pub fn object<I, K>(attributes: I) -> Type
    where
        I: IntoIterator<Item = (K, Type)>,
        K: Into<String>,
    {
        Type::Object {
            attributes: attributes.into_iter().map(|(k, t)| (k.into(), t)).collect(),
            optional: BTreeSet::new(),
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            Type::Bool => Json::from("bool"),
            Type::Number => Json::from("number"),
            Type::String => Json::from("string"),
            Type::Dynamic => Json::from("dynamic"),
            Type::List(e) => Json::Array(vec!["list".into(), e.to_json()]),
            Type::Set(e) => Json::Array(vec!["set".into(), e.to_json()]),
            Type::Map(e) => Json::Array(vec!["map".into(), e.to_json()]),
            Type::Tuple(es) => Json::Array(vec![
                "tuple".into(),
                Json::Array(es.iter().map(Type::to_json).collect()),
            ]),
            Type::Object {
                attributes,
                optional,
            } => {
                let attrs = attributes
                    .iter()
                    .map(|(k, t)| (k.clone(), t.to_json()))
                    .collect::<serde_json::Map<_, _>>();
                let mut parts = vec!["object".into(), Json::Object(attrs)];
                if !optional.is_empty() {
                    parts.push(Json::Array(
                        optional.iter().map(|s| s.as_str().into()).collect(),
                    ));
                }
                Json::Array(parts)
            }
        }
    }

    /// The compact JSON bytes Terraform expects in `Schema.Attribute.type`.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).expect("type JSON always serializes")
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<Type, TypeError> {
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| TypeError(format!("not JSON: {e}")))?;
        Type::from_json(&json)
    }

    pub fn from_json(json: &Json) -> Result<Type, TypeError> {
        Self::from_json_depth(json, 0)
    }

    fn from_json_depth(json: &Json, depth: usize) -> Result<Type, TypeError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(TypeError("type nests too deeply".into()));
        }
        match json {
            Json::String(s) => match s.as_str() {
                "bool" => Ok(Type::Bool),
                "number" => Ok(Type::Number),
                "string" => Ok(Type::String),
                "dynamic" => Ok(Type::Dynamic),
                other => Err(TypeError(format!("unknown primitive type {other:?}"))),
            },
            Json::Array(parts) => {
                let kind = parts
                    .first()
                    .and_then(Json::as_str)
                    .ok_or_else(|| TypeError("a compound type starts with its kind".into()))?;
                let arg = parts
                    .get(1)
                    .ok_or_else(|| TypeError(format!("{kind} needs an argument")))?;
                let next = |j: &Json| Self::from_json_depth(j, depth + 1);
                match (kind, parts.len()) {
                    ("list", 2) => Ok(Type::list(next(arg)?)),
                    ("set", 2) => Ok(Type::set(next(arg)?)),
                    ("map", 2) => Ok(Type::map(next(arg)?)),
                    ("tuple", 2) => {
                        let elems = arg
                            .as_array()
                            .ok_or_else(|| TypeError("tuple needs an array of types".into()))?;
                        Ok(Type::Tuple(
                            elems.iter().map(next).collect::<Result<_, _>>()?,
                        ))
                    }
                    ("object", 2 | 3) => {
                        let attrs = arg
                            .as_object()
                            .ok_or_else(|| TypeError("object needs a map of types".into()))?;
                        let attributes = attrs
                            .iter()
                            .map(|(k, v)| Ok((k.clone(), next(v)?)))
                            .collect::<Result<BTreeMap<_, _>, TypeError>>()?;
                        let mut optional = BTreeSet::new();
                        if let Some(opt) = parts.get(2) {
                            let names = opt.as_array().ok_or_else(|| {
                                TypeError("object optional attributes must be an array".into())
                            })?;
                            for name in names {
                                let name = name.as_str().ok_or_else(|| {
                                    TypeError("optional attribute names are strings".into())
                                })?;
                                if !attributes.contains_key(name) {
                                    return Err(TypeError(format!(
                                        "optional attribute {name:?} is not an attribute"
                                    )));
                                }
                                optional.insert(name.to_string());
                            }
                        }
                        Ok(Type::Object {
                            attributes,
                            optional,
                        })
                    }
                    _ => Err(TypeError(format!(
                        "unknown compound type {kind:?} with {} parts",
                        parts.len()
                    ))),
                }
            }
            other => Err(TypeError(format!("unexpected {other}"))),
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_round_trips_and_matches_terraform_spelling() {
        let ty = Type::Object {
            attributes: [
                ("a".to_string(), Type::list(Type::String)),
                (
                    "b".to_string(),
                    Type::Tuple(vec![Type::Bool, Type::Dynamic]),
                ),
            ]
            .into(),
            optional: ["b".to_string()].into(),
        };
        let bytes = ty.to_json_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"["object",{"a":["list","string"],"b":["tuple",["bool","dynamic"]]},["b"]]"#
        );
        assert_eq!(Type::from_json_bytes(&bytes).unwrap(), ty);
    }

    #[test]
    fn rejects_malformed_types() {
        for bad in [
            r#""text""#,
            r#"["list"]"#,
            r#"["object",{"a":"bool"},["b"]]"#,
            r#"["frobnicate","bool"]"#,
            "42",
        ] {
            assert!(Type::from_json_bytes(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = format!("{}\"bool\"{}", "[\"list\",".repeat(100), "]".repeat(100));
        assert!(Type::from_json_bytes(deep.as_bytes()).is_err());
    }
}
