# Inputs of the staging environment. Everything secret is `ephemeral = true`: it is used only in
# provider blocks and write-only arguments, so it never reaches the state or a plan file. Give
# secrets as TF_VAR_ environment variables (from the CI secret store), the rest in a .tfvars file.

variable "release_version" {
  description = "The release to deploy (installed as releases/<version> on every host)."
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
  description = "The staging hosts (what a VM module would output): name => { address, port (SSH), role = api | worker }."
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

variable "deploy_dir" {
  description = "Directory on every host holding releases/, current, shared/ and the deploy lock."
  type        = string
  default     = "/opt/artifortress"
}

variable "release_on_destroy" {
  description = "`keep`: destroying leaves the service running; `stop`: it is stopped on every host."
  type        = string
  default     = "keep"
}

variable "migrations_dir" {
  description = "The service's migration files (NNNN_name.sql), as shipped with the release. Relative paths are relative to the directory Terraform runs in."
  type        = string
  default     = "../../acceptance-tests/testbed/migrations"
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

variable "admin_database_url" {
  description = "postgres:// URL of a role that may create roles and databases (bootstrap, drill)."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "database_name" {
  description = "The service's database (created by the bootstrap)."
  type        = string
  default     = "artifortress_staging"
}

variable "database_role" {
  description = "The login role that owns the service's database (created by the bootstrap)."
  type        = string
  default     = "artifortress_staging"
}

variable "db_password" {
  description = "The password of database_role."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "db_password_version" {
  description = "Bump it (1 -> 2) together with a new db_password to rotate the password."
  type        = number
  default     = 1
}

variable "database_on_destroy" {
  description = "`keep`: destroying forgets the database and role; `drop`: drops them (never the bucket)."
  type        = string
  default     = "keep"
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
  default     = "backups/staging/"
}

variable "backup_retention" {
  description = "`retain`: backups stay in the bucket when replaced or destroyed; `delete`: they are removed."
  type        = string
  default     = "retain"
}

# --- The service -------------------------------------------------------------------------------

variable "bootstrap_token" {
  description = "The service's bootstrap token (Auth__BootstrapToken)."
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
  default     = "artifortress_staging_drill"
}

variable "drill_report_key" {
  description = "Where the drill's Markdown report (and its .json twin) goes in the bucket."
  type        = string
  default     = "drills/staging/latest.md"
}
