//! A small synchronous S3 client: requests are signed by `rusty-s3` (AWS Signature
//! Version 4, presigned URLs, sans-IO) and sent with `ureq` over rustls, the HTTP stack
//! the BMC client already uses. No async runtime is pulled in.
//!
//! Invariants:
//! - Addressing is path-style when asked (Ceph RGW, MinIO, most private stores) and
//!   virtual-host style otherwise (AWS).
//! - TLS is verified against the system roots, or only against `ca_cert` when given;
//!   there is no way to switch verification off.
//! - Every header that changes what is stored (metadata, Object Lock mode and date,
//!   Content-MD5) is signed, so a proxy cannot strip the lock or swap the checksum.
//! - A multipart upload that fails is aborted; one that is killed is never completed,
//!   so no partial object ever becomes visible under its key.
//! - Neither credentials nor signed URLs (their query strings hold signatures) appear in
//!   errors: errors name the endpoint, bucket and object only.
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::Digest as _;
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateBucket, CreateMultipartUpload,
    DeleteObject, GetObject, HeadObject, ListObjectsV2, PutObject, UploadPart,
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use ureq::http::{Method, Request, Response};
use ureq::{Agent, Body};
use url::Url;

use super::error::RemoteError;

/// How long a signed request stays valid: long enough for one request on a slow link.
const SIGNATURE_TTL: Duration = Duration::from_secs(15 * 60);
/// Error bodies (S3's `<Error>` XML) are read up to this many bytes.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// Listing pages are XML of at most 1000 keys; bound what is read of each.
const MAX_LIST_BODY: u64 = 16 << 20;
/// Attempts per idempotent request (GET, HEAD, an upload part) on 5xx or a dropped
/// connection; non-idempotent ones (create/complete) are tried once.
const ATTEMPTS: u32 = 3;
/// The user metadata that carries the SHA-256 of the whole object, hex.
pub const META_SHA256: &str = "x-amz-meta-vault-sha256";
/// Smallest part S3 accepts for all but the last part of a multipart upload.
pub const MIN_PART_SIZE: usize = 5 << 20;

/// Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete early.
    Governance,
    /// Nobody, not even the bucket owner, can delete the version before the date.
    Compliance,
}

impl LockMode {
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    pub fn parse_s3(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }
}

/// Where and how to reach one bucket.
#[derive(Debug, Clone)]
pub struct S3Options {
    pub endpoint: Url,
    pub path_style: bool,
    pub bucket: String,
    pub region: String,
    pub ca_cert: Option<std::path::PathBuf>,
    pub timeout: Duration,
}

/// What S3 says about an object (from HEAD or a GET).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub lock_mode: Option<LockMode>,
    /// RFC 3339, as S3 returns it.
    pub retain_until: Option<String>,
    pub legal_hold: bool,
    /// The SHA-256 the pusher stored with the object (hex), if any.
    pub sha256: Option<String>,
}

/// One entry of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<String>,
}

/// Request and byte counters (for measurements and for the O(header) tests).
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
}

impl Stats {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Object bytes received in GET bodies (not listings or headers).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }
}

/// Lock and checksum to store with a new object.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub sha256_hex: Option<String>,
    /// Mode and retain-until date (RFC 3339, UTC).
    pub lock: Option<(LockMode, String)>,
}

/// What a finished upload returns.
#[derive(Debug, Clone)]
pub struct PutOutcome {
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub parts: usize,
}

pub struct S3Client {
    bucket: Bucket,
    credentials: Credentials,
    agent: Agent,
    endpoint: String,
    stats: Stats,
}

