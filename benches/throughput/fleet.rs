//! A fleet of real `bootstrap` processes fed from one emulated SQS queue,
//! as Lambda's event-source mapping feeds a function at a given
//! `MaximumConcurrency`: each process is one Lambda instance (its own
//! connection pool, token, metadata and pacer, after its own init), and the
//! one loopback server here plays both sides the function talks to besides
//! the emulator:
//!
//! - the Lambda Runtime API (`/2018-06-01/runtime/…`): `next` hands out the
//!   next batch of up to `BatchSize` visible messages as an SQS event, the
//!   response's `batchItemFailures` go back to the queue, everything else in
//!   the batch is deleted;
//! - the SQS API (`ChangeMessageVisibility`, the function's backoff, and
//!   `SendMessage` to the dead-letter queue), AWS JSON 1.0 on `POST /`.
//!
//! A message that failed comes back after the visibility the function set
//! for it, or else after the queue's visibility timeout, as on SQS. Nothing
//! here decides anything for the function: it only counts.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::time::Instant;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const QUEUE: &str = "didomi-cpc-sync-webhooks";

/// How the fleet runs, in the template's terms.
#[derive(Clone, Debug)]
pub struct FleetSettings {
    /// Concurrent instances (`MaximumConcurrency`).
    pub processes: usize,
    /// Messages per invocation (`BatchSize`).
    pub batch_size: usize,
    /// The function's timeout (`FunctionTimeout`): each invocation's deadline.
    pub function_timeout: Duration,
    /// The queue's visibility timeout (6 × the function timeout in the template).
    pub visibility_timeout: Duration,
}

/// What the queue saw.
#[derive(Clone, Debug, Default)]
pub struct FleetCounts {
    /// Messages deleted after an invocation (written, skipped or dead-lettered).
    pub deleted: u64,
    /// Messages an invocation failed back to the queue (`batchItemFailures`).
    pub failed_back: u64,
    /// Messages the function sent to the dead-letter queue.
    pub dead_lettered: u64,
    /// Invocations answered.
    pub invocations: u64,
    /// Messages still in the queue or in flight.
    pub remaining: usize,
}

struct Message {
    id: String,
    body: String,
    receives: u32,
}

struct InFlight {
    messages: Vec<Message>,
    handed_out: Instant,
}

#[derive(Default)]
struct Queue {
    visible: VecDeque<Message>,
    hidden: Vec<(Instant, Message)>,
    in_flight: HashMap<String, InFlight>,
    /// Visibility the function set, by receipt handle.
    visibility: HashMap<String, Duration>,
    /// Batches are handed out only once the fleet is released.
    released: bool,
    /// `next` calls made before release: each instance makes one after its init.
    waiting_before_release: usize,
    counts: FleetCounts,
    /// How long each invocation took, from hand-out to response, in order.
    durations: Vec<Duration>,
    next_request: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    settings: FleetSettings,
}

type App = Arc<Shared>;

/// A running fleet; the processes are killed when it is dropped.
pub struct Fleet {
    shared: App,
    children: Vec<Child>,
    server: tokio::task::JoinHandle<()>,
    /// Where each process's stderr (its logs) goes, for a look after a run.
    pub log_dir: PathBuf,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.server.abort();
    }
}

