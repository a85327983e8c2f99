//! Property tests for the codecs: random types, random values with unknowns (plain and refined)
//! and nulls anywhere, dynamic values carrying their type.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::types::Type;
use super::value::{Dynamic, Number, Refinements, Value};
use super::{json, msgpack};

fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,8}"
}

fn arb_type() -> impl Strategy<Value = Type> {
    let leaf = prop_oneof![
        Just(Type::Bool),
        Just(Type::Number),
        Just(Type::String),
        Just(Type::Dynamic),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(Type::list),
            inner.clone().prop_map(Type::set),
            inner.clone().prop_map(Type::map),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Type::Tuple),
            prop::collection::btree_map(name(), inner, 0..4).prop_map(|attributes| {
                let optional: BTreeSet<String> = attributes.keys().take(1).cloned().collect();
                Type::Object {
                    attributes,
                    optional,
                }
            }),
        ]
    })
}

/// A concrete type (no dynamic at the root), for values inside dynamic slots.
fn concrete_type() -> impl Strategy<Value = Type> {
    arb_type().prop_filter("dynamic value types are concrete", |t| {
        !matches!(t, Type::Dynamic)
    })
}

fn arb_number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Number::from_f64),
        "-?[1-9][0-9]{19,40}(\\.[0-9]{1,20})?".prop_map(|s| Number::parse(&s).unwrap()),
    ]
}

fn arb_refinements() -> impl Strategy<Value = Refinements> {
    (
        prop::option::of(any::<bool>()),
        prop::option::of("[a-z:/]{0,6}"),
        prop::option::of((arb_number(), any::<bool>())),
        prop::option::of((arb_number(), any::<bool>())),
        prop::option::of(0u64..100),
        prop::option::of(0u64..100),
    )
        .prop_map(|(nullable, prefix, lo, hi, llo, lhi)| Refinements {
            nullable,
            string_prefix: prefix,
            number_lower: lo,
            number_upper: hi,
            length_lower: llo,
            length_upper: lhi,
        })
}

/// A value of `ty`; with `known_only`, no unknowns (for JSON).
fn arb_value(ty: Type, known_only: bool, depth: u32) -> BoxedStrategy<Value> {
    let known = known_value(ty, known_only, depth);
    if known_only {
        prop_oneof![1 => Just(Value::Null), 6 => known].boxed()
    } else {
        prop_oneof![
            1 => Just(Value::Null),
            1 => arb_refinements().prop_map(Value::Unknown),
            6 => known,
        ]
        .boxed()
    }
}

fn known_value(ty: Type, known_only: bool, depth: u32) -> BoxedStrategy<Value> {
    match ty {
        Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Type::Number => arb_number().prop_map(Value::Number).boxed(),
        Type::String => any::<String>().prop_map(Value::String).boxed(),
        Type::Dynamic if depth > 3 => Just(Value::Null).boxed(),
        Type::Dynamic => concrete_type()
            .prop_flat_map(move |t| {
                known_value(t.clone(), known_only, depth + 1).prop_map(move |v| {
                    Value::Dynamic(Box::new(Dynamic {
                        ty: t.clone(),
                        value: v,
                    }))
                })
            })
            .boxed(),
        Type::List(e) => prop::collection::vec(arb_value(*e, known_only, depth + 1), 0..4)
            .prop_map(Value::List)
            .boxed(),
        Type::Set(e) => prop::collection::vec(arb_value(*e, known_only, depth + 1), 0..4)
            .prop_map(Value::Set)
            .boxed(),
        Type::Map(e) => {
            prop::collection::btree_map(any::<String>(), arb_value(*e, known_only, depth + 1), 0..4)
                .prop_map(Value::Map)
                .boxed()
        }
        Type::Tuple(es) => es
            .into_iter()
            .map(|e| arb_value(e, known_only, depth + 1))
            .collect::<Vec<_>>()
            .prop_map(Value::Tuple)
            .boxed(),
        Type::Object { attributes, .. } => attributes
            .into_iter()
            .map(|(k, t)| arb_value(t, known_only, depth + 1).prop_map(move |v| (k.clone(), v)))
            .collect::<Vec<_>>()
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<BTreeMap<_, _>>()))
            .boxed(),
    }
}

fn typed_value(known_only: bool) -> impl Strategy<Value = (Type, Value)> {
    arb_type().prop_flat_map(move |t| {
        arb_value(t.clone(), known_only, 0).prop_map(move |v| (t.clone(), v))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn msgpack_round_trips_with_unknowns_anywhere((ty, value) in typed_value(false)) {
        let bytes = msgpack::encode(&value, &ty).unwrap();
        let back = msgpack::decode(&bytes, &ty).unwrap();
        prop_assert!(back.same(&value), "{value:?}\n!=\n{back:?}");
        // Encoding is deterministic.
        prop_assert_eq!(msgpack::encode(&back, &ty).unwrap(), bytes);
    }

    #[test]
    fn json_round_trips_known_values((ty, value) in typed_value(true)) {
        let text = serde_json::to_vec(&json::encode(&value)).unwrap();
        let back = json::decode(&text, &ty).unwrap();
        prop_assert!(back.same(&value), "{value:?}\n!=\n{back:?}");
    }

    #[test]
    fn types_round_trip_through_json(ty in arb_type()) {
        prop_assert_eq!(Type::from_json_bytes(&ty.to_json_bytes()).unwrap(), ty);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(ty in arb_type(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = msgpack::decode(&bytes, &ty);
    }
}
