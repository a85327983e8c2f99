# The database the provider's (or the resource's) database_url points at; never credentials.
import {
  to = artifortress_migration.schema
  identity = {
    host     = "db.internal"
    port     = 5432
    database = "artifortress"
  }
}
