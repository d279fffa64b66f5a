//! Keeping secrets and personal data out of logs and `Debug` output.
//!
//! Consent records are personal data and the Entra client secret opens the whole
//! Dataverse environment, so anything that may end up in a log line goes through
//! these helpers: secrets print as `***`, email addresses as a short keyed hash.

use std::fmt;

/// A string that must never be printed: client secrets, bearer tokens.
///
/// `Debug` and `Display` print `***`; the value is reachable only through
/// [`SecretString::expose`], which makes every use site greppable.
#[derive(Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was given (an empty string counts as none).
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A stable, non-reversible label for a personal identifier (email address,
/// `organization_user_id`) that lets an operator correlate log lines without
/// the log holding the address itself.
///
/// The label is `u:` followed by 12 hex digits of a 64-bit FNV-1a hash of the
/// lower-cased value, and for email addresses the domain is kept
/// (`u:1a2b3c4d5e6f@example.com`) because it helps triage and is not personal
/// on its own. The same address always gives the same label, whatever its case.
pub fn mask_identifier(value: &str) -> String {
    let lowered = value.trim().to_lowercase();
    let hash = fnv1a64(lowered.as_bytes());
    let short = format!("{:012x}", hash & 0xffff_ffff_ffff);
    match lowered.rsplit_once('@') {
        Some((_, domain)) if !domain.is_empty() && !domain.contains(char::is_whitespace) => {
            format!("u:{short}@{domain}")
        }
        _ => format!("u:{short}"),
    }
}

/// Replaces every email-looking word in free text (error messages that may
/// quote a payload value) with its [`mask_identifier`] label.
pub fn mask_emails_in(text: &str) -> String {
    let is_word = |c: char| {
        !c.is_whitespace()
            && !matches!(
                c,
                '"' | '`' | '(' | ')' | '<' | '>' | ',' | ';' | '[' | ']' | '{' | '}'
            )
    };
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let looks_like_email = word
            .find('@')
            .is_some_and(|at| at > 0 && word[at + 1..].contains('.'));
        out.push_str(&if looks_like_email {
            mask_identifier(word)
        } else {
            word.clone()
        });
        word.clear();
    };
    for c in text.chars() {
        if is_word(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_and_display_never_show_the_value() {
        let secret = SecretString::new("s3cr3t-value");
        assert_eq!(format!("{secret:?}"), "SecretString(***)");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(secret.expose(), "s3cr3t-value");
    }

    #[test]
    fn masked_email_keeps_domain_but_not_local_part() {
        let masked = mask_identifier("Jane.Doe@Example.com");
        assert!(masked.starts_with("u:"), "{masked}");
        assert!(masked.ends_with("@example.com"), "{masked}");
        assert!(!masked.to_lowercase().contains("jane"), "{masked}");
    }

    #[test]
    fn masking_is_stable_and_case_insensitive() {
        assert_eq!(
            mask_identifier("jane.doe@example.com"),
            mask_identifier(" JANE.DOE@example.COM ")
        );
        assert_ne!(
            mask_identifier("jane.doe@example.com"),
            mask_identifier("john.doe@example.com")
        );
    }

    #[test]
    fn emails_inside_free_text_are_masked() {
        let text = mask_emails_in(
            "invalid type: string \"jane.o'brien+x@example.com\", expected a boolean at line 1",
        );
        assert!(!text.contains("jane"), "{text}");
        assert!(
            text.contains("@example.com\", expected a boolean at line 1"),
            "{text}"
        );
    }

    #[test]
    fn text_without_emails_is_unchanged() {
        let text =
            "HTTP 429 0x80072322: Number of requests exceeded the limit (user@ not an address)";
        assert_eq!(mask_emails_in(text), text);
    }

    #[test]
    fn non_email_identifiers_are_hashed_whole() {
        let masked = mask_identifier("crm-123456");
        assert!(
            masked.starts_with("u:") && !masked.contains("crm"),
            "{masked}"
        );
    }
}
