//! Upload sessions: create, presign a part (the client PUTs its bytes straight to object
//! storage), complete, commit. Line numbers cite src/Artifortress.Api/Program.fs at f628e74 of the
//! service's repository; presigning follows src/Artifortress.Api/ObjectStorage.fs
//! (`PresignUploadPart`: a SigV4 query-signed `UploadPart` URL on the storage endpoint).

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

use super::api::{ApiError, SharedState, audit, get_ci, non_empty_array, parse_object};
use super::repos::{ApiResult, Role, conflict, db_failed, repo_key, require_role, ts};

/// The test bed's migration set (`acceptance-tests/testbed/migrations`) stops at the tables its
/// other routes use, and several tests pin its head. The two tables the upload and manifest
/// routes need are created here on first use, with the columns of the service's
/// db/migrations/0003_phase2_upload_sessions.sql and 0007_phase3_manifest_persistence.sql.
pub async fn ensure_tables(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("select pg_advisory_xact_lock(hashtext('artifortress.testbed.upload_tables'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "create table if not exists upload_sessions ( \
           upload_id uuid primary key default gen_random_uuid(), \
           tenant_id uuid not null references tenants(tenant_id), \
           repo_id uuid not null references repos(repo_id) on delete cascade, \
           expected_digest char(64) not null, \
           expected_length bigint not null check (expected_length > 0), \
           state text not null check (state in ('initiated', 'parts_uploading', 'pending_commit', 'committed', 'aborted')), \
           object_staging_key text null, \
           storage_upload_id text null, \
           committed_blob_digest char(64) null references blobs(digest), \
           created_by_subject text not null, \
           expires_at timestamptz not null, \
           created_at timestamptz not null default now(), \
           updated_at timestamptz not null default now(), \
           committed_at timestamptz null, \
           aborted_at timestamptz null, \
           aborted_reason text null)",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "create table if not exists manifests ( \
           version_id uuid primary key references package_versions(version_id) on delete cascade, \
           tenant_id uuid not null references tenants(tenant_id), \
           repo_id uuid not null references repos(repo_id), \
           package_type text not null, \
           manifest_blob_digest char(64) null references blobs(digest), \
           manifest_json jsonb not null, \
           created_by_subject text not null, \
           updated_by_subject text not null, \
           created_at timestamptz not null default now(), \
           updated_at timestamptz not null default now())",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The service's object-storage failures (`mapObjectStorageErrorToResult`, Program.fs:2199):
/// anything but a bad request or a missing object is 503.
fn storage_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        format!("object storage: {e}"),
    )
}

fn upload_id(raw: &str) -> ApiResult<String> {
    let v = raw.trim();
    if super::auth::is_uuid(v) {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(ApiError::bad_request(
            "uploadId route parameter must be a valid GUID.",
        ))
    }
}

struct Session {
    upload_id: String,
    expected_digest: String,
    expected_length: i64,
    state: String,
    staging_key: Option<String>,
    storage_upload_id: Option<String>,
    committed_digest: Option<String>,
    expired: bool,
}

async fn read_session(
    s: &SharedState,
    tenant_id: &str,
    key: &str,
    uid: &str,
) -> ApiResult<Session> {
    let row = sqlx::query(
        "select us.upload_id::text as upload_id, us.expected_digest::text as expected_digest, \
                us.expected_length, us.state, us.object_staging_key, us.storage_upload_id, \
                us.committed_blob_digest::text as committed_blob_digest, \
                us.expires_at <= now() as expired \
         from upload_sessions us join repos r on r.repo_id = us.repo_id \
         where us.tenant_id = $1::uuid and r.repo_key = $2 and us.upload_id = $3::uuid",
    )
    .bind(tenant_id)
    .bind(key)
    .bind(uid)
    .fetch_optional(&s.pool)
    .await
    .map_err(db_failed)?;
    let Some(r) = row else {
        return Err(ApiError::not_found("Upload session was not found."));
    };
    Ok(Session {
        upload_id: r.get("upload_id"),
        expected_digest: r.get("expected_digest"),
        expected_length: r.get("expected_length"),
        state: r.get("state"),
        staging_key: r.get("object_staging_key"),
        storage_upload_id: r.get("storage_upload_id"),
        committed_digest: r.get("committed_blob_digest"),
        expired: r.get("expired"),
    })
}

