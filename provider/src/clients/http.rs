//! What every HTTP exchange of the clients shares: the one limit on bodies read into memory, a
//! bounded body reader, and transport errors said the way an operator would say them
//! (`cannot connect to 127.0.0.1:37913: connection refused`), the raw error chain kept for
//! `TF_LOG=debug`. Knows nothing of Terraform.

use std::time::Duration;

use super::words::{innermost, io_words};

/// The most a body read into memory may hold: the service's JSON answers (readiness, ops
/// summary, tokens) and its error bodies are a few KiB, so 1 MiB is plenty, and an endless or
/// mistaken answer (a proxy's download, a wrong URL) stops there instead of filling memory.
/// Artifact downloads are streamed to disk under their own limit instead.
pub const BODY_LIMIT: u64 = 1 << 20;

/// `1 MiB`, `512 KiB`, `3 GiB`, `17 bytes`: sizes in error messages.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
        if bytes >= size {
            return format!("{:.1} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} bytes")
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    /// The body is (or declared itself) larger than the limit; reading stopped there.
    TooLarge { limit: u64 },
    /// The transport failed while reading.
    Transport(reqwest::Error),
}

/// The whole body of `response`, at most `limit` bytes: a `Content-Length` above the limit is
/// refused before reading, and a body without one is read chunk by chunk until it ends or
/// passes the limit. The request's own timeout keeps bounding the read.
pub async fn read_body(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A failed exchange with `url` in words: what went wrong first, then the operating system's
/// reason. The full error chain is logged at debug level (it names crates and types, not
/// causes). `timeout` is the limit the request had, for the message when it ran out.
pub fn describe(url: &str, timeout: Duration, e: &reqwest::Error) -> String {
    tracing::debug!(url, error = ?e, "HTTP exchange failed");
    let target = host_port(e.url().map(|u| u.as_str()).unwrap_or(url));
    let cause = io_words(e).unwrap_or_else(|| innermost(e));
    if e.is_timeout() {
        if e.is_connect() {
            return format!(
                "cannot connect to {target}: no connection within {}",
                crate::duration::format(timeout)
            );
        }
        return format!(
            "{target} did not answer within {}",
            crate::duration::format(timeout)
        );
    }
    if e.is_connect() {
        return format!("cannot connect to {target}: {cause}");
    }
    if e.is_body() || e.is_decode() {
        return format!("the answer from {target} broke off: {cause}");
    }
    if e.is_builder() {
        return format!("the request to {target} could not be built: {cause}");
    }
    format!("the exchange with {target} failed: {cause}")
}

/// `host:port` of a URL (the scheme's default port when none is written); the text itself when
/// it is not a URL.
pub fn host_port(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => url.to_string(),
        },
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_sizes() {
        assert_eq!(format_size(BODY_LIMIT), "1 MiB");
        assert_eq!(format_size(512 << 10), "512 KiB");
        assert_eq!(format_size(3 << 30), "3 GiB");
        assert_eq!(format_size(1536 << 20), "1.5 GiB");
        assert_eq!(format_size(17), "17 bytes");
    }

    #[test]
    fn host_port_fills_in_the_default_port() {
        assert_eq!(host_port("http://127.0.0.1:37913/x"), "127.0.0.1:37913");
        assert_eq!(host_port("https://example.com/a"), "example.com:443");
        assert_eq!(host_port("not a url"), "not a url");
    }

    /// Real exchanges against real sockets on 127.0.0.1: a closed port, a server that accepts
    /// and never answers, one that hangs up mid-body and one that streams without end.
    #[tokio::test]
    async fn transport_failures_read_as_causes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let http = reqwest::Client::new();

        // Connection refused: a port bound and released, so nothing listens there.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/health/ready");
        let e = http.get(&url).send().await.unwrap_err();
        let text = describe(&url, Duration::from_secs(1), &e);
        assert_eq!(
            text,
            format!("cannot connect to 127.0.0.1:{port}: connection refused")
        );

        // Accepts, never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let url = format!("http://{addr}/health/ready");
        let e = http
            .get(&url)
            .timeout(Duration::from_millis(300))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            describe(&url, Duration::from_millis(300), &e),
            format!("{addr} did not answer within 0.3s")
        );
        hold.abort();

        // Headers promise 100 bytes, 5 come, then the server hangs up.
        let short = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = short.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = short.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                .await
                .unwrap();
        });
        let url = format!("http://{addr}/x");
        let resp = http.get(&url).send().await.unwrap();
        let Err(BodyError::Transport(e)) = read_body(resp, BODY_LIMIT).await else {
            panic!("a truncated body must fail");
        };
        let text = describe(&url, Duration::from_secs(1), &e);
        assert!(
            text.starts_with(&format!("the answer from {addr} broke off: ")),
            "{text}"
        );
        assert!(!text.contains("hyper") && !text.contains("Kind("), "{text}");

        // An endless body stops at the limit; one that declares too much is not read at all.
        let endless = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = endless.local_addr().unwrap();
        tokio::spawn(async move {
            for header in [
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n",
            ] {
                let (mut s, _) = endless.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                tokio::spawn(async move {
                    s.write_all(header.as_bytes()).await.unwrap();
                    let block = vec![b'a'; 64 << 10];
                    while s.write_all(&block).await.is_ok() {}
                });
            }
        });
        let url = format!("http://{addr}/x");
        for _ in 0..2 {
            let resp = http.get(&url).send().await.unwrap();
            assert!(matches!(
                read_body(resp, BODY_LIMIT).await,
                Err(BodyError::TooLarge { limit: BODY_LIMIT })
            ));
        }
    }
}
