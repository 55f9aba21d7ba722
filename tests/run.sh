#!/usr/bin/env bash
# MIFAS test suite: the single test command (README). Run as root on Debian/Ubuntu:
#   bash tests/run.sh
# Installs what is missing (Debian: dcmtk, orthanc, fuse3, python3-venv, a C toolchain, chromium and
# chromium-driver for the portal tests, Java 17 and
# Maven for the HDFS test sites; Rust via rustup if there is no cargo), creates the project-local
# virtual environment .venv/ (ignored by git) and installs the Python packages there (pydicom,
# pynetdicom, pytest, numpy, pylibjpeg + pylibjpeg-libjpeg/-openjpeg), builds the release binary
# and the HDFS launcher (tests/minidfs), runs the Rust unit tests, then the integration tests
# (tests/integration) with .venv's interpreter against the real binary with DCMTK, Orthanc,
# pynetdicom and MiniDFSCluster sites.
# Nothing is pip-installed outside .venv/ and .venv/bin is never put on PATH: pynetdicom's own
# storescu/findscu/echoscu entry points live there and must not shadow DCMTK's (the tests call
# DCMTK by absolute path, /usr/bin/...).
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k hostile -x`.
# Exit status: non-zero if the build, the unit tests or any integration test failed.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export TCP_NODELAY=1          # DCMTK keeps Nagle on without it (≈40 ms per C-STORE)
export CARGO_TERM_COLOR=never
export PYTHONDONTWRITEBYTECODE=1
PYTHON=${PYTHON:-python3}   # only creates the virtual environment
VENV="$ROOT/.venv"

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
# DICOMweb tests: Orthanc's DICOMweb plugin as a DICOMweb client of MIFAS
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
[ -x /usr/bin/unzip ] || missing+=(unzip)   # portal test: Info-ZIP checks the streamed study zip
command -v "$PYTHON" >/dev/null || missing+=(python3 python3-venv)
command -v cc >/dev/null || missing+=(build-essential)
command -v mount >/dev/null || missing+=(mount)   # the disk-full test mounts a small tmpfs
# the power-loss test mounts a FUSE file system of our own (tests/powercut; fuser without libfuse)
command -v fusermount3 >/dev/null || missing+=(fuse3)
# the HDFS tests run real HDFS sites: our MiniDFSCluster launcher (tests/minidfs), Java 17 + Maven
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
# the web portal's end-to-end tests drive headless Chromium over WebDriver
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# a CJK font, so the study page's screenshot shows 郭^政達 and the Korean and Japanese names
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
# the audit-trail test (test_audit.py): a real syslog collector, rsyslogd with imtcp/imudp and the
# GnuTLS stream driver (RFC 5425); the openssl CLI makes the test certificates of the audit and
# DICOM TLS tests (DCMTK's +tls options need Debian's dcmtk built with OpenSSL: it is)
[ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || [ -n "$(find /usr/lib -name lmnsd_gtls.so 2>/dev/null | head -1)" ] || missing+=(rsyslog-gnutls)
[ -x /usr/bin/openssl ] || missing+=(openssl)
# `python3 -m venv` needs ensurepip, which Debian ships in python3-venv
[ -x "$VENV/bin/python" ] || "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
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
echo "java: $(java -version 2>&1 | head -1); $(mvn -B -v 2>/dev/null | sed "s/\x1b\[[0-9;]*m//g" | head -1)"

step "python packages (project-local virtual environment $VENV)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
pip_missing=()
# module:distribution; pylibjpeg and its plugins decode JPEG / JPEG-LS / JPEG 2000 for pydicom
# (the retrieve tests compare decompressed pixels); selenium drives Chromium in the portal tests
for pair in pydicom:pydicom pynetdicom:pynetdicom pytest:pytest numpy:numpy \
            pylibjpeg:pylibjpeg libjpeg:pylibjpeg-libjpeg openjpeg:pylibjpeg-openjpeg \
            selenium:selenium dicomweb_client:dicomweb-client; do
    "$PY" -c "import ${pair%%:*}" 2>/dev/null || pip_missing+=("${pair#*:}")
done
if [ ${#pip_missing[@]} -gt 0 ]; then
    echo "pip install (into $VENV): ${pip_missing[*]}"
    "$PY" -m pip install -q --disable-pip-version-check "${pip_missing[@]}"
fi
"$PY" -c 'import pydicom, pynetdicom, pytest, numpy, pylibjpeg, libjpeg, openjpeg, selenium, dicomweb_client; print("pydicom", pydicom.__version__, "pynetdicom", pynetdicom.__version__, "pytest", pytest.__version__)'

step "OHIF viewer for the DICOMweb viewer test and benchmark (npm @ohif/app, pinned, cached)"
# tests/integration/test_dicomweb_ohif.py and bench/dicomweb/run_ohif.py serve OHIF's prebuilt dist
# (ohif_proxy.py, the same version there). Fetched once with `npm pack` (the registry checks the
# tarball's integrity) into tests/.cache (git-ignored); later runs find the stamp and skip this.
OHIF_VERSION=3.13.2
OHIF_DIR="$ROOT/tests/.cache/ohif-$OHIF_VERSION"
fetch_ohif() {   # called in a `||` list, where set -e is off: every step checks its own status
    command -v npm >/dev/null || apt_install nodejs npm || return 1
    rm -rf "$OHIF_DIR" && mkdir -p "$OHIF_DIR" || return 1
    local tmp
    tmp=$(mktemp -d) || return 1
    (cd "$tmp" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null) \
        && tar -xzf "$tmp/ohif-app-$OHIF_VERSION.tgz" -C "$OHIF_DIR" --strip-components=1 package/dist
    local rc=$?
    rm -rf "$tmp"
    [ $rc -eq 0 ] && [ -f "$OHIF_DIR/dist/index.html" ] && touch "$OHIF_DIR/.complete"
}
# a failed fetch (registry unreachable) does not stop the run: the OHIF test fails with the reason
[ -e "$OHIF_DIR/.complete" ] || fetch_ohif || echo "OHIF FETCH FAILED"
echo "ohif: $(ls -d "$OHIF_DIR/dist" 2>/dev/null || echo "MISSING (the OHIF test will fail)")"

step "cargo build --release (the binary, and the examples: tests/powercut's FUSE file system)"
cargo build --release --bins --examples

status=0
step "HDFS test sites: MiniDFSCluster launcher (tests/minidfs: classpath resolved once into ~/.m2, javac)"
# a failure here (e.g. Maven Central unreachable) fails the run; the HDFS tests then fail with the reason
bash tests/minidfs/build.sh || { echo "MINIDFS LAUNCHER BUILD FAILED"; status=1; }

step "cargo test --release (unit tests)"
cargo test --release || { echo "UNIT TESTS FAILED"; status=1; }

step "python tests: tests/integration (real mifas binary + DCMTK + pynetdicom), tests/test_*.py"
export MIFAS_BIN="$ROOT/target/release/mifas"
# hard cap so a hung peer can never hang CI; the suite itself takes about a minute
timeout --signal=INT --kill-after=30 20m \
    "$PY" -m pytest -q -p no:cacheprovider tests "$@" \
    || { echo "PYTHON TESTS FAILED"; status=1; }

exit $status
