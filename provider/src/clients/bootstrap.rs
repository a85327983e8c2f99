//! Staging bootstrap (D1): the owner role, its database and the bucket an environment needs,
//! and a probe that the storage credentials can put, get and delete. Knows nothing of
//! Terraform.
//!
//! SQL safety: role and database names are validated as plain identifiers
//! (`^[A-Za-z_][A-Za-z0-9_]*$`, at most 63 bytes) and then double-quoted ([`quote_ident`]);
//! nothing else from input is formatted into SQL. Passwords never are: the server builds the
//! `ALTER ROLE` statement itself with `format('%I', '%L')` from bind parameters.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};

use super::object_store::{self, ObjectStoreError};
use super::pg::{quote_ident, valid_identifier};
use super::pg::{redact_url, scrub};

/// Where the probe object goes (`<PROBE_PREFIX><random>`).
pub const PROBE_PREFIX: &str = "_artifortress/bootstrap-probe-";

/// The names of the checks, in the order they are reported.
pub const CHECK_NAMES: [&str; 4] = ["role", "database_owner", "bucket", "storage_put_get_delete"];

/// What to bootstrap.
#[derive(Clone)]
pub struct BootstrapSpec {
    /// A role that may create roles and databases.
    pub admin_url: String,
    pub database: String,
    pub owner_role: String,
    /// Set as the role's password when `Some` (create, rotation).
    pub owner_password: Option<String>,
    pub bucket: String,
    /// Create the bucket when absent (else it must exist).
    pub create_bucket: bool,
    /// Region for a created bucket's location constraint.
    pub region: String,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for BootstrapSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapSpec")
            .field("admin_url", &redact_url(&self.admin_url))
            .field("database", &self.database)
            .field("owner_role", &self.owner_role)
            .field(
                "owner_password",
                &self.owner_password.as_ref().map(|_| "***"),
            )
            .field("bucket", &self.bucket)
            .field("create_bucket", &self.create_bucket)
            .finish_non_exhaustive()
    }
}

/// One verified fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// What a bootstrap (or a re-verification) found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `host:port` of the server.
    pub server: String,
    pub server_version: String,
    pub checks: Vec<Check>,
}

/// The live state a refresh compares with.
#[derive(Debug, Clone)]
pub struct Observation {
    pub server_version: String,
    pub role_exists: bool,
    pub role_can_login: bool,
    pub database_exists: bool,
    pub database_owner: Option<String>,
    pub bucket_exists: bool,
}

impl Observation {
    /// The checks a refresh can make without writing: the probe's result is not re-measured.
    pub fn checks(&self, role: &str, database: &str, bucket: &str) -> Vec<Check> {
        vec![
            role_check(role, self.role_exists, self.role_can_login),
            owner_check(
                database,
                role,
                self.database_exists,
                self.database_owner.as_deref(),
            ),
            bucket_check(bucket, self.bucket_exists),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "{what} {name:?} is not a plain identifier (^[A-Za-z_][A-Za-z0-9_]*$, at most 63 bytes)"
    )]
    BadIdentifier { what: &'static str, name: String },
    #[error("invalid database URL {url}: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{what} failed on {url}: {message}")]
    Database {
        url: String,
        what: &'static str,
        message: String,
    },
    #[error("{0}")]
    ObjectStore(#[from] ObjectStoreError),
    #[error("bucket {bucket:?} does not exist (set create_bucket = true to create it)")]
    BucketMissing { bucket: String },
    #[error(
        "the probe object s3://{bucket}/{key} read back differs from what was written ({detail})"
    )]
    ProbeMismatch {
        bucket: String,
        key: String,
        detail: String,
    },
}

fn role_check(role: &str, exists: bool, login: bool) -> Check {
    Check {
        name: "role",
        passed: exists && login,
        detail: match (exists, login) {
            (true, true) => format!("role {role} exists with LOGIN"),
            (true, false) => format!("role {role} exists but cannot log in (NOLOGIN)"),
            _ => format!("role {role} does not exist"),
        },
    }
}

