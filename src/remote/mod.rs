//! Remote archive stores on S3 (AWS S3, Ceph RGW and the other S3-compatible stores).
//!
//! An archive `<id>.vault` of a home becomes the object `PREFIX/<id>.vault`, byte for
//! byte, with the SHA-256 of those bytes as user metadata (`x-amz-meta-vault-sha256`) and
//! each request body's MD5 checked by S3 on arrival (`Content-MD5`).
//!
//! Invariants:
//! - Nothing partial is ever visible: small archives go up in one PUT (S3 stores all or
//!   nothing); large ones by a multipart upload that is completed only after every part
//!   arrived, and aborted on error.
//! - A fetched object reaches the home only after its bytes match the stored SHA-256,
//!   its header names the id it was fetched as, and it authenticates under a key of this
//!   home (`envelope::verify`); until then it is a temporary file, removed on any error.
//! - Listing is keyless and O(header): the envelope's `inspect` runs over ranged reads
//!   (`range::RangeReader`), two small requests per archive whatever its size.
//! - With Object Lock, a pushed object carries its retention (mode and date) from the
//!   first byte, so a pushing host never needs delete rights.
pub mod config;
pub mod credentials;
mod error;
pub mod range;
pub mod s3;

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use config::{RemoteConfig, S3Url};
pub use credentials::CredentialEnv;
pub use error::RemoteError;
use error::io_err;
pub use s3::{LockMode, ObjectHead, S3Client, S3Options};

use crate::envelope::{self, Inspection, KeyLookup};
use crate::fsutil::AtomicFile;

/// Archives up to this size go up in one PUT; larger ones in parts of this size.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// Per-request connect/read/write timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const EXT: &str = ".vault";

/// A connected remote: its configuration, its bucket/prefix and a client.
pub struct Remote {
    pub config: RemoteConfig,
    pub url: S3Url,
    client: S3Client,
    part_size: usize,
}

/// Result of a push of one archive.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub id: Uuid,
    pub key: String,
    pub size: u64,
    pub sha256: String,
    /// False when the identical object was already there (nothing sent).
    pub uploaded: bool,
    pub parts: usize,
    pub version_id: Option<String>,
    pub lock: Option<(LockMode, String)>,
}

/// One object of a remote listing, inspected without any key.
pub struct RemoteArchive {
    pub key: String,
    pub size: u64,
    pub head: Option<ObjectHead>,
    pub inspection: Result<Inspection, RemoteError>,
}

impl Remote {
    /// Connects (no request is made until the first operation).
    pub fn connect(
        config: RemoteConfig,
        env: &CredentialEnv,
        timeout: Duration,
    ) -> Result<Remote, RemoteError> {
        let url = config.s3_url()?;
        let credentials = credentials::resolve(&config, env)?;
        let opts = S3Options {
            endpoint: config.endpoint_url()?,
            path_style: config.path_style,
            bucket: url.bucket.clone(),
            region: config.region.clone(),
            ca_cert: config.ca_cert.clone(),
            timeout,
        };
        let client = S3Client::new(&opts, credentials)?;
        Ok(Remote {
            config,
            url,
            client,
            part_size: DEFAULT_PART_SIZE,
        })
    }

    pub fn client(&self) -> &S3Client {
        &self.client
    }

    pub fn object_key(&self, id: &Uuid) -> String {
        self.url.key(&format!("{id}{EXT}"))
    }

    /// Pushes the archive file at `path` (id `id`) with an optional Object Lock.
    /// An object already there with the same SHA-256 is left alone; one with other bytes
    /// is refused (archives never change; a clash means something is wrong).
    pub fn push_file(
        &self,
        path: &Path,
        id: &Uuid,
        lock: Option<(LockMode, String)>,
    ) -> Result<PushOutcome, RemoteError> {
        let key = self.object_key(id);
        let what = || path.display().to_string();
        let (size, sha) = sha256_file(path).map_err(io_err(what()))?;
        let base = PushOutcome {
            id: *id,
            key: key.clone(),
            size,
            sha256: sha.clone(),
            uploaded: false,
            parts: 0,
            version_id: None,
            lock: lock.clone(),
        };
        if let Some(head) = self.client.head(&key)? {
            return if head.sha256.as_deref() == Some(sha.as_str()) && head.size == size {
                Ok(PushOutcome {
                    version_id: head.version_id,
                    lock: head.lock_mode.zip(head.retain_until),
                    ..base
                })
            } else {
                Err(RemoteError::Usage(format!(
                    "s3://{}/{key} already exists with other content; refusing to overwrite it",
                    self.url.bucket
                )))
            };
        }
        let opts = s3::PutOptions {
            sha256_hex: Some(sha),
            lock,
        };
        let mut f = File::open(path).map_err(io_err(what()))?;
        let out = if size <= self.part_size as u64 {
            let mut data = Vec::with_capacity(size as usize);
            (&mut f)
                .take(size)
                .read_to_end(&mut data)
                .map_err(io_err(what()))?;
            self.client.put_object(&key, &data, &opts)?
        } else {
            self.client
                .put_multipart(&key, BufReader::new(f), self.part_size, &opts)?
        };
        Ok(PushOutcome {
            uploaded: true,
            parts: out.parts,
            version_id: out.version_id,
            ..base
        })
    }

