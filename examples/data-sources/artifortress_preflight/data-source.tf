# D3: the production go/no-go. The read fails, listing every failed check, unless the change
# window is open, a rollback owner is named, a backup under the prefix is younger than an hour,
# the API is ready, the backlog has no critical breach and the migrations are clean.
data "artifortress_preflight" "release" {
  change_window  = var.change_window # "2026-12-01T22:00:00Z/2026-12-01T23:30:00Z"
  rollback_owner = "oncall-platform"
  max_backup_age = "1h"
  backup_prefix  = "backups/production/"
  migrations_dir = "${path.module}/db/migrations"
  allow_contract = false # pending class C (contract) migrations are a no-go
}

# The migration runs only after a "go", with the backup the preflight found.
resource "artifortress_migration" "schema" {
  dir       = "${path.module}/db/migrations"
  backup_id = data.artifortress_preflight.release.newest_backup_id
}

output "preflight" {
  value = { for c in data.artifortress_preflight.release.checks : c.name => c.detail }
}

variable "change_window" {
  type = string
}
