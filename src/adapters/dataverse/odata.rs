//! OData query strings, built by hand.
//!
//! Form encoding (what `reqwest`'s `.query()` does) turns spaces into `+`,
//! which Dataverse reads back as a space, so `a+b@x.com` would silently become
//! `a b@x.com`. Here the `$` of system query options stays literal, spaces are
//! `%20`, and string literals are quoted with doubled `'` and then
//! percent-encoded, so no value can end the literal early (OData injection)
//! or split the query string.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986 unreserved characters and the parentheses of
/// filter expressions is escaped: `+ @ & # % / ? = ; , :` and spaces included,
/// non-ASCII as UTF-8 escapes. The literal quote `'` goes out as `%27`: the
/// `url` crate under `reqwest` rewrites it so in any query, and URL lengths
/// must be computed on the final form. Dataverse decodes it back to `'`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'(')
    .remove(b')');

/// Longest URL sent for one query; longer value lists are split into several
/// GETs (Dataverse answers 414/400 somewhere above 32 KB, depending on the front end).
pub const MAX_URL_LEN: usize = 16 * 1024;

/// An OData string literal: `'…'` with every `'` doubled.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Percent-encodes a query option value (a whole `$filter` expression).
pub fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Checks that `name` is a Dataverse logical name (`[a-z_][a-z0-9_]*`): names
/// come from validated configuration, but they are pasted into URLs and JSON
/// keys, so a last check here keeps a bad one from changing a query's meaning.
pub fn check_property(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let head_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let tail_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if head_ok && tail_ok && name.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a Dataverse logical name ([a-z_][a-z0-9_]*)"
        ))
    }
}

/// `<property> eq '<value>'`, the value quoted but not yet percent-encoded.
pub fn eq_term(property: &str, value: &str) -> String {
    format!("{property} eq {}", quote_literal(value))
}

