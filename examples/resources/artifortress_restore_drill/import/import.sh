# report_object_key of the drill, in the provider's bucket
terraform import artifortress_restore_drill.weekly drills/staging/latest.md
