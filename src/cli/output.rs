//! Rendering of command results: JSON (default, for scripts and `jq`) or a table.
//!
//! Printers write to any `Write`, so they are tested on a `Vec<u8>`.
use std::io::{self, Write};

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Json,
    Table,
}

/// Writes `value` in the chosen format followed by a newline.
pub fn render(out: &mut dyn Write, format: Format, value: &Value) -> io::Result<()> {
    match format {
        Format::Json => {
            crate::escape::write_json(&mut *out, value)?;
            writeln!(out)
        }
        Format::Table => super::table::render(out, value, &super::table::Style::local()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_pretty_and_parses_back() {
        let v = json!({"a":[1,2]});
        let mut buf = Vec::new();
        render(&mut buf, Format::Json, &v).unwrap();
        let back: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, v);
    }
}
