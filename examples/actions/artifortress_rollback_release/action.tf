# Put every host of a release back on the release it ran before, now:
#   terraform apply -invoke=action.artifortress_rollback_release.previous
# Configured with the release's own attributes (the release, migration and backup of the
# artifortress_release example). Refused, touching nothing, when the previous
# release was deployed against a schema older than an applied class C migration: then the way
# back is artifortress_restore_database first.
#
# Terraform keeps no state for an action: after it, the release's next refresh shows the drift
# (version = "drifted: api-1=v1, ...") and the next plan deploys the configured version again.
# To stay on the previous release, set version and artifact to it in the configuration.
action "artifortress_rollback_release" "previous" {
  config {
    deploy_dir       = artifortress_release.production.deploy_dir
    transport        = artifortress_release.production.transport
    hosts            = artifortress_release.production.hosts
    commands         = artifortress_release.production.commands
    strategy         = artifortress_release.production.strategy
    worker_processes = artifortress_release.production.worker_processes
    deployed_schemas = artifortress_release.production.deployed_schemas
    schema_classes   = artifortress_migration.schema.applied_classes
    schema_head      = artifortress_migration.schema.head
    backup_id        = artifortress_backup.pre_release.id
  }
}
