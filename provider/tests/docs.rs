//! Registry-format docs (`docs/`, actions included: `docs/actions/<name>.md` from
//! `examples/actions/<type>/action.tf`) are generated from the schemas and `examples/`, never edited
//! by hand. This test fails when they are out of date; `make docs` (or
//! `UPDATE_DOCS=1 cargo test -p terraform-provider-artifortress --test docs`) rewrites them.

use std::path::{Path, PathBuf};

use artifortress_provider::protocol::framework::{ForImport, IdentitySchema, Provider};
use artifortress_provider::protocol::schema::{
    Attribute, AttributeType, Constraint, Nesting, Schema,
};
use artifortress_provider::protocol::types::Type;
use artifortress_provider::provider::ArtifortressProvider;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "Boolean".into(),
        Type::Number => "Number".into(),
        Type::String => "String".into(),
        Type::Dynamic => "Dynamic".into(),
        Type::List(e) => format!("List of {}", type_name(e)),
        Type::Set(e) => format!("Set of {}", type_name(e)),
        Type::Map(e) => format!("Map of {}", type_name(e)),
        Type::Tuple(_) => "Tuple".into(),
        Type::Object { .. } => "Object".into(),
    }
}

fn attr_type(a: &Attribute) -> String {
    match &a.ty {
        AttributeType::Primitive(t) => type_name(t),
        AttributeType::Nested { nesting, .. } => match nesting {
            Nesting::Single | Nesting::Group => "Attributes".into(),
            Nesting::List => "Attributes List".into(),
            Nesting::Set => "Attributes Set".into(),
            Nesting::Map => "Attributes Map".into(),
        },
    }
}

/// The description as Terraform sees it (the protocol adds defaults and validators).
fn description(a: &Attribute) -> String {
    let text = a.full_description();
    let mut flags = Vec::new();
    if a.sensitive {
        flags.push("Sensitive");
    }
    if a.write_only {
        flags.push("Write-only: never stored in state");
    }
    if a.deprecation.is_some() {
        flags.push("Deprecated");
    }
    if flags.is_empty() {
        text.trim().to_string()
    } else {
        format!("({}) {}", flags.join(", "), text.trim())
    }
}

