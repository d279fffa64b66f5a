//! `cpc-sync`: the operator CLI. `plan` prints what the function would write
//! for a configuration and an event, without any network access.

use std::io::Read;
use std::process::ExitCode;

use didomi_cpc_sync::cli::plan::plan_invocation;
use didomi_cpc_sync::config::{Environment, IntegrationConfig};

const USAGE: &str = "\
usage:
  cpc-sync plan --config FILE --event FILE   print one JSON plan per webhook (no network)
  cpc-sync check-config --config FILE        validate an integration document

FILE may be - for standard input. --event accepts a bare Didomi webhook,
an SQS batch event or an API Gateway HTTP API request.
ALLOW_INSECURE_HTTP=true accepts an http://127.0.0.1 instance (local runs).

exit status: 0 all planned, 1 some webhook rejected, 2 bad usage, config or input file";

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
