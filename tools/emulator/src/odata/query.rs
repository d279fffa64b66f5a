//! System query options and `Prefer` preferences.

use crate::errors::DvError;
use crate::odata::pct;

/// Parsed system query options (property names not yet checked against a table).
#[derive(Debug, Default, Clone)]
pub struct QueryOptions {
    pub select: Option<Vec<String>>,
    pub filter: Option<String>,
    pub orderby: Vec<(String, bool)>,
    pub top: Option<usize>,
    /// Row offset carried by our `$skiptoken`.
    pub skip_rows: usize,
    /// Raw `key=value` pairs other than `$skiptoken`, to rebuild `@odata.nextLink`.
    pub raw_without_skiptoken: Vec<String>,
}

/// Parses the raw query string; accepts `$filter` and `%24filter` alike.
pub fn parse(raw: Option<&str>) -> Result<QueryOptions, DvError> {
    let mut q = QueryOptions::default();
    let mut seen: Vec<String> = Vec::new();
    for (key, value, raw_pair) in pct::query_pairs(raw.unwrap_or("")) {
        if key.starts_with('$') {
            if seen.contains(&key) {
                return Err(DvError::syntax(format!(
                    "Query option '{key}' was specified more than once, but it must be specified at most once."
                )));
            }
            seen.push(key.clone());
        }
        if key != "$skiptoken" {
            q.raw_without_skiptoken.push(raw_pair);
        }
        match key.as_str() {
            "$select" => q.select = Some(list(&value)),
            "$filter" => q.filter = Some(value),
            "$orderby" => q.orderby = orderby(&value)?,
            "$top" => q.top = Some(top(&value)?),
            "$skiptoken" => q.skip_rows = skiptoken_offset(&value)?,
            "$skip" => {
                return Err(DvError::new(
                    400,
                    "0x0",
                    "The query parameter $skip is not supported",
                ));
            }
            k if k.starts_with('$') => {
                return Err(DvError::new(
                    400,
                    "0x0",
                    format!("The query parameter {k} is not supported by the emulator."),
                ));
            }
            _ => {}
        }
    }
    Ok(q)
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn orderby(value: &str) -> Result<Vec<(String, bool)>, DvError> {
    list(value)
        .into_iter()
        .map(|item| {
            let mut words = item.split_whitespace();
            let prop = words.next().unwrap_or_default().to_string();
            let desc = match words.next() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(_) => {
                    return Err(DvError::syntax(format!(
                        "Syntax error at position {} in '{value}'.",
                        item.len()
                    )));
                }
            };
            Ok((prop, desc))
        })
        .collect()
}

fn top(value: &str) -> Result<usize, DvError> {
    value.trim().parse().map_err(|_| {
        DvError::syntax(format!(
            "Invalid value '{value}' for $top query option found. The $top query option requires a non-negative integer value."
        ))
    })
}

/// Our skip token mimics Dataverse's paging cookie; only `offset` matters to us.
pub fn skiptoken(offset: usize, page: usize) -> String {
    format!("<cookie pagenumber=\"{page}\" offset=\"{offset}\" />")
}

fn skiptoken_offset(value: &str) -> Result<usize, DvError> {
    value
        .split("offset=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| DvError::new(400, "0x80060888", "The $skiptoken value is not valid."))
}

/// Preferences from the `Prefer` header(s).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Prefer {
    pub return_representation: bool,
    pub max_page_size: Option<usize>,
    pub continue_on_error: bool,
}

/// Parses comma-separated `Prefer` values.
pub fn prefer<'a>(values: impl Iterator<Item = &'a str>) -> Prefer {
    let mut p = Prefer::default();
    for item in values.flat_map(|v| v.split(',')) {
        let item = item.trim();
        if item.eq_ignore_ascii_case("return=representation") {
            p.return_representation = true;
        } else if item.eq_ignore_ascii_case("odata.continue-on-error") {
            p.continue_on_error = true;
        } else if let Some(n) = item.strip_prefix("odata.maxpagesize=") {
            p.max_page_size = n.trim().parse().ok().filter(|n: &usize| *n > 0);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_dollar_keys_and_plus_decoding() {
        let q = parse(Some(
            "%24select=contactid&%24filter=emailaddress1+eq+'a%2Bb%40x.com'&$top=2",
        ))
        .unwrap();
        assert_eq!(q.select, Some(vec!["contactid".to_string()]));
        assert_eq!(q.filter.as_deref(), Some("emailaddress1 eq 'a+b@x.com'"));
        assert_eq!(q.top, Some(2));
    }

    #[test]
    fn skip_is_rejected_and_skiptoken_round_trips() {
        assert!(parse(Some("$skip=10")).is_err());
        let token = pct::encode(&skiptoken(7, 2));
        let q = parse(Some(&format!("$top=1&$skiptoken={token}"))).unwrap();
        assert_eq!(q.skip_rows, 7);
        assert_eq!(q.raw_without_skiptoken, vec!["$top=1".to_string()]);
    }

    #[test]
    fn prefer_values() {
        let p = prefer(["odata.maxpagesize=2, return=representation"].into_iter());
        assert_eq!(p.max_page_size, Some(2));
        assert!(p.return_representation);
        assert!(!p.continue_on_error);
    }
}
