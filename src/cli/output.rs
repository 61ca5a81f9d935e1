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
        Format::Table => render_table(out, value),
    }
}

/// One table cell, with control and bidi characters escaped (they come from archive
/// headers, key files and BMCs: see [`crate::escape`]).
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => crate::escape::for_terminal(s).into_owned(),
        Value::Object(m) if m.is_empty() => String::new(),
        Value::Array(a) if a.is_empty() => String::new(),
        other => other.to_string(),
    }
}

/// A list (`resources`, `archives`, `records`, …: the first array of objects found in the
/// top-level object, or a top-level array) becomes rows; anything else a field/value list.
fn render_table(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    let rows = match value {
        Value::Array(a) => Some(a),
        Value::Object(m) => m
            .values()
            .find_map(|v| v.as_array().filter(|a| a.iter().all(Value::is_object))),
        _ => None,
    };
    match rows {
        Some(rows) if !rows.is_empty() => {
            let mut cols: Vec<String> = Vec::new();
            for r in rows {
                for (k, v) in r.as_object().into_iter().flatten() {
                    if !v.is_object() && !v.is_array() && !cols.contains(k) {
                        cols.push(k.clone());
                    }
                }
            }
            let grid: Vec<Vec<String>> = rows
                .iter()
                .map(|r| cols.iter().map(|c| cell(&r[c.as_str()])).collect())
                .collect();
            let widths: Vec<usize> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    grid.iter()
                        .map(|r| r[i].len())
                        .chain([c.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: &[String]| -> String {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            writeln!(
                out,
                "{}",
                line(&cols.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>())
            )?;
            for r in &grid {
                writeln!(out, "{}", line(r))?;
            }
            if let Value::Object(m) = value {
                for (k, v) in m {
                    if !v.is_array() && !v.is_object() {
                        writeln!(out, "{k}: {}", cell(v))?;
                    }
                }
            }
            Ok(())
        }
        Some(_) => writeln!(out, "(none)"),
        None => {
            let Value::Object(m) = value else {
                return writeln!(out, "{}", cell(value));
            };
            let w = m.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in m {
                match v {
                    Value::Object(inner) => {
                        for (ik, iv) in inner {
                            let key = format!("{k}.{ik}");
                            writeln!(out, "{key:<w$}  {}", cell(iv), w = w.max(key.len()))?;
                        }
                    }
                    _ => writeln!(out, "{k:<w$}  {}", cell(v))?,
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(v: &Value) -> String {
        let mut buf = Vec::new();
        render(&mut buf, Format::Table, v).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn list_renders_as_rows_with_header() {
        let v = json!({"skip":0,"limit":10,"total":2,"resources":[
            {"id":"a","scope":"system","isDefault":true},
            {"id":"bb","scope":"domain","isDefault":false}]});
        let t = table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ID  SCOPE   ISDEFAULT");
        assert_eq!(lines[1], "a   system  true");
        assert_eq!(lines[2], "bb  domain  false");
        assert!(t.contains("total: 2"));
    }

    #[test]
    fn object_renders_as_fields() {
        let t = table(&json!({"id":"x","source":{"bmcHost":"h"}}));
        assert!(
            t.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["id", "x"]),
            "{t}"
        );
        assert!(t.contains("source.bmcHost  h"));
    }

    #[test]
    fn json_is_pretty_and_parses_back() {
        let v = json!({"a":[1,2]});
        let mut buf = Vec::new();
        render(&mut buf, Format::Json, &v).unwrap();
        let back: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, v);
    }
}
