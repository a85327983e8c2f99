//! Resources: one file each, joining a domain client to the protocol layer.

pub mod backup;
pub mod bootstrap;
pub mod migration;
pub mod release;
pub mod restore_drill;

use crate::protocol::framework::ModifyPlanResponse;
use crate::protocol::value::Value;
use crate::settings::Settings;

/// On create, a `bucket` left unset is planned as the provider's (unknown while that is).
pub(crate) fn plan_default_bucket(
    config: &Value,
    prior: &Value,
    settings: &Settings,
    resp: &mut ModifyPlanResponse,
) {
    if config.attr("bucket").is_null() && prior.is_null() {
        match settings.bucket(None) {
            Ok(Some(b)) => resp.planned_state.set_attr("bucket", b.into()),
            Ok(None) => {}
            Err(d) => resp.diagnostics.push(d.at_attr("bucket")),
        }
    }
}
