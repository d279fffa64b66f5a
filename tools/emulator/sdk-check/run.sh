#!/usr/bin/env bash
# Drives the emulator with Microsoft's Python Dataverse SDK (test_dataverse_sdk.py):
# builds and starts cpc-emulator on a free loopback port with seed.json (--behind-tls, since
# the test reaches it through a loopback TLS front), waits for its "listening" line, runs the
# test with the project venv's python, and stops the emulator.
#
# Usage: tools/emulator/sdk-check/run.sh     (Env: PYTHON=venv python, default .venv/bin/python)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../../.." && pwd)"
python="${PYTHON:-${root}/.venv/bin/python}"
[[ -x "${python}" ]] || python="$("${root}/scripts/python-tools.sh" | tail -n1)/python"

cd "${root}"
cargo build --locked -p cpc-emulator --bin cpc-emulator >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | "${python}" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

workdir="$(mktemp -d)"
emulator_pid=""
cleanup() {
  if [[ -n "${emulator_pid}" ]]; then
    kill "${emulator_pid}" 2>/dev/null || true
    wait "${emulator_pid}" 2>/dev/null || true
  fi
  rm -rf "${workdir}"
}
trap cleanup EXIT

RUST_LOG="${RUST_LOG:-warn}" "${target_dir}/debug/cpc-emulator" \
  --seed "${here}/seed.json" --behind-tls >"${workdir}/out" 2>"${workdir}/err" &
emulator_pid=$!

port=""
for _ in $(seq 1 100); do
  if port="$(sed -nE 's/^\{"listening":"http:\/\/127\.0\.0\.1:([0-9]+)"\}$/\1/p' "${workdir}/out")" && [[ -n "${port}" ]]; then
    break
  fi
  kill -0 "${emulator_pid}" 2>/dev/null || { cat "${workdir}/err" >&2; echo "emulator exited" >&2; exit 1; }
  sleep 0.1
done
[[ -n "${port}" ]] || { echo "emulator did not report its port" >&2; exit 1; }

cd "${here}"
export PYTHONDONTWRITEBYTECODE=1
EMULATOR_PORT="${port}" "${python}" -m pytest -q -p no:cacheprovider test_dataverse_sdk.py
