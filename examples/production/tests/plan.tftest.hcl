# `terraform test` for the production environment: plan-time checks with the default provider
# mocked (run by acceptance-tests/tests/acceptance/examples.rs under Terraform 1.11.4 and 1.15.5:
# `terraform init`, then `terraform test` with ARTIFORTRESS_API_URL and
# ARTIFORTRESS_BOOTSTRAP_TOKEN set).
#
# Not mocked: `artifortress.mint`, the provider that mints the run's admin token
# (`ephemeral "artifortress_admin_token"`). Mock providers cannot mock ephemeral resources in
# Terraform 1.11 nor 1.15 ("No ephemeral resource types in mock providers"), so the token is
# minted for real: give the service's API and bootstrap token in the provider's environment
# variables ARTIFORTRESS_API_URL and ARTIFORTRESS_BOOTSTRAP_TOKEN (the acceptance test uses the
# dev environment's test bed). Not as TF_VAR_ variables: Terraform 1.15 reads a TF_VAR_ value
# that a test file's provider block uses as an HCL expression, which a token is not.
#
# What a mocked provider still does: Terraform loads the real provider for its schemas and sends
# it every ValidateResourceConfig / ValidateDataResourceConfig, so the provider's own argument
# checks run here too. What it does not do: configure, plan or read; computed attributes come
# back made up. So these checks only run against the real provider:
# - the D3 production gate (open window, rollback owner, a backup younger than 24 h) and the
#   preflight's go/no-go, which the provider judges at plan and again at apply;
# - which migrations are pending and their classes (the class C refusal without allow_contract);
# - the release's plan (hosts read, drift, the rollout, the watch window);
# - backups and the drill against the bucket, readiness of the deployed API.

mock_provider "artifortress" {
  # What the ledger says when nothing is pending (the mock would otherwise make a list up).
  mock_data "artifortress_migrations" {
    defaults = {
      pending = []
    }
  }
}

# api_url and bootstrap_token from ARTIFORTRESS_API_URL and ARTIFORTRESS_BOOTSTRAP_TOKEN.
provider "artifortress" {
  alias       = "mint"
  environment = "production"
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
  ssh_authorized_keys      = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployKeyForTestsOnly deploy"]
  ssh_known_hosts_file     = "tests/known_hosts"
  ssh_private_key          = "not a key: the provider is mocked"
  database                 = { host = "db.example.com", name = "artifortress", user = "artifortress" }
  db_password              = "secret"
  drill_admin_database_url = "postgres://admin:secret@db.example.com:5432/postgres"
  bucket                   = { name = "artifortress-production", endpoint = "https://s3.example.com" }
  s3_access_key_id         = "AKIAEXAMPLE"
  s3_secret_access_key     = "secret"
  drill_week               = "2026-W49"
  # Used only by the configuration's provider blocks, which this file replaces.
  api_url         = "https://artifortress.example.com"
  bootstrap_token = "unused"
}

run "outside_a_change_the_release_is_planned_without_a_preflight" {
  command = plan

  assert {
    condition     = length(data.artifortress_preflight.go) == 0
    error_message = "the preflight is read only in a change window"
  }
  assert {
    condition     = artifortress_release.app.version == "1.4.2" && artifortress_release.app.artifact.source == "https://releases.example.com/artifortress-1.4.2.tar.gz"
    error_message = "the release deploys release_version from <base>/artifortress-<version>.tar.gz"
  }
  assert {
    condition     = artifortress_release.app.change.window == null && artifortress_release.app.change.rollback_owner == null
    error_message = "outside a change the gate gets no window and no owner (so the provider refuses to deploy)"
  }
  assert {
    condition     = artifortress_release.app.on_destroy == "keep" && !artifortress_release.app.rehearse_rollback
    error_message = "destroying the configuration never stops production; the rollback is rehearsed in staging"
  }
  assert {
    condition     = artifortress_release.app.strategy.atomic && artifortress_release.app.watch.on_backlog_growth == "rollback"
    error_message = "a failed rollout or a growing backlog during the watch rolls every host back"
  }
  assert {
    condition     = artifortress_backup.pre_release.triggers["release"] == "1.4.2" && artifortress_backup.pre_release.compression == "zstd"
    error_message = "a new release takes a new (compressed) backup first"
  }
  assert {
    condition     = artifortress_restore_drill.weekly.triggers["week"] == "2026-W49" && artifortress_restore_drill.weekly.fail_on_breach
    error_message = "the weekly drill runs again when the week changes and fails on a breach"
  }
}

run "in_a_change_the_preflight_gates_migrations_and_release" {
  command = plan

  variables {
    change_window  = "2026-12-05T22:00:00Z/2026-12-05T23:00:00Z"
    rollback_owner = "alice"
    approved_by    = "bob"
  }

  assert {
    condition     = length(data.artifortress_preflight.go) == 1
    error_message = "a change reads the preflight"
  }
  assert {
    condition     = artifortress_release.app.change.window == var.change_window && artifortress_release.app.change.rollback_owner == "alice" && artifortress_release.app.change.approved_by == "bob"
    error_message = "the release's gate gets the change's window, owner and approver"
  }
}

run "pending_migrations_outside_a_change_are_refused" {
  command = plan

  override_data {
    target = data.artifortress_migrations.current
    values = {
      pending = [{ version = "0005_add_index.sql", class = "A", checksum = "00", transactional = true }]
    }
  }

  expect_failures = [artifortress_migration.schema]
}

run "a_release_without_a_checksum_is_refused" {
  command = plan

  variables {
    release_version = "1.5.0"
  }

  expect_failures = [artifortress_release.app]
}
