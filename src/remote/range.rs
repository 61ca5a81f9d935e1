//! `Read + Seek` over an S3 object by ranged GETs, so the envelope's own keyless
//! `inspect` runs on a remote object exactly as on a file, reading only the header and
//! trailer: two small requests per archive whatever its size (O(header), not O(object)).
use std::io::{self, Read, Seek, SeekFrom};

use super::error::RemoteError;
use super::s3::{ObjectHead, S3Client};

/// Bytes fetched per cache miss: one request covers preamble, header, salt and slots of
/// any archive whose JSON header is under ~3.5 KiB (vault's are a few hundred bytes).
pub const BLOCK: u64 = 4096;

pub struct RangeReader<'c> {
    client: &'c S3Client,
    key: String,
    pos: u64,
    size: Option<u64>,
    segments: Vec<(u64, Vec<u8>)>,
    head: Option<ObjectHead>,
    /// The first S3 error, kept whole (io::Error would flatten it).
    error: Option<RemoteError>,
}

impl<'c> RangeReader<'c> {
    /// `size` is the object's size if known (a listing gives it), saving a request.
    pub fn new(client: &'c S3Client, key: &str, size: Option<u64>) -> Self {
        RangeReader {
            client,
            key: key.to_string(),
            pos: 0,
            size,
            segments: Vec::new(),
            head: None,
            error: None,
        }
    }

    /// The object's head as returned with the first ranged read (lock, checksum, version).
    pub fn head(&self) -> Option<&ObjectHead> {
        self.head.as_ref()
    }

    /// The S3 error behind an `io::Error` this reader returned, if any.
    pub fn take_error(&mut self) -> Option<RemoteError> {
        self.error.take()
    }

    fn fetch(&mut self, want: u64) -> io::Result<()> {
        let mut len = want.max(BLOCK);
        if let Some(size) = self.size {
            len = len.min(size.saturating_sub(self.pos));
        }
        if len == 0 {
            return Ok(());
        }
        match self.client.get_range(&self.key, self.pos, len) {
            Ok((data, head)) => {
                self.size = Some(head.size);
                if self.head.is_none() {
                    self.head = Some(head);
                }
                self.segments.push((self.pos, data));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                self.error = Some(e);
                Err(io::Error::other(msg))
            }
        }
    }

    fn cached(&self, buf: &mut [u8]) -> Option<usize> {
        self.segments.iter().find_map(|(start, data)| {
            let end = start + data.len() as u64;
            (self.pos >= *start && self.pos < end).then(|| {
                let from = (self.pos - start) as usize;
                let n = buf.len().min(data.len() - from);
                buf[..n].copy_from_slice(&data[from..from + n]);
                n
            })
        })
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.size.is_some_and(|s| self.pos >= s) {
            return Ok(0);
        }
        let n = match self.cached(buf) {
            Some(n) => n,
            None => {
                self.fetch(buf.len() as u64)?;
                self.cached(buf).unwrap_or(0)
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => {
                if self.size.is_none() {
                    // Learn the size with the first block, which a reader wants anyway.
                    let keep = self.pos;
                    self.pos = 0;
                    self.fetch(BLOCK)?;
                    self.pos = keep;
                }
                self.size.and_then(|s| s.checked_add_signed(d))
            }
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}
