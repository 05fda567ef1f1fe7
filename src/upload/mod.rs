//! The S3 client wrapper: one sealed file in, one verified object out.
//!
//! Every upload re-reads the local file, checks it still has the sha256 recorded when it was
//! sealed (a sealed file never changes; if it did, the disk lost data and we must not spread
//! that), and sends it with that sha256 as object metadata. rust-s3 adds a Content-MD5 header to
//! every PUT and part, so the server refuses bytes damaged in transit. Verification then asks
//! the server (HEAD) for the size, the sha256 metadata and the ETag, which for a plain PUT is
//! the MD5 of the object and for a multipart upload the MD5 of the parts' MD5s plus `-N`; all
//! three must equal what we computed from the local bytes.
//!
//! Errors are rendered for operators (S3's error code and message, or the transport failure);
//! credentials never appear in them.

pub mod retention;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use md5::{Digest as _, Md5};
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, Region};
use sha2::Sha256;

use crate::config::UploadSettings;

const CONTENT_TYPE: &str = "application/octet-stream";
/// Object metadata key holding the file's sha256 (sent as `x-amz-meta-sha256`).
pub const SHA256_META: &str = "sha256";

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("S3 client configuration: {0}")]
    Config(String),
    #[error("cannot read {path}: {source}")]
    Local { path: String, source: std::io::Error },
    /// The local file no longer has the sha256 recorded when it was sealed.
    #[error("{0}")]
    Corrupt(String),
    /// The object store refused or could not be reached.
    #[error("{0}")]
    Remote(String),
    /// The object store accepted the upload but reports different bytes.
    #[error("verification failed: {0}")]
    Verify(String),
}

/// What an upload sent, for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub key: String,
    pub size: u64,
    pub sha256: String,
    /// The ETag the server must report: MD5 hex, or MD5-of-MD5s hex + `-N` for N parts.
    pub expected_etag: String,
    pub parts: usize,
}

/// What HEAD reports about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub etag: String,
    pub sha256: Option<String>,
}

/// A bucket on an S3-compatible service, with our key layout and upload policy.
#[derive(Clone)]
pub struct ObjectStore {
    bucket: Box<Bucket>,
    prefix: String,
    part_size: usize,
    threshold: u64,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectStore(bucket {}, prefix {:?})", self.bucket.name, self.prefix)
    }
}

impl ObjectStore {
    /// Builds the client from validated settings (no request is made).
    pub fn new(s: &UploadSettings) -> Result<ObjectStore, UploadError> {
        let creds = Credentials::new(Some(s.access_key.expose()), Some(s.secret_key.expose()), None, None, None)
            .map_err(|e| UploadError::Config(format!("credentials: {e}")))?;
        let region = Region::Custom {
            region: if s.region.is_empty() { "us-east-1".into() } else { s.region.clone() },
            endpoint: s.endpoint.trim_end_matches('/').to_string(),
        };
        let mut bucket = Bucket::new(&s.bucket, region, creds).map_err(|e| UploadError::Config(describe(&e)))?;
        if s.path_style {
            bucket = bucket.with_path_style();
        }
        bucket.set_request_timeout(Some(Duration::from_secs(s.request_timeout_sec.max(1))));
        Ok(ObjectStore {
            bucket,
            prefix: s.prefix.trim_matches('/').to_string(),
            part_size: (s.part_size_mb.max(5) << 20) as usize,
            threshold: s.multipart_threshold_mb << 20,
        })
    }

    /// `{prefix}/{cluster_key}/{source_identity}/{file}` (no leading slash; no prefix part when
    /// the prefix is empty).
    pub fn object_key(&self, cluster_key: &str, identity: &str, file: &str) -> String {
        if self.prefix.is_empty() {
            format!("{cluster_key}/{identity}/{file}")
        } else {
            format!("{}/{cluster_key}/{identity}/{file}", self.prefix)
        }
    }

    /// The key prefix under which one task's objects live (used to find stale multipart uploads).
    pub fn task_prefix(&self, cluster_key: &str) -> String {
        self.object_key(cluster_key, "", "").trim_end_matches('/').to_string() + "/"
    }