fn owner_check(database: &str, role: &str, exists: bool, owner: Option<&str>) -> Check {
    Check {
        name: "database_owner",
        passed: exists && owner == Some(role),
        detail: match (exists, owner) {
            (false, _) => format!("database {database} does not exist"),
            (true, Some(o)) if o == role => format!("database {database} is owned by {role}"),
            (true, o) => format!(
                "database {database} is owned by {}, not {role}",
                o.unwrap_or("nobody")
            ),
        },
    }
}

fn bucket_check(bucket: &str, exists: bool) -> Check {
    Check {
        name: "bucket",
        passed: exists,
        detail: if exists {
            format!("bucket {bucket} exists")
        } else {
            format!("bucket {bucket} does not exist")
        },
    }
}

/// The probe check as a successful create records it (the random key is not in the detail, so
/// the record is stable).
pub fn probe_check(bucket: &str) -> Check {
    Check {
        name: "storage_put_get_delete",
        passed: true,
        detail: format!(
            "put, get (content compared) and delete of a probe object under s3://{bucket}/{PROBE_PREFIX}*"
        ),
    }
}

fn check_names(spec: &BootstrapSpec) -> Result<(), BootstrapError> {
    for (what, name) in [
        ("database", &spec.database),
        ("owner_role", &spec.owner_role),
    ] {
        if !valid_identifier(name) {
            return Err(BootstrapError::BadIdentifier {
                what,
                name: name.clone(),
            });
        }
    }
    Ok(())
}

/// `host:port` of a database URL.
pub fn server_of(url: &str) -> Result<String, BootstrapError> {
    let opts = options(url)?;
    Ok(format!("{}:{}", opts.get_host(), opts.get_port()))
}

fn options(url: &str) -> Result<PgConnectOptions, BootstrapError> {
    PgConnectOptions::from_str(url).map_err(|e| BootstrapError::InvalidUrl {
        url: redact_url(url),
        message: scrub(&e.to_string(), url),
    })
}

/// A session on `url`; when its database does not exist (SQLSTATE 3D000) or is `avoid` (a
/// database about to be dropped), on `postgres` instead.
async fn connect(
    url: &str,
    timeout: Duration,
    avoid: Option<&str>,
) -> Result<PgConnection, BootstrapError> {
    let opts = options(url)?.application_name("terraform-provider-artifortress");
    let redacted = redact_url(url);
    let attempt = |opts: PgConnectOptions| {
        let redacted = redacted.clone();
        async move {
            match tokio::time::timeout(timeout, PgConnection::connect_with(&opts)).await {
                Err(_) => Err((
                    None,
                    BootstrapError::Connect {
                        url: redacted,
                        message: format!(
                            "no connection within {}",
                            crate::duration::format(timeout)
                        ),
                    },
                )),
                Ok(Err(e)) => {
                    let code = e
                        .as_database_error()
                        .and_then(|d| d.code())
                        .map(|c| c.into_owned());
                    Err((
                        code,
                        BootstrapError::Connect {
                            url: redacted,
                            message: scrub(&super::words::pg_error_words(&e), url),
                        },
                    ))
                }
                Ok(Ok(c)) => Ok(c),
            }
        }
    };
    let own_db = opts.get_database().map(str::to_string);
    if avoid.is_some() && own_db.as_deref() == avoid {
        return attempt(opts.database("postgres")).await.map_err(|(_, e)| e);
    }
    match attempt(opts.clone()).await {
        Ok(c) => Ok(c),
        Err((Some(code), _)) if code == "3D000" && own_db.as_deref() != Some("postgres") => {
            attempt(opts.database("postgres")).await.map_err(|(_, e)| e)
        }
        Err((_, e)) => Err(e),
    }
}

fn db_err(url: &str, what: &'static str) -> impl FnOnce(sqlx::Error) -> BootstrapError {
    let url = redact_url(url);
    move |e| BootstrapError::Database {
        url,
        what,
        message: super::words::pg_error_words(&e),
    }
}

async fn server_version(conn: &mut PgConnection, url: &str) -> Result<String, BootstrapError> {
    sqlx::query_scalar("select current_setting('server_version')")
        .fetch_one(conn)
        .await
        .map_err(db_err(url, "reading the server version"))
}

async fn role_state(
    conn: &mut PgConnection,
    url: &str,
    role: &str,
) -> Result<Option<bool>, BootstrapError> {
    sqlx::query_scalar("select rolcanlogin from pg_roles where rolname = $1")
        .bind(role)
        .fetch_optional(conn)
        .await
        .map_err(db_err(url, "reading the role"))
}

