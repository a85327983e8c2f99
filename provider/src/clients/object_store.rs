//! S3-compatible object storage: the client, and the few operations backups need with errors
//! that carry the operation, the key and the server's message. Knows nothing of Terraform.

use std::time::Duration;

use aws_sdk_s3::config::Intercept;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{http, words};

/// How to reach the object store. The secret never prints.
#[derive(Clone)]
pub struct ObjectStoreConfig {
    /// `None`: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub force_path_style: bool,
}

impl std::fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("force_path_style", &self.force_path_style)
            .finish_non_exhaustive()
    }
}

/// A failed object-store call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} s3://{bucket}/{key} failed: {message}")]
pub struct ObjectStoreError {
    pub op: &'static str,
    pub bucket: String,
    pub key: String,
    /// What went wrong in words, with the server's code and message when it answered
    /// (`access denied (403): AccessDenied: ...`, `cannot connect to 127.0.0.1:3900:
    /// connection refused`). The SDK's full error is logged at debug level.
    pub message: String,
}

impl ObjectStoreError {
    pub fn new<E>(
        op: &'static str,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        err: &SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
    {
        tracing::debug!(op, bucket, key, error = %DisplayErrorContext(err), "object store call failed");
        ObjectStoreError {
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            message: words(err, &endpoint(s3)),
        }
    }

    /// A body that broke off while it was read (`GET` streams).
    pub fn stream(
        op: &'static str,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        err: &(dyn std::error::Error + 'static),
    ) -> Self {
        tracing::debug!(op, bucket, key, error = ?err, "object store stream failed");
        let cause = words::io_words(err).unwrap_or_else(|| words::innermost(err));
        ObjectStoreError {
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            message: format!("the answer from {} broke off: {cause}", endpoint(s3)),
        }
    }
}

/// Carries the endpoint's `host:port` in the client's configuration, where errors can find it:
/// the SDK's `Config` has no getter for its endpoint URL, and a connection error does not say
/// where it tried to connect. Does nothing to requests.
#[derive(Debug)]
struct EndpointName(&'static str);

const ENDPOINT_NAME_PREFIX: &str = "artifortress-endpoint=";

impl Intercept for EndpointName {
    fn name(&self) -> &'static str {
        self.0
    }
}

/// `host:port` the client sends to, for messages; AWS's own endpoint by region.
fn endpoint(s3: &aws_sdk_s3::Client) -> String {
    let config = s3.config();
    if let Some(hp) = config
        .interceptors()
        .find_map(|i| i.name().strip_prefix(ENDPOINT_NAME_PREFIX))
    {
        return hp.to_string();
    }
    match config.region() {
        Some(r) => format!("the S3 endpoint of region {}", r.as_ref()),
        None => "the S3 endpoint".to_string(),
    }
}

/// An SDK error as an operator would say it.
fn words<E>(err: &SdkError<E, HttpResponse>, endpoint: &str) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let chain: &(dyn std::error::Error + 'static) = err;
    let cause = || words::io_words(chain).unwrap_or_else(|| words::innermost(chain));
    match err {
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let what = match status {
                400 => "bad request",
                401 => "not authenticated",
                403 => "access denied",
                404 => "not found",
                409 => "conflict",
                412 => "precondition failed",
                500..=599 => "server error",
                _ => "refused",
            };
            let inner = e.err();
            match (inner.code(), inner.message()) {
                (Some(c), Some(m)) => format!("{what} ({status}): {c}: {m}"),
                (Some(c), None) => format!("{what} ({status}): {c}"),
                (None, Some(m)) => format!("{what} ({status}): {m}"),
                (None, None) => format!("{what} ({status})"),
            }
        }
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            format!("cannot connect to {endpoint}: timed out")
        }
        SdkError::DispatchFailure(d) if d.is_io() => {
            let kind = io_kind(chain);
            let cause = cause();
            use std::io::ErrorKind::*;
            match kind {
                Some(
                    ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable,
                ) => format!("cannot connect to {endpoint}: {cause}"),
                _ => format!("the connection to {endpoint} failed: {cause}"),
            }
        }
        SdkError::DispatchFailure(d) if d.is_user() => {
            format!("the request could not be sent: {}", cause())
        }
        SdkError::DispatchFailure(_) => format!("cannot reach {endpoint}: {}", cause()),
        SdkError::TimeoutError(_) => format!("{endpoint} did not answer in time"),
        SdkError::ResponseError(_) => {
            format!("the answer from {endpoint} could not be read: {}", cause())
        }
        SdkError::ConstructionFailure(_) => {
            format!("the request could not be built: {}", cause())
        }
        _ => cause(),
    }
}