    /// Uploads `path` to `key`, single PUT up to the threshold, multipart above it. `sha256` is
    /// what the catalog recorded at sealing; the bytes read must still have it.
    pub async fn upload_file(&self, path: &Path, key: &str, sha256: &str) -> Result<Uploaded, UploadError> {
        let size = std::fs::metadata(path).map_err(|e| local(path, e))?.len();
        if size <= self.threshold {
            self.put_single(path, key, sha256).await
        } else {
            self.put_multipart(path, key, sha256).await
        }
    }

    async fn put_single(&self, path: &Path, key: &str, sha256: &str) -> Result<Uploaded, UploadError> {
        let (p, want) = (path.to_path_buf(), sha256.to_string());
        // Reading and hashing run on the blocking pool, never on an actor's thread.
        let (data, md5) = tokio::task::spawn_blocking(move || {
            let data = std::fs::read(&p).map_err(|e| local(&p, e))?;
            check_sha256(&p, &data, &want)?;
            let md5 = hex::encode(Md5::digest(&data));
            Ok::<_, UploadError>((data, md5))
        })
        .await
        .map_err(|e| UploadError::Remote(format!("reader task failed: {e}")))??;
        let mut headers = http::HeaderMap::new();
        headers.insert(meta_header(), sha256.parse().map_err(|_| UploadError::Corrupt("bad sha256 text".into()))?);
        self.bucket
            .put_object_with_content_type_and_headers(key, &data, CONTENT_TYPE, Some(headers))
            .await
            .map_err(|e| UploadError::Remote(describe(&e)))?;
        Ok(Uploaded {
            key: key.to_string(),
            size: data.len() as u64,
            sha256: sha256.to_string(),
            expected_etag: md5,
            parts: 1,
        })
    }

    async fn put_multipart(&self, path: &Path, key: &str, sha256: &str) -> Result<Uploaded, UploadError> {
        let mut headers = http::HeaderMap::new();
        headers.insert(meta_header(), sha256.parse().map_err(|_| UploadError::Corrupt("bad sha256 text".into()))?);
        let with_meta = self.bucket.with_extra_headers(headers).map_err(|e| UploadError::Remote(describe(&e)))?;
        let init = with_meta
            .initiate_multipart_upload(key, CONTENT_TYPE)
            .await
            .map_err(|e| UploadError::Remote(describe(&e)))?;
        let upload_id = init.upload_id;
        match self.send_parts(path, key, &upload_id, sha256).await {
            Ok(u) => Ok(u),
            Err(e) => {
                // Never leave parts behind: they cost storage and nobody would complete them.
                let _ = self.bucket.abort_upload(key, &upload_id).await;
                Err(e)
            }
        }
    }

    async fn send_parts(&self, path: &Path, key: &str, upload_id: &str, sha256: &str) -> Result<Uploaded, UploadError> {
        let mut file = std::fs::File::open(path).map_err(|e| local(path, e))?;
        let mut whole = Sha256::new();
        let mut md5s = Vec::new();
        let mut parts = Vec::new();
        let mut size = 0u64;
        for number in 1u32.. {
            let (chunk, md5, f, w) = read_chunk(file, whole, self.part_size, path).await?;
            (file, whole) = (f, w);
            if chunk.is_empty() && number > 1 {
                break;
            }
            size += chunk.len() as u64;
            let last = chunk.len() < self.part_size;
            let part = self
                .bucket
                .put_multipart_chunk(chunk, key, number, upload_id, CONTENT_TYPE)
                .await
                .map_err(|e| UploadError::Remote(describe(&e)))?;
            let etag = part.etag.trim_matches('"').to_ascii_lowercase();
            if etag != hex::encode(md5) {
                return Err(UploadError::Verify(format!(
                    "part {number} of {key}: the server reports ETag {etag}, the part's MD5 is {}",
                    hex::encode(md5)
                )));
            }
            md5s.extend_from_slice(&md5);
            parts.push(part);
            if last {
                break;
            }
        }
        let got = hex::encode(whole.finalize());
        if got != sha256 {
            return Err(corrupt(path, &got, sha256));
        }
        let n = parts.len();
        match self.bucket.complete_multipart_upload(key, upload_id, parts).await {
            Ok(_) => {}
            // A 2xx answer whose root element is not AWS's `CompleteMultipartUploadResult` (moto
            // says `...Response`) but is no `<Error>` either: accepted here, because `verify`
            // (HEAD: size, sha256, ETag of the parts) decides whether the object is right.
            Err(S3Error::HttpFailWithBody(status, body))
                if (200..300).contains(&status) && body.contains("<ETag>") && !body.contains("<Error>") => {}
            Err(e) => return Err(UploadError::Remote(describe(&e))),
        }
        Ok(Uploaded {
            key: key.to_string(),
            size,
            sha256: sha256.to_string(),
            expected_etag: format!("{}-{n}", hex::encode(Md5::digest(&md5s))),
            parts: n,
        })
    }