/// Sections in tfplugindocs order, nested schemas after them.
fn render_attributes(
    attrs: &[Attribute],
    anchor: &str,
    out: &mut String,
    nested: &mut Vec<(String, Vec<Attribute>)>,
) {
    type Section = (&'static str, fn(Constraint) -> bool);
    let sections: [Section; 3] = [
        ("Required", |c| c == Constraint::Required),
        ("Optional", |c| {
            matches!(c, Constraint::Optional | Constraint::OptionalComputed)
        }),
        ("Read-Only", |c| c == Constraint::Computed),
    ];
    for (title, wanted) in sections {
        let mut items: Vec<&Attribute> = attrs.iter().filter(|a| wanted(a.constraint)).collect();
        if items.is_empty() {
            continue;
        }
        items.sort_by(|a, b| a.name.cmp(&b.name));
        out.push_str(&format!("\n### {title}\n\n"));
        for a in items {
            let path = if anchor.is_empty() {
                a.name.clone()
            } else {
                format!("{anchor}.{}", a.name)
            };
            let mut line = format!("- `{}` ({}) {}", a.name, attr_type(a), description(a));
            if let AttributeType::Nested { attributes, .. } = &a.ty {
                line.push_str(&format!(
                    " (see [below for nested schema](#nestedatt--{}))",
                    path.replace('.', "--")
                ));
                nested.push((path, attributes.clone()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

/// The registry's `## Import` section (tfplugindocs' layout): `import/by-identity.tf` with the
/// identity schema, `import/by-string-id.tf` and `import/import.sh` beside the example, each
/// shown when present (in a directory of their own, which Terraform does not load when the
/// example is applied).
fn render_import(identity: Option<&IdentitySchema>, example: &Path) -> String {
    let dir = example.with_file_name("import");
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let (by_identity, by_id, cli) = (
        read("by-identity.tf"),
        read("by-string-id.tf"),
        read("import.sh"),
    );
    if by_identity.is_none() && by_id.is_none() && cli.is_none() {
        return String::new();
    }
    let mut out = String::from("\n## Import\n\nImport is supported using the following syntax:\n");
    if let (Some(tf), Some(identity)) = (&by_identity, identity) {
        out.push_str(&format!(
            "\nIn Terraform v1.12.0 and later, the [`import` block](https://developer.hashicorp.com/terraform/language/import) can be used with the `identity` attribute. For example:\n\n```terraform\n{}\n```\n",
            tf.trim_end()
        ));
        out.push_str("\n### Identity Schema\n");
        for (title, wanted) in [
            ("Required", ForImport::Required),
            ("Optional", ForImport::Optional),
        ] {
            let attrs: Vec<_> = identity
                .attributes
                .iter()
                .filter(|a| a.import == wanted)
                .collect();
            if attrs.is_empty() {
                continue;
            }
            out.push_str(&format!("\n#### {title}\n\n"));
            for a in attrs {
                out.push_str(&format!(
                    "- `{}` ({}) {}\n",
                    a.name,
                    type_name(&a.ty),
                    a.description
                ));
            }
        }
    }
    if let Some(tf) = &by_id {
        out.push_str(&format!(
            "\nIn Terraform v1.5.0 and later, the [`import` block](https://developer.hashicorp.com/terraform/language/import) can be used with the `id` attribute. For example:\n\n```terraform\n{}\n```\n",
            tf.trim_end()
        ));
    }
    if let Some(sh) = &cli {
        out.push_str(&format!(
            "\nThe [`terraform import` command](https://developer.hashicorp.com/terraform/cli/commands/import) can be used, for example:\n\n```shell\n{}\n```\n",
            sh.trim_end()
        ));
    }
    out
}

fn render(
    kind: &str,
    name: &str,
    schema: &Schema,
    identity: Option<&IdentitySchema>,
    example: &Path,
) -> String {
    let title = match kind {
        "Provider" => "artifortress Provider".to_string(),
        _ => format!("{name} {kind} - artifortress"),
    };
    let heading = match kind {
        "Provider" => "artifortress Provider".to_string(),
        _ => format!("{name} ({kind})"),
    };
    let first_sentence = schema
        .block
        .description
        .split(". ")
        .next()
        .unwrap_or("")
        .trim_end_matches('.');
    let mut out = format!(
        "---\n# generated by provider/tests/docs.rs from the schema and examples/; do not edit\npage_title: \"{title}\"\nsubcategory: \"\"\ndescription: |-\n  {first_sentence}.\n---\n\n# {heading}\n\n{}\n",
        schema.block.description
    );
    if let Ok(text) = std::fs::read_to_string(example) {
        out.push_str(&format!(
            "\n## Example Usage\n\n```terraform\n{}\n```\n",
            text.trim_end()
        ));
    }
    // Hand-written sections (behaviour, caveats) live beside the example as notes.md.
    if let Ok(notes) = std::fs::read_to_string(example.with_file_name("notes.md")) {
        out.push_str(&format!("\n{}\n", notes.trim_end()));
    }
    out.push_str(&render_import(identity, example));
    out.push_str("\n## Schema\n");
    let mut nested = Vec::new();
    render_attributes(&schema.block.attributes, "", &mut out, &mut nested);
    while !nested.is_empty() {
        let (path, attrs) = nested.remove(0);
        out.push_str(&format!(
            "\n<a id=\"nestedatt--{}\"></a>\n### Nested Schema for `{path}`\n",
            path.replace('.', "--")
        ));
        let mut more = Vec::new();
        render_attributes(&attrs, &path, &mut out, &mut more);
        nested.extend(more);
    }
    // Computed lists of objects: spell out the object.
    for a in &schema.block.attributes {
        if let AttributeType::Primitive(Type::List(e)) = &a.ty
            && let Type::Object { attributes, .. } = e.as_ref()
        {
            out.push_str(&format!("\n### Elements of `{}`\n\n", a.name));
            for (k, t) in attributes {
                out.push_str(&format!("- `{k}` ({})\n", type_name(t)));
            }
        }
    }
    out
}

#[test]
fn docs_are_generated_from_the_schemas() {
    let provider = ArtifortressProvider;
    let mut pages = vec![(
        repo().join("docs/index.md"),
        render(
            "Provider",
            "artifortress",
            &provider.schema(),
            None,
            &repo().join("examples/provider/provider.tf"),
        ),
    )];
    for ds in provider.data_sources() {
        let short = ds.type_name().trim_start_matches("artifortress_");
        pages.push((
            repo().join(format!("docs/data-sources/{short}.md")),
            render(
                "Data Source",
                ds.type_name(),
                &ds.schema(),
                None,
                &repo().join(format!(
                    "examples/data-sources/{}/data-source.tf",
                    ds.type_name()
                )),
            ),
        ));
    }
    for r in provider.resources() {
        let short = r.type_name().trim_start_matches("artifortress_");
        pages.push((
            repo().join(format!("docs/resources/{short}.md")),
            render(
                "Resource",
                r.type_name(),
                &r.schema(),
                r.identity_schema().as_ref(),
                &repo().join(format!("examples/resources/{}/resource.tf", r.type_name())),
            ),
        ));
    }
    for e in provider.ephemeral_resources() {
        let short = e.type_name().trim_start_matches("artifortress_");
        pages.push((
            repo().join(format!("docs/ephemeral-resources/{short}.md")),
            render(
                "Ephemeral Resource",
                e.type_name(),
                &e.schema(),
                None,
                &repo().join(format!(
                    "examples/ephemeral-resources/{}/ephemeral-resource.tf",
                    e.type_name()
                )),
            ),
        ));
    }
    for a in provider.actions() {
        let short = a.type_name().trim_start_matches("artifortress_");
        pages.push((
            repo().join(format!("docs/actions/{short}.md")),
            render(
                "Action",
                a.type_name(),
                &a.schema(),
                None,
                &repo().join(format!("examples/actions/{}/action.tf", a.type_name())),
            ),
        ));
    }
    for l in provider.list_resources() {
        let short = l.type_name().trim_start_matches("artifortress_");
        pages.push((
            repo().join(format!("docs/list-resources/{short}.md")),
            render(
                "List Resource",
                l.type_name(),
                &l.schema(),
                None,
                &repo().join(format!(
                    "examples/list-resources/{}/{short}s.tfquery.hcl",
                    l.type_name()
                )),
            ),
        ));
    }
    let update = std::env::var_os("UPDATE_DOCS").is_some();
    let mut stale = Vec::new();
    for (path, text) in pages {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, text).unwrap();
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "docs out of date: {stale:?}; run `make docs` and commit the result"
    );
}