async fn set_state(s: &SharedState, uid: &str, from: &str, to: &str) -> ApiResult<()> {
    let n = sqlx::query(
        "update upload_sessions set state = $3, updated_at = now() \
         where upload_id = $1::uuid and state = $2",
    )
    .bind(uid)
    .bind(from)
    .bind(to)
    .execute(&s.pool)
    .await
    .map_err(db_failed)?
    .rows_affected();
    if n == 1 {
        Ok(())
    } else {
        Err(conflict("Upload session state changed; retry request."))
    }
}

/// `POST /v1/repos/{repoKey}/uploads` (Program.fs:9920, `validateUploadSessionRequest` at 695):
/// 201 with a multipart upload started in object storage; 200 `deduped: true` (already
/// `committed`) when the blob exists with the same length; 409 for another length. The tenant
/// admission quotas are not imitated.
pub async fn create_session(
    State(s): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let key = repo_key(&key)?;
    let p = require_role(&s, &headers, &key, Role::Write).await?;
    ensure_tables(&s.pool).await.map_err(db_failed)?;
    let repo_id: Option<String> = sqlx::query_scalar(
        "select repo_id::text from repos where tenant_id = $1::uuid and repo_key = $2",
    )
    .bind(&p.tenant_id)
    .bind(&key)
    .fetch_optional(&s.pool)
    .await
    .map_err(db_failed)?;
    let Some(repo_id) = repo_id else {
        return Err(ApiError::not_found("Repository was not found."));
    };
    let m = parse_object(&body)?;
    let digest = get_ci(&m, "expectedDigest")
        .and_then(Value::as_str)
        .map(|d| d.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "expectedDigest must be a 64-character lowercase hex SHA-256 digest.",
        ));
    }
    let length = get_ci(&m, "expectedLength")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if length <= 0 {
        return Err(ApiError::bad_request(
            "expectedLength must be greater than zero.",
        ));
    }
    let existing: Option<i64> =
        sqlx::query_scalar("select length_bytes from blobs where digest = $1")
            .bind(&digest)
            .fetch_optional(&s.pool)
            .await
            .map_err(db_failed)?;
    let insert = |uid: Option<String>,
                  state: &'static str,
                  staging: Option<String>,
                  storage_id: Option<String>,
                  committed: Option<String>| {
        sqlx::query_as::<_, (String, chrono::DateTime<chrono::Utc>)>(
            "insert into upload_sessions (upload_id, tenant_id, repo_id, expected_digest, expected_length, \
               state, object_staging_key, storage_upload_id, committed_blob_digest, created_by_subject, \
               expires_at) \
             values (coalesce($10::uuid, gen_random_uuid()), $1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8, \
               $9, now() + interval '60 minutes') \
             returning upload_id::text, expires_at",
        )
        .bind(p.tenant_id.clone())
        .bind(repo_id.clone())
        .bind(digest.clone())
        .bind(length)
        .bind(state)
        .bind(staging)
        .bind(storage_id)
        .bind(committed)
        .bind(p.subject.clone())
        .bind(uid)
    };
    match existing {
        Some(l) if l != length => Err(conflict("Digest already exists with a different length.")),
        Some(_) => {
            let (uid, expires) = insert(None, "committed", None, None, Some(digest.clone()))
                .fetch_one(&s.pool)
                .await
                .map_err(db_failed)?;
            audit(
                &s.pool,
                &p.tenant_id,
                &p.subject,
                "upload.session.created",
                "upload_session",
                &uid,
                json!({"repoKey": key, "state": "committed", "deduped": "true"}),
            )
            .await
            .map_err(db_failed)?;
            Ok(Json(json!({
                "uploadId": uid, "repoKey": key, "expectedDigest": digest, "expectedLength": length,
                "state": "committed", "deduped": true, "expiresAtUtc": ts(expires),
            }))
            .into_response())
        }
        None => {
            let session_id = uuid_simple();
            // `buildStagingObjectKey` (Program.fs:1163).
            let tenant_n = p.tenant_id.replace('-', "");
            let staging = format!("staging/{tenant_n}/{key}/{session_id}");
            let started =
                s.s3.create_multipart_upload()
                    .bucket(&s.bucket)
                    .key(&staging)
                    .send()
                    .await
                    .map_err(|e| storage_error(aws_sdk_s3::error::DisplayErrorContext(e)))?;
            let storage_id = started.upload_id().unwrap_or_default().to_string();
            let dashed = format!(
                "{}-{}-{}-{}-{}",
                &session_id[..8],
                &session_id[8..12],
                &session_id[12..16],
                &session_id[16..20],
                &session_id[20..]
            );
            let (uid, expires) = insert(
                Some(dashed),
                "initiated",
                Some(staging.clone()),
                Some(storage_id.clone()),
                None,
            )
            .fetch_one(&s.pool)
            .await
            .map_err(db_failed)?;
            audit(
                &s.pool,
                &p.tenant_id,
                &p.subject,
                "upload.session.created",
                "upload_session",
                &uid,
                json!({"repoKey": key, "state": "initiated", "deduped": "false"}),
            )
            .await
            .map_err(db_failed)?;
            let location = format!("/v1/repos/{key}/uploads/{uid}");
            Ok((
                StatusCode::CREATED,
                [(axum::http::header::LOCATION, location)],
                Json(json!({
                    "uploadId": uid, "repoKey": key, "expectedDigest": digest,
                    "expectedLength": length, "state": "initiated", "deduped": false,
                    "expiresAtUtc": ts(expires), "objectStagingKey": staging,
                    "storageUploadId": storage_id,
                })),
            )
                .into_response())
        }
    }
}