/// The kind of the first I/O error in the chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = err.source();
    }
    None
}

/// An S3 client. Static credentials when given, else the SDK's default chain is not used:
/// anonymous requests (which a private bucket refuses with a clear error).
pub fn client(cfg: &ObjectStoreConfig) -> aws_sdk_s3::Client {
    let mut b = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(cfg.region.clone()))
        .force_path_style(cfg.force_path_style)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(endpoint) = &cfg.endpoint {
        b = b.endpoint_url(endpoint.trim_end_matches('/'));
        // One short string per client built (one per provider process).
        let name = format!("{ENDPOINT_NAME_PREFIX}{}", http::host_port(endpoint));
        b = b.interceptor(EndpointName(Box::leak(name.into_boxed_str())));
    }
    if let (Some(ak), Some(sk)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        b = b.credentials_provider(Credentials::new(
            ak.clone(),
            sk.clone(),
            None,
            None,
            "terraform-provider-artifortress",
        ));
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

/// Size of an object, or `None` when it does not exist.
pub async fn head(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<u64>, ObjectStoreError> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(o) => Ok(Some(o.content_length().unwrap_or(0).max(0) as u64)),
        Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
        Err(e) => Err(ObjectStoreError::new("HEAD", s3, bucket, key, &e)),
    }
}

/// A small object's bytes (manifests, drill reports), or `None` when it does not exist. At most
/// [`http::BODY_LIMIT`] is read into memory: a larger object, declared or streamed, is an error.
pub async fn get_small(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, ObjectStoreError> {
    let out = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => o,
        Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => return Ok(None),
        Err(e) => return Err(ObjectStoreError::new("GET", s3, bucket, key, &e)),
    };
    let too_large = || ObjectStoreError {
        op: "GET",
        bucket: bucket.to_string(),
        key: key.to_string(),
        message: format!(
            "the object is larger than {}, the most read into memory (manifests and drill \
             reports are a few KiB): not a file this provider wrote",
            http::format_size(http::BODY_LIMIT)
        ),
    };
    if out
        .content_length()
        .is_some_and(|n| u64::try_from(n).unwrap_or(0) > http::BODY_LIMIT)
    {
        return Err(too_large());
    }
    let mut body = out.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body
        .next()
        .await
        .transpose()
        .map_err(|e| ObjectStoreError::stream("GET", s3, bucket, key, &e))?
    {
        if (bytes.len() + chunk.len()) as u64 > http::BODY_LIMIT {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

pub async fn put_small(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<(), ObjectStoreError> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(ByteStream::from(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| ObjectStoreError::new("PUT", s3, bucket, key, &e))
}

/// Delete (absent is fine).
pub async fn delete(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<(), ObjectStoreError> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| ObjectStoreError::new("DELETE", s3, bucket, key, &e))
}

/// Every key under `prefix`.
pub async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, ObjectStoreError> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| ObjectStoreError::new("LIST", s3, bucket, prefix, &e))?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return Ok(keys),
        }
    }
}

/// Multipart uploads in progress under `prefix`: (key, upload id).
pub async fn list_uploads(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, String)>, ObjectStoreError> {
    let out = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .map_err(|e| ObjectStoreError::new("LIST UPLOADS", s3, bucket, prefix, &e))?;
    Ok(out
        .uploads()
        .iter()
        .filter_map(|u| Some((u.key()?.to_string(), u.upload_id()?.to_string())))
        .collect())
}

pub async fn abort_upload(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<(), ObjectStoreError> {
    s3.abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| ObjectStoreError::new("ABORT UPLOAD", s3, bucket, key, &e))
}

