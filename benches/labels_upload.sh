#!/bin/bash
# usage: benches/labels_upload.sh BIN
# Starts BIN serve on its defaults, replays wafer_train.csv (from $FAULTLINE_DATA_DIR, else
# ../shared/data), uploads its labels, then prints the seconds of three uploads of 100,000 labels
# for wafers it never scored (BENCHMARKS.md, "A large label upload against a full window").

DATA=${FAULTLINE_DATA_DIR:-$(dirname "$0")/../../shared/data}
TRAIN=$DATA/wafer/wafer_train.csv
[ -f "$TRAIN" ] || { echo "no $TRAIN: set FAULTLINE_DATA_DIR" >&2; exit 1; }
BIN=$1; W=$(mktemp -d); PORT=18$((RANDOM%900+100)); WEB=19$((RANDOM%900+100))
FAULTLINE_BROKER__LISTEN=127.0.0.1:$PORT FAULTLINE_WEB__LISTEN=127.0.0.1:$WEB RUST_LOG=warn $BIN serve > $W/log 2>&1 &
P=$!
for i in $(seq 50); do curl -sf http://127.0.0.1:$WEB/healthz >/dev/null && break; sleep 0.2; done
$BIN replay "$TRAIN" --to mqtt://127.0.0.1:$PORT/faultline/rows > /dev/null 2>&1
python3 - "$W" "$TRAIN" <<'PY'
import csv,sys
w=sys.argv[1]
r=list(csv.reader(open(sys.argv[2])))
h=r[0]; g=h.index('Good/Bad')
open(w+'/known.csv','w').write('id,Good/Bad\n'+''.join(f'{x[0]},{x[g]}\n' for x in r[1:]))
open(w+'/unknown.csv','w').write('id,Good/Bad\n'+''.join(f'Wafer-x{i},1\n' for i in range(100000)))
PY
sleep 2
curl -s -X POST -H 'Content-Type: text/csv' --data-binary @$W/known.csv http://127.0.0.1:$WEB/api/labels | head -c 150; echo
for i in 1 2 3; do
  curl -s -o /dev/null -w "%{time_total}\n" -X POST -H 'Content-Type: text/csv' --data-binary @$W/unknown.csv http://127.0.0.1:$WEB/api/labels
done
kill $P; wait $P 2>/dev/null; rm -rf $W
