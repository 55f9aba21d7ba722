#!/usr/bin/env bash
# MIFAS test suite: the single test command (README). Run as root on Debian/Ubuntu:
#   bash tests/run.sh
# Installs what is missing (Debian: dcmtk, orthanc, a C toolchain; Rust via rustup if there is no
# cargo; pip: pydicom, pynetdicom, pytest, numpy, pylibjpeg + pylibjpeg-libjpeg/-openjpeg), builds
# the release binary, runs the Rust unit tests, then the integration tests (tests/integration)
# against the real binary with DCMTK, Orthanc and pynetdicom.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k hostile -x`.
# Exit status: non-zero if the build, the unit tests or any integration test failed.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export TCP_NODELAY=1          # DCMTK keeps Nagle on without it (≈40 ms per C-STORE)
export CARGO_TERM_COLOR=never
export PYTHONDONTWRITEBYTECODE=1
PYTHON=${PYTHON:-python3}

step() { printf '\n=== %s ===\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
APT_UPDATED=0
apt_install() {
    [ $# -gt 0 ] || return 0
    echo "apt-get install: $*"
    if [ "$APT_UPDATED" -eq 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

step "system packages"
missing=()
for tool in /usr/bin/storescu /usr/bin/echoscu /usr/bin/dcmdump /usr/bin/storescp /usr/bin/movescu /usr/bin/getscu; do
    [ -x "$tool" ] || { missing+=(dcmtk); break; }
done
[ -x /usr/sbin/Orthanc ] || missing+=(orthanc)   # retrieve tests: Orthanc as Move Destination / requestor
command -v "$PYTHON" >/dev/null || missing+=(python3 python3-pip)
command -v cc >/dev/null || missing+=(build-essential)
command -v mount >/dev/null || missing+=(mount)   # the disk-full test mounts a small tmpfs
if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
if ! command -v cargo >/dev/null; then
    command -v curl >/dev/null || missing+=(curl ca-certificates)
fi
apt_install "${missing[@]}"
if ! command -v cargo >/dev/null; then
    # edition 2024 needs Rust >= 1.85, newer than Debian's packaged cargo: use rustup
    echo "installing Rust with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
fi
echo "dcmtk: $(/usr/bin/storescu --version 2>&1 | head -1)"
echo "orthanc: $(/usr/sbin/Orthanc --version 2>&1 | head -1)"
echo "cargo: $(cargo --version)"

step "python packages"
pip_missing=()
for mod in pydicom pynetdicom pytest numpy; do
    "$PYTHON" -c "import $mod" 2>/dev/null || pip_missing+=("$mod")
done
# JPEG / JPEG-LS / JPEG 2000 decoders for pydicom (retrieve tests compare decompressed pixels)
for pair in pylibjpeg:pylibjpeg libjpeg:pylibjpeg-libjpeg openjpeg:pylibjpeg-openjpeg; do
    "$PYTHON" -c "import ${pair%%:*}" 2>/dev/null || pip_missing+=("${pair#*:}")
done
if [ ${#pip_missing[@]} -gt 0 ]; then
    echo "pip install: ${pip_missing[*]}"
    "$PYTHON" -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    "$PYTHON" -m pip install -q "${pip_missing[@]}" \
        || "$PYTHON" -m pip install -q --break-system-packages "${pip_missing[@]}"
fi
"$PYTHON" -c 'import pydicom, pynetdicom, pytest, numpy, pylibjpeg, libjpeg, openjpeg; print("pydicom", pydicom.__version__, "pynetdicom", pynetdicom.__version__, "pytest", pytest.__version__)'

step "cargo build --release"
cargo build --release

status=0
step "cargo test --release (unit tests)"
cargo test --release || { echo "UNIT TESTS FAILED"; status=1; }

step "python tests: tests/integration (real mifas binary + DCMTK + pynetdicom), tests/test_*.py"
export MIFAS_BIN="$ROOT/target/release/mifas"
# hard cap so a hung peer can never hang CI; the suite itself takes about a minute
timeout --signal=INT --kill-after=30 20m \
    "$PYTHON" -m pytest -q -p no:cacheprovider tests "$@" \
    || { echo "PYTHON TESTS FAILED"; status=1; }

exit $status
