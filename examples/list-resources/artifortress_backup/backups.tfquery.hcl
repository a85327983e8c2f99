# backups.tfquery.hcl, beside the configuration that has the provider block:
#   terraform query                                   # lists every backup under the prefix
#   terraform query -generate-config-out=generated.tf # resource + import blocks for each
list "artifortress_backup" "old" {
  provider         = artifortress
  include_resource = true
  config {
    prefix = "backups/production/"
  }
}
