# Report only: never fails, even when the API is unreachable.
data "artifortress_readiness" "now" {}

# A deployment gate: ready (not degraded) three times in a row, within five minutes.
data "artifortress_readiness" "gate" {
  url            = "http://10.0.1.5:8086"
  require_status = "ready"
  consecutive    = 3
  wait_timeout   = "5m"
  poll_interval  = "2s"
}

# A continuous check: `terraform plan` warns instead of failing.
check "artifortress_ready" {
  data "artifortress_readiness" "check" {
    require_status = "ready"
  }

  assert {
    condition     = data.artifortress_readiness.check.ready
    error_message = "Artifortress reports ${data.artifortress_readiness.check.status}."
  }
}
