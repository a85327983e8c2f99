//! Writing a model back into a plan or a state without touching what the code did not change.
//!
//! A model read from a plan loses what its field types do not keep: the refinements of an
//! unknown value (Terraform checks a configured unknown is planned exactly as configured), the
//! unknown elements of a list, the exact text of a number. [`write_changes`] therefore writes
//! back only the attributes whose field the code changed, so every other value stays exactly as
//! Terraform sent it. Shared by the bootstrap, restore drill and migration resources.

use crate::protocol::model::ToValue;
use crate::protocol::types::Type;
use crate::protocol::value::Value;

/// Sets in `target` (an object of type `ty`) every attribute whose value in `after` differs
/// from its value in `before`, both read from `target` and then edited.
pub fn write_changes<T: ToValue>(target: &mut Value, ty: &Type, before: &T, after: &T) {
    let (Value::Object(old), Value::Object(new)) = (before.to_value(ty), after.to_value(ty)) else {
        return;
    };
    for (name, value) in new {
        if !old.get(&name).is_some_and(|o| o.same(&value)) {
            target.set_attr(&name, value);
        }
    }
}

/// Sets in `target` (an object of type `ty`, wholly known) every attribute whose value in
/// `model` differs from the one it holds: for a state a model was read from with
/// `from_config`, this also writes the defaults it filled in.
pub fn write_differences<T: ToValue>(target: &mut Value, ty: &Type, model: &T) {
    let Value::Object(new) = model.to_value(ty) else {
        return;
    };
    for (name, value) in new {
        if !target.attr(&name).same(&value) {
            target.set_attr(&name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::model::Maybe;
    use crate::protocol::schema::Attribute;
    use crate::protocol::value::Refinements;

    crate::model! {
        struct Thing {
            name: String = Attribute::required("name", Type::String),
            id: Option<String> = Attribute::computed("id", Type::String),
        }
    }

    #[test]
    fn only_what_changed_is_written() {
        let refined = Value::Unknown(Refinements {
            nullable: Some(false),
            ..Refinements::default()
        });
        let mut plan = Value::object([("name", refined.clone()), ("id", Value::Null)]);
        let before = Thing::planned(&plan).unwrap();
        let mut after = before.clone();
        after.id = Maybe::Known(Some("x".into()));
        write_changes(&mut plan, &Thing::object_type(), &before, &after);
        assert!(plan.attr("name").same(&refined));
        assert_eq!(plan.attr("id").as_str(), Some("x"));
    }
}
