//! The request path as each framework's router sees it: the raw path from the request line is
//! percent-encoded; WSGI servers (PATH_INFO) and ASGI servers (`scope["path"]`) hand the
//! framework the percent-decoded text.
use std::borrow::Cow;
use std::fmt::Write as _;

/// What the framework does with decoded bytes that are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// U+FFFD for each bad sequence: Werkzeug's `_wsgi_decoding_dance` (`errors="replace"`) and
    /// uvicorn's `urllib.parse.unquote` (same default).
    Replace,
    /// The bad bytes percent-encoded again (upper-case hex): Django's WSGI `get_path_info`
    /// through `repercent_broken_unicode`.
    Repercent,
}

/// Decodes each `%XX` (two hex digits) to its byte; a `%` not followed by two hex digits stays as
/// it is, as `urllib.parse.unquote` leaves it. The bytes are then read as UTF-8. A path without
/// `%` (nearly every one) is given back as it is, without a copy.
pub fn percent_decode(raw: &str, invalid: Invalid) -> Cow<'_, str> {
    let bytes = raw.as_bytes();
    if !bytes.contains(&b'%') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            out.push(hex(bytes[i + 1]) << 4 | hex(bytes[i + 2]));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Cow::Owned(match invalid {
        Invalid::Replace => String::from_utf8_lossy(&out).into_owned(),
        Invalid::Repercent => repercent(&out),
    })
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Django's `repercent_broken_unicode`: each maximal invalid sequence (what Python's decoder
/// reports as `e.start:e.end`, and `Utf8Error` as `error_len`) becomes `%XX` per byte.
fn repercent(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len());
                for b in &rest[..bad] {
                    let _ = write!(out, "%{b:02X}");
                }
                bytes = &rest[bad..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_utf8_and_leaves_malformed_escapes() {
        assert_eq!(percent_decode("/a%20b/%C3%A9", Invalid::Replace), "/a b/é");
        assert_eq!(percent_decode("/a%2Fb", Invalid::Replace), "/a/b");
        assert_eq!(percent_decode("/100%/%zz/%4", Invalid::Replace), "/100%/%zz/%4");
        assert_eq!(percent_decode("/%e2%82%ac", Invalid::Replace), "/€");
        assert_eq!(percent_decode("/plain", Invalid::Replace), "/plain");
    }

    #[test]
    fn invalid_utf8_as_each_framework_does() {
        // Python: unquote('/%FFa%C3') == '/\ufffda\ufffd'; Django 4.2's
        // repercent_broken_unicode(b'/\xffa\xc3').decode() == '/%FFa%C3'.
        assert_eq!(percent_decode("/%FFa%C3", Invalid::Replace), "/\u{fffd}a\u{fffd}");
        assert_eq!(percent_decode("/%ffa%c3", Invalid::Repercent), "/%FFa%C3");
        assert_eq!(percent_decode("/%C3%A9%E2%82", Invalid::Repercent), "/é%E2%82");
    }
}
