# The quickstart: the deployment plan's phases, D1 to D6, applied by Terraform to the dev
# environment that `make demo` starts (PostgreSQL, Garage as S3, three SSH deploy hosts and the
# Artifortress test bed's release tarballs). `scripts/demo` drives it: apply v1, upgrade to v2,
# try `broken` (rolled back, state truthful), then a drift check after a hand edit.
#
# The Artifortress service itself is a .NET program that cannot run here: the releases deployed
# are the test bed, which implements the service's operational contract (routes, JSON, status
# codes, tables) on the real PostgreSQL and S3.
#
# Provider settings not given below come from the environment `scripts/dev-env up` prints
# (ARTIFORTRESS_API_URL, ARTIFORTRESS_ADMIN_TOKEN, ARTIFORTRESS_S3_*, AWS_*, ...); secrets come
# in as ephemeral TF_VAR_ variables and never reach the state or plan files.

terraform {
  required_version = ">= 1.11"
  required_providers {
    artifortress = {
      source = "artifortress/artifortress"
    }
  }
}

variable "release_version" {
  description = "The release to deploy: v1, v2 or broken (never becomes ready)."
  type        = string
  default     = "v1"
}

variable "hosts" {
  description = "The deploy hosts (ARTIFORTRESS_TEST_HOSTS of `scripts/dev-env up --hosts 3`)."
  type        = map(object({ address = string, port = number, deploy_dir = string }))
}

variable "artifacts_dir" {
  description = "The test bed's release tarballs and their SHA256SUMS."
  type        = string
}

variable "known_hosts_file" {
  type = string
}

