//! The Terraform rules enforced once for every resource, data source and action: configuration
//! checks (read-only attributes set, required ones missing, validators), defaults, write-only
//! nulling, the generic plan (computed attributes marked unknown, replacement paths) and the
//! plan-validity and apply-result checks Terraform itself would otherwise fail with.

use super::*;

/// Validators, read-only attributes set in configuration, required attributes left null,
/// write-only attributes when Terraform cannot handle them.
pub fn validate_config(schema: &Schema, config: &Value, ctx: &Context) -> Diagnostics {
    let mut diags = Diagnostics::new();
    check_config_attrs(
        &schema.block.attributes,
        config,
        &AttributePath::root(),
        ctx,
        &mut diags,
    );
    diags
}

fn check_config_attrs(
    attrs: &[Attribute],
    config: &Value,
    parent: &AttributePath,
    ctx: &Context,
    diags: &mut Diagnostics,
) {
    let Value::Object(_) = config else { return };
    for a in attrs {
        let path = parent.child_attr(&a.name);
        let v = config.attr(&a.name);
        match a.constraint {
            Constraint::Computed if !v.is_null() => diags.push(
                Diagnostic::error(
                    "Invalid configuration for read-only attribute",
                    format!("{path} is set by the provider and cannot be configured; remove it."),
                )
                .at(path.clone()),
            ),
            Constraint::Required if v.is_null() => diags.push(
                Diagnostic::error(
                    "Missing configuration for required attribute",
                    format!("{path} must be set."),
                )
                .at(path.clone()),
            ),
            _ => {}
        }
        if a.write_only && !v.is_null() && !ctx.write_only_allowed {
            diags.push(
                Diagnostic::error(
                    "Write-only attribute not supported",
                    format!(
                        "{path} is write-only, which needs Terraform 1.11 or later (or OpenTofu \
                         1.11 or later); upgrade, or leave it unset."
                    ),
                )
                .at(path.clone()),
            );
        }
        if let Some(msg) = &a.deprecation
            && !v.is_null()
        {
            diags.push(Diagnostic::warning("Deprecated attribute", msg.clone()).at(path.clone()));
        }
        for validator in &a.validators {
            validator.check(v, &path, diags);
        }
        if let AttributeType::Nested {
            nesting,
            attributes,
        } = &a.ty
        {
            for_each_nested(*nesting, v, &path, |child, child_path| {
                check_config_attrs(attributes, child, &child_path, ctx, diags)
            });
        }
    }
}

/// Calls `f` for every object of a nested attribute value, with its path.
fn for_each_nested(
    nesting: Nesting,
    value: &Value,
    path: &AttributePath,
    mut f: impl FnMut(&Value, AttributePath),
) {
    match (nesting, value) {
        (Nesting::Single | Nesting::Group, v @ Value::Object(_)) => f(v, path.clone()),
        (Nesting::List, Value::List(items)) | (Nesting::Set, Value::Set(items)) => {
            for (i, item) in items.iter().enumerate() {
                f(item, path.child_index(i as i64));
            }
        }
        (Nesting::Map, Value::Map(entries)) => {
            for (k, item) in entries {
                f(item, path.child_key(k));
            }
        }
        _ => {}
    }
}

/// Applies defaults where the configuration leaves an attribute null (top level and inside
/// single nested attributes).
pub fn apply_defaults(attrs: &[Attribute], config: &Value, target: &mut Value) {
    let Value::Object(_) = target else { return };
    for a in attrs {
        let cfg = config.attr(&a.name);
        if let Some(default) = &a.default
            && cfg.is_null()
        {
            target.set_attr(&a.name, default.clone());
        }
        if let AttributeType::Nested {
            nesting: Nesting::Single,
            attributes,
        } = &a.ty
            && let Some(child) = target.attr_mut(&a.name)
        {
            apply_defaults(attributes, cfg, child);
        }
    }
}

