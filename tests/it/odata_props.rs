//! Property tests of the hand-built OData query strings
//! (`didomi_cpc_sync::adapters::dataverse::odata`): whatever a contact address holds,
//! its string literal decodes back to itself, cannot end the query option,
//! and stays one literal inside the `$filter` expression.

use didomi_cpc_sync::adapters::dataverse::odata::{
    any_eq, encode_query_value, query_string, quote_literal,
};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;

const PROPERTY: &str = "emailaddress1";

/// Arbitrary strings, and strings built from the pieces that break naive
/// encoders: quotes, query and URL delimiters, percent signs (raw and as
/// escapes), spaces, non-ASCII, control characters and OData keywords.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => Just("'".to_string()),
        2 => Just("''".to_string()),
        1 => prop::sample::select(vec![
            "+", "&", "#", "%", "/", "?", "=", " ", "@", ";", ",", ":", "$", "(", ")", "\"", "\\",
            "%27", "%2", "%%", "%zz", "+%20", "&$filter=", "#frag", "?x=y",
        ])
        .prop_map(str::to_string),
        1 => prop::sample::select(vec![
            " or ", " eq ", " and ", " not ", " ne ", "null", "true", "1 eq 1",
            "x' or 1 eq 1 or 'a", "') or (", "emailaddress1 eq '",
        ])
        .prop_map(str::to_string),
        1 => prop::sample::select(vec![
            "é", "ü", "ß", "日本", "😀", "\u{200b}", "\u{feff}", "\u{fffd}", "\u{10ffff}",
        ])
        .prop_map(str::to_string),
        1 => prop::sample::select(vec![
            "\0", "\t", "\n", "\r", "\u{7}", "\u{1b}", "\u{7f}", "\u{85}", "\u{9f}",
        ])
        .prop_map(str::to_string),
        2 => "[a-zA-Z0-9._~-]{1,6}",
        1 => any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        3 => prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat()),
        1 => any::<String>(),
    ]
}

/// The query string as a server reads it: percent-escapes decoded, `+` kept
/// (it is not form encoding).
fn percent_decode(s: &str) -> String {
    percent_decode_str(s)
        .decode_utf8()
        .expect("percent-decoding gives UTF-8")
        .into_owned()
}

/// The value of a quoted OData literal: outer quotes removed, `''` → `'`;
/// `None` if it is not exactly one literal.
fn unquote(literal: &str) -> Option<String> {
    let inner = literal.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut value = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\'' {
            // A lone quote would have ended the literal.
            if chars.next() != Some('\'') {
                return None;
            }
        }
        value.push(c);
    }
    Some(value)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A name or keyword: `[A-Za-z0-9_]+`.
    Word(String),
    /// A string literal's value.
    Literal(String),
    /// Anything else outside a literal.
    Other(char),
}

/// An OData tokenizer for the part of the grammar the filters use: words,
/// single-space separators, and `'…'` literals where `''` is an escaped
/// quote. Errors on an unterminated literal.
fn tokenize(filter: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = filter.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {}
            '\'' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated literal in {filter:?}")),
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        Some('\'') => break,
                        Some(other) => value.push(other),
                    }
                }
                tokens.push(Token::Literal(value));
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if !(next.is_ascii_alphanumeric() || next == '_') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            other => tokens.push(Token::Other(other)),
        }
    }
    Ok(tokens)
}

fn word(s: &str) -> Token {
    Token::Word(s.to_string())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // A failure is reported with its minimal input; no regression files
        // are written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(2000)
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encoded_literal_decodes_back_to_the_original(s in hostile()) {
        let quoted = quote_literal(&s);
        let encoded = encode_query_value(&quoted);
        prop_assert_eq!(percent_decode(&encoded), quoted.clone());
        prop_assert_eq!(unquote(&quoted), Some(s));
    }

    #[test]
    fn encoded_literal_has_no_raw_query_delimiters(
        s in hostile(),
        values in prop::collection::vec(hostile(), 1..5),
    ) {
        let encoded = encode_query_value(&quote_literal(&s));
        for delimiter in ['&', '#', '+', ' ', '=', '?', '\''] {
            prop_assert!(
                !encoded.contains(delimiter),
                "{:?} has a raw {:?} in {:?}", s, delimiter, encoded
            );
        }
        prop_assert!(encoded.is_ascii(), "{:?} → {:?}", s, encoded);
        prop_assert!(encoded.chars().all(|c| !c.is_ascii_control()), "{:?}", encoded);
        // In a whole query string, the filter stays the second and last option.
        let filter = any_eq(PROPERTY, &values);
        let query = query_string(&["contactid", PROPERTY], Some(&filter));
        prop_assert!(!query.contains('#') && !query.contains(' '), "{:?}", query);
        let options: Vec<&str> = query.trim_start_matches('?').split('&').collect();
        prop_assert_eq!(options.len(), 2, "{:?}", query);
        prop_assert_eq!(options[0], "$select=contactid,emailaddress1");
        let encoded_filter = options[1].strip_prefix("$filter=").unwrap();
        prop_assert!(!encoded_filter.contains('='), "{:?}", query);
        prop_assert_eq!(percent_decode(encoded_filter), filter);
    }

    #[test]
    fn quoted_literal_is_one_token(s in hostile()) {
        let quoted = quote_literal(&s);
        prop_assert!(quoted.len() >= 2 && quoted.starts_with('\'') && quoted.ends_with('\''));
        let inner = &quoted[1..quoted.len() - 1];
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\'' {
                prop_assert_eq!(
                    chars.next(), Some('\''),
                    "a lone quote ends the literal early: {:?} → {:?}", s, quoted
                );
            }
        }
        prop_assert_eq!(inner.matches('\'').count(), 2 * s.matches('\'').count());
        prop_assert_eq!(tokenize(&quoted), Ok(vec![Token::Literal(s)]));
    }

    #[test]
    fn filter_for_hostile_values_stays_one_comparison_per_value(
        values in prop::collection::vec(hostile(), 0..6),
    ) {
        let filter = any_eq(PROPERTY, &values);
        let mut expected = Vec::new();
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                expected.push(word("or"));
            }
            expected.extend([word(PROPERTY), word("eq"), Token::Literal(value.clone())]);
        }
        prop_assert_eq!(tokenize(&filter), Ok(expected.clone()), "{:?}", filter);
        // What Dataverse parses is the decoded wire form: the same expression.
        let wire = percent_decode(&encode_query_value(&filter));
        prop_assert_eq!(tokenize(&wire), Ok(expected), "{:?}", wire);
        let comparisons = tokenize(&filter).unwrap().iter().filter(|t| **t == word("eq")).count();
        prop_assert_eq!(comparisons, values.len());
    }
}
