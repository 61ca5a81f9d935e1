//! Progress on stderr for long operations, only when stderr is a terminal (never in
//! scripts, cron or CI, where it would pollute logs).
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Inputs smaller than this finish too fast for a bar to help.
const MIN_BYTES: u64 = 8 << 20;

/// An indicatif bar as the [`crate::ops::Progress`] of an operation.
pub struct Bar(pub ProgressBar);

impl crate::ops::Progress for Bar {
    fn phase(&self, message: &str, total: Option<u64>) {
        self.0
            .set_message(crate::escape::for_terminal(message).into_owned());
        if let Some(t) = total {
            self.0.set_length(t);
        }
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    fn warn(&self, message: &str) {
        self.0
            .suspend(|| eprintln!("vault: {}", crate::escape::for_terminal(message)));
    }
}

/// The [`crate::ops::Progress`] of a local operation at the terminal: a bar for each phase
/// of at least 8 MiB (or of unknown length), only when stderr is a terminal; cleared when
/// the next phase starts and when dropped, so the final JSON starts on a clean line.
pub struct Terminal {
    tty: bool,
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl Terminal {
    pub fn new() -> Self {
        Terminal {
            tty: std::io::stderr().is_terminal(),
            bar: std::sync::Mutex::new(None),
        }
    }

    fn bar(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl crate::ops::Progress for Terminal {
    fn phase(&self, message: &str, total: Option<u64>) {
        let mut bar = self.bar();
        if let Some(b) = bar.take() {
            b.finish_and_clear();
        }
        if !self.tty || total.is_some_and(|l| l < MIN_BYTES) {
            return;
        }
        let b = match total {
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
        b.set_message(crate::escape::for_terminal(message).into_owned());
        *bar = Some(b);
    }

    fn advance(&self, n: u64) {
        if let Some(b) = self.bar().as_ref() {
            b.inc(n);
        }
    }

    fn warn(&self, message: &str) {
        let message = crate::escape::for_terminal(message);
        match self.bar().as_ref() {
            Some(b) => b.suspend(|| eprintln!("vault: {message}")),
            None => eprintln!("vault: {message}"),
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(b) = self.bar().take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Progress;

    /// Issue 13.3: a progress line shows control and bidi characters escaped, never raw
    /// (a BMC host or file name with ESC, OSC or U+202E).
    #[test]
    fn progress_messages_are_escaped() {
        let bar = Bar(ProgressBar::hidden());
        bar.phase("ilo\u{1b}]0;owned\u{7}: downloading \u{202e}kab.exe", None);
        let shown = bar.0.message();
        assert!(!shown.chars().any(crate::escape::is_dangerous), "{shown:?}");
        assert!(
            shown.contains("\\u{1b}") && shown.contains("\\u{202e}"),
            "{shown:?}"
        );
    }
}
