//! Quoting for log lines and messages without `{:?}`: str's `Debug` pulls core's Unicode
//! tables (printable, grapheme-extend) and escaping machinery into PID 1, about 3 KB of a
//! binary that must stay small (docs/SIZE.md, "PID 1").

use core::fmt::{self, Write};

/// `"text"` with the escapes `{:?}` gives a `str`: `\"`, `\\`, `\t`, `\r`, `\n`, `\0`, and
/// `\u{..}` for the other control characters (C0, DEL and C1). Unlike `{:?}`, other
/// non-printable Unicode characters (format characters, a leading combining mark) are written
/// as they are; nothing that ends a log line or hides a quote is.
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
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '\t' => "\\t",
            '\r' => "\\r",
            '\n' => "\\n",
            '\0' => "\\0",
            '\\' => "\\\\",
            c if c == q => {
                if q == '"' {
                    "\\\""
                } else {
                    "\\'"
                }
            }
            c if (c as u32) < 0x20 || ('\u{7f}'..='\u{9f}').contains(&c) => "",
            _ => continue,
        };
        f.write_str(s.get(plain..i).unwrap_or(""))?;
        plain = i + c.len_utf8();
        if esc.is_empty() {
            f.write_str("\\u{")?;
            hex(f, c as u32)?;
            f.write_char('}')?;
        } else {
            f.write_str(esc)?;
        }
    }
    f.write_str(s.get(plain..).unwrap_or(""))?;
    f.write_char(q)
}

/// Lower-case hex digits without leading zeros (`{:x}`).
fn hex(f: &mut fmt::Formatter<'_>, n: u32) -> fmt::Result {
    let mut shift = 28;
    while shift > 0 && n >> shift == 0 {
        shift -= 4;
    }
    loop {
        f.write_char(char::from(b"0123456789abcdef"[(n >> shift) as usize & 15]))?;
        if shift == 0 {
            return Ok(());
        }
        shift -= 4;
    }
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
        ] {
            assert_eq!(format!("{}", Quoted(s)), format!("{s:?}"), "{s:?}");
        }
        for c in ['a', '\'', '"', '\n', '\u{1}', '\u{85}', 'é', '\\'] {
            assert_eq!(format!("{}", QuotedChar(c)), format!("{c:?}"), "{c:?}");
        }
    }
}
