//! The one error type of the Dataverse client.
//!
//! Callers need two things from a failure: whether retrying later can help
//! (the SQS message goes back to the queue) or not (it is reported as a
//! permanent failure), and one line an operator can act on. Dataverse's own
//! messages are kept, but addresses in them are masked and long inner
//! exception dumps are cut, because the line ends up in logs.

use std::fmt;
use std::time::Duration;

use crate::adapters::entra::AuthError;
use crate::redact::mask_identifier;

/// Dataverse's `error.code` when the app is not an Application User of the environment.
pub const CODE_NOT_APP_USER: &str = "0x80072560";
/// Dataverse's `error.code` for a missing security-role privilege.
pub const CODE_MISSING_PRIVILEGE: &str = "0x80040220";
/// Dataverse's `error.code` when a create-only write finds an existing row.
#[cfg(test)]
const CODE_DUPLICATE_KEY: &str = "0x80040237";

/// Longest server message kept in an error (inner exception dumps run to kilobytes).
const MAX_MESSAGE_CHARS: usize = 400;

/// What went wrong, without the context common to every failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Dataverse answered with a non-success HTTP status (the whole request or one `$batch` part).
    Http {
        /// HTTP status code.
        status: u16,
        /// `error.code` of the Dataverse error body, when there was one and it was not empty.
        code: Option<String>,
        /// `error.message`, addresses masked and shortened.
        message: String,
        /// `Retry-After`, when the answer carried a readable one.
        retry_after: Option<Duration>,
        /// True when the request was a create-only write (`If-None-Match: *`): a 412
        /// then means the row already exists, which the next delivery will see.
        create_only: bool,
    },
    /// The request never got an HTTP answer: connect failure, reset, timeout.
    Transport {
        /// What the HTTP stack reported (no URL: it may hold addresses in the query).
        message: String,
        /// True when the request timed out rather than failed.
        timeout: bool,
    },
    /// No bearer token could be obtained.
    Auth(AuthError),
    /// Dataverse answered something this client cannot use (bad JSON, foreign nextLink, …).
    Protocol(String),
    /// The caller handed over something that must not be sent (e.g. an invalid property name).
    InvalidInput(String),
    /// A `$batch` answer had no part for this request: it was not applied.
    NoAnswer,
    /// A `$batch` answer whose parts do not match its requests one to one
    /// (by count, order and Content-ID): no part can be trusted.
    BatchMismatch(String),
    /// The deadline had passed before the first attempt could be made.
    Deadline,
}

/// A failed Dataverse request, with the context an operator needs to act on it.
///
/// Never contains the bearer token; addresses in server messages are masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct DataverseError {
    operation: String,
    /// Boxed: results carrying this error stay small on the happy path.
    kind: Box<ErrorKind>,
    request_id: Option<String>,
    deadline_reached: bool,
}

impl DataverseError {
    /// An error of `kind` for `operation` (e.g. "query consent rows").
    pub fn new(operation: impl Into<String>, kind: ErrorKind) -> Self {
        Self {
            operation: operation.into(),
            kind: Box::new(kind),
            request_id: None,
            deadline_reached: false,
        }
    }

    /// An HTTP error answer, its Dataverse error body already split into code and message.
    pub(crate) fn http(
        operation: impl Into<String>,
        status: u16,
        code: Option<String>,
        message: &str,
        retry_after: Option<Duration>,
        create_only: bool,
    ) -> Self {
        Self::new(
            operation,
            ErrorKind::Http {
                status,
                code: code.filter(|c| !c.trim().is_empty()),
                message: scrub_message(message),
                retry_after,
                create_only,
            },
        )
    }

