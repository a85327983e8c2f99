# The production environment: the D3 gate (change window, rollback owner, a fresh backup, API
# ready, no critical backlog, clean migrations), D0 migrations after the backup, the D4 rollout
# with the D5 watch window (readiness and backlog growth: a breach rolls every host back), and
# the weekly D6 restore drill. The service keeps running when this configuration is destroyed.
# See README.md.

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
  # A change is being made only when a change window is given.
  in_change = var.change_window != null
  artifact  = "artifortress-${var.release_version}.tar.gz"
  db        = var.database
  db_url    = "postgres://${urlencode(local.db.user)}:${urlencode(var.db_password)}@${local.db.host}:${local.db.port}/${local.db.name}"
  npgsql    = "Host=${local.db.host};Port=${local.db.port};Username=${local.db.user};Password=${var.db_password};Database=${local.db.name}"
}

# An admin token for this run only: minted with the bootstrap token when the plan or apply
# starts, revoked when it ends, never in the state or a plan file. It is the default provider's
# admin_token (the preflight's backlog check, the watch window's ops summary).
provider "artifortress" {
  alias           = "mint"
  environment     = "production"
  api_url         = var.api_url
  bootstrap_token = var.bootstrap_token
}

ephemeral "artifortress_admin_token" "run" {
  provider    = artifortress.mint
  subject     = "terraform-production"
  ttl_minutes = 120 # bounds what a killed run leaves behind
}

# environment = "production" turns on the release's D3 gate and makes migrations require a backup.
provider "artifortress" {
  environment = "production"
  api_url     = var.api_url
  admin_token = ephemeral.artifortress_admin_token.run.token
  # The release refuses, at plan time, a rollout + watch window that could outlast the token.
  admin_token_expires_at = ephemeral.artifortress_admin_token.run.expires_at
  database_url           = local.db_url
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
}

# D3: the backup of this change, taken first: a new release version takes a new one.
resource "artifortress_backup" "pre_release" {
  prefix      = var.backup_prefix
  compression = "zstd"
  retention   = "retain"
  triggers    = { release = var.release_version }
  labels      = { release = var.release_version }
  timeouts    = { create = "2h" }
}

# D3: the go/no-go, read after the backup (so its age is checked against this change's backup)
# and before anything changes. A no-go fails the apply here, listing every failed check. It is
# read only during a change: outside one, a plan must not fail on a closed window.
data "artifortress_preflight" "go" {
  count          = local.in_change ? 1 : 0
  change_window  = var.change_window
  rollback_owner = var.rollback_owner
  backup_prefix  = var.backup_prefix
  max_backup_age = "1h"
  migrations_dir = var.migrations_dir
  allow_contract = var.allow_contract
  require_ready  = true
  fail_on_no_go  = true
  depends_on     = [artifortress_backup.pre_release]
}

# What the migrations would do, read at plan: pending migrations outside a change are refused.
data "artifortress_migrations" "current" {
  dir = var.migrations_dir
}

# D0: the migrations, after the go and with this change's backup (required in production).
resource "artifortress_migration" "schema" {
  dir            = var.migrations_dir
  backup_id      = artifortress_backup.pre_release.id
  allow_contract = var.allow_contract
  lock_timeout   = "10m"
  timeouts       = { create = "1h", update = "1h" }
  depends_on     = [data.artifortress_preflight.go]

  lifecycle {
    precondition {
      condition     = local.in_change || length(data.artifortress_migrations.current.pending) == 0
      error_message = "Migrations are pending (${join(", ", [for p in data.artifortress_migrations.current.pending : p.version])}): run them in a change (set change_window, rollback_owner and approved_by)."
    }
  }
}

# D4 + D5: one host at a time, each ready five times in a row; then ten minutes of watching
# readiness and the backlog (against a baseline read before the rollout). Any failure, or backlog
# growth past a critical threshold, rolls every host back.
resource "artifortress_release" "app" {
  version = var.release_version
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
    ASPNETCORE_ENVIRONMENT      = "Production"
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

  strategy        = { max_parallel = 1, consecutive_ready = 5, health_timeout = "5m", atomic = true }
  requires_schema = artifortress_migration.schema.head
  watch           = { duration = var.watch_duration, max_not_ready = "1m", on_backlog_growth = "rollback" }

  # D3: checked at plan and again at apply, for every plan that deploys something.
  change = {
    window         = var.change_window
    rollback_owner = var.rollback_owner
    approved_by    = var.approved_by
    backup_id      = artifortress_backup.pre_release.id
    backup_prefix  = var.backup_prefix
  }

  rehearse_rollback = false  # rehearsed in staging
  on_destroy        = "keep" # destroying this configuration never stops production
  timeouts          = { create = "1h", update = "1h" }

  lifecycle {
    precondition {
      condition     = contains(keys(var.artifacts.sha256), var.release_version)
      error_message = "artifacts.sha256 has no checksum for release ${var.release_version}."
    }
  }
}

# Every API host, after the rollout: ready (not degraded) three times in a row.
data "artifortress_readiness" "api" {
  for_each       = module.hosts.api_urls
  url            = each.value
  require_status = "ready"
  consecutive    = 3
  wait_timeout   = "2m"
  depends_on     = [artifortress_release.app]
}

# D6: every week a fresh backup, restored on the drill server (never production's), checked
# against the backup's own counts, RTO and RPO judged; a FAIL fails the scheduled apply.
resource "artifortress_backup" "weekly" {
  prefix      = var.backup_prefix
  compression = "zstd"
  retention   = "retain"
  triggers    = { week = var.drill_week }
  labels      = { purpose = "restore-drill" }
  timeouts    = { create = "2h" }
  # Never at the same time as another backup under the same prefix: a backup starting aborts
  # every multipart upload open under its prefix (it takes them for leftovers of a dead run).
  depends_on = [artifortress_backup.pre_release]
}

resource "artifortress_restore_drill" "weekly" {
  backup_id          = artifortress_backup.weekly.id
  prefix             = var.backup_prefix
  admin_database_url = var.drill_admin_database_url # write-only
  drill_database     = var.drill_database
  rto_target_seconds = 900
  rpo_target_seconds = 300
  report_object_key  = "drills/production/latest.md"
  fail_on_breach     = true
  triggers           = { week = var.drill_week }
  timeouts           = { create = "2h" }
}
