"""Sparkplug B in: a real Sparkplug B edge node (pysparkplug, from PyPI) publishes wafers through a real
Mosquitto, and `faultline serve` with `[source.mqtt] format = "sparkplug"` scores them.

The edge node births its devices (NBIRTH, DBIRTH: every sensor as a Double metric plus the wafer id as
a String), then sends each wafer of examples/wafers.csv as one DDATA with the readings it has (missing
ones are left out, as report-by-exception does). The 5 faulty-looking wafers of the sample must come out
as faults; a DDATA whose sensor is a String and one without the wafer id must be dead-lettered with
their reasons; births must not count as rows.
"""
import csv
import re
import socket
import subprocess
import time

import pytest

import pysparkplug as psp
from daemon import HTTP, ROOT, clean_env, free_port, serve

SAMPLE = ROOT / "examples" / "wafers.csv"


def metrics(base):
    with HTTP.open(f"{base}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(faultline_\S+) (\S+)$", text, re.M)}


def wait_for(what, seconds, check):
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.1)


def sparkplug_env(mosquitto, web, client_id, **mqtt):
    """faultline reading Sparkplug B from the group `fab` on `mosquitto`, its page on `web`;
    `mqtt` adds [source.mqtt] settings."""
    return clean_env(
        FAULTLINE_SOURCE__KIND="mqtt",
        FAULTLINE_SOURCE__MQTT__URL=f"mqtt://127.0.0.1:{mosquitto}",
        FAULTLINE_SOURCE__MQTT__TOPIC="spBv1.0/fab/#",
        FAULTLINE_SOURCE__MQTT__FORMAT="sparkplug",
        FAULTLINE_SOURCE__MQTT__CLIENT_ID=client_id,
        FAULTLINE_WEB__LISTEN=f"127.0.0.1:{web}",
        **{f"FAULTLINE_SOURCE__MQTT__{k}": v for k, v in mqtt.items()},
    )


