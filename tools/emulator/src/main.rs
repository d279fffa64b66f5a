//! `cpc-emulator --seed FILE [--port 8080] [--host 127.0.0.1] [cost-model flags]`: prints
//! `{"listening":"http://HOST:PORT"}` on stdout when ready, logs requests to stderr.
//! Cost-model flags override the seed's `cost`; `--behind-tls` its `behind_tls`;
//! `--didomi-webhook-url` its `didomi.webhook_url` (where the emulated Didomi
//! sends an `event.created` webhook for every imported consent event).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use cpc_emulator::{Emulator, Limits, Seed};

struct Args {
    seed: Option<String>,
    host: IpAddr,
    port: u16,
    op_cost_ms: Option<u64>,
    parallelism: Option<usize>,
    dop_hint: Option<u32>,
    limits: Option<Limits>,
    behind_tls: bool,
    didomi_webhook_url: Option<String>,
}

const USAGE: &str = "usage: cpc-emulator [--seed FILE] [--port PORT] [--host 127.0.0.1] \
[--op-cost-ms MS] [--parallelism N] [--dop-hint N] \
[--limits requests=N,exec_ms=MS,window_s=S,concurrent=N] [--behind-tls] \
[--didomi-webhook-url URL]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seed: None,
        host: IpAddr::from([127, 0, 0, 1]),
        port: 0,
        op_cost_ms: None,
        parallelism: None,
        dop_hint: None,
        limits: None,
        behind_tls: false,
        didomi_webhook_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--seed" => args.seed = Some(value()?),
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--host" => args.host = value()?.parse().map_err(|e| format!("--host: {e}"))?,
            "--op-cost-ms" => {
                args.op_cost_ms = Some(value()?.parse().map_err(|e| format!("--op-cost-ms: {e}"))?)
            }
            "--parallelism" => {
                args.parallelism = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--parallelism: {e}"))?,
                )
            }
            "--dop-hint" => {
                args.dop_hint = Some(value()?.parse().map_err(|e| format!("--dop-hint: {e}"))?)
            }
            "--limits" => {
                args.limits = Some(value()?.parse().map_err(|e| format!("--limits: {e}"))?)
            }
            "--behind-tls" => args.behind_tls = true,
            "--didomi-webhook-url" => args.didomi_webhook_url = Some(value()?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let mut seed = match &args.seed {
        Some(path) => match Seed::from_file(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot load seed {path}: {e}");
                return ExitCode::from(2);
            }
        },
        None => Seed::default(),
    };
    if let Some(ms) = args.op_cost_ms {
        seed.cost.op_cost_ms = ms;
    }
    if let Some(n) = args.parallelism {
        seed.cost.parallelism = Some(n);
    }
    if let Some(n) = args.dop_hint {
        seed.cost.dop_hint = n;
    }
    if let Some(l) = args.limits {
        seed.cost.limits = Some(l);
    }
    seed.behind_tls |= args.behind_tls;
    if let Some(url) = args.didomi_webhook_url {
        seed.didomi.get_or_insert_with(Default::default).webhook_url = Some(url);
    }
    let handle = match Emulator::start_on(seed, SocketAddr::new(args.host, args.port)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", serde_json::json!({"listening": handle.base_url()}));
    wait_for_signal().await;
    handle.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
