# D6: the weekly backup/restore drill. A new week takes a new backup and restores it into a
# scratch database, checks it against the backup's own counts, and reports RTO and RPO.
# The scheduled CI job passes the week: `terraform apply -var drill_week=$(date -u +%G-W%V)`
# (hashicorp/time's time_rotating works as well).
variable "drill_week" {
  type = string
}

resource "artifortress_backup" "weekly" {
  prefix   = "backups/staging/"
  triggers = { week = var.drill_week }
}

resource "artifortress_restore_drill" "weekly" {
  backup_id           = artifortress_backup.weekly.id # or its object_key
  prefix              = "backups/staging/"
  admin_database_url  = var.admin_database_url # write-only; a role that may create and drop databases
  drill_database      = "artifortress_drill"   # never the source; ^[A-Za-z_][A-Za-z0-9_]*$
  rto_target_seconds  = 900
  rpo_target_seconds  = 300
  keep_drill_database = false
  report_object_key   = "drills/staging/latest.md"                    # and drills/staging/latest.json
  report_file         = "docs/reports/phase6-rto-rpo-drill-latest.md" # where the service's preflight looks
  fail_on_breach      = true
  triggers            = { week = var.drill_week }
  timeouts            = { create = "1h" }
}

variable "admin_database_url" {
  type      = string
  sensitive = true
  ephemeral = true # Terraform >= 1.10: kept out of plan files too
}

output "drill" {
  value = {
    passed     = artifortress_restore_drill.weekly.passed
    rto        = artifortress_restore_drill.weekly.rto_seconds
    rpo        = artifortress_restore_drill.weekly.rpo_seconds
    mismatches = artifortress_restore_drill.weekly.mismatches
  }
}
