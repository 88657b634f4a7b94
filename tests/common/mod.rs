//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;
use tokio::sync::mpsc;

/// The real wafer data directory, if this machine has it (`$FAULTLINE_DATA_DIR`, else
/// `../shared/data` beside the repository). When it is absent the calling test reports that it
/// skipped itself — unless `FAULTLINE_REQUIRE_DATA=1`, where absence fails the test.
pub fn data_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FAULTLINE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.join("wafer/wafer_train.csv").is_file() {
        return Some(dir);
    }
    if std::env::var("FAULTLINE_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!(
            "{test}: FAULTLINE_REQUIRE_DATA=1 but the real wafer data is not at {}",
            dir.display()
        );
    }
    eprintln!(
        "{test}: SKIPPED — the real wafer data is absent ({}); this test runs where it exists",
        dir.display()
    );
    None
}

/// Runs the `faultline` binary with `args`.
pub fn faultline(args: &[&str]) -> Output {
    command()
        .args(args)
        .output()
        .expect("the faultline binary runs")
}

/// The faultline binary as [`faultline`] runs it, for a test that sets more (stdin, stdout,
/// arguments that are not UTF-8, or a process it signals).
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_faultline"));
    c.env_remove("RUST_BACKTRACE");
    c
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Mosquitto broker on a free port, stopped on drop.
pub struct Mosquitto {
    /// Its port.
    pub port: u16,
    /// Declared before `dir`: the broker stops before its directory goes.
    broker: Helper,
    dir: Option<tempfile::TempDir>,
}

/// A stopped persistent Mosquitto: its directory (with the saved state) and port.
pub struct StoppedMosquitto(tempfile::TempDir, u16);

/// How to stop a broker.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// SIGTERM: a persistent broker saves its state.
    Term,
    /// SIGKILL: nothing is saved.
    Kill,
}

impl Mosquitto {
    /// Starts `mosquitto` (Debian's package) and waits until it accepts connections.
    pub fn start() -> Mosquitto {
        Mosquitto::start_in(tempfile::tempdir().unwrap(), free_port(), false)
    }

    /// Starts Mosquitto with its sessions and queues saved to disk when it stops.
    pub fn start_persistent() -> Mosquitto {
        Mosquitto::start_in(tempfile::tempdir().unwrap(), free_port(), true)
    }

    /// Stops it gracefully (SIGTERM, so a persistent broker saves its state).
    pub fn stop(mut self) -> StoppedMosquitto {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.broker.0.id().to_string())
            .status();
        let _ = self.broker.0.wait();
        StoppedMosquitto(
            self.dir.take().expect("running broker has its directory"),
            self.port,
        )
    }

    /// Starts a broker that keeps nothing across restarts (Mosquitto's default) on `port`.
    pub fn start_on(port: u16) -> Mosquitto {
        Mosquitto::start_in(tempfile::tempdir().unwrap(), port, false)
    }

    /// Stops it with `how`; returns its port.
    pub fn stop_with(mut self, how: Stop) -> u16 {
        let signal = match how {
            Stop::Term => "-TERM",
            Stop::Kill => "-KILL",
        };
        let _ = Command::new("kill")
            .arg(signal)
            .arg(self.broker.0.id().to_string())
            .status();
        let _ = self.broker.0.wait();
        self.port
    }

    /// Starts a persistent broker again on its old port, from its saved state.
    pub fn start_again(stopped: StoppedMosquitto) -> Mosquitto {
        Mosquitto::start_in(stopped.0, stopped.1, true)
    }

    fn start_in(dir: tempfile::TempDir, port: u16, persistent: bool) -> Mosquitto {
        // Offline queues must hold every row published while a persistent client is away.
        let persistence = if persistent {
            format!(
                "persistence true\npersistence_location {}/\nuser root\n",
                dir.path().display()
            )
        } else {
            "persistence false\n".to_string()
        };
        let broker = mosquitto_with(
            dir.path(),
            &format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}max_queued_messages 0\nmax_inflight_messages 1000\n"
            ),
            &[port],
        );
        Mosquitto {
            port,
            broker,
            dir: Some(dir),
        }
    }
}

