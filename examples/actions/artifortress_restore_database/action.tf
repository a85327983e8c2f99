# The way back after a class C (contract) migration (the service's
# docs/25-upgrade-rollback-runbook.md, Rollback Procedure step 3): stop the API and the worker,
# then restore the pre-release backup into the live database:
#   terraform apply -invoke=action.artifortress_restore_database.pre_release
# Refused unless confirm is the database's name and the backup's migration head is among the
# files in migrations_dir. A safety backup of the database as it is comes first; each step
# (checked, downloaded, safety backup, terminated, dropped, created, restored, verified) is
# printed as it happens. Then deploy the release that matches the restored schema.
resource "artifortress_backup" "pre_release" {
  prefix = "backups/"
}

action "artifortress_restore_database" "pre_release" {
  config {
    backup_id      = artifortress_backup.pre_release.id
    confirm        = "artifortress"
    migrations_dir = "${path.module}/db/migrations"
    # The schema the release you go back to needs (its requires_schema).
    minimum_head = "0003_outbox_and_jobs.sql"
  }
}