/// 32 random hex digits (the `{uploadId:N}` part of the staging key).
fn uuid_simple() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// `POST /v1/repos/{repoKey}/uploads/{uploadId}/parts` (Program.fs:10068): a presigned `PUT`
/// URL for one part, valid `ObjectStorage__PresignPartTtlSeconds`; the session moves to
/// `parts_uploading`.
pub async fn presign_part(
    State(s): State<SharedState>,
    Path((key, uid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let key = repo_key(&key)?;
    let uid = upload_id(&uid)?;
    let p = require_role(&s, &headers, &key, Role::Write).await?;
    ensure_tables(&s.pool).await.map_err(db_failed)?;
    let m = parse_object(&body)?;
    let part = get_ci(&m, "partNumber")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if part < 1 {
        return Err(ApiError::bad_request(
            "partNumber must be greater than zero.",
        ));
    }
    let session = read_session(&s, &p.tenant_id, &key, &uid).await?;
    if session.expired {
        return Err(conflict("Upload session has expired."));
    }
    match session.state.as_str() {
        "committed" | "aborted" => {
            return Err(conflict(
                "Upload session is terminal and cannot accept more parts.",
            ));
        }
        "pending_commit" => {
            return Err(conflict(
                "Upload session is pending commit and cannot accept more parts.",
            ));
        }
        _ => {}
    }
    let (Some(staging), Some(storage_id)) = (
        session.staging_key.clone(),
        session.storage_upload_id.clone(),
    ) else {
        return Err(conflict("Upload session storage metadata is incomplete."));
    };
    let ttl = Duration::from_secs(u64::from(s.presign_part_ttl_seconds));
    let cfg = PresigningConfig::expires_in(ttl).map_err(storage_error)?;
    let presigned =
        s.s3.upload_part()
            .bucket(&s.bucket)
            .key(&staging)
            .upload_id(&storage_id)
            .part_number(part as i32)
            .presigned(cfg)
            .await
            .map_err(|e| storage_error(aws_sdk_s3::error::DisplayErrorContext(e)))?;
    if session.state == "initiated" {
        set_state(&s, &uid, "initiated", "parts_uploading").await?;
    }
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        "upload.part.presigned",
        "upload_session",
        &uid,
        json!({"repoKey": key, "partNumber": part.to_string(), "state": "parts_uploading"}),
    )
    .await
    .map_err(db_failed)?;
    let expires =
        chrono::Utc::now() + chrono::Duration::seconds(i64::from(s.presign_part_ttl_seconds));
    Ok(Json(json!({
        "uploadId": session.upload_id, "repoKey": key, "state": "parts_uploading",
        "partNumber": part, "uploadUrl": presigned.uri(), "expiresAtUtc": ts(expires),
    })))
}

/// `POST /v1/repos/{repoKey}/uploads/{uploadId}/complete` (Program.fs:10171,
/// `validateCompleteUploadRequest` at 1057): completes the multipart upload in object storage
/// with the client's part ETags; the session moves to `pending_commit`.
pub async fn complete(
    State(s): State<SharedState>,
    Path((key, uid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let key = repo_key(&key)?;
    let uid = upload_id(&uid)?;
    let p = require_role(&s, &headers, &key, Role::Write).await?;
    ensure_tables(&s.pool).await.map_err(db_failed)?;
    let m = parse_object(&body)?;
    let items = non_empty_array(&m, "parts", "At least one completed part is required.")?;
    let mut parts: Vec<(i32, String)> = Vec::new();
    for it in &items {
        let o = it.as_object().cloned().unwrap_or_default();
        let n = get_ci(&o, "partNumber")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let etag = get_ci(&o, "etag")
            .and_then(Value::as_str)
            .map(|e| e.trim().trim_matches('"').to_string())
            .unwrap_or_default();
        if n < 1 {
            return Err(ApiError::bad_request(
                "partNumber must be greater than zero.",
            ));
        }
        if etag.is_empty() {
            return Err(ApiError::bad_request(
                "etag is required for each completed part.",
            ));
        }
        if parts.iter().any(|(k, _)| i64::from(*k) == n) {
            return Err(ApiError::bad_request(format!(
                "Duplicate partNumber '{n}' is not allowed."
            )));
        }
        parts.push((n as i32, etag));
    }
    parts.sort();
    let session = read_session(&s, &p.tenant_id, &key, &uid).await?;
    if session.expired {
        return Err(conflict("Upload session has expired."));
    }
    let done = |state: &str| {
        json!({"uploadId": session.upload_id, "repoKey": key, "state": state,
               "expectedDigest": session.expected_digest, "expectedLength": session.expected_length})
    };
    match session.state.as_str() {
        "initiated" => {
            return Err(conflict(
                "Upload session has no uploaded parts to complete.",
            ));
        }
        "pending_commit" => return Ok(Json(done("pending_commit"))),
        "committed" | "aborted" => {
            return Err(conflict(
                "Upload session is terminal and cannot be completed.",
            ));
        }
        _ => {}
    }
    let (Some(staging), Some(storage_id)) = (
        session.staging_key.clone(),
        session.storage_upload_id.clone(),
    ) else {
        return Err(conflict("Upload session storage metadata is incomplete."));
    };
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| {
                    CompletedPart::builder()
                        .part_number(*n)
                        .e_tag(format!("\"{e}\""))
                        .build()
                })
                .collect(),
        ))
        .build();
    s.s3.complete_multipart_upload()
        .bucket(&s.bucket)
        .key(&staging)
        .upload_id(&storage_id)
        .multipart_upload(completed)
        .send()
        .await
        .map_err(|e| storage_error(aws_sdk_s3::error::DisplayErrorContext(e)))?;
    set_state(&s, &uid, "parts_uploading", "pending_commit").await?;
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        "upload.completed",
        "upload_session",
        &uid,
        json!({"repoKey": key, "state": "pending_commit"}),
    )
    .await
    .map_err(db_failed)?;
    Ok(Json(done("pending_commit")))
}

