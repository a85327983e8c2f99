//! The drill's streamed restore: the dump goes from the object store straight into
//! `pg_restore` (or `psql`) as it downloads, so the download and the restore overlap instead of
//! running one after the other. Its sha256 is computed on the way and checked when the object
//! ends: a restore from a corrupt (or replaced) object fails the drill as
//! [`DrillError::Corrupt`], whatever the tool made of it. Only the drill streams: its database
//! is a scratch copy; `restore_database` (a real database) always checks the dump before it
//! touches anything.

use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{DrillError, restore_command};
use crate::clients::backup::{BackupError, Compression, Format, Manifest};
use crate::clients::object_store::ObjectStoreError;
use crate::clients::pg::LibpqConnection;
use crate::clients::process;
use crate::clients::stream::HashingSink;

/// A table holding at least this share of the data leaves `pg_restore --jobs` little to do in
/// parallel: its `COPY` is one job whatever the number.
const DOMINANT_SHARE: f64 = 0.5;

/// Whether the drill streams `m` into the restore tool rather than restoring from a file with
/// `jobs` parallel jobs: a plain dump always (`psql` runs one script), a custom one when one job
/// is all there is or when the manifest says one table holds at least half of the data (the
/// backup records table sizes; a manifest without them is restored from a file, as before).
pub(crate) fn streams(m: &Manifest, jobs: usize) -> bool {
    match m.format {
        Format::Plain => true,
        Format::Custom => {
            jobs <= 1
                || m.table_bytes.is_some_and(|b| {
                    b.total > 0 && b.largest as f64 >= DOMINANT_SHARE * b.total as f64
                })
        }
    }
}

/// What a streamed restore took, both from the start of the download: they overlap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Streamed {
    /// Until the object's last byte arrived.
    pub download_seconds: f64,
    /// Until the restore tool exited.
    pub restore_seconds: f64,
}