/// An action's schema: configuration only. A computed attribute there would be a value nobody
/// can see (an action has no state), so it is reported as a provider bug with its path; the
/// one exception is an optional attribute with a `default_value` (which the schema rules make
/// optional and computed): the action reads its default with `from_config`.
pub fn check_action_schema(type_name: &str, schema: &Schema) -> Diagnostics {
    let mut diags = Diagnostics::new();
    fn walk(attrs: &[Attribute], parent: &AttributePath, type_name: &str, diags: &mut Diagnostics) {
        for a in attrs {
            let path = parent.child_attr(&a.name);
            if a.constraint.is_computed()
                && !(a.constraint == Constraint::OptionalComputed && a.default.is_some())
            {
                diags.push(
                    Diagnostic::provider_bug(
                        "Invalid action schema",
                        format!("{type_name}: {path} is computed, but an action has no state"),
                    )
                    .at(path.clone()),
                );
            }
            if let AttributeType::Nested { attributes, .. } = &a.ty {
                walk(attributes, &path, type_name, diags);
            }
        }
    }
    walk(
        &schema.block.attributes,
        &AttributePath::root(),
        type_name,
        &mut diags,
    );
    diags
}

/// Nulls write-only attributes wherever they are.
pub fn null_write_only(attrs: &[Attribute], target: &mut Value) {
    for a in attrs {
        let Some(child) = target.attr_mut(&a.name) else {
            continue;
        };
        if a.write_only {
            *child = Value::Null;
            continue;
        }
        if let AttributeType::Nested { attributes, .. } = &a.ty {
            match child {
                Value::Object(_) => null_write_only(attributes, child),
                Value::List(items) | Value::Set(items) => items
                    .iter_mut()
                    .for_each(|i| null_write_only(attributes, i)),
                Value::Map(entries) => entries
                    .values_mut()
                    .for_each(|i| null_write_only(attributes, i)),
                _ => {}
            }
        }
    }
}

/// Marks computed attributes the configuration leaves null as unknown, except those that keep
/// their prior value (`use_state_for_unknown` on update). Recurses into single nested attributes.
fn mark_computed_unknown(attrs: &[Attribute], config: &Value, prior: &Value, planned: &mut Value) {
    for a in attrs {
        let cfg = config.attr(&a.name);
        let prior_v = prior.attr(&a.name);
        let Some(p) = planned.attr_mut(&a.name) else {
            continue;
        };
        if a.constraint.is_computed() && cfg.is_null() && a.default.is_none() {
            *p = if a.use_state_for_unknown && !prior.is_null() {
                prior_v.clone()
            } else {
                Value::unknown()
            };
            continue;
        }
        if let AttributeType::Nested {
            nesting: Nesting::Single,
            attributes,
        } = &a.ty
            && matches!(p, Value::Object(_))
        {
            mark_computed_unknown(attributes, cfg, prior_v, p);
        }
    }
}

/// The generic part of `PlanResourceChange` for create and update.
pub fn plan_generic(schema: &Schema, prior: &Value, proposed: &Value, config: &Value) -> Value {
    let attrs = &schema.block.attributes;
    let mut planned = proposed.clone();
    apply_defaults(attrs, config, &mut planned);
    null_write_only(attrs, &mut planned);
    if prior.is_null() || !planned.same(prior) {
        mark_computed_unknown(attrs, config, prior, &mut planned);
    }
    planned
}

/// Paths of `requires_replace` attributes whose planned value differs from the prior one.
pub fn replacement_paths(schema: &Schema, prior: &Value, planned: &Value) -> Vec<AttributePath> {
    if prior.is_null() || planned.is_null() {
        return Vec::new();
    }
    let mut out = Vec::new();
    collect_replace(
        &schema.block.attributes,
        prior,
        planned,
        &AttributePath::root(),
        &mut out,
    );
    out
}

fn collect_replace(
    attrs: &[Attribute],
    prior: &Value,
    planned: &Value,
    parent: &AttributePath,
    out: &mut Vec<AttributePath>,
) {
    for a in attrs {
        let path = parent.child_attr(&a.name);
        let (pr, pl) = (prior.attr(&a.name), planned.attr(&a.name));
        if a.requires_replace && !pl.same(pr) {
            out.push(path);
            continue;
        }
        if let AttributeType::Nested {
            nesting: Nesting::Single,
            attributes,
        } = &a.ty
            && matches!(pr, Value::Object(_))
            && matches!(pl, Value::Object(_))
        {
            collect_replace(attributes, pr, pl, &path, out);
        }
    }
}

