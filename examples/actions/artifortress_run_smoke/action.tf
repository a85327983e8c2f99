# The smoke flow (whoami, repositories, draft → upload → publish in a scratch repository) on
# demand, each step printed as it ends:
#   terraform apply -invoke=action.artifortress_run_smoke.post_deploy
# Unlike data "artifortress_smoke" with write = true, it never runs on a plan.
action "artifortress_run_smoke" "post_deploy" {
  config {
    write = true
  }
}
