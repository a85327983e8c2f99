//! Repositories and package versions: the routes of the D1 smoke flow ("auth, repo read,
//! draft/publish happy path", docs/28 of the service). Line numbers cite
//! src/Artifortress.Api/Program.fs at f628e74 of the service's repository.
//!
//! Divergences (kept small on purpose): only `local` repositories' fields are checked in depth;
//! no governance, quarantine, policy or search side effects.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sqlx::Row;

use super::api::{
    ApiError, SharedState, audit, get_ci, non_empty_array, parse_object, require_principal,
};
use super::auth::Principal;
use super::uploads::ensure_tables;

pub type ApiResult<T> = Result<T, ApiError>;

/// Repository roles (`RepoRole`, src/Artifortress.Domain/Library.fs:83): admin implies every
/// role, write implies read, promote only itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    Write,
    Admin,
    Promote,
}

fn implies(assigned: &str, required: Role) -> bool {
    matches!(
        (assigned, required),
        ("admin", _)
            | ("write", Role::Write)
            | ("write", Role::Read)
            | ("read", Role::Read)
            | ("promote", Role::Promote)
    )
}

/// `Authorization.hasRole` (Library.fs:135): a `repo:<key|*>:<role>` scope for this key.
pub fn has_role(scopes: &[String], repo_key: &str, role: Role) -> bool {
    scopes.iter().any(|s| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() == 3
            && parts[0].eq_ignore_ascii_case("repo")
            && (parts[1] == "*" || parts[1].trim().eq_ignore_ascii_case(repo_key))
            && implies(&parts[2].trim().to_ascii_lowercase(), role)
    })
}

/// `requireRole` (Program.fs:6398): 401 without a valid token, 403 without the role.
pub async fn require_role(
    s: &SharedState,
    headers: &HeaderMap,
    repo_key: &str,
    role: Role,
) -> ApiResult<Principal> {
    let p = require_principal(s, headers)
        .await
        .map_err(|_| ApiError::unauthorized("Missing or invalid bearer token."))?;
    if has_role(&p.scopes, repo_key, role) {
        Ok(p)
    } else {
        Err(ApiError::forbidden(
            "Caller does not have the required repository role.",
        ))
    }
}

/// `normalizeRepoKey` (Program.fs:684): trimmed, lower case; blank is a 400.
pub fn repo_key(raw: &str) -> ApiResult<String> {
    let k = raw.trim().to_lowercase();
    if k.is_empty() {
        Err(ApiError::bad_request(
            "repoKey route parameter is required.",
        ))
    } else {
        Ok(k)
    }
}

pub fn version_id(raw: &str) -> ApiResult<String> {
    let v = raw.trim();
    if super::auth::is_uuid(v) {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(ApiError::bad_request(
            "versionId route parameter must be a valid GUID.",
        ))
    }
}

pub fn conflict(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", m)
}

/// The service runs every query inside `withConnection`, which turns any exception (a foreign
/// key refusing a delete included) into 503 `Database operation failed: …` (Program.fs, `let
/// withConnection`).
pub fn db_failed(e: sqlx::Error) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        format!("Database operation failed: {e}"),
    )
}

pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn repo_json(row: &sqlx::postgres::PgRow) -> Value {
    let config: Value =
        serde_json::from_str(&row.get::<String, _>("config")).unwrap_or(Value::Null);
    let created: chrono::DateTime<chrono::Utc> = row.get("created_at");
    json!({
        "repoKey": row.get::<String, _>("repo_key"),
        "repoType": row.get::<String, _>("repo_type"),
        "upstreamUrl": config.get("upstreamUrl").cloned().unwrap_or(Value::Null),
        "memberRepos": config.get("memberRepos").cloned().unwrap_or(json!([])),
        "createdAtUtc": ts(created),
        "updatedAtUtc": ts(created),
    })
}

macro_rules! repo_columns {
    () => {
        "repo_key::text as repo_key, repo_type, config::text as config, created_at"
    };
}

