# After a failed apply Terraform leaves root outputs at their planned values (seen with 1.11.4:
# the release's state said v2, an output said `broken`, the version that failed), so this output
# need not say what runs. In a failure path read the resource, not this output:
# `terraform state show artifortress_release.app` or `terraform show -json`.
output "release" {
  description = "What runs on the hosts, and when the rollback was last rehearsed."
  value = {
    version          = artifortress_release.app.deployed_version
    previous_version = artifortress_release.app.previous_version
    host_versions    = artifortress_release.app.host_versions
    rehearsed_at     = artifortress_release.app.rehearsed_at
    revision         = artifortress_release.app.revision
  }
}

output "api_urls" {
  description = "The API of every API host."
  value       = module.hosts.api_urls
}

output "readiness" {
  description = "Readiness of every API host (`ready` after a successful apply)."
  value       = { for name, r in data.artifortress_readiness.api : name => r.status }
}

output "database" {
  description = "The service's database, without password."
  value       = artifortress_bootstrap.staging.database_url_template
}

output "schema_head" {
  description = "The newest applied migration."
  value       = artifortress_migration.schema.head
}

output "pre_release_backup" {
  description = "The backup taken before the current release."
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
    report_key  = var.drill_report_key
  }
}
