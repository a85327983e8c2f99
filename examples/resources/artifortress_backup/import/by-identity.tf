# bucket may be left out: it defaults to the provider's object_storage.bucket (and must be it).
import {
  to = artifortress_backup.pre_release
  identity = {
    bucket     = "artifortress-backups"
    object_key = "backups/production/20261127T053900Z-3f9a1c2b.dump.zst"
  }
}
