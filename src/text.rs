//! Quoting for log lines and messages without `{:?}`: str's `Debug` pulls core's Unicode
//! tables (printable, grapheme-extend) and escaping machinery into PID 1, about 3 KB of a
//! binary that must stay small (docs/SIZE.md, "PID 1").

use core::fmt::{self, Write};

/// `"text"` with the escapes `{:?}` gives a `str`: `\"`, `\\`, `\t`, `\r`, `\n`, `\0`, and
/// `\u{..}` for the other control characters (C0, DEL and C1), U+00A0 and U+00AD: the same text
/// for all of ASCII and Latin-1. Unlike `{:?}`, other non-printable Unicode characters (format
/// characters beyond Latin-1, a leading combining mark) are written as they are; nothing that
/// ends a log line or hides a quote is.
pub struct Quoted<'a>(pub &'a str);

/// `'c'` as `{:?}` gives a `char` (the same escapes, `\'` instead of `\"`).
pub struct QuotedChar(pub char);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        quote(f, self.0, '"')
    }
}

impl fmt::Display for QuotedChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        quote(f, self.0.encode_utf8(&mut [0; 4]), '\'')
    }
}

fn quote(f: &mut fmt::Formatter<'_>, s: &str, q: char) -> fmt::Result {
    f.write_char(q)?;
    let b = s.as_bytes();
    // Bytes, not chars: every escaped character is ASCII, or a C1 control, no-break space or
    // soft hyphen (C2 80..C2 A0, C2 AD).
    let mut plain = 0;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let (esc, code, len) = match c {
            b'\t' => ("\\t", 0, 1),
            b'\r' => ("\\r", 0, 1),
            b'\n' => ("\\n", 0, 1),
            b'\0' => ("\\0", 0, 1),
            b'\\' => ("\\\\", 0, 1),
            b'"' if q == '"' => ("\\\"", 0, 1),
            b'\'' if q == '\'' => ("\\'", 0, 1),
            0..=0x1f | 0x7f => ("", c, 1),
            0xc2 => match b.get(i + 1) {
                Some(&n @ (0x80..=0xa0 | 0xad)) => ("", n, 2),
                _ => {
                    i += 1;
                    continue;
                }
            },
            _ => {
                i += 1;
                continue;
            }
        };
        f.write_str(s.get(plain..i).unwrap_or(""))?;
        if esc.is_empty() {
            f.write_str("\\u{")?;
            hex(f, code)?;
            f.write_char('}')?;
        } else {
            f.write_str(esc)?;
        }
        i += len;
        plain = i;
    }
    f.write_str(s.get(plain..).unwrap_or(""))?;
    f.write_char(q)
}

/// `{:x}` of a byte: one or two lower-case hex digits.
fn hex(f: &mut fmt::Formatter<'_>, n: u8) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    if n > 15 {
        f.write_char(char::from(DIGITS[usize::from(n >> 4)]))?;
    }
    f.write_char(char::from(DIGITS[usize::from(n & 15)]))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn quotes_as_debug_does() {
        for s in [
            "",
            "plain/path",
            "a\"b\\c",
            "tab\tcr\rnl\nnul\0",
            "\u{1}\u{1b}[31m\u{7f}\u{80}\u{9f}",
            "it's",
            "é ü 日本",
            "nbsp\u{a0}shy\u{ad}c2\u{a1}\u{bf}",
        ] {
            assert_eq!(format!("{}", Quoted(s)), format!("{s:?}"), "{s:?}");
        }
        // All of Latin-1, in a str and as a char (the tar type byte is quoted as one).
        for c in (0..=255u8).map(char::from) {
            let s = std::format!("x{c}y");
            assert_eq!(format!("{}", Quoted(&s)), format!("{s:?}"), "{s:?}");
            assert_eq!(format!("{}", QuotedChar(c)), format!("{c:?}"), "{c:?}");
        }
        for c in [
            'a', '\'', '"', '\n', '\u{1}', '\u{85}', '\u{a0}', 'é', 'ÿ', '\\',
        ] {
            assert_eq!(format!("{}", QuotedChar(c)), format!("{c:?}"), "{c:?}");
        }
    }
}
