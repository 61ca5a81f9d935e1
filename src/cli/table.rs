//! `--output table`: results for people, within [`WIDTH`] columns.
//!
//! A list (the first array of objects in the result) becomes rows with short ids (the
//! first 8 hex digits, longer only where two rows would share them; `--id` accepts any
//! unambiguous prefix), human sizes, and times in the local zone with their age; hashes
//! and nested objects are left to `get`/`inspect`, and long text is cut with `…`. A single
//! record becomes `field  value` lines with everything in full, wrapped at the width.
//! A boolean `<field>Claimed` beside `<field>` is not shown on its own: when true, the
//! value of `<field>` reads `… (claimed)` (a key id only an unauthenticated slot names).
//! Every cell passes through [`crate::escape::for_terminal`] before it is measured, so no
//! control or bidi character reaches the terminal. The JSON output is not affected.
use std::io::{self, Write};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;
use unicode_width::UnicodeWidthStr;

/// Columns a table may use.
pub const WIDTH: usize = 100;
/// List columns dropped first when a row is too wide: `get`/`inspect` show them.
/// (`status` is not one: in a fleet's results it is what says ok or failed.)
const LOW_VALUE: &[&str] = &[
    "version",
    "account",
    "creatorAccount",
    "productVersion",
    "tiedToHSM",
    "isHSMBacked",
    "isEncrypted",
];
/// Two spaces between columns.
const GAP: usize = 2;
/// Text columns are cut to this before low-value columns are dropped.
const COMFORTABLE_TEXT: usize = 40;
/// Text columns are never shrunk below this (then columns are dropped instead).
const MIN_TEXT: usize = 12;

/// The clock and zone a table is rendered with (the local ones, or fixed in tests).
pub struct Style {
    pub now: Timestamp,
    pub tz: TimeZone,
}

