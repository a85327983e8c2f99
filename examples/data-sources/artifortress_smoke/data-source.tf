# On every plan: whoami, list the repositories, read one. Writes nothing.
data "artifortress_smoke" "read_only" {}

# After a deploy only: the draft -> upload -> publish happy path in a scratch repository.
# Each read (every plan and apply while this is true) leaves a new scratch repository with a
# published version behind: keep the variable false for routine plans.
data "artifortress_smoke" "post_deploy" {
  count = var.post_deploy_smoke ? 1 : 0

  write = true
}

# Report instead of failing, and warn through a check block.
data "artifortress_smoke" "report" {
  fail_on_error = false
}

check "smoke" {
  assert {
    condition     = data.artifortress_smoke.report.passed
    error_message = "Smoke flow failed: ${jsonencode([for s in data.artifortress_smoke.report.steps : s if s.status == "failed"])}."
  }
}

# Step names and statuses only: durations and details change on every read, and an output of
# them would show as a change in every plan.
output "smoke_steps" {
  value = [for s in data.artifortress_smoke.read_only.steps : "${s.name}: ${s.status}"]
}

variable "post_deploy_smoke" {
  type    = bool
  default = false
}
