//! Text that reaches a terminal: control and bidi characters are shown, never obeyed.
//!
//! Invariant: every string printed for people (error messages, notices, table cells) goes
//! through [`for_terminal`], and JSON on stdout through [`JsonFormatter`]. Archive headers,
//! key files, audit records and BMC responses are attacker-controlled and read without any
//! key; printed raw, an ESC or OSC sequence in them clears the screen, rewrites earlier
//! lines or sets the window title, and a bidi override (U+202E) makes `lmth.exe` read as
//! `exe.html`. The escaped form is visible and reversible by eye: `\n`, `\r`, `\t`, and
//! `\u{XXXX}` for everything else. Backslashes are left as they are, so a name that
//! literally contains `\u{1b}` reads the same as an escaped ESC: what matters is that no
//! sequence is ever executed.
use std::borrow::Cow;
use std::io::{self, Write};

/// Whether `c` must not reach a terminal raw: C0 and C1 controls, DEL, the Unicode bidi
/// embedding/override/isolate/mark characters, and the line and paragraph separators.
pub fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'                 // ARABIC LETTER MARK
            | '\u{200E}' | '\u{200F}'  // LRM, RLM
            | '\u{202A}'..='\u{202E}'  // LRE, RLE, PDF, LRO, RLO
            | '\u{2066}'..='\u{2069}'  // LRI, RLI, FSI, PDI
            | '\u{2028}' | '\u{2029}'  // LINE / PARAGRAPH SEPARATOR
        )
}

/// `s` with every [`is_dangerous`] character replaced by a visible escape. Borrows when
/// there is nothing to escape (the common case).
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_dangerous) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_dangerous(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A pretty JSON formatter that also writes DEL, C1 controls and bidi characters as
/// `\uXXXX` escapes. serde_json already escapes C0 controls; these others it writes raw.
/// The parsed value is unchanged, so scripts see exactly the same JSON document.
pub struct JsonFormatter<'a>(serde_json::ser::PrettyFormatter<'a>);

impl Default for JsonFormatter<'_> {
    fn default() -> Self {
        JsonFormatter(serde_json::ser::PrettyFormatter::new())
    }
}

/// Writes `value` as pretty JSON through [`JsonFormatter`].
pub fn write_json<W: Write, T: serde::Serialize + ?Sized>(out: W, value: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(out, JsonFormatter::default());
    value.serialize(&mut ser).map_err(io::Error::other)
}

/// Writes `value` as compact JSON in pure ASCII: every non-ASCII character becomes a
/// `\uXXXX` escape (a surrogate pair outside the BMP). For receivers that are not sure to
/// treat bytes as UTF-8 (syslog); the parsed value is the same.
pub fn to_ascii_json<T: serde::Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    value.serialize(&mut ser).map_err(io::Error::other)?;
    Ok(out)
}

struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() && !c.is_ascii_control() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{:04x}", u)?;
                }
            }
        }
        Ok(())
    }
}

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name<W: ?Sized + Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> io::Result<()> {
            self.0.$name(w $(, $arg)*)
        }
    )*};
}

impl serde_json::ser::Formatter for JsonFormatter<'_> {
    delegate! {
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object();
        end_object();
        begin_object_key(first: bool);
        begin_object_value();
        end_object_value();
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_dangerous(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                // Every dangerous character is in the Basic Multilingual Plane.
                write!(w, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// What a hostile header or BMC field can carry (issue 13, item 3).
    const HOSTILE: &str =
        "ok\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m\u{202e}lmth.exe\u{2066}\u{7f}\r\n";

    #[test]
    fn escapes_esc_osc_c1_bidi_and_newlines() {
        let e = for_terminal(HOSTILE);
        assert_eq!(
            e,
            "ok\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\u{9b}31m\\u{202e}lmth.exe\\u{2066}\\u{7f}\\r\\n"
        );
        assert!(!e.chars().any(is_dangerous));
    }

    #[test]
    fn plain_text_and_non_latin_scripts_are_borrowed_untouched() {
        for s in [
            "ilo-rack1.example:443",
            "Größe 3 KiB",
            "日本語 עברית العربية",
            "",
        ] {
            assert!(matches!(for_terminal(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn every_bidi_control_is_caught() {
        for c in ['\u{061c}', '\u{200e}', '\u{200f}', '\u{2028}', '\u{2029}']
            .into_iter()
            .chain('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}')
        {
            assert!(is_dangerous(c), "U+{:04X}", c as u32);
        }
        assert!(
            !is_dangerous('\u{200d}'),
            "ZWJ joins emoji; it moves no text"
        );
    }

    #[test]
    fn ascii_json_is_ascii_and_parses_back() {
        let v = json!({"d": format!("{HOSTILE} Größe 日本 \u{1F512}"), "n": 1});
        let bytes = to_ascii_json(&v).unwrap();
        assert!(bytes.iter().all(|b| b.is_ascii() && !b.is_ascii_control()));
        assert!(String::from_utf8_lossy(&bytes).contains("\\ud83d\\udd12"));
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn json_has_no_raw_control_but_parses_back_to_the_same_value() {
        let v = json!({"description": HOSTILE, "list": [HOSTILE], HOSTILE: 1});
        let mut buf = Vec::new();
        write_json(&mut buf, &v).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            !text.chars().any(|c| is_dangerous(c) && c != '\n'),
            "raw control in {text:?}"
        );
        assert!(text.contains("\\u009b") && text.contains("\\u202e") && text.contains("\\u007f"));
        let back: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, v);
        // Same layout as serde_json's own pretty printer when nothing needs escaping.
        let plain = json!({"a": [1, "b"], "c": {"d": null}});
        let mut ours = Vec::new();
        write_json(&mut ours, &plain).unwrap();
        assert_eq!(ours, serde_json::to_vec_pretty(&plain).unwrap());
    }
}
