#!/usr/bin/env bash
# Runs every check and test, as CI does: formatting, lints, all Rust tests
# (unit, property, contract, moto-backed and end-to-end under the Lambda
# Runtime API), the template linters, and the local end-to-end demo.
# Installs what it needs: rustfmt/clippy via rustup, Python tools into .venv.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
step() { printf '\n==> %s\n' "$*" >&2; }

if command -v rustup >/dev/null 2>&1; then
  step "rust components"
  rustup component add rustfmt clippy >/dev/null
fi

step "python tools (.venv)"
venv_bin="$(scripts/python-tools.sh | tail -n1)"
export PATH="${venv_bin}:${PATH}"
export SAM_CLI_TELEMETRY=0

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (every test)"
cargo test --workspace --locked

step "emulator checked with Microsoft's Python Dataverse SDK (tools/emulator/sdk-check)"
PYTHON="${venv_bin}/python" tools/emulator/sdk-check/run.sh

step "template: cfn-lint (with informational checks), sam validate --lint, sam validate, checkov, template rules"
cfn-lint template.yaml --include-checks I
sam validate --lint --template template.yaml
sam validate --region us-east-1 --template template.yaml
# Fails on any finding; --skip-download keeps it offline (no Prisma Cloud guideline fetch).
checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download
"${venv_bin}/python" scripts/check-template.py template.yaml

step "sam build (cargo lambda build --release --arm64)"
if command -v rustup >/dev/null 2>&1; then
  rustup target add aarch64-unknown-linux-gnu >/dev/null
fi
sam build --template template.yaml --build-dir .local/sam-build
file_info="$(od -An -tx1 -j18 -N2 .local/sam-build/SyncFunction/bootstrap | tr -d ' ')"
# ELF e_machine 0xb7 (little-endian "b700") is AArch64: the artifact Lambda runs.
[[ "$file_info" == "b700" ]] || { echo "bootstrap is not an arm64 ELF ($file_info)" >&2; exit 1; }

step "local end-to-end run (scripts/demo.sh)"
demo_output="$(scripts/demo.sh 2>/dev/null)"
printf '%s\n' "$demo_output" | tail -n 14
# Every SQS message of the demo succeeds and no invocation errors.
grep -q '"batchItemFailures":\[\]' <<<"$demo_output"
if grep -q 'errorType' <<<"$demo_output"; then
  echo "the demo reported an error" >&2
  exit 1
fi
# The function's own log of the demo holds no secret and no address.
for forbidden in 'local-dev-secret' 'jane.doe@example.com' "o'brien+news@example.com" 'ana.garcia@example.org'; do
  if grep -qiF -- "$forbidden" .local/demo/function.log; then
    echo "the function logged ${forbidden}" >&2
    exit 1
  fi
done

step "all checks passed"
