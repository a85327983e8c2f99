# The key of the dump; everything else is read from its manifest.
terraform import artifortress_backup.pre_release backups/production/20261127T053900Z-3f9a1c2b.dump.zst