/// `GET /v1/repos` (Program.fs:8427): the tenant's repositories the caller may read, by key.
pub async fn list_repos(
    State(s): State<SharedState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let p = require_principal(&s, &headers)
        .await
        .map_err(|_| ApiError::unauthorized("Missing or invalid bearer token."))?;
    let rows = sqlx::query(concat!(
        "select ",
        repo_columns!(),
        " from repos where tenant_id = $1::uuid order by repo_key"
    ))
    .bind(&p.tenant_id)
    .fetch_all(&s.pool)
    .await
    .map_err(db_failed)?;
    let visible: Vec<Value> = rows
        .iter()
        .filter(|r| has_role(&p.scopes, &r.get::<String, _>("repo_key"), Role::Read))
        .map(repo_json)
        .collect();
    Ok(Json(Value::Array(visible)))
}

/// `GET /v1/repos/{repoKey}` (Program.fs:8447).
pub async fn get_repo(
    State(s): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let key = repo_key(&key)?;
    let p = require_role(&s, &headers, &key, Role::Read).await?;
    let row = sqlx::query(concat!(
        "select ",
        repo_columns!(),
        " from repos where tenant_id = $1::uuid and repo_key = $2 limit 1"
    ))
    .bind(&p.tenant_id)
    .bind(&key)
    .fetch_optional(&s.pool)
    .await
    .map_err(db_failed)?;
    row.map(|r| Json(repo_json(&r)))
        .ok_or_else(|| ApiError::not_found("Repository was not found."))
}

/// `POST /v1/repos` (Program.fs:8465, `validateRepoRequest` at 7245): needs `repo:*:admin`;
/// 201 with the repository, 409 when the key exists.
pub async fn create_repo(
    State(s): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let p = require_role(&s, &headers, "*", Role::Admin).await?;
    let m = parse_object(&body)?;
    let text = |name: &str| {
        get_ci(&m, name)
            .and_then(Value::as_str)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let key = text("repoKey").to_lowercase();
    let repo_type = text("repoType").to_lowercase();
    let upstream = text("upstreamUrl");
    if key.is_empty() {
        return Err(ApiError::bad_request("repoKey is required."));
    }
    if key.contains(':') {
        return Err(ApiError::bad_request("repoKey cannot contain ':'."));
    }
    let config = match repo_type.as_str() {
        "local" => json!({}),
        "remote" => {
            if upstream.is_empty() {
                return Err(ApiError::bad_request(
                    "Remote repositories require upstreamUrl.",
                ));
            }
            if !upstream.contains("://") {
                return Err(ApiError::bad_request(
                    "upstreamUrl must be a valid absolute URI.",
                ));
            }
            json!({ "upstreamUrl": upstream })
        }
        "virtual" => {
            let mut members: Vec<String> = Vec::new();
            for v in get_ci(&m, "memberRepos")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let k = v.as_str().unwrap_or_default().trim().to_lowercase();
                if !k.is_empty() && !members.contains(&k) {
                    members.push(k);
                }
            }
            if members.is_empty() {
                return Err(ApiError::bad_request(
                    "Virtual repositories require at least one member repo key.",
                ));
            }
            json!({ "memberRepos": members })
        }
        _ => {
            return Err(ApiError::bad_request(
                "repoType must be one of: local, remote, virtual.",
            ));
        }
    };
    let row = sqlx::query(concat!(
        "insert into repos (tenant_id, repo_key, repo_type, config) values ($1::uuid, $2, $3, $4::jsonb) \
         on conflict (tenant_id, repo_key) do nothing returning ",
        repo_columns!()
    ))
    .bind(&p.tenant_id)
    .bind(&key)
    .bind(&repo_type)
    .bind(config.to_string())
    .fetch_optional(&s.pool)
    .await
    .map_err(db_failed)?;
    let Some(row) = row else {
        return Err(conflict("Repository key already exists."));
    };
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        "repo.created",
        "repo",
        &key,
        json!({ "repoType": repo_type }),
    )
    .await
    .map_err(db_failed)?;
    let location = format!("/v1/repos/{key}");
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(repo_json(&row)),
    )
        .into_response())
}

