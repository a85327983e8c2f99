//! Typed models: one Rust struct per resource, data source and ephemeral resource, from which
//! the schema's attributes are built, so that the schema and the code that reads it cannot
//! drift apart.
//!
//! [`model!`](crate::model) declares the struct and, for every field, the schema attribute it
//! is. The attribute takes the field's name (a different name written in the builder is a bug
//! caught by a debug assertion and every `the_schema_is_valid` test), and the macro generates:
//!
//! - `attributes()`: the schema's attributes, in declaration order;
//! - [`FromValue`]: the struct from a configuration, plan or state object;
//! - [`ToValue`]: the struct back to an object with every attribute (what state holds);
//! - `from_config()`: like `from_value`, with every attribute's `default_value` filled in where
//!   the configuration leaves it null, so a default is declared once, on the attribute, and
//!   code never repeats it;
//! - one associated const per field holding its attribute name (`ThingModel::prefix`), for
//!   the few places that set one attribute of a plan or name it in a path;
//! - `planned()`: the same struct in [`Planned`] mode, every field a [`Maybe`] of its type, for
//!   validate and plan, where any configured value may still be unknown.
//!
//! Field types say how much of Terraform's value model the code needs: `String`, `bool`, `i64`,
//! `f64`, `Vec<T>`, `BTreeMap<String, T>` and nested models when the value must be known and
//! non-null (anything else is an error naming the attribute); `Option<T>` when null (or, in a
//! plan, unknown) means "not set"; [`Maybe<T>`] when plan code must tell null from unknown;
//! [`Value`] when the value is passed through untouched.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::diagnostics::{AttributePath, Diagnostic, Step};
use super::schema::Attribute;
use super::types::Type;
use super::value::{Number, Value};
use crate::duration;

/// A value that did not have the shape its field needs. Always a provider bug or a value
/// unknown where the code needs it known; reported with the attribute's path.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelError {
    pub path: AttributePath,
    pub message: String,
}

impl ModelError {
    pub fn new(message: impl Into<String>) -> Self {
        ModelError {
            path: AttributePath::root(),
            message: message.into(),
        }
    }

    /// Prefixes the path with `step` (errors are built from the leaf up).
    fn within(mut self, step: Step) -> Self {
        self.path.steps.insert(0, step);
        self
    }

    /// The diagnostic for this error, naming the operation in `summary`.
    pub fn diagnostic(&self, summary: &str) -> Diagnostic {
        Diagnostic::provider_bug(summary, self).at(self.path.clone())
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .path
            .steps
            .iter()
            .map(|s| match s {
                Step::Attribute(a) => a.clone(),
                Step::Key(k) => format!("[{k:?}]"),
                Step::Index(i) => format!("[{i}]"),
            })
            .collect();
        if names.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", names.join("."), self.message)
        }
    }
}

/// Converts a Terraform value into a field.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, ModelError>;
}

/// Converts a field back into a Terraform value of type `ty` (the attribute's type: it says
/// whether a `Vec` is a list or a set, a map a map or an object).
pub trait ToValue {
    fn to_value(&self, ty: &Type) -> Value;
}

fn shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Unknown(_) => "not known yet",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::List(_) | Value::Tuple(_) => "a list",
        Value::Set(_) => "a set",
        Value::Map(_) => "a map",
        Value::Object(_) => "an object",
        Value::Dynamic(_) => "a dynamic value",
    }
}

fn expected<T>(what: &str, v: &Value) -> Result<T, ModelError> {
    Err(ModelError::new(format!(
        "expected {what}, got {}",
        shape(v)
    )))
}

impl FromValue for Value {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        Ok(v.clone())
    }
}

impl ToValue for Value {
    fn to_value(&self, _ty: &Type) -> Value {
        self.clone()
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => expected("a string", v),
        }
    }
}

