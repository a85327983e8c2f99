import {
  to = artifortress_backup.pre_release
  id = "backups/production/20261127T053900Z-3f9a1c2b.dump.zst"
}