impl Style {
    pub fn local() -> Style {
        Style {
            now: Timestamp::now(),
            tz: TimeZone::system(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Id,
    Hash,
    Size,
    Time,
    /// Free text that may be long: cut first when a row is too wide.
    Text,
    Plain,
}

fn class(key: &str) -> Class {
    let k = key.to_ascii_lowercase();
    if key == "id" || key == "keyid" || key.ends_with("Id") {
        Class::Id
    } else if [
        "checksum", "hash", "prevhash", "lasthash", "sha256", "digest",
    ]
    .contains(&k.as_str())
    {
        Class::Hash
    } else if key == "size" || key == "bytes" || key.ends_with("Size") || key.ends_with("Bytes") {
        Class::Size
    } else if key == "time" || key == "since" || key.ends_with("At") {
        Class::Time
    } else if [
        "description",
        "detail",
        "error",
        "file",
        "path",
        "bmc",
        "reason",
        "message",
        "warning",
        "bmchost",
        "note",
    ]
    .contains(&k.as_str())
    {
        Class::Text
    } else {
        Class::Plain
    }
}

/// The field a `<field>Claimed` flag qualifies (see the module doc).
fn claimed_base(key: &str) -> Option<&str> {
    key.strip_suffix("Claimed").filter(|b| !b.is_empty())
}

/// `cell` marked as claimed when `flag` is `true` (and the cell says something).
fn mark_claimed(cell: String, flag: Option<&Value>) -> String {
    if flag == Some(&Value::Bool(true)) && !cell.is_empty() {
        format!("{cell} (claimed)")
    } else {
        cell
    }
}

/// "backupKeyId" → "BACKUP KEY ID", "domainID" → "DOMAIN ID".
fn header(key: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        out.extend(c.to_uppercase());
    }
    out
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// "3 d ago", "in 5 min", "now".
pub fn age(t: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - t.as_second();
    let (future, s) = (secs < 0, secs.unsigned_abs());
    let text = match s {
        0..60 => return "now".into(),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        86_400..5_184_000 => format!("{} d", s / 86_400),
        5_184_000..63_072_000 => format!("{} mo", s / 2_592_000),
        _ => format!("{} y", s / 31_536_000),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

impl Style {
    fn time(&self, s: &str, full: bool) -> Option<String> {
        let t: Timestamp = s.parse().ok()?;
        let z = t.to_zoned(self.tz.clone());
        let local = if full {
            z.strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
        } else {
            z.strftime("%Y-%m-%d %H:%M").to_string()
        };
        Some(format!("{local} ({})", age(t, self.now)))
    }

    /// One value as a cell; `full` for the single-record view.
    fn cell(&self, key: &str, v: &Value, full: bool) -> String {
        let s = match (class(key), v) {
            (_, Value::Null) => String::new(),
            (Class::Size, Value::Number(n)) => match n.as_u64() {
                Some(b) if full && b >= 1024 => format!("{} ({b} bytes)", human_size(b)),
                Some(b) => human_size(b),
                None => n.to_string(),
            },
            (Class::Time, Value::String(s)) => self.time(s, full).unwrap_or_else(|| s.clone()),
            (Class::Hash, Value::String(s)) if !full && s.len() > 12 => {
                format!("{}…", s.chars().take(12).collect::<String>())
            }
            (_, Value::String(s)) => s.clone(),
            (_, Value::Array(a)) if !full && codes(a).is_some() => codes(a).unwrap_or_default(),
            (_, Value::Array(a)) if a.iter().all(|x| !x.is_object() && !x.is_array()) => a
                .iter()
                .map(|x| self.cell(key, x, full))
                .collect::<Vec<_>>()
                .join(", "),
            (_, other) => other.to_string(),
        };
        crate::escape::for_terminal(&s).into_owned()
    }
}

/// A list of findings (objects with a `code`) as its codes, e.g. "key-retired, truncated".
fn codes(a: &[Value]) -> Option<String> {
    let codes: Option<Vec<&str>> = a.iter().map(|x| x.get("code")?.as_str()).collect();
    codes.map(|c| c.join(", "))
}

fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` cut to `w` columns, with `…` when something was cut.
fn fit(s: &str, w: usize) -> String {
    if width(s) <= w {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let cw = UnicodeWidthStr::width(c.encode_utf8(&mut [0; 4]) as &str);
        if used + cw + 1 > w {
            break;
        }
        used += cw;
        out.push(c);
    }
    out.push('…');
    out
}

/// `s` cut to `w` columns from the left (`…` first): for paths, whose end says most.
fn fit_left(s: &str, w: usize) -> String {
    if width(s) <= w {
        return s.to_string();
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        let cw = width(c.encode_utf8(&mut [0; 4]));
        if used + cw + 1 > w {
            break;
        }
        used += cw;
        tail.push(c);
    }
    std::iter::once('…').chain(tail.into_iter().rev()).collect()
}

/// Shortest prefixes (at least 8 characters) that tell the ids of a column apart.
fn short_ids(ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            let mut n = 8.min(id.len());
            while n < id.len()
                && ids
                    .iter()
                    .any(|o| o != id && o.len() >= n && o.get(..n) == id.get(..n))
            {
                n += 1;
            }
            id.get(..n).unwrap_or(id).to_string()
        })
        .collect()
}

/// Writes `value` as a table.
pub fn render(out: &mut dyn Write, value: &Value, style: &Style) -> io::Result<()> {
    let rows = match value {
        Value::Array(a) => Some(a),
        // A list document: its first array of objects is the list. An empty array makes
        // the document a list only when it is `resources` (ksctl's list field); any other
        // empty array is a field of a record (`audit verify`'s `unfinished: []`).
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            v.as_array()
                .filter(|a| a.iter().all(Value::is_object) && (!a.is_empty() || k == "resources"))
        }),
        _ => None,
    };
    match rows {
        Some(rows) if rows.is_empty() => writeln!(out, "(none)"),
        Some(rows) => {
            list(out, rows, style)?;
            footer(out, value, rows.len())
        }
        None => record(out, value, style),
    }
}

fn list(out: &mut dyn Write, rows: &[Value], style: &Style) -> io::Result<()> {
    let mut cols: Vec<Column> = columns(rows)
        .into_iter()
        .map(|k| Column::of(k, rows, style))
        .collect();
    // Columns that are empty in every row say nothing.
    cols.retain(|c| c.cells.iter().any(|c| !c.is_empty()));
    let widths = fit_columns(&mut cols);
    write_rows(out, &cols, &widths, rows.len())
}

/// One column of a list: its field name and its rows' cells.
struct Column {
    key: String,
    cells: Vec<String>,
}

impl Column {
    fn of(key: String, rows: &[Value], style: &Style) -> Column {
        let cells: Vec<String> = rows
            .iter()
            .map(|r| style.cell(&key, r.get(&key).unwrap_or(&Value::Null), false))
            .collect();
        let uuids = cells
            .iter()
            .all(|c| c.is_empty() || uuid::Uuid::parse_str(c).is_ok());
        let cells = if class(&key) == Class::Id || uuids {
            short_ids(&cells)
        } else {
            cells
        };
        let flag = format!("{key}Claimed");
        let cells = cells
            .into_iter()
            .zip(rows)
            .map(|(c, r)| mark_claimed(c, r.get(&flag)))
            .collect();
        Column { key, cells }
    }

    /// The width the column would like: its widest cell or its header.
    fn natural(&self) -> usize {
        self.cells
            .iter()
            .map(|c| width(c))
            .chain([width(&header(&self.key))])
            .max()
            .unwrap_or(0)
    }

    /// Which columns go first when a row is too wide (highest first).
    fn rank(&self) -> u8 {
        let k = self.key.as_str();
        match class(k) {
            _ if LOW_VALUE.contains(&k) => 5,
            // What a sweep found is the point of its table.
            _ if matches!(k, "findings" | "status" | "result") => 0,
            Class::Plain => 4,
            Class::Text => 3,
            Class::Size => 2,
            Class::Time => 1,
            Class::Id | Class::Hash => 0,
        }
    }
}

/// Scalar columns in first-seen order, the id first (it is what `--id` takes); hashes
/// and nested values are for get/inspect.
fn columns(rows: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for r in rows {
        for (k, v) in r.as_object().into_iter().flatten() {
            let nested = v.is_object()
                || v.as_array()
                    .is_some_and(|a| a.iter().any(|x| x.is_object()) && codes(a).is_none());
            if !nested && class(k) != Class::Hash && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    if let Some(i) = keys.iter().position(|k| k == "id") {
        let id = keys.remove(i);
        keys.insert(0, id);
    }
    let all = keys.clone();
    keys.retain(|k| claimed_base(k).is_none_or(|b| !all.iter().any(|o| o == b)));
    keys
}

/// The widths that fit `cols` within [`WIDTH`], dropping columns that cannot fit. Text
/// keeps COMFORTABLE_TEXT columns while low-value columns can go instead; only then is it
/// cut down to MIN_TEXT, and then other columns go, least useful first.
fn fit_columns(cols: &mut Vec<Column>) -> Vec<usize> {
    let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
    let mut phases = [(COMFORTABLE_TEXT, 5), (MIN_TEXT, 1)].into_iter();
    let (mut min_text, mut min_rank) = phases.next().expect("two phases");
    loop {
        let mut widths: Vec<usize> = cols.iter().map(Column::natural).collect();
        while total(&widths) > WIDTH {
            let Some(i) = (0..cols.len())
                .filter(|&i| class(&cols[i].key) == Class::Text && widths[i] > min_text)
                .max_by_key(|&i| widths[i])
            else {
                break;
            };
            let excess = total(&widths) - WIDTH;
            widths[i] = widths[i].saturating_sub(excess).max(min_text);
        }
        if total(&widths) <= WIDTH || cols.len() <= 1 {
            return widths;
        }
        // Drop the rightmost column of the highest rank allowed in this phase (never the
        // first) and lay out again.
        match (1..cols.len())
            .filter(|&i| cols[i].rank() >= min_rank)
            .max_by_key(|&i| (cols[i].rank(), i))
        {
            Some(i) => {
                cols.remove(i);
            }
            None => match phases.next() {
                Some((t, r)) => (min_text, min_rank) = (t, r),
                None => return widths,
            },
        }
    }
}

/// The header line and `n` rows, each cell cut or padded to its width (paths cut from
/// the left: their end says most).
fn write_rows(out: &mut dyn Write, cols: &[Column], widths: &[usize], n: usize) -> io::Result<()> {
    let from_left: Vec<bool> = cols
        .iter()
        .map(|c| matches!(c.key.as_str(), "path" | "file"))
        .collect();
    let line = |cells: Vec<String>| -> String {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                l.push_str(&" ".repeat(GAP));
            }
            let c = if from_left[i] {
                fit_left(c, *w)
            } else {
                fit(c, *w)
            };
            let pad = w.saturating_sub(width(&c));
            l.push_str(&c);
            l.push_str(&" ".repeat(pad));
        }
        l.trim_end().to_string()
    };
    writeln!(
        out,
        "{}",
        line(cols.iter().map(|c| header(&c.key)).collect())
    )?;
    for r in 0..n {
        writeln!(
            out,
            "{}",
            line(cols.iter().map(|c| c.cells[r].clone()).collect())
        )?;
    }
    Ok(())
}

/// The scalars beside the list: `total` only when not every item is shown.
fn footer(out: &mut dyn Write, value: &Value, shown: usize) -> io::Result<()> {
    let Value::Object(m) = value else {
        return Ok(());
    };
    let total = m.get("total").and_then(Value::as_u64);
    let mut parts = Vec::new();
    if let Some(t) = total.filter(|&t| t != shown as u64) {
        parts.push(format!("{shown} of {t} shown"));
    }
    for (k, v) in m {
        if matches!(k.as_str(), "skip" | "limit" | "total") || v.is_array() || v.is_object() {
            continue;
        }
        parts.push(format!("{}: {}", header(k).to_lowercase(), style_scalar(v)));
    }
    if !parts.is_empty() {
        writeln!(out, "{}", fit(&parts.join("  "), WIDTH))?;
    }
    Ok(())
}

fn style_scalar(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    crate::escape::for_terminal(&s).into_owned()
}

/// Flattens nested objects and arrays of objects into dotted field names.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

fn record(out: &mut dyn Write, value: &Value, style: &Style) -> io::Result<()> {
    let mut fields = Vec::new();
    flatten("", value, &mut fields);
    if let [(k, v)] = fields.as_slice()
        && k.is_empty()
    {
        return writeln!(out, "{}", style.cell("", v, true));
    }
    let flags: Vec<(String, Value)> = fields
        .iter()
        .filter(|(k, _)| claimed_base(k).is_some_and(|b| fields.iter().any(|(o, _)| o == b)))
        .cloned()
        .collect();
    let fields: Vec<(String, String)> = fields
        .into_iter()
        .filter(|(k, _)| !flags.iter().any(|(f, _)| f == k))
        .filter(|(_, v)| {
            !v.is_null()
                && v.as_str() != Some("")
                && v.as_object().is_none_or(|m| !m.is_empty())
                && v.as_array().is_none_or(|a| !a.is_empty())
        })
        .map(|(k, v)| {
            let last = k.rsplit(['.', ']']).next().unwrap_or(&k).to_string();
            let flag = format!("{k}Claimed");
            let flag = flags.iter().find(|(f, _)| *f == flag).map(|(_, v)| v);
            let cell = mark_claimed(style.cell(&last, &v, true), flag);
            (crate::escape::for_terminal(&k).into_owned(), cell)
        })
        .collect();
    let kw = fields
        .iter()
        .map(|(k, _)| width(k))
        .max()
        .unwrap_or(0)
        .min(32);
    let vw = WIDTH - kw - GAP;
    for (k, v) in fields {
        let mut chunks = wrap(&v, vw).into_iter();
        let first = chunks.next().unwrap_or_default();
        let k = fit(&k, kw);
        let pad = kw - width(&k);
        writeln!(out, "{k}{}{}{first}", " ".repeat(pad), " ".repeat(GAP))?;
        for c in chunks {
            writeln!(out, "{}{c}", " ".repeat(kw + GAP))?;
        }
    }
    Ok(())
}

/// `s` in pieces of at most `w` columns (at spaces where possible).
fn wrap(s: &str, w: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in s.split(' ') {
        let sep = usize::from(!cur.is_empty());
        if width(&cur) + sep + width(word) <= w {
            if sep == 1 {
                cur.push(' ');
            }
            cur.push_str(word);
            continue;
        }
        if !cur.is_empty() {
            lines.push(std::mem::take(&mut cur));
        }
        // A word longer than a line is split by columns.
        let mut rest = word.to_string();
        while width(&rest) > w {
            let mut head = String::new();
            for c in rest.chars() {
                if width(&head) + width(c.encode_utf8(&mut [0; 4])) > w {
                    break;
                }
                head.push(c);
            }
            rest = rest[head.len()..].to_string();
            lines.push(head);
        }
        cur = rest;
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn style() -> Style {
        Style {
            now: "2026-12-04T12:00:00Z".parse().unwrap(),
            tz: TimeZone::get("Europe/Paris").unwrap_or(TimeZone::UTC),
        }
    }

    fn table(v: &Value) -> String {
        let mut buf = Vec::new();
        render(&mut buf, v, &style()).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn archive(i: u32, desc: &str) -> Value {
        json!({
            "id": format!("{i:08x}-1111-4222-8333-444455556666"),
            "scope": "system",
            "domainID": "",
            "backupKeyId": "5dac1d33-aaaa-4bbb-8ccc-ddddeeeeffff",
            "createdAt": "2026-12-01T11:00:00.123456789Z",
            "creatorAccount": "root",
            "description": desc,
            "checksum": "ab".repeat(32),
            "size": 3 * 1024 * 1024 + i as u64,
            "source": {"bmcHost": "ilo-rack1-u01.example.net:443"},
            "version": 2,
        })
    }

    #[test]
    fn backup_list_fits_100_columns_with_short_ids_sizes_and_ages() {
        let long = "backup of BMC ilo-rack1-u01.example.net:443 before the firmware update to 3.10 on all racks";
        let v = json!({"skip": 0, "limit": 3, "total": 3,
            "resources": [archive(1, long), archive(2, "short"), archive(3, long)]});
        let t = table(&v);
        for l in t.lines() {
            assert!(width(l) <= WIDTH, "{} columns: {l}", width(l));
        }
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID        SCOPE"), "{t}");
        assert!(lines[1].starts_with("00000001  system"), "{t}");
        assert!(t.contains("5dac1d33 "), "{t}");
        // 12:00 UTC is 12:00+01:00 in Paris in December: 11:00Z shows as 12:00 local.
        assert!(t.contains("2026-12-01 12:00 (3 d ago)"), "{t}");
        assert!(t.contains("3.0 MiB"), "{t}");
        assert!(t.contains('…'), "the long description is cut: {t}");
        assert!(!t.contains("abab"), "hashes are left to get: {t}");
        assert!(!t.contains("skip") && !t.contains("total"), "{t}");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn a_claimed_key_id_is_marked_where_it_is_shown() {
        let key = "5dac1d33-aaaa-4bbb-8ccc-ddddeeeeffff";
        let row = |i: u32, claimed: Option<bool>| {
            let mut a = json!({
                "id": format!("{i:08x}-1111-4222-8333-444455556666"),
                "status": "Completed",
                "backupKey": key,
            });
            if let Some(c) = claimed {
                a["backupKeyClaimed"] = json!(c);
            }
            a
        };
        let v = json!({"resources": [row(1, Some(true)), row(2, None)]});
        let t = table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(!lines[0].contains("CLAIMED"), "no column of its own: {t}");
        assert!(lines[1].contains("5dac1d33 (claimed)"), "{t}");
        assert!(
            lines[2].contains("5dac1d33") && !lines[2].contains("claimed"),
            "{t}"
        );
        let one = table(&row(1, Some(true)));
        assert!(one.contains(&format!("{key} (claimed)")), "{one}");
        assert!(!one.contains("backupKeyClaimed"), "{one}");
        let confirmed = table(&row(1, Some(false)));
        assert!(!confirmed.contains("claimed"), "{confirmed}");
        // A flag without its field stays an ordinary field.
        let lone = table(&json!({"claimed": true, "otherClaimed": true}));
        assert!(lone.contains("otherClaimed"), "{lone}");
    }

    #[test]
    fn ids_sharing_8_digits_get_longer_prefixes() {
        let ids = vec![
            "5dac1d33-aaaa".to_string(),
            "5dac1d33-aabb".to_string(),
            "77777777-0000".to_string(),
        ];
        assert_eq!(
            short_ids(&ids),
            ["5dac1d33-aaa", "5dac1d33-aab", "77777777"]
        );
    }

    #[test]
    fn too_many_columns_drop_the_least_useful_ones() {
        let row = json!({"id": "0123456789abcdef", "a1": "x".repeat(30), "a2": "y".repeat(30),
            "a3": "z".repeat(30), "a4": "w".repeat(30), "createdAt": "2026-12-04T11:00:00Z"});
        let t = table(&json!([row]));
        assert!(t.lines().all(|l| width(l) <= WIDTH), "{t}");
        assert!(t.contains("01234567") && t.contains("(1 h ago)"), "{t}");
    }

    #[test]
    fn a_record_shows_everything_in_full_and_wraps() {
        let long = "word ".repeat(40);
        let t = table(&archive(1, &long));
        for l in t.lines() {
            assert!(width(l) <= WIDTH, "{l}");
        }
        assert!(t.contains(&"ab".repeat(32)), "{t}");
        assert!(t.contains("00000001-1111-4222-8333-444455556666"), "{t}");
        assert!(t.contains("3.0 MiB (3145729 bytes)"), "{t}");
        assert!(t.contains("2026-12-01 12:00:00 CET (3 d ago)"), "{t}");
        assert!(t.contains("source.bmcHost"), "{t}");
        let desc_lines = t.lines().filter(|l| l.contains("word")).count();
        assert!(desc_lines >= 3, "{t}");
    }

    #[test]
    fn control_characters_in_cells_are_escaped_before_measuring() {
        let t = table(&json!([{"id": "a", "description": "x\u{1b}]0;t\u{7}\u{202e}y"}]));
        assert!(t.contains("x\\u{1b}]0;t\\u{7}\\u{202e}y"), "{t}");
        assert!(
            !t.chars()
                .any(|c| crate::escape::is_dangerous(c) && c != '\n')
        );
    }

    #[test]
    fn ages_and_sizes() {
        let now: Timestamp = "2026-12-04T12:00:00Z".parse().unwrap();
        let at = |s: &str| age(s.parse().unwrap(), now);
        assert_eq!(at("2026-12-04T11:59:30Z"), "now");
        assert_eq!(at("2026-12-04T11:55:00Z"), "5 min ago");
        assert_eq!(at("2026-12-04T09:00:00Z"), "3 h ago");
        assert_eq!(at("2026-11-01T12:00:00Z"), "33 d ago");
        assert_eq!(at("2026-06-01T12:00:00Z"), "6 mo ago");
        assert_eq!(at("2023-12-04T12:00:00Z"), "3 y ago");
        assert_eq!(at("2026-12-05T12:00:00Z"), "in 1 d");
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }

    #[test]
    fn empty_lists_and_headers() {
        assert_eq!(table(&json!({"resources": []})), "(none)\n");
        // Any other empty array is a field of a record, not an empty list.
        let t = table(&json!({"intact": true, "records": 8, "unfinished": []}));
        assert!(t.contains("intact") && t.contains("records"), "{t}");
        assert!(!t.contains("(none)") && !t.contains("unfinished"), "{t}");
        assert_eq!(header("backupKeyId"), "BACKUP KEY ID");
        assert_eq!(header("domainID"), "DOMAIN ID");
        assert_eq!(header("isDefault"), "IS DEFAULT");
    }
}
