# Inputs of the production environment. Everything secret is `ephemeral = true`: it is used only
# in provider blocks and write-only arguments, so it never reaches the state or a plan file. Give
# secrets as TF_VAR_ environment variables (from the CI secret store), the rest in a .tfvars file.

variable "release_version" {
  description = "The release to deploy: one that passed staging (and its rollback rehearsal)."
  type        = string
}

variable "artifacts" {
  description = "Where the release tarballs are: `base` is a directory or an https:// URL holding artifortress-<version>.tar.gz; `sha256` maps each version to its tarball's sha256."
  type = object({
    base   = string
    sha256 = map(string)
  })

  validation {
    condition     = alltrue([for s in values(var.artifacts.sha256) : can(regex("^[0-9a-fA-F]{64}$", s))])
    error_message = "Every artifacts.sha256 value must be a sha256 (64 hex digits)."
  }
}

variable "hosts" {
  description = "The production hosts (what a VM module would output): name => { address, port (SSH), role = api | worker }."
  type = map(object({
    address = string
    port    = optional(number, 22)
    role    = string
  }))
}

variable "api_port" {
  description = "The port the API listens on, on every API host."
  type        = number
  default     = 8086
}

variable "api_url" {
  description = "The service's public URL (load balancer): the preflight's readiness and backlog checks, the ops summary during the watch window, and minting the run's admin token."
  type        = string
}

variable "deploy_dir" {
  description = "Directory on every host holding releases/, current, shared/ and the deploy lock."
  type        = string
  default     = "/opt/artifortress"
}

variable "migrations_dir" {
  description = "The service's migration files (NNNN_name.sql), as shipped with the release. Relative paths are relative to the directory Terraform runs in."
  type        = string
  default     = "../../acceptance-tests/testbed/migrations"
}

# --- The change (D3) ---------------------------------------------------------------------------

variable "change_window" {
  description = "The approved change window, RFC 3339 `START/END`. Set it only for the change: with it the preflight gate runs; without it (null) nothing can be deployed or migrated, and plans (drift checks, the weekly drill) work outside any window."
  type        = string
  default     = null
}

variable "rollback_owner" {
  description = "Who owns the rollback (a person or an on-call rotation)."
  type        = string
  default     = null
}

variable "approved_by" {
  description = "Who approved the change (a change ticket)."
  type        = string
  default     = null
}

variable "allow_contract" {
  description = "Whether pending class C (contract) migrations are approved for this change."
  type        = bool
  default     = false
}

variable "watch_duration" {
  description = "D5: how long to watch readiness and the backlog after the rollout."
  type        = string
  default     = "10m"
}

# --- SSH ---------------------------------------------------------------------------------------

variable "ssh_user" {
  description = "Login user on the hosts."
  type        = string
  default     = "deploy"
}

variable "ssh_authorized_keys" {
  description = "The public half (or halves) of the deploy key, OpenSSH `authorized_keys` lines: the deploy user of the hosts' cloud-init accepts them."
  type        = list(string)
}

variable "ssh_known_hosts_file" {
  description = "known_hosts file the hosts' keys are verified against."
  type        = string
}

variable "ssh_private_key" {
  description = "The deploy key (OpenSSH or PEM text, unencrypted)."
  type        = string
  sensitive   = true
  ephemeral   = true
}

# --- PostgreSQL --------------------------------------------------------------------------------

variable "database" {
  description = "The service's database and the role that owns it (also used by Terraform for migrations and backups)."
  type = object({
    host = string
    port = optional(number, 5432)
    name = string
    user = string
  })
}

variable "db_password" {
  description = "The password of database.user."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "drill_admin_database_url" {
  description = "postgres:// URL of a role that may create and drop databases on the server the drill restores to: a separate server, not production's."
  type        = string
  sensitive   = true
  ephemeral   = true
}

# --- Object storage ----------------------------------------------------------------------------

variable "bucket" {
  description = "The environment's bucket (what a bucket module would output)."
  type = object({
    name     = string
    endpoint = string
    region   = optional(string, "us-east-1")
  })
}

variable "s3_access_key_id" {
  description = "Access key of the service and of Terraform on the bucket."
  type        = string
}

variable "s3_secret_access_key" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "backup_prefix" {
  description = "Key prefix of this environment's backups."
  type        = string
  default     = "backups/production/"
}

# --- The service -------------------------------------------------------------------------------

variable "bootstrap_token" {
  description = "The service's bootstrap token (Auth__BootstrapToken): written to the API's env file, and used to mint this run's admin token."
  type        = string
  sensitive   = true
  ephemeral   = true
}

# --- D6 drill ----------------------------------------------------------------------------------

variable "drill_week" {
  description = "The drill runs again whenever this changes: pass the ISO week (`TF_VAR_drill_week=$(date -u +%G-W%V)`) from the scheduled job. With the hashicorp/time provider, `time_rotating` (rotation_days = 7) is the usual choice; it is not used here so that the example runs offline."
  type        = string
}

variable "drill_database" {
  description = "The scratch database the drill restores into (dropped afterwards)."
  type        = string
  default     = "artifortress_production_drill"
}
