# Report only: the counters, the breached alert thresholds and the worst severity.
data "artifortress_ops_summary" "now" {}

# D4/D5: a snapshot of the counters taken once per release, before the deploy (ignore_changes
# keeps it from following later reads).
resource "terraform_data" "pre_deploy_baseline" {
  input            = data.artifortress_ops_summary.now.counters
  triggers_replace = [var.release_version]

  lifecycle {
    ignore_changes = [input]
  }
}

# After the deploy: fail on a critical breach (with a stricter level for failed search jobs)
# and compare with the baseline.
data "artifortress_ops_summary" "after_deploy" {
  baseline   = terraform_data.pre_deploy_baseline.output
  thresholds = { failed_search_jobs = { warning = 1, critical = 10 } }
  fail_on    = "critical"
}

# Growth is a warning, not an error: asserted in a check block.
check "no_backlog_growth" {
  assert {
    condition     = !data.artifortress_ops_summary.after_deploy.grew
    error_message = "The backlog grew since the pre-deploy baseline: ${jsonencode(data.artifortress_ops_summary.after_deploy.growth)}."
  }
}

variable "release_version" {
  type = string
}
