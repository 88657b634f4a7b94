"""The observability packaging, checked without Docker: the Grafana dashboard, docker/ (Dockerfile,
compose stack, Mosquitto, Prometheus and Grafana provisioning) and how they agree with each other and
with faultline itself.

Docker cannot run where these tests run, so the files are read and cross-checked: every metric the
dashboard queries must be one that a real `faultline serve` exports on /metrics, every path the
compose file mounts must exist, and ports, hosts and paths must match across files. Where the real
tools are installed, they check their own files too: `promtool check config`, `promtool check rules`
on the dashboard's queries, `mosquitto -c` on the broker's config.
"""
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

import daemon
from daemon import clean_env, free_port, require_binary

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DASHBOARD = ROOT / "dashboards" / "faultline.json"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
FAULTLINE_TOML = DOCKER / "faultline.toml"
MOSQUITTO_CONF = DOCKER / "mosquitto" / "mosquitto.conf"
PROMETHEUS_YML = DOCKER / "prometheus" / "prometheus.yml"
ALERTS_YML = DOCKER / "prometheus" / "alerts.yml"
ALERTS_TEST_YML = DOCKER / "prometheus" / "alerts.test.yml"
GRAFANA_DATASOURCE = DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
GRAFANA_DASHBOARDS = DOCKER / "grafana" / "provisioning" / "dashboards" / "faultline.yaml"
BIN = os.environ.get("FAULTLINE_BIN", str(ROOT / "target" / "debug" / "faultline"))
if not os.path.isabs(BIN):
    BIN = str(ROOT / BIN)

# What an operator needs on the dashboard (issue 5); each must be queried by some panel.
DASHBOARD_METRICS = {
    "faultline_rows_received_total",
    "faultline_rows_scored_total",
    "faultline_faults_total",
    "faultline_rows_dead_lettered_total",
    "faultline_batch_rows_bucket",
    "faultline_row_latency_seconds_bucket",
    "faultline_score_seconds_bucket",
    "faultline_queue_rows",
    "faultline_source_connected",
    "faultline_publish_errors_total",
    "faultline_drift_sensors_out_of_range",
    "faultline_missing_ratio",
    "faultline_score_mean",
    "faultline_model_info",
    "faultline_model_threshold",
    "faultline_http_requests_total",
    "faultline_kafka_consumer_lag",
    "faultline_outputs_resent_total",
    "faultline_model_reload_failing",
}

# Series that exist only on Kafka: the live fixture runs on the embedded MQTT broker, so these are
# checked against a Kafka-fed /metrics by tests/kafka.rs instead.
KAFKA_ONLY = {"faultline_kafka_consumer_lag", "faultline_outputs_resent_total"}

# Straight to 127.0.0.1, whatever http_proxy says.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Every wait below is bounded by one of these.
START_TIMEOUT_S = 20
STOP_TIMEOUT_S = 15
COMMAND_TIMEOUT_S = 30


# --- helpers (the daemon's own: tests/python/daemon.py) ------------------------------------------------


# Words of PromQL that look like metric names but are not.
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan", "start", "end",
}


def metric_names(expr):
    """The metric names a PromQL expression selects (function names, label names, keywords, Grafana
    variables and durations removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    e = re.sub(r"\$\{[^}]*\}|\$\w+", " ", e)  # Grafana variables
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)  # label lists
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group()
        if e[m.end():].lstrip().startswith("("):
            continue  # a function call
        if word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def metric_families(text):
    """{name: type} from the `# TYPE <name> <type>` lines of a Prometheus text exposition."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))


def is_exported(name, families):
    if name in families:
        return True
    for suffix, kinds in (("_bucket", {"histogram"}), ("_sum", {"histogram", "summary"}),
                          ("_count", {"histogram", "summary"})):
        if name.endswith(suffix) and families.get(name[: -len(suffix)]) in kinds:
            return True
    return False


