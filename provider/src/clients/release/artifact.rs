//! Release artifacts: a `.tar.gz` from a URL or a local path made a verified local file (size
//! limit, stall timeout, sha256 against the configuration).

use std::path::PathBuf;
use std::time::Duration;

use super::{ArtifactError, Oversize};

/// An artifact ready to upload: a local file whose sha256 matched.
#[derive(Debug)]
pub struct LocalArtifact {
    pub path: PathBuf,
    pub size: u64,
    /// Holds a downloaded artifact's temporary file until the deployment is over.
    _download: Option<tempfile::TempPath>,
}

/// The largest release artifact the provider downloads or reads: far above a release tarball
/// of the API and worker, and a stop for a URL that streams without end.
pub const ARTIFACT_MAX_SIZE: u64 = 2 << 30;
/// How long an artifact download may go without receiving anything (headers or data).
pub(super) const ARTIFACT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes `source` (a local path, or an `http(s)://` URL downloaded to a temporary file) a local
/// file and checks its sha256 against `expected` before any host sees it. A download streams to
/// disk and stops at its `Content-Length` or [`ARTIFACT_MAX_SIZE`], whichever is smaller (a
/// local file stops at the latter too), and gives up after [`ARTIFACT_STALL_TIMEOUT`] without
/// data.
pub async fn fetch_artifact(
    http: &reqwest::Client,
    source: &str,
    expected: &str,
) -> Result<LocalArtifact, ArtifactError> {
    fetch_artifact_limited(http, source, expected, ARTIFACT_MAX_SIZE).await
}

async fn fetch_artifact_limited(
    http: &reqwest::Client,
    source: &str,
    expected: &str,
    max_size: u64,
) -> Result<LocalArtifact, ArtifactError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;

    use crate::clients::http::describe;
    use crate::clients::stream::HashingSink;
    let too_large = |what| ArtifactError::TooLarge {
        artifact: source.to_string(),
        what,
        limit: max_size,
    };
    let stalled = || ArtifactError::Stalled {
        artifact: source.to_string(),
        after: ARTIFACT_STALL_TIMEOUT,
    };
    let download = |e: reqwest::Error, total| ArtifactError::Download {
        artifact: source.to_string(),
        detail: describe(source, total, &e),
    };
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |error| ArtifactError::Io { path, error }
    };
    let expected = expected.trim().to_ascii_lowercase();
    let (path, download) = if source.starts_with("http://") || source.starts_with("https://") {
        let tmp = tempfile::Builder::new()
            .prefix("artifortress-artifact-")
            .suffix(".tar.gz")
            .tempfile()
            .map_err(ArtifactError::TempFile)?
            .into_temp_path();
        let total = Duration::from_secs(3600);
        let mut resp = timeout(
            ARTIFACT_STALL_TIMEOUT,
            http.get(source).timeout(total).send(),
        )
        .await
        .map_err(|_| stalled())?
        .map_err(|e| download(e, total))?;
        if !resp.status().is_success() {
            return Err(ArtifactError::Status {
                artifact: source.to_string(),
                status: resp.status(),
            });
        }
        if resp.content_length().is_some_and(|n| n > max_size) {
            return Err(too_large(Oversize::Announced));
        }
        let mut f = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        let mut written = 0u64;
        while let Some(chunk) = timeout(ARTIFACT_STALL_TIMEOUT, resp.chunk())
            .await
            .map_err(|_| stalled())?
            .map_err(|e| download(e, total))?
        {
            written += chunk.len() as u64;
            if written > max_size {
                return Err(too_large(Oversize::Download));
            }
            f.write_all(&chunk).await.map_err(io(&tmp))?;
        }
        f.flush().await.map_err(io(&tmp))?;
        (tmp.to_path_buf(), Some(tmp))
    } else {
        (
            PathBuf::from(source.strip_prefix("file://").unwrap_or(source)),
            None,
        )
    };
    let mut f = tokio::fs::File::open(&path).await.map_err(io(&path))?;
    let mut read = HashingSink::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).await.map_err(io(&path))?;
        if n == 0 {
            break;
        }
        if read.update(&buf[..n]) > max_size {
            return Err(too_large(Oversize::File));
        }
    }
    let (actual, size) = read.finish();
    if actual != expected {
        return Err(ArtifactError::Checksum {
            artifact: source.to_string(),
            actual,
            expected,
        });
    }
    Ok(LocalArtifact {
        path,
        size,
        _download: download,
    })
}

#[cfg(test)]
mod artifact_tests {
    use super::*;
    use sha2::Digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `header` then `body` (repeated forever when `endless`) to every connection.
    async fn server(header: String, body: Vec<u8>, endless: bool) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (header, body) = (header.clone(), body.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    s.write_all(header.as_bytes()).await?;
                    loop {
                        s.write_all(&body).await?;
                        if !endless {
                            return Ok::<_, std::io::Error>(());
                        }
                    }
                });
            }
        });
        format!("http://{addr}/artifact.tar.gz")
    }

    #[tokio::test]
    async fn downloads_stop_at_the_size_limit_and_keep_the_checksum() {
        let http = reqwest::Client::new();
        let limit = 1 << 20;
        let block = vec![b'a'; 64 << 10];

        let url = server(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(),
            block.clone(),
            true,
        )
        .await;
        let e = fetch_artifact_limited(&http, &url, "00", limit)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "{url}: the download is larger than 1 MiB, the limit for release artifacts; stopped there"
            )
        );

        let url = server(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 2 << 20),
            block.clone(),
            true,
        )
        .await;
        let e = fetch_artifact_limited(&http, &url, "00", limit)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the server announces a file larger than 1 MiB"),
            "{e}"
        );

        let small = b"a release".to_vec();
        let sha = hex::encode(sha2::Sha256::digest(&small));
        let url = server(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", small.len()),
            small.clone(),
            false,
        )
        .await;
        let a = fetch_artifact_limited(&http, &url, &sha, limit)
            .await
            .unwrap();
        assert_eq!(a.size, small.len() as u64);
        assert_eq!(std::fs::read(&a.path).unwrap(), small);
        let e = fetch_artifact_limited(&http, &url, &"0".repeat(64), limit)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("sha256 is {sha}")), "{e}");

        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), vec![0u8; (limit + 1) as usize]).unwrap();
        let e = fetch_artifact_limited(&http, file.path().to_str().unwrap(), "00", limit)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("the file is larger than 1 MiB"), "{e}");

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/a.tar.gz");
        let e = fetch_artifact(&http, &url, "00")
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("GET {url}: cannot connect to 127.0.0.1:{port}: connection refused")
        );
    }
}
