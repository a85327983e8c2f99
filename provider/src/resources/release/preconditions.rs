//! The release's preconditions, checked at plan (what is known) and again at apply: the D3
//! production gate and the admin token's lifetime against the rollout and watch window.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clients::backup;
use crate::clients::gate;
use crate::clients::restore;
use crate::duration;
use crate::protocol::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::protocol::model::{Maybe, Planned};
use crate::protocol::value::Value;
use crate::settings::{Setting, Settings};

use super::model::{ReleaseModel, known, strategy, time_limit};
use super::{DEFAULT_BACKUP_PREFIX, DEFAULT_WATCH, MAX_BACKUP_AGE};

/// The D3 gate's checks; each failure is a diagnostic on `change`.
pub(super) async fn gate(
    settings: &Settings,
    config: &ReleaseModel<Planned>,
    at_apply: bool,
) -> Diagnostics {
    let mut diags = Diagnostics::new();
    match &settings.environment {
        Setting::Known(e) if e == "production" => {}
        _ => return diags,
    }
    let path = AttributePath::root().child_attr("change");
    if config.change.is_null() {
        diags.push(
            Diagnostic::error(
                "A production release needs `change`",
                "The provider's environment is \"production\": give `change = { window, rollback_owner, backup_id }` (the D3 gate).",
            )
            .at(path),
        );
        return diags;
    }
    if config.change.is_unknown() && !at_apply {
        // Checked at apply, once known.
        return diags;
    }
    // Unknown at apply (a provider bug): every check fails.
    let change = known(&config.change);
    let field =
        |f: fn(&super::model::ChangeModel) -> &Maybe<String>| change.map_or(&Maybe::Null, f);
    let now = Utc::now();
    for check in [
        gate::window_check(field(|c| &c.window).known().map(String::as_str), now),
        gate::owner_check(field(|c| &c.rollback_owner).known().map(String::as_str)),
    ] {
        let (attr, value) = if check.name == gate::CheckName::ChangeWindow {
            ("window", field(|c| &c.window))
        } else {
            ("rollback_owner", field(|c| &c.rollback_owner))
        };
        if !check.passed && (at_apply || !value.is_unknown()) {
            diags.push(
                Diagnostic::error(format!("Production gate: {}", check.name), check.detail)
                    .at(path.child_attr(attr)),
            );
        }
    }
    match field(|c| &c.backup_id) {
        Maybe::Unknown => {}
        Maybe::Known(id) => {
            let prefix = change
                .and_then(|c| c.backup_prefix.as_deref())
                .unwrap_or(DEFAULT_BACKUP_PREFIX);
            if let Err(d) = backup_fresh(settings, id, prefix, now).await {
                diags.push(d.at(path.child_attr("backup_id")));
            }
        }
        Maybe::Null => diags.push(
            Diagnostic::error(
                "Production gate: backup_id",
                "No backup given: take one before the release (`backup_id = artifortress_backup.pre_release.id`).",
            )
            .at(path.child_attr("backup_id")),
        ),
    }
    diags
}

