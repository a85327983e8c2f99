# D3: a backup before every production change. A new release version takes a new backup; the
# migration refuses to run in production without it.
resource "artifortress_backup" "pre_release" {
  prefix      = "backups/production/"
  format      = "custom" # pg_dump's archive, uncompressed by pg_dump; `pg_restore -j` restores it
  compression = "zstd"   # streamed by the provider at zstd's fastest level; or "none"
  triggers    = { release = var.release_version }
  retention   = "retain" # keep the dump and manifest when this resource is replaced or destroyed
  labels      = { owner = "platform", change = var.change_ticket }
  timeouts    = { create = "2h" }
}

resource "artifortress_migration" "schema" {
  dir       = "${path.module}/db/migrations"
  backup_id = artifortress_backup.pre_release.id
}

variable "release_version" {
  type = string
}

variable "change_ticket" {
  type = string
}

output "backup" {
  value = {
    key            = artifortress_backup.pre_release.object_key
    sha256         = artifortress_backup.pre_release.sha256
    recovery_point = artifortress_backup.pre_release.snapshot_at
    migration_head = artifortress_backup.pre_release.migration_head
    packages       = artifortress_backup.pre_release.table_counts["packages"]
  }
}

# Import an existing backup by the key of its dump:
#   terraform import artifortress_backup.pre_release backups/production/20261127T053900Z-3f9a1c2b.dump.zst
