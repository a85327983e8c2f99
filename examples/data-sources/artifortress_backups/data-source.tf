# D3 gate: a backup younger than an hour must exist before the release goes ahead.
data "artifortress_backups" "production" {
  prefix = "backups/production/"

  lifecycle {
    postcondition {
      condition     = self.newest_age_seconds != null && self.newest_age_seconds < 3600
      error_message = "No backup younger than an hour under backups/production/."
    }
  }
}

output "newest_backup" {
  value = data.artifortress_backups.production.newest_id
}