impl S3Client {
    pub fn new(opts: &S3Options, credentials: Credentials) -> Result<Self, RemoteError> {
        let style = if opts.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            opts.endpoint.clone(),
            style,
            opts.bucket.clone(),
            opts.region.clone(),
        )
        .map_err(|e| {
            RemoteError::Usage(format!(
                "cannot address bucket '{}' at {}: {e}; bucket names with dots or an IP-address endpoint need path-style addressing",
                opts.bucket, opts.endpoint
            ))
        })?;
        Ok(S3Client {
            bucket,
            credentials,
            agent: build_agent(opts)?,
            endpoint: endpoint_display(&opts.endpoint),
            stats: Stats::default(),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Creates the bucket (with Object Lock enabled, which also turns versioning on).
    pub fn create_bucket(&self, object_lock: bool) -> Result<(), RemoteError> {
        let action = CreateBucket::new(&self.bucket, &self.credentials);
        let body = action.body();
        let mut h = Vec::new();
        if object_lock {
            h.push(("x-amz-bucket-object-lock-enabled", "true".to_string()));
        }
        let (url, headers) = sign_with(action, h);
        let resp = self.send(
            "create bucket",
            "",
            Method::PUT,
            url,
            &headers,
            body.as_bytes(),
            1,
        )?;
        self.expect_ok("create bucket", "", resp).map(drop)
    }

    /// Uploads `data` in one request.
    pub fn put_object(
        &self,
        key: &str,
        data: &[u8],
        opts: &PutOptions,
    ) -> Result<PutOutcome, RemoteError> {
        let md5 = B64.encode(md5::Md5::digest(data));
        let action = PutObject::new(&self.bucket, Some(&self.credentials), key);
        let mut h = put_headers(opts);
        h.push(("content-md5", md5));
        let (url, headers) = sign_with(action, h);
        let resp = self.send("upload", key, Method::PUT, url, &headers, data, ATTEMPTS)?;
        let resp = self.expect_ok("upload", key, resp)?;
        Ok(PutOutcome {
            version_id: header(&resp, "x-amz-version-id"),
            etag: header(&resp, "etag"),
            parts: 1,
        })
    }

    /// Uploads a stream of unknown length in parts of `part_size` bytes (at least 5 MiB),
    /// holding one part in memory. The object appears only when the last part is in and
    /// the upload is completed; on any error the upload is aborted.
    pub fn put_multipart(
        &self,
        key: &str,
        mut input: impl Read,
        part_size: usize,
        opts: &PutOptions,
    ) -> Result<PutOutcome, RemoteError> {
        let part_size = part_size.max(MIN_PART_SIZE);
        let upload_id = self.start_multipart(key, opts)?;
        let result = (|| {
            let mut etags = Vec::new();
            let mut buf = vec![0u8; part_size];
            loop {
                let n = read_full(&mut input, &mut buf)
                    .map_err(super::error::io_err(format!("reading the data for {key}")))?;
                if n == 0 && !etags.is_empty() {
                    break;
                }
                let part_number = u16::try_from(etags.len() + 1).map_err(|_| {
                    RemoteError::Usage(format!("{key} needs more than 65535 parts"))
                })?;
                etags.push(self.upload_part(key, &upload_id, part_number, &buf[..n])?);
                if n < part_size {
                    break;
                }
            }
            self.complete_multipart(key, &upload_id, &etags)
        })();
        if result.is_err() {
            self.abort(key, &upload_id);
        }
        result
    }

    /// Starts a multipart upload of `key`; returns its upload id.
    fn start_multipart(&self, key: &str, opts: &PutOptions) -> Result<String, RemoteError> {
        let create = CreateMultipartUpload::new(&self.bucket, Some(&self.credentials), key);
        let (url, headers) = sign_with(create, put_headers(opts));
        let resp = self.send("start upload", key, Method::POST, url, &headers, &[], 1)?;
        let body = read_limited(self.expect_ok("start upload", key, resp)?, MAX_ERROR_BODY)
            .map_err(|reason| bad("start upload", reason))?;
        let upload = CreateMultipartUpload::parse_response(&body)
            .map_err(|e| bad("start upload", e.to_string()))?;
        Ok(upload.upload_id().to_string())
    }

    /// Uploads part `part_number` of upload `upload_id` (with its Content-MD5); returns
    /// its ETag.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u16,
        part: &[u8],
    ) -> Result<String, RemoteError> {
        let action = UploadPart::new(
            &self.bucket,
            Some(&self.credentials),
            key,
            part_number,
            upload_id,
        );
        let md5 = B64.encode(md5::Md5::digest(part));
        let (url, headers) = sign_with(action, vec![("content-md5", md5)]);
        let resp = self.send(
            "upload part",
            key,
            Method::PUT,
            url,
            &headers,
            part,
            ATTEMPTS,
        )?;
        let resp = self.expect_ok("upload part", key, resp)?;
        header(&resp, "etag").ok_or_else(|| bad("upload part", "no ETag in the answer".into()))
    }

    /// Completes upload `upload_id` from the parts' `etags`. S3 may answer 200 and still
    /// report an error in the body, which fails it too.
    fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<PutOutcome, RemoteError> {
        let action = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGNATURE_TTL);
        let body = action.body();
        let resp = self.send(
            "complete upload",
            key,
            Method::POST,
            url,
            &[],
            body.as_bytes(),
            1,
        )?;
        let resp = self.expect_ok("complete upload", key, resp)?;
        let version_id = header(&resp, "x-amz-version-id");
        let body =
            read_limited(resp, MAX_ERROR_BODY).map_err(|reason| bad("complete upload", reason))?;
        if body.contains("<Error>") {
            let (code, message) = parse_error(&body);
            return Err(RemoteError::Failed {
                what: "complete upload".into(),
                bucket: self.bucket.name().to_string(),
                object: key.to_string(),
                status: 200,
                code,
                message,
            });
        }
        Ok(PutOutcome {
            version_id,
            etag: None,
            parts: etags.len(),
        })
    }

