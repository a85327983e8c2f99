# <host>:<port>/<database>, as database_url names it (no user, no password)
terraform import artifortress_migration.schema db.internal:5432/artifortress