impl ToValue for String {
    fn to_value(&self, _ty: &Type) -> Value {
        Value::String(self.clone())
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::Bool(b) => Ok(*b),
            _ => expected("a bool", v),
        }
    }
}

impl ToValue for bool {
    fn to_value(&self, _ty: &Type) -> Value {
        Value::Bool(*self)
    }
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v.as_i64() {
            Some(i) => Ok(i),
            None => expected("a whole number", v),
        }
    }
}

impl ToValue for i64 {
    fn to_value(&self, _ty: &Type) -> Value {
        Value::int(*self)
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v.as_number().and_then(Number::as_f64) {
            Some(f) => Ok(f),
            None => expected("a number", v),
        }
    }
}

impl ToValue for f64 {
    fn to_value(&self, _ty: &Type) -> Value {
        Value::Number(Number::from_f64(*self))
    }
}

/// Null, and unknown (only in a plan), are `None`.
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::Null | Value::Unknown(_) => Ok(None),
            _ => T::from_value(v).map(Some),
        }
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self, ty: &Type) -> Value {
        match self {
            Some(t) => t.to_value(ty),
            None => Value::Null,
        }
    }
}

fn element_type(ty: &Type) -> Type {
    match ty {
        Type::List(e) | Type::Set(e) | Type::Map(e) => (**e).clone(),
        _ => Type::Dynamic,
    }
}

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v.as_elements() {
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| T::from_value(item).map_err(|e| e.within(Step::Index(i as i64))))
                .collect(),
            None => expected("a list or set", v),
        }
    }
}

impl<T: ToValue> ToValue for Vec<T> {
    fn to_value(&self, ty: &Type) -> Value {
        let e = element_type(ty);
        let items = self.iter().map(|t| t.to_value(&e)).collect();
        match ty {
            Type::Set(_) => Value::Set(items),
            _ => Value::List(items),
        }
    }
}

impl<T: FromValue> FromValue for BTreeMap<String, T> {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::Map(m) => m
                .iter()
                .map(|(k, item)| {
                    T::from_value(item)
                        .map(|t| (k.clone(), t))
                        .map_err(|e| e.within(Step::Key(k.clone())))
                })
                .collect(),
            _ => expected("a map", v),
        }
    }
}

impl<T: ToValue> ToValue for BTreeMap<String, T> {
    fn to_value(&self, ty: &Type) -> Value {
        let e = element_type(ty);
        Value::Map(
            self.iter()
                .map(|(k, t)| (k.clone(), t.to_value(&e)))
                .collect(),
        )
    }
}

/// A value that plan code must see as null, unknown or known.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Maybe<T> {
    #[default]
    Null,
    Unknown,
    Known(T),
}

impl<T> Maybe<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Maybe::Known(t) => Some(t),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Maybe::Null)
    }
    pub fn is_unknown(&self) -> bool {
        matches!(self, Maybe::Unknown)
    }
}

impl<T: FromValue> FromValue for Maybe<T> {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::Null => Ok(Maybe::Null),
            Value::Unknown(_) => Ok(Maybe::Unknown),
            _ => T::from_value(v).map(Maybe::Known),
        }
    }
}

impl<T: ToValue> ToValue for Maybe<T> {
    fn to_value(&self, ty: &Type) -> Value {
        match self {
            Maybe::Null => Value::Null,
            Maybe::Unknown => Value::unknown(),
            Maybe::Known(t) => t.to_value(ty),
        }
    }
}

/// A Go-style duration attribute (`"90s"`, `"1h"`): the parsed value, and the text as written,
/// which is what goes back into state.
#[derive(Clone, Debug, PartialEq)]
pub struct DurationText {
    pub text: String,
    pub value: Duration,
}

impl DurationText {
    pub fn get(&self) -> Duration {
        self.value
    }
}

impl FromValue for DurationText {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        let text = String::from_value(v)?;
        match duration::parse(&text) {
            Ok(value) => Ok(DurationText { text, value }),
            Err(e) => Err(ModelError::new(format!("{text:?} is not a duration: {e}"))),
        }
    }
}

