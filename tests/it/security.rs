//! The bearer token and the client secret go only where they belong: no
//! redirect is followed from Dataverse or Entra, and no `@odata.nextLink`
//! leads the client to another origin. Each test runs two tiny loopback
//! servers: the one the client is pointed at, and a "foreign" one that
//! records every request it gets (and would answer it helpfully).

use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::header::{AUTHORIZATION, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use didomi_cpc_sync::adapters::dataverse::{DataverseClient, RetryPolicy};
use didomi_cpc_sync::adapters::entra::provider::EntraTokenProvider;
use didomi_cpc_sync::adapters::entra::{AuthError, BoxFuture, StaticCredentials, TokenSource};
use didomi_cpc_sync::adapters::http::http_client;
use didomi_cpc_sync::config::Credentials;
use didomi_cpc_sync::domain::cpc::{ConsentUpdate, SOURCE_INTERNAL, WriteOp};
use didomi_cpc_sync::domain::decision::ConsentValue;
use didomi_cpc_sync::redact::SecretString;
use reqwest::Url;
use serde_json::json;
use tokio::time::Instant;

const TOKEN: &str = "test-bearer-token-must-not-leak";
const CLIENT_SECRET: &str = "test-client-secret-must-not-leak";
const TENANT: &str = "72f988bf-0000-0000-0000-000000000001";
const CLIENT_ID: &str = "535fb089-9ff3-47b6-9bfb-4f1264799865";

/// A token source handing out one fixed token.
struct FixedToken;

impl TokenSource for FixedToken {
    fn bearer(&self, _force_refresh: bool) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        Box::pin(async { Ok(SecretString::new(TOKEN)) })
    }
}

/// One request a server received: `METHOD path` and its Authorization header.
type Entry = (String, Option<String>);

/// Every request a server received.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Entry>>>);

impl Log {
    fn record(&self, method: &axum::http::Method, uri: &axum::http::Uri, headers: &HeaderMap) {
        let authorization = headers
            .get(AUTHORIZATION)
            .map(|value| value.to_str().unwrap_or("<binary>").to_string());
        self.0
            .lock()
            .unwrap()
            .push((format!("{method} {uri}"), authorization));
    }

    fn entries(&self) -> Vec<Entry> {
        self.0.lock().unwrap().clone()
    }
}

/// Serves `router` on 127.0.0.1 and an OS-chosen port, in the background.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    address
}

/// A server that logs every request and answers it with `answer`.
async fn logging_server(answer: fn() -> Response) -> (SocketAddr, Log) {
    let log = Log::default();
    let recorder = log.clone();
    let router = Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap| {
            let recorder = recorder.clone();
            async move {
                recorder.record(&method, &uri, &headers);
                answer()
            }
        },
    );
    (serve(router).await, log)
}

/// What the foreign server answers: a valid OData page, a valid token
/// response — whatever would let a client that followed the link succeed.
fn helpful_answer() -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({
            "value": [],
            "access_token": "foreign-token", "token_type": "Bearer", "expires_in": 3599
        })
        .to_string(),
    )
        .into_response()
}

/// A server answering every request with `status` and `Location: target`.
async fn redirecting_server(status: StatusCode, target: String) -> (SocketAddr, Log) {
    let log = Log::default();
    let recorder = log.clone();
    let router = Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap| {
            let recorder = recorder.clone();
            let target = target.clone();
            async move {
                recorder.record(&method, &uri, &headers);
                (status, [(LOCATION, target)]).into_response()
            }
        },
    );
    (serve(router).await, log)
}

/// A server answering every GET with one OData page whose nextLink is `link`.
async fn paging_server(link: String) -> (SocketAddr, Log) {
    let log = Log::default();
    let recorder = log.clone();
    let router = Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap| {
            let recorder = recorder.clone();
            let link = link.clone();
            async move {
                recorder.record(&method, &uri, &headers);
                (
                    StatusCode::OK,
                    [
                        ("content-type", "application/json; odata.metadata=minimal"),
                        ("odata-version", "4.0"),
                    ],
                    json!({"value": [], "@odata.nextLink": link}).to_string(),
                )
                    .into_response()
            }
        },
    );
    (serve(router).await, log)
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
    }
}

