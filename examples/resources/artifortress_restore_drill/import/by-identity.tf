# report_object_key is required: the record is read from the report's JSON twin beside it.
# The other attributes (as `terraform show -json` prints the identity) may be left out; given,
# they must be what the report records.
import {
  to = artifortress_restore_drill.weekly
  identity = {
    report_object_key = "drills/staging/latest.md"
    backup_id         = "20261127T053900Z-3f9a1c2b"
    ran_at            = "2026-11-27T06:00:00Z"
  }
}
