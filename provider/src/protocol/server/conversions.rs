//! Conversions to the wire: attribute paths, diagnostics, schemas and timestamps as
//! tfplugin6 messages.

use crate::protocol::diagnostics::{AttributePath, Diagnostics, Severity, Step};
use crate::protocol::framework::{ForImport, IdentitySchema};
use crate::protocol::proto::tfplugin6 as pb;
use crate::protocol::schema::{Attribute, AttributeType, Block, Nesting, Schema};

pub(crate) fn to_proto_path(path: &AttributePath) -> pb::AttributePath {
    use pb::attribute_path::step::Selector;
    pb::AttributePath {
        steps: path
            .steps
            .iter()
            .map(|s| pb::attribute_path::Step {
                selector: Some(match s {
                    Step::Attribute(n) => Selector::AttributeName(n.clone()),
                    Step::Key(k) => Selector::ElementKeyString(k.clone()),
                    Step::Index(i) => Selector::ElementKeyInt(*i),
                }),
            })
            .collect(),
    }
}

pub(super) fn to_proto_diags(diags: &Diagnostics) -> Vec<pb::Diagnostic> {
    diags
        .iter()
        .map(|d| pb::Diagnostic {
            severity: match d.severity {
                Severity::Error => pb::diagnostic::Severity::Error as i32,
                Severity::Warning => pb::diagnostic::Severity::Warning as i32,
            },
            summary: d.summary.clone(),
            detail: d.detail.clone(),
            attribute: d.attribute.as_ref().map(to_proto_path),
        })
        .collect()
}

pub(super) fn to_proto_identity_schema(schema: &IdentitySchema) -> pb::ResourceIdentitySchema {
    pb::ResourceIdentitySchema {
        version: schema.version,
        identity_attributes: schema
            .attributes
            .iter()
            .map(|a| pb::resource_identity_schema::IdentityAttribute {
                name: a.name.to_string(),
                r#type: a.ty.to_json_bytes(),
                required_for_import: a.import == ForImport::Required,
                optional_for_import: a.import == ForImport::Optional,
                description: a.description.to_string(),
            })
            .collect(),
    }
}

pub(super) fn to_proto_schema(schema: &Schema) -> pb::Schema {
    pb::Schema {
        version: schema.version,
        block: Some(to_proto_block(&schema.block, schema.version)),
    }
}

fn to_proto_block(block: &Block, version: i64) -> pb::schema::Block {
    pb::schema::Block {
        version,
        attributes: block.attributes.iter().map(to_proto_attribute).collect(),
        block_types: block
            .blocks
            .iter()
            .map(|b| pb::schema::NestedBlock {
                type_name: b.type_name.clone(),
                block: Some(to_proto_block(&b.block, 0)),
                nesting: match b.nesting {
                    Nesting::Single => pb::schema::nested_block::NestingMode::Single,
                    Nesting::List => pb::schema::nested_block::NestingMode::List,
                    Nesting::Set => pb::schema::nested_block::NestingMode::Set,
                    Nesting::Map => pb::schema::nested_block::NestingMode::Map,
                    Nesting::Group => pb::schema::nested_block::NestingMode::Group,
                } as i32,
                min_items: b.min_items,
                max_items: b.max_items,
            })
            .collect(),
        description: block.description.clone(),
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: block.deprecation.is_some(),
        deprecation_message: block.deprecation.clone().unwrap_or_default(),
    }
}

fn to_proto_attribute(a: &Attribute) -> pb::schema::Attribute {
    let (ty, nested_type) = match &a.ty {
        AttributeType::Primitive(t) => (t.to_json_bytes(), None),
        AttributeType::Nested {
            nesting,
            attributes,
        } => {
            let nesting = match nesting {
                Nesting::Single | Nesting::Group => pb::schema::object::NestingMode::Single,
                Nesting::List => pb::schema::object::NestingMode::List,
                Nesting::Set => pb::schema::object::NestingMode::Set,
                Nesting::Map => pb::schema::object::NestingMode::Map,
            };
            #[allow(deprecated)]
            let object = pb::schema::Object {
                attributes: attributes.iter().map(to_proto_attribute).collect(),
                nesting: nesting as i32,
                min_items: 0,
                max_items: 0,
            };
            (Vec::new(), Some(object))
        }
    };
    let description = a.full_description();
    use crate::protocol::schema::Constraint::*;
    pb::schema::Attribute {
        name: a.name.clone(),
        r#type: ty,
        nested_type,
        description,
        required: a.constraint == Required,
        optional: matches!(a.constraint, Optional | OptionalComputed),
        computed: matches!(a.constraint, Computed | OptionalComputed),
        // Write-only attributes stay declared sensitive, as they have been since 0.1.0. The flag
        // puts their (null) paths in the state's `sensitive_attributes`, and every state written
        // so far holds them: a schema without the flag makes Terraform (1.11.4 and 1.15.5 alike)
        // plan an in-place update with no visible change for every such resource, once
        // (`state_upgrade::state_written_by_earlier_releases_plans_empty_after_the_upgrade`).
        // The cost is Terraform 1.11's own bug: it orders two or more such paths at random, so
        // a clean `plan -refresh-only -detailed-exitcode` of a bootstrap or release can exit 2
        // under 1.11 (hashicorp/terraform#36403, fixed in 1.12 by #36465;
        // examples/ci-drift/README.md).
        sensitive: a.sensitive,
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: a.deprecation.is_some(),
        write_only: a.write_only,
        deprecation_message: a.deprecation.clone().unwrap_or_default(),
    }
}

pub(super) fn timestamp(t: std::time::SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}