/// Start a multipart upload; returns its id.
pub async fn create_upload(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    content_type: &str,
    metadata: &[(&str, &str)],
) -> Result<String, ObjectStoreError> {
    let mut req = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type(content_type);
    for (k, v) in metadata {
        req = req.metadata(*k, *v);
    }
    let out = req
        .send()
        .await
        .map_err(|e| ObjectStoreError::new("CREATE UPLOAD", s3, bucket, key, &e))?;
    Ok(out.upload_id().unwrap_or_default().to_string())
}

/// Upload part `number` (from 1) of a multipart upload.
///
/// Every byte of a part is hashed once, by the caller: the backup streams the dump through its
/// own sha256 for the manifest and, with `verify` (its default), reads the object back to
/// compare it. So the part goes
/// without a SigV4 payload hash (`x-amz-content-sha256: UNSIGNED-PAYLOAD`; signing it is a
/// second sha256 pass over every byte here, and another on the server) and without a flexible
/// checksum (the SDK's default adds a CRC32 of every part, a third pass, and the server checks
/// it again): UploadPart does not require one, so the checksum is calculated only when
/// required. What protects the bytes on the way is TLS (on an `https` endpoint) and, end to
/// end, the caller's sha256 of the whole object (with `verify = false`, only TLS and TCP's own
/// checksum: the drill and the restore still compare the manifest's sha256 before they use it).
pub async fn upload_part(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    number: i32,
    body: Vec<u8>,
) -> Result<CompletedPart, ObjectStoreError> {
    let out = s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(number)
        .body(ByteStream::from(body))
        .customize()
        .config_override(
            aws_sdk_s3::Config::builder()
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired),
        )
        .disable_payload_signing()
        .send()
        .await
        .map_err(|e| ObjectStoreError::new("UPLOAD PART", s3, bucket, key, &e))?;
    Ok(CompletedPart::builder()
        .set_e_tag(out.e_tag().map(str::to_string))
        .part_number(number)
        .build())
}

/// Complete a multipart upload from its parts, in order.
pub async fn complete_upload(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> Result<(), ObjectStoreError> {
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| ObjectStoreError::new("COMPLETE UPLOAD", s3, bucket, key, &e))
}

/// Whether `bucket` exists (and these credentials may see it). A bucket that exists but is
/// refused (403) is an error, not "absent".
pub async fn head_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<bool, ObjectStoreError> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(false),
        Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(false),
        Err(e) => Err(ObjectStoreError::new("HEAD BUCKET", s3, bucket, "", &e)),
    }
}