    /// Best effort: a failed abort leaves an incomplete upload, which is invisible and
    /// which a bucket lifecycle rule (AbortIncompleteMultipartUpload) cleans up.
    fn abort(&self, key: &str, upload_id: &str) {
        let action =
            AbortMultipartUpload::new(&self.bucket, Some(&self.credentials), key, upload_id);
        let url = action.sign(SIGNATURE_TTL);
        let _ = self.send("abort upload", key, Method::DELETE, url, &[], &[], 1);
    }

    /// What S3 says about `key`, or `None` if there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<ObjectHead>, RemoteError> {
        let action = HeadObject::new(&self.bucket, Some(&self.credentials), key);
        let url = action.sign(SIGNATURE_TTL);
        let resp = self.send("head", key, Method::HEAD, url, &[], &[], ATTEMPTS)?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let resp = self.expect_ok("head", key, resp)?;
        let mut h = object_head(&resp);
        h.size = header(&resp, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Some(h))
    }

    /// Bytes `start..start+len` of `key` (fewer at the end of the object), with the
    /// object's head (its total size from `Content-Range`).
    pub fn get_range(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<(Vec<u8>, ObjectHead), RemoteError> {
        if len == 0 {
            return Err(RemoteError::Usage("an empty range was asked for".into()));
        }
        let action = GetObject::new(&self.bucket, Some(&self.credentials), key);
        let range = format!("bytes={start}-{}", start + len - 1);
        let (url, headers) = sign_with(action, vec![("range", range)]);
        let resp = self.send(
            "ranged read",
            key,
            Method::GET,
            url,
            &headers,
            &[],
            ATTEMPTS,
        )?;
        if resp.status().as_u16() == 416 {
            return Err(RemoteError::Corrupted {
                bucket: self.bucket.name().to_string(),
                object: key.to_string(),
                reason: format!("it is shorter than byte {start}"),
            });
        }
        let resp = self.expect_ok("ranged read", key, resp)?;
        let mut head = object_head(&resp);
        let status = resp.status().as_u16();
        head.size = if status == 206 {
            header(&resp, "content-range")
                .and_then(|v| v.rsplit('/').next().and_then(|t| t.parse().ok()))
                .ok_or_else(|| bad("ranged read", "206 without a Content-Range total".into()))?
        } else {
            header(&resp, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let mut data = Vec::with_capacity(len.min(1 << 20) as usize);
        let mut body = resp.into_body();
        body.as_reader()
            .take(len + 1)
            .read_to_end(&mut data)
            .map_err(|e| self.transport("ranged read", e.to_string()))?;
        if status != 206 {
            // A server that ignores Range sends the whole object: keep only what was asked.
            let from = (start as usize).min(data.len());
            let to = (start.saturating_add(len) as usize).min(data.len());
            data = data[from..to].to_vec();
        } else if data.len() as u64 > len {
            return Err(bad(
                "ranged read",
                "more bytes than the range asked for".into(),
            ));
        }
        self.stats
            .bytes_received
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok((data, head))
    }

    /// Streams the whole object into `sink`, returning its head and the bytes copied.
    pub fn get_to(
        &self,
        key: &str,
        sink: &mut dyn std::io::Write,
    ) -> Result<(ObjectHead, u64), RemoteError> {
        let action = GetObject::new(&self.bucket, Some(&self.credentials), key);
        let url = action.sign(SIGNATURE_TTL);
        let resp = self.send("download", key, Method::GET, url, &[], &[], ATTEMPTS)?;
        let resp = self.expect_ok("download", key, resp)?;
        let mut head = object_head(&resp);
        head.size = header(&resp, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = resp.into_body();
        let n = std::io::copy(&mut body.as_reader(), sink)
            .map_err(|e| self.transport("download", e.to_string()))?;
        self.stats.bytes_received.fetch_add(n, Ordering::Relaxed);
        Ok((head, n))
    }

    /// Every object under `prefix` (all pages).
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, RemoteError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            if !prefix.is_empty() {
                action.with_prefix(prefix);
            }
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGNATURE_TTL);
            let resp = self.send("list", prefix, Method::GET, url, &[], &[], ATTEMPTS)?;
            let resp = self.expect_ok("list", prefix, resp)?;
            let body = read_limited(resp, MAX_LIST_BODY).map_err(|r| bad("list", r))?;
            let page =
                ListObjectsV2::parse_response(&body).map_err(|e| bad("list", e.to_string()))?;
            out.extend(page.contents.into_iter().map(|c| Listed {
                key: c.key,
                size: c.size.unwrap_or(0),
                last_modified: c.last_modified,
            }));
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Deletes one version of `key` (the current one when `version_id` is `None`; on a
    /// versioned bucket that only adds a delete marker, so callers pass the version).
    pub fn delete(&self, key: &str, version_id: Option<&str>) -> Result<(), RemoteError> {
        let mut action = DeleteObject::new(&self.bucket, Some(&self.credentials), key);
        if let Some(v) = version_id {
            action.query_mut().insert("versionId", v.to_string());
        }
        let url = action.sign(SIGNATURE_TTL);
        let resp = self.send("delete", key, Method::DELETE, url, &[], &[], 1)?;
        self.expect_ok("delete", key, resp).map(drop)
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        what: &str,
        object: &str,
        method: Method,
        url: Url,
        headers: &[(String, String)],
        body: &[u8],
        attempts: u32,
    ) -> Result<Response<Body>, RemoteError> {
        let mut delay = Duration::from_millis(200);
        let mut last = None;
        for attempt in 1..=attempts {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(url.as_str())
                // Object bytes must arrive exactly as stored: no transparent gzip.
                .header("accept-encoding", "identity");
            for (k, v) in headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let req = req
                .body(body)
                .map_err(|e| bad(what, format!("cannot build the request: {e}")))?;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_sent
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            match self.agent.run(req) {
                Ok(resp) if resp.status().is_server_error() && attempt < attempts => {
                    last = Some(self.status_error(what, object, resp));
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    let err = self.transport(what, describe(&e));
                    if attempt == attempts {
                        return Err(err);
                    }
                    last = Some(err);
                }
            }
            std::thread::sleep(delay);
            delay *= 4;
        }
        Err(last.unwrap_or_else(|| self.transport(what, "no attempt was made".into())))
    }

    fn transport(&self, what: &str, reason: String) -> RemoteError {
        RemoteError::Transport {
            endpoint: self.endpoint.clone(),
            what: what.to_string(),
            reason,
        }
    }

    fn expect_ok(
        &self,
        what: &str,
        object: &str,
        resp: Response<Body>,
    ) -> Result<Response<Body>, RemoteError> {
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.status_error(what, object, resp))
        }
    }

    fn status_error(&self, what: &str, object: &str, resp: Response<Body>) -> RemoteError {
        let status = resp.status().as_u16();
        let body = read_limited(resp, MAX_ERROR_BODY).unwrap_or_default();
        let (code, message) = parse_error(&body);
        let bucket = self.bucket.name().to_string();
        let object = object.to_string();
        let what = what.to_string();
        match (status, code.as_str()) {
            (404, "NoSuchKey" | "") => RemoteError::NoSuchObject { bucket, object },
            (401 | 403, _) => RemoteError::Denied {
                what,
                bucket,
                object,
                status,
                code,
                message,
            },
            _ => RemoteError::Failed {
                what,
                bucket,
                object,
                status,
                code,
                message,
            },
        }
    }
}

/// Signs `action` with `headers` among its signed headers; returns the URL and the
/// headers, which must be sent exactly as signed.
fn sign_with<'a, A: S3Action<'a>>(
    mut action: A,
    headers: Vec<(&'static str, String)>,
) -> (Url, Vec<(String, String)>) {
    for (k, v) in &headers {
        action.headers_mut().insert(*k, v.clone());
    }
    let url = action.sign(SIGNATURE_TTL);
    let sent = headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    (url, sent)
}

fn put_headers(opts: &PutOptions) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    if let Some(sha) = &opts.sha256_hex {
        h.push((META_SHA256, sha.clone()));
    }
    if let Some((mode, until)) = &opts.lock {
        h.push(("x-amz-object-lock-mode", mode.as_s3().to_string()));
        h.push(("x-amz-object-lock-retain-until-date", until.clone()));
    }
    h
}

fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn object_head(resp: &Response<Body>) -> ObjectHead {
    ObjectHead {
        size: 0,
        etag: header(resp, "etag"),
        version_id: header(resp, "x-amz-version-id"),
        lock_mode: header(resp, "x-amz-object-lock-mode").and_then(|m| LockMode::parse_s3(&m)),
        retain_until: header(resp, "x-amz-object-lock-retain-until-date"),
        legal_hold: header(resp, "x-amz-object-lock-legal-hold")
            .is_some_and(|v| v.eq_ignore_ascii_case("ON")),
        sha256: header(resp, META_SHA256),
    }
}

fn read_limited(resp: Response<Body>, limit: u64) -> Result<String, String> {
    let mut s = String::new();
    resp.into_body()
        .as_reader()
        .take(limit)
        .read_to_string(&mut s)
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// `<Code>` and `<Message>` of an S3 error document (both bounded and made printable).
fn parse_error(body: &str) -> (String, String) {
    let field = |tag: &str| {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        body.find(&open)
            .and_then(|i| {
                let rest = &body[i + open.len()..];
                rest.find(&close).map(|j| &rest[..j])
            })
            .map(|s| {
                s.chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    let code = field("Code");
    let message = field("Message");
    let message = if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    };
    (code, message)
}

fn bad(what: &str, reason: String) -> RemoteError {
    RemoteError::BadResponse {
        what: what.to_string(),
        reason,
    }
}

/// The endpoint without any user info, path or query (for messages).
fn endpoint_display(u: &Url) -> String {
    let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(p) = u.port() {
        s.push_str(&format!(":{p}"));
    }
    s
}

fn describe(e: &ureq::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    // ureq errors can quote the URI, whose query holds the signature: drop any query.
    match s.find("X-Amz-") {
        Some(i) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn build_agent(opts: &S3Options) -> Result<Agent, RemoteError> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if let Some(path) = &opts.ca_cert {
        let ca_err = |reason: String| RemoteError::CaCert {
            path: path.display().to_string(),
            reason,
        };
        let pem = read_ca(path).map_err(ca_err)?;
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(ca_err("no PEM certificate found in it".into()));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls.build())
        // A redirect would send the signed request elsewhere: report it instead.
        .max_redirects(0)
        .timeout_connect(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .timeout_per_write(Some(opts.timeout))
        .user_agent(concat!("vault/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(config.into())
}

fn read_ca(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > 1 << 20 {
        return Err("larger than 1 MiB, not a CA certificate".into());
    }
    std::fs::read(path).map_err(|e| e.to_string())
}