impl Fleet {
    /// Starts the queue server and `settings.processes` `bootstrap`s that read
    /// their integration document from the emulator's Secrets Manager
    /// (`secret_name`) and talk to it as Entra and Dataverse. Waits until
    /// every process has finished its init and asks for work.
    pub async fn start(emulator_url: &str, secret_name: &str, settings: FleetSettings) -> Fleet {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            settings: settings.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Loopback answers are written in two parts: without TCP_NODELAY,
        // Nagle and delayed ACKs would add ~40 ms to each.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/", post(sqs))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service())
                .await
                .unwrap();
        });
        let log_dir = std::env::temp_dir().join(format!("cpc-sync-fleet-{port}"));
        std::fs::create_dir_all(&log_dir).unwrap();
        let mut children = Vec::new();
        for instance in 0..settings.processes {
            children.push(spawn(instance, port, emulator_url, secret_name, &log_dir));
        }
        let fleet = Fleet {
            shared,
            children,
            server,
            log_dir,
        };
        fleet.wait_until_all_ask_for_work().await;
        fleet
    }

    async fn wait_until_all_ask_for_work(&self) {
        let started = Instant::now();
        loop {
            let waiting = self.lock().waiting_before_release;
            if waiting >= self.shared.settings.processes {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "only {waiting} of {} bootstraps finished their init; logs in {}",
                self.shared.settings.processes,
                self.log_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap()
    }

    /// Queues webhook bodies, as API Gateway does.
    pub fn send(&self, bodies: impl IntoIterator<Item = String>) {
        let mut queue = self.lock();
        for body in bodies {
            let id = uuid::Uuid::new_v4().to_string();
            queue.visible.push_back(Message {
                id,
                body,
                receives: 0,
            });
        }
    }

    /// Lets the instances take batches (the clock of a drain starts here).
    pub fn release(&self) {
        self.lock().released = true;
    }

    /// What the queue saw so far.
    pub fn counts(&self) -> FleetCounts {
        let queue = self.lock();
        let mut counts = queue.counts.clone();
        counts.remaining = queue.visible.len()
            + queue.hidden.len()
            + queue
                .in_flight
                .values()
                .map(|f| f.messages.len())
                .sum::<usize>();
        counts
    }

    /// Every invocation's duration so far, from hand-out to response.
    pub fn durations(&self) -> Vec<Duration> {
        self.lock().durations.clone()
    }

    /// Waits until the queue is empty (every message deleted), or `limit`.
    pub async fn drained(&self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.counts().remaining == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

fn spawn(
    instance: usize,
    port: u16,
    emulator_url: &str,
    secret_name: &str,
    log_dir: &std::path::Path,
) -> Child {
    let log = std::fs::File::create(log_dir.join(format!("bootstrap-{instance}.log"))).unwrap();
    let fleet_url = format!("http://127.0.0.1:{port}");
    Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &fleet_url)
        .env("AWS_LAMBDA_FUNCTION_NAME", "didomi-cpc-sync")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("SECRET_ID", secret_name)
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", emulator_url)
        .env("AWS_ENDPOINT_URL_SQS", &fleet_url)
        .env(
            "DEAD_LETTER_QUEUE_URL",
            format!("{fleet_url}/{ACCOUNT}/{QUEUE}-dlq"),
        )
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCHBENCHBENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench-secret-access-key")
        .env("AZURE_AUTHORITY_HOST", emulator_url)
        .env("ALLOW_INSECURE_HTTP", "true")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .stdin(Stdio::null())
        // The EMF metric lines: not read here, and printing them costs nothing.
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("bootstrap starts")
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn record(message: &Message, request_id: &str) -> Value {
    json!({
        "messageId": message.id,
        "receiptHandle": receipt(&message.id, message.receives, request_id),
        "body": message.body,
        "attributes": {
            "ApproximateReceiveCount": message.receives.to_string(),
            "SentTimestamp": "1741944067512",
            "SenderId": "AROAEXAMPLEID:apigateway",
            "ApproximateFirstReceiveTimestamp": "1741944067600"
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}"),
        "awsRegion": REGION
    })
}

fn receipt(id: &str, receives: u32, request_id: &str) -> String {
    format!("{id}/{receives}/{request_id}")
}

/// Long-polls: answers with the next batch once one is visible and the
/// fleet is released.
async fn next(State(app): State<App>) -> Response {
    let mut counted = false;
    loop {
        {
            let mut queue = app.queue.lock().unwrap();
            if !queue.released && !counted {
                queue.waiting_before_release += 1;
                counted = true;
            }
            let now = Instant::now();
            let hidden = std::mem::take(&mut queue.hidden);
            let (due, still): (Vec<_>, Vec<_>) = hidden.into_iter().partition(|(at, _)| *at <= now);
            queue.hidden = still;
            queue.visible.extend(due.into_iter().map(|(_, m)| m));
            if queue.released && !queue.visible.is_empty() {
                let take = app.settings.batch_size.min(queue.visible.len());
                let mut messages: Vec<Message> = queue.visible.drain(..take).collect();
                queue.next_request += 1;
                let request_id = format!("bench-{:08}", queue.next_request);
                for message in &mut messages {
                    message.receives += 1;
                }
                let records: Vec<Value> = messages.iter().map(|m| record(m, &request_id)).collect();
                queue.in_flight.insert(
                    request_id.clone(),
                    InFlight {
                        messages,
                        handed_out: Instant::now(),
                    },
                );
                drop(queue);
                let deadline = now_ms() + app.settings.function_timeout.as_millis();
                let mut answer = json!({"Records": records}).to_string().into_response();
                let headers = answer.headers_mut();
                headers.insert("content-type", HeaderValue::from_static("application/json"));
                for (name, value) in [
                    ("lambda-runtime-aws-request-id", request_id),
                    ("lambda-runtime-deadline-ms", deadline.to_string()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:didomi-cpc-sync"),
                    ),
                    (
                        "lambda-runtime-trace-id",
                        "Root=1-00000000-000000000000000000000000".into(),
                    ),
                ] {
                    headers.insert(name, HeaderValue::from_str(&value).unwrap());
                }
                return answer;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Ends an invocation: `failed` message ids go back to the queue, the rest
/// are deleted.
fn settle(app: &App, request_id: &str, failed: Option<Vec<String>>) {
    let mut queue = app.queue.lock().unwrap();
    let Some(flight) = queue.in_flight.remove(request_id) else {
        return;
    };
    queue.counts.invocations += 1;
    queue.durations.push(flight.handed_out.elapsed());
    for message in flight.messages {
        let back = failed.as_ref().is_none_or(|ids| ids.contains(&message.id));
        if !back {
            queue.counts.deleted += 1;
            continue;
        }
        queue.counts.failed_back += 1;
        let handle = receipt(&message.id, message.receives, request_id);
        let hidden = queue
            .visibility
            .remove(&handle)
            .unwrap_or(app.settings.visibility_timeout);
        queue.hidden.push((Instant::now() + hidden, message));
    }
}

async fn response(State(app): State<App>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let failed = answer["batchItemFailures"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["itemIdentifier"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    settle(&app, &id, Some(failed));
    StatusCode::ACCEPTED
}

/// A failed invocation: the whole batch goes back.
async fn error(State(app): State<App>, Path(id): Path<String>) -> StatusCode {
    settle(&app, &id, None);
    StatusCode::ACCEPTED
}

async fn init_error(body: Bytes) -> StatusCode {
    eprintln!(
        "a bootstrap failed its init: {}",
        String::from_utf8_lossy(&body)
    );
    StatusCode::ACCEPTED
}

/// The two SQS operations the function calls.
async fn sqs(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = match target {
        "AmazonSQS.ChangeMessageVisibility" => {
            let handle = request["ReceiptHandle"].as_str().unwrap_or_default();
            let seconds = request["VisibilityTimeout"].as_u64().unwrap_or_default();
            app.queue
                .lock()
                .unwrap()
                .visibility
                .insert(handle.to_string(), Duration::from_secs(seconds));
            json!({})
        }
        "AmazonSQS.SendMessage" => {
            app.queue.lock().unwrap().counts.dead_lettered += 1;
            json!({"MessageId": uuid::Uuid::new_v4().to_string()})
        }
        other => {
            let mut refused = json!({"__type": "com.amazonaws.sqs#UnsupportedOperation",
                                     "message": format!("not emulated: {other}")})
            .to_string()
            .into_response();
            *refused.status_mut() = StatusCode::BAD_REQUEST;
            return refused;
        }
    };
    let mut response = answer.to_string().into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}
