# Scheduled drift detection for an Artifortress environment: run `./drift-check.sh` from this
# directory (see README.md). It exits 0 when the database, the backup and the state agree, 2 on
# drift and 1 on error.
#
# Every provider setting comes from the CI job's environment: ARTIFORTRESS_API_URL,
# ARTIFORTRESS_BOOTSTRAP_TOKEN, ARTIFORTRESS_DATABASE_URL, ARTIFORTRESS_S3_ENDPOINT,
# ARTIFORTRESS_S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.

terraform {
  required_version = ">= 1.10" # ephemeral resources
  required_providers {
    artifortress = {
      source = "artifortress/artifortress"
    }
  }
}

provider "artifortress" {}

variable "migrations_dir" {
  type        = string
  description = "Directory of the service's migration files (NNNN_name.sql)."
  default     = "db/migrations"
}

variable "backup_prefix" {
  type        = string
  description = "Key prefix of the backup this configuration keeps."
  default     = "backups/ci-drift/"
}

# Drift here: a migration applied outside Terraform, an edited applied file, a reset database.
resource "artifortress_migration" "schema" {
  dir = var.migrations_dir
}

# Drift here: the dump deleted from the bucket (the plan proposes a new backup).
resource "artifortress_backup" "baseline" {
  prefix = var.backup_prefix
}

# A token for this run only, minted with the bootstrap token and revoked when the run ends; it
# never reaches the state or a plan file. Data sources take the provider's admin_token, so it
# goes to an aliased provider block.
ephemeral "artifortress_admin_token" "ci" {
  subject = "ci-drift"
}

provider "artifortress" {
  alias       = "minted"
  admin_token = ephemeral.artifortress_admin_token.ci.token
}

# The data sources are declared here, not inside the check blocks: a data source scoped in a
# check block is planned as "read during apply" on every run, so `plan -detailed-exitcode` would
# always exit 2 (hashicorp/terraform#35226). Neither fails the read: the checks turn their
# findings into warnings.
data "artifortress_readiness" "api" {}

# Every read writes an `ops.summary.read` row to the service's audit log.
data "artifortress_ops_summary" "backlog" {
  provider = artifortress.minted
}

check "readiness" {
  assert {
    condition     = data.artifortress_readiness.api.status == "ready"
    error_message = "Artifortress reports ${data.artifortress_readiness.api.status}, not ready."
  }
}

check "backlog" {
  assert {
    condition     = data.artifortress_ops_summary.backlog.worst_severity != "critical"
    error_message = "Critical backlog: ${join("; ", [for b in data.artifortress_ops_summary.backlog.breaches : b.detail if b.severity == "critical"])}."
  }
}

output "migration_head" {
  value = artifortress_migration.schema.head
}

output "backup_object_key" {
  value = artifortress_backup.baseline.object_key
}
