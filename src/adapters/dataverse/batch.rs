//! `$batch` bodies: building the multipart request and reading the multipart
//! answer (Microsoft's documented `$batch` format). Pure: no I/O, so the exact bytes are tested.
//!
//! Every write is its own top-level part, never inside a change set: with
//! `Prefer: odata.continue-on-error` one failing write must not roll back the
//! others. Dataverse rejects bare-LF request bodies, so requests use CRLF
//! everywhere; answers are read with either line ending.

use crate::domain::cpc::WriteOp;

use super::odata::check_property;
use super::wire::{self, CONSENT_SET, CONTACT_SET};

/// Most requests Dataverse accepts in one `$batch`.
pub const MAX_PARTS: usize = 1000;

/// One request inside a `$batch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPart {
    /// HTTP method of the inner request.
    pub method: &'static str,
    /// Relative URL, e.g. `/api/data/v9.2/contacts(<id>)`.
    pub path: String,
    /// Inner headers besides `Content-Type`.
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
    /// True for `If-None-Match: *` writes, where 412 means "already there".
    pub create_only: bool,
    /// What the part does, for error messages and logs ("create consent").
    pub label: &'static str,
}

/// The `$batch` part for `op`; `api_path` is the Web API path with a trailing
/// slash (`/api/data/v9.2/`). Refuses field names that are not logical names.
pub fn part_for(op: &WriteOp, api_path: &str) -> Result<BatchPart, String> {
    let (path, headers, body, create_only, label) = match op {
        WriteOp::CreateConsent(row) => (
            format!("{api_path}{CONSENT_SET}({})", row.id),
            vec![("If-None-Match", "*".to_string())],
            wire::create_consent_body(row),
            true,
            "create consent",
        ),
        WriteOp::UpdateConsent(update) => (
            format!("{api_path}{CONSENT_SET}({})", update.id),
            vec![("If-Match", wire::checked_etag(&update.etag)?)],
            wire::update_consent_body(update),
            false,
            "update consent",
        ),
        WriteOp::CreateContact(contact) => {
            check_property(&contact.match_field)?;
            check_property(&contact.contact_point_field)?;
            (
                format!("{api_path}{CONTACT_SET}({})", contact.id),
                vec![("If-None-Match", "*".to_string())],
                wire::create_contact_body(contact),
                true,
                "create contact",
            )
        }
    };
    Ok(BatchPart {
        method: "PATCH",
        path,
        headers,
        body: body.to_string(),
        create_only,
        label,
    })
}

/// A fresh boundary: `batch_<uuid>`.
pub fn new_boundary() -> String {
    format!("batch_{}", uuid::Uuid::new_v4())
}

/// The outer `Content-Type` for a body built with `boundary`.
pub fn content_type(boundary: &str) -> String {
    format!("multipart/mixed; boundary=\"{boundary}\"")
}

/// The multipart request body, CRLF throughout. Part `i` carries
/// `Content-ID: i+1`, so each answer part can be matched to its request.
pub fn build_body(boundary: &str, parts: &[BatchPart]) -> String {
    let mut out = String::new();
    for (position, part) in parts.iter().enumerate() {
        out.push_str(&format!("--{boundary}\r\n"));
        out.push_str("Content-Type: application/http\r\n");
        out.push_str("Content-Transfer-Encoding: binary\r\n");
        out.push_str(&format!("Content-ID: {}\r\n", position + 1));
        out.push_str("\r\n");
        out.push_str(&format!("{} {} HTTP/1.1\r\n", part.method, part.path));
        if part.method == "GET" {
            // A query part has no body, so no Content-Type (reference §3.9).
            out.push_str("Accept: application/json\r\n");
        } else {
            out.push_str("Content-Type: application/json; type=entry\r\n");
        }
        for (name, value) in &part.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&part.body);
        out.push_str("\r\n");
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

/// One answer inside a `$batch` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartResponse {
    /// Status of the inner response.
    pub status: u16,
    /// Inner headers, in order.
    pub headers: Vec<(String, String)>,
    /// Inner body (empty for 204).
    pub body: String,
    /// The part's `Content-ID`, when the answer echoes it.
    pub content_id: Option<String>,
}