def load_dashboard():
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard):
    """Every panel, including those nested in (collapsed) rows; rows themselves are left out."""
    out = []
    for p in dashboard.get("panels", []):
        if p.get("type") == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def dashboard_exprs(dashboard):
    return [(p["title"], t["expr"]) for p in all_panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def load_compose():
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value):
    """Compose's ${VAR:-default} / ${VAR-default} with the variable unset, as in a plain `up`."""
    def sub(m):
        if m.group(2) is None:
            pytest.fail(f"{value!r} needs ${{{m.group(1)}}} set: give it a default")
        return m.group(2)
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", sub, str(value)).replace("$$", "$")


def port_mappings(service):
    """[(host_port, container_port)] of a compose service's `ports`."""
    out = []
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out.append((int(interpolate(p["published"])), int(interpolate(p["target"]))))
            continue
        parts = interpolate(p).split("/")[0].split(":")
        if len(parts) == 1:
            out.append((None, int(parts[0])))
        else:
            out.append((int(parts[-2]), int(parts[-1])))
    return out


def volume_mounts(service):
    """[(kind, source, target)] of a compose service's `volumes`: kind "bind" (source a Path) or "volume"."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            kind, source, target = v.get("type", "volume"), v.get("source"), v["target"]
        else:
            parts = interpolate(v).split(":")
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        if kind == "bind":
            source = (DOCKER / os.path.expanduser(source)).resolve()
        out.append((kind, source, target))
    return out


def mount_of(service, path):
    """The container path where `path` (a file or directory of this repository) is bind-mounted."""
    targets = [t for kind, s, t in volume_mounts(service) if kind == "bind" and s == path.resolve()]
    assert targets, f"{path.relative_to(ROOT)} is not mounted into this service"
    return targets[0]


def web_port():
    listen = tomllib.loads(FAULTLINE_TOML.read_text())["web"]["listen"]
    host, _, port = listen.rpartition(":")
    return host, int(port)


def dockerfile_instructions():
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
        current = ""
    return lines


def mosquitto_directives():
    out = {}
    for line in MOSQUITTO_CONF.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.setdefault(key, []).append(value.strip())
    return out


# --- the dashboard --------------------------------------------------------------------------------


def test_metric_name_extraction():
    """The PromQL reader the other checks rely on finds metrics and only metrics."""
    assert metric_names('sum by (reason) (rate(a_total{reason="x y", b=~"c"}[5m])) / on(job) b') == {"a_total", "b"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval])))") == {"h_bucket"}
    assert metric_names("count by (version) (info) > bool 1 offset 5m") == {"info"}
    assert metric_names("time() - 1e3") == set()


def test_dashboard_is_a_grafana_dashboard():
    d = load_dashboard()
    assert d["uid"] == "faultline"
    assert d["title"] == "faultline"
    assert d["schemaVersion"] == 39
    assert d["refresh"] == "10s"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables.get("datasource")
    assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus", variables
    panels = all_panels(d)
    assert panels, "the dashboard has no panels"
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    for p in panels:
        where = f"panel {p.get('title')!r}"
        assert p.get("title"), f"a panel has no title: {p.get('id')}"
        assert p.get("datasource", {}).get("uid") in ("${datasource}", "$datasource"), \
            f"{where}: its datasource must be the `datasource` variable, not {p.get('datasource')}"
        targets = p.get("targets", [])
        assert targets and all(t.get("expr", "").strip() for t in targets), f"{where} has a target without a PromQL expr"
        for t in targets:
            assert t.get("refId"), f"{where}: a target has no refId"
            assert t.get("datasource", p["datasource"]).get("uid") == p["datasource"]["uid"], where
            names = metric_names(t["expr"])
            assert names, f"{where}: {t['expr']!r} queries no metric"
            assert all(n.startswith("faultline_") for n in names), f"{where}: {t['expr']!r} queries {names}"
        pos = p["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, f"{where}: gridPos {pos}"
    cells = {}
    for p in panels:
        pos = p["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]!r} and {p['title']!r} overlap"
                cells[(x, y)] = p["title"]


def test_dashboard_shows_what_an_operator_needs():
    queried = set().union(*(metric_names(e) for _, e in dashboard_exprs(load_dashboard())))
    missing = DASHBOARD_METRICS - queried
    assert not missing, f"no panel queries {sorted(missing)}"
    types = {p["title"]: p["type"] for p in all_panels(load_dashboard())}
    for title, expr in dashboard_exprs(load_dashboard()):
        if "faultline_source_connected" in expr or "faultline_model_info" in expr:
            assert types[title] in ("stat", "table"), f"{title!r} should be a stat or table panel"


@pytest.fixture(scope="module")
def live_metrics(tmp_path_factory):
    """/metrics of a real `faultline serve` (embedded broker and web server on free ports)."""
    web = free_port()
    env = clean_env(FAULTLINE_BROKER__LISTEN=f"127.0.0.1:{free_port()}", FAULTLINE_WEB__LISTEN=f"127.0.0.1:{web}")
    base = f"http://127.0.0.1:{web}"
    with daemon.serve(env, tmp_path_factory.mktemp("serve") / "faultline.log", base, timeout_s=START_TIMEOUT_S):
        # Metric families with labels (faultline_http_requests_total{path,status}) appear once they have a
        # series: the /healthz requests above gave the HTTP ones theirs.
        with HTTP.open(f"{base}/metrics", timeout=5) as r:
            assert r.status == 200
            return r.read().decode()


def test_every_metric_the_dashboard_queries_is_exported(live_metrics):
    families = metric_families(live_metrics)
    assert "faultline_rows_scored_total" in families, f"/metrics does not look like faultline's:\n{live_metrics[:2000]}"
    missing = {}
    for title, expr in dashboard_exprs(load_dashboard()):
        for name in metric_names(expr) - KAFKA_ONLY:
            if not is_exported(name, families):
                missing.setdefault(name, []).append(title)
    assert not missing, (
        f"the dashboard queries metrics faultline does not export (no `# TYPE <name>` on /metrics): {missing}; "
        f"exported: {sorted(families)}"
    )


# --- the image ------------------------------------------------------------------------------------


def test_dockerfile_builds_small_non_root_image_with_model_config_and_healthcheck():
    ins = dockerfile_instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "the Dockerfile must be multi-stage"
    assert froms[0].split()[0] == "rust:1-bookworm", froms
    assert froms[-1].split()[0] == "debian:bookworm-slim", froms
    assert any(word == "RUN" and "cargo build --release --locked" in rest for word, rest in ins)
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    runtime = ins[last_from:]

    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the runtime stage has no USER: it would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), f"USER {users[-1]} is root"

    _, port = web_port()
    health = [rest for word, rest in runtime if word == "HEALTHCHECK"]
    assert health and "/healthz" in health[-1], "no HEALTHCHECK on /healthz"
    assert f":{port}/healthz" in health[-1], f"the HEALTHCHECK must probe [web] listen's port {port}"
    assert any(word == "RUN" and "curl" in rest for word, rest in runtime), "the HEALTHCHECK's curl is not installed"
    assert any(word == "EXPOSE" and str(port) in rest.split() for word, rest in runtime), f"EXPOSE {port} missing"

    copies = {}
    for word, rest in ins:
        if word == "COPY" and "--from" not in rest:
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            for src in args[:-1]:
                assert (ROOT / src).exists(), f"COPY {src}: no such file in the build context"
                copies[src.rstrip("/")] = args[-1].rstrip("/")
    assert copies.get("models/wafer-fault") == "/opt/faultline/models/wafer-fault", copies
    config_path = copies.get("docker/faultline.toml")
    assert config_path == "/etc/faultline/faultline.toml", copies

    entry = [json.loads(rest) for word, rest in runtime if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in runtime if word == "CMD"]
    assert entry and entry[-1] == ["faultline"], entry
    assert cmd and cmd[-1] == ["serve", "--config", config_path], cmd

    ignore = [line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
              if line.strip() and not line.strip().startswith("#")]
    assert "target/" in ignore or "target" in ignore, "the build context would carry target/"
    for src in copies:
        assert not any(src == i.rstrip("/") or src.startswith(i.rstrip("/") + "/") for i in ignore), \
            f"COPY {src} is excluded by docker/Dockerfile.dockerignore"


def test_the_builder_stage_holds_every_target_cargo_reads(tmp_path):
    """The builder stage's COPY lines, laid out in a folder, make a package Cargo can read: a
    target the manifest declares but the image lacks (examples/bench_kafka.rs once) stops
    `cargo build` before it compiles anything. `cargo check --bin` of a name that is not there
    parses the whole manifest and stops before compiling."""
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed")
    ins = dockerfile_instructions()
    froms = [i for i, (word, _) in enumerate(ins) if word == "FROM"]
    builder = ins[froms[0]:froms[1]]
    for word, rest in builder:
        if word != "COPY":
            continue
        args = [a for a in shlex.split(rest) if not a.startswith("--")]
        dest = tmp_path / args[-1].removeprefix("./").rstrip("/")
        for src in args[:-1]:
            source = ROOT / src
            target = dest if len(args) == 2 and not args[-1].endswith("/") or source.is_dir() else dest / source.name
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("target", "__pycache__"), dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, target)
    env = {**os.environ, "CARGO_TARGET_DIR": str(tmp_path / "target")}
    run = subprocess.run(
        [cargo, "check", "--offline", "--locked", "--features", "kafka", "--bin", "no-such-target"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert "failed to parse manifest" not in run.stderr, run.stderr
    assert "no bin target named `no-such-target`" in run.stderr, run.stderr


def test_image_config_is_valid_for_faultline():
    """`faultline --config docker/faultline.toml model` loads and validates the config (any error exits non-zero)."""
    require_binary()
    proc = subprocess.run([BIN, "--config", str(FAULTLINE_TOML), "model"], env=clean_env(),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert "threshold" in proc.stdout, proc.stdout
    cfg = tomllib.loads(FAULTLINE_TOML.read_text())
    assert cfg["source"]["kind"] == "mqtt"
    host, _ = web_port()
    assert host == "0.0.0.0", f"[web] listen on {host} is unreachable from outside the container"


# --- the compose stack ----------------------------------------------------------------------------


def test_compose_references_files_that_exist():
    compose = load_compose()
    services = compose["services"]
    for name in ("faultline", "mosquitto", "kafka", "prometheus", "grafana"):
        assert name in services, f"compose has no {name} service"
    named_volumes = set((compose.get("volumes") or {}).keys())
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            build = {"context": build} if isinstance(build, str) else build
            context = (DOCKER / build.get("context", ".")).resolve()
            assert context.is_dir(), f"{name}: build context {context} does not exist"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        for kind, source, target in volume_mounts(service):
            if kind == "bind":
                assert source.exists(), f"{name}: mounts {source}, which does not exist"
            else:
                assert source in named_volumes, f"{name}: volume {source!r} is not declared under volumes:"
    build = services["faultline"]["build"]
    assert (DOCKER / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    depends = services["faultline"].get("depends_on", [])
    assert "mosquitto" in depends, "faultline must start after mosquitto"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert set(services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}


def test_compose_ports_and_hosts_agree_with_faultline_config():
    services = load_compose()["services"]
    _, port = web_port()
    assert (8080, port) in port_mappings(services["faultline"]), \
        f"faultline's ports {port_mappings(services['faultline'])} do not publish [web] listen's port {port}"

    # faultline reads from the mosquitto service, on the port mosquitto.conf listens on.
    url = tomllib.loads(FAULTLINE_TOML.read_text())["source"]["mqtt"]["url"]
    m = re.fullmatch(r"mqtt://([^:/]+)(?::(\d+))?", url)
    assert m, url
    host, mqtt_port = m.group(1), int(m.group(2) or 1883)
    assert host in services, f"[source.mqtt] url names {host}, which is not a compose service"
    listeners = [int(v.split()[0]) for v in mosquitto_directives().get("listener", [])]
    assert mqtt_port in listeners, f"mosquitto.conf listens on {listeners}, faultline connects to {mqtt_port}"
    assert mount_of(services["mosquitto"], MOSQUITTO_CONF) == "/mosquitto/config/mosquitto.conf"

    # The demo publisher replays a file the image holds, to the topic faultline reads.
    replay = services.get("replay")
    if replay:
        command = replay["command"]
        copied = [rest.split()[-1] for word, rest in dockerfile_instructions() if word == "COPY"]
        assert command[1] in copied, f"the replay service reads {command[1]}, which the image does not hold"
        topic = tomllib.loads(FAULTLINE_TOML.read_text())["source"]["mqtt"].get("topic", "faultline/rows")
        assert command[command.index("--to") + 1] == f"mqtt://{host}:{mqtt_port}/{topic}"


def test_mosquitto_keeps_sessions_for_at_least_once():
    d = mosquitto_directives()
    assert d.get("allow_anonymous") == ["true"]
    assert d.get("persistence") == ["true"], "without persistence a broker restart forgets faultline's session"
    assert d.get("max_queued_messages") == ["0"], "the default 1000 drops rows queued while faultline is down"


def test_mosquitto_accepts_its_config(tmp_path):
    """Mosquitto itself loads the file (listener and data directory moved to this machine's free port and a temp dir)."""
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (Debian: apt-get install mosquitto), so its config is only read, not loaded")
    port = free_port()
    tmp_path.chmod(0o777)  # mosquitto started as root drops to its own user
    conf = re.sub(r"(?m)^listener \d+.*$", f"listener {port} 127.0.0.1", MOSQUITTO_CONF.read_text())
    conf = re.sub(r"(?m)^persistence_location .*$", f"persistence_location {tmp_path}/", conf)
    (tmp_path / "mosquitto.conf").write_text(conf)
    log = tmp_path / "mosquitto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mosquitto refused docker/mosquitto/mosquitto.conf (exit {proc.returncode}):\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mosquitto did not listen within 10 s:\n{log.read_text()}")
            time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_prometheus_scrapes_faultline():
    services = load_compose()["services"]
    prom = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert mount_of(services["prometheus"], PROMETHEUS_YML) == "/etc/prometheus/prometheus.yml"
    _, port = web_port()
    jobs = [j for j in prom["scrape_configs"]
            if any(t.startswith("faultline:") for sc in j.get("static_configs", []) for t in sc.get("targets", []))]
    assert len(jobs) == 1, "exactly one scrape job must target the faultline service"
    job = jobs[0]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"faultline:{port}"], f"{targets}: faultline serves /metrics on port {port}"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scrape_interval", prom.get("global", {}).get("scrape_interval")) == "5s"


