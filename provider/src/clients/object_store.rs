//! S3-compatible object storage: the client, and the few operations backups need with errors
//! that carry the operation, the key and the server's message. Knows nothing of Terraform.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

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
    /// The server's code and message (or the transport error), complete.
    pub message: String,
}

impl ObjectStoreError {
    pub fn new<E, R>(op: &'static str, bucket: &str, key: &str, err: &SdkError<E, R>) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        let message = match err {
            SdkError::ServiceError(e) => {
                let inner = e.err();
                match (inner.code(), inner.message()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_string(),
                    _ => DisplayErrorContext(err).to_string(),
                }
            }
            _ => DisplayErrorContext(err).to_string(),
        };
        ObjectStoreError {
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            message,
        }
    }
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
        Err(e) => Err(ObjectStoreError::new("HEAD", bucket, key, &e)),
    }
}

/// A small object's bytes, or `None` when it does not exist.
pub async fn get_small(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, ObjectStoreError> {
    let out = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => o,
        Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => return Ok(None),
        Err(e) => return Err(ObjectStoreError::new("GET", bucket, key, &e)),
    };
    let bytes = out.body.collect().await.map_err(|e| ObjectStoreError {
        op: "GET",
        bucket: bucket.to_string(),
        key: key.to_string(),
        message: e.to_string(),
    })?;
    Ok(Some(bytes.into_bytes().to_vec()))
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
        .map_err(|e| ObjectStoreError::new("PUT", bucket, key, &e))
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
        .map_err(|e| ObjectStoreError::new("DELETE", bucket, key, &e))
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
            .map_err(|e| ObjectStoreError::new("LIST", bucket, prefix, &e))?;
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
        .map_err(|e| ObjectStoreError::new("LIST UPLOADS", bucket, prefix, &e))?;
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
        .map_err(|e| ObjectStoreError::new("ABORT UPLOAD", bucket, key, &e))
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
        .map_err(|e| ObjectStoreError::new("CREATE UPLOAD", bucket, key, &e))?;
    Ok(out.upload_id().unwrap_or_default().to_string())
}

/// Upload part `number` (from 1) of a multipart upload.
///
/// Without SigV4 payload signing: the SDK's payload hash is a second sha256 pass over every
/// byte (and another on the server). Integrity is kept by the SDK's CRC32 checksum of the part;
/// callers that need more hash the whole object themselves.
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
        .disable_payload_signing()
        .send()
        .await
        .map_err(|e| ObjectStoreError::new("UPLOAD PART", bucket, key, &e))?;
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
        .map_err(|e| ObjectStoreError::new("COMPLETE UPLOAD", bucket, key, &e))
}

/// Whether `bucket` exists (and these credentials may see it). A bucket that exists but is
/// refused (403) is an error, not "absent".
pub async fn head_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<bool, ObjectStoreError> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(false),
        Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(false),
        Err(e) => Err(ObjectStoreError::new("HEAD BUCKET", bucket, "", &e)),
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
        Err(e) => Err(ObjectStoreError::new("CREATE BUCKET", bucket, "", &e)),
    }
}