async fn backup_fresh(
    settings: &Settings,
    id: &str,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<(), Diagnostic> {
    let bucket = settings.need_bucket(None, "change")?;
    let s3 = settings.object_store()?;
    // Found as the drill finds it: under `backup_prefix` first, then under whichever prefix
    // holds the id's manifest, so `artifortress_backup.x.id` works whatever the backup's prefix.
    let key = restore::find_manifest_key(&s3, &bucket, id, prefix)
        .await
        .map_err(|e| Diagnostic::error("Production gate: backup_id", e.to_string()))?;
    let m = backup::read_manifest(&s3, &bucket, &key)
        .await
        .map_err(|e| Diagnostic::error("Production gate: backup_id", e.to_string()))?
        .ok_or_else(|| {
            Diagnostic::error(
                "Production gate: backup_id",
                format!("Backup {id:?} does not exist (no manifest s3://{bucket}/{key})."),
            )
        })?;
    // The preflight's backup_age check (gate::backup_check), with this gate's own limit: the
    // backup named by `backup_id` must be younger than MAX_BACKUP_AGE (24 h), while the
    // preflight checks the newest backup under its prefix against `max_backup_age` (1 h by
    // default). Two limits on purpose: the gate names one backup the release was planned
    // with, which may be a day old by apply time; the preflight asks "is there a fresh one".
    let check = gate::backup_check(Some(&m), prefix, MAX_BACKUP_AGE, now);
    if !check.passed {
        return Err(Diagnostic::error(
            "Production gate: backup_id",
            format!(
                "Backup {id} (recovery point {}) is too old: a production release needs one younger than {}.",
                m.snapshot_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                duration::format(MAX_BACKUP_AGE)
            ),
        ));
    }
    Ok(())
}

/// The longest the release may use the provider's admin token: the rollout's worst case
/// (every batch waiting `health_timeout` for each role in turn) and then the watch window,
/// capped by the apply's timeout. With the arithmetic, for the error.
pub(super) fn token_need(
    config: &ReleaseModel<Planned>,
    hosts: usize,
    creating: bool,
) -> Option<(Duration, String)> {
    if config.watch.is_null() {
        return None;
    }
    let watch = known(&config.watch)
        .and_then(|w| w.duration.as_ref())
        .map_or(DEFAULT_WATCH, |d| d.get());
    let st = strategy(known(&config.strategy));
    let batches = hosts.div_ceil(st.max_parallel.max(1)).max(1) as u32;
    let roles = config
        .host_configs()
        .iter()
        .map(|h| h.roles.len())
        .max()
        .unwrap_or(1)
        .max(1) as u32;
    let rollout = st.health_timeout * batches * roles;
    let op = if creating { "create" } else { "update" };
    let limit = time_limit(
        &config.timeouts.known().cloned().unwrap_or(Value::Null),
        creating,
    );
    let f = duration::format;
    let mut why = format!(
        "{batches} batch(es) × {roles} role(s) × strategy.health_timeout {} = {} for the rollout, then watch.duration {}",
        f(st.health_timeout),
        f(rollout),
        f(watch)
    );
    let need = rollout + watch;
    if need > limit {
        why.push_str(&format!(", capped by the {op} timeout {}", f(limit)));
        return Some((limit, why));
    }
    Some((need, why))
}

/// An error when the admin token the watch window reads the ops summary with expires before
/// the release could be done with it (`admin_token_expires_at`).
pub(super) fn token_lifetime_check(
    settings: &Settings,
    config: &ReleaseModel<Planned>,
    hosts: usize,
    creating: bool,
    now: DateTime<Utc>,
) -> Option<Diagnostic> {
    let Setting::Known(expires) = &settings.admin_token_expires_at else {
        return None;
    };
    if !matches!(settings.admin_token, Setting::Known(_)) {
        return None;
    }
    let (need, why) = token_need(config, hosts, creating)?;
    let left = (*expires - now).to_std().unwrap_or_default();
    if left >= need {
        return None;
    }
    let minutes = need.as_secs().div_ceil(60) + 1;
    Some(
        Diagnostic::error(
            "The admin token expires before the release is done with it",
            format!(
                "The provider's admin_token expires at {} (in {}), but the watch window reads the ops summary with it for up to {}: {why}. Mint it with ttl_minutes >= {minutes} (ephemeral \"artifortress_admin_token\"), or shorten the watch window or strategy.health_timeout.",
                expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                duration::format(left),
                duration::format(need),
            ),
        )
        .at_attr("watch"),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::fixtures::{nested_null, release_config};
    use super::*;

    #[test]
    fn a_token_that_expires_before_the_watch_ends_is_refused() {
        let host = |roles: &[&str]| {
            Value::object([
                ("address", Value::string("10.0.0.1")),
                ("port", Value::Null),
                (
                    "roles",
                    Value::string_list(roles.iter().map(|r| r.to_string())),
                ),
                ("api_url", Value::Null),
            ])
        };
        let hosts = Value::Map(BTreeMap::from([
            ("api-1".to_string(), host(&["api", "worker"])),
            ("api-2".to_string(), host(&["api"])),
            ("api-3".to_string(), host(&["api"])),
        ]));
        let mut strategy = nested_null("strategy");
        strategy.set_attr("max_parallel", Value::int(2));
        strategy.set_attr("health_timeout", Value::string("2m"));
        let mut watch = nested_null("watch");
        watch.set_attr("duration", Value::string("10m"));
        let config = release_config(&[("hosts", hosts), ("strategy", strategy), ("watch", watch)]);
        let model = |v: &Value| ReleaseModel::planned(v).unwrap();
        // 2 batches × 2 roles × 2m = 8m, then 10m of watch.
        let (need, why) = token_need(&model(&config), 3, false).unwrap();
        assert_eq!(need, Duration::from_secs(18 * 60));
        assert!(why.contains("2 batch(es) × 2 role(s)"), "{why}");
        let now = Utc::now();
        // The provider's configuration as `Settings::from_config` reads it.
        let mut pcfg = Value::object(
            [
                "request_timeout",
                "environment",
                "api_url",
                "admin_token",
                "admin_token_expires_at",
                "bootstrap_token",
                "database_url",
                "object_storage",
                "ssh",
            ]
            .map(|k| (k, Value::Null)),
        );
        pcfg.set_attr("admin_token", Value::string("t"));
        pcfg.set_attr(
            "admin_token_expires_at",
            Value::string((now + chrono::Duration::minutes(15)).to_rfc3339()),
        );
        let settings = Settings::from_config(&pcfg).unwrap();
        let d = token_lifetime_check(&settings, &model(&config), 3, false, now).unwrap();
        assert!(d.detail.contains("for up to 18m0s"), "{}", d.detail);
        assert!(d.detail.contains("ttl_minutes >= 19"), "{}", d.detail);
        pcfg.set_attr(
            "admin_token_expires_at",
            Value::string((now + chrono::Duration::minutes(20)).to_rfc3339()),
        );
        let settings = Settings::from_config(&pcfg).unwrap();
        assert!(token_lifetime_check(&settings, &model(&config), 3, false, now).is_none());
        // Capped by the update timeout; no watch window: no need.
        let mut timeouts = nested_null("timeouts");
        timeouts.set_attr("update", Value::string("12m"));
        let mut capped = config.clone();
        capped.set_attr("timeouts", timeouts);
        let (need, why) = token_need(&model(&capped), 3, false).unwrap();
        assert_eq!(need, Duration::from_secs(12 * 60));
        assert!(why.contains("capped by the update timeout 12m0s"), "{why}");
        let mut unwatched = config.clone();
        unwatched.set_attr("watch", Value::Null);
        assert!(token_need(&model(&unwatched), 3, false).is_none());
    }
}
