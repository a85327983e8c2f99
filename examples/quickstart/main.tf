# The quickstart: readiness of the Artifortress test bed that `make demo` starts.
#
# Every provider setting comes from the environment `scripts/dev-env up` prints
# (ARTIFORTRESS_API_URL, ARTIFORTRESS_ADMIN_TOKEN, ARTIFORTRESS_DATABASE_URL, AWS_*, ...).
# Later phases (backup, release, drill) join this example as they are built.

terraform {
  required_version = ">= 1.10"
  required_providers {
    artifortress = {
      source = "artifortress/artifortress"
    }
  }
}

provider "artifortress" {
  environment = "staging"
}

# D0: the service's migrations. The dev environment's database was migrated by the service's
# own script (`db-migrate.sh`), so the first apply adopts those versions (recording their
# checksums) and runs nothing; a new file in the directory shows up in the next plan.
resource "artifortress_migration" "schema" {
  dir = "${path.module}/../../acceptance-tests/testbed/migrations"
}

# D0/D4: the API must be live and ready (not merely answering 200, which `degraded` also does),
# three probes in a row, waiting up to a minute for it to get there.
data "artifortress_readiness" "api" {
  depends_on = [artifortress_migration.schema]

  require_status = "ready"
  consecutive    = 3
  wait_timeout   = "1m"
  poll_interval  = "1s"
}

output "readiness" {
  description = "What the API reported."
  value = {
    url          = data.artifortress_readiness.api.url
    live         = data.artifortress_readiness.api.live
    status       = data.artifortress_readiness.api.status
    http_status  = data.artifortress_readiness.api.http_status
    dependencies = { for d in data.artifortress_readiness.api.dependencies : d.name => d.status }
  }
}

output "migrations" {
  description = "The ledger after apply."
  value = {
    head    = artifortress_migration.schema.head
    applied = artifortress_migration.schema.applied_versions
  }
}
