# After a failed apply Terraform leaves root outputs at their planned values (seen with 1.11.4:
# the release's state said v2, an output said `broken`, the version that failed), so this output
# need not say what runs. In a failure path read the resource, not this output:
# `terraform state show artifortress_release.app` or `terraform show -json`.
output "release" {
  description = "What runs on the hosts, and the last failed rollout, if any."
  value = {
    version          = artifortress_release.app.deployed_version
    previous_version = artifortress_release.app.previous_version
    host_versions    = artifortress_release.app.host_versions
    deployed_at      = artifortress_release.app.deployed_at
    last_failure     = artifortress_release.app.last_failure
  }
}

output "preflight" {
  description = "The go/no-go of this change, check by check (null outside a change)."
  value       = local.in_change ? { for c in data.artifortress_preflight.go[0].checks : c.name => "${c.passed ? "PASS" : "FAIL"}: ${c.detail}" } : null
}

output "readiness" {
  description = "Readiness of every API host."
  value       = { for name, r in data.artifortress_readiness.api : name => r.status }
}

output "schema_head" {
  description = "The newest applied migration."
  value       = artifortress_migration.schema.head
}

output "pre_release_backup" {
  description = "The backup taken before the current release: the one to restore to go back."
  value = {
    id          = artifortress_backup.pre_release.id
    object_key  = artifortress_backup.pre_release.object_key
    snapshot_at = artifortress_backup.pre_release.snapshot_at
  }
}

output "drill" {
  description = "The last restore drill."
  value = {
    passed      = artifortress_restore_drill.weekly.passed
    ran_at      = artifortress_restore_drill.weekly.ran_at
    rto_seconds = artifortress_restore_drill.weekly.rto_seconds
    rpo_seconds = artifortress_restore_drill.weekly.rpo_seconds
  }
}