@pytest.fixture
def mosquitto(tmp_path):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("mosquitto", 10, lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_sparkplug_edge_node_s_wafers_are_scored_and_bad_ones_dead_lettered(mosquitto, tmp_path):
    web = free_port()
    base = f"http://127.0.0.1:{web}"
    env = sparkplug_env(mosquitto, web, f"faultline-sparkplug-{web}", SPARKPLUG_ID_METRIC="wafer_id")
    log = tmp_path / "serve.log"
    node = None
    with serve(env, log, base, ready="/readyz", cwd=tmp_path):
        try:
            with open(SAMPLE, newline="") as f:
                rows = list(csv.reader(f))
            header, wafers = rows[0], rows[1:]
            sensors = header[1:]
            now = psp.get_current_timestamp()
            chamber = psp.Device("chamber-2", metrics=[
                psp.Metric(timestamp=now, name="wafer_id", datatype=psp.DataType.STRING, value=""),
                *(psp.Metric(timestamp=now, name=s, datatype=psp.DataType.DOUBLE, value=0.0) for s in sensors),
            ])
            # A device that reports Sensor-1 as text: its data cannot be a reading.
            odd = psp.Device("chamber-3", metrics=[
                psp.Metric(timestamp=now, name="wafer_id", datatype=psp.DataType.STRING, value=""),
                psp.Metric(timestamp=now, name="Sensor-1", datatype=psp.DataType.STRING, value=""),
            ])
            node = psp.EdgeNode("fab", "etch-7", metrics=[])
            node.connect("127.0.0.1", port=mosquitto, blocking=False)
            wait_for("the edge node's connection", 10, lambda: node._connected)
            # Registered once connected, each device's DBIRTH goes out from this thread, ahead of
            # its data on the same connection (MQTT keeps one client's order).
            node.register(chamber)
            node.register(odd)

            for w in wafers:
                ts = psp.get_current_timestamp()
                readings = [psp.Metric(timestamp=ts, name="wafer_id", datatype=psp.DataType.STRING, value=w[0])]
                readings += [psp.Metric(timestamp=ts, name=s, datatype=psp.DataType.DOUBLE, value=float(v))
                             for s, v in zip(sensors, w[1:]) if v.strip() != ""]
                node.update_device("chamber-2", readings)
            ts = psp.get_current_timestamp()
            node.update_device("chamber-3", [
                psp.Metric(timestamp=ts, name="wafer_id", datatype=psp.DataType.STRING, value="W-odd"),
                psp.Metric(timestamp=ts, name="Sensor-1", datatype=psp.DataType.STRING, value="hot"),
            ])
            node.update_device("chamber-2", [psp.Metric(timestamp=ts, name="Sensor-1", datatype=psp.DataType.DOUBLE, value=1.0)])

            def done():
                m = metrics(base)
                dead = sum(v for k, v in m.items() if k.startswith("faultline_rows_dead_lettered_total"))
                return m if m.get("faultline_rows_scored_total", 0) + dead >= len(wafers) + 2 else None
            m = wait_for("every wafer scored or dead-lettered", 30, done)
            assert m["faultline_rows_scored_total"] == len(wafers), f"{m}\n{log.read_text()}"
            assert m["faultline_faults_total"] == 5, m
            assert m['faultline_rows_dead_lettered_total{reason="wrong_type"}'] == 1, m
            assert m['faultline_rows_dead_lettered_total{reason="missing_id"}'] == 1, m
            # Births and deaths are not rows: received = scored + dead-lettered.
            assert m['faultline_rows_received_total{source="mqtt"}'] == len(wafers) + 2, m
        finally:
            if node is not None:
                node.disconnect()



def test_an_edge_node_born_before_faultline_started_is_asked_for_its_births_again(mosquitto, tmp_path):
    """Births are not retained: a faultline that starts after an edge node's DBIRTH has not seen
    the aliases it bound. Data that names its metrics is read all the same and asks for nothing;
    data that sends aliases alone is dead-lettered and makes faultline send the edge node an NCMD
    with `Node Control/Rebirth` = true, which a real edge node (pysparkplug) decodes. Once the node
    births again, its alias-only data is read."""
    web = free_port()
    base = f"http://127.0.0.1:{web}"
    env = sparkplug_env(mosquitto, web, f"faultline-rebirth-{web}")
    with open(SAMPLE, newline="") as f:
        rows = list(csv.reader(f))
    header, wafers = rows[0], rows[1:]
    sensors = header[1:]
    now = psp.get_current_timestamp()
    # The birth binds alias 1 to the wafer id and 100 + i to the i-th sensor.
    chamber = psp.Device("chamber-1", metrics=[
        psp.Metric(timestamp=now, name="wafer_id", datatype=psp.DataType.STRING, value="", alias=1),
        *(psp.Metric(timestamp=now, name=s, datatype=psp.DataType.DOUBLE, value=0.0, alias=100 + i)
          for i, s in enumerate(sensors)),
    ])
    commands = []
    node = psp.EdgeNode("fab", "etch-9", metrics=[], cmd_callback=lambda _node, message: commands.append(message))

    def by_name(wafer):
        # Names beside the aliases (pysparkplug keeps these metrics for its next birth).
        ts = psp.get_current_timestamp()
        readings = [psp.Metric(timestamp=ts, name="wafer_id", datatype=psp.DataType.STRING, value=wafer[0], alias=1)]
        readings += [psp.Metric(timestamp=ts, name=s, datatype=psp.DataType.DOUBLE, value=float(v), alias=100 + i)
                     for i, (s, v) in enumerate(zip(sensors, wafer[1:])) if v.strip() != ""]
        node.update_device("chamber-1", readings)

    def by_alias(wafer):
        # pysparkplug's update_device sends names; its own client sends a DDATA of aliases alone.
        ts = psp.get_current_timestamp()
        readings = [psp.Metric(timestamp=ts, name=None, datatype=psp.DataType.STRING, value=wafer[0], alias=1)]
        readings += [psp.Metric(timestamp=ts, name=None, datatype=psp.DataType.DOUBLE, value=float(v), alias=100 + i)
                     for i, v in enumerate(wafer[1:]) if v.strip() != ""]
        topic = psp.Topic(message_type=psp.MessageType.DDATA, group_id="fab", edge_node_id="etch-9", device_id="chamber-1")
        payload = psp.DData(ts, seq=node._seq, metrics=tuple(readings))
        node._client.publish(psp.Message(topic=topic, payload=payload, qos=psp.QoS.AT_MOST_ONCE, retain=False),
                             include_dtypes=True)

    def counts():
        m = metrics(base)
        return m.get("faultline_rows_scored_total", 0), m.get('faultline_rows_dead_lettered_total{reason="unbound_alias"}', 0)

    log = tmp_path / "serve.log"
    try:
        # Born before faultline starts: its NBIRTH and DBIRTH reach no faultline.
        node.connect("127.0.0.1", port=mosquitto, blocking=False)
        wait_for("the edge node's connection", 10, lambda: node._connected)
        node.register(chamber)
        with serve(env, log, base, ready="/readyz", cwd=tmp_path):
            by_name(wafers[0])
            wait_for("the named wafer scored", 15, lambda: counts()[0] >= 1)
            assert commands == [], "data that names its metrics needs no birth"
            by_alias(wafers[1])
            wait_for("a rebirth request", 15, lambda: commands)
            request = commands[0]
            assert str(request.topic) == "spBv1.0/fab/NCMD/etch-9", request
            assert [(m.name, m.datatype, m.value) for m in request.payload.metrics] == [
                ("Node Control/Rebirth", psp.DataType.BOOLEAN, True)
            ], request
            wait_for("the alias-only wafer dead-lettered", 15, lambda: counts() == (1, 1))
            assert "asked the edge node for its births again" in log.read_text()
            # The node answers with its births; then its alias-only data is read.
            node.deregister("chamber-1")
            node.register(chamber)
            by_alias(wafers[2])
            wait_for("the alias-only wafer scored after the births", 15, lambda: counts() == (2, 1))
            assert len(commands) == 1, commands
    finally:
        node.disconnect()


# An edge node in a process of its own, so that it can die as a plant's does (kill -9): its
# births bind alias 1 to the wafer id and 2 to Sensor-1, then it waits (at most a minute for its
# connection, and ten for the test).
EDGE_NODE = """
import sys, time
import pysparkplug as psp
now = psp.get_current_timestamp()
node = psp.EdgeNode("fab", "etch-5", metrics=[])
node.connect("127.0.0.1", port=int(sys.argv[1]), blocking=False)
deadline = time.monotonic() + 60
while not node._connected:
    if time.monotonic() > deadline:
        sys.exit("no connection to the broker")
    time.sleep(0.05)
node.register(psp.Device("chamber-1", metrics=[
    psp.Metric(timestamp=now, name="wafer_id", datatype=psp.DataType.STRING, value="", alias=1),
    psp.Metric(timestamp=now, name="Sensor-1", datatype=psp.DataType.DOUBLE, value=0.0, alias=2),
]))
print("born", flush=True)
time.sleep(600)
"""


def test_an_edge_node_s_death_voids_the_aliases_its_births_bound(mosquitto, tmp_path):
    """A real edge node (pysparkplug) that dies without a word leaves the NDEATH it set as its
    will, with the bdSeq of its NBIRTH: faultline then forgets the node's and its devices' births,
    so data that still uses their aliases is dead-lettered as `unbound_alias` (and the node asked
    to be born again) instead of being read with aliases of a session that ended. (That a death
    with another bdSeq voids nothing is tested in src/bus/admit.rs.)"""
    import sys

    web = free_port()
    base = f"http://127.0.0.1:{web}"
    env = sparkplug_env(mosquitto, web, f"faultline-death-{web}")
    log = tmp_path / "serve.log"
    seen = {"NBIRTH": [], "DBIRTH": [], "NDEATH": [], "probe": []}
    watcher = psp.Client(client_id=f"death-watcher-{web}")
    watcher.connect("127.0.0.1", port=mosquitto, blocking=False)
    node = None

    def ddata(group, edge, device, wafer_id):
        ts = psp.get_current_timestamp()
        topic = psp.Topic(message_type=psp.MessageType.DDATA, group_id=group, edge_node_id=edge, device_id=device)
        payload = psp.DData(ts, seq=0, metrics=(
            psp.Metric(timestamp=ts, name=None, datatype=psp.DataType.STRING, value=wafer_id, alias=1),
            psp.Metric(timestamp=ts, name=None, datatype=psp.DataType.DOUBLE, value=3000.0, alias=2),
        ))
        watcher.publish(psp.Message(topic=topic, payload=payload, qos=psp.QoS.AT_MOST_ONCE, retain=False),
                        include_dtypes=True)

    def by_alias(wafer_id):
        ddata("fab", "etch-5", "chamber-1", wafer_id)

    def counts():
        with HTTP.open(f"{base}/metrics", timeout=5) as r:
            text = r.read().decode()
        m = {g.group(1): float(g.group(2)) for g in re.finditer(r"^(faultline_\S+) (\S+)$", text, re.M)}
        return m.get("faultline_rows_scored_total", 0), m.get('faultline_rows_dead_lettered_total{reason="unbound_alias"}', 0)

    def watch(kind, **levels):
        topic = psp.Topic(message_type=getattr(psp.MessageType, kind), group_id="fab", edge_node_id="etch-5", **levels)
        watcher.subscribe(topic, psp.QoS.AT_MOST_ONCE, lambda _c, message: seen[kind].append(message))

    def probed():
        # Data outside faultline's group; once one arrives, the subscriptions before it hold.
        ddata("probe", "p", "d", "probe")
        time.sleep(0.05)
        return seen["probe"]

    try:
        with serve(env, log, base, ready="/readyz", cwd=tmp_path):
            # The watcher sees the births and the death pass through the broker, so that the
            # data it sends after them reaches faultline after them too.
            watch("NBIRTH")
            watch("DBIRTH", device_id="chamber-1")
            watch("NDEATH")
            probe = psp.Topic(message_type=psp.MessageType.DDATA, group_id="probe", edge_node_id="p", device_id="d")
            watcher.subscribe(probe, psp.QoS.AT_MOST_ONCE, lambda _c, message: seen["probe"].append(message))
            wait_for("the watcher's subscriptions", 15, probed)
            node = subprocess.Popen([sys.executable, "-c", EDGE_NODE, str(mosquitto)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wait_for("the edge node's births", 60, lambda: (seen["NBIRTH"] and seen["DBIRTH"]) or node.poll() is not None)
            assert node.poll() is None, node.communicate()
            by_alias("W-before")
            wait_for("the alias-only wafer scored", 15, lambda: counts() == (1, 0))
            node.kill()
            node.wait(timeout=10)
            wait_for("the edge node's will (NDEATH)", 15, lambda: seen["NDEATH"])
            # The will carries the bdSeq its NBIRTH did: that is what ties the death to the birth.
            born = [m.value for m in seen["NBIRTH"][-1].payload.metrics if m.name == "bdSeq"]
            assert born == [seen["NDEATH"][0].payload.bd_seq_metric.value], (born, seen["NDEATH"][0])
            by_alias("W-after")
            wait_for("the alias-only wafer dead-lettered", 15, lambda: counts() == (1, 1))
    finally:
        if node is not None and node.poll() is None:
            node.kill()
        watcher.disconnect()
