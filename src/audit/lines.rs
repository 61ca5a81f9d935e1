//! A line reader with a hard cap on line length.
//!
//! Invariant: memory stays bounded by `max` whatever the input. A line longer than `max`
//! is skipped (counted, not stored) up to its newline, and bytes after the last newline
//! are reported as a torn tail rather than as a line: the writer always ends a record
//! with `\n` in the same `write`, so unterminated bytes were never a committed record.
use std::io::{self, BufRead, BufReader, Read};

#[derive(Debug)]
pub(crate) enum Line {
    /// A newline-terminated line (without the newline), at most `max` bytes.
    Complete(Vec<u8>),
    /// A newline-terminated line longer than `max`; only its length is kept.
    TooLong { len: u64 },
    /// Bytes after the last newline, at end of input.
    Torn { len: u64 },
}

pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
    line_no: u64,
}

impl<R: Read> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            max,
            line_no: 0,
        }
    }

    /// The next line and its 1-based number, or `None` at end of input.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<(u64, Line)>> {
        let mut buf = Vec::new();
        let mut len: u64 = 0;
        let mut too_long = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                if len == 0 {
                    return Ok(None);
                }
                self.line_no += 1;
                return Ok(Some((self.line_no, Line::Torn { len })));
            }
            let newline = avail.iter().position(|&b| b == b'\n');
            let chunk = &avail[..newline.unwrap_or(avail.len())];
            if !too_long {
                if buf.len() + chunk.len() > self.max {
                    too_long = true;
                    buf = Vec::new();
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            let n = chunk.len();
            len += n as u64;
            self.inner.consume(n + usize::from(newline.is_some()));
            if newline.is_some() {
                self.line_no += 1;
                let line = if too_long {
                    Line::TooLong { len }
                } else {
                    Line::Complete(buf)
                };
                return Ok(Some((self.line_no, line)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize) -> Vec<(u64, String)> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some((n, l)) = r.next_line().unwrap() {
            let s = match l {
                Line::Complete(b) => format!("ok:{}", String::from_utf8_lossy(&b)),
                Line::TooLong { len } => format!("long:{len}"),
                Line::Torn { len } => format!("torn:{len}"),
            };
            out.push((n, s));
        }
        out
    }

    #[test]
    fn splits_caps_and_reports_torn_tail() {
        let got = all(b"ab\n\n0123456789\nxyz\nqq", 5);
        let want = [
            (1, "ok:ab"),
            (2, "ok:"),
            (3, "long:10"),
            (4, "ok:xyz"),
            (5, "torn:2"),
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0, g.1.as_str()), w);
        }
    }

    #[test]
    fn huge_line_is_not_buffered() {
        // 1 MiB without a newline, then a short line: the cap holds, the next line survives.
        let mut input = vec![b'x'; 1 << 20];
        input.extend_from_slice(b"\nok\n");
        let got = all(&input, 1024);
        assert_eq!(got[0].1, format!("long:{}", 1 << 20));
        assert_eq!(got[1].1, "ok:ok");
    }
}
