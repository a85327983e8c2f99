# releases.tfquery.hcl, beside the configuration that has the provider block:
#   terraform query                                   # the release in the deploy dir: live and installed versions
#   terraform query -generate-config-out=generated.tf # resource + import blocks for it
list "artifortress_release" "app" {
  provider         = artifortress
  include_resource = true
  config {
    deploy_dir = "/opt/artifortress"
    hosts      = "api-1=10.0.1.5,worker-1=10.0.1.7:2222"
  }
}
