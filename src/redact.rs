//! Keeping secrets and personal data out of logs, error answers and `Debug`
//! output.
//!
//! Consent records are personal data and the Entra client secret opens the whole
//! Dataverse environment, so anything that may end up in a log line goes through
//! these helpers: secrets print as `***`; email addresses, phone numbers and
//! other user identifiers as a keyed hash label.
//!
//! # The labels
//!
//! A label is `u:` and 12 hex digits (48 bits) of HMAC-SHA256 over the
//! trimmed, lower-cased value, keeping the domain of an email address
//! (`u:1a2b3c4d5e6f@example.com`: it helps triage and is not personal on its
//! own). The HMAC key is per deployment and never logged: the secret
//! document's `log_hash_key` when it has one, else a key derived from the
//! Entra client secret (HMAC-SHA256 of a fixed label keyed by the secret), set
//! once at start ([`set_log_hash_key`]). So the same address gives the same
//! label across invocations and execution environments of one deployment, an
//! operator can correlate lines, and someone holding only the logs cannot
//! confirm a guessed address by hashing it. Until a key is set (before the
//! secret is read, in the CLI) a random per-process key is used. Rotating the
//! client secret without a `log_hash_key` changes the labels.

use std::fmt;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The label HMAC'd with the client secret when the secret document has no
/// `log_hash_key`.
const DERIVED_KEY_LABEL: &[u8] = b"didomi-cpc-sync/log-hash-key/v1";

static LOG_HASH_KEY: RwLock<Option<Arc<[u8]>>> = RwLock::new(None);
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

/// Sets the key every label is made with, for the rest of the process.
pub fn set_log_hash_key(key: &SecretString) {
    let key: Arc<[u8]> = Arc::from(key.expose().as_bytes());
    *LOG_HASH_KEY
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(key);
}

