#!/usr/bin/env bash
# MIFAS test suite: the single test command (README). Run as root on Debian/Ubuntu:
#   bash tests/run.sh
# Installs what is missing (Debian: dcmtk; pip: pydicom, pynetdicom, pytest, numpy), builds the
# release binary, runs the Rust unit tests, then the integration tests against the real binary.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k hostile -x`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export TCP_NODELAY=1          # DCMTK keeps Nagle on without it (≈40 ms per C-STORE)
export CARGO_TERM_COLOR=never
export PYTHONDONTWRITEBYTECODE=1
PYTHON=${PYTHON:-python3}

step() { printf '\n=== %s ===\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

step "system packages"
missing=()
for tool in /usr/bin/storescu /usr/bin/echoscu /usr/bin/dcmdump; do
    [ -x "$tool" ] || missing+=(dcmtk)
done
command -v "$PYTHON" >/dev/null || missing+=(python3 python3-pip)
command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || missing+=(cargo)
command -v cc >/dev/null || missing+=(build-essential)
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "installing: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "dcmtk, python3, cargo, cc: present"
fi
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

step "python packages"
pip_missing=()
for mod in pydicom:pydicom pynetdicom:pynetdicom pytest:pytest numpy:numpy; do
    "$PYTHON" -c "import ${mod%%:*}" 2>/dev/null || pip_missing+=("${mod##*:}")
done
if [ ${#pip_missing[@]} -gt 0 ]; then
    echo "pip installing: ${pip_missing[*]}"
    "$PYTHON" -m pip --version >/dev/null 2>&1 || { as_root apt-get update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip; }
    "$PYTHON" -m pip install -q "${pip_missing[@]}" 2>/dev/null \
        || "$PYTHON" -m pip install -q --break-system-packages "${pip_missing[@]}"
else
    echo "pydicom, pynetdicom, pytest, numpy: present"
fi
"$PYTHON" -c 'import pydicom, pynetdicom; print("pydicom", pydicom.__version__, "pynetdicom", pynetdicom.__version__)'

step "cargo build --release"
cargo build --release

step "cargo test --release (unit tests)"
cargo test --release

step "integration tests (pytest, real mifas binary + DCMTK + pynetdicom)"
export MIFAS_BIN="$ROOT/target/release/mifas"
# hard cap so a hung peer can never hang CI; the suite itself takes a few minutes
timeout --signal=INT --kill-after=30 20m \
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/integration "$@"
