# The staging environment: D1 bootstrap, D0 migrations, a backup before every release, the
# release with a D2 rollback rehearsal, a readiness gate on the deployed API, and the weekly D6
# restore drill. The hosts and the bucket come from modules (here: local stand-ins with the
# outputs a VM module and a bucket module would have). See README.md.

terraform {
  required_version = ">= 1.11" # write-only arguments
  required_providers {
    artifortress = {
      source = "artifortress/artifortress"
    }
  }
}

# The hosts, and the cloud-init user data that makes each one (its `user_data` output): the deploy
# user with the public half of the deploy key, the ASP.NET Core runtime, the systemd units and
# their sudoers rule.
module "hosts" {
  source                 = "../modules/hosts"
  hosts                  = var.hosts
  api_port               = var.api_port
  deploy_dir             = var.deploy_dir
  deploy_user            = var.ssh_user
  deploy_authorized_keys = var.ssh_authorized_keys
}

module "bucket" {
  source   = "../modules/bucket"
  name     = var.bucket.name
  endpoint = var.bucket.endpoint
  region   = var.bucket.region
}

locals {
  # Provider settings; they hold ephemeral values, so they are only used in provider blocks.
  object_storage = {
    endpoint          = module.bucket.endpoint
    region            = module.bucket.region
    bucket            = module.bucket.name
    access_key_id     = var.s3_access_key_id
    secret_access_key = var.s3_secret_access_key
    force_path_style  = true
  }
  ssh = {
    user        = var.ssh_user
    private_key = var.ssh_private_key
    known_hosts = file(var.ssh_known_hosts_file)
  }

  # The service's database, from the bootstrap's URL template (no password in it) and the
  # password. The template is known at plan, so the first plan tries the database before the
  # bootstrap made it and warns that it is not reachable yet (the migration is then planned as
  # "known after apply").
  db       = regex("^postgres://([^@]+)@([^:/]+):([0-9]+)/(.+)$", artifortress_bootstrap.staging.database_url_template)
  db_url   = "postgres://${local.db[0]}:${urlencode(var.db_password)}@${local.db[1]}:${local.db[2]}/${local.db[3]}"
  npgsql   = "Host=${local.db[1]};Port=${local.db[2]};Username=${local.db[0]};Password=${var.db_password};Database=${local.db[3]}"
  artifact = "artifortress-${var.release_version}.tar.gz"
}

# The default provider: the admin connection (bootstrap refresh and destroy, the drill) and the
# bucket.
provider "artifortress" {
  environment    = "staging"
  database_url   = var.admin_database_url
  object_storage = local.object_storage
}

# The service's own database as this alias's database_url: refresh gets no resource
# configuration, so a write-only URL on the resources could not be used to refresh them. The
# release uses it too, so that `requires_schema` is checked against this database.
provider "artifortress" {
  alias          = "service_db"
  environment    = "staging"
  database_url   = local.db_url
  object_storage = local.object_storage
  ssh            = local.ssh
}

# D1: the database and its owner role; the bucket verified (created when absent) with a
# put/get/delete probe.
resource "artifortress_bootstrap" "staging" {
  admin_database_url        = var.admin_database_url # write-only
  database                  = var.database_name
  owner_role                = var.database_role
  owner_password_wo         = var.db_password # write-only
  owner_password_wo_version = var.db_password_version
  bucket                    = module.bucket.name
  create_bucket             = true
  on_destroy                = var.database_on_destroy
}

# A backup before every release (and before its migrations): a new version takes a new one.
resource "artifortress_backup" "pre_release" {
  provider  = artifortress.service_db
  prefix    = var.backup_prefix
  retention = var.backup_retention
  triggers  = { release = var.release_version }
}

# D0: the service's migrations, each exactly once.
resource "artifortress_migration" "schema" {
  provider   = artifortress.service_db
  dir        = var.migrations_dir
  depends_on = [artifortress_backup.pre_release]
}

# D4 + D2: the API and the worker rolled out one host at a time, each waited for until ready;
# then the rollback rehearsed (back to the previous release, ready, forward again, ready).
resource "artifortress_release" "app" {
  provider = artifortress.service_db
  version  = var.release_version
  artifact = {
    source = "${var.artifacts.base}/${local.artifact}"
    sha256 = lookup(var.artifacts.sha256, var.release_version, "")
  }
  deploy_dir = var.deploy_dir
  hosts      = module.hosts.hosts

  # Write-only: never stored; env_sha256 is their only trace in the state.
  api_env_wo = {
    ConnectionStrings__Postgres = local.npgsql
    ObjectStorage__Endpoint     = module.bucket.endpoint
    ObjectStorage__Bucket       = module.bucket.name
    ObjectStorage__AccessKey    = var.s3_access_key_id
    ObjectStorage__SecretKey    = var.s3_secret_access_key
    Auth__BootstrapToken        = var.bootstrap_token
    ASPNETCORE_ENVIRONMENT      = "Staging"
    # Expanded per host when its env file is written: each API listens on its own address.
    ASPNETCORE_URLS = "http://{{address}}:${var.api_port}"
  }
  worker_env_wo = {
    ConnectionStrings__Postgres = local.npgsql
  }

  # The release's own control script (the test bed's releases carry one, and the dev environment's
  # hosts have no systemd). On hosts made with the host module's user data, whose systemd units
  # and sudoers rule run the service: `commands = module.hosts.commands`
  # (`sudo -n systemctl restart artifortress-api`, ...).
  commands = {
    restart_api    = "{{release_dir}}/bin/artifortress restart api"
    restart_worker = "{{release_dir}}/bin/artifortress restart worker"
    worker_status  = "{{release_dir}}/bin/artifortress status worker"
    stop_api       = "{{release_dir}}/bin/artifortress stop api"
    stop_worker    = "{{release_dir}}/bin/artifortress stop worker"
  }

  strategy          = { max_parallel = 1, consecutive_ready = 3, health_timeout = "2m" }
  requires_schema   = artifortress_migration.schema.head
  rehearse_rollback = true
  on_destroy        = var.release_on_destroy

  lifecycle {
    precondition {
      condition     = contains(keys(var.artifacts.sha256), var.release_version)
      error_message = "artifacts.sha256 has no checksum for release ${var.release_version}."
    }
  }
}

# The deployed API, every API host: ready (not degraded) three times in a row.
data "artifortress_readiness" "api" {
  for_each       = module.hosts.api_urls
  url            = each.value
  require_status = "ready"
  consecutive    = 3
  wait_timeout   = "1m"
  poll_interval  = "500ms"
  depends_on     = [artifortress_release.app]
}

# D6: every week a fresh backup, restored into a scratch database, checked against the backup's
# own counts, RTO and RPO judged; the report goes to the bucket.
resource "artifortress_backup" "weekly" {
  provider   = artifortress.service_db
  prefix     = var.backup_prefix
  retention  = var.backup_retention
  triggers   = { week = var.drill_week }
  depends_on = [artifortress_migration.schema]
}

resource "artifortress_restore_drill" "weekly" {
  backup_id          = artifortress_backup.weekly.id
  prefix             = var.backup_prefix
  admin_database_url = var.admin_database_url # write-only
  drill_database     = var.drill_database
  rto_target_seconds = 900
  rpo_target_seconds = 300
  report_object_key  = var.drill_report_key
  fail_on_breach     = true
  triggers           = { week = var.drill_week }
}
