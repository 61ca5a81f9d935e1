//! How a long operation tells its caller what it is doing, without a terminal.
//!
//! Invariant: operations never draw anything. They report phases, byte counts and
//! warnings through [`Progress`]; the CLI turns that into a bar on a TTY (and nothing in
//! scripts), the demo into its step list, tests into a `Vec`. A `Progress` must not fail
//! or block: it is called from the data path.
use std::io::{self, Read, Write};

/// Receives progress from an operation. Every method has a do-nothing default.
pub trait Progress: Sync {
    /// A new phase, e.g. `"ilo-1: downloading backup.bin"`, over `total` bytes if known.
    fn phase(&self, _message: &str, _total: Option<u64>) {}
    /// `n` more bytes of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// Something the person running the operation should know that is not an error
    /// (a session that could not be logged out, an audit record that could not be
    /// written after the change was made).
    fn warn(&self, _message: &str) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}

/// A `Read` that reports every byte read to a [`Progress`].
pub struct Counted<'p, T> {
    inner: T,
    progress: &'p dyn Progress,
}

impl<'p, T> Counted<'p, T> {
    pub fn new(inner: T, progress: &'p dyn Progress) -> Self {
        Counted { inner, progress }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Bytes(AtomicU64);
    impl Progress for Bytes {
        fn advance(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[test]
    fn counted_reports_every_byte_both_ways() {
        let p = Bytes(AtomicU64::new(0));
        let mut out = Vec::new();
        io::copy(&mut Counted::new(&b"hello world"[..], &p), &mut out).unwrap();
        Counted::new(&mut out, &p).write_all(b"!!").unwrap();
        assert_eq!(p.0.load(Ordering::Relaxed), 13);
        assert_eq!(out, b"hello world!!");
    }
}
