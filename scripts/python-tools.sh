#!/usr/bin/env bash
# Installs the Python-distributed tools this project uses into a project-local
# virtual environment (`.venv` at the repository root, git-ignored):
#
#   moto[server]   moto_server, a local AWS Secrets Manager for tests/secrets_moto.rs
#   cargo-lambda   cargo lambda build/watch/invoke (brings zig for the arm64 build)
#   aws-sam-cli    sam validate --lint / sam build on template.yaml
#   cfn-lint       CloudFormation linter
#   powerplatform-dataverse-client, azure-identity, cryptography, pytest
#                  Microsoft's Dataverse SDK driving the emulator (tools/emulator/sdk-check)
#   checkov        security policy scanner for template.yaml; it pins a boto3 other
#                  than aws-sam-cli's, so it lives in its own venv (.venv/checkov),
#                  linked as .venv/bin/checkov
#
# Versions are pinned. The script is idempotent: once a set of pins is installed,
# a stamp file `.venv/.tools-<hash of the pins>` makes later runs a no-op, and
# changing a pin below reinstalls. Needs python3 (>= 3.9) and access to PyPI.
#
# Usage: scripts/python-tools.sh          # then: export PATH="$(scripts/python-tools.sh | tail -n1):$PATH"
# Env:   PYTHON=/path/to/python3           # interpreter used to create the venv (default: python3)
set -euo pipefail

PINS=(
  "moto[server]==5.2.5"
  "cargo-lambda==1.9.2"
  "aws-sam-cli==1.170.0"
  "cfn-lint==1.58.0"
  "powerplatform-dataverse-client==1.1.0"
  "azure-identity==1.27.0"
  "cryptography==50.0.2"
  "pytest==9.2.0"
)
CHECKOV_PIN="checkov==3.3.30"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${repo_root}/.venv"
python="${PYTHON:-python3}"

if ! command -v "${python}" >/dev/null 2>&1; then
  echo "error: ${python} not found; install Python 3 (>= 3.9) or set PYTHON" >&2
  exit 1
fi

if [[ ! -x "${venv}/bin/python" ]]; then
  echo "creating virtual environment ${venv}" >&2
  "${python}" -m venv "${venv}"
fi

pins_hash="$(printf '%s\n' "${PINS[@]}" "${CHECKOV_PIN}" | sha256sum | cut -c1-16)"
stamp="${venv}/.tools-${pins_hash}"

if [[ -f "${stamp}" ]]; then
  echo "python tools already installed (${stamp##*/})" >&2
else
  echo "installing ${PINS[*]} ${CHECKOV_PIN}" >&2
  "${venv}/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade pip >&2
  "${venv}/bin/python" -m pip install --disable-pip-version-check --quiet "${PINS[@]}" >&2
  [[ -x "${venv}/checkov/bin/python" ]] || "${python}" -m venv "${venv}/checkov"
  "${venv}/checkov/bin/python" -m pip install --disable-pip-version-check --quiet "${CHECKOV_PIN}" >&2
  ln -sf "${venv}/checkov/bin/checkov" "${venv}/bin/checkov"
  for tool in moto_server cargo-lambda sam cfn-lint checkov; do
    if [[ ! -x "${venv}/bin/${tool}" ]]; then
      echo "error: ${tool} is missing from ${venv}/bin after the install" >&2
      exit 1
    fi
  done
  rm -f "${venv}"/.tools-*
  printf '%s\n' "${PINS[@]}" "${CHECKOV_PIN}" >"${stamp}"
  echo "installed; set SAM_CLI_TELEMETRY=0 when running sam" >&2
fi

echo "${venv}/bin"