/// Create `bucket`; outside `us-east-1` with the region as its location constraint. A bucket
/// these credentials already own is not an error.
pub async fn create_bucket(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    region: &str,
) -> Result<(), ObjectStoreError> {
    use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
    let mut req = s3.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(e)) if e.err().is_bucket_already_owned_by_you() => Ok(()),
        Err(e) => Err(ObjectStoreError::new("CREATE BUCKET", s3, bucket, "", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_for(endpoint: String) -> aws_sdk_s3::Client {
        client(&ObjectStoreConfig {
            endpoint: Some(endpoint),
            region: "us-east-1".into(),
            access_key_id: Some("key".into()),
            secret_access_key: Some("secret".into()),
            force_path_style: true,
        })
    }

    /// Transport failures from the real SDK against real sockets on 127.0.0.1 (answers from a
    /// real S3 server are in `tests/backup_s3.rs`, against Garage).
    #[tokio::test]
    async fn transport_errors_say_the_cause_and_the_endpoint() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s3 = client_for(format!("http://127.0.0.1:{port}"));
        let e = head(&s3, "bucket", "a/key").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "HEAD s3://bucket/a/key failed: cannot connect to 127.0.0.1:{port}: connection refused"
            )
        );

        // A server that reads the request and hangs up without answering.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
            }
        });
        let s3 = client_for(format!("http://{addr}"));
        let e = put_small(&s3, "bucket", "k", b"x".to_vec(), "text/plain")
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("PUT s3://bucket/k failed: ") && text.contains(&addr.to_string()),
            "{text}"
        );
        for dump in [
            "DispatchFailure",
            "ConnectorError",
            "hyper",
            "Kind(",
            "source:",
        ] {
            assert!(!text.contains(dump), "{dump:?} in {text}");
        }
    }

    /// One request as a tiny HTTP/1.1 server on 127.0.0.1 read it: its header lines
    /// (lower-cased names) and its body, answered `200` with an ETag.
    async fn capture_one(l: tokio::net::TcpListener) -> (Vec<(String, String)>, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = l.accept().await.unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        let head_end = loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client hung up before its headers ended");
            data.extend_from_slice(&buf[..n]);
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = data[head_end..].to_vec();
        while body.len() < length {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client hung up inside its body");
            body.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nETag: \"part-etag\"\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        (headers, body)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Answers one request (after its headers) with `head` then `body` chunks, then closes.
    async fn answer_one(l: tokio::net::TcpListener, head: String, chunks: usize, chunk: usize) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = l.accept().await.unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        while !data.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            data.extend_from_slice(&buf[..n]);
        }
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let block = vec![b'x'; chunk];
        for _ in 0..chunks {
            let framed = [format!("{chunk:x}\r\n").as_bytes(), &block, b"\r\n"].concat();
            if s.write_all(&framed).await.is_err() {
                return;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    }

    /// get_small reads at most 1 MiB: an object that declares more is refused before its body
    /// is read, and a body without a length stops at the limit; both name the key and the limit.
    #[tokio::test]
    async fn small_reads_stop_at_the_body_limit() {
        let declared = "HTTP/1.1 200 OK\r\nContent-Length: 3145728\r\n\r\n".to_string();
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string();
        for (head, chunks) in [(declared, 0), (chunked, 40)] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let s3 = client_for(format!("http://{}", l.local_addr().unwrap()));
            let server = tokio::spawn(answer_one(l, head, chunks, 64 * 1024));
            let err = get_small(&s3, "bucket", "backups/x.manifest.json")
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("s3://bucket/backups/x.manifest.json"),
                "{text}"
            );
            assert!(text.contains("larger than 1 MiB"), "{text}");
            server.abort();
        }
        // Under the limit, chunked: read whole.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s3 = client_for(format!("http://{}", l.local_addr().unwrap()));
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string();
        let server = tokio::spawn(answer_one(l, head, 3, 1000));
        let got = get_small(&s3, "bucket", "k").await.unwrap().unwrap();
        assert_eq!(got.len(), 3000);
        server.await.unwrap();
    }

    /// A part goes up as its plain bytes with `x-amz-content-sha256: UNSIGNED-PAYLOAD` and no
    /// flexible checksum (no `x-amz-checksum-*`, no trailer, no aws-chunked framing), still
    /// signed (`Authorization`). A small object (the manifest) keeps its signed payload hash:
    /// the same server sees the difference.
    #[tokio::test]
    async fn parts_go_up_unsigned_and_without_a_checksum() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s3 = client_for(format!("http://{}", l.local_addr().unwrap()));
        let server = tokio::spawn(capture_one(l));
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let part = upload_part(&s3, "bucket", "a/key.dump", "upload-1", 3, body.clone())
            .await
            .unwrap();
        assert_eq!(part.part_number(), Some(3));
        assert_eq!(part.e_tag(), Some("\"part-etag\""));
        let (headers, received) = server.await.unwrap();
        assert_eq!(
            header(&headers, "x-amz-content-sha256"),
            Some("UNSIGNED-PAYLOAD"),
            "{headers:?}"
        );
        assert!(header(&headers, "authorization").is_some(), "{headers:?}");
        for (k, _) in &headers {
            assert!(
                !k.starts_with("x-amz-checksum-")
                    && k != "x-amz-sdk-checksum-algorithm"
                    && k != "x-amz-trailer"
                    && k != "x-amz-decoded-content-length",
                "{k} in {headers:?}"
            );
        }
        assert_eq!(header(&headers, "content-encoding"), None, "{headers:?}");
        assert_eq!(received, body, "the part's bytes as they are");

        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s3 = client_for(format!("http://{}", l.local_addr().unwrap()));
        let server = tokio::spawn(capture_one(l));
        put_small(
            &s3,
            "bucket",
            "a/key.json",
            b"{}".to_vec(),
            "application/json",
        )
        .await
        .unwrap();
        let (headers, _) = server.await.unwrap();
        use sha2::Digest;
        assert_eq!(
            header(&headers, "x-amz-content-sha256"),
            Some(hex::encode(sha2::Sha256::digest(b"{}")).as_str()),
            "{headers:?}"
        );
    }
}