/// `Some(owner)` when the database exists.
async fn database_owner(
    conn: &mut PgConnection,
    url: &str,
    database: &str,
) -> Result<Option<String>, BootstrapError> {
    sqlx::query_scalar("select pg_get_userbyid(datdba)::text from pg_database where datname = $1")
        .bind(database)
        .fetch_optional(conn)
        .await
        .map_err(db_err(url, "reading the database"))
}

/// Make it so: role (LOGIN, password when given), database owned by it, bucket, probe.
/// Every step is idempotent; an apply that died midway is finished by the next one.
pub async fn ensure(
    s3: &aws_sdk_s3::Client,
    spec: &BootstrapSpec,
) -> Result<Outcome, BootstrapError> {
    check_names(spec)?;
    let url = spec.admin_url.as_str();
    let server = server_of(url)?;
    // 1. The bucket first: a missing one fails before the server is changed.
    let mut exists = object_store::head_bucket(s3, &spec.bucket).await?;
    if !exists && spec.create_bucket {
        object_store::create_bucket(s3, &spec.bucket, &spec.region).await?;
        tracing::info!(bucket = %spec.bucket, "bucket created");
        exists = object_store::head_bucket(s3, &spec.bucket).await?;
    }
    if !exists {
        return Err(BootstrapError::BucketMissing {
            bucket: spec.bucket.clone(),
        });
    }

    let mut conn = connect(url, spec.connect_timeout, None).await?;
    let version = server_version(&mut conn, url).await?;
    let role = quote_ident(&spec.owner_role);
    let db = quote_ident(&spec.database);

    // 2. The role.
    match role_state(&mut conn, url, &spec.owner_role).await? {
        None => {
            sqlx::raw_sql(AssertSqlSafe(format!("create role {role} login")))
                .execute(&mut conn)
                .await
                .map_err(db_err(url, "creating the role"))?;
            tracing::info!(role = %spec.owner_role, "role created");
        }
        Some(false) => {
            sqlx::raw_sql(AssertSqlSafe(format!("alter role {role} login")))
                .execute(&mut conn)
                .await
                .map_err(db_err(url, "granting LOGIN to the role"))?;
        }
        Some(true) => {}
    }
    if let Some(password) = &spec.owner_password {
        // The server quotes both: %I the name, %L the password.
        let statement: String =
            sqlx::query_scalar("select format('alter role %I password %L', $1::text, $2::text)")
                .bind(&spec.owner_role)
                .bind(password)
                .fetch_one(&mut conn)
                .await
                .map_err(db_err(url, "preparing the password change"))?;
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .map_err(db_err(url, "setting the role's password"))?;
        tracing::info!(role = %spec.owner_role, "role password set");
    }

    // 3. The database, owned by the role.
    match database_owner(&mut conn, url, &spec.database).await? {
        None => {
            sqlx::raw_sql(AssertSqlSafe(format!("create database {db} owner {role}")))
                .execute(&mut conn)
                .await
                .map_err(db_err(url, "creating the database"))?;
            tracing::info!(database = %spec.database, "database created");
        }
        Some(owner) if owner != spec.owner_role => {
            sqlx::raw_sql(AssertSqlSafe(format!(
                "alter database {db} owner to {role}"
            )))
            .execute(&mut conn)
            .await
            .map_err(db_err(url, "changing the database's owner"))?;
        }
        Some(_) => {}
    }
    let login = role_state(&mut conn, url, &spec.owner_role).await?;
    let owner = database_owner(&mut conn, url, &spec.database).await?;
    let _ = conn.close().await;

    // 4. The probe.
    probe(s3, &spec.bucket).await?;

    Ok(Outcome {
        server,
        server_version: version,
        checks: vec![
            role_check(&spec.owner_role, login.is_some(), login == Some(true)),
            owner_check(
                &spec.database,
                &spec.owner_role,
                owner.is_some(),
                owner.as_deref(),
            ),
            bucket_check(&spec.bucket, true),
            probe_check(&spec.bucket),
        ],
    })
}

