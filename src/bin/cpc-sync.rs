//! `cpc-sync`: the operator CLI. `plan` prints what the function would write
//! for a configuration and an event, without any network access; `backfill`
//! loads Didomi's current consents into Dataverse (see `cli::backfill`);
//! `reconcile` compares Didomi with Dataverse and repairs (`cli::reconcile`);
//! `reverse-sync --once` sends Dynamics edits to Didomi (`cli::reverse`).

use std::io::Read;
use std::process::ExitCode;

use didomi_cpc_sync::cli::plan::plan_invocation;
use didomi_cpc_sync::config::{Environment, IntegrationConfig};

const USAGE: &str = "\
usage:
  cpc-sync plan --config FILE --event FILE   print one JSON plan per webhook (no network)
  cpc-sync check-config --config FILE        validate an integration document
  cpc-sync backfill [--config FILE] [--from-export DIR]
                    (--dry-run | --direct | --queue-url URL)
                    [--checkpoint FILE] [--no-progress]
                                             every Didomi user's current state to Dataverse
  cpc-sync reconcile [--config FILE] [--from-export DIR] [--output FILE]
                     [--show-addresses] [--repair] [--no-progress]
                                             compare Didomi with Dataverse (and repair)
  cpc-sync reverse-sync --once [--config FILE] [--dry-run]
                        [--watermark FILE | --state-table TABLE]
                                             one pass of Dynamics edits to Didomi

FILE may be - for standard input. --event accepts a bare Didomi webhook,
an SQS batch event or an API Gateway HTTP API request.
ALLOW_INSECURE_HTTP=true accepts an http://127.0.0.1 instance (local runs).

backfill reads the Didomi API (didomi_api in the document, DIDOMI_API_URL,
default https://api.didomi.io/v1) unless --from-export DIR names a batch
export (gzipped or plain NDJSON files). Without --config the document is the
function's secret (SECRET_ID). --dry-run prints one plan per user; --direct
writes from here; --queue-url sends snapshot messages to the function's queue.
It prints a JSON summary on stdout at the end.

reconcile prints one JSON line per drifting (or contact-less) (address, target)
(stdout, or --output FILE; addresses masked unless --show-addresses) and a
summary table on stderr. --repair writes missing_in_dynamics and
differs_didomi_newer (never differs_dynamics_newer) and re-reads. Its exit
status: 0 in sync, 3 drift found, 2 bad usage or configuration, 1 failure.

reverse-sync --once reads the Email consent rows changed since the watermark
(FILE, JSON {\"modifiedon\": …, \"version\": N}, locked by FILE.lock; or the
stack's DynamoDB state table, shared with the scheduled function; neither:
from the beginning) by anyone but the
function's application user, and posts one Didomi consent event per row
(README, Dynamics → Didomi). --dry-run prints the events as JSON lines
instead and keeps the watermark. Rows that cannot be expressed are printed as
{\"row\", \"not_expressible\"} lines; the summary is JSON on stderr. The watermark
moves only after Didomi accepted every event.

exit status: 0 all planned/done, 1 some webhook rejected or users failed,
2 bad usage, configuration or input file";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("cpc-sync: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let (command, options) = args.split_first().ok_or_else(|| USAGE.to_string())?;
    match command.as_str() {
        "plan" => plan(&parse_options(options, &["--config", "--event"])?),
        "check-config" => check_config(&parse_options(options, &["--config"])?),
        "backfill" => backfill(&Flags::parse(
            options,
            &["--config", "--from-export", "--queue-url", "--checkpoint"],
            &["--dry-run", "--direct", "--no-progress"],
        )?),
        "reconcile" => reconcile(&Flags::parse(
            options,
            &["--config", "--from-export", "--output"],
            &["--show-addresses", "--repair", "--no-progress"],
        )?),
        "reverse-sync" => reverse_sync(&Flags::parse(
            options,
            &["--config", "--watermark", "--state-table"],
            &["--once", "--dry-run"],
        )?),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// `[(flag, value)]` for exactly the `required` flags, each given once.
fn parse_options(args: &[String], required: &[&str]) -> Result<Vec<String>, String> {
    let mut values: Vec<Option<String>> = vec![None; required.len()];
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let slot = required
            .iter()
            .position(|known| known == flag)
            .ok_or_else(|| format!("unexpected argument {flag:?}\n{USAGE}"))?;
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag} needs a file name"))?;
        if values[slot].replace(value.clone()).is_some() {
            return Err(format!("{flag} given twice"));
        }
    }
    required
        .iter()
        .zip(values)
        .map(|(flag, value)| value.ok_or_else(|| format!("missing {flag} FILE\n{USAGE}")))
        .collect()
}

fn read_json(path: &str, what: &str) -> Result<serde_json::Value, String> {
    let mut text = String::new();
    let read = if path == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|content| text = content)
    };
    read.map_err(|err| format!("cannot read {what} {path}: {err}"))?;
    serde_json::from_str(&text).map_err(|err| format!("{what} {path} is not valid JSON: {err}"))
}