#[cfg(test)]
impl PartResponse {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The `boundary` parameter of a multipart `Content-Type`, unquoted.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let media = params.next()?.trim();
    if !media.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// Reads a `$batch` answer into its inner responses, in order; change-set
/// answers are flattened into their parts.
pub fn parse_response(content_type: &str, body: &str) -> Result<Vec<PartResponse>, String> {
    let boundary = boundary_of(content_type)
        .ok_or_else(|| format!("the $batch answer is not multipart ({content_type:?})"))?;
    let mut responses = Vec::new();
    parse_multipart(&boundary, body, &mut responses, 0)?;
    Ok(responses)
}

fn parse_multipart(
    boundary: &str,
    body: &str,
    out: &mut Vec<PartResponse>,
    depth: usize,
) -> Result<(), String> {
    if depth > 1 {
        return Err("the $batch answer nests multiparts deeper than a change set".into());
    }
    let delimiter = format!("--{boundary}");
    let closing = format!("--{boundary}--");
    let mut parts: Vec<Vec<&str>> = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    let mut closed = false;
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let bare = line.trim_end();
        if bare == closing {
            parts.extend(current.take());
            closed = true;
            break;
        }
        if bare == delimiter {
            parts.extend(current.take());
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    if !closed {
        return Err(format!(
            "the $batch answer ends without its closing boundary (--{boundary}--)"
        ));
    }
    for lines in parts {
        let (headers, rest) = split_headers(&lines);
        let part_type = find_header(&headers, "content-type").unwrap_or_default();
        if let Some(inner) = boundary_of(&part_type) {
            parse_multipart(&inner, &rest.join("\n"), out, depth + 1)?;
        } else {
            let mut response = parse_http(rest)?;
            response.content_id = find_header(&headers, "content-id");
            out.push(response);
        }
    }
    Ok(())
}

/// Splits leading `Name: value` lines from what follows the blank line.
fn split_headers<'a>(lines: &'a [&'a str]) -> (Vec<(String, String)>, &'a [&'a str]) {
    let mut headers = Vec::new();
    let mut index = 0;
    while index < lines.len() && lines[index].trim().is_empty() && headers.is_empty() {
        index += 1;
    }
    while index < lines.len() {
        let line = lines[index];
        index += 1;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, &lines[index..])
}

fn find_header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.clone())
}

/// An embedded `HTTP/1.1 <status> <reason>` response.
fn parse_http(lines: &[&str]) -> Result<PartResponse, String> {
    let start = lines
        .iter()
        .position(|line| !line.trim().is_empty())
        .ok_or("a $batch answer part is empty")?;
    let status_line = lines[start].trim();
    let mut words = status_line.split_whitespace();
    let version = words.next().unwrap_or_default();
    let status = words
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..=599).contains(code) && version.starts_with("HTTP/"))
        .ok_or_else(|| {
            format!(
                "a $batch answer part does not start with an HTTP status line ({:?})",
                status_line.chars().take(40).collect::<String>()
            )
        })?;
    let (headers, rest) = split_headers(&lines[start + 1..]);
    Ok(PartResponse {
        status,
        headers,
        body: rest.join("\n").trim().to_owned(),
        content_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cpc::{ConsentType, ConsentUpdate, NewConsent, NewContact};
    use crate::domain::decision::ConsentValue;
    use uuid::Uuid;

    const API: &str = "/api/data/v9.2/";

    fn consent(topic: Option<u128>) -> NewConsent {
        NewConsent {
            id: Uuid::from_u128(0xa1),
            contact_point: "jane.doe@example.com".into(),
            consent_type: if topic.is_some() {
                ConsentType::Topic
            } else {
                ConsentType::Purpose
            },
            value: ConsentValue::OptedIn,
            purpose_id: Uuid::from_u128(3),
            topic_id: topic.map(Uuid::from_u128),
            source: 534_120_000,
            reason: "didomi-sync".into(),
        }
    }

    #[test]
    fn request_body_exact_bytes() {
        let parts = vec![
            part_for(&WriteOp::CreateConsent(consent(Some(4))), API).unwrap(),
            part_for(
                &WriteOp::UpdateConsent(ConsentUpdate {
                    id: Uuid::from_u128(0xb2),
                    etag: "W/\"7\"".into(),
                    value: ConsentValue::OptedOut,
                    source: 534_120_000,
                    reason: "r".into(),
                }),
                API,
            )
            .unwrap(),
        ];
        let body = build_body("batch_x", &parts);
        let expected = concat!(
            "--batch_x\r\n",
            "Content-Type: application/http\r\n",
            "Content-Transfer-Encoding: binary\r\n",
            "Content-ID: 1\r\n",
            "\r\n",
            "PATCH /api/data/v9.2/msdynmkt_contactpointconsent4s(00000000-0000-0000-0000-0000000000a1) HTTP/1.1\r\n",
            "Content-Type: application/json; type=entry\r\n",
            "If-None-Match: *\r\n",
            "\r\n",
            "{\"msdynmkt_contactpointconsenttype\":534120001,\"msdynmkt_contactpointtype\":534120000,",
            "\"msdynmkt_contactpointvalue\":\"jane.doe@example.com\",\"msdynmkt_logicalreason\":534119999,",
            "\"msdynmkt_purposeId@odata.bind\":\"/msdynmkt_purposes(00000000-0000-0000-0000-000000000003)\",",
            "\"msdynmkt_reason\":\"didomi-sync\",\"msdynmkt_source\":534120000,",
            "\"msdynmkt_topicId@odata.bind\":\"/msdynmkt_topics(00000000-0000-0000-0000-000000000004)\",",
            "\"msdynmkt_value\":534120001}\r\n",
            "--batch_x\r\n",
            "Content-Type: application/http\r\n",
            "Content-Transfer-Encoding: binary\r\n",
            "Content-ID: 2\r\n",
            "\r\n",
            "PATCH /api/data/v9.2/msdynmkt_contactpointconsent4s(00000000-0000-0000-0000-0000000000b2) HTTP/1.1\r\n",
            "Content-Type: application/json; type=entry\r\n",
            "If-Match: W/\"7\"\r\n",
            "\r\n",
            "{\"msdynmkt_logicalreason\":534119999,\"msdynmkt_reason\":\"r\",\"msdynmkt_source\":534120000,\"msdynmkt_value\":534120002}\r\n",
            "--batch_x--\r\n",
        );
        assert_eq!(body, expected);
        assert!(!body.replace("\r\n", "").contains('\n'), "no bare LF");
        assert!(!body.contains("changeset"), "no change sets");
    }

    #[test]
    fn get_parts_have_no_body_type() {
        let part = BatchPart {
            method: "GET",
            path: "/api/data/v9.2/contacts?$select=contactid".into(),
            headers: vec![("Prefer", "odata.maxpagesize=10".into())],
            body: String::new(),
            create_only: false,
            label: "query contacts",
        };
        assert_eq!(
            build_body("b", &[part]),
            concat!(
                "--b\r\n",
                "Content-Type: application/http\r\n",
                "Content-Transfer-Encoding: binary\r\n",
                "Content-ID: 1\r\n",
                "\r\n",
                "GET /api/data/v9.2/contacts?$select=contactid HTTP/1.1\r\n",
                "Accept: application/json\r\n",
                "Prefer: odata.maxpagesize=10\r\n",
                "\r\n",
                "\r\n",
                "--b--\r\n",
            )
        );
    }

    #[test]
    fn part_headers_per_operation() {
        let create = part_for(&WriteOp::CreateConsent(consent(None)), API).unwrap();
        assert_eq!(create.headers, vec![("If-None-Match", "*".to_string())]);
        assert!(create.create_only);
        assert!(create.body.contains("\"msdynmkt_purposeId@odata.bind\""));
        assert!(!create.body.contains("msdynmkt_topicId"));
        let contact = part_for(
            &WriteOp::CreateContact(NewContact {
                id: Uuid::from_u128(0xc3),
                match_field: "emailaddress1".into(),
                match_value: "a+b@x.com".into(),
                contact_point_field: "emailaddress1".into(),
                contact_point: "a+b@x.com".into(),
            }),
            API,
        )
        .unwrap();
        assert_eq!(
            contact.path,
            "/api/data/v9.2/contacts(00000000-0000-0000-0000-0000000000c3)"
        );
        assert_eq!(contact.headers, vec![("If-None-Match", "*".to_string())]);
        assert_eq!(contact.body, r#"{"emailaddress1":"a+b@x.com"}"#);
        assert_eq!(contact.label, "create contact");
    }

    #[test]
    fn bad_field_names_are_refused() {
        let op = WriteOp::CreateContact(NewContact {
            id: Uuid::nil(),
            match_field: "EmailAddress1".into(),
            match_value: "a".into(),
            contact_point_field: "emailaddress1".into(),
            contact_point: "a".into(),
        });
        assert!(part_for(&op, API).is_err());
    }

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary_of("multipart/mixed; boundary=batchresponse_3c").as_deref(),
            Some("batchresponse_3c")
        );
        assert_eq!(
            boundary_of("Multipart/Mixed;Boundary=\"b_1\"").as_deref(),
            Some("b_1")
        );
        assert_eq!(boundary_of("application/json"), None);
        assert_eq!(boundary_of("multipart/mixed"), None);
        assert!(new_boundary().starts_with("batch_"));
        assert_eq!(
            content_type("batch_1"),
            "multipart/mixed; boundary=\"batch_1\""
        );
    }

    /// Microsoft's documented sample answer, with the failing-part sample appended as a third part.
    fn reference_response() -> String {
        [
            "--batchresponse_3cace264-86ea-40fe-83d3-954b336c0f4a",
            "Content-Type: multipart/mixed; boundary=changesetresponse_1a5db8a1-ec98-42c4-81f6-6bc6adcfa4bc",
            "",
            "--changesetresponse_1a5db8a1-ec98-42c4-81f6-6bc6adcfa4bc",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 1",
            "",
            "HTTP/1.1 204 No Content",
            "OData-Version: 4.0",
            "Location: https://contoso.crm4.dynamics.com/api/data/v9.2/msdynmkt_contactpointconsent4s(425195a4-7a75-e911-a97a-000d3a34a1bd)",
            "OData-EntityId: https://contoso.crm4.dynamics.com/api/data/v9.2/msdynmkt_contactpointconsent4s(425195a4-7a75-e911-a97a-000d3a34a1bd)",
            "",
            "",
            "--changesetresponse_1a5db8a1-ec98-42c4-81f6-6bc6adcfa4bc",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 2",
            "",
            "HTTP/1.1 204 No Content",
            "OData-Version: 4.0",
            "Location: https://contoso.crm4.dynamics.com/api/data/v9.2/msdynmkt_contactpointconsent4s(495195a4-7a75-e911-a97a-000d3a34a1bd)",
            "OData-EntityId: https://contoso.crm4.dynamics.com/api/data/v9.2/msdynmkt_contactpointconsent4s(495195a4-7a75-e911-a97a-000d3a34a1bd)",
            "",
            "",
            "--changesetresponse_1a5db8a1-ec98-42c4-81f6-6bc6adcfa4bc--",
            "--batchresponse_3cace264-86ea-40fe-83d3-954b336c0f4a",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "HTTP/1.1 400 Bad Request",
            "REQ_ID: 5ecd1cb3-1730-4ffc-909c-d44c22270026",
            "Content-Type: application/json; odata.metadata=minimal",
            "OData-Version: 4.0",
            "",
            "{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred.  The length of the 'subject' attribute of the 'task' entity exceeded the maximum allowed length of '200'.\"}}",
            "--batchresponse_3cace264-86ea-40fe-83d3-954b336c0f4a--",
            "",
        ]
        .join("\r\n")
    }

    const REFERENCE_TYPE: &str =
        "multipart/mixed; boundary=batchresponse_3cace264-86ea-40fe-83d3-954b336c0f4a";

    #[test]
    fn parses_the_reference_sample() {
        let parts = parse_response(REFERENCE_TYPE, &reference_response()).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].status, 204);
        assert!(
            parts[0]
                .header("odata-entityid")
                .unwrap()
                .ends_with("(425195a4-7a75-e911-a97a-000d3a34a1bd)")
        );
        assert_eq!(parts[0].body, "");
        assert_eq!(parts[1].status, 204);
        assert_eq!(parts[2].status, 400);
        assert_eq!(
            parts[2].header("REQ_ID"),
            Some("5ecd1cb3-1730-4ffc-909c-d44c22270026")
        );
        let (code, message) = wire::parse_error_body(parts[2].body.as_bytes());
        assert_eq!(code.as_deref(), Some("0x80044331"));
        assert!(message.starts_with("A validation error occurred."));
    }

    #[test]
    fn tolerates_lf_only_answers() {
        let lf = reference_response().replace("\r\n", "\n");
        let parts = parse_response(REFERENCE_TYPE, &lf).unwrap();
        assert_eq!(
            parts.iter().map(|p| p.status).collect::<Vec<_>>(),
            vec![204, 204, 400]
        );
    }

    #[test]
    fn top_level_parts_with_errors() {
        let body = "--r\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 412 Precondition Failed\r\nContent-Type: application/json\r\n\r\n{\"error\":{\"code\":\"0x80040237\",\"message\":\"A record with matching key values already exists.\"}}\r\n--r\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\n\r\n{\"error\":{\"code\":\"0x80072322\",\"message\":\"x\"}}\r\n--r--\r\n";
        let parts = parse_response("multipart/mixed; boundary=r", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].status, 412);
        assert_eq!(parts[1].header("retry-after"), Some("2"));
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for (content_type, body) in [
            ("application/json", "{}"),
            ("multipart/mixed; boundary=r", ""),
            ("multipart/mixed; boundary=r", "--r\r\n"),
            (
                "multipart/mixed; boundary=r",
                "--r\r\n\r\nnot http\r\n--r--",
            ),
            (
                "multipart/mixed; boundary=r",
                "--r\r\n\r\nHTTP/1.1 abc\r\n--r--",
            ),
            ("multipart/mixed; boundary=r", "--r\r\n\r\n\r\n--r--"),
            (
                "multipart/mixed; boundary=r",
                "--r\r\nContent-Type: multipart/mixed; boundary=s\r\n\r\n--s\r\nContent-Type: multipart/mixed; boundary=t\r\n\r\n--t--\r\n--s--\r\n--r--",
            ),
        ] {
            assert!(parse_response(content_type, body).is_err(), "{body:?}");
        }
        // No parts at all is a valid (empty) answer.
        assert_eq!(
            parse_response("multipart/mixed; boundary=r", "--r--\r\n").unwrap(),
            vec![]
        );
    }
}