/// Put a random object under [`PROBE_PREFIX`], read it back and compare, delete it.
pub async fn probe(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), BootstrapError> {
    let mut nonce = [0u8; 16];
    rand::fill(&mut nonce);
    let key = format!("{PROBE_PREFIX}{}", hex::encode(nonce));
    let body = format!("artifortress bootstrap probe {}\n", hex::encode(nonce)).into_bytes();
    object_store::put_small(s3, bucket, &key, body.clone(), "text/plain").await?;
    let read = object_store::get_small(s3, bucket, &key).await;
    let cleanup = object_store::delete(s3, bucket, &key).await;
    let detail = match read? {
        Some(b) if b == body => None,
        Some(b) => Some(format!("{} bytes read, {} written", b.len(), body.len())),
        None => Some("the object was not found after the put".to_string()),
    };
    if let Some(detail) = detail {
        return Err(BootstrapError::ProbeMismatch {
            bucket: bucket.to_string(),
            key,
            detail,
        });
    }
    cleanup?;
    if object_store::head(s3, bucket, &key).await?.is_some() {
        return Err(BootstrapError::ProbeMismatch {
            bucket: bucket.to_string(),
            key,
            detail: "the object still exists after the delete".to_string(),
        });
    }
    Ok(())
}

/// Read what exists, without changing anything.
pub async fn observe(
    s3: &aws_sdk_s3::Client,
    url: &str,
    database: &str,
    role: &str,
    bucket: &str,
    timeout: Duration,
) -> Result<Observation, BootstrapError> {
    let mut conn = connect(url, timeout, None).await?;
    let server_version = server_version(&mut conn, url).await?;
    let login = role_state(&mut conn, url, role).await?;
    let owner = database_owner(&mut conn, url, database).await?;
    let _ = conn.close().await;
    let bucket_exists = object_store::head_bucket(s3, bucket).await?;
    Ok(Observation {
        server_version,
        role_exists: login.is_some(),
        role_can_login: login == Some(true),
        database_exists: owner.is_some(),
        database_owner: owner,
        bucket_exists,
    })
}

/// Terminate the database's sessions, drop it, drop the role (both if they exist). The bucket
/// is never touched.
pub async fn drop_all(
    url: &str,
    database: &str,
    role: &str,
    timeout: Duration,
) -> Result<(), BootstrapError> {
    for (what, name) in [("database", database), ("owner_role", role)] {
        if !valid_identifier(name) {
            return Err(BootstrapError::BadIdentifier {
                what,
                name: name.to_string(),
            });
        }
    }
    let mut conn = connect(url, timeout, Some(database)).await?;
    sqlx::query(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = $1 and pid <> pg_backend_pid()",
    )
    .bind(database)
    .execute(&mut conn)
    .await
    .map_err(db_err(url, "terminating the database's sessions"))?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "drop database if exists {}",
        quote_ident(database)
    )))
    .execute(&mut conn)
    .await
    .map_err(db_err(url, "dropping the database"))?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "drop role if exists {}",
        quote_ident(role)
    )))
    .execute(&mut conn)
    .await
    .map_err(db_err(url, "dropping the role"))?;
    let _ = conn.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_any_connection() {
        let spec = BootstrapSpec {
            admin_url: "postgres://u:secret@127.0.0.1:1/postgres".into(),
            database: "ok".into(),
            owner_role: "bad-name".into(),
            owner_password: Some("pw".into()),
            bucket: "b".into(),
            create_bucket: false,
            region: "us-east-1".into(),
            connect_timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            check_names(&spec),
            Err(BootstrapError::BadIdentifier {
                what: "owner_role",
                ..
            })
        ));
        // The password never prints.
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("\"pw\""),
            "{shown}"
        );
    }

    #[test]
    fn checks_say_what_is_wrong() {
        let o = Observation {
            server_version: "15".into(),
            role_exists: true,
            role_can_login: true,
            database_exists: true,
            database_owner: Some("postgres".into()),
            bucket_exists: false,
        };
        let checks = o.checks("af", "db", "b");
        assert!(checks[0].passed);
        assert!(!checks[1].passed && checks[1].detail.contains("owned by postgres, not af"));
        assert!(!checks[2].passed);
        assert_eq!(
            server_of("postgres://u:p@db.example:6543/x").unwrap(),
            "db.example:6543"
        );
        let e = server_of("not a url :://").err();
        assert!(e.is_some());
    }
}
