#!/usr/bin/env bash
# Runs every faultline test: the Rust suite (unit + integration) and the Python suite (training
# pipeline, committed-model checks, scorer parity with onnxruntime). Installs what it needs into
# the repository (.venv); nothing is cached outside it.
#
# Real-data tests read ../shared/data (or $FAULTLINE_DATA_DIR); where it is absent they say so and
# the rest runs on fixtures the project generates. Set FAULTLINE_REQUIRE_DATA=1 to make absence an
# error (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [[ -z "${FAULTLINE_DATA_DIR:-}" && -d "$root/../shared/data" ]]; then
  export FAULTLINE_DATA_DIR="$root/../shared/data"
fi
if [[ "${FAULTLINE_REQUIRE_DATA:-0}" == 1 && ! -d "${FAULTLINE_DATA_DIR:-/nonexistent}" ]]; then
  echo "FAULTLINE_REQUIRE_DATA=1 but no wafer data at ${FAULTLINE_DATA_DIR:-../shared/data}" >&2
  exit 1
fi
echo "== real wafer data: ${FAULTLINE_DATA_DIR:-absent (real-data tests will report that they were skipped)}"

# Installs Debian packages when root with apt; returns non-zero otherwise. Lists are updated once.
apt_updated=0
apt_install() {
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null || return 1
  echo "== installing $*"
  if [[ $apt_updated == 0 ]]; then
    apt-get update -qq || return 1
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The broker tests start their own Mosquitto (Debian's package) on free ports.
if ! command -v mosquitto >/dev/null && ! apt_install mosquitto; then
  echo "the broker tests need mosquitto: sudo apt-get install mosquitto" >&2
  exit 1
fi

# The page test drives Debian's Chromium (never a browser a test tool downloads).
if [[ ! -x /usr/bin/chromium ]] && ! apt_install chromium; then
  echo "the page test needs Chromium: sudo apt-get install chromium" >&2
  exit 1
fi

# promtool (Debian's prometheus package) checks the packaged Prometheus config; best effort: the
# packaging tests say they skipped that check where it cannot be installed.
if ! command -v promtool >/dev/null && ! apt_install --no-install-recommends prometheus 2>/dev/null; then
  echo "   no promtool; the promtool checks will be skipped"
fi

echo "== Python environment (.venv, training/requirements.txt)"
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum training/requirements.txt | cut -d' ' -f1)
if [[ ! -f $stamp || "$(cat $stamp)" != "$want" ]]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r training/requirements.txt
  echo "$want" > $stamp
fi

echo "== Rust tests"
cargo test --all-targets --locked
cargo test --doc --locked

echo "== Browser test (playwright-core + Chromium)"
(cd tests/browser && npm ci --no-audit --no-fund --silent)
FAULTLINE_BIN="$root/target/debug/faultline" node --test tests/browser/

echo "== Python tests"
export FAULTLINE_BIN="$root/target/debug/faultline"
.venv/bin/python -m pytest -q training/tests tests/python
