//! `moved { from = terraform_data.deploy, to = artifortress_release.app }`: refused, with the
//! blocks to write instead.
//!
//! `MoveResourceState` gets the source object as stored and the target type name, never the
//! configuration of either side. A `terraform_data` or `null_resource` that ran `remote-exec`
//! provisioners stores its `id`, `input`/`output`/`triggers_replace` (or `triggers`) and nothing
//! else: no hosts, no deploy dir, no transport, no artifact. A release state cannot be derived
//! from that without making up what runs on the hosts, and a made-up prior state would make the
//! next plan (and its diff) lie. So the move is refused, naming the `removed` + `import` blocks
//! that do the same job honestly: the old object is forgotten without its destroy-time
//! provisioners running, and the release reads the hosts (import by ID) or is created.

use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{MoveStateRequest, MovedState, move_not_supported};

use super::TYPE_NAME;

/// The remote-exec deployment resources users come from, by type name.
const DEPLOYMENT_SOURCES: &[&str] = &["terraform_data", "null_resource"];

pub(super) fn move_state(req: MoveStateRequest<'_>) -> Result<MovedState, Diagnostics> {
    if !DEPLOYMENT_SOURCES.contains(&req.source_type_name) {
        return Err(move_not_supported(TYPE_NAME, &req).into());
    }
    Err(refusal(req.source_type_name).into())
}

fn refusal(source: &str) -> Diagnostic {
    Diagnostic::error(
        format!("Cannot move {source} to {TYPE_NAME}"),
        format!(
            "A {source} records no hosts, deploy directory, transport or artifact (Terraform \
sends the provider only its stored attributes, not the configuration of either side), so an \
{TYPE_NAME} state made from it would be made up, and the next plan would not show what really \
runs on the hosts. Replace the `moved` block with these two blocks (NAME: the names of your \
`from` and `to`):

  removed {{
    from = {source}.NAME
    lifecycle {{
      destroy = false
    }}
  }}

  import {{
    to = {TYPE_NAME}.NAME
    id = \"/opt/artifortress,api-1=10.0.1.5,api-2=10.0.1.6,worker-1=10.0.1.7/worker\"
  }}

The `removed` block (Terraform 1.7 or later) forgets the {source} without destroying it, so its \
destroy-time provisioners do not run. The import ID is `[local:]<deploy_dir>,<host>=<address>[:<port>][/<role>+<role>],...`: \
the release then reads each host's live release, artifact checksum and env files, and the plan \
shows only what differs from the configuration. Import only hosts that already run a release in \
the provider's layout (`<deploy_dir>/releases/<version>`, `current`); otherwise leave the \
`import` block out and the plan creates the release: its first apply stages the artifact on \
every host and switches `current`, leaving files the provisioners wrote elsewhere alone."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(
        source: &'a str,
        provider: &'a str,
        state: &'a serde_json::Value,
    ) -> MoveStateRequest<'a> {
        MoveStateRequest {
            source_provider_address: provider,
            source_type_name: source,
            source_schema_version: 0,
            source_state: state,
            source_private: &[],
        }
    }

    #[test]
    fn terraform_data_and_null_resource_get_the_removed_and_import_blocks() {
        let state = serde_json::json!({"id": "d2f0", "input": "v1", "output": "v1", "triggers_replace": null});
        for (source, provider) in [
            ("terraform_data", "terraform.io/builtin/terraform"),
            ("null_resource", "registry.terraform.io/hashicorp/null"),
        ] {
            let diags = move_state(request(source, provider, &state)).unwrap_err();
            let d = &diags.0[0];
            assert!(d.is_error());
            assert_eq!(
                d.summary,
                format!("Cannot move {source} to artifortress_release")
            );
            assert!(
                d.detail.contains(&format!("from = {source}.NAME")),
                "{}",
                d.detail
            );
            assert!(d.detail.contains("destroy = false"), "{}", d.detail);
            assert!(
                d.detail.contains("to = artifortress_release.NAME"),
                "{}",
                d.detail
            );
        }
    }

    #[test]
    fn the_example_import_id_is_one_the_release_accepts() {
        let d = refusal("terraform_data");
        let id = d
            .detail
            .lines()
            .find_map(|l| l.trim().strip_prefix("id = "))
            .unwrap()
            .trim_matches('"');
        assert!(super::super::refresh::parse_id(id).is_ok(), "{id}");
    }

    #[test]
    fn other_sources_get_the_generic_refusal() {
        let state = serde_json::json!({"id": "i-123"});
        let diags = move_state(request(
            "aws_instance",
            "registry.terraform.io/hashicorp/aws",
            &state,
        ))
        .unwrap_err();
        assert_eq!(diags.0[0].summary, "Move not supported");
        assert!(diags.0[0].detail.contains("aws_instance"));
    }
}
