# The state in PostgreSQL, shared by the team and CI, locked while a run changes it.
#
# Copy this file into a root module (examples/staging, examples/production) and run
# `terraform init -migrate-state` there to move its state here. Nothing secret is in it: the
# connection string comes from PG_CONN_STR (or give the parts as PGHOST, PGUSER, PGPASSWORD,
# PGDATABASE, ... and leave conn_str out entirely).
terraform {
  backend "pg" {
    # One schema per environment; `terraform init` creates it and its `states` table. Override
    # per environment with PG_SCHEMA_NAME or -backend-config="schema_name=...": a backend block
    # cannot use variables.
    schema_name = "artifortress_staging"
  }
}
