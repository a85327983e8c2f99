# <host>:<port>/<database>; the owner role is read from the server
terraform import artifortress_bootstrap.staging db.internal:5432/artifortress_staging
