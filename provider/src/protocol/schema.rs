//! Schemas: attributes, nested attributes and blocks, with the behaviour Terraform cannot see
//! (plan modifiers, validators, defaults) declared on the attribute rather than coded per resource.

use super::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use super::types::Type;
use super::validators::Validator;
use super::value::Value;

/// Whether the practitioner sets an attribute, the provider does, or both. Making this one enum
/// keeps "required and computed" unrepresentable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constraint {
    Required,
    Optional,
    /// Set by the provider only.
    Computed,
    /// Set by the practitioner, or by the provider when the practitioner leaves it null.
    OptionalComputed,
}

impl Constraint {
    pub fn is_computed(self) -> bool {
        matches!(self, Constraint::Computed | Constraint::OptionalComputed)
    }
    pub fn is_configurable(self) -> bool {
        !matches!(self, Constraint::Computed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
    Set,
    Map,
    /// Blocks only: a single block that is never null.
    Group,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttributeType {
    Primitive(Type),
    Nested {
        nesting: Nesting,
        attributes: Vec<Attribute>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub ty: AttributeType,
    pub constraint: Constraint,
    pub description: String,
    pub sensitive: bool,
    /// Only in config; always null in plan and state (Terraform >= 1.11).
    pub write_only: bool,
    pub deprecation: Option<String>,
    /// A change of this attribute replaces the resource.
    pub requires_replace: bool,
    /// Keep the prior state's value instead of "(known after apply)" on update.
    pub use_state_for_unknown: bool,
    /// Planned when the configuration leaves the attribute null; needs `OptionalComputed`.
    pub default: Option<Value>,
    pub validators: Vec<Validator>,
}

impl Attribute {
    fn new(name: &str, ty: AttributeType, constraint: Constraint) -> Self {
        Attribute {
            name: name.to_string(),
            ty,
            constraint,
            description: String::new(),
            sensitive: false,
            write_only: false,
            deprecation: None,
            requires_replace: false,
            use_state_for_unknown: false,
            default: None,
            validators: Vec::new(),
        }
    }

    pub fn required(name: &str, ty: Type) -> Self {
        Self::new(name, AttributeType::Primitive(ty), Constraint::Required)
    }
    pub fn optional(name: &str, ty: Type) -> Self {
        Self::new(name, AttributeType::Primitive(ty), Constraint::Optional)
    }
    pub fn computed(name: &str, ty: Type) -> Self {
        Self::new(name, AttributeType::Primitive(ty), Constraint::Computed)
    }
    pub fn optional_computed(name: &str, ty: Type) -> Self {
        Self::new(
            name,
            AttributeType::Primitive(ty),
            Constraint::OptionalComputed,
        )
    }
    pub fn nested(
        name: &str,
        nesting: Nesting,
        constraint: Constraint,
        attributes: Vec<Attribute>,
    ) -> Self {
        Self::new(
            name,
            AttributeType::Nested {
                nesting,
                attributes,
            },
            constraint,
        )
    }

    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_string();
        self
    }
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self
    }
    pub fn deprecated(mut self, message: &str) -> Self {
        self.deprecation = Some(message.to_string());
        self
    }
    pub fn requires_replace(mut self) -> Self {
        self.requires_replace = true;
        self
    }
    pub fn use_state_for_unknown(mut self) -> Self {
        self.use_state_for_unknown = true;
        self
    }
    pub fn default_value(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }
    pub fn validate(mut self, validator: Validator) -> Self {
        self.validators.push(validator);
        self
    }

    /// The description Terraform shows: the text, then the default and what validators require.
    pub fn full_description(&self) -> String {
        let mut text = self.description.trim().to_string();
        if let Some(d) = &self.default {
            text.push_str(&format!(" Default: `{}`.", super::json::encode(d)));
        }
        for v in &self.validators {
            text.push_str(&format!(" Must be {}.", v.description()));
        }
        text.trim().to_string()
    }

    pub fn value_type(&self) -> Type {
        match &self.ty {
            AttributeType::Primitive(t) => t.clone(),
            AttributeType::Nested {
                nesting,
                attributes,
            } => {
                let obj = object_type(attributes, &[]);
                match nesting {
                    Nesting::Single | Nesting::Group => obj,
                    Nesting::List => Type::list(obj),
                    Nesting::Set => Type::set(obj),
                    Nesting::Map => Type::map(obj),
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NestedBlock {
    pub type_name: String,
    pub nesting: Nesting,
    pub block: Block,
    pub min_items: i64,
    pub max_items: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Block {
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
    pub description: String,
    pub deprecation: Option<String>,
}

impl Block {
    pub fn value_type(&self) -> Type {
        object_type(&self.attributes, &self.blocks)
    }

    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
}

fn object_type(attributes: &[Attribute], blocks: &[NestedBlock]) -> Type {
    let mut attrs: Vec<(String, Type)> = attributes
        .iter()
        .map(|a| (a.name.clone(), a.value_type()))
        .collect();
    for b in blocks {
        let obj = b.block.value_type();
        let ty = match b.nesting {
            Nesting::Single | Nesting::Group => obj,
            Nesting::List => Type::list(obj),
            Nesting::Set => Type::set(obj),
            Nesting::Map => Type::map(obj),
        };
        attrs.push((b.type_name.clone(), ty));
    }
    Type::object(attrs)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    /// The state schema version; bump it with an upgrader when stored state changes shape.
    pub version: i64,
    pub block: Block,
}

impl Schema {
    pub fn new(version: i64, description: &str, attributes: Vec<Attribute>) -> Self {
        Schema {
            version,
            block: Block {
                attributes,
                blocks: Vec::new(),
                description: description.to_string(),
                deprecation: None,
            },
        }
    }

    pub fn value_type(&self) -> Type {
        self.block.value_type()
    }

    /// Checks the rules Terraform applies to schemas (`internal_validate.go`) plus our own
    /// (defaults need OptionalComputed, write-only is not computed and not inside a set). Run by
    /// a unit test over every schema the provider serves.
    pub fn check(&self) -> Diagnostics {
        let mut diags = Diagnostics::new();
        check_attributes(
            &self.block.attributes,
            &AttributePath::root(),
            false,
            &mut diags,
        );
        for b in &self.block.blocks {
            check_name(&b.type_name, &AttributePath::root(), &mut diags);
            check_attributes(
                &b.block.attributes,
                &AttributePath::attr(&b.type_name),
                b.nesting == Nesting::Set,
                &mut diags,
            );
        }
        diags
    }
}

fn check_name(name: &str, parent: &AttributePath, diags: &mut Diagnostics) {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        diags.push(Diagnostic::provider_bug(
            "Invalid schema",
            format!("name {name:?} at {parent} must match [a-z0-9_]+"),
        ));
    }
}

fn check_attributes(
    attributes: &[Attribute],
    parent: &AttributePath,
    in_set: bool,
    diags: &mut Diagnostics,
) {
    let mut seen = std::collections::HashSet::new();
    for a in attributes {
        let path = parent.child_attr(&a.name);
        let bug = |msg: &str| Diagnostic::provider_bug("Invalid schema", format!("{path}: {msg}"));
        check_name(&a.name, parent, diags);
        if !seen.insert(a.name.clone()) {
            diags.push(bug("declared twice"));
        }
        if a.default.is_some() && a.constraint != Constraint::OptionalComputed {
            diags.push(bug("a default needs an optional and computed attribute"));
        }
        if a.write_only && (a.constraint.is_computed() || in_set) {
            diags.push(bug(
                "write-only attributes cannot be computed or inside a set",
            ));
        }
        if a.use_state_for_unknown && !a.constraint.is_computed() {
            diags.push(bug("use_state_for_unknown needs a computed attribute"));
        }
        if a.requires_replace && !a.constraint.is_configurable() {
            diags.push(bug(
                "requires_replace on an attribute the practitioner cannot set",
            ));
        }
        if let AttributeType::Nested {
            nesting,
            attributes,
        } = &a.ty
        {
            if *nesting == Nesting::Group {
                diags.push(bug("nested attributes cannot use group nesting"));
            }
            check_attributes(attributes, &path, in_set || *nesting == Nesting::Set, diags);
        }
    }
}