/// `DELETE /v1/repos/{repoKey}` (Program.fs:8496): 200 `{repoKey, status: "deleted"}`, 404 when
/// absent. A repository that still has packages is refused by the foreign keys of the
/// migrations; the service answers that as 503 (see [`db_failed`]).
pub async fn delete_repo(
    State(s): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let key = repo_key(&key)?;
    let p = require_role(&s, &headers, &key, Role::Admin).await?;
    let deleted = sqlx::query("delete from repos where tenant_id = $1::uuid and repo_key = $2")
        .bind(&p.tenant_id)
        .bind(&key)
        .execute(&s.pool)
        .await
        .map_err(db_failed)?
        .rows_affected();
    if deleted == 0 {
        return Err(ApiError::not_found("Repository was not found."));
    }
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        "repo.deleted",
        "repo",
        &key,
        json!({}),
    )
    .await
    .map_err(db_failed)?;
    Ok(Json(json!({ "repoKey": key, "status": "deleted" })))
}

/// `POST /v1/repos/{repoKey}/packages/versions/drafts` (Program.fs:8902,
/// `validateDraftVersionRequest` at 711): 201 for a new draft, 200 `reusedDraft: true` for an
/// existing one, 409 for a version in another state.
pub async fn create_draft(
    State(s): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let key = repo_key(&key)?;
    let p = require_role(&s, &headers, &key, Role::Write).await?;
    let m = parse_object(&body)?;
    let text = |name: &str| {
        get_ci(&m, name)
            .and_then(Value::as_str)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let package_type = text("packageType").to_lowercase();
    let namespace = Some(text("packageNamespace").to_lowercase()).filter(|n| !n.is_empty());
    let name = text("packageName").to_lowercase();
    let version = text("version");
    if package_type.is_empty() {
        return Err(ApiError::bad_request("packageType is required."));
    }
    if name.is_empty() {
        return Err(ApiError::bad_request("packageName is required."));
    }
    if version.is_empty() {
        return Err(ApiError::bad_request("version is required."));
    }
    let mut tx = s.pool.begin().await.map_err(db_failed)?;
    let repo_id: Option<String> = sqlx::query_scalar(
        "select repo_id::text from repos where tenant_id = $1::uuid and repo_key = $2",
    )
    .bind(&p.tenant_id)
    .bind(&key)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_failed)?;
    let Some(repo_id) = repo_id else {
        return Err(ApiError::not_found("Repository was not found."));
    };
    let package_id: String = sqlx::query_scalar(
        "with ins as ( \
           insert into packages (tenant_id, repo_id, package_type, namespace, name) \
           values ($1::uuid, $2::uuid, $3, $4, $5) \
           on conflict (repo_id, package_type, coalesce(namespace, ''), name) do nothing \
           returning package_id) \
         select package_id::text from ins \
         union all select package_id::text from packages where repo_id = $2::uuid \
           and package_type = $3 and coalesce(namespace, '') = coalesce($4, '') and name = $5 \
         limit 1",
    )
    .bind(&p.tenant_id)
    .bind(&repo_id)
    .bind(&package_type)
    .bind(&namespace)
    .bind(&name)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_failed)?;
    let existing: Option<(String, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "select version_id::text, state, created_at from package_versions \
         where repo_id = $1::uuid and package_id = $2::uuid and version = $3",
    )
    .bind(&repo_id)
    .bind(&package_id)
    .bind(&version)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_failed)?;
    let (vid, created, reused) = match existing {
        Some((_, state, _)) if state != "draft" => {
            return Err(conflict(format!(
                "Version already exists in state '{state}' and cannot be reused as a draft."
            )));
        }
        Some((vid, _, created)) => (vid, created, true),
        None => {
            let (vid, created): (String, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
                "insert into package_versions \
                   (tenant_id, repo_id, package_id, version, state, created_by_subject) \
                 values ($1::uuid, $2::uuid, $3::uuid, $4, 'draft', $5) \
                 returning version_id::text, created_at",
            )
            .bind(&p.tenant_id)
            .bind(&repo_id)
            .bind(&package_id)
            .bind(&version)
            .bind(&p.subject)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_failed)?;
            (vid, created, false)
        }
    };
    tx.commit().await.map_err(db_failed)?;
    let action = if reused {
        "package.version.draft.reused"
    } else {
        "package.version.draft.created"
    };
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        action,
        "package_version",
        &vid,
        json!({"repoKey": key, "packageType": package_type, "packageName": name, "version": version}),
    )
    .await
    .map_err(db_failed)?;
    let body = json!({
        "versionId": vid,
        "repoKey": key,
        "packageType": package_type,
        "packageNamespace": namespace,
        "packageName": name,
        "version": version,
        "state": "draft",
        "createdAtUtc": ts(created),
        "reusedDraft": reused,
    });
    Ok(if reused {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        let location = format!("/v1/repos/{key}/packages/versions/{version}");
        (
            StatusCode::CREATED,
            [(axum::http::header::LOCATION, location)],
            Json(body),
        )
            .into_response()
    })
}

