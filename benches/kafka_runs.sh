#!/usr/bin/env bash
# One bench_kafka run against a fresh tansu (memory storage), with tansu's own CPU time: the
# Kafka table of BENCHMARKS.md is three of these per row, e.g.
#
#   cargo build --release --features kafka --bin faultline --example bench_kafka
#   for i in 1 2 3; do benches/kafka_runs.sh --rows 100000 --partitions 4 \
#       --input ../shared/data/wafer/wafer_train.csv; done
#
# tansu comes from scripts/test.sh (target/tools, built once); TANSU_BIN overrides it, and
# FAULTLINE_BIN the daemon's binary (to compare two builds in one session).
set -euo pipefail
cd "$(dirname "$0")/.."
tansu=${TANSU_BIN:-target/tools/tansu-0.6.0-dynostore-libsql/bin/tansu}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ > target/tansu-bench.log 2>&1 &
tansu_pid=$!
trap 'kill $tansu_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
echo "== $(date +%T), load average $(cut -d' ' -f1 /proc/loadavg): bench_kafka $*"
before=$(cpu $tansu_pid)
target/release/examples/bench_kafka --bootstrap "127.0.0.1:$port" --broker-pid "$tansu_pid" --bin "${FAULTLINE_BIN:-target/release/faultline}" "$@"
echo "tansu: $(awk -v a="$before" -v b="$(cpu $tansu_pid)" 'BEGIN { printf "%.2f", b - a }') CPU-s during the run"
