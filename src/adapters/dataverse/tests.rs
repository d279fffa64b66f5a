//! Client tests against a scripted loopback HTTP server: what goes on the
//! wire (headers, encoding, batch bytes) and how retries behave in time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use uuid::Uuid;

use super::*;
use crate::adapters::entra::{AuthError, BoxFuture, TokenSource};
use crate::adapters::http::http_client;
use crate::domain::cpc::{ConsentType, ConsentUpdate, NewConsent, WriteOp};
use crate::domain::decision::ConsentValue;
use crate::redact::SecretString;

/// Hands out `token-<n>`, where n counts forced refreshes.
#[derive(Default)]
struct FakeTokens {
    calls: AtomicUsize,
    refreshes: AtomicUsize,
    fail_first: Mutex<Option<AuthError>>,
}

impl TokenSource for FakeTokens {
    fn bearer(&self, force_refresh: bool) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(error) = self.fail_first.lock().unwrap().take() {
                return Err(error);
            }
            if force_refresh {
                self.refreshes.fetch_add(1, Ordering::SeqCst);
            }
            Ok(SecretString::new(format!(
                "token-{}",
                self.refreshes.load(Ordering::SeqCst)
            )))
        })
    }
}

#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

fn canned(status: u16, body: &str) -> Canned {
    Canned {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

fn with_header(mut c: Canned, name: &str, value: &str) -> Canned {
    c.headers.push((name.into(), value.into()));
    c
}

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Server {
    base: Url,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Canned>>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn push(&self, reply: Canned) {
        self.script.lock().unwrap().push_back(reply);
    }
}

async fn serve(script: Vec<Canned>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let log = seen.clone();
    let queue = script.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let _ = socket.set_nodelay(true);
            let log = log.clone();
            let script = queue.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else {
                    return;
                };
                log.lock().unwrap().push(request);
                let reply = script.lock().unwrap().pop_front().unwrap_or_else(|| {
                    canned(
                        500,
                        "{\"error\":{\"code\":\"\",\"message\":\"script exhausted\"}}",
                    )
                });
                tokio::time::sleep(reply.delay).await;
                let mut out = format!("HTTP/1.1 {} X\r\n", reply.status);
                for (name, value) in &reply.headers {
                    out.push_str(&format!("{name}: {value}\r\n"));
                }
                out.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                    reply.body.len(),
                    reply.body
                ));
                let _ = socket.write_all(out.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Server { base, seen, script }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[header_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
    }
}

fn client(server: &Server, tokens: Arc<FakeTokens>) -> DataverseClient {
    DataverseClient::new(http_client(), server.base.clone(), tokens, fast_policy())
}

fn in_secs(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

const CONTACT_ROW: &str = r#"{"value":[{"@odata.etag":"W/\"1\"","contactid":"70bf4d48-34cb-ed11-b596-0022481d68cd","emailaddress1":"jane.o'brien@example.com"}]}"#;

#[tokio::test]
async fn get_sends_odata_headers_and_hand_encoded_filter() {
    let server = serve(vec![canned(200, CONTACT_ROW)]).await;
    let tokens = Arc::new(FakeTokens::default());
    let contacts = client(&server, tokens)
        .find_contacts(
            "emailaddress1",
            "emailaddress1",
            &[
                "a+b@x.com".into(),
                "jane.o'brien@example.com".into(),
                "A+B@X.com".into(),
            ],
            in_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].contact_point.as_deref(),
        Some("jane.o'brien@example.com")
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.target.replace("%27", "'"),
        "/api/data/v9.2/contacts?$select=contactid,emailaddress1&$filter=emailaddress1%20eq%20'a%2Bb%40x.com'%20or%20emailaddress1%20eq%20'jane.o''brien%40example.com'"
    );
    assert_eq!(request.header("authorization"), Some("Bearer token-0"));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(request.header("odata-maxversion"), Some("4.0"));
    assert_eq!(request.header("odata-version"), Some("4.0"));
    assert_eq!(request.header("if-none-match"), Some("null"));
    assert_eq!(request.header("prefer"), None);
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .starts_with("didomi-cpc-sync/")
    );
}

