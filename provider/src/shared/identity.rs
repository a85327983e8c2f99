//! Resource identities (Terraform >= 1.12) the resources share: a PostgreSQL database named
//! by `{host, port, database}` (the migration and the bootstrap), and what parses their
//! `host:port/database` IDs back. Never a user or a password: an identity is stored in state
//! beside the object and shown by `terraform show`.

use crate::protocol::diagnostics::Diagnostic;
use crate::protocol::framework::{ForImport, IdentityAttribute, IdentitySchema};
use crate::protocol::types::Type;
use crate::protocol::value::Value;

/// `{host, port, database}`, all required for an import.
pub fn database_identity_schema() -> IdentitySchema {
    IdentitySchema {
        version: 0,
        attributes: vec![
            IdentityAttribute {
                name: "host",
                ty: Type::String,
                import: ForImport::Required,
                description: "The PostgreSQL server's host name or address, as the database URL names it.",
            },
            IdentityAttribute {
                name: "port",
                ty: Type::Number,
                import: ForImport::Required,
                description: "The server's port (5432 unless the URL says otherwise).",
            },
            IdentityAttribute {
                name: "database",
                ty: Type::String,
                import: ForImport::Required,
                description: "The database's name.",
            },
        ],
    }
}

/// Splits `host:port/database` (the migration's and the bootstrap's `id`): the host is
/// everything before the first `:<digits>/`, so IPv6 addresses and socket directories pass.
pub fn parse_database_id(id: &str) -> Option<(String, u16, String)> {
    for (i, _) in id.match_indices(':') {
        let rest = &id[i + 1..];
        let Some((port, database)) = rest.split_once('/') else {
            continue;
        };
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !database.is_empty() {
            let port = port.parse().ok()?;
            return Some((id[..i].to_string(), port, database.to_string()));
        }
    }
    None
}

/// The identity value of a `host:port/database` ID; `None` when the ID is not one.
pub fn database_identity(id: Option<&str>) -> Option<Value> {
    let (host, port, database) = parse_database_id(id?)?;
    Some(Value::object([
        ("host", Value::String(host)),
        ("port", Value::int(i64::from(port))),
        ("database", Value::String(database)),
    ]))
}

/// The `host:port/database` import ID an identity names.
pub fn database_import_id(identity: &Value) -> Result<String, Diagnostic> {
    let (Some(host), Some(port), Some(database)) = (
        identity.attr("host").as_str(),
        identity.attr("port").as_i64(),
        identity.attr("database").as_str(),
    ) else {
        return Err(Diagnostic::error(
            "Invalid import identity",
            "host, port (a whole number) and database must all be set.",
        ));
    };
    if !(1..=65535).contains(&port) || host.is_empty() || database.is_empty() {
        return Err(Diagnostic::error(
            "Invalid import identity",
            format!(
                "{host:?}:{port}/{database:?} does not name a database: the host and the database must not be empty, the port must be 1 to 65535."
            ),
        ));
    }
    Ok(format!("{host}:{port}/{database}"))
}

/// A string attribute of an identity (for the identity schemas of single resources).
pub fn string_attribute(
    name: &'static str,
    import: ForImport,
    description: &'static str,
) -> IdentityAttribute {
    IdentityAttribute {
        name,
        ty: Type::String,
        import,
        description,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_ids_parse_back_including_ipv6_and_socket_dirs() {
        assert_eq!(
            parse_database_id("db.internal:5433/af"),
            Some(("db.internal".into(), 5433, "af".into()))
        );
        assert_eq!(
            parse_database_id("::1:5432/artifortress"),
            Some(("::1".into(), 5432, "artifortress".into()))
        );
        assert_eq!(
            parse_database_id("/var/run/postgresql:5432/af"),
            Some(("/var/run/postgresql".into(), 5432, "af".into()))
        );
        assert_eq!(parse_database_id("db.internal/af"), None);
        assert_eq!(parse_database_id("db.internal:/af"), None);
        assert_eq!(parse_database_id("db.internal:5432/"), None);
        assert_eq!(parse_database_id("db:99999/af"), None);
    }

    #[test]
    fn identity_and_import_id_round_trip() {
        for id in ["127.0.0.1:5432/artifortress", "::1:6543/x_y"] {
            let identity = database_identity(Some(id)).expect("an identity");
            assert_eq!(database_import_id(&identity).unwrap(), id);
        }
        assert!(database_identity(None).is_none());
        let bad = Value::object([
            ("host", Value::string("h")),
            ("port", Value::int(0)),
            ("database", Value::string("d")),
        ]);
        assert!(database_import_id(&bad).is_err());
        let missing = Value::object([
            ("host", Value::string("h")),
            ("port", Value::Null),
            ("database", Value::string("d")),
        ]);
        assert!(database_import_id(&missing).is_err());
    }
}