fn load_config(path: &str) -> Result<IntegrationConfig, String> {
    let environment = Environment::from_env().map_err(|err| err.to_string())?;
    let document = read_json(path, "config")?;
    let loaded = IntegrationConfig::from_document(&document, environment.allow_insecure_http)
        .map_err(|err| format!("{path}: {err}"))?;
    for warning in &loaded.warnings {
        eprintln!("cpc-sync: warning: {path}: {warning}");
    }
    Ok(loaded.config)
}

fn plan(options: &[String]) -> Result<ExitCode, String> {
    let config = load_config(&options[0])?;
    let payload = read_json(&options[1], "event")?;
    let items =
        plan_invocation(payload, &config.rules).map_err(|err| format!("{}: {err}", options[1]))?;
    let mut rejected = 0;
    for item in items {
        match item.result {
            Ok(plan) => {
                let line = serde_json::to_string(&plan).map_err(|err| err.to_string())?;
                println!("{line}");
            }
            Err(err) => {
                rejected += 1;
                eprintln!("cpc-sync: {}: {}: {err}", options[1], item.location);
            }
        }
    }
    Ok(if rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check_config(options: &[String]) -> Result<ExitCode, String> {
    let config = load_config(&options[0])?;
    println!(
        "{}: valid; {} mapping(s) to {} target(s) on {}; regulations {:?}; webhook types {:?}; upsert_mode {}",
        options[0],
        config.rules.mappings.len(),
        config.targets().len(),
        config.credentials.instance,
        config.rules.regulations,
        config
            .rules
            .webhook_types
            .iter()
            .map(|kind| kind.as_str())
            .collect::<Vec<_>>(),
        config.upsert_mode
    );
    Ok(ExitCode::SUCCESS)
}

/// Flags of the longer commands: `--name VALUE` options and bare switches,
/// each at most once.
struct Flags(std::collections::BTreeMap<String, Option<String>>);

impl Flags {
    fn parse(args: &[String], with_value: &[&str], switches: &[&str]) -> Result<Self, String> {
        let mut flags = std::collections::BTreeMap::new();
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            let value = if with_value.contains(&flag.as_str()) {
                Some(
                    rest.next()
                        .ok_or_else(|| format!("{flag} needs a value"))?
                        .clone(),
                )
            } else if switches.contains(&flag.as_str()) {
                None
            } else {
                return Err(format!("unexpected argument {flag:?}\n{USAGE}"));
            };
            if flags.insert(flag.clone(), value).is_some() {
                return Err(format!("{flag} given twice"));
            }
        }
        Ok(Self(flags))
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|value| value.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// Warnings (retries, throttling) of the long commands on stderr; `RUST_LOG`
/// asks for more. Log lines never hold addresses or tokens.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    init_logs();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the async runtime: {err}"))
}

fn backfill(flags: &Flags) -> Result<ExitCode, String> {
    use didomi_cpc_sync::cli::backfill::{self, BackfillOptions, Sink};
    use didomi_cpc_sync::cli::setup;
    use didomi_cpc_sync::cli::source::{Position, UserSource};

    let modes = ["--dry-run", "--direct", "--queue-url"]
        .iter()
        .filter(|mode| flags.has(mode))
        .count();
    if modes != 1 {
        return Err(format!(
            "backfill needs exactly one of --dry-run, --direct, --queue-url URL\n{USAGE}"
        ));
    }
    let options = BackfillOptions {
        checkpoint: flags.value("--checkpoint").map(std::path::PathBuf::from),
        progress: !flags.has("--no-progress"),
    };
    let didomi_url = std::env::var("DIDOMI_API_URL").ok();
    runtime()?.block_on(async {
        let loaded = setup::load(flags.value("--config").map(std::path::Path::new))
            .await
            .map_err(|err| err.to_string())?;
        let label = match flags.value("--from-export") {
            Some(dir) => format!("export:{}", std::path::Path::new(dir).display()),
            None => "api".to_string(),
        };
        let resumed = backfill::resume_position(&options, &label).map_err(|err| err.to_string())?;
        let position = resumed
            .as_ref()
            .map(|checkpoint| checkpoint.position.clone());
        if position == Some(Position::Finished) {
            eprintln!(
                "cpc-sync: the checkpoint says this backfill is complete; delete it to run again"
            );
        }
        let source = match (flags.value("--from-export"), &position) {
            (Some(dir), Some(Position::Export(start))) => {
                UserSource::export(dir.into(), Some(start))
            }
            (Some(dir), _) => UserSource::export(dir.into(), None),
            (None, Some(Position::Api { cursor })) => Ok(UserSource::api(
                setup::didomi_client(&loaded, didomi_url.as_deref()).map_err(|e| e.to_string())?,
                cursor.clone(),
            )),
            (None, _) => Ok(UserSource::api(
                setup::didomi_client(&loaded, didomi_url.as_deref()).map_err(|e| e.to_string())?,
                None,
            )),
        }
        .map_err(|err| err.to_string())?;
        let sink = if flags.has("--dry-run") {
            Sink::DryRun(Box::new(std::io::stdout()))
        } else if flags.has("--direct") {
            let client = setup::dataverse_client(&loaded);
            Sink::Direct(
                setup::sync_service(&loaded, client)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        } else {
            let url = flags.value("--queue-url").unwrap_or_default();
            let client = didomi_cpc_sync::adapters::sqs::sdk_client().await;
            Sink::Queue(didomi_cpc_sync::adapters::sqs::SqsSender::new(client, url))
        };
        if position == Some(Position::Finished) {
            let summary = resumed
                .map(|checkpoint| checkpoint.summary)
                .unwrap_or_default();
            println!("{}", serde_json::to_string(&summary).unwrap_or_default());
            return Ok(ExitCode::SUCCESS);
        }
        let run = backfill::run(
            source,
            &loaded.config.rules,
            sink,
            &options,
            resumed.map(|checkpoint| checkpoint.summary),
        )
        .await;
        println!(
            "{}",
            serde_json::to_string(&run.summary).unwrap_or_default()
        );
        match run.error {
            None if run.summary.failed == 0 => Ok(ExitCode::SUCCESS),
            None => Ok(ExitCode::FAILURE),
            Some(err) if err.is_configuration() => Err(err.to_string()),
            Some(err) => {
                eprintln!("cpc-sync: backfill stopped: {err}");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

fn reconcile(flags: &Flags) -> Result<ExitCode, String> {
    use didomi_cpc_sync::cli::reconcile::{self, ReconcileOptions};
    use didomi_cpc_sync::cli::setup;
    use didomi_cpc_sync::cli::source::UserSource;

    let options = ReconcileOptions {
        show_addresses: flags.has("--show-addresses"),
        progress: !flags.has("--no-progress"),
    };
    let didomi_url = std::env::var("DIDOMI_API_URL").ok();
    let mut out: Box<dyn std::io::Write> = match flags.value("--output") {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|err| format!("cannot create {path}: {err}"))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    runtime()?.block_on(async {
        let loaded = setup::load(flags.value("--config").map(std::path::Path::new))
            .await
            .map_err(|err| err.to_string())?;
        let source = match flags.value("--from-export") {
            Some(dir) => UserSource::export(dir.into(), None).map_err(|err| err.to_string())?,
            None => UserSource::api(
                setup::didomi_client(&loaded, didomi_url.as_deref()).map_err(|e| e.to_string())?,
                None,
            ),
        };
        let client = setup::dataverse_client(&loaded);
        let service = setup::sync_service(&loaded, client)
            .await
            .map_err(|e| e.to_string())?;
        let repair = flags.has("--repair");
        let result = reconcile::run(source, &service, repair, &mut out, &options).await;
        match result {
            Ok(report) => {
                eprintln!("{}", report.table());
                Ok(if report.final_counts().drift() == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(3)
                })
            }
            Err(err) if err.is_configuration() => Err(err.to_string()),
            Err(err) => {
                eprintln!("cpc-sync: reconcile stopped: {err}");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

fn reverse_sync(flags: &Flags) -> Result<ExitCode, String> {
    use didomi_cpc_sync::cli::reverse::{self, StateChoice};
    use didomi_cpc_sync::cli::setup;

    if !flags.has("--once") {
        return Err(format!(
            "reverse-sync runs one pass and needs --once (the schedule is the stack's ReverseSyncFunction)\n{USAGE}"
        ));
    }
    let state = match (flags.value("--watermark"), flags.value("--state-table")) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "give --watermark FILE or --state-table TABLE, not both\n{USAGE}"
            ));
        }
        (Some(path), None) => StateChoice::File(std::path::PathBuf::from(path)),
        (None, Some(table)) => StateChoice::Table(table.to_string()),
        (None, None) => StateChoice::None,
    };
    let didomi_url = std::env::var("DIDOMI_API_URL").ok();
    runtime()?.block_on(async {
        let loaded = setup::load(flags.value("--config").map(std::path::Path::new))
            .await
            .map_err(|err| err.to_string())?;
        let didomi =
            setup::didomi_client(&loaded, didomi_url.as_deref()).map_err(|e| e.to_string())?;
        let dataverse = setup::dataverse_client(&loaded);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15 * 60);
        let own_user = match dataverse.who_am_i(deadline).await {
            Ok(user) => user,
            Err(err) => {
                eprintln!("cpc-sync: reverse-sync stopped: WhoAmI: {err}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let mut out = std::io::stdout();
        match reverse::run_once(
            &dataverse,
            &didomi,
            &loaded.config,
            own_user,
            &state,
            flags.has("--dry-run"),
            deadline,
            &mut out,
        )
        .await
        {
            Ok(summary) => {
                eprintln!("{}", serde_json::to_string(&summary).unwrap_or_default());
                Ok(ExitCode::SUCCESS)
            }
            Err(err) if err.is_configuration() => Err(err.to_string()),
            Err(err) => {
                eprintln!(
                    "cpc-sync: reverse-sync stopped (watermark kept; retry helps: {}): {err}",
                    err.is_retryable()
                );
                Ok(ExitCode::FAILURE)
            }
        }
    })
}
