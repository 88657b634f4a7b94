#!/bin/bash
# usage: benches/upload_rss.sh BIN FILE
# Starts BIN serve on its defaults, posts FILE to /api/score once, and prints the HTTP status and
# seconds, the daemon's peak RSS (VmHWM) before and after, and the answer's size (BENCHMARKS.md,
# "An upload's memory").
BIN=$1; FILE=$2; W=$(mktemp -d); PORT=18$((RANDOM%900+100)); WEB=19$((RANDOM%900+100))
FAULTLINE_BROKER__LISTEN=127.0.0.1:$PORT FAULTLINE_WEB__LISTEN=127.0.0.1:$WEB FAULTLINE_WEB__REQUEST_TIMEOUT_MS=600000 RUST_LOG=warn $BIN serve > $W/log 2>&1 &
P=$!
for i in $(seq 50); do curl -sf http://127.0.0.1:$WEB/healthz >/dev/null && break; sleep 0.2; done
before=$(grep VmHWM /proc/$P/status | awk '{print $2}')
t=$(curl -s -o $W/out -w "%{http_code} %{time_total}" -X POST -H 'Content-Type: text/csv' --data-binary @$FILE "http://127.0.0.1:$WEB/api/score")
after=$(grep VmHWM /proc/$P/status | awk '{print $2}')
echo "http+s=$t hwm_before_kB=$before hwm_after_kB=$after out_bytes=$(stat -c %s $W/out)"
kill $P; wait $P 2>/dev/null; rm -rf $W