/// A version of a repository: (repo_id, package_type, state).
async fn version_target(
    s: &SharedState,
    tenant_id: &str,
    key: &str,
    vid: &str,
) -> ApiResult<Option<(String, String, String)>> {
    sqlx::query_as(
        "select pv.repo_id::text, p.package_type, pv.state from package_versions pv \
         join repos r on r.repo_id = pv.repo_id and r.tenant_id = pv.tenant_id \
         join packages p on p.package_id = pv.package_id \
         where pv.tenant_id = $1::uuid and r.repo_key = $2 and pv.version_id = $3::uuid",
    )
    .bind(tenant_id)
    .bind(key)
    .bind(vid)
    .fetch_optional(&s.pool)
    .await
    .map_err(db_failed)
}

fn hex_field(
    v: Option<&Value>,
    field: &str,
    len: usize,
    required: bool,
) -> ApiResult<Option<String>> {
    let t = v
        .and_then(Value::as_str)
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if t.is_empty() && !required {
        return Ok(None);
    }
    if t.len() == len && t.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(Some(t))
    } else {
        Err(ApiError::bad_request(format!(
            "{field} must be a {len}-character lowercase hex value."
        )))
    }
}

/// `Ok(())` when `digest` is a blob committed in this repository by an upload session; else the
/// 409 the service gives (`Blob digest '…' does not exist.` / `… is not committed in this
/// repository.`).
async fn check_committed(
    s: &SharedState,
    tenant_id: &str,
    repo_id: &str,
    digest: &str,
    what: &str,
) -> ApiResult<()> {
    let (exists, committed): (bool, bool) = sqlx::query_as(
        "select exists(select 1 from blobs where digest = $3), \
                exists(select 1 from upload_sessions where tenant_id = $1::uuid \
                  and repo_id = $2::uuid and state = 'committed' and committed_blob_digest = $3)",
    )
    .bind(tenant_id)
    .bind(repo_id)
    .bind(digest)
    .fetch_one(&s.pool)
    .await
    .map_err(db_failed)?;
    if !exists {
        Err(conflict(format!(
            "{what} digest '{digest}' does not exist."
        )))
    } else if !committed {
        Err(conflict(format!(
            "{what} digest '{digest}' is not committed in this repository."
        )))
    } else {
        Ok(())
    }
}

/// The version's rows that publishing needs.
#[derive(Clone, Copy)]
enum VersionRows {
    Entries,
    Manifests,
}

/// How many rows of that kind belong to the version.
async fn version_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: VersionRows,
    vid: &str,
) -> ApiResult<i64> {
    let sql = match rows {
        VersionRows::Entries => "select count(*) from artifact_entries where version_id = $1::uuid",
        VersionRows::Manifests => "select count(*) from manifests where version_id = $1::uuid",
    };
    sqlx::query_scalar(sql)
        .bind(vid)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_failed)
}