/// `p eq 'a' or p eq 'b' …` (not percent-encoded).
pub fn any_eq(property: &str, values: &[String]) -> String {
    values
        .iter()
        .map(|value| eq_term(property, value))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// `?$select=a,b&$filter=<encoded filter>`; the names in `select` must have
/// passed [`check_property`] (they are not encoded).
pub fn query_string(select: &[&str], filter: Option<&str>) -> String {
    let mut query = format!("?$select={}", select.join(","));
    if let Some(filter) = filter {
        query.push_str("&$filter=");
        query.push_str(&encode_query_value(filter));
    }
    query
}

/// Drops repeated values, comparing case-insensitively as Dataverse does,
/// keeping the first spelling; empty values are dropped too.
pub fn distinct_values(values: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    values
        .iter()
        .filter(|value| !value.is_empty())
        .filter(|value| seen.insert(value.to_lowercase()))
        .cloned()
        .collect()
}

/// Splits `values` into groups whose filter stays within `max_len` once
/// percent-encoded and appended to a URL of `fixed_len` bytes (which counts
/// everything but the terms). Each value becomes `term(value)` and terms are
/// joined by `" or "`; percent-encoding works character by character, so the
/// lengths simply add up. A single value too long on its own still gets its
/// own group: Dataverse, not this client, then decides.
pub fn split_by_url_len(
    values: &[String],
    fixed_len: usize,
    max_len: usize,
    term: impl Fn(&str) -> String,
) -> Vec<Vec<String>> {
    let separator = encode_query_value(" or ").len();
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut len = fixed_len;
    for value in values {
        let term_len = encode_query_value(&term(value)).len();
        let added = if current.is_empty() {
            term_len
        } else {
            separator + term_len
        };
        if !current.is_empty() && len + added > max_len {
            groups.push(std::mem::take(&mut current));
            len = fixed_len + term_len;
        } else {
            len += added;
        }
        current.push(value.clone());
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quote_literal("O'Brien"), "'O''Brien'");
        assert_eq!(quote_literal(""), "''");
        assert_eq!(quote_literal("''"), "''''''");
    }

    #[test]
    fn reserved_characters_are_escaped() {
        assert_eq!(encode_query_value("a+b@x.com"), "a%2Bb%40x.com");
        assert_eq!(encode_query_value("a&b#c%d"), "a%26b%23c%25d");
        assert_eq!(encode_query_value("/?=;,:"), "%2F%3F%3D%3B%2C%3A");
        assert_eq!(encode_query_value("a b"), "a%20b");
        assert_eq!(encode_query_value("$"), "%24");
        assert_eq!(
            encode_query_value("jürgen@bücher.de"),
            "j%C3%BCrgen%40b%C3%BCcher.de"
        );
        assert_eq!(encode_query_value("A-z_0.9~()"), "A-z_0.9~()");
        assert_eq!(encode_query_value("'"), "%27");
    }

    #[test]
    fn reference_example_for_o_brien() {
        // Microsoft's documented query, with the quotes in their %27 wire form
        let filter = eq_term("emailaddress1", "jane.o'brien@example.com");
        assert_eq!(
            encode_query_value(&filter),
            "emailaddress1%20eq%20%27jane.o%27%27brien%40example.com%27"
        );
    }

    #[test]
    fn injection_stays_a_literal() {
        let filter = eq_term("emailaddress1", "x' or 1 eq 1 or 'a");
        assert_eq!(filter, "emailaddress1 eq 'x'' or 1 eq 1 or ''a'");
        assert_eq!(
            encode_query_value(&filter),
            "emailaddress1%20eq%20%27x%27%27%20or%201%20eq%201%20or%20%27%27a%27"
        );
        // One literal: the quotes inside always come in pairs.
        let inner = &filter["emailaddress1 eq '".len()..filter.len() - 1];
        assert_eq!(inner.replace("''", "").matches('\'').count(), 0);
        // Nothing can end the query option either.
        let encoded = encode_query_value(&eq_term("p", "a&$filter=x#y"));
        assert!(!encoded.contains('&') && !encoded.contains('#') && !encoded.contains('$'));
    }

    #[test]
    fn property_names_are_checked() {
        for good in ["emailaddress1", "_msdynmkt_purposeid_value", "new_x2"] {
            assert!(check_property(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "EmailAddress1",
            "1abc",
            "email address",
            "emailaddress1 eq 'x' or contactid",
            "a,b",
            "a-b",
            "é",
        ] {
            assert!(check_property(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_and_query_strings() {
        let values = strings(&["a@x.com", "O'Brien@x.com"]);
        assert_eq!(
            any_eq("emailaddress1", &values),
            "emailaddress1 eq 'a@x.com' or emailaddress1 eq 'O''Brien@x.com'"
        );
        let filter = any_eq("emailaddress1", &values);
        assert_eq!(
            query_string(&["contactid", "emailaddress1"], Some(&filter)),
            "?$select=contactid,emailaddress1&$filter=emailaddress1%20eq%20%27a%40x.com%27%20or%20emailaddress1%20eq%20%27O%27%27Brien%40x.com%27"
        );
        assert_eq!(query_string(&["a", "b"], None), "?$select=a,b");
    }

    #[test]
    fn distinct_values_ignore_case() {
        let values = strings(&["A@x.com", "a@X.com", "", "b@x.com", "a@x.com"]);
        assert_eq!(distinct_values(&values), strings(&["A@x.com", "b@x.com"]));
    }

    #[test]
    fn long_value_lists_are_split() {
        let values: Vec<String> = (0..500)
            .map(|i| format!("user{i:04}+tag@example.com"))
            .collect();
        let fixed = 200;
        let term = |value: &str| eq_term("emailaddress1", value);
        let groups = split_by_url_len(&values, fixed, MAX_URL_LEN, term);
        assert!(groups.len() > 1, "{}", groups.len());
        assert_eq!(groups.concat(), values, "all values, in order, once");
        for group in &groups {
            let encoded = encode_query_value(&any_eq("emailaddress1", group));
            assert!(fixed + encoded.len() <= MAX_URL_LEN);
        }
        // The split is tight: one more value would not have fitted.
        let first = &groups[0];
        let with_next = [first.clone(), vec![groups[1][0].clone()]].concat();
        assert!(
            fixed + encode_query_value(&any_eq("emailaddress1", &with_next)).len() > MAX_URL_LEN
        );
        // Small lists stay in one request.
        assert_eq!(
            split_by_url_len(&values[..3], fixed, MAX_URL_LEN, term).len(),
            1
        );
        // An oversized single value is still sent, alone.
        let huge = vec!["x".repeat(20_000), "y".into()];
        let groups = split_by_url_len(&huge, fixed, MAX_URL_LEN, term);
        assert_eq!(groups.len(), 2);
        assert!(split_by_url_len(&[], fixed, MAX_URL_LEN, term).is_empty());
    }
}
