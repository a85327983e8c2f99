# hosts says where to find the deployment; it is kept in the identity as first recorded,
# while `id` follows the host list.
import {
  to = artifortress_release.production
  identity = {
    transport  = "ssh"
    deploy_dir = "/opt/artifortress"
    hosts      = "api-1=10.0.1.5,api-2=10.0.1.6,worker-1=10.0.1.7/worker"
  }
}