    /// HEAD: size, ETag and sha256 metadata; `None` when there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, UploadError> {
        match self.bucket.head_object(key).await {
            Ok((h, status)) if (200..300).contains(&status) => Ok(Some(ObjectInfo {
                size: h.content_length.unwrap_or(-1).max(0) as u64,
                etag: h.e_tag.unwrap_or_default().trim_matches('"').to_ascii_lowercase(),
                sha256: h.metadata.and_then(|m| m.get(SHA256_META).cloned()),
            })),
            Ok((_, 404)) => Ok(None),
            Ok((_, status)) => Err(UploadError::Remote(format!("HEAD {key}: HTTP {status}"))),
            Err(S3Error::HttpFailWithBody(404, _)) => Ok(None),
            Err(e) => Err(UploadError::Remote(describe(&e))),
        }
    }

    /// Compares what the server holds at `u.key` with what was sent.
    pub async fn verify(&self, u: &Uploaded) -> Result<(), UploadError> {
        let Some(info) = self.head(&u.key).await? else {
            return Err(UploadError::Verify(format!("{} is not in the bucket after its upload", u.key)));
        };
        if info.size != u.size {
            return Err(UploadError::Verify(format!(
                "{}: the bucket holds {} bytes, we sent {}",
                u.key, info.size, u.size
            )));
        }
        if info.sha256.as_deref() != Some(u.sha256.as_str()) {
            return Err(UploadError::Verify(format!(
                "{}: sha256 metadata is {:?}, expected {}",
                u.key, info.sha256, u.sha256
            )));
        }
        if info.etag != u.expected_etag {
            return Err(UploadError::Verify(format!(
                "{}: ETag is {}, the bytes we sent give {}",
                u.key, info.etag, u.expected_etag
            )));
        }
        Ok(())
    }

    /// Aborts every unfinished multipart upload under `prefix` (left by a crash or a kill);
    /// returns how many.
    pub async fn abort_stale_multiparts(&self, prefix: &str) -> Result<usize, UploadError> {
        let pages = self
            .bucket
            .list_multiparts_uploads(Some(prefix), None)
            .await
            .map_err(|e| UploadError::Remote(describe(&e)))?;
        let mut n = 0;
        for page in pages {
            for u in page.uploads {
                self.bucket.abort_upload(&u.key, &u.id).await.map_err(|e| UploadError::Remote(describe(&e)))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes an object (a missing one is not an error: S3 answers 204 either way).
    pub async fn delete(&self, key: &str) -> Result<(), UploadError> {
        self.bucket.delete_object(key).await.map(|_| ()).map_err(|e| UploadError::Remote(describe(&e)))
    }

    /// Streams an object into `dest` (created or truncated); returns its size.
    pub async fn download_to(&self, key: &str, dest: &Path) -> Result<u64, UploadError> {
        let mut f = tokio::fs::File::create(dest).await.map_err(|e| local(dest, e))?;
        self.bucket.get_object_to_writer(key, &mut f).await.map_err(|e| UploadError::Remote(describe(&e)))?;
        f.sync_all().await.map_err(|e| local(dest, e))?;
        Ok(f.metadata().await.map_err(|e| local(dest, e))?.len())
    }
}

fn meta_header() -> http::HeaderName {
    http::HeaderName::from_static("x-amz-meta-sha256")
}

fn local(path: &Path, e: std::io::Error) -> UploadError {
    UploadError::Local { path: path.display().to_string(), source: e }
}

fn corrupt(path: &Path, got: &str, want: &str) -> UploadError {
    UploadError::Corrupt(format!(
        "{} has sha256 {got} but {want} was recorded when it was sealed; the local copy changed, so it is \
         not uploaded (restore it or re-fetch it from the source)",
        path.display()
    ))
}

fn check_sha256(path: &Path, data: &[u8], want: &str) -> Result<(), UploadError> {
    let got = hex::encode(Sha256::digest(data));
    if got == want { Ok(()) } else { Err(corrupt(path, &got, want)) }
}

type Md5Digest = md5::digest::Output<Md5>;

/// Reads up to `n` bytes on the blocking pool and hashes them there (the part's MD5, and the
/// whole file's running sha256); hands the file and the hasher back.
async fn read_chunk(
    mut f: std::fs::File,
    mut whole: Sha256,
    n: usize,
    path: &Path,
) -> Result<(Vec<u8>, Md5Digest, std::fs::File, Sha256), UploadError> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(n);
        (&mut f).take(n as u64).read_to_end(&mut buf).map_err(|e| local(&p, e))?;
        whole.update(&buf);
        let md5 = Md5::digest(&buf);
        Ok((buf, md5, f, whole))
    })
    .await
    .map_err(|e| UploadError::Remote(format!("reader task failed: {e}")))?
}

