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

variable "release_version" {
  type    = string
  default = "1.4.2"
}

variable "artifact_sha256" {
  type = string
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

resource "artifortress_migration" "schema" {
  dir = "${path.module}/db/migrations"
}

resource "artifortress_backup" "pre_release" {
  triggers = { release = var.release_version }
}

resource "artifortress_release" "production" {
  version = var.release_version
  artifact = {
    source = "https://releases.example.com/artifortress-${var.release_version}.tar.gz" # or a local path
    sha256 = var.artifact_sha256
  }
  deploy_dir = "/opt/artifortress"
  transport  = "ssh" # "local": this machine (single-box installs)

  hosts = {
    "api-1"    = { address = "10.0.1.5", roles = ["api"], api_url = "http://10.0.1.5:8086" }
    "api-2"    = { address = "10.0.1.6", roles = ["api"], api_url = "http://10.0.1.6:8086" }
    "worker-1" = { address = "10.0.1.7", roles = ["worker"], port = 22 }
  }

  # Write-only (Terraform >= 1.11): never stored; env_sha256 is their only trace in state.
  api_env_wo = {
    ASPNETCORE_URLS             = "http://0.0.0.0:8086"
    ConnectionStrings__Postgres = "Host=db.internal;Port=5432;Username=artifortress;Password=${var.database_password};Database=artifortress"
    ObjectStorage__Endpoint     = "https://s3.example.com"
    ObjectStorage__AccessKey    = "artifortress"
    ObjectStorage__SecretKey    = var.s3_secret_key
    ObjectStorage__Bucket       = "artifortress-production"
  }
  worker_env_wo = {
    ConnectionStrings__Postgres = "Host=db.internal;Port=5432;Username=artifortress;Password=${var.database_password};Database=artifortress"
    Worker__BatchSize           = "100"
  }

  commands = {
    restart_api    = "sudo systemctl restart artifortress-api"
    restart_worker = "sudo systemctl restart artifortress-worker"
    worker_status  = "systemctl is-active artifortress-worker"
    stop_api       = "sudo systemctl stop artifortress-api"
    stop_worker    = "sudo systemctl stop artifortress-worker"
  }

  strategy = {
    max_parallel      = 1
    consecutive_ready = 3
    health_timeout    = "5m"
    poll_interval     = "200ms"
    atomic            = true
    keep_releases     = 5
  }

  requires_schema = artifortress_migration.schema.head

  # D5: watch readiness (and, with the provider's admin_token, the backlog) after the rollout.
  watch = { duration = "10m", max_not_ready = "1m", on_backlog_growth = "rollback" }

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