/// `POST /v1/repos/{repoKey}/packages/versions/{versionId}/entries` (Program.fs:8996).
pub async fn upsert_entries(
    State(s): State<SharedState>,
    Path((key, vid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let key = repo_key(&key)?;
    let vid = version_id(&vid)?;
    let p = require_role(&s, &headers, &key, Role::Write).await?;
    ensure_tables(&s.pool).await.map_err(db_failed)?;
    let m = parse_object(&body)?;
    let items = non_empty_array(&m, "entries", "At least one artifact entry is required.")?;
    let mut entries = Vec::new();
    let mut seen = Vec::new();
    for it in &items {
        let Some(o) = it.as_object() else {
            return Err(ApiError::bad_request("entries must be objects."));
        };
        let path = get_ci(o, "relativePath")
            .and_then(Value::as_str)
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        if path.is_empty() {
            return Err(ApiError::bad_request(
                "relativePath is required for each artifact entry.",
            ));
        }
        if seen.contains(&path.to_lowercase()) {
            return Err(ApiError::bad_request(format!(
                "Duplicate relativePath '{path}' is not allowed in a single request."
            )));
        }
        seen.push(path.to_lowercase());
        let size = get_ci(o, "sizeBytes").and_then(Value::as_i64).unwrap_or(0);
        if size <= 0 {
            return Err(ApiError::bad_request(format!(
                "sizeBytes for '{path}' must be greater than zero."
            )));
        }
        let digest =
            hex_field(get_ci(o, "blobDigest"), "blobDigest", 64, true)?.unwrap_or_default();
        let sha1 = hex_field(get_ci(o, "checksumSha1"), "checksumSha1", 40, false)?;
        let sha256 = hex_field(get_ci(o, "checksumSha256"), "checksumSha256", 64, false)?;
        entries.push((path, digest, sha1, sha256, size));
    }
    let Some((repo_id, _, state)) = version_target(&s, &p.tenant_id, &key, &vid).await? else {
        return Err(ApiError::not_found("Package version was not found."));
    };
    if state != "draft" {
        return Err(conflict(format!(
            "Package version is in state '{state}' and cannot be modified."
        )));
    }
    for e in &entries {
        check_committed(&s, &p.tenant_id, &repo_id, &e.1, "Blob").await?;
    }
    let mut tx = s.pool.begin().await.map_err(db_failed)?;
    for (path, digest, sha1, sha256, size) in &entries {
        sqlx::query(
            "insert into artifact_entries \
               (version_id, relative_path, blob_digest, checksum_sha1, checksum_sha256, size_bytes) \
             values ($1::uuid, $2, $3, $4, $5, $6) \
             on conflict (version_id, relative_path) do update set blob_digest = excluded.blob_digest, \
               checksum_sha1 = excluded.checksum_sha1, checksum_sha256 = excluded.checksum_sha256, \
               size_bytes = excluded.size_bytes",
        )
        .bind(&vid)
        .bind(path)
        .bind(digest)
        .bind(sha1)
        .bind(sha256)
        .bind(size)
        .execute(&mut *tx)
        .await
        .map_err(db_failed)?;
    }
    tx.commit().await.map_err(db_failed)?;
    let count = entries.len();
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        "package.version.entries.upserted",
        "package_version",
        &vid,
        json!({"repoKey": key, "entryCount": count.to_string(), "state": "draft"}),
    )
    .await
    .map_err(db_failed)?;
    Ok(Json(
        json!({"versionId": vid, "repoKey": key, "state": "draft", "entryCount": count}),
    ))
}

/// `PUT /v1/repos/{repoKey}/packages/versions/{versionId}/manifest` (Program.fs:9065,
/// `validateManifestForPackageType` at 803).
pub async fn put_manifest(
    State(s): State<SharedState>,
    Path((key, vid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let key = repo_key(&key)?;
    let vid = version_id(&vid)?;
    let p = require_role(&s, &headers, &key, Role::Write).await?;
    ensure_tables(&s.pool).await.map_err(db_failed)?;
    let Some((repo_id, package_type, state)) = version_target(&s, &p.tenant_id, &key, &vid).await?
    else {
        return Err(ApiError::not_found("Package version was not found."));
    };
    let m = parse_object(&body)?;
    let Some(manifest) = get_ci(&m, "manifest").and_then(Value::as_object) else {
        return Err(ApiError::bad_request("manifest must be a JSON object."));
    };
    let required: &[&str] = match package_type.as_str() {
        "nuget" => &["id", "version"],
        "npm" => &["name", "version"],
        "maven" => &["groupId", "artifactId", "version"],
        _ => &[],
    };
    for prop in required {
        match manifest.get(*prop) {
            None => {
                return Err(ApiError::bad_request(format!(
                    "manifest.{prop} is required for this package type."
                )));
            }
            Some(Value::String(v)) if v.trim().is_empty() => {
                return Err(ApiError::bad_request(format!(
                    "manifest.{prop} cannot be empty."
                )));
            }
            Some(Value::String(_)) => {}
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "manifest.{prop} must be a string."
                )));
            }
        }
    }
    let blob = hex_field(
        get_ci(&m, "manifestBlobDigest"),
        "manifestBlobDigest",
        64,
        false,
    )?;
    if state != "draft" {
        return Err(conflict(format!(
            "Package version is in state '{state}' and cannot be modified."
        )));
    }
    if let Some(d) = &blob {
        check_committed(&s, &p.tenant_id, &repo_id, d, "Manifest blob").await?;
    }
    sqlx::query(
        "insert into manifests (version_id, tenant_id, repo_id, package_type, manifest_blob_digest, \
           manifest_json, created_by_subject, updated_by_subject) \
         values ($1::uuid, $2::uuid, $3::uuid, $4, $5, $6::jsonb, $7, $7) \
         on conflict (version_id) do update set manifest_blob_digest = excluded.manifest_blob_digest, \
           manifest_json = excluded.manifest_json, updated_by_subject = excluded.updated_by_subject, \
           updated_at = now()",
    )
    .bind(&vid)
    .bind(&p.tenant_id)
    .bind(&repo_id)
    .bind(&package_type)
    .bind(&blob)
    .bind(Value::Object(manifest.clone()).to_string())
    .bind(&p.subject)
    .execute(&s.pool)
    .await
    .map_err(db_failed)?;
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        "package.version.manifest.upserted",
        "package_version",
        &vid,
        json!({"repoKey": key, "packageType": package_type,
               "hasManifestBlobDigest": blob.is_some().to_string(), "state": "draft"}),
    )
    .await
    .map_err(db_failed)?;
    Ok(Json(json!({
        "versionId": vid, "repoKey": key, "packageType": package_type,
        "state": "draft", "manifestBlobDigest": blob,
    })))
}