/// Terraform's plan-validity rules (`AssertPlanValid`), so that a provider mistake is reported
/// here, naming the attribute, instead of as Terraform's "invalid plan" error.
pub fn check_plan_valid(
    schema: &Schema,
    prior: &Value,
    config: &Value,
    planned: &Value,
) -> Diagnostics {
    let mut diags = Diagnostics::new();
    check_plan_attrs(
        &schema.block.attributes,
        prior,
        config,
        planned,
        &AttributePath::root(),
        &mut diags,
    );
    diags
}

fn check_plan_attrs(
    attrs: &[Attribute],
    prior: &Value,
    config: &Value,
    planned: &Value,
    parent: &AttributePath,
    diags: &mut Diagnostics,
) {
    for a in attrs {
        let path = parent.child_attr(&a.name);
        let (c, p, r) = (
            config.attr(&a.name),
            planned.attr(&a.name),
            prior.attr(&a.name),
        );
        let bug = |what: String| {
            Diagnostic::provider_bug("Provider produced an invalid plan", what).at(path.clone())
        };
        if a.write_only {
            if !p.is_null() {
                diags.push(bug(format!("{path} is write-only but has a planned value")));
            }
            continue;
        }
        if let AttributeType::Nested {
            nesting: Nesting::Single,
            attributes,
        } = &a.ty
            && matches!(c, Value::Object(_))
            && matches!(p, Value::Object(_))
        {
            check_plan_attrs(attributes, r, c, p, &path, diags);
            continue;
        }
        let ok = match a.constraint {
            Constraint::Computed => true,
            _ if p.same(c) => true,
            _ if !c.is_null() && !r.is_null() && p == r => true,
            Constraint::OptionalComputed if c.is_null() => true,
            _ => false,
        };
        if !ok {
            diags.push(bug(format!(
                "planned value for {path} does not match its configuration"
            )));
        }
    }
}

/// Apply result rules: wholly known, and every known planned value kept.
pub fn check_apply_result(planned: &Value, new_state: &Value) -> Diagnostics {
    let mut diags = Diagnostics::new();
    let mut path = AttributePath::root();
    check_result(planned, new_state, &mut path, &mut diags);
    diags
}

fn check_result(
    planned: &Value,
    actual: &Value,
    path: &mut AttributePath,
    diags: &mut Diagnostics,
) {
    if !actual.is_wholly_known() {
        diags.push(
            Diagnostic::provider_bug(
                "Provider produced an invalid result after apply",
                format!("{path} is still unknown after apply"),
            )
            .at(path.clone()),
        );
        return;
    }
    match (planned, actual) {
        (Value::Unknown(_), _) => {}
        (Value::Object(p), Value::Object(a)) => {
            for (k, pv) in p {
                path.push_attr(k);
                check_result(pv, a.get(k).unwrap_or(&Value::Null), path, diags);
                path.pop();
            }
        }
        (Value::List(p), Value::List(a)) if p.len() == a.len() => {
            for (i, (pv, av)) in p.iter().zip(a).enumerate() {
                path.push_index(i as i64);
                check_result(pv, av, path, diags);
                path.pop();
            }
        }
        (Value::Map(p), Value::Map(a)) if p.keys().eq(a.keys()) => {
            for (k, pv) in p {
                path.push_key(k);
                check_result(pv, &a[k], path, diags);
                path.pop();
            }
        }
        (p, a) if !p.is_wholly_known() => {
            // A collection with unknowns inside may change shape; nothing more to compare.
            let _ = a;
        }
        (p, a) => {
            if p != a {
                diags.push(
                    Diagnostic::provider_bug(
                        "Provider produced an inconsistent result after apply",
                        format!("{path} was planned as one value and applied as another"),
                    )
                    .at(path.clone()),
                );
            }
        }
    }
}

/// A data source or ephemeral result must keep every configured value (Terraform checks this
/// with a null prior): only computed attributes may differ from the configuration.
pub fn check_result_keeps_config(schema: &Schema, config: &Value, result: &Value) -> Diagnostics {
    let mut diags: Diagnostics = check_plan_valid(schema, &Value::Null, config, result)
        .0
        .into_iter()
        .map(|mut d| {
            d.summary = "Provider produced an invalid object".into();
            d
        })
        .collect();
    if !result.is_wholly_known() {
        diags.push(Diagnostic::provider_bug(
            "Provider produced an invalid object",
            "the result still contains unknown values",
        ));
    }
    diags
}