/// `POST /v1/repos/{repoKey}/uploads/{uploadId}/commit` (Program.fs:10367,
/// `commitUploadSessionWithBlob` at 6268): reads the object back, checks its SHA-256 and length
/// (409 `upload_verification_failed` otherwise), records the blob, session `committed`.
pub async fn commit(
    State(s): State<SharedState>,
    Path((key, uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = repo_key(&key)?;
    let uid = upload_id(&uid)?;
    let p = require_role(&s, &headers, &key, Role::Write).await?;
    ensure_tables(&s.pool).await.map_err(db_failed)?;
    let session = read_session(&s, &p.tenant_id, &key, &uid).await?;
    if session.expired {
        return Err(conflict("Upload session has expired."));
    }
    match session.state.as_str() {
        "initiated" | "parts_uploading" => {
            return Err(conflict("Upload session must be completed before commit."));
        }
        "aborted" => {
            return Err(conflict(
                "Upload session is aborted and cannot be committed.",
            ));
        }
        "committed" => {
            return Ok(Json(
                json!({"uploadId": session.upload_id, "repoKey": key, "state": "committed",
                "digest": session.committed_digest, "length": session.expected_length}),
            )
            .into_response());
        }
        _ => {}
    }
    let Some(staging) = session.staging_key.clone() else {
        return Err(conflict("Upload session storage metadata is incomplete."));
    };
    let obj =
        s.s3.get_object()
            .bucket(&s.bucket)
            .key(&staging)
            .send()
            .await
            .map_err(|e| storage_error(aws_sdk_s3::error::DisplayErrorContext(e)))?;
    let etag = obj.e_tag().map(|e| e.trim_matches('"').to_string());
    let bytes = obj
        .body
        .collect()
        .await
        .map_err(|e| storage_error(format!("Upload verification failed: {e}")))?
        .into_bytes();
    let actual_digest = hex::encode(Sha256::digest(&bytes));
    let actual_length = bytes.len() as i64;
    if actual_digest != session.expected_digest || actual_length != session.expected_length {
        let reason = if actual_digest != session.expected_digest {
            "digest_mismatch"
        } else {
            "length_mismatch"
        };
        audit(
            &s.pool,
            &p.tenant_id,
            &p.subject,
            "upload.commit.verification_failed",
            "upload_session",
            &uid,
            json!({"repoKey": key, "reason": reason, "expectedDigest": session.expected_digest,
                   "actualDigest": actual_digest}),
        )
        .await
        .map_err(db_failed)?;
        return Ok((
            StatusCode::CONFLICT,
            Json(json!({
                "error": "upload_verification_failed",
                "message": "Uploaded content failed digest/length verification.",
                "expectedDigest": session.expected_digest, "actualDigest": actual_digest,
                "expectedLength": session.expected_length, "actualLength": actual_length,
            })),
        )
            .into_response());
    }
    let mut tx = s.pool.begin().await.map_err(db_failed)?;
    let persisted: i64 = sqlx::query_scalar(
        "insert into blobs (digest, length_bytes, storage_key, object_etag) values ($1, $2, $3, $4) \
         on conflict (digest) do update set object_etag = coalesce(blobs.object_etag, excluded.object_etag) \
         returning length_bytes",
    )
    .bind(&session.expected_digest)
    .bind(session.expected_length)
    .bind(&staging)
    .bind(&etag)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_failed)?;
    if persisted != session.expected_length {
        return Err(conflict("Digest already exists with a different length."));
    }
    let n = sqlx::query(
        "update upload_sessions set state = 'committed', committed_blob_digest = $2, \
           committed_at = now(), updated_at = now() \
         where tenant_id = $1::uuid and upload_id = $3::uuid and state = 'pending_commit'",
    )
    .bind(&p.tenant_id)
    .bind(&session.expected_digest)
    .bind(&uid)
    .execute(&mut *tx)
    .await
    .map_err(db_failed)?
    .rows_affected();
    if n != 1 {
        return Err(conflict("Upload session state changed; retry request."));
    }
    tx.commit().await.map_err(db_failed)?;
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        "upload.committed",
        "upload_session",
        &uid,
        json!({"repoKey": key, "digest": session.expected_digest,
               "length": session.expected_length.to_string(), "state": "committed"}),
    )
    .await
    .map_err(db_failed)?;
    Ok(Json(
        json!({"uploadId": session.upload_id, "repoKey": key, "state": "committed",
        "digest": session.expected_digest, "length": session.expected_length}),
    )
    .into_response())
}
