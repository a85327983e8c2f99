# D0/D4: the service's migrations, applied exactly once, with the plan showing what will run.
# The database comes from the provider's `database_url` (or ARTIFORTRESS_DATABASE_URL).
resource "artifortress_migration" "schema" {
  dir = "${path.module}/db/migrations" # NNNN_name.sql, applied in file-name order
}

# Production: stop at a reviewed version, require the backup of this change, allow the one
# contract migration it contains, and accept a comment-only edit of an applied file.
# database_url is write-only and refresh gets no configuration: to re-read a database other
# than the provider's, Terraform's environment needs its password in PGPASSWORD or ~/.pgpass.
resource "artifortress_migration" "production" {
  dir              = "${path.module}/db/migrations"
  database_url     = var.production_database_url # write-only: never in state or plan
  target_version   = "0002_auth_and_audit.sql"
  backup_id        = var.pre_release_backup_id # required when the provider's environment is "production"
  allow_contract   = true
  accept_checksums = { "0001_core.sql" = "3f0a4c1d1e0b5c6a9e2f7d8c4b1a0e9f8d7c6b5a4e3f2d1c0b9a8e7f6d5c4b3a" }
  lock_timeout     = "10m"
  timeouts         = { create = "1h", update = "1h" }
}

# A database that already holds the schema but was never migrated through a ledger:
# record 0001 and 0002 as applied without running them, run the later files.
resource "artifortress_migration" "legacy" {
  dir              = "${path.module}/db/migrations"
  database_url     = var.legacy_database_url
  baseline_version = "0002_auth_and_audit.sql"
}

variable "production_database_url" {
  type      = string
  sensitive = true
  ephemeral = true # Terraform >= 1.10: not saved in plan files either
}

variable "pre_release_backup_id" {
  type = string
}

variable "legacy_database_url" {
  type      = string
  sensitive = true
  ephemeral = true
}

output "schema_head" {
  value = artifortress_migration.schema.head
}

# Import an existing database (ledger and all) by `host:port/database`:
#   terraform import artifortress_migration.schema db.internal:5432/artifortress
