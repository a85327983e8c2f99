//! The routes of the smoke flow (repositories, package versions, upload sessions), mounted by
//! `api::router` in one line.

use axum::Router;
use axum::routing::{get, post};

use super::api::SharedState;
use super::{repos, uploads};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/repos", get(repos::list_repos).post(repos::create_repo))
        .route(
            "/v1/repos/{repoKey}",
            get(repos::get_repo).delete(repos::delete_repo),
        )
        .route(
            "/v1/repos/{repoKey}/packages/versions/drafts",
            post(repos::create_draft),
        )
        .route(
            "/v1/repos/{repoKey}/packages/versions/{versionId}/entries",
            post(repos::upsert_entries),
        )
        .route(
            "/v1/repos/{repoKey}/packages/versions/{versionId}/manifest",
            get(repos::get_manifest).put(repos::put_manifest),
        )
        .route(
            "/v1/repos/{repoKey}/packages/versions/{versionId}/publish",
            post(repos::publish),
        )
        .route("/v1/repos/{repoKey}/uploads", post(uploads::create_session))
        .route(
            "/v1/repos/{repoKey}/uploads/{uploadId}/parts",
            post(uploads::presign_part),
        )
        .route(
            "/v1/repos/{repoKey}/uploads/{uploadId}/complete",
            post(uploads::complete),
        )
        .route(
            "/v1/repos/{repoKey}/uploads/{uploadId}/commit",
            post(uploads::commit),
        )
}
