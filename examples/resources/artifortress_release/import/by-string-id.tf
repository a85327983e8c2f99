import {
  to = artifortress_release.production
  id = "/opt/artifortress,api-1=10.0.1.5,api-2=10.0.1.6,worker-1=10.0.1.7/worker"
}
