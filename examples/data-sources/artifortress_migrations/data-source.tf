# What the database holds and what would run, without changing anything.
data "artifortress_migrations" "now" {
  dir = "${path.module}/db/migrations"
}

output "pending_migrations" {
  value = data.artifortress_migrations.now.pending[*].version
}

# A CI gate: the plan fails unless the database is at the newest file with no problem
# (edited applied file, dirty no-transaction migration, missing file).
data "artifortress_migrations" "gate" {
  dir = "${path.module}/db/migrations"

  lifecycle {
    postcondition {
      condition     = self.up_to_date
      error_message = "Migrations are not up to date: pending ${jsonencode(self.pending[*].version)}, problems ${jsonencode(self.problems[*].summary)}."
    }
  }
}
