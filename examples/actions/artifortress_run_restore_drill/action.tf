variable "admin_database_url" {
  type      = string
  sensitive = true
}

# A restore drill now, against the newest backup under `prefix`:
#   terraform apply -invoke=action.artifortress_run_restore_drill.now
# Each step and then the report (the service's drill-report format) are printed; the report is
# also written where the service's preflight looks for it and to the bucket. A FAIL fails the
# invocation (fail_on_breach = true).
action "artifortress_run_restore_drill" "now" {
  config {
    prefix             = "backups/"
    admin_database_url = var.admin_database_url
    rto_target_seconds = 900
    rpo_target_seconds = 86400
    report_file        = "docs/reports/phase6-rto-rpo-drill-latest.md"
    report_object_key  = "drills/on-demand/latest.md"
  }
}
