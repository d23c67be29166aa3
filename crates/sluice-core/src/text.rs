//! What free text Sluice accepts, and how text is written into spreadsheets safely.
//!
//! Free text (titles, justifications, names, package fields) ends up in audit events, tickets,
//! terminals and CSV files read by people. Control characters can hide or reorder what a reviewer
//! sees (NUL truncates in C tools, bidirectional overrides make `evil` read as `live`, the
//! "Trojan Source" trick), and a CSV cell that starts with `=` is run as a formula by spreadsheet
//! programs. This module only judges and rewrites strings; it does no I/O.

use std::borrow::Cow;

/// Why a character is refused in free text, or `None` when it is accepted.
///
/// Accepted: every printable character, plus tab, line feed and carriage return (plans and
/// justifications span lines). Refused: the other C0 controls (NUL included), DEL, the C1
/// controls, and the Unicode bidirectional embedding, override and isolate controls.
pub fn refused_char(c: char) -> Option<&'static str> {
    match c {
        '\t' | '\n' | '\r' => None,
        '\0' => Some("a NUL character"),
        '\u{1}'..='\u{1f}' | '\u{7f}' | '\u{80}'..='\u{9f}' => Some("a control character"),
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            Some("a bidirectional control character")
        }
        _ => None,
    }
}

/// The first refused character in `text`: its character index and why, so an error can say
/// where it is without echoing the text.
pub fn first_refused(text: &str) -> Option<(usize, &'static str)> {
    text.chars()
        .enumerate()
        .find_map(|(index, c)| refused_char(c).map(|why| (index, why)))
}

/// A cell value that a spreadsheet program will show as text rather than evaluate.
///
/// Cells starting with `=`, `+`, `-`, `@`, tab or carriage return are formulas to Excel,
/// LibreOffice and Google Sheets (OWASP's "CSV injection"); they get a leading `'`, which those
/// programs hide. A cell that already starts with `'` gets one more, so [`from_spreadsheet_cell`]
/// can undo exactly what this did. A lone `-` (an empty value in listings) and plain numbers such
/// as `-1.5` are not formulas and stay as they are.
pub fn spreadsheet_cell(cell: &str) -> Cow<'_, str> {
    let harmless = cell == "-" || cell == "+" || cell.parse::<f64>().is_ok_and(f64::is_finite);
    if !harmless && cell.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Undoes [`spreadsheet_cell`]: a leading `'` before a character that would have needed it is
/// dropped; anything else is kept as written.
pub fn from_spreadsheet_cell(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if spreadsheet_cell(rest).len() > rest.len() => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_refused_and_layout_is_kept() {
        assert_eq!(first_refused("two\nlines\tand\r\n"), None);
        assert_eq!(first_refused("café ☕ 東京"), None);
        assert_eq!(first_refused("ab\0c"), Some((2, "a NUL character")));
        assert_eq!(
            first_refused("\u{1b}[31m"),
            Some((0, "a control character"))
        );
        assert_eq!(first_refused("x\u{7f}"), Some((1, "a control character")));
        assert_eq!(first_refused("x\u{85}"), Some((1, "a control character")));
        assert_eq!(
            first_refused("access\u{202e}txt.exe"),
            Some((6, "a bidirectional control character"))
        );
        assert_eq!(
            first_refused("\u{2066}x"),
            Some((0, "a bidirectional control character"))
        );
    }

    #[test]
    fn formulas_are_neutralised_and_round_trip() {
        for cell in [
            "=HYPERLINK(\"http://x\")",
            "+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "'quoted",
            "''",
            "'-1",
        ] {
            let safe = spreadsheet_cell(cell);
            assert!(safe.starts_with('\''), "{cell:?} became {safe:?}");
            assert_eq!(from_spreadsheet_cell(&safe), cell);
        }
        for cell in ["web1", "", "1-2", "a=b", "it's", "-", "-1.5", "+3"] {
            assert_eq!(spreadsheet_cell(cell), cell);
            assert_eq!(from_spreadsheet_cell(cell), cell);
        }
    }
}
