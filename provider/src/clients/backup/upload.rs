//! The dump's way into object storage: a multipart upload fed part by part (one filling, one
//! uploading), the uploads of this process kept apart from those a dead run left open, and
//! the read-back that verifies what was stored.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::CompletedPart;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::manifest::DUMP_SUFFIXES;
use super::{BackupError, PART_SIZE};
use crate::clients::object_store::{self, ObjectStoreError};
use crate::clients::stream::HashingSink;

const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Counts bytes read through it.
pub(super) struct Counting<R> {
    pub(super) inner: R,
    pub(super) count: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

/// Upload ids of the backups running in this process. Terraform applies independent
/// resources in parallel in one provider process: two backups under one prefix must not take
/// each other's running upload for a dead one.
static RUNNING_UPLOADS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// Marks an upload as running until dropped.
pub(super) struct RunningUpload(String);

impl RunningUpload {
    pub(super) fn new(upload_id: &str) -> RunningUpload {
        if let Ok(mut set) = RUNNING_UPLOADS.lock() {
            set.insert(upload_id.to_string());
        }
        RunningUpload(upload_id.to_string())
    }
}

impl Drop for RunningUpload {
    fn drop(&mut self) {
        if let Ok(mut set) = RUNNING_UPLOADS.lock() {
            set.remove(&self.0);
        }
    }
}

fn is_running(upload_id: &str) -> bool {
    RUNNING_UPLOADS
        .lock()
        .map(|set| set.contains(upload_id))
        .unwrap_or(false)
}

/// Abort multipart uploads of dumps under `prefix` left by runs that died (never one a backup
/// of this process is still writing). One upload that cannot be aborted does not keep the
/// others open: each failure is logged, and the first is returned once all were tried.
pub async fn abort_stale_uploads(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<usize, ObjectStoreError> {
    let mut n = 0;
    let mut first_error = None;
    for (key, id) in object_store::list_uploads(s3, bucket, prefix).await? {
        if DUMP_SUFFIXES.iter().any(|s| key.ends_with(s)) && !is_running(&id) {
            match object_store::abort_upload(s3, bucket, &key, &id).await {
                Ok(()) => {
                    tracing::warn!(bucket, key = %key, "aborted a multipart upload left by an earlier backup");
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(bucket, key = %key, error = %e, "could not abort a multipart upload left by an earlier backup");
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// Fill parts of [`PART_SIZE`] from `reader` and upload them, one uploading while the next
/// fills. Returns the parts, the sha256 and the size of what was stored.
pub(super) async fn stream_parts(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    reader: &mut Pin<Box<dyn AsyncRead + Send>>,
    raw_bytes: &AtomicU64,
    cancel: &CancellationToken,
) -> Result<(Vec<CompletedPart>, String, u64), BackupError> {
    let mut stored = HashingSink::new();
    let mut parts = Vec::new();
    let mut in_flight: Option<tokio::task::JoinHandle<Result<CompletedPart, ObjectStoreError>>> =
        None;
    let mut total: u64 = 0;
    let mut part_number = 0;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    loop {
        // Read into the buffer's spare capacity: a part is never zeroed first (8 MiB of
        // memset per part was ~5 % of the backup's CPU).
        let mut buf: Vec<u8> = Vec::with_capacity(PART_SIZE);
        while buf.len() < PART_SIZE {
            let filled = buf.len();
            let n = tokio::select! {
                r = reader.read_buf(&mut buf) => match r {
                    Ok(n) => n,
                    Err(e) => {
                        // The part being uploaded is of no use now: stop it before the
                        // caller aborts the upload.
                        if let Some(h) = in_flight.take() { h.abort(); }
                        return Err(BackupError::Stream {
                            bytes: total + filled as u64,
                            message: e.to_string(),
                        });
                    }
                },
                _ = cancel.cancelled() => {
                    if let Some(h) = in_flight.take() { h.abort(); }
                    return Err(BackupError::Cancelled { bytes: total + filled as u64 });
                }
            };
            if n == 0 {
                break;
            }
        }
        let filled = buf.len();
        let last = filled < PART_SIZE;
        if filled > 0 {
            total = stored.update(&buf);
            part_number += 1;
            if let Some(h) = in_flight.take() {
                parts.push(join_part(h, bucket, key).await?);
            }
            let (s3, bucket_s, key_s, upload_s) = (
                s3.clone(),
                bucket.to_string(),
                key.to_string(),
                upload_id.to_string(),
            );
            let number = part_number;
            in_flight = Some(tokio::spawn(async move {
                object_store::upload_part(&s3, &bucket_s, &key_s, &upload_s, number, buf).await
            }));
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                key,
                stored_bytes = total,
                dump_bytes = raw_bytes.load(Ordering::Relaxed),
                mib_per_second = format!("{:.1}", total as f64 / 1_048_576.0 / secs),
                "backup in progress"
            );
            last_progress = Instant::now();
        }
        if last {
            break;
        }
    }
    if let Some(h) = in_flight.take() {
        parts.push(join_part(h, bucket, key).await?);
    }
    let (sha256, size) = stored.finish();
    Ok((parts, sha256, size))
}

async fn join_part(
    h: tokio::task::JoinHandle<Result<CompletedPart, ObjectStoreError>>,
    bucket: &str,
    key: &str,
) -> Result<CompletedPart, BackupError> {
    match h.await {
        Ok(r) => Ok(r?),
        Err(e) => Err(ObjectStoreError {
            op: "UPLOAD PART",
            bucket: bucket.to_string(),
            key: key.to_string(),
            message: format!("the upload task ended abnormally: {e}"),
        }
        .into()),
    }
}

/// Stream an object and return (sha256, size).
pub async fn checksum_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<(String, u64), ObjectStoreError> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| ObjectStoreError::new("GET", s3, bucket, key, &e))?;
    let mut body = out.body;
    let mut read_back = HashingSink::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ObjectStoreError::stream("GET", s3, bucket, key, &e))?;
        read_back.update(&chunk);
    }
    Ok(read_back.finish())
}
