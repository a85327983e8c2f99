# The server the provider's database_url points at, and the database; no credentials.
import {
  to = artifortress_bootstrap.staging
  identity = {
    host     = "db.internal"
    port     = 5432
    database = "artifortress_staging"
  }
}
