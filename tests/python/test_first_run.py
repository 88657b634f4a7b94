"""The README's first run, as a newcomer types it: `faultline serve` on its defaults, then the demo's
`faultline replay examples/wafers.csv --to mqtt://127.0.0.1:1883/faultline/rows`, on whatever this
machine has on 127.0.0.1:1883. This project's machines run a Mosquitto there, as many plant boxes
do: `serve` must then use that broker (saying so) rather than stop; where 1883 is free it starts its
own broker there. Either way the demo's rows must be scored and its 5 faulty-looking wafers flagged.

The web server goes on a free port (the demo does not use it; 8080 is too often taken to rely on).
"""
import re
import socket
import subprocess
import time

import pytest

from daemon import BIN, HTTP, ROOT, clean_env, free_port, serve

DEFAULT_BROKER = ("127.0.0.1", 1883)
DEMO_ROWS, DEMO_FAULTS = 50, 5


def broker_state():
    """'free', 'mqtt' (an MQTT broker that takes anonymous clients) or 'other' on 127.0.0.1:1883."""
    try:
        s = socket.create_connection(DEFAULT_BROKER, timeout=3)
    except OSError:
        return "free"
    with s:
        s.settimeout(3)
        cid = b"first-run-probe"
        body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(cid).to_bytes(2, "big") + cid
        try:
            s.sendall(bytes([0x10, len(body)]) + body)
            ack = s.recv(4)
        except OSError:
            return "other"
        return "mqtt" if ack[:2] == b"\x20\x02" and ack[3:4] == b"\x00" else "other"


def metrics(base):
    with HTTP.open(f"{base}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        m = re.match(r"^(faultline_[a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def test_the_readme_demo_works_whatever_listens_on_1883(tmp_path):
    state = broker_state()
    if state == "other":
        pytest.skip("127.0.0.1:1883 is held by something that is not an MQTT broker taking anonymous clients")
    web = free_port()
    base = f"http://127.0.0.1:{web}"
    log = tmp_path / "serve.log"
    with serve(clean_env(FAULTLINE_WEB__LISTEN=f"127.0.0.1:{web}"), log, base, ready="/readyz", cwd=tmp_path):
        said = log.read_text()
        assert "publish rows to mqtt://127.0.0.1:1883/faultline/rows" in said, said
        if state == "mqtt":
            assert "already listens on 127.0.0.1:1883" in said, said
        else:
            assert "embedded MQTT broker is listening" in said, said

        # The README's demo command, word for word (from the repository, where the sample lives).
        replay = subprocess.run([BIN, "replay", "examples/wafers.csv", "--to",
                                 "mqtt://127.0.0.1:1883/faultline/rows"],
                                cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0, replay.stderr
        deadline = time.monotonic() + 30
        while True:
            m = metrics(base)
            if m.get("faultline_rows_scored_total", 0) >= DEMO_ROWS or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert m.get("faultline_rows_scored_total") == DEMO_ROWS, f"{m}\n{log.read_text()}"
        assert m.get("faultline_faults_total") == DEMO_FAULTS, f"{m}\n{log.read_text()}"
