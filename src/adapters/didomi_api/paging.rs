//! One page of `GET /consents/users`: Didomi's guide documents
//! `{"data": [...], "limit": 100, "cursor": …}` with `cursor: null` at the
//! end; its OpenAPI still shows a bare array. Both are read: a bare array is
//! taken as the only page.

use serde_json::Value;

/// The users of one page and the cursor of the next.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsersPage {
    /// The users as JSON, each parsed later on its own so one malformed user
    /// is reported without losing the page.
    pub users: Vec<Value>,
    /// `$cursor` for the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// Reads a page body; `Err` says what is wrong with it.
pub fn parse_users_page(body: &[u8]) -> Result<UsersPage, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|err| format!("the answer is not JSON: {err}"))?;
    match value {
        Value::Array(users) => Ok(UsersPage {
            users,
            next_cursor: None,
        }),
        Value::Object(mut object) => {
            let users = match object.remove("data") {
                Some(Value::Array(users)) => users,
                Some(_) => return Err("`data` is not an array".into()),
                None => return Err("the answer has no `data` array".into()),
            };
            let next_cursor = match object.remove("cursor") {
                None | Some(Value::Null) => None,
                Some(Value::String(cursor)) if cursor.is_empty() => None,
                Some(Value::String(cursor)) => Some(cursor),
                Some(Value::Number(cursor)) => Some(cursor.to_string()),
                Some(other) => return Err(format!("`cursor` is {other}, not a string")),
            };
            Ok(UsersPage { users, next_cursor })
        }
        _ => Err("the answer is neither an object nor an array".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_envelope_gives_users_and_the_next_cursor() {
        let page =
            parse_users_page(br#"{"data":[{"id":"u1"}],"limit":100,"cursor":"c2"}"#).unwrap();
        assert_eq!(page.users.len(), 1);
        assert_eq!(page.next_cursor.as_deref(), Some("c2"));
    }

    #[test]
    fn null_absent_or_empty_cursor_ends_the_walk() {
        for body in [
            r#"{"data":[],"cursor":null}"#,
            r#"{"data":[]}"#,
            r#"{"data":[],"cursor":""}"#,
        ] {
            assert_eq!(parse_users_page(body.as_bytes()).unwrap().next_cursor, None);
        }
    }

    #[test]
    fn bare_array_of_the_openapi_reading_is_a_single_page() {
        let page = parse_users_page(br#"[{"id":"u1"},{"id":"u2"}]"#).unwrap();
        assert_eq!(page.users.len(), 2);
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn numeric_cursors_are_kept_as_text() {
        let page = parse_users_page(br#"{"data":[],"cursor":200}"#).unwrap();
        assert_eq!(page.next_cursor.as_deref(), Some("200"));
    }

    #[test]
    fn a_body_without_data_is_a_protocol_error() {
        assert!(parse_users_page(br#"{"items":[]}"#).is_err());
    }
}
