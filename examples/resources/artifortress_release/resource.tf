# Credentials for the hosts belong to the provider (refresh and import get no resource config):
#
# provider "artifortress" {
#   environment = "production"
#   ssh = {
#     user        = "deploy"
#     private_key = var.deploy_key             # or ARTIFORTRESS_SSH_PRIVATE_KEY, or the SSH agent
#     known_hosts = file("${path.module}/known_hosts")
#   }
# }

# Where things live: the defaults show the shape; a root module passes its own (CI applies this
# example to the dev environment's SSH hosts with the test bed's release tarballs).
variable "release_version" {
  type    = string
  default = "1.4.2"
}

variable "artifact_sha256" {
  type = string
}

variable "artifact_base" {
  description = "Where artifortress-<version>.tar.gz is: an https:// or file:// URL or a local directory."
  type        = string
  default     = "https://releases.example.com"
}

variable "deploy_dir" {
  type    = string
  default = "/opt/artifortress"
}

variable "hosts" {
  type = map(object({ address = string, port = optional(number), roles = list(string), api_url = optional(string) }))
  default = {
    "api-1"    = { address = "10.0.1.5", roles = ["api"], api_url = "http://10.0.1.5:8086" }
    "api-2"    = { address = "10.0.1.6", roles = ["api"], api_url = "http://10.0.1.6:8086" }
    "worker-1" = { address = "10.0.1.7", roles = ["worker"], port = 22 }
  }
}

variable "api_port" {
  description = "The port the API listens on (ASPNETCORE_URLS); each API host's api_url must use it."
  type        = number
  default     = 8086
}

variable "database" {
  type    = object({ host = string, port = number, name = string, user = string })
  default = { host = "db.internal", port = 5432, name = "artifortress", user = "artifortress" }
}

variable "object_storage" {
  type    = object({ endpoint = string, region = string, bucket = string, access_key = string })
  default = { endpoint = "https://s3.example.com", region = "us-east-1", bucket = "artifortress-production", access_key = "artifortress" }
}

variable "commands" {
  description = "How each role is restarted, checked and stopped on a host ({{release_dir}}, {{version}}, {{host}}, {{role}}, {{address}}, {{deploy_dir}} are filled in)."
  type        = map(string)
  # The systemd units of examples/modules/hosts (one worker process), whose sudoers rule lets the
  # deploy user run exactly these; with more worker processes use that module's `commands` output.
  default = {
    restart_api    = "sudo -n systemctl restart artifortress-api"
    restart_worker = "sudo -n systemctl restart artifortress-worker.target"
    worker_status  = "systemctl is-active --quiet artifortress-worker@1"
    stop_api       = "sudo -n systemctl stop artifortress-api"
    stop_worker    = "sudo -n systemctl stop artifortress-worker.target"
  }
}

variable "watch_duration" {
  type    = string
  default = "10m"
}

variable "database_password" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "s3_secret_key" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "bootstrap_token" {
  type      = string
  sensitive = true
  ephemeral = true
}

locals {
  npgsql = "Host=${var.database.host};Port=${var.database.port};Username=${var.database.user};Password=${var.database_password};Database=${var.database.name}"
}

resource "artifortress_migration" "schema" {
  dir = "${path.module}/db/migrations"
}

resource "artifortress_backup" "pre_release" {
  triggers = { release = var.release_version }
}

resource "artifortress_release" "production" {
  version = var.release_version
  artifact = {
    source = "${var.artifact_base}/artifortress-${var.release_version}.tar.gz" # a URL or a local path
    sha256 = var.artifact_sha256
  }
  deploy_dir = var.deploy_dir
  transport  = "ssh" # "local": this machine (single-box installs)

  hosts = var.hosts # name => { address, port (22), roles, api_url (http://<address>:8086) }

  # Write-only (Terraform >= 1.11): never stored; env_sha256 is their only trace in state.
  api_env_wo = {
    ConnectionStrings__Postgres = local.npgsql
    ObjectStorage__Endpoint     = var.object_storage.endpoint
    ObjectStorage__Bucket       = var.object_storage.bucket
    ObjectStorage__AccessKey    = var.object_storage.access_key
    ObjectStorage__SecretKey    = var.s3_secret_key
    Auth__BootstrapToken        = var.bootstrap_token
    # Templated per host when the env file is written: each API listens on its own address.
    ASPNETCORE_URLS = "http://{{address}}:${var.api_port}"
  }
  worker_env_wo = {
    ConnectionStrings__Postgres = local.npgsql
    Worker__BatchSize           = "100"
  }

  commands = var.commands

  strategy = {
    max_parallel      = 1
    consecutive_ready = 3
    health_timeout    = "5m"
    poll_interval     = "200ms"
    atomic            = true
    keep_releases     = 5
  }

  requires_schema = artifortress_migration.schema.head
  # No rollback past an applied class C (contract) migration: the way back is a restore.
  schema_classes = artifortress_migration.schema.applied_classes

  # D5: watch readiness (and, with the provider's admin_token, the backlog) after the rollout.
  watch = { duration = var.watch_duration, max_not_ready = "1m", on_backlog_growth = "rollback" }

  # D3: required when the provider's environment is "production".
  change = {
    window         = "2026-12-01T22:00:00Z/2026-12-01T23:30:00Z"
    rollback_owner = "oncall-platform"
    approved_by    = "CAB-1234"
    backup_id      = artifortress_backup.pre_release.id
    backup_prefix  = "backups/"
  }

  rehearse_rollback = false  # D2 (staging): roll back and forward again after the rollout
  on_destroy        = "keep" # "stop": run stop_api / stop_worker on every host

  timeouts = { create = "30m", update = "30m" }
}

output "live" {
  value = artifortress_release.production.host_versions
}