def skip_without_promtool(why):
    """Skips a promtool check where promtool is absent; fails instead where it is required (CI)."""
    if os.environ.get("FAULTLINE_REQUIRE_PROMTOOL") == "1":
        pytest.fail(f"FAULTLINE_REQUIRE_PROMTOOL=1 but {why}")
    pytest.skip(why)


def test_promtool_accepts_prometheus_config():
    promtool = shutil.which("promtool")
    if not promtool:
        skip_without_promtool("promtool is not installed (Debian: apt-get install prometheus), so prometheus.yml was only parsed")
    proc = subprocess.run([promtool, "check", "config", str(PROMETHEUS_YML)],
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_rules_are_loaded_mounted_and_query_only_exported_metrics(live_metrics):
    assert yaml.safe_load(PROMETHEUS_YML.read_text()).get("rule_files") == ["alerts.yml"]
    prometheus = load_compose()["services"]["prometheus"]
    assert mount_of(prometheus, ALERTS_YML) == "/etc/prometheus/alerts.yml"
    rules = [r for g in yaml.safe_load(ALERTS_YML.read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert names >= {"FaultlineDown", "FaultlineNotReading", "FaultlineFaultRateSpike", "FaultlineDrift",
                     "FaultlineLiveQualityLow", "FaultlineRowsNotStored"}, names
    families = metric_families(live_metrics)
    for r in rules:
        for name in metric_names(r["expr"]) - {"up"}:
            assert is_exported(name, families), f"{r['alert']} queries {name}, which faultline does not export"
        assert r["labels"]["severity"] in ("critical", "warning"), r
        assert r["annotations"]["summary"], r


def test_promtool_fires_each_alert_on_its_test_series():
    """docker/prometheus/alerts.test.yml: each alert on series that must fire it and series that must not."""
    promtool = shutil.which("promtool")
    if not promtool:
        skip_without_promtool("promtool is not installed (Debian: apt-get install prometheus), so the alert rules were only parsed")
    tested = {t["alertname"] for case in yaml.safe_load(ALERTS_TEST_YML.read_text())["tests"]
              for t in case["alert_rule_test"]}
    rules = {r["alert"] for g in yaml.safe_load(ALERTS_YML.read_text())["groups"] for r in g["rules"]}
    assert tested == rules, f"alerts without a promtool test: {sorted(rules - tested)}"
    proc = subprocess.run([promtool, "test", "rules", str(ALERTS_TEST_YML)], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_starts_kafka_only_for_those_who_ask():
    services = load_compose()["services"]
    assert services["kafka"].get("profiles") == ["kafka"]
    for name in ("faultline", "mosquitto", "prometheus", "grafana"):
        assert not services[name].get("profiles"), f"{name} must start with a plain `docker compose up`"


def test_promtool_accepts_every_dashboard_query(tmp_path):
    """Each panel's PromQL parses: promtool checks it as the expression of a recording rule."""
    promtool = shutil.which("promtool")
    if not promtool:
        skip_without_promtool("promtool is not installed (Debian: apt-get install prometheus), so the dashboard's PromQL was not parsed")
    exprs = [re.sub(r"\$\{?__\w+\}?", "5m", e) for _, e in dashboard_exprs(load_dashboard())]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"faultline:dashboard_query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard():
    services = load_compose()["services"]
    grafana = services["grafana"]
    for kind in ("datasources", "dashboards"):
        assert mount_of(grafana, DOCKER / "grafana" / "provisioning" / kind) == f"/etc/grafana/provisioning/{kind}"

    # The dashboard provider loads the directory compose mounts the repository's dashboards/ on.
    providers = yaml.safe_load(GRAFANA_DASHBOARDS.read_text())["providers"]
    paths = [p["options"]["path"].rstrip("/") for p in providers if p.get("type", "file") == "file"]
    mounted = mount_of(grafana, DASHBOARD.parent).rstrip("/")
    assert paths == [mounted], f"the provider loads {paths}, compose mounts dashboards/ on {mounted}"
    home = grafana.get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home.startswith(mounted + "/") and (DASHBOARD.parent / home[len(mounted) + 1:]).is_file(), home

    # The datasource is the prometheus service, under the uid the dashboard's variable defaults to.
    datasources = yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"]
    assert len(datasources) == 1
    ds = datasources[0]
    assert ds["type"] == "prometheus" and ds["uid"] == "prometheus"
    m = re.fullmatch(r"http://([^:/]+):(\d+)/?", ds["url"])
    assert m and m.group(1) in services, f"{ds['url']} is not a compose service"
    assert services[m.group(1)]["image"].startswith("prom/prometheus"), f"{ds['url']} is not Prometheus"
    assert int(m.group(2)) == 9090, f"{ds['url']}: Prometheus listens on 9090"
    variable = next(v for v in load_dashboard()["templating"]["list"] if v["name"] == "datasource")
    assert variable["current"]["value"] == ds["uid"]