/// `row` with each sensor moved to its training 1st or 99th percentile wherever that raises
/// P(fault): a wafer the model clearly flags, built from the card alone.
pub fn clearly_faulty(model: &faultline::model::Model, row: &[f32]) -> Vec<f32> {
    faultline::model::synthetic::towards_fault(model, row, 1.0)
}

/// Synthetic rows with one clearly faulty and one clearly good row first.
pub fn rows(model: &faultline::model::Model, n: usize) -> (Vec<String>, String, String) {
    let batch = faultline::model::synthetic::rows(model.card(), n.max(200), 21);
    let mut p = vec![0f32; batch.len()];
    model.probabilities(&batch.values, &mut p);
    let faulty = (0..batch.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap();
    let good = (0..batch.len())
        .min_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap();
    let faulty_row = clearly_faulty(model, batch.row(faulty));
    let mut pf = [0f32];
    model.probabilities(&faulty_row, &mut pf);
    assert!(pf[0] >= model.threshold() && p[good] < model.threshold());
    let msgs = (0..n)
        .map(|i| faultline::row::json::encode_row(&batch.ids[i], batch.row(i), model.features()))
        .collect();
    (
        msgs,
        faultline::row::json::encode_row("Known-Faulty", &faulty_row, model.features()),
        faultline::row::json::encode_row("Known-Good", batch.row(good), model.features()),
    )
}

/// GET over a plain TCP connection; the whole response, status line included.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Waits (up to 15 s) for `/readyz` to answer 200.
pub async fn wait_ready(addr: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = http_get(addr, "/readyz").await;
        if r.contains("200 OK") {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Polls `/readyz` (up to 30 s) until its answer satisfies `done`, and returns the last answer,
/// for the caller's assertions: a refusal shows after a connection attempt or two, which a loaded
/// machine can take seconds to make.
pub async fn readyz_when(addr: std::net::SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = http_get(addr, "/readyz").await;
        if done(&r) || tokio::time::Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Sends the daemon's logs to the test output when `TEST_LOG` holds a filter (`TEST_LOG=info`).
pub fn log() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// The committed model's graph bytes and card.
pub fn committed() -> (Vec<u8>, serde_json::Value) {
    let dir = repo().join("models/wafer-fault");
    let onnx = std::fs::read(dir.join("model.onnx")).unwrap();
    let card = serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    (onnx, card)
}

/// Re-encodes a changed graph and a card that vouches for it (so only the change is tested).
pub fn rewrite(
    onnx: &[u8],
    card: &serde_json::Value,
    change: impl FnOnce(&mut tract_onnx::pb::ModelProto),
) -> (Vec<u8>, serde_json::Value) {
    use prost::Message;
    let mut proto = tract_onnx::pb::ModelProto::decode(onnx).unwrap();
    change(&mut proto);
    let bytes = proto.encode_to_vec();
    let sha = faultline::model::sha256_hex(&bytes);
    let mut card = card.clone();
    card["version"] = format!("wf-{}", &sha[..12]).into();
    card["onnx_sha256"] = sha.into();
    (bytes, card)
}

/// An HTTP/1.1 request over a plain TCP connection; returns (status code, body).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A helper process (a broker, a TLS terminator) killed when the test ends, passed or not: a
/// leaked one would keep the test runner's output pipe open.
pub struct Helper(pub std::process::Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mosquitto with the configuration `conf` (written into `dir`), once every one of `ports`
/// accepts connections.
pub fn mosquitto_with(dir: &std::path::Path, conf: &str, ports: &[u16]) -> Helper {
    let path = dir.join("mosquitto.conf");
    std::fs::write(&path, conf).unwrap();
    let broker = Helper(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto runs (apt-get install mosquitto)"),
    );
    for &port in ports {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not start on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    broker
}

/// Waits until `daemon` has received `bound` rows from `source` (30 s at most), then checks that
/// it stops there: 3 s later it holds at most the one message over the bound that waits for room
/// (its row may be counted after the bound's last: it comes when the producer sends it), the
/// count then stays put for 2 s more, and the queue holds `bound` rows. Returns the count.
pub async fn reading_stops_at(daemon: &Daemon, source: &str, bound: u32) -> f64 {
    let received = format!("faultline_rows_received_total{{source=\"{source}\"}} ");
    let bound = f64::from(bound);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metric(daemon.web, &received).await < bound {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = metric(daemon.web, &received).await;
    assert!(first <= bound + 1.0, "{first}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metric(daemon.web, &received).await, first);
    assert_eq!(metric(daemon.web, "faultline_queue_rows ").await, bound);
    first
}

/// The value of the first `/metrics` line starting with `prefix`.
pub async fn metric(addr: std::net::SocketAddr, prefix: &str) -> f64 {
    let (value, m) = metric_if_any(addr, prefix).await;
    value.unwrap_or_else(|| panic!("no {prefix} in:\n{m}"))
}

/// A labelled counter's value, 0 while its series does not exist: a series such as
/// `faultline_rows_received_total{source="kafka"}` appears on its first increment.
pub async fn counter_or_zero(addr: std::net::SocketAddr, prefix: &str) -> f64 {
    metric_if_any(addr, prefix).await.0.unwrap_or(0.0)
}

/// The value on the line of `/metrics` that starts with `prefix`, if there is one, and the page.
async fn metric_if_any(addr: std::net::SocketAddr, prefix: &str) -> (Option<f64>, String) {
    let m = http_get(addr, "/metrics").await;
    let value = m.lines().find_map(|l| l.strip_prefix(prefix)).map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{prefix} has no number in:\n{m}"))
    });
    (value, m)
}

/// A test client: publishes rows and collects what arrives on the subscribed topics.
pub struct Client {
    pub client: AsyncClient,
    pub messages: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl Client {
    pub async fn connect(port: u16, id: &str, topics: &[String]) -> Client {
        Client::connect_with(port, id, topics, true).await
    }

    /// With `clean = false` the broker keeps this client's subscription and queue while it is away.
    pub async fn connect_with(port: u16, id: &str, topics: &[String], clean: bool) -> Client {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            // Past faultline's 16 MiB payload limit, so that a test can send more.
            .set_max_packet_size(1 << 25, 1 << 25)
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(clean);
        let (client, mut eventloop) = AsyncClient::new(options, 10_000);
        let (tx, messages) = mpsc::unbounded_channel();
        let (ready_tx, mut ready) = mpsc::channel(1);
        let subs: Vec<String> = topics.to_vec();
        let sub_client = client.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for t in &subs {
                            sub_client.subscribe(t, QoS::AtLeastOnce).await.unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.try_send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        if !topics.is_empty() {
            tokio::time::timeout(Duration::from_secs(10), ready.recv())
                .await
                .expect("subscribed");
        }
        Client { client, messages }
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.publish_at(QoS::AtLeastOnce, topic, payload).await;
    }

    pub async fn publish_at(&self, qos: QoS, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, qos, false, payload.into())
            .await
            .unwrap();
    }

    /// Collects messages until `done` says so; panics after `secs`.
    pub async fn collect_until(
        &mut self,
        secs: u64,
        mut done: impl FnMut(&[(String, Value)]) -> bool,
    ) -> Vec<(String, Value)> {
        let mut got = vec![];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !done(&got) {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some((topic, payload))) => {
                    got.push((topic, serde_json::from_slice(&payload).unwrap()))
                }
                _ => panic!(
                    "timed out after {secs} s with {} messages: {:?}",
                    got.len(),
                    &got[..got.len().min(5)]
                ),
            }
        }
        got
    }
}

/// `faultline serve` in its own process (so it can be killed with SIGKILL), logging to a file.
pub struct Daemon {
    /// Its HTTP address.
    pub web: std::net::SocketAddr,
    child: std::process::Child,
    log: tempfile::NamedTempFile,
}

impl Daemon {
    /// Starts the binary with `env` (the web address is added) and waits until `/readyz` is 200.
    pub async fn start(env: &[(String, String)]) -> Daemon {
        let mut d = Daemon::spawn(env);
        let web = d.web;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut ready = String::new();
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("faultline serve exited with {status}:\n{}", d.log_text());
            }
            if tokio::net::TcpStream::connect(web).await.is_ok() {
                ready = http_get(web, "/readyz").await;
                if ready.contains("200 OK") {
                    return d;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never ready ({ready}):\n{}",
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the binary with `env` (the web address is added) and returns at once.
    pub fn spawn(env: &[(String, String)]) -> Daemon {
        let port = free_port();
        let web: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("FAULTLINE_WEB__LISTEN", web.to_string())
            .env(
                "RUST_LOG",
                std::env::var("DAEMON_LOG").unwrap_or("info,librdkafka=warn".into()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Daemon { web, child, log }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits up to `secs` for its log to hold `needle`; panics with the log if it never does.
    pub async fn wait_log(&self, needle: &str, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !self.log_text().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {needle:?} in its log after {secs} s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush, no commit. Returns what it had logged.
    pub fn kill9(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.log_text()
    }

    /// Waits up to `limit` for it to exit by itself; its status, if it did.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Sends `signal` (`HUP`, `TERM`, ...) and returns at once.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Sends SIGTERM and returns at once (see [`Daemon::wait_exit`]).
    pub fn sigterm(&self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGTERM, and its exit status once it has stopped.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every row of a wafer CSV in `model`'s feature order (other columns, such as `Time`, ignored).
pub fn read_wafers(
    path: &std::path::Path,
    model: &faultline::model::Model,
) -> faultline::row::RowBatch {
    faultline::row::csv::CsvRows::new(
        std::fs::File::open(path).unwrap(),
        &faultline::row::Schema::new(model.features()),
        faultline::row::csv::CsvOptions {
            allow_extra_columns: true,
            batch_rows: 4096,
        },
    )
    .unwrap()
    .read_all()
    .unwrap()
}

/// Rows for the crash tests: real wafers replayed with unique ids (`<id>#<i>`) where the data is,
/// else synthetic ones. Returns (id, JSON message) pairs and where they came from.
pub fn crash_rows(
    model: &faultline::model::Model,
    n: usize,
    test: &str,
) -> (Vec<(String, String)>, &'static str) {
    let (base, origin) = match data_dir(test) {
        Some(dir) => (
            read_wafers(&dir.join("wafer/wafer_train.csv"), model),
            "real wafers",
        ),
        None => (
            faultline::model::synthetic::rows(model.card(), 2000, 5),
            "synthetic wafers",
        ),
    };
    let rows = (0..n)
        .map(|i| {
            let j = i % base.len();
            let id = format!("{}#{i}", base.ids[j]);
            let msg = faultline::row::json::encode_row(&id, base.row(j), model.features());
            (id, msg)
        })
        .collect();
    (rows, origin)
}

/// How many rows the crash tests publish: `FAULTLINE_CRASH_ROWS`, else `default`.
pub fn crash_row_count(default: usize) -> usize {
    std::env::var("FAULTLINE_CRASH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A point between 10% and 90% of `n`, different on every run.
pub fn random_point(n: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    n / 10 + nanos % (n * 8 / 10).max(1)
}

/// Runs openssl with `args` in `dir`.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` (`<name>.pem`, `<name>.key`) and, signed by it, `<leaf>.pem`/`<leaf>.key`
/// for localhost with the given extended key usage.
pub fn issue(dir: &std::path::Path, ca: &str, leaves: &[(&str, &str)]) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    let (ca_key, ca_pem) = (format!("{ca}.key"), format!("{ca}.pem"));
    let subject = format!("/CN={ca}");
    args.extend([
        "-keyout", &ca_key, "-out", &ca_pem, "-days", "2", "-subj", &subject,
    ]);
    openssl(dir, &args);
    for (leaf, usage) in leaves {
        let (key, csr, pem, ext) = (
            format!("{leaf}.key"),
            format!("{leaf}.csr"),
            format!("{leaf}.pem"),
            format!("{leaf}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            format!("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// Defaults on the embedded broker (a free port) with the web server on a free port.
pub fn embedded_config() -> faultline::config::Config {
    let port = free_port();
    faultline::config::RawConfig::load_with_env(
        None,
        [
            ("FAULTLINE_BROKER__LISTEN", format!("127.0.0.1:{port}")),
            ("FAULTLINE_WEB__LISTEN", "127.0.0.1:0".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    )
    .unwrap()
    .validate()
    .unwrap()
}
