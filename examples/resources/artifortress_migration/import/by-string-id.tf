import {
  to = artifortress_migration.schema
  id = "db.internal:5432/artifortress"
}