/// `GET /v1/repos/{repoKey}/packages/versions/{versionId}/manifest` (Program.fs:9143).
pub async fn get_manifest(
    State(s): State<SharedState>,
    Path((key, vid)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let key = repo_key(&key)?;
    let vid = version_id(&vid)?;
    let p = require_role(&s, &headers, &key, Role::Read).await?;
    ensure_tables(&s.pool).await.map_err(db_failed)?;
    let Some((_, package_type, state)) = version_target(&s, &p.tenant_id, &key, &vid).await? else {
        return Err(ApiError::not_found("Package version was not found."));
    };
    let row: Option<(Option<String>, String)> = sqlx::query_as(
        "select manifest_blob_digest::text, manifest_json::text from manifests where version_id = $1::uuid",
    )
    .bind(&vid)
    .fetch_optional(&s.pool)
    .await
    .map_err(db_failed)?;
    let Some((blob, manifest)) = row else {
        return Err(ApiError::not_found(
            "Manifest was not found for package version.",
        ));
    };
    let manifest: Value = serde_json::from_str(&manifest).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("Stored manifest could not be parsed: {e}"),
        )
    })?;
    Ok(Json(json!({
        "versionId": vid, "repoKey": key, "packageType": package_type, "state": state,
        "manifestBlobDigest": blob, "manifest": manifest,
    })))
}

