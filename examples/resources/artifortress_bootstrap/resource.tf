# D1: bootstrap the staging environment's database and bucket before the first deploy.
resource "artifortress_bootstrap" "staging" {
  admin_database_url        = var.admin_database_url # write-only; a role that may create roles and databases
  database                  = "artifortress_staging" # ^[A-Za-z_][A-Za-z0-9_]*$, at most 63 bytes
  owner_role                = "artifortress"
  owner_password_wo         = var.db_password        # write-only; never in state or plan
  owner_password_wo_version = 1                      # bump to set a new password
  bucket                    = "artifortress-staging" # default: the provider's object_storage.bucket
  create_bucket             = false                  # true: create it when absent
  on_destroy                = "keep"                 # or "drop": drop the database and the role (never the bucket)
}

variable "admin_database_url" {
  type      = string
  sensitive = true
  ephemeral = true # Terraform >= 1.10: kept out of plan files too
}

variable "db_password" {
  type      = string
  sensitive = true
  ephemeral = true
}

output "staging_database" {
  value = {
    id           = artifortress_bootstrap.staging.id
    url_template = artifortress_bootstrap.staging.database_url_template # no password
    checks       = artifortress_bootstrap.staging.checks
  }
}