impl ToValue for DurationText {
    fn to_value(&self, _ty: &Type) -> Value {
        Value::String(self.text.clone())
    }
}

/// One field of an object, for the generated `from_value`.
#[doc(hidden)]
pub fn field<T: FromValue>(
    object: &BTreeMap<String, Value>,
    name: &'static str,
) -> Result<T, ModelError> {
    static NULL: Value = Value::Null;
    T::from_value(object.get(name).unwrap_or(&NULL))
        .map_err(|e| e.within(Step::Attribute(name.to_string())))
}

/// How much of a model is known: [`Known`] (apply, read, delete: every field has its declared
/// type) or [`Planned`] (validate and plan: every field is a [`Maybe`] of its declared type,
/// because any configured value may still be unknown).
pub trait Mode {
    type Of<T>;
}

/// See [`Mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Known;
/// See [`Mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Planned;

impl Mode for Known {
    type Of<T> = T;
}
impl Mode for Planned {
    type Of<T> = Maybe<T>;
}

/// The attribute of a field, named after the field.
#[doc(hidden)]
pub fn named(name: &'static str, mut attribute: Attribute) -> Attribute {
    debug_assert_eq!(
        attribute.name, name,
        "the attribute built for field `{name}` has another name"
    );
    attribute.name = name.to_string();
    attribute
}

/// Fills in the `default_value` of null attributes (top level and inside single nested
/// attributes, as planning does).
#[doc(hidden)]
pub fn with_defaults(attributes: &[Attribute], v: &Value) -> Value {
    let mut out = v.clone();
    super::framework::apply_defaults(attributes, v, &mut out);
    out
}