variable "ssh_private_key" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "admin_database_url" {
  description = "A PostgreSQL role that may create roles and databases."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "db_password" {
  description = "The password of the service's database role (created by the bootstrap)."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "bootstrap_token" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "s3" {
  description = "Object storage for the service: endpoint, bucket, access key."
  type        = object({ endpoint = string, bucket = string, access_key = string })
}

variable "s3_secret_key" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "service_running" {
  description = "The service is already deployed: read its ops summary with a token minted on it."
  type        = bool
  default     = false
}

provider "artifortress" {
  environment = "staging"
  ssh = {
    # user: ARTIFORTRESS_SSH_USER (the dev hosts' login user, `deploy`)
    private_key = var.ssh_private_key
    known_hosts = file(var.known_hosts_file)
  }
}

locals {
  sums = { for line in split("\n", trimspace(file("${var.artifacts_dir}/SHA256SUMS"))) :
  split("  ", line)[1] => split("  ", line)[0] }
  api_port = 18086
  api_urls = { for name in ["host-1", "host-2"] : name => "http://${var.hosts[name].address}:${local.api_port}" }
  db       = regex("^postgres://([^@]+)@([^:/]+):([0-9]+)/(.+)$", artifortress_bootstrap.staging.database_url_template)
  npgsql   = "Host=${local.db[1]};Port=${local.db[2]};Username=${local.db[0]};Password=${var.db_password};Database=${local.db[3]}"
  db_url   = "postgres://${local.db[0]}:${var.db_password}@${local.db[1]}:${local.db[2]}/${local.db[3]}"
}

# D1: the staging database and its owner role, the bucket checked with a put/get/delete probe.
resource "artifortress_bootstrap" "staging" {
  admin_database_url        = var.admin_database_url
  database                  = "artifortress_quickstart"
  owner_role                = "artifortress_quickstart"
  owner_password_wo         = var.db_password
  owner_password_wo_version = 1
  bucket                    = var.s3.bucket
  on_destroy                = "drop"
}

# The service's own database, as the provider's database_url of this alias: refresh gets no
# resource configuration, so a write-only URL on the resources could not be used to refresh them.
provider "artifortress" {
  alias        = "service_db"
  environment  = "staging"
  database_url = local.db_url
}

# D0: the service's migrations on it, exactly once.
resource "artifortress_migration" "schema" {
  provider = artifortress.service_db
  dir      = "${path.module}/../../acceptance-tests/testbed/migrations"
}

# D3: a backup before the release, and the go/no-go report.
resource "artifortress_backup" "pre_release" {
  provider   = artifortress.service_db
  prefix     = "backups/quickstart/"
  retention  = "delete"
  triggers   = { release = var.release_version }
  depends_on = [artifortress_migration.schema]
}

data "artifortress_preflight" "go" {
  change_window  = "${timeadd(plantimestamp(), "-1h")}/${timeadd(plantimestamp(), "1h")}"
  rollback_owner = "quickstart operator"
  backup_prefix  = "backups/quickstart/"
  require_ready  = false
  fail_on_no_go  = false
  depends_on     = [artifortress_backup.pre_release]
}

# D4 + D5: the API on two hosts and the worker on a third, one host at a time, each waited for
# until ready; then a short watch window. A failure anywhere rolls every host back.
# Two archives, as the service ships them (two `dotnet publish` outputs, its
# docs/29-deployment-howto-production.md): the API's unpacked as releases/<version>/api/ on the
# API hosts, the worker's as releases/<version>/worker/ on the worker host.
resource "artifortress_release" "app" {
  version = var.release_version
  api_artifact = {
    source = "${var.artifacts_dir}/artifortress-api-${var.release_version}.tar.gz"
    sha256 = local.sums["artifortress-api-${var.release_version}.tar.gz"]
  }
  worker_artifact = {
    source = "${var.artifacts_dir}/artifortress-worker-${var.release_version}.tar.gz"
    sha256 = local.sums["artifortress-worker-${var.release_version}.tar.gz"]
  }
  deploy_dir = "${var.hosts["host-1"].deploy_dir}/quickstart"
  hosts = {
    "api-1"    = { address = var.hosts["host-1"].address, port = var.hosts["host-1"].port, roles = ["api"], api_url = local.api_urls["host-1"] }
    "api-2"    = { address = var.hosts["host-2"].address, port = var.hosts["host-2"].port, roles = ["api"], api_url = local.api_urls["host-2"] }
    "worker-1" = { address = var.hosts["host-3"].address, port = var.hosts["host-3"].port, roles = ["worker"] }
  }
  api_env_wo = {
    ConnectionStrings__Postgres = local.npgsql
    ObjectStorage__Endpoint     = var.s3.endpoint
    ObjectStorage__AccessKey    = var.s3.access_key
    ObjectStorage__SecretKey    = var.s3_secret_key
    ObjectStorage__Bucket       = var.s3.bucket
    Auth__BootstrapToken        = var.bootstrap_token
    # Expanded per host when its env file is written: each API listens on its own address.
    ASPNETCORE_URLS = "http://{{address}}:${local.api_port}"
  }
  worker_env_wo = {
    ConnectionStrings__Postgres = local.npgsql
    Worker__PollSeconds         = "5"
  }
  commands = {
    restart_api    = "{{release_dir}}/api/bin/artifortress restart api"
    restart_worker = "{{release_dir}}/worker/bin/artifortress restart worker"
    worker_status  = "{{release_dir}}/worker/bin/artifortress status worker"
    stop_api       = "{{release_dir}}/api/bin/artifortress stop api"
    stop_worker    = "{{release_dir}}/worker/bin/artifortress stop worker"
  }
  strategy        = { max_parallel = 1, consecutive_ready = 3, health_timeout = "20s" }
  requires_schema = artifortress_migration.schema.head
  watch           = { duration = "15s", max_not_ready = "5s" }
  on_destroy      = "stop"
  depends_on      = [artifortress_backup.pre_release]
}

data "artifortress_readiness" "deployed" {
  url            = local.api_urls["host-1"]
  require_status = "ready"
  consecutive    = 3
  wait_timeout   = "30s"
  poll_interval  = "200ms"
  depends_on     = [artifortress_release.app]
}

# The ops summary needs an admin token of the running service; ephemeral resources are opened
# at plan time, so it is read from the second apply on (`service_running = true`).
provider "artifortress" {
  alias           = "deployed_bootstrap"
  api_url         = local.api_urls["host-1"]
  bootstrap_token = var.bootstrap_token
}

ephemeral "artifortress_admin_token" "ops" {
  count    = var.service_running ? 1 : 0
  provider = artifortress.deployed_bootstrap
  subject  = "quickstart"
}

provider "artifortress" {
  alias       = "deployed"
  api_url     = local.api_urls["host-1"]
  admin_token = var.service_running ? ephemeral.artifortress_admin_token.ops[0].token : null
}

data "artifortress_ops_summary" "deployed" {
  count      = var.service_running ? 1 : 0
  provider   = artifortress.deployed
  depends_on = [artifortress_release.app]
}

# D1 exit criterion / docs/29 step 8 of the service: the minimal smoke flow against the running
# service with the admin token above: auth, list and read a repository (read-only here; a
# release can run the full draft/publish happy path on every API host with `smoke = true`).
data "artifortress_smoke" "deployed" {
  count      = var.service_running ? 1 : 0
  provider   = artifortress.deployed
  depends_on = [artifortress_release.app, data.artifortress_readiness.deployed]
}

# D6: the backup restored into a scratch database, checked, RTO and RPO reported.
resource "artifortress_restore_drill" "drill" {
  backup_id          = artifortress_backup.pre_release.id
  prefix             = "backups/quickstart/"
  admin_database_url = var.admin_database_url
  drill_database     = "artifortress_quickstart_drill"
  fail_on_breach     = false
  depends_on         = [artifortress_release.app]
}

output "phases" {
  description = "What each phase did."
  value = join("\n", [
    "| phase | resource | result |",
    "|---|---|---|",
    format("| D1 bootstrap | artifortress_bootstrap.staging | %s; checks: %s |",
      artifortress_bootstrap.staging.id,
    join(", ", [for c in artifortress_bootstrap.staging.checks : "${c.name} ${c.passed ? "ok" : "FAILED"}"])),
    format("| D0 migrations | artifortress_migration.schema | head %s, %d applied |",
    artifortress_migration.schema.head, length(artifortress_migration.schema.applied_versions)),
    format("| D3 backup | artifortress_backup.pre_release | %s, %d bytes, recovery point %s |",
    artifortress_backup.pre_release.id, artifortress_backup.pre_release.size_bytes, artifortress_backup.pre_release.snapshot_at),
    format("| D3 preflight | data.artifortress_preflight.go | %s |",
    data.artifortress_preflight.go.go ? "go" : "no-go: ${join(", ", data.artifortress_preflight.go.failed)}"),
    format("| D4 release | artifortress_release.app | %s (previous %s) on %s |",
      artifortress_release.app.deployed_version, coalesce(artifortress_release.app.previous_version, "none"),
    join(", ", [for h, v in artifortress_release.app.host_versions : "${h}=${v}"])),
    format("| D4 readiness | data.artifortress_readiness.deployed | %s |", data.artifortress_readiness.deployed.status),
    format("| D4 ops summary | data.artifortress_ops_summary.deployed | %s |",
    var.service_running ? "worst severity: ${data.artifortress_ops_summary.deployed[0].worst_severity}" : "(from the second apply on)"),
    "| D5 watch | artifortress_release.app | 15 s without sustained not_ready |",
    format("| D6 drill | artifortress_restore_drill.drill | %s: RTO %.1f s, RPO %.1f s |",
    artifortress_restore_drill.drill.passed ? "PASS" : "FAIL", artifortress_restore_drill.drill.rto_seconds, artifortress_restore_drill.drill.rpo_seconds),
  ])
}