fn client_at(address: SocketAddr) -> DataverseClient {
    DataverseClient::new(
        http_client(),
        Url::parse(&format!("http://{address}")).unwrap(),
        Arc::new(FixedToken),
        policy(),
    )
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn update() -> Vec<WriteOp> {
    vec![WriteOp::UpdateConsent(ConsentUpdate {
        id: "f1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8".parse().unwrap(),
        etag: "*".into(),
        value: ConsentValue::OptedIn,
        source: SOURCE_INTERNAL,
        reason: "didomi:evt-1@2025-03-14T09:00:00Z".into(),
    })]
}

fn assert_token_reached_only(own: &Log, foreign: &Log, what: &str) {
    let own = own.entries();
    assert!(
        !own.is_empty(),
        "{what}: the client never called its server"
    );
    assert!(
        own.iter()
            .all(|(_, authorization)| authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "{what}: {own:?}"
    );
    assert_eq!(
        foreign.entries(),
        vec![],
        "{what}: the foreign server must receive nothing, least of all the token"
    );
}

// ------------------------------------------------------------- 14. redirects

#[tokio::test]
async fn dataverse_redirects_are_not_followed_with_the_bearer_token() {
    for status in [
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::SEE_OTHER,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ] {
        let (foreign, foreign_log) = logging_server(helpful_answer).await;
        let (own, own_log) = redirecting_server(
            status,
            format!("http://{foreign}/api/data/v9.2/contacts?stolen=1"),
        )
        .await;
        let client = client_at(own);

        let contacts = client
            .find_contacts(
                "emailaddress1",
                "emailaddress1",
                &["jane.doe@example.com".to_string()],
                soon(),
            )
            .await;
        assert!(contacts.is_err(), "{status}: find_contacts {contacts:?}");
        let rows = client
            .consent_rows(&["jane.doe@example.com".to_string()], soon())
            .await;
        assert!(rows.is_err(), "{status}: consent_rows {rows:?}");
        let writes = client.execute_writes(&update(), soon()).await;
        let failed = match &writes {
            Err(_) => true,
            Ok(results) => results.iter().all(Result::is_err),
        };
        assert!(failed, "{status}: execute_writes {writes:?}");

        assert_token_reached_only(&own_log, &foreign_log, &status.to_string());
        assert_eq!(
            own_log.entries().len(),
            3,
            "{status}: a redirect is an answer, not retried: {:?}",
            own_log.entries()
        );
    }
}

// ------------------------------------------------------------- 15. nextLink

#[tokio::test]
async fn next_link_to_another_origin_is_not_followed() {
    let (foreign, foreign_log) = logging_server(helpful_answer).await;
    let foreign_links = [
        format!("http://{foreign}/api/data/v9.2/contacts?$skiptoken=2"),
        format!("//{foreign}/api/data/v9.2/contacts?$skiptoken=2"),
        format!("https://{foreign}/api/data/v9.2/contacts?$skiptoken=2"),
        format!("http://localhost:{}/api/data/v9.2/contacts", foreign.port()),
    ];
    for link in foreign_links {
        let (own, own_log) = paging_server(link.clone()).await;
        let client = client_at(own);
        let contacts = client
            .find_contacts(
                "emailaddress1",
                "emailaddress1",
                &["jane.doe@example.com".to_string()],
                soon(),
            )
            .await;
        let error = contacts.expect_err(&link);
        assert!(!error.is_retryable(), "{link}: {error}");
        assert!(error.to_string().contains("nextLink"), "{link}: {error}");
        assert!(!error.to_string().contains(TOKEN), "{error}");
        let rows = client
            .consent_rows(&["jane.doe@example.com".to_string()], soon())
            .await;
        assert!(rows.is_err(), "{link}: {rows:?}");
        let purposes = client.purposes(soon()).await;
        assert!(purposes.is_err(), "{link}: {purposes:?}");
        assert_token_reached_only(&own_log, &foreign_log, &link);
        assert_eq!(
            own_log.entries().len(),
            3,
            "{link}: {:?}",
            own_log.entries()
        );
    }
}

// ------------------------------------------------------------- 16. Entra authority

fn credentials() -> Credentials {
    Credentials {
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::new(CLIENT_SECRET),
        tenant_id: TENANT.into(),
        instance: Url::parse("https://contoso.crm4.dynamics.com").unwrap(),
    }
}

#[tokio::test]
async fn entra_token_requests_go_only_to_the_configured_authority() {
    // The production handler builds Entra's client with `http_client()`.
    let clients = [("http_client", http_client as fn() -> reqwest::Client)];
    for (name, make) in clients {
        for status in [StatusCode::FOUND, StatusCode::TEMPORARY_REDIRECT] {
            let (foreign, foreign_log) = logging_server(helpful_answer).await;
            let (own, own_log) = redirecting_server(
                status,
                format!("http://{foreign}/{TENANT}/oauth2/v2.0/token"),
            )
            .await;
            let provider = EntraTokenProvider::new(
                make(),
                Url::parse(&format!("http://{own}")).unwrap(),
                Arc::new(StaticCredentials(credentials())),
            );
            let error = provider
                .bearer(false)
                .await
                .expect_err("a redirect is no token");
            let text = error.to_string();
            assert!(!text.contains(CLIENT_SECRET), "{name} {status}: {text}");
            assert!(text.contains("redirect"), "{name} {status}: {text}");
            let own = own_log.entries();
            assert_eq!(own.len(), 1, "{name} {status}: {own:?}");
            assert_eq!(own[0].0, format!("POST /{TENANT}/oauth2/v2.0/token"));
            assert_eq!(
                foreign_log.entries(),
                vec![],
                "{name} {status}: the form with the client secret went elsewhere"
            );
        }
    }
}