/// Declares a model: a struct whose fields are the attributes of a schema. See the module
/// documentation.
///
/// ```ignore
/// model! {
///     /// `artifortress_thing` as configured, planned and stored.
///     pub struct ThingModel {
///         name: String = Attribute::required("name", Type::String).description("…"),
///         prefix: String = Attribute::optional_computed("prefix", Type::String)
///             .default_value("backups/"),
///         note: Option<String> = Attribute::optional("note", Type::String),
///     }
/// }
/// ```
///
/// `ThingModel` (= `ThingModel<Known>`) has the declared field types; `ThingModel<Planned>`
/// (from `ThingModel::planned(value)`) has a [`Maybe`] of each.
#[macro_export]
macro_rules! model {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty = $attr:expr
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        $vis struct $name<M: $crate::protocol::model::Mode = $crate::protocol::model::Known> {
            $( $(#[$fmeta])* pub $field: M::Of<$ty>, )*
        }

        // Not every model uses every generated conversion. Each field's attribute name is an
        // associated const of the same name (`ThingModel::prefix == "prefix"`), checked by the
        // compiler, for the few places that address one attribute of a plan or a path.
        #[allow(dead_code, non_upper_case_globals)]
        impl $name {
            $( pub const $field: &'static str = stringify!($field); )*

            /// The schema's attributes, in declaration order, each named after its field.
            pub fn attributes() -> Vec<$crate::protocol::schema::Attribute> {
                vec![$( $crate::protocol::model::named(stringify!($field), $attr) ),*]
            }

            /// The object type of the attributes.
            pub fn object_type() -> $crate::protocol::types::Type {
                $crate::protocol::types::Type::object(
                    Self::attributes().into_iter().map(|a| {
                        let ty = a.value_type();
                        (a.name, ty)
                    }),
                )
            }

            /// From an object whose null attributes with a `default_value` read as that
            /// default: a configuration, or the state of an import.
            pub fn from_config(
                v: &$crate::protocol::value::Value,
            ) -> Result<Self, $crate::protocol::model::ModelError> {
                let filled = $crate::protocol::model::with_defaults(&Self::attributes(), v);
                <Self as $crate::protocol::model::FromValue>::from_value(&filled)
            }

            /// From a configuration, plan or state: every value as it is.
            pub fn from_value(
                v: &$crate::protocol::value::Value,
            ) -> Result<Self, $crate::protocol::model::ModelError> {
                <Self as $crate::protocol::model::FromValue>::from_value(v)
            }

            /// A configuration or plan that may hold unknown values, with defaults filled in.
            pub fn planned(
                v: &$crate::protocol::value::Value,
            ) -> Result<$name<$crate::protocol::model::Planned>, $crate::protocol::model::ModelError> {
                let filled = $crate::protocol::model::with_defaults(&Self::attributes(), v);
                <$name<$crate::protocol::model::Planned> as $crate::protocol::model::FromValue>::from_value(&filled)
            }

            /// The object with every attribute, as state holds it.
            pub fn to_object(&self) -> $crate::protocol::value::Value {
                $crate::protocol::model::ToValue::to_value(self, &Self::object_type())
            }
        }

        impl<M: $crate::protocol::model::Mode> $crate::protocol::model::FromValue for $name<M>
        where
            $( M::Of<$ty>: $crate::protocol::model::FromValue, )*
        {
            fn from_value(
                v: &$crate::protocol::value::Value,
            ) -> Result<Self, $crate::protocol::model::ModelError> {
                match v {
                    $crate::protocol::value::Value::Object(m) => Ok($name {
                        $( $field: $crate::protocol::model::field(m, stringify!($field))?, )*
                    }),
                    other => Err($crate::protocol::model::ModelError::new(format!(
                        "expected an object for {}, got {other:?}",
                        stringify!($name)
                    ))),
                }
            }
        }

        impl<M: $crate::protocol::model::Mode> $crate::protocol::model::ToValue for $name<M>
        where
            $( M::Of<$ty>: $crate::protocol::model::ToValue, )*
        {
            fn to_value(
                &self,
                ty: &$crate::protocol::types::Type,
            ) -> $crate::protocol::value::Value {
                let types = match ty {
                    $crate::protocol::types::Type::Object { attributes, .. } => attributes.clone(),
                    _ => Default::default(),
                };
                let dynamic = $crate::protocol::types::Type::Dynamic;
                $crate::protocol::value::Value::Object(
                    [$(
                        (
                            stringify!($field).to_string(),
                            $crate::protocol::model::ToValue::to_value(
                                &self.$field,
                                types.get(stringify!($field)).unwrap_or(&dynamic),
                            ),
                        )
                    ),*]
                    .into_iter()
                    .collect(),
                )
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::schema::{Constraint, Nesting};

    crate::model! {
        /// A host in the test model.
        struct HostModel {
            name: String = Attribute::required("name", Type::String),
            roles: Vec<String> = Attribute::required("roles", Type::set(Type::String)),
        }
    }

    crate::model! {
        /// Every kind of field.
        struct TestModel {
            name: String = Attribute::required("name", Type::String),
            prefix: String = Attribute::optional_computed("prefix", Type::String)
                .default_value("backups/"),
            note: Option<String> = Attribute::optional("note", Type::String),
            id: Maybe<String> = Attribute::computed("id", Type::String),
            size: Option<i64> = Attribute::computed("size", Type::Number),
            ratio: Option<f64> = Attribute::computed("ratio", Type::Number),
            verify: bool = Attribute::optional_computed("verify", Type::Bool).default_value(true),
            wait: Option<DurationText> = Attribute::optional("wait", Type::String),
            labels: BTreeMap<String, String> =
                Attribute::optional_computed("labels", Type::map(Type::String))
                    .default_value(Value::Map(BTreeMap::new())),
            hosts: Vec<HostModel> = Attribute::nested(
                "hosts",
                Nesting::List,
                Constraint::Required,
                HostModel::attributes(),
            ),
            raw: Value = Attribute::optional("raw", Type::Dynamic),
        }
    }

    fn config() -> Value {
        let mut m: BTreeMap<String, Value> = TestModel::attributes()
            .into_iter()
            .map(|a| (a.name, Value::Null))
            .collect();
        m.insert("name".into(), "x".into());
        m.insert("id".into(), Value::unknown());
        m.insert("wait".into(), "90s".into());
        m.insert(
            "hosts".into(),
            Value::List(vec![Value::object([
                ("name", Value::from("api-1")),
                ("roles", Value::Set(vec!["api".into(), "worker".into()])),
            ])]),
        );
        Value::Object(m)
    }

    #[test]
    fn a_configuration_reads_with_its_defaults() {
        let m = TestModel::from_config(&config()).unwrap();
        assert_eq!(m.name, "x");
        assert_eq!(m.prefix, "backups/");
        assert_eq!(m.note, None);
        assert_eq!(m.id, Maybe::Unknown);
        assert!(m.verify);
        assert_eq!(m.wait.as_ref().unwrap().get(), Duration::from_secs(90));
        assert_eq!(m.hosts[0].roles, vec!["api", "worker"]);
        assert!(m.labels.is_empty());
    }

    #[test]
    fn a_model_round_trips_to_the_object_it_came_from() {
        let v = TestModel::from_config(&config()).unwrap().to_object();
        // Sets stay sets, unknowns stay unknown, durations keep their text.
        assert!(matches!(
            v.attr("hosts").as_elements().unwrap()[0].attr("roles"),
            Value::Set(_)
        ));
        assert!(v.attr("id").is_unknown());
        assert_eq!(v.attr("wait").as_str(), Some("90s"));
        let again = TestModel::from_value(&v).unwrap();
        assert!(again.to_object().same(&v));
    }

    #[test]
    fn a_value_of_the_wrong_shape_is_an_error_naming_its_path() {
        let mut v = config();
        v.set_attr(
            "hosts",
            Value::List(vec![Value::object([
                ("name", Value::Null),
                ("roles", Value::Set(vec![])),
            ])]),
        );
        let e = TestModel::from_config(&v).unwrap_err();
        assert_eq!(e.to_string(), "hosts.[0].name: expected a string, got null");
        assert_eq!(
            e.path,
            AttributePath::attr("hosts")
                .child_index(0)
                .child_attr("name")
        );
        let mut v = config();
        v.set_attr("wait", "soon".into());
        assert!(
            TestModel::from_config(&v)
                .unwrap_err()
                .to_string()
                .starts_with("wait: \"soon\" is not a duration")
        );
    }

    #[test]
    fn a_plan_with_unknown_values_reads_in_planned_mode() {
        let mut v = config();
        v.set_attr("name", Value::unknown());
        assert!(TestModel::from_config(&v).is_err());
        let p = TestModel::planned(&v).unwrap();
        assert_eq!(p.name, Maybe::Unknown);
        assert_eq!(p.prefix, Maybe::Known("backups/".to_string()));
        assert_eq!(p.note, Maybe::Null);
        assert!(
            p.to_value(&TestModel::object_type())
                .attr("name")
                .is_unknown()
        );
    }

    #[test]
    fn attributes_are_named_after_their_fields() {
        let names: Vec<String> = TestModel::attributes()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names[..3], ["name", "prefix", "note"]);
        assert_eq!(TestModel::prefix, "prefix");
        let ty = TestModel::object_type();
        let Type::Object { attributes, .. } = ty else {
            panic!("an object type")
        };
        assert_eq!(attributes.len(), 11);
    }

    #[test]
    #[should_panic(expected = "has another name")]
    fn a_builder_naming_another_attribute_is_caught() {
        crate::model! {
            struct Misnamed {
                name: String = Attribute::required("nmae", Type::String),
            }
        }
        let _ = Misnamed::attributes();
    }
}