/// `POST /v1/repos/{repoKey}/packages/versions/{versionId}/publish` (Program.fs:9187,
/// `publishDraftVersionForRepo` at 4283): needs the promote role; entries, committed blobs and a
/// manifest first; one `version.published` outbox event; publishing again is idempotent.
pub async fn publish(
    State(s): State<SharedState>,
    Path((key, vid)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let key = repo_key(&key)?;
    let vid = version_id(&vid)?;
    let p = require_role(&s, &headers, &key, Role::Promote).await?;
    ensure_tables(&s.pool).await.map_err(db_failed)?;
    let mut tx = s.pool.begin().await.map_err(db_failed)?;
    let target = sqlx::query(
        "select pv.repo_id::text as repo_id, p.package_type, p.namespace, p.name, pv.version, \
                pv.state, pv.published_at \
         from package_versions pv \
         join repos r on r.repo_id = pv.repo_id and r.tenant_id = pv.tenant_id \
         join packages p on p.package_id = pv.package_id \
         where pv.tenant_id = $1::uuid and r.repo_key = $2 and pv.version_id = $3::uuid \
         for update of pv",
    )
    .bind(&p.tenant_id)
    .bind(&key)
    .bind(&vid)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_failed)?;
    let Some(t) = target else {
        return Err(ApiError::not_found("Package version was not found."));
    };
    let state: String = t.get("state");
    let repo_id: String = t.get("repo_id");
    let base = json!({
        "versionId": vid, "repoKey": key,
        "packageType": t.get::<String, _>("package_type"),
        "packageNamespace": t.get::<Option<String>, _>("namespace"),
        "packageName": t.get::<String, _>("name"),
        "version": t.get::<String, _>("version"),
    });
    let with = |mut b: Value, extra: Value| {
        if let (Some(o), Value::Object(e)) = (b.as_object_mut(), extra) {
            o.extend(e);
        }
        b
    };
    if state == "published" {
        let at: Option<chrono::DateTime<chrono::Utc>> = t.get("published_at");
        return Ok(Json(with(
            base,
            json!({"state": "published", "publishedAtUtc": at.map(ts),
                   "eventEmitted": false, "idempotent": true}),
        )));
    }
    if state != "draft" {
        return Err(conflict(format!(
            "Package version is in state '{state}' and cannot be published."
        )));
    }
    if version_rows(&mut tx, VersionRows::Entries, &vid).await? == 0 {
        return Err(conflict(
            "Package version cannot be published without artifact entries.",
        ));
    }
    let missing: Option<String> = sqlx::query_scalar(
        "select ae.blob_digest::text from artifact_entries ae where ae.version_id = $1::uuid \
         and not exists (select 1 from upload_sessions us where us.tenant_id = $2::uuid \
           and us.repo_id = $3::uuid and us.state = 'committed' \
           and us.committed_blob_digest = ae.blob_digest) limit 1",
    )
    .bind(&vid)
    .bind(&p.tenant_id)
    .bind(&repo_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_failed)?;
    if let Some(d) = missing {
        return Err(conflict(format!(
            "Package version references blob digest '{d}' that is not committed in this repository."
        )));
    }
    if version_rows(&mut tx, VersionRows::Manifests, &vid).await? == 0 {
        return Err(conflict(
            "Package version cannot be published without a manifest.",
        ));
    }
    let at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "update package_versions set state = 'published', published_at = coalesce(published_at, now()) \
         where tenant_id = $1::uuid and version_id = $2::uuid and state = 'draft' returning published_at",
    )
    .bind(&p.tenant_id)
    .bind(&vid)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_failed)?;
    let payload = with(base.clone(), json!({"publishedAtUtc": ts(at)}));
    let event: Option<String> = sqlx::query_scalar(
        "insert into outbox_events (tenant_id, aggregate_type, aggregate_id, event_type, payload) \
         select $1::uuid, 'package_version', $2, 'version.published', $3::jsonb \
         where not exists (select 1 from outbox_events where tenant_id = $1::uuid \
           and aggregate_type = 'package_version' and aggregate_id = $2 \
           and event_type = 'version.published') \
         returning event_id::text",
    )
    .bind(&p.tenant_id)
    .bind(&vid)
    .bind(payload.to_string())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_failed)?;
    sqlx::query(
        "insert into audit_log (tenant_id, actor_subject, action, resource_type, resource_id, details) \
         values ($1::uuid, $2, 'package.version.published', 'package_version', $3, $4::jsonb)",
    )
    .bind(&p.tenant_id)
    .bind(&p.subject)
    .bind(&vid)
    .bind(json!({"repoKey": key}).to_string())
    .execute(&mut *tx)
    .await
    .map_err(db_failed)?;
    tx.commit().await.map_err(db_failed)?;
    Ok(Json(with(
        base,
        json!({"state": "published", "publishedAtUtc": ts(at), "outboxEventId": event,
               "eventEmitted": event.is_some(), "idempotent": false}),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_domain() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(has_role(&s(&["repo:*:admin"]), "x", Role::Promote));
        assert!(has_role(&s(&["repo:x:write"]), "X", Role::Read));
        assert!(!has_role(&s(&["repo:x:write"]), "x", Role::Promote));
        assert!(!has_role(&s(&["repo:y:admin"]), "x", Role::Read));
        assert!(!has_role(&s(&["repo:x:read"]), "x", Role::Write));
        assert!(has_role(&s(&["repo:x:promote"]), "x", Role::Promote));
    }
}
