//! Progress on stderr for long operations, only when stderr is a terminal (never in
//! scripts, cron or CI, where it would pollute logs).
use std::io::{IsTerminal, Read};

use indicatif::{ProgressBar, ProgressStyle};

/// Inputs smaller than this finish too fast for a bar to help.
const MIN_BYTES: u64 = 8 << 20;

/// Wraps `r` in a progress bar over `len` bytes (a spinner with a byte count when the
/// length is unknown, e.g. stdin) if stderr is a terminal.
pub fn reader<'a, R: Read + 'a>(r: R, len: Option<u64>, what: &str) -> Box<dyn Read + 'a> {
    if !std::io::stderr().is_terminal() || len.is_some_and(|l| l < MIN_BYTES) {
        return Box::new(r);
    }
    let bar = match len {
        Some(l) => ProgressBar::new(l).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .expect("valid template"),
        ),
    };
    bar.set_message(what.to_string());
    Box::new(Finishing(bar.wrap_read(r)))
}

/// Clears the bar when the read side is dropped, so the final JSON starts on a clean line.
struct Finishing<R: Read>(indicatif::ProgressBarIter<R>);

impl<R: Read> Read for Finishing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Drop for Finishing<R> {
    fn drop(&mut self) {
        self.0.progress.finish_and_clear();
    }
}

/// An indicatif bar as the [`crate::ops::Progress`] of an operation.
pub struct Bar(pub ProgressBar);

impl crate::ops::Progress for Bar {
    fn phase(&self, message: &str, total: Option<u64>) {
        self.0.set_message(message.to_string());
        if let Some(t) = total {
            self.0.set_length(t);
        }
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    fn warn(&self, message: &str) {
        self.0.suspend(|| eprintln!("vault: {message}"));
    }
}