/// An S3 error for an operator: status, S3's error code and message; transport errors with
/// their causes. Never the request's signature or credentials.
pub fn describe(e: &S3Error) -> String {
    match e {
        S3Error::HttpFailWithBody(status, body) => {
            let code = xml_field(body, "Code");
            let message = xml_field(body, "Message");
            match (code, message) {
                (Some(c), Some(m)) => format!("HTTP {status} {c}: {m}"),
                (Some(c), None) => format!("HTTP {status} {c}"),
                _ => format!("HTTP {status} from the object store"),
            }
        }
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(cause) = src {
                let c = cause.to_string();
                if !s.contains(&c) {
                    s.push_str(": ");
                    s.push_str(&c);
                }
                src = cause.source();
            }
            s
        }
    }
}

fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    let v = body[start..end].trim();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn settings(prefix: &str) -> UploadSettings {
        UploadSettings {
            enabled: true,
            endpoint: "http://127.0.0.1:9".into(),
            bucket: "binlogs".into(),
            access_key: Secret::new("AKIA"),
            secret_key: Secret::new("s3cr3t"),
            prefix: prefix.into(),
            ..UploadSettings::default()
        }
    }

    #[test]
    fn object_keys_follow_the_layout() {
        let s = ObjectStore::new(&settings("/backups/prod/")).unwrap();
        assert_eq!(s.object_key("orders", "srv-1", "mysql-bin.000007"), "backups/prod/orders/srv-1/mysql-bin.000007");
        assert_eq!(s.task_prefix("orders"), "backups/prod/orders/");
        let s = ObjectStore::new(&settings("")).unwrap();
        assert_eq!(s.object_key("orders", "srv-1", "mysql-bin.000007"), "orders/srv-1/mysql-bin.000007");
        assert_eq!(s.task_prefix("orders"), "orders/");
    }

    #[test]
    fn s3_errors_read_well_and_carry_no_secret() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request \
                    signature we calculated does not match</Message><StringToSign>AWS4 s3cr3t</StringToSign></Error>";
        let d = describe(&S3Error::HttpFailWithBody(403, body.into()));
        assert_eq!(d, "HTTP 403 SignatureDoesNotMatch: The request signature we calculated does not match");
        assert!(!d.contains("s3cr3t"));
        assert_eq!(describe(&S3Error::HttpFailWithBody(503, String::new())), "HTTP 503 from the object store");
    }

    #[test]
    fn the_debug_form_names_no_credentials() {
        let s = ObjectStore::new(&settings("p")).unwrap();
        let d = format!("{s:?}");
        assert!(d.contains("binlogs") && !d.contains("s3cr3t") && !d.contains("AKIA"), "{d}");
    }

    #[tokio::test]
    async fn a_changed_local_file_is_refused_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mysql-bin.000001");
        std::fs::write(&p, b"\xfebinlog bytes").unwrap();
        let s = ObjectStore::new(&settings("")).unwrap();
        // The endpoint (port 9, discard) is never reached: the sha256 check comes first.
        let err = s.upload_file(&p, "k", &"0".repeat(64)).await.unwrap_err();
        assert!(matches!(err, UploadError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains("changed"), "{err}");
    }
}
