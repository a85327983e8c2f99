# A backup now, with the same engine and manifest as artifortress_backup:
#   terraform apply -invoke=action.artifortress_take_backup.now
# Progress (each stage, bytes streamed and the rate) is printed as it happens; nothing is kept
# in state: restore drills and data.artifortress_backups find it by its manifest.
action "artifortress_take_backup" "now" {
  config {
    prefix            = "backups/"
    compression       = "zstd"
    labels            = { reason = "on demand" }
    progress_interval = "5s"
  }
}

variable "release_version" {
  type    = string
  default = "v1"
}

# Before every change of what is deployed: the action runs `before_update`, and a failed backup
# stops the apply before the change. (With `artifortress_release`, put the same lifecycle block
# on the release resource.)
resource "terraform_data" "deployed_version" {
  input = var.release_version

  lifecycle {
    action_trigger {
      events  = [before_update]
      actions = [action.artifortress_take_backup.now]
    }
  }
}
