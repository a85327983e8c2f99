# The key the drill wrote its report to (report_object_key); the record is read from the
# report's JSON twin beside it (drills/staging/latest.json).
import {
  to = artifortress_restore_drill.weekly
  id = "drills/staging/latest.md"
}
