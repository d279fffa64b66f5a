//! The token provider against a loopback token endpoint (`TokenServer`):
//! caching, single flight, rotation, and how Entra's answers are classified.

use axum::serve::ListenerExt;
use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::routing::post;

use super::*;
use crate::adapters::entra::StaticCredentials;

const TENANT: &str = "72f988bf-0000-0000-0000-000000000001";
const CLIENT: &str = "535fb089-9ff3-47b6-9bfb-4f1264799865";
const SECRET: &str = "first-s3cret-VALUE";
const ROTATED: &str = "rotated-s3cret-VALUE";
const TOKEN: &str = "eyJ0eXAiOiJKV1Qi.test-access-token";

type Responder = Arc<dyn Fn(usize, &HashMap<String, String>) -> (u16, String) + Send + Sync>;
type Log = Arc<Mutex<Vec<HashMap<String, String>>>>;
type ServerState = (Log, Responder, Duration);

/// A token endpoint on a loopback port that records every request.
struct TokenServer {
    authority: Url,
    requests: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenServer {
    async fn start(delay: Duration, respond: Responder) -> Self {
        let requests: Log = Arc::default();
        let state = (requests.clone(), respond, delay);
        let app = Router::new()
            .route(
                "/{tenant}/oauth2/v2.0/token",
                post(
                    |State((requests, respond, delay)): State<ServerState>,
                     Path(tenant): Path<String>,
                     body: String| async move {
                        let mut form: HashMap<String, String> =
                            url::form_urlencoded::parse(body.as_bytes())
                                .into_owned()
                                .collect();
                        form.insert("tenant".into(), tenant);
                        let index = {
                            let mut seen = requests.lock().unwrap();
                            seen.push(form.clone());
                            seen.len() - 1
                        };
                        tokio::time::sleep(delay).await;
                        let (status, body) = respond(index, &form);
                        (
                            StatusCode::from_u16(status).unwrap(),
                            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                            body,
                        )
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            authority: Url::parse(&format!("http://{address}")).unwrap(),
            requests,
            task,
        }
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn request(&self, index: usize) -> HashMap<String, String> {
        self.requests.lock().unwrap()[index].clone()
    }
}

fn ok_token(token: &str, expires_in: &str) -> (u16, String) {
    (
        200,
        format!(
            r#"{{"token_type":"Bearer","expires_in":{expires_in},"ext_expires_in":3599,"access_token":"{token}"}}"#
        ),
    )
}

fn entra_error(status: u16, error: &str, code: u64, description: &str) -> (u16, String) {
    let body = serde_json::json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2023-06-02 21:00:26Z"),
        "error_codes": [code],
        "timestamp": "2023-06-02 21:00:26Z",
        "trace_id": "0000aaaa-11bb-cccc-dd33-eeeeee333333",
        "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    (status, body.to_string())
}

fn invalid_secret() -> (u16, String) {
    entra_error(
        401,
        "invalid_client",
        7_000_215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
    )
}

fn credentials(secret: &str) -> Credentials {
    Credentials {
        client_id: CLIENT.to_string(),
        client_secret: SecretString::new(secret),
        tenant_id: TENANT.to_string(),
        instance: Url::parse("https://contoso.crm4.dynamics.com").unwrap(),
    }
}

/// Returns one set of credentials, and another after a forced refresh.
struct RotatingSource {
    before: Credentials,
    after: Credentials,
    reads: Mutex<Vec<bool>>,
}

impl RotatingSource {
    fn new(before: &str, after: &str) -> Arc<Self> {
        Arc::new(Self {
            before: credentials(before),
            after: credentials(after),
            reads: Mutex::new(Vec::new()),
        })
    }

    fn reads(&self) -> Vec<bool> {
        self.reads.lock().unwrap().clone()
    }
}

impl CredentialSource for RotatingSource {
    fn credentials(&self, force_refresh: bool) -> BoxFuture<'_, Result<Credentials, AuthError>> {
        let mut reads = self.reads.lock().unwrap();
        reads.push(force_refresh);
        let rotated = reads.iter().any(|forced| *forced);
        let credentials = if rotated { &self.after } else { &self.before };
        let credentials = credentials.clone();
        Box::pin(async move { Ok(credentials) })
    }
}

fn provider(server: &TokenServer, source: Arc<dyn CredentialSource>) -> EntraTokenProvider {
    EntraTokenProvider::new(
        crate::adapters::http::http_client(),
        server.authority.clone(),
        source,
    )
}

fn static_source() -> Arc<dyn CredentialSource> {
    Arc::new(StaticCredentials(credentials(SECRET)))
}

async fn error_for(response: (u16, String)) -> (AuthError, usize) {
    let server = TokenServer::start(Duration::ZERO, Arc::new(move |_, _| response.clone())).await;
    let error = provider(&server, static_source())
        .bearer(false)
        .await
        .expect_err("the token request should fail");
    (error, server.count())
}

#[tokio::test]
async fn first_token_is_requested_with_client_credentials_and_then_cached() {
    let server = TokenServer::start(Duration::ZERO, Arc::new(|_, _| ok_token(TOKEN, "3599"))).await;
    let provider = provider(&server, static_source());

    let first = provider.bearer(false).await.unwrap();
    let second = provider.bearer(false).await.unwrap();

    assert_eq!(first.expose(), TOKEN);
    assert_eq!(second.expose(), TOKEN);
    assert_eq!(server.count(), 1, "the second call must use the cache");
    let form = server.request(0);
    assert_eq!(form["tenant"], TENANT);
    assert_eq!(form["client_id"], CLIENT);
    assert_eq!(form["client_secret"], SECRET);
    assert_eq!(form["scope"], "https://contoso.crm4.dynamics.com/.default");
    assert_eq!(form["grant_type"], "client_credentials");
}

#[tokio::test]
async fn expires_in_given_as_a_numeric_string_is_accepted() {
    let server =
        TokenServer::start(Duration::ZERO, Arc::new(|_, _| ok_token(TOKEN, "\"3599\""))).await;
    let token = provider(&server, static_source())
        .bearer(false)
        .await
        .unwrap();
    assert_eq!(token.expose(), TOKEN);
}

#[test]
fn refresh_margin_is_five_minutes_or_half_a_short_lifetime() {
    assert_eq!(
        refresh_after(Duration::from_secs(3599)),
        Duration::from_secs(3299)
    );
    assert_eq!(
        refresh_after(Duration::from_secs(600)),
        Duration::from_secs(300)
    );
    assert_eq!(
        refresh_after(Duration::from_secs(120)),
        Duration::from_secs(60)
    );
    assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
}

#[tokio::test]
async fn token_is_replaced_once_inside_the_refresh_margin_although_not_yet_expired() {
    // A 2 s token is refreshed after 1 s (half its lifetime), before it expires.
    let server = TokenServer::start(
        Duration::ZERO,
        Arc::new(|index, _| ok_token(&format!("token-{index}"), "2")),
    )
    .await;
    let provider = provider(&server, static_source());

    assert_eq!(provider.bearer(false).await.unwrap().expose(), "token-0");
    assert_eq!(provider.bearer(false).await.unwrap().expose(), "token-0");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(provider.bearer(false).await.unwrap().expose(), "token-1");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn a_token_whose_refresh_fails_is_still_used_until_it_expires() {
    // A 2 s token: refreshed after 1 s, expired after 2 s. The refresh fails.
    let server = TokenServer::start(
        Duration::ZERO,
        Arc::new(|index, _| {
            if index == 0 {
                ok_token("token-0", "2")
            } else {
                (503, "{}".to_string())
            }
        }),
    )
    .await;
    let provider = provider(&server, static_source());
    assert_eq!(provider.bearer(false).await.unwrap().expose(), "token-0");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        provider.bearer(false).await.unwrap().expose(),
        "token-0",
        "inside its lifetime the old token still works"
    );
    assert_eq!(server.count(), 2, "a refresh was tried");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(provider.bearer(false).await.is_err(), "expired: no token");
}

#[tokio::test]
async fn a_forced_refresh_that_fails_does_not_offer_the_refused_token_again() {
    let server = TokenServer::start(
        Duration::ZERO,
        Arc::new(|index, _| {
            if index == 0 {
                ok_token("token-0", "3599")
            } else {
                (503, "{}".to_string())
            }
        }),
    )
    .await;
    let provider = provider(&server, static_source());
    assert_eq!(provider.bearer(false).await.unwrap().expose(), "token-0");
    assert!(provider.bearer(true).await.is_err());
}

#[tokio::test]
async fn forced_refresh_discards_the_cached_token() {
    let server = TokenServer::start(
        Duration::ZERO,
        Arc::new(|index, _| ok_token(&format!("token-{index}"), "3599")),
    )
    .await;
    let provider = provider(&server, static_source());

    assert_eq!(provider.bearer(false).await.unwrap().expose(), "token-0");
    assert_eq!(provider.bearer(true).await.unwrap().expose(), "token-1");
    assert_eq!(provider.bearer(false).await.unwrap().expose(), "token-1");
    assert_eq!(server.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_on_a_cold_cache_share_one_token_request() {
    let server = TokenServer::start(
        Duration::from_millis(300),
        Arc::new(|index, _| ok_token(&format!("token-{index}"), "3599")),
    )
    .await;
    let provider = Arc::new(provider(&server, static_source()));

    let callers: Vec<_> = (0..16)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.bearer(false).await })
        })
        .collect();
    let tokens = futures_util::future::join_all(callers).await;

    for token in tokens {
        assert_eq!(token.unwrap().unwrap().expose(), "token-0");
    }
    assert_eq!(
        server.count(),
        1,
        "exactly one token request for 16 callers"
    );
}

#[tokio::test]
async fn invalid_client_rereads_the_credentials_once_and_uses_the_rotated_secret() {
    let server = TokenServer::start(
        Duration::ZERO,
        Arc::new(|_, form| {
            if form["client_secret"] == ROTATED {
                ok_token(TOKEN, "3599")
            } else {
                invalid_secret()
            }
        }),
    )
    .await;
    let source = RotatingSource::new(SECRET, ROTATED);
    let provider = provider(&server, source.clone());

    let token = provider.bearer(false).await.unwrap();

    assert_eq!(token.expose(), TOKEN);
    assert_eq!(source.reads(), vec![false, true]);
    assert_eq!(server.count(), 2);
    assert_eq!(server.request(1)["client_secret"], ROTATED);
}

#[tokio::test]
async fn invalid_client_after_the_reread_is_invalid_client_and_not_retryable() {
    let server = TokenServer::start(Duration::ZERO, Arc::new(|_, _| invalid_secret())).await;
    let source = RotatingSource::new(SECRET, ROTATED);
    let provider = provider(&server, source.clone());

    let error = provider.bearer(false).await.unwrap_err();

    assert_eq!(
        error,
        AuthError::InvalidClient {
            code: "AADSTS7000215".into(),
            client_id: CLIENT.into()
        }
    );
    assert!(!error.is_retryable());
    assert_eq!(source.reads(), vec![false, true], "re-read exactly once");
    assert_eq!(server.count(), 2, "one retry with the re-read secret");
}

#[tokio::test]
async fn unchanged_credentials_after_the_reread_are_not_sent_again() {
    let server = TokenServer::start(Duration::ZERO, Arc::new(|_, _| invalid_secret())).await;
    let source = RotatingSource::new(SECRET, SECRET);
    let provider = provider(&server, source.clone());

    let error = provider.bearer(false).await.unwrap_err();

    assert!(
        matches!(error, AuthError::InvalidClient { .. }),
        "{error:?}"
    );
    assert_eq!(source.reads(), vec![false, true]);
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn expired_secret_code_7000222_counts_as_invalid_client() {
    let (error, _) = error_for(entra_error(
        401,
        "invalid_client",
        7_000_222,
        "The provided client secret keys are expired.",
    ))
    .await;
    assert_eq!(
        error,
        AuthError::InvalidClient {
            code: "AADSTS7000222".into(),
            client_id: CLIENT.into()
        }
    );
}

#[tokio::test]
async fn unknown_tenant_90002_is_unknown_tenant() {
    let (error, count) = error_for(entra_error(
        400,
        "invalid_request",
        90_002,
        "Tenant '72f988bf-0000-0000-0000-000000000001' not found.",
    ))
    .await;
    assert_eq!(
        error,
        AuthError::UnknownTenant {
            tenant_id: TENANT.into()
        }
    );
    assert!(!error.is_retryable());
    assert_eq!(count, 1);
}

#[tokio::test]
async fn unknown_app_700016_is_unknown_client() {
    let (error, _) = error_for(entra_error(
        400,
        "unauthorized_client",
        700_016,
        "Application with identifier '535fb089-9ff3-47b6-9bfb-4f1264799865' was not found in the directory.",
    ))
    .await;
    assert_eq!(
        error,
        AuthError::UnknownClient {
            client_id: CLIENT.into()
        }
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn unknown_resource_500011_is_wrong_resource() {
    let (error, _) = error_for(entra_error(
        400,
        "invalid_resource",
        500_011,
        "The resource principal named https://contoso.crm4.dynamics.com was not found in the tenant.",
    ))
    .await;
    assert_eq!(
        error,
        AuthError::WrongResource {
            scope: "https://contoso.crm4.dynamics.com/.default".into()
        }
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn the_error_code_decides_not_the_description_text() {
    // The text talks about a tenant, the code says invalid scope: Rejected.
    let (error, _) = error_for(entra_error(
        400,
        "invalid_scope",
        70_011,
        "Tenant not found; invalid client secret provided.",
    ))
    .await;
    assert!(matches!(error, AuthError::Rejected { .. }), "{error:?}");
}

#[tokio::test]
async fn other_rejections_keep_only_the_first_description_line() {
    let (error, _) = error_for(entra_error(
        400,
        "invalid_scope",
        70_011,
        "The provided value for the input parameter 'scope' is not valid.",
    ))
    .await;
    assert_eq!(
        error,
        AuthError::Rejected {
            status: 400,
            error: "invalid_scope".into(),
            description:
                "AADSTS70011: The provided value for the input parameter 'scope' is not valid."
                    .into(),
        }
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn service_unavailable_503_is_unavailable_and_retryable() {
    let (error, _) = error_for((
        503,
        r#"{"error":"temporarily_unavailable","error_codes":[50029]}"#.into(),
    ))
    .await;
    assert!(matches!(error, AuthError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn throttling_429_is_unavailable_and_retryable() {
    let (error, _) = error_for((429, String::new())).await;
    assert!(matches!(error, AuthError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_slow_token_endpoint_times_out_as_unavailable() {
    let server = TokenServer::start(
        Duration::from_secs(5),
        Arc::new(|_, _| ok_token(TOKEN, "3599")),
    )
    .await;
    let provider =
        provider(&server, static_source()).with_request_timeout(Duration::from_millis(200));
    let error = provider.bearer(false).await.unwrap_err();
    assert!(matches!(error, AuthError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_unavailable_and_retryable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = Url::parse(&format!("http://{}", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    let provider = EntraTokenProvider::new(
        crate::adapters::http::http_client(),
        authority,
        static_source(),
    );
    let error = provider.bearer(false).await.unwrap_err();
    assert!(matches!(error, AuthError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_success_without_access_token_is_rejected() {
    let (error, _) = error_for((200, r#"{"token_type":"Bearer","expires_in":3599}"#.into())).await;
    assert!(
        matches!(&error, AuthError::Rejected { error, .. } if error == "invalid_token_response"),
        "{error:?}"
    );
}

#[tokio::test]
async fn errors_never_show_the_client_secret_or_the_token() {
    let echo = format!("Secret {SECRET} is not valid here.");
    let mut errors = vec![
        error_for(invalid_secret()).await.0,
        error_for(entra_error(400, "invalid_scope", 70_011, &echo))
            .await
            .0,
        error_for((
            503,
            format!(r#"{{"error":"server_error","error_description":"{SECRET}"}}"#),
        ))
        .await
        .0,
        error_for((
            200,
            format!(r#"{{"access_token":"{TOKEN}","token_type":"pop","expires_in":1}}"#),
        ))
        .await
        .0,
    ];
    errors.push(
        error_for((
            200,
            format!(r#"{{"access_token":"{TOKEN}","expires_in":"soon"}}"#),
        ))
        .await
        .0,
    );
    for error in errors {
        for shown in [format!("{error}"), format!("{error:?}")] {
            assert!(!shown.contains(SECRET), "secret leaked: {shown}");
            assert!(
                !shown.contains("test-access-token"),
                "token leaked: {shown}"
            );
        }
    }
}
