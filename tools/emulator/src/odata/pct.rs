//! Percent-decoding as the Dataverse front end does it.

/// Decodes `%XX` escapes; with `plus_is_space` a raw `+` becomes a space (query strings and
/// form bodies, as on the real server). Malformed escapes are kept literally.
pub fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes everything outside the RFC 3986 unreserved set.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Splits `a=1&b=2` into decoded `(key, value)` pairs plus each raw pair.
pub fn query_pairs(raw: &str) -> Vec<(String, String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k, true), decode(v, true), pair.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_space_but_escaped_plus_is_plus() {
        assert_eq!(decode("a+b%40x.com", true), "a b@x.com");
        assert_eq!(decode("a%2Bb%40x.com", true), "a+b@x.com");
        assert_eq!(decode("a+b", false), "a+b");
    }

    #[test]
    fn malformed_escapes_survive() {
        assert_eq!(decode("100%", true), "100%");
        assert_eq!(decode("%zz%4", true), "%zz%4");
        assert_eq!(decode("%24filter", true), "$filter");
    }
}
