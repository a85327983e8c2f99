# Report only: never fails, even when the API is unreachable.
data "artifortress_readiness" "now" {}

# A deployment gate: ready (not degraded) three times in a row, within five minutes.
data "artifortress_readiness" "gate" {
  url            = var.api_url # default: the provider's api_url
  require_status = "ready"
  consecutive    = 3
  wait_timeout   = "5m"
  poll_interval  = "2s"
}

# A continuous check: `terraform plan` and `apply` warn instead of failing.
# Terraform re-reads a data source scoped inside a check block at every apply, so with one the
# plan is never empty and `plan -detailed-exitcode` exits 2 (hashicorp/terraform#35226).
check "artifortress_ready" {
  data "artifortress_readiness" "check" {
    require_status = "ready"
  }

  assert {
    condition     = data.artifortress_readiness.check.ready
    error_message = "Artifortress reports ${data.artifortress_readiness.check.status}."
  }
}

# For scheduled drift detection (`plan -detailed-exitcode`), declare the data source outside the
# check and assert on it: the plan stays empty while the API is ready.
data "artifortress_readiness" "drift" {}

check "artifortress_ready_for_drift_detection" {
  assert {
    condition     = data.artifortress_readiness.drift.ready
    error_message = "Artifortress reports ${data.artifortress_readiness.drift.status}."
  }
}

variable "api_url" {
  type    = string
  default = "http://10.0.1.5:8086"
}