fn consent_row_json(id: u128, state: i32) -> String {
    format!(
        r#"{{"@odata.etag":"W/\"1\"","msdynmkt_contactpointconsent4id":"{}","msdynmkt_contactpointvalue":"a@x.com","msdynmkt_contactpointtype":534120000,"msdynmkt_contactpointconsenttype":534120000,"msdynmkt_value":534120001,"_msdynmkt_purposeid_value":"10000000-0000-0000-0000-000000000003","_msdynmkt_topicid_value":null,"msdynmkt_reason":null,"statecode":{state},"modifiedon":"2024-05-14T09:12:33Z"}}"#,
        Uuid::from_u128(id)
    )
}

#[tokio::test]
async fn consent_query_has_channel_but_no_state_filter_and_follows_pages() {
    let server = serve(vec![]).await;
    let link = format!(
        "{}api/data/v9.2/msdynmkt_contactpointconsent4s?$skiptoken=abc",
        server.base
    );
    server.push(canned(
        200,
        &format!(
            r#"{{"value":[{}],"@odata.nextLink":"{link}"}}"#,
            consent_row_json(1, 0)
        ),
    ));
    server.push(canned(
        200,
        &format!(r#"{{"value":[{}]}}"#, consent_row_json(2, 1)),
    ));
    let rows = client(&server, Arc::default())
        .with_max_page_size(1)
        .consent_rows(&["a@x.com".into()], in_secs(10))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].state, 1, "inactive rows are returned");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let target = seen[0].target.replace("%27", "'");
    assert!(
        target.ends_with("&$filter=msdynmkt_contactpointtype%20eq%20534120000%20and%20(msdynmkt_contactpointvalue%20eq%20'a%40x.com')"),
        "{target}"
    );
    assert!(!target.contains("statecode%20eq"), "{target}");
    assert!(target.contains("statecode,modifiedon"), "{target}");
    assert_eq!(
        seen[1].target,
        "/api/data/v9.2/msdynmkt_contactpointconsent4s?$skiptoken=abc"
    );
    for request in &seen {
        assert_eq!(request.header("prefer"), Some("odata.maxpagesize=1"));
        assert_eq!(request.header("authorization"), Some("Bearer token-0"));
    }
}

