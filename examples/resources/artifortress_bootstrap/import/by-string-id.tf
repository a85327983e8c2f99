import {
  to = artifortress_bootstrap.staging
  id = "db.internal:5432/artifortress_staging"
}