/// The per-deployment key derived from the Entra client secret, for when the
/// secret document has no `log_hash_key`: HMAC-SHA256 of a fixed label keyed
/// by the client secret, hex. Not reversible to the client secret.
pub fn derive_log_hash_key(client_secret: &SecretString) -> SecretString {
    let mut mac = HmacSha256::new_from_slice(client_secret.expose().as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(DERIVED_KEY_LABEL);
    SecretString::new(hex(&mac.finalize().into_bytes()))
}

fn current_key() -> Arc<[u8]> {
    if let Some(key) = LOG_HASH_KEY
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .as_ref()
    {
        return key.clone();
    }
    let mut slot = LOG_HASH_KEY
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.get_or_insert_with(|| {
        // Two v4 UUIDs: 244 bits from the operating system's secure RNG.
        let random = [
            uuid::Uuid::new_v4().into_bytes(),
            uuid::Uuid::new_v4().into_bytes(),
        ]
        .concat();
        Arc::from(random)
    })
    .clone()
}

/// A stable label for a personal identifier (email address, phone number,
/// `organization_user_id`) that lets an operator correlate log lines without
/// the log holding the identifier: see the module documentation.
pub fn mask_identifier(value: &str) -> String {
    mask_identifier_with(&current_key(), value)
}

/// [`mask_identifier`] with an explicit key.
pub fn mask_identifier_with(key: &[u8], value: &str) -> String {
    let lowered = value.trim().to_lowercase();
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(lowered.as_bytes());
    let short = hex(&mac.finalize().into_bytes()[..6]);
    match lowered.rsplit_once('@') {
        Some((_, domain)) if !domain.is_empty() && !domain.contains(char::is_whitespace) => {
            format!("u:{short}@{domain}")
        }
        _ => format!("u:{short}"),
    }
}

/// Replaces every email-looking word (also URL-encoded, `jane%40example.com`)
/// and every phone-looking number in free text (error messages that may
/// quote a payload value) with its [`mask_identifier`] label.
pub fn mask_personal_in(text: &str) -> String {
    mask_phone_numbers(&mask_email_words(text))
}

/// The same as [`mask_personal_in`], under the name existing callers use.
pub fn mask_emails_in(text: &str) -> String {
    mask_personal_in(text)
}

fn mask_email_words(text: &str) -> String {
    let is_word = |c: char| {
        !c.is_whitespace()
            && !matches!(
                c,
                '"' | '`'
                    | '('
                    | ')'
                    | '<'
                    | '>'
                    | ','
                    | ';'
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '&'
                    | '?'
                    | '='
            )
    };
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(&mask_if_address(word));
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

/// True for a label this module made (`u:` and 12 hex digits), which must
/// not be masked again: the second label would not match the first.
fn is_label(word: &str) -> bool {
    word.strip_prefix("u:").is_some_and(|rest| {
        let hash = rest.split('@').next().unwrap_or_default();
        hash.len() == 12 && hash.bytes().all(|byte| byte.is_ascii_hexdigit())
    })
}

/// The word's label when it is an address, plain or URL-encoded.
fn mask_if_address(word: &str) -> String {
    if is_label(word) {
        return word.to_string();
    }
    let decoded;
    let candidate = if word.to_ascii_lowercase().contains("%40") {
        decoded = percent_encoding::percent_decode_str(word)
            .decode_utf8_lossy()
            .into_owned();
        decoded.as_str()
    } else {
        word
    };
    let looks_like_email = candidate
        .find('@')
        .is_some_and(|at| at > 0 && candidate[at + 1..].contains('.'));
    if looks_like_email {
        mask_identifier(candidate)
    } else {
        word.to_string()
    }
}

/// Masks runs of digits that look like phone numbers: a `+` followed by 7 to
/// 15 digits, or 9 to 15 digits without one, with spaces, dots, dashes or
/// parentheses between them. Longer runs (GUIDs, timestamps) and shorter ones
/// (statuses, counts) are left alone, and so are runs inside words (hex
/// error codes, ids).
fn mask_phone_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < chars.len() {
        let after_label_prefix = index >= 2 && chars[index - 2] == 'u' && chars[index - 1] == ':';
        let starts_run = (chars[index] == '+' || chars[index].is_ascii_digit())
            && (index == 0 || !chars[index - 1].is_alphanumeric())
            && !after_label_prefix;
        if !starts_run {
            out.push(chars[index]);
            index += 1;
            continue;
        }
        let mut end = index + 1;
        while end < chars.len()
            && (chars[end].is_ascii_digit() || matches!(chars[end], ' ' | '.' | '-' | '(' | ')'))
        {
            end += 1;
        }
        // Do not swallow trailing separators.
        while end > index + 1 && !chars[end - 1].is_ascii_digit() {
            end -= 1;
        }
        let run: String = chars[index..end].iter().collect();
        let digits = run.chars().filter(char::is_ascii_digit).count();
        let glued_to_word = end < chars.len() && chars[end].is_alphanumeric();
        let phone = !glued_to_word
            && if run.starts_with('+') {
                (7..=15).contains(&digits)
            } else {
                (9..=15).contains(&digits)
            };
        if phone {
            let normalised: String = run
                .chars()
                .filter(|c| *c == '+' || c.is_ascii_digit())
                .collect();
            out.push_str(&mask_identifier(&normalised));
        } else {
            out.push_str(&run);
        }
        index = end;
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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
    fn labels_depend_on_the_key_so_logs_alone_cannot_confirm_a_guess() {
        let a = mask_identifier_with(b"deployment-a", "jane.doe@example.com");
        let b = mask_identifier_with(b"deployment-b", "jane.doe@example.com");
        assert_ne!(a, b);
        assert_eq!(
            a,
            mask_identifier_with(b"deployment-a", "Jane.Doe@Example.com")
        );
        assert!(a.len() == "u:".len() + 12 + "@example.com".len(), "{a}");
    }

    #[test]
    fn the_derived_key_is_stable_and_does_not_hold_the_client_secret() {
        let secret = SecretString::new("client~secret~value");
        let key = derive_log_hash_key(&secret);
        assert_eq!(key, derive_log_hash_key(&secret));
        assert!(!key.expose().contains("client~secret"));
        assert_ne!(key, derive_log_hash_key(&SecretString::new("other")));
    }

    #[test]
    fn masking_twice_keeps_the_first_label() {
        let once = mask_personal_in("no contact for jane.doe@example.com");
        assert_eq!(mask_personal_in(&once), once);
        let digits_only = "user u:123456789012 failed";
        assert_eq!(mask_personal_in(digits_only), digits_only);
        assert!(
            once.ends_with(&mask_identifier("jane.doe@example.com")),
            "{once}"
        );
    }

    #[test]
    fn url_encoded_addresses_are_masked() {
        let text =
            mask_personal_in("GET /contacts?$filter=emailaddress1 eq 'jane.doe%40example.com'");
        assert!(!text.to_lowercase().contains("jane"), "{text}");
        assert!(text.contains("@example.com"), "{text}");
    }

    #[test]
    fn phone_numbers_are_masked_but_codes_guids_and_times_are_not() {
        let text = mask_personal_in("no contact for +33 6 12 34 56 78 or 0612345678.");
        assert!(!text.contains("12 34 56"), "{text}");
        assert!(!text.contains("0612345678"), "{text}");
        assert!(text.ends_with('.'), "{text}");
        let kept = "HTTP 429 0x80072322 at 2025-03-14T09:21:07.512Z for 10000000-0000-0000-0000-000000000003 (3 of 10)";
        assert_eq!(mask_personal_in(kept), kept);
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