/// Streams `m`'s object into the restore tool restoring into `database` (on `url`'s server, as
/// `url`'s role; an empty database made by the caller). A zstd dump is decompressed on the way.
/// The object may not pass the size its manifest records ([`DrillError::Oversize`], the tool
/// is killed). When the tool fails part way, the rest of the object is still read (not
/// written) so that a corrupt object is reported as such rather than as the tool's error.
pub(crate) async fn stream_restore(
    s3: &aws_sdk_s3::Client,
    m: &Manifest,
    url: &str,
    database: &str,
    bin_dir: &Option<PathBuf>,
    cancel: &CancellationToken,
) -> Result<Streamed, DrillError> {
    let libpq = LibpqConnection::new(url, Some(database)).map_err(BackupError::from)?;
    let (tool, mut cmd) = restore_command(m.format, bin_dir, &libpq, None);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let not_started = |e: String| DrillError::Restore {
        tool: tool.into(),
        status: "not started".into(),
        stderr: e,
    };
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| not_started(e.to_string()))?;
    let (Some(stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
        return Err(not_started("its stdin or stderr pipe is missing".into()));
    };
    let stderr = tokio::spawn(process::read_capped(stderr, process::STDERR_LIMIT));
    let out = tokio::select! {
        r = s3.get_object().bucket(&m.bucket).key(&m.object_key).send() => {
            r.map_err(|e| ObjectStoreError::new("GET", s3, &m.bucket, &m.object_key, &e))?
        }
        _ = cancel.cancelled() => return Err(DrillError::Cancelled),
    };
    let mut body = out.body;
    let mut hashed = HashingSink::new();
    let mut writer: Option<Pin<Box<dyn AsyncWrite + Send>>> = Some(match m.compression {
        Compression::None => Box::pin(tokio::io::BufWriter::with_capacity(1 << 20, stdin)),
        Compression::Zstd => Box::pin(async_compression::tokio::write::ZstdDecoder::new(
            tokio::io::BufWriter::with_capacity(1 << 20, stdin),
        )),
    });
    let mut write_error = None;
    loop {
        let chunk = tokio::select! {
            c = body.next() => c,
            _ = cancel.cancelled() => return Err(DrillError::Cancelled),
        };
        let Some(chunk) = chunk else {
            break;
        };
        let chunk =
            chunk.map_err(|e| ObjectStoreError::stream("GET", s3, &m.bucket, &m.object_key, &e))?;
        if hashed.update(&chunk) > m.size_bytes {
            return Err(DrillError::Oversize {
                bucket: m.bucket.clone(),
                key: m.object_key.clone(),
                expected: m.size_bytes,
            });
        }
        if let Some(w) = writer.as_mut()
            && let Err(e) = w.write_all(&chunk).await
        {
            // The tool stopped reading (it failed): the rest only goes through the hash.
            tracing::warn!(tool, error = %e, "drill: the restore stopped reading the dump");
            write_error = Some(e);
            writer = None;
        }
    }
    let download_seconds = started.elapsed().as_secs_f64();
    if let Some(mut w) = writer.take()
        && let Err(e) = w.shutdown().await
    {
        write_error.get_or_insert(e);
    }
    // The writer (and with it the tool's stdin) is closed: the tool sees the end of the dump.
    let status = tokio::select! {
        s = child.wait() => s.map_err(|e| DrillError::Io(format!("waiting for {tool}: {e}")))?,
        _ = cancel.cancelled() => return Err(DrillError::Cancelled),
    };
    let restore_seconds = started.elapsed().as_secs_f64();
    let stderr = stderr.await.map(|c| c.text()).unwrap_or_default();
    let (actual, _) = hashed.finish();
    if actual != m.sha256 {
        return Err(DrillError::Corrupt {
            expected: m.sha256.clone(),
            actual,
        });
    }
    if !status.success() {
        return Err(DrillError::Restore {
            tool: tool.into(),
            status: status.to_string(),
            stderr,
        });
    }
    if let Some(e) = write_error {
        return Err(DrillError::Restore {
            tool: tool.into(),
            status: format!("{status}, without reading the whole dump ({e})"),
            stderr,
        });
    }
    Ok(Streamed {
        download_seconds,
        restore_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::backup::TableBytes;

    fn manifest(format: Format, table_bytes: Option<TableBytes>) -> Manifest {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "id": "20261205T000000Z-0000", "bucket": "b", "object_key": "k", "manifest_key": "k.m",
            "sha256": "0".repeat(64), "size_bytes": 1, "dump_bytes": 1, "format": "custom",
            "compression": "none", "database": "h:5432/d",
            "snapshot_at": "2026-12-05T00:00:00Z", "started_at": "2026-12-05T00:00:00Z",
            "completed_at": "2026-12-05T00:00:00Z", "duration_seconds": 1.0,
            "migration_head": null, "table_counts": {}, "postgres_version": "16",
            "pg_dump_version": "16", "verified": true
        }))
        .unwrap();
        m.format = format;
        m.table_bytes = table_bytes;
        m
    }

    /// Streamed: plain dumps, one-job machines, and custom dumps whose largest table holds at
    /// least half of the data; restored from a file with `--jobs`: the others, and manifests
    /// written before table sizes were recorded.
    #[test]
    fn the_drill_streams_where_parallel_jobs_gain_nothing() {
        let one = Some(TableBytes {
            largest: 900,
            total: 1000,
        });
        let many = Some(TableBytes {
            largest: 200,
            total: 1000,
        });
        assert!(streams(&manifest(Format::Plain, many), 4));
        assert!(streams(&manifest(Format::Custom, one), 4));
        assert!(!streams(&manifest(Format::Custom, many), 4));
        assert!(streams(&manifest(Format::Custom, many), 1));
        assert!(!streams(&manifest(Format::Custom, None), 2));
        let empty = Some(TableBytes {
            largest: 0,
            total: 0,
        });
        assert!(!streams(&manifest(Format::Custom, empty), 2));
    }
}
