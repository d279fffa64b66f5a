#!/usr/bin/env bash
# Runs the product locally, end to end, with no cloud account:
#   1. installs cargo-lambda into .venv (scripts/python-tools.sh) and builds,
#   2. starts tools/emulator (Entra + Dataverse + Secrets Manager) with demo data,
#   3. runs the real `bootstrap` under `cargo lambda watch` against it,
#   4. invokes every sample event in events/ (bare webhooks, an SQS batch, an
#      HTTP API request) in the order a user would have produced them,
#   5. prints the resulting Contact Point Consent table,
#   6. backfills the Didomi users of the emulated Didomi API (dry run, then
#      --direct with a checkpoint) and reconciles Didomi with Dataverse
#      (report, then --repair), printing the table again.
# Usage: scripts/demo.sh            (ports: DEMO_EMULATOR_PORT=18080 DEMO_RUNTIME_PORT=19000)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
emulator_port="${DEMO_EMULATOR_PORT:-18080}"
runtime_port="${DEMO_RUNTIME_PORT:-19000}"
emulator="http://127.0.0.1:${emulator_port}"
work="${root}/.local/demo"
mkdir -p "$work"

venv_bin="$(scripts/python-tools.sh | tail -n1)"
export PATH="${venv_bin}:${PATH}"

echo "==> building the function and the emulator" >&2
cargo build --quiet -p cpc-emulator -p didomi-cpc-sync --bins

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  pkill -f "${root}/target/debug/bootstrap" 2>/dev/null || true
}
trap cleanup EXIT

echo "==> starting the emulator on ${emulator}" >&2
# The demo seed plus a Didomi organization (API key and the users of
# tests/fixtures/didomi/users.json) for the backfill and reconcile part.
python3 - "$work/seed.json" <<'PY'
import json, sys
seed = json.load(open("tools/emulator/demo-seed.json"))
seed["didomi"] = {"organization_id": "acme", "users": json.load(open("tests/fixtures/didomi/users.json")),
                  "keys": [{"key": "demo-key", "secret": "demo-secret~not-a-real-one"}]}
json.dump(seed, open(sys.argv[1], "w"))
PY
target/debug/cpc-emulator --seed "$work/seed.json" --port "$emulator_port" \
  >"$work/emulator.out" 2>"$work/emulator.log" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$work/emulator.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$work/emulator.out" || { echo "emulator did not start; see $work/emulator.log" >&2; exit 1; }

# The integration document lives in the (emulated) Secrets Manager, as in production.
python3 - "$emulator" <<'PY'
import json, sys, urllib.request
config = json.load(open("tests/fixtures/integration-config.json"))
config["authentication"]["client_secret"] = "local-dev-secret~not-a-real-one"
config["authentication"]["instance"] = sys.argv[1]
request = urllib.request.Request(f"{sys.argv[1]}/_emulator/secrets/didomi/cpc-sync",
                                 data=json.dumps(config).encode(), method="PUT")
urllib.request.urlopen(request).close()
PY

cat >"$work/env" <<ENV
SECRET_ID=didomi/cpc-sync
AWS_ENDPOINT_URL_SECRETS_MANAGER=${emulator}
AWS_REGION=eu-west-1
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
AZURE_AUTHORITY_HOST=${emulator}
ALLOW_INSECURE_HTTP=true
ENV

echo "==> starting bootstrap under cargo lambda watch on 127.0.0.1:${runtime_port}" >&2
cargo lambda watch --ignore-changes --invoke-address 127.0.0.1 --invoke-port "$runtime_port" \
  --env-file "$work/env" >"$work/function.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/${runtime_port}") 2>/dev/null && break
  sleep 0.2
done

events=(
  event-created-opt-in.json                  # Jane opts in, picks Newsletter + Special offers
  event-created-deselect.json                # later: drops Special offers, adds Events
  sqs-batch.json                             # the same two again via SQS (replays) + a cookie-banner event
  event-created-opt-out.json                 # John opts out of the purpose
  http-api-request.json                      # John's event again through the HTTP API (replay)
  event-created-pending-approval.json        # Ana's choice waits for approval: skipped
  event-updated-confirmed.json               # ... and is written once confirmed
  event-created-one-click-opt-out.json       # Jane's one-click opt-out propagates to every topic
  event-created-cpra.json                    # a CPRA event is kept away from GDPR consent
  event-created-anonymous-cookie-banner.json # anonymous: skipped
  event-deleted.json                         # deletions never delete consent rows
  user-updated.json                          # user stream is off by default: skipped
)
for event in "${events[@]}"; do
  printf '\n--- %s\n' "$event"
  cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$runtime_port" \
    --data-file "events/${event}" bootstrap || true
  echo
done

printf '\n==> Contact Point Consent table (msdynmkt_contactpointconsent4s)\n'
python3 scripts/print-consents.py "$emulator"
echo
echo "function log: $work/function.log   emulator log: $work/emulator.log" >&2

# Backfill and reconcile: Didomi's current state of every user, through the
# same mapping and write rules (cpc-sync backfill / reconcile).
python3 - "$emulator" "$work/cli-config.json" <<'PY'
import json, sys
config = json.load(open("tests/fixtures/integration-config.json"))
config["authentication"]["client_secret"] = "local-dev-secret~not-a-real-one"
config["authentication"]["instance"] = sys.argv[1]
config["didomi_api"] = {"key": "demo-key", "secret": "demo-secret~not-a-real-one", "organization_id": "acme"}
json.dump(config, open(sys.argv[2], "w"))
PY
cli_env=(ALLOW_INSECURE_HTTP=true AZURE_AUTHORITY_HOST="$emulator" DIDOMI_API_URL="${emulator}/v1")
cli() { env "${cli_env[@]}" target/debug/cpc-sync "$@" --config "$work/cli-config.json" --no-progress; }
rm -f "$work/backfill.checkpoint"

printf '\n==> cpc-sync backfill --dry-run (one plan per Didomi user with a decision; summary last)\n'
cli backfill --dry-run
printf '\n==> cpc-sync reconcile (drift lines, masked; summary on stderr)\n'
cli reconcile && status=0 || status=$?
echo "(exit status ${status}: 0 in sync, 3 drift found)"
printf '\n==> cpc-sync backfill --direct --checkpoint (a newer row is never overwritten)\n'
cli backfill --direct --checkpoint "$work/backfill.checkpoint" || true
printf '\n==> cpc-sync reconcile --repair\n'
cli reconcile --repair && status=0 || status=$?
echo "(exit status ${status})"
printf '\n==> Contact Point Consent table after the backfill\n'
python3 scripts/print-consents.py "$emulator"