#[tokio::test]
async fn long_value_lists_are_split_into_several_gets() {
    let server = serve(vec![]).await;
    for id in 0..20 {
        server.push(canned(
            200,
            &format!(r#"{{"value":[{}]}}"#, consent_row_json(id % 2, 0)),
        ));
    }
    let values: Vec<String> = (0..60).map(|i| format!("user{i:03}@example.com")).collect();
    let rows = client(&server, Arc::default())
        .with_max_url_len(1500)
        .consent_rows(&values, in_secs(10))
        .await
        .unwrap();
    let seen = server.seen();
    assert!(seen.len() >= 2, "{}", seen.len());
    assert!(seen.len() < 10, "{}", seen.len());
    assert_eq!(rows.len(), 2, "rows repeated across requests are kept once");
    let mut mentioned = 0;
    for request in &seen {
        assert!(request.target.len() + server.base.as_str().len() <= 1500);
        mentioned += request.target.matches("%40example.com").count();
    }
    assert_eq!(mentioned, 60, "every value asked exactly once");
}

#[tokio::test]
async fn foreign_next_link_is_refused_before_the_token_goes_there() {
    let server = serve(vec![canned(
        200,
        r#"{"value":[],"@odata.nextLink":"https://evil.example/api/data/v9.2/contacts?$skiptoken=1"}"#,
    )])
    .await;
    let error = client(&server, Arc::default())
        .purposes(in_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::Protocol(_)), "{error}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("evil.example"), "{error}");
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn next_link_origin_check() {
    let instance = Url::parse("https://contoso.crm4.dynamics.com/").unwrap();
    assert!(
        next_link(
            &instance,
            "https://contoso.crm4.dynamics.com/api/data/v9.2/contacts?$skiptoken=x"
        )
        .is_ok()
    );
    assert!(
        next_link(
            &instance,
            "https://contoso.crm4.dynamics.com:443/api/data/v9.2/x"
        )
        .is_ok()
    );
    assert!(next_link(&instance, "/api/data/v9.2/contacts?$skiptoken=x").is_ok());
    for bad in [
        "http://contoso.crm4.dynamics.com/api/data/v9.2/x",
        "https://contoso.crm4.dynamics.com:8443/api/data/v9.2/x",
        "https://evil.example/api/data/v9.2/x",
        "https://contoso.crm4.dynamics.com.evil.example/x",
        "//evil.example/x",
        "https://[::1",
    ] {
        assert!(next_link(&instance, bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn throttling_waits_retry_after_then_succeeds() {
    let server = serve(vec![
        with_header(
            canned(429, r#"{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit"}}"#),
            "Retry-After",
            "0.3",
        ),
        canned(200, r#"{"value":[]}"#),
    ])
    .await;
    let started = Instant::now();
    let purposes = client(&server, Arc::default())
        .purposes(in_secs(10))
        .await
        .unwrap();
    assert!(purposes.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn deadline_shorter_than_retry_after_returns_at_once() {
    let server = serve(vec![with_header(
        canned(429, r#"{"error":{"code":"0x80072322","message":"x"}}"#),
        "Retry-After",
        "30",
    )])
    .await;
    let started = Instant::now();
    let error = client(&server, Arc::default())
        .purposes(Instant::now() + Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "did not sleep");
    assert!(error.is_retryable());
    assert!(error.deadline_reached());
    assert_eq!(error.status(), Some(429));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn request_timeout_is_clipped_to_the_deadline() {
    let mut slow = canned(200, r#"{"value":[]}"#);
    slow.delay = Duration::from_secs(5);
    let server = serve(vec![slow]).await;
    let started = Instant::now();
    let error = client(&server, Arc::default())
        .topics(Instant::now() + Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(error.is_retryable(), "{error}");
    assert!(error.deadline_reached(), "{error}");
}

#[tokio::test]
async fn dropping_the_call_stops_the_wait() {
    let server = serve(vec![with_header(
        canned(429, r#"{"error":{"code":"0x80072322","message":"x"}}"#),
        "Retry-After",
        "20",
    )])
    .await;
    let client = client(&server, Arc::default());
    let started = Instant::now();
    let outcome =
        tokio::time::timeout(Duration::from_millis(300), client.purposes(in_secs(60))).await;
    assert!(outcome.is_err(), "still waiting when dropped");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn unavailable_backs_off_and_attempts_are_bounded() {
    let server = serve((0..10).map(|_| canned(503, "")).collect()).await;
    let error = client(&server, Arc::default())
        .purposes(in_secs(10))
        .await
        .unwrap_err();
    assert_eq!(server.seen().len(), 4, "max_attempts");
    assert_eq!(error.status(), Some(503));
    assert!(error.is_retryable());
    assert!(!error.deadline_reached());
}

#[tokio::test]
async fn unauthorized_refreshes_the_token_once() {
    let server = serve(vec![canned(401, ""), canned(200, r#"{"value":[]}"#)]).await;
    let tokens = Arc::new(FakeTokens::default());
    client(&server, tokens.clone())
        .purposes(in_secs(10))
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("authorization"), Some("Bearer token-0"));
    assert_eq!(seen[1].header("authorization"), Some("Bearer token-1"));
    assert_eq!(tokens.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unauthorized_twice_is_permanent() {
    let server = serve(vec![canned(401, ""), canned(401, ""), canned(200, "{}")]).await;
    let tokens = Arc::new(FakeTokens::default());
    let error = client(&server, tokens.clone())
        .purposes(in_secs(10))
        .await
        .unwrap_err();
    assert_eq!(server.seen().len(), 2);
    assert_eq!(error.status(), Some(401));
    assert!(!error.is_retryable());
    assert_eq!(tokens.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn forbidden_is_not_resent_within_the_invocation() {
    let server = serve(vec![with_header(
        canned(403, r#"{"error":{"code":"0x80072560","message":"The user is not a member of the organization."}}"#),
        "x-ms-service-request-id",
        "req-1",
    )])
    .await;
    let error = client(&server, Arc::default())
        .purposes(in_secs(10))
        .await
        .unwrap_err();
    assert_eq!(server.seen().len(), 1);
    assert_eq!(error.code(), Some("0x80072560"));
    assert_eq!(error.request_id(), Some("req-1"));
    assert!(!error.is_transient());
    assert!(error.to_string().contains("Application User"), "{error}");
}

#[tokio::test]
async fn retryable_token_failure_is_retried_and_permanent_one_is_not() {
    let server = serve(vec![canned(200, r#"{"value":[]}"#)]).await;
    let tokens = Arc::new(FakeTokens::default());
    *tokens.fail_first.lock().unwrap() = Some(AuthError::Unavailable("503".into()));
    client(&server, tokens.clone())
        .purposes(in_secs(10))
        .await
        .unwrap();
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 2);

    let tokens = Arc::new(FakeTokens::default());
    *tokens.fail_first.lock().unwrap() = Some(AuthError::UnknownTenant {
        tenant_id: "t".into(),
    });
    let error = client(&server, tokens.clone())
        .purposes(in_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::Auth(_)));
    assert!(!error.is_retryable());
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = serve(vec![with_header(
        canned(302, ""),
        "Location",
        "http://127.0.0.2:9/steal",
    )])
    .await;
    let error = client(&server, Arc::default())
        .purposes(in_secs(10))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(302));
    assert!(!error.is_retryable());
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn bad_input_is_refused_without_a_request() {
    let server = serve(vec![]).await;
    let client = client(&server, Arc::default());
    let error = client
        .find_contacts(
            "emailaddress1 eq 'x' or contactid",
            "emailaddress1",
            &["a".into()],
            in_secs(10),
        )
        .await
        .unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::InvalidInput(_)));
    assert!(
        client
            .find_contacts("emailaddress1", "emailaddress1", &[], in_secs(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        client
            .consent_rows(&["".into()], in_secs(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        client
            .execute_writes(&[], in_secs(10))
            .await
            .unwrap()
            .is_empty()
    );
    let past = Instant::now() - Duration::from_millis(1);
    let error = client.purposes(past).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(server.seen().len(), 0);
}

#[tokio::test]
async fn garbage_answers_are_protocol_errors() {
    let server = serve(vec![
        canned(200, "not json"),
        canned(200, r#"{"value":[{"msdynmkt_purposeid":"nope"}]}"#),
    ])
    .await;
    let client = client(&server, Arc::default());
    for _ in 0..2 {
        let error = client.purposes(in_secs(10)).await.unwrap_err();
        assert!(matches!(error.kind(), ErrorKind::Protocol(_)), "{error}");
    }
}

fn new_consent(id: u128) -> WriteOp {
    WriteOp::CreateConsent(NewConsent {
        id: Uuid::from_u128(id),
        contact_point: "a+b@x.com".into(),
        consent_type: ConsentType::Purpose,
        value: ConsentValue::OptedIn,
        purpose_id: Uuid::from_u128(3),
        topic_id: None,
        source: 534_120_000,
        reason: "m".into(),
    })
}

fn batch_answer(statuses: &[(u16, &str, &str)]) -> Canned {
    let mut body = String::new();
    for (status, extra, json) in statuses {
        body.push_str("--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n");
        body.push_str(&format!(
            "HTTP/1.1 {status} X\r\n{extra}OData-Version: 4.0\r\n\r\n{json}\r\n"
        ));
    }
    body.push_str("--batchresponse_1--\r\n");
    Canned {
        status: 200,
        headers: vec![(
            "Content-Type".into(),
            "multipart/mixed; boundary=batchresponse_1".into(),
        )],
        body,
        delay: Duration::ZERO,
    }
}

#[tokio::test]
async fn batch_maps_parts_and_resends_throttled_ones_once() {
    let server = serve(vec![
        batch_answer(&[
            (204, "", ""),
            (412, "", r#"{"error":{"code":"0x80040237","message":"A record with matching key values already exists."}}"#),
            (429, "Retry-After: 0\r\n", r#"{"error":{"code":"0x80072322","message":"x"}}"#),
            (404, "REQ_ID: r-4\r\n", r#"{"error":{"code":"0x80040217","message":"Entity 'msdynmkt_purpose' With Id = 00000000-0000-0000-0000-000000000003 Does Not Exist"}}"#),
        ]),
        batch_answer(&[(204, "", "")]),
    ])
    .await;
    let ops = vec![
        new_consent(1),
        new_consent(2),
        WriteOp::UpdateConsent(ConsentUpdate {
            id: Uuid::from_u128(9),
            etag: "W/\"9\"".into(),
            value: ConsentValue::OptedOut,
            source: 534_120_000,
            reason: "m".into(),
        }),
        new_consent(4),
    ];
    let results = client(&server, Arc::default())
        .execute_writes(&ops, in_secs(10))
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok());
    let dup = results[1].as_ref().unwrap_err();
    assert_eq!(dup.status(), Some(412));
    assert!(dup.is_retryable(), "create-only 412 is retryable");
    assert_eq!(dup.operation(), "$batch part 2 (create consent)");
    assert!(
        results[2].is_ok(),
        "the throttled part was re-sent and succeeded"
    );
    let missing = results[3].as_ref().unwrap_err();
    assert!(!missing.is_retryable());
    assert_eq!(missing.request_id(), Some("r-4"));
    assert!(
        missing.to_string().contains("purpose GUID does not exist"),
        "{missing}"
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let first = &seen[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.target, "/api/data/v9.2/$batch");
    assert_eq!(first.header("prefer"), Some("odata.continue-on-error"));
    let content_type = first.header("content-type").unwrap();
    let boundary = batch::boundary_of(content_type).unwrap();
    assert!(boundary.starts_with("batch_"), "{content_type}");
    assert_eq!(first.body.matches(&format!("--{boundary}\r\n")).count(), 4);
    assert!(first.body.ends_with(&format!("--{boundary}--\r\n")));
    assert_eq!(first.body.matches("If-None-Match: *").count(), 3);
    assert_eq!(first.body.matches("If-Match: W/\"9\"").count(), 1);
    assert_eq!(first.body.matches("Content-ID: ").count(), 4);
    // The re-send carries only the throttled update.
    let second = &seen[1];
    assert_eq!(second.body.matches("PATCH ").count(), 1);
    assert!(
        second
            .body
            .contains("msdynmkt_contactpointconsent4s(00000000-0000-0000-0000-000000000009)")
    );
}

#[tokio::test]
async fn batch_failure_as_a_whole_is_the_outer_error_and_a_short_answer_fails_it_retryably() {
    let server = serve(vec![canned(
        400,
        r#"{"error":{"code":"0x80048d19","message":"Stream was not readable."}}"#,
    )])
    .await;
    let error = client(&server, Arc::default())
        .execute_writes(&[new_consent(1)], in_secs(10))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert_eq!(error.operation(), "$batch");

    // One answer part for two requests: neither can be trusted.
    let server = serve(vec![batch_answer(&[(204, "", "")])]).await;
    let error = client(&server, Arc::default())
        .execute_writes(&[new_consent(1), new_consent(2)], in_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::BatchMismatch(_)),
        "{error}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn query_batch_answers_out_of_content_id_order_are_refused() {
    // The contacts answer carries Content-ID 2 and the rows answer 1: taking
    // them by position would read rows as contacts.
    let mut answer = batch_answer(&[]);
    answer.body = ["2", "1"]
        .iter()
        .map(|id| {
            format!(
                "--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {id}\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{{\"value\":[]}}\r\n"
            )
        })
        .collect::<String>()
        + "--batchresponse_1--\r\n";
    let server = serve(vec![answer]).await;
    let error = client(&server, Arc::default())
        .contacts_and_rows(
            "emailaddress1",
            "emailaddress1",
            &["jane@example.com".to_string()],
            &["jane@example.com".to_string()],
            in_secs(10),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::BatchMismatch(_)),
        "{error}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn invalid_ops_fail_alone() {
    let server = serve(vec![batch_answer(&[(204, "", "")])]).await;
    let bad = WriteOp::CreateContact(crate::domain::cpc::NewContact {
        id: Uuid::nil(),
        match_field: "Bad Field".into(),
        match_value: "a".into(),
        contact_point_field: "emailaddress1".into(),
        contact_point: "a".into(),
    });
    let results = client(&server, Arc::default())
        .execute_writes(&[bad, new_consent(1)], in_secs(10))
        .await
        .unwrap();
    assert!(matches!(
        results[0].as_ref().unwrap_err().kind(),
        ErrorKind::InvalidInput(_)
    ));
    assert!(results[1].is_ok());
    assert_eq!(server.seen()[0].body.matches("PATCH ").count(), 1);
}

#[test]
fn debug_output_shows_no_token() {
    let client = DataverseClient::new(
        http_client(),
        Url::parse("https://contoso.crm4.dynamics.com/some/path?x=1").unwrap(),
        Arc::new(FakeTokens::default()),
        RetryPolicy::default(),
    );
    assert_eq!(
        client.instance().as_str(),
        "https://contoso.crm4.dynamics.com/"
    );
    let debug = format!("{client:?}");
    assert!(debug.contains("contoso.crm4.dynamics.com"), "{debug}");
    assert!(!debug.contains("token"), "{debug}");
}
