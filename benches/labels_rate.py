"""Labels a second through an MQTT broker into `faultline serve` with a store.

Publishes N label messages (QoS 1) to a fresh labels topic and times, from the first publish, until
/api/quality says every label was received and written to the store (a label is acknowledged to
the broker only once written). Start a broker whose queue for a slow client holds every message
(Mosquitto drops past `max_queued_messages`, 1000 by default), for example:

    printf 'listener 18830 127.0.0.1\\nallow_anonymous true\\npersistence false\\nmax_queued_messages 0\\n' > m.conf
    mosquitto -c m.conf &
    .venv/bin/python benches/labels_rate.py target/release/faultline 20000 --port 18830

Mosquitto's `max_inflight_messages` (20 by default) is how many labels the broker sends faultline
unacknowledged. The labels are published by `mosquitto_pub -l` (Debian's mosquitto-clients), which
sends 20,000 in about 0.3 s on this machine kind (paho-mqtt took 7.6 s and bound the figure).
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary")
    ap.add_argument("n", type=int)
    ap.add_argument("--port", type=int, default=1883, help="the broker's port on 127.0.0.1")
    args = ap.parse_args()
    tag = f"labels-rate-{os.getpid()}"
    web = free_port()
    store = tempfile.mkdtemp()
    env = dict(
        os.environ,
        FAULTLINE_SOURCE__KIND="mqtt",
        FAULTLINE_SOURCE__MQTT__URL=f"mqtt://127.0.0.1:{args.port}",
        FAULTLINE_SOURCE__MQTT__TOPIC=f"{tag}/rows",
        FAULTLINE_SOURCE__MQTT__CLIENT_ID=tag,
        FAULTLINE_SINK__FAULTS_TOPIC=f"{tag}/faults",
        FAULTLINE_SINK__DEAD_LETTER_TOPIC=f"{tag}/dead",
        FAULTLINE_LABELS__TOPIC=f"{tag}/labels",
        FAULTLINE_STORE__DIR=store,
        FAULTLINE_WEB__LISTEN=f"127.0.0.1:{web}",
        RUST_LOG="warn",
    )
    daemon = subprocess.Popen([args.binary, "serve"], env=env, stdout=subprocess.DEVNULL)

    def get(path):
        req = urllib.request.Request(f"http://127.0.0.1:{web}{path}", headers={"Host": "localhost"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()

    try:
        for _ in range(600):
            try:
                if get("/readyz")[0] == 200:
                    break
            except Exception:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("faultline never became ready")
        lines = "".join(json.dumps({"id": f"W-{i}", "label": 1}) + "\n" for i in range(args.n))
        start = time.monotonic()
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(args.port), "-q", "1", "-t", f"{tag}/labels", "-l"],
            input=lines.encode(),
            check=True,
        )
        while True:
            q = json.loads(get("/api/quality")[1])
            if q["labels"]["received"] >= args.n and q["store"]["labels_written"] >= args.n:
                break
            if time.monotonic() - start > 300:
                raise SystemExit(f"not every label arrived in 300 s: {q['labels']} {q['store']}")
            time.sleep(0.05)
        took = time.monotonic() - start
        print(f"{args.n} labels received and written in {took:.2f} s: {args.n / took:.0f} labels/s")
    finally:
        daemon.terminate()
        daemon.wait()


if __name__ == "__main__":
    main()