    /// Attaches the server's request id (`REQ_ID` / `x-ms-service-request-id`).
    pub(crate) fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id.filter(|id| !id.is_empty());
        self
    }

    /// Marks that retrying stopped because the caller's deadline was reached.
    pub(crate) fn with_deadline_reached(mut self) -> Self {
        self.deadline_reached = true;
        self
    }

    /// Renames the operation (a whole-batch failure reported against each of its parts).
    pub(crate) fn with_operation(mut self, operation: impl Into<String>) -> Self {
        self.operation = operation.into();
        self
    }

    /// The operation that failed, e.g. "$batch part 3 (create consent)".
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The HTTP status, when Dataverse answered.
    pub fn status(&self) -> Option<u16> {
        match self.kind.as_ref() {
            ErrorKind::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Dataverse's `error.code` (e.g. `0x80072322`), when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self.kind.as_ref() {
            ErrorKind::Http { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Dataverse's `error.message` (masked, shortened), when it gave one.
    pub fn message(&self) -> Option<&str> {
        match self.kind.as_ref() {
            ErrorKind::Http { message, .. } if !message.is_empty() => Some(message),
            _ => None,
        }
    }

    /// The request id Dataverse assigned, for a support ticket.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The `Retry-After` the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind.as_ref() {
            ErrorKind::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True when retrying stopped because the caller's deadline was reached.
    pub fn deadline_reached(&self) -> bool {
        self.deadline_reached
    }

    /// True when the same request may succeed if sent again within seconds:
    /// throttling, an unavailable service, network trouble. The client
    /// retries these itself, within the invocation's deadline.
    pub fn is_transient(&self) -> bool {
        match self.kind.as_ref() {
            ErrorKind::Http { status, .. } => matches!(status, 408 | 429 | 502 | 503 | 504),
            ErrorKind::Transport { .. } | ErrorKind::Deadline => true,
            ErrorKind::Auth(error) => error.is_retryable(),
            _ => false,
        }
    }

    /// True when the message may succeed on a later delivery, so it goes back
    /// to the queue with backoff instead of to the dead-letter queue: every
    /// transient error, a `412` (a create that found its row, or an update
    /// whose row changed since it was read: the next delivery re-reads), a
    /// `$batch` answer that cannot be matched to its requests, and the `403`s
    /// an operator fixes in Dynamics without a redeploy (not an application
    /// user, a missing privilege). Everything else (a malformed request, an
    /// unknown record) fails the same way every time.
    pub fn is_retryable(&self) -> bool {
        if self.is_transient() {
            return true;
        }
        match self.kind.as_ref() {
            ErrorKind::Http { status: 412, .. } => true,
            ErrorKind::Http {
                status: 403,
                code: Some(code),
                ..
            } => code == CODE_NOT_APP_USER || code == CODE_MISSING_PRIVILEGE,
            ErrorKind::NoAnswer | ErrorKind::BatchMismatch(_) => true,
            _ => false,
        }
    }

    /// True when no later delivery of the same message can succeed, whatever
    /// an operator changes: Dataverse refused the request's content (400,
    /// 405, 413, 415, 422: a write's values, or a query an odd id broke), or
    /// the answer or the request itself is unusable (a foreign nextLink, a
    /// field name that is not a logical name). Everything else (outages, and
    /// what an operator fixes in Dataverse or Entra: 401, 403 Application
    /// User or privilege, a missing row or column) may succeed later, so the
    /// message backs off in the queue instead of going to the dead-letter queue.
    pub fn is_permanent(&self) -> bool {
        match self.kind.as_ref() {
            ErrorKind::Http { status, .. } => matches!(status, 400 | 405 | 413 | 415 | 422),
            ErrorKind::Protocol(_) | ErrorKind::InvalidInput(_) => true,
            _ => false,
        }
    }

    fn render(&self) -> String {
        let mut line = format!("{}: {}", self.operation, self.describe());
        if let Some(id) = &self.request_id {
            line.push_str(&format!(" [request id {id}]"));
        }
        if self.deadline_reached {
            line.push_str(
                "; gave up retrying because the invocation deadline was reached (retryable)",
            );
        }
        line
    }

    fn describe(&self) -> String {
        match self.kind.as_ref() {
            ErrorKind::Http {
                status,
                code,
                message,
                retry_after,
                create_only,
            } => describe_http(
                *status,
                code.as_deref(),
                message,
                *retry_after,
                *create_only,
            ),
            ErrorKind::Transport { message, timeout } => {
                if *timeout {
                    format!("Dataverse did not answer in time ({message})")
                } else {
                    format!("could not reach Dataverse ({message})")
                }
            }
            ErrorKind::Auth(error) => format!("no bearer token for Dataverse: {error}"),
            ErrorKind::Protocol(message) => format!("unexpected answer from Dataverse: {message}"),
            ErrorKind::InvalidInput(message) => format!("refused to send: {message}"),
            ErrorKind::BatchMismatch(message) => {
                format!(
                    "the $batch answer does not match its requests ({message}); nothing of it is trusted"
                )
            }
            ErrorKind::NoAnswer => {
                "the $batch answer had no part for this request, so it was not applied".to_owned()
            }
            ErrorKind::Deadline => "the invocation deadline had already passed".to_owned(),
        }
    }
}

fn describe_http(
    status: u16,
    code: Option<&str>,
    message: &str,
    retry_after: Option<Duration>,
    create_only: bool,
) -> String {
    let tag = match code {
        Some(code) => format!("HTTP {status} {code}"),
        None => format!("HTTP {status}"),
    };
    let detail = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    match (status, code) {
        (403, Some(CODE_NOT_APP_USER)) => format!(
            "Dataverse does not know the app ({tag}, not a member of the organization): add the Entra app as an Application User with a security role in this environment (Power Platform admin center > Environment > Settings > Application users)"
        ),
        (403, Some(CODE_MISSING_PRIVILEGE)) => format!(
            "the app's Application User lacks a privilege ({tag}){detail}; grant it through a security role of that user"
        ),
        (401, _) => format!(
            "Dataverse rejected the bearer token even after a refresh ({tag}): authentication.instance must be the environment URL the token is issued for, and the app must be allowed in that tenant"
        ),
        (404, _)
            if mentions(message, "msdynmkt_purpose ")
                || mentions(message, "'msdynmkt_purpose'") =>
        {
            format!(
                "the mapped purpose GUID does not exist in this environment ({tag}){detail}; fix the mapping's purpose id"
            )
        }
        (404, _)
            if mentions(message, "msdynmkt_topic ") || mentions(message, "'msdynmkt_topic'") =>
        {
            format!(
                "the mapped topic GUID does not exist in this environment ({tag}){detail}; fix the mapping's topic id"
            )
        }
        (404, _) if mentions(message, "msdynmkt_contactpointconsent4") => format!(
            "the consent row no longer exists ({tag}){detail}; it was deleted meanwhile, the next delivery re-reads the rows"
        ),
        (412, _) if create_only => format!(
            "the row already exists ({tag}): a create-only write met a row made by an earlier or concurrent delivery; the next delivery will see it"
        ),
        (429, _) => format!(
            "throttled by Dataverse service protection ({tag}{}){detail}",
            retry_after
                .map(|wait| format!(", retry after {:.1} s", wait.as_secs_f64()))
                .unwrap_or_default()
        ),
        (502..=504, _) => format!("Dataverse is unavailable ({tag}){detail}"),
        _ => format!("Dataverse refused the request ({tag}){detail}"),
    }
}

fn mentions(message: &str, needle: &str) -> bool {
    message.contains(needle)
}

/// Keeps a server message fit for a log line: first line only, shortened, and
/// every email-like word replaced by its masked label.
pub(crate) fn scrub_message(message: &str) -> String {
    let first = message.trim().lines().next().unwrap_or_default();
    let shortened: String = first.chars().take(MAX_MESSAGE_CHARS).collect();
    let mut out = String::with_capacity(shortened.len());
    for (index, word) in shortened.split(' ').enumerate() {
        if index > 0 {
            out.push(' ');
        }
        let core = word
            .trim_matches(|c: char| matches!(c, '\'' | '"' | ',' | '(' | ')' | '[' | ']' | ';'));
        if looks_like_address(core) {
            out.push_str(&word.replacen(core, &mask_identifier(core), 1));
        } else {
            out.push_str(word);
        }
    }
    if first.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// An `x@y.z` word that is not an OData annotation such as `x@odata.bind`.
fn looks_like_address(word: &str) -> bool {
    match word.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with("odata.")
                && !domain.starts_with("OData.")
                && !domain.starts_with("Microsoft.")
        }
        None => false,
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&DataverseError::new(String::new(), self.clone()).describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: Option<&str>, message: &str, create_only: bool) -> DataverseError {
        DataverseError::http(
            "op",
            status,
            code.map(str::to_owned),
            message,
            None,
            create_only,
        )
    }

    #[test]
    fn retryable_statuses() {
        for status in [429, 502, 503, 504] {
            assert!(http(status, None, "", false).is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 405, 409, 413, 500] {
            assert!(!http(status, None, "", false).is_retryable(), "{status}");
        }
        assert!(http(412, Some(CODE_DUPLICATE_KEY), "", true).is_retryable());
    }

    #[test]
    fn an_update_whose_row_changed_since_it_was_read_is_retryable_not_transient() {
        let changed = http(412, None, "", false);
        assert!(changed.is_retryable());
        assert!(
            !changed.is_transient(),
            "re-sending the same etag cannot help"
        );
    }

    #[test]
    fn configuration_403s_are_retryable_with_backoff_but_not_resent_at_once() {
        for code in [CODE_NOT_APP_USER, CODE_MISSING_PRIVILEGE] {
            let error = http(403, Some(code), "", false);
            assert!(error.is_retryable(), "{code}");
            assert!(!error.is_transient(), "{code}");
        }
    }

    #[test]
    fn only_refused_content_is_permanent_what_an_operator_fixes_is_not() {
        let part = |status: u16, code: Option<&str>| {
            http(status, code, "", false).with_operation("$batch part 1 (create consent)")
        };
        assert!(part(400, None).is_permanent());
        assert!(!part(403, Some(CODE_NOT_APP_USER)).is_permanent());
        assert!(!part(403, Some(CODE_MISSING_PRIVILEGE)).is_permanent());
        assert!(!part(401, None).is_permanent());
        assert!(!part(503, None).is_permanent());
        assert!(
            http(400, None, "", false).is_permanent(),
            "a query an odd id broke: the service then finds that id"
        );
        assert!(
            !part(404, None).is_permanent(),
            "a purpose deleted since start"
        );
    }

    #[test]
    fn transport_auth_and_deadline_retryability() {
        let transport = DataverseError::new(
            "op",
            ErrorKind::Transport {
                message: "connection reset".into(),
                timeout: false,
            },
        );
        assert!(transport.is_retryable());
        assert!(DataverseError::new("op", ErrorKind::Deadline).is_retryable());
        assert!(DataverseError::new("op", ErrorKind::NoAnswer).is_retryable());
        let down = DataverseError::new("op", ErrorKind::Auth(AuthError::Unavailable("x".into())));
        assert!(down.is_retryable());
        let bad = DataverseError::new(
            "op",
            ErrorKind::Auth(AuthError::UnknownTenant {
                tenant_id: "t".into(),
            }),
        );
        assert!(!bad.is_retryable());
        assert!(bad.to_string().contains("AADSTS90002"), "{bad}");
        assert!(!DataverseError::new("op", ErrorKind::Protocol("x".into())).is_retryable());
    }

    #[test]
    fn not_app_user_message_is_actionable() {
        let e = http(
            403,
            Some(CODE_NOT_APP_USER),
            "The user is not a member of the organization.",
            false,
        );
        let text = e.to_string();
        assert!(text.contains("Application User"), "{text}");
        assert!(text.contains("security role"), "{text}");
        // Fixed in Dynamics without a redeploy: back to the queue, not resent at once.
        assert!(e.is_retryable() && !e.is_transient());
        assert_eq!(e.status(), Some(403));
        assert_eq!(e.code(), Some(CODE_NOT_APP_USER));
    }

    #[test]
    fn missing_privilege_names_the_privilege() {
        let e = http(
            403,
            Some(CODE_MISSING_PRIVILEGE),
            "Principal user (Id=1, type=8) is missing prvCreatemsdynmkt_contactpointconsent4 privilege",
            false,
        );
        assert!(
            e.to_string()
                .contains("prvCreatemsdynmkt_contactpointconsent4"),
            "{e}"
        );
        assert!(e.is_retryable() && !e.is_transient());
    }

    #[test]
    fn missing_bind_target_says_guid_does_not_exist() {
        let e = http(
            404,
            Some("0x80040217"),
            "Entity 'msdynmkt_purpose' With Id = 10000000-0000-0000-0000-000000000009 Does Not Exist",
            true,
        );
        let text = e.to_string();
        assert!(text.contains("purpose GUID does not exist"), "{text}");
        let e = http(
            404,
            Some("0x80040217"),
            "Entity 'msdynmkt_topic' With Id = 10000000-0000-0000-0000-000000000009 Does Not Exist",
            true,
        );
        assert!(e.to_string().contains("topic GUID does not exist"), "{e}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn throttled_display_and_accessors() {
        let e = DataverseError::http(
            "query contacts",
            429,
            Some("0x80072322".into()),
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            Some(Duration::from_secs(39)),
            false,
        )
        .with_request_id(Some("abc".into()))
        .with_deadline_reached();
        let text = e.to_string();
        assert!(text.starts_with("query contacts: throttled"), "{text}");
        assert!(text.contains("retry after 39.0 s"), "{text}");
        assert!(text.contains("request id abc"), "{text}");
        assert!(text.contains("deadline was reached"), "{text}");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(39)));
        assert_eq!(e.request_id(), Some("abc"));
        assert!(e.is_retryable());
        assert!(!text.contains('\n'));
    }

    #[test]
    fn addresses_in_server_messages_are_masked() {
        let e = http(
            400,
            Some("0x0"),
            "Value 'jane.o'brien+x@example.com' is bad; msdynmkt_purposeId@odata.bind ok\nInner trace",
            false,
        );
        let text = e.to_string();
        assert!(!text.contains("brien"), "{text}");
        assert!(text.contains("@example.com"), "{text}");
        assert!(text.contains("msdynmkt_purposeId@odata.bind"), "{text}");
        assert!(!text.contains("Inner trace"), "{text}");
    }

    #[test]
    fn long_messages_are_cut() {
        let e = http(400, None, &"x".repeat(5000), false);
        assert!(e.to_string().len() < 600);
    }
}
