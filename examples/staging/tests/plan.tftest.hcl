# `terraform test` for the staging environment: plan-time checks with the provider mocked, so they
# need no hosts, database or bucket (run by acceptance-tests/tests/acceptance/examples.rs under
# Terraform 1.11.4 and 1.15.5: `terraform init`, then `terraform test`).
#
# What a mocked provider still does: Terraform loads the real provider for its schemas and sends
# it every ValidateResourceConfig / ValidateDataResourceConfig, so the provider's own argument
# checks (durations, checksums, commands, hosts) run here too. What it does not do: configure,
# plan or read; computed attributes come back made up. So these checks only run against the real
# provider (the acceptance test applies this example to the dev environment):
# - which migrations are pending, and `requires_schema` checked against the service's database;
# - the bootstrap's database, role and bucket probe; backups and the drill against the bucket;
# - the release's plan (hosts read, drift, the rollout, the rollback rehearsal);
# - readiness of the deployed API.

mock_provider "artifortress" {}

mock_provider "artifortress" {
  alias = "service_db"
}

variables {
  release_version = "1.4.2"
  artifacts = {
    base   = "https://releases.example.com"
    sha256 = { "1.4.2" = "0000000000000000000000000000000000000000000000000000000000000001" }
  }
  hosts = {
    api-1    = { address = "10.0.1.5", role = "api" }
    api-2    = { address = "10.0.1.6", role = "api" }
    worker-1 = { address = "10.0.1.7", role = "worker" }
  }
  ssh_authorized_keys  = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployKeyForTestsOnly deploy"]
  ssh_known_hosts_file = "tests/known_hosts"
  ssh_private_key      = "not a key: the provider is mocked"
  admin_database_url   = "postgres://admin:secret@db.example.com:5432/postgres"
  db_password          = "secret"
  bucket               = { name = "artifortress-staging", endpoint = "https://s3.example.com" }
  s3_access_key_id     = "AKIAEXAMPLE"
  s3_secret_access_key = "secret"
  bootstrap_token      = "secret"
  drill_week           = "2026-W49"
}

run "one_apply_wires_every_phase" {
  command = plan

  assert {
    condition     = artifortress_release.app.version == "1.4.2"
    error_message = "the release deploys release_version"
  }
  assert {
    condition     = artifortress_release.app.artifact.source == "https://releases.example.com/artifortress-1.4.2.tar.gz"
    error_message = "the artifact is <base>/artifortress-<version>.tar.gz"
  }
  assert {
    condition     = artifortress_release.app.artifact.sha256 == var.artifacts.sha256["1.4.2"]
    error_message = "the artifact's checksum is the version's"
  }
  assert {
    condition     = artifortress_release.app.hosts["api-1"].roles == tolist(["api"]) && artifortress_release.app.hosts["worker-1"].roles == tolist(["worker"])
    error_message = "each host gets the role the hosts module gave it"
  }
  assert {
    condition     = artifortress_release.app.hosts["api-2"].api_url == "http://10.0.1.6:8086" && artifortress_release.app.hosts["worker-1"].api_url == null
    error_message = "API hosts are probed on their own address and api_port; workers have no API URL"
  }
  assert {
    condition     = artifortress_release.app.strategy.max_parallel == 1 && artifortress_release.app.rehearse_rollback
    error_message = "staging rolls out one host at a time and rehearses the rollback"
  }
  assert {
    condition     = artifortress_backup.pre_release.triggers["release"] == "1.4.2"
    error_message = "a new release takes a new backup first"
  }
  assert {
    condition     = artifortress_backup.weekly.triggers["week"] == "2026-W49" && artifortress_restore_drill.weekly.triggers["week"] == "2026-W49"
    error_message = "the weekly backup and drill run again when the week changes"
  }
  assert {
    condition     = artifortress_bootstrap.staging.database == "artifortress_staging" && artifortress_bootstrap.staging.create_bucket
    error_message = "the bootstrap makes the staging database and verifies (creates) the bucket"
  }
  assert {
    condition     = join(",", sort(keys(module.hosts.api_urls))) == "api-1,api-2"
    error_message = "the readiness gate covers every API host and only those"
  }
}

run "a_release_without_a_checksum_is_refused" {
  command = plan

  variables {
    release_version = "1.5.0"
  }

  expect_failures = [artifortress_release.app]
}

run "a_malformed_checksum_is_refused" {
  command = plan

  variables {
    artifacts = {
      base   = "https://releases.example.com"
      sha256 = { "1.4.2" = "not-a-sha256" }
    }
  }

  expect_failures = [var.artifacts]
}