    /// Every `*.vault` object under the prefix, each inspected by ranged reads.
    pub fn list(&self) -> Result<Vec<RemoteArchive>, RemoteError> {
        let listed = self.client.list(&self.url.list_prefix())?;
        let mut out = Vec::new();
        for obj in listed {
            let rest = &obj.key[self.url.list_prefix().len()..];
            if !rest.ends_with(EXT) || rest.contains('/') {
                continue;
            }
            let (inspection, head) = self.inspect_object(&obj.key, Some(obj.size));
            out.push(RemoteArchive {
                key: obj.key,
                size: obj.size,
                head,
                inspection,
            });
        }
        out.sort_by(|a, b| match (&a.inspection, &b.inspection) {
            (Ok(x), Ok(y)) => {
                (&x.header.created_at, x.header.id).cmp(&(&y.header.created_at, y.header.id))
            }
            _ => a.key.cmp(&b.key),
        });
        Ok(out)
    }

    /// Keyless inspection of one object by ranged reads (header block + trailer).
    pub fn inspect_object(
        &self,
        key: &str,
        size: Option<u64>,
    ) -> (Result<Inspection, RemoteError>, Option<ObjectHead>) {
        let mut reader = range::RangeReader::new(&self.client, key, size);
        let r = envelope::inspect(&mut reader);
        let head = reader.head().cloned();
        let r = r.map_err(|e| match reader.take_error() {
            Some(remote) => remote,
            None => RemoteError::Archive {
                what: format!("s3://{}/{key}", self.url.bucket),
                source: e,
            },
        });
        (r, head)
    }

    /// Resolves a full id or an unambiguous prefix to an object key by listing.
    pub fn find(&self, id_or_prefix: &str) -> Result<(Uuid, String), RemoteError> {
        if let Ok(id) = Uuid::parse_str(id_or_prefix) {
            return Ok((id, self.object_key(&id)));
        }
        let needle = id_or_prefix.to_ascii_lowercase();
        let prefix = self.url.key(&needle);
        let hits: Vec<_> = self
            .client
            .list(&prefix)?
            .into_iter()
            .filter_map(|o| {
                let name = o.key.rsplit('/').next()?.strip_suffix(EXT)?.to_string();
                Uuid::parse_str(&name).ok().map(|id| (id, o.key))
            })
            .collect();
        match hits.len() {
            1 => Ok(hits.into_iter().next().expect("one hit")),
            0 => Err(RemoteError::NoSuchObject {
                bucket: self.url.bucket.clone(),
                object: format!("{prefix}*{EXT}"),
            }),
            n => Err(RemoteError::Usage(format!(
                "{n} archives on the remote start with '{id_or_prefix}'; give more of the id"
            ))),
        }
    }

    /// Downloads the object of archive `id` into `dest` (a temporary file the caller
    /// commits), checks its bytes against the stored SHA-256 and its header against
    /// `id`, then authenticates it with `keys`. Returns the verified summary.
    pub fn fetch_into(
        &self,
        id: &Uuid,
        key: &str,
        dest: &mut AtomicFile,
        keys: KeyLookup<'_>,
    ) -> Result<envelope::OpenSummary, RemoteError> {
        let corrupted = |reason: String| RemoteError::Corrupted {
            bucket: self.url.bucket.clone(),
            object: key.to_string(),
            reason,
        };
        let mut sink = HashingWriter {
            inner: dest.file(),
            hasher: Sha256::new(),
        };
        let (head, n) = self.client.get_to(key, &mut sink)?;
        let got = hex::encode(sink.hasher.finalize());
        match head.sha256.as_deref() {
            None => {
                return Err(corrupted(
                    "it has no vault-sha256 metadata, so it was not pushed by vault or its metadata was stripped".into(),
                ));
            }
            Some(want) if !want.eq_ignore_ascii_case(&got) => {
                return Err(corrupted(format!(
                    "its SHA-256 is {got}, the one stored with it is {want}"
                )));
            }
            Some(_) => {}
        }
        if head.size != 0 && head.size != n {
            return Err(corrupted(format!(
                "{n} bytes arrived, S3 announced {}",
                head.size
            )));
        }
        dest.file().flush().map_err(io_err("the fetched archive"))?;
        let tmp = dest.temp_path().to_path_buf();
        let what = format!("s3://{}/{key}", self.url.bucket);
        let f = File::open(&tmp).map_err(io_err(what.clone()))?;
        let summary = envelope::verify(BufReader::with_capacity(envelope::READ_BUFFER, f), keys)
            .map_err(|source| RemoteError::Archive {
                what: what.clone(),
                source,
            })?;
        if summary.header.id != *id {
            return Err(corrupted(format!(
                "its header names archive {}, not {id}",
                summary.header.id
            )));
        }
        Ok(summary)
    }

    /// Deletes the version `version_id` of `key` (the object itself, not a delete marker).
    pub fn delete_version(&self, key: &str, version_id: Option<&str>) -> Result<(), RemoteError> {
        self.client.delete(key, version_id)
    }
}

struct HashingWriter<'a> {
    inner: &'a mut File,
    hasher: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Size and SHA-256 (hex) of a file, in one streaming pass.
pub fn sha256_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// The retain-until date `days` from now, RFC 3339 UTC (whole seconds).
pub fn retain_until(days: u32) -> String {
    let t = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::now_utc())
        + time::Duration::days(i64::from(days));
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
