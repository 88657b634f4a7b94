//! `faultline serve` end to end over real sockets: the embedded broker (rumqttd) and a real
//! Mosquitto, a real MQTT client publishing rows and collecting faults, scores and dead letters.

mod common;

use common::{http_get, metric, rows, wait_ready, Client};
use faultline::config::{Bus, Config, RawConfig};
use faultline::model::{synthetic, Model};
use faultline::pipeline as app;
use faultline::row::json::encode_row;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Configuration for a test: unique topics and client id, the given broker, web on port 0.
fn config(tag: &str, embedded: Option<u16>, broker_port: u16, extra: &[(&str, String)]) -> Config {
    RawConfig::load_with_env(None, daemon_env(tag, embedded, broker_port, extra))
        .unwrap()
        .validate()
        .unwrap()
}

/// The environment of a daemon reading `<tag>/rows` (see [`config`]).
fn daemon_env(
    tag: &str,
    embedded: Option<u16>,
    broker_port: u16,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (
            "FAULTLINE_SOURCE__MQTT__TOPIC".into(),
            format!("{tag}/rows"),
        ),
        (
            "FAULTLINE_SOURCE__MQTT__CLIENT_ID".into(),
            format!("faultline-{tag}"),
        ),
        (
            "FAULTLINE_SINK__FAULTS_TOPIC".into(),
            format!("{tag}/faults"),
        ),
        (
            "FAULTLINE_SINK__SCORES_TOPIC".into(),
            format!("{tag}/scores"),
        ),
        (
            "FAULTLINE_SINK__DEAD_LETTER_TOPIC".into(),
            format!("{tag}/dead"),
        ),
        ("FAULTLINE_WEB__LISTEN".into(), "127.0.0.1:0".into()),
        ("FAULTLINE_SHUTDOWN__GRACE_MS".into(), "10000".into()),
    ];
    match embedded {
        Some(port) => {
            env.push(("FAULTLINE_SOURCE__KIND".into(), "embedded".into()));
            env.push((
                "FAULTLINE_BROKER__LISTEN".into(),
                format!("127.0.0.1:{port}"),
            ));
        }
        None => {
            env.push(("FAULTLINE_SOURCE__KIND".into(), "mqtt".into()));
            env.push((
                "FAULTLINE_SOURCE__MQTT__URL".into(),
                format!("mqtt://127.0.0.1:{broker_port}"),
            ));
        }
    }
    for (k, v) in extra {
        env.push((k.to_string(), v.clone()));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_scores_faults_and_dead_letters_bad_rows() {
    let port = common::free_port();
    let cfg = config("e2e", Some(port), port, &[]);
    let model = Arc::new(Model::embedded().unwrap());
    let app = app::start(&cfg, model.clone()).await.unwrap();
    let mut c = Client::connect(
        port,
        "e2e-test",
        &["e2e/faults".into(), "e2e/scores".into(), "e2e/dead".into()],
    )
    .await;

    // Health and readiness over real HTTP.
    let health = http_get(app.web_addr, "/healthz").await;
    assert!(
        health.contains("200 OK") && health.contains("\"ok\""),
        "{health}"
    );
    wait_ready(app.web_addr).await;

    let (_, faulty, good) = rows(&model, 0);
    c.publish("e2e/rows", faulty).await;
    c.publish("e2e/rows", good).await;
    c.publish("e2e/rows", "{not json").await;
    c.publish("e2e/rows", r#"{"id": "W-type", "Sensor-1": "abc"}"#)
        .await;
    let too_many = format!(
        r#"{{"id": "W-long", "values": [{}]}}"#,
        vec!["1.0"; 591].join(",")
    );
    c.publish("e2e/rows", too_many).await;

    let got = c
        .collect_until(20, |g| {
            g.iter().filter(|(t, _)| t == "e2e/dead").count() == 3
                && g.iter().filter(|(t, _)| t == "e2e/scores").count() == 2
        })
        .await;
    let faults: Vec<&Value> = got
        .iter()
        .filter(|(t, _)| t == "e2e/faults")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(faults.len(), 1, "{got:?}");
    let f = faults[0];
    assert_eq!(f["id"], "Known-Faulty");
    assert_eq!(f["fault"], true);
    assert_eq!(f["model_version"], model.version());
    assert!((f["threshold"].as_f64().unwrap() - model.threshold() as f64).abs() < 1e-6);
    assert!(f["probability"].as_f64().unwrap() >= f["threshold"].as_f64().unwrap());
    assert_eq!(f["rule"], "threshold");
    assert_eq!(f["unusual_sensors"].as_array().unwrap().len(), 3);
    // The model's own explanation: five sensors it reads, and base + Σ ≈ logit(P) (the rest is
    // carried by sensors beyond the five).
    let c = f["contributions"].as_array().unwrap();
    assert_eq!(c.len(), 5);
    assert!(c[0]["sensor"].as_str().unwrap().starts_with("Sensor-"));
    assert!(
        c[0]["contribution"].as_f64().unwrap().abs()
            >= c[4]["contribution"].as_f64().unwrap().abs()
    );
    assert!(f["base"].as_f64().is_some());
    assert!(f["scored_at"].as_str().unwrap().ends_with('Z'));
    // With a scores topic, a verdict that is not a fault lists its unusual sensors too.
    let good = got
        .iter()
        .find(|(t, v)| t == "e2e/scores" && v["id"] == "Known-Good")
        .map(|(_, v)| v)
        .expect("the good row's score");
    assert_eq!(good["fault"], false);
    assert_eq!(
        good["unusual_sensors"].as_array().unwrap().len(),
        3,
        "{good}"
    );

    let dead: HashMap<String, &Value> = got
        .iter()
        .filter(|(t, _)| t == "e2e/dead")
        .map(|(_, v)| (v["reason"].as_str().unwrap().to_string(), v))
        .collect();
    assert_eq!(dead["malformed_json"]["payload"], "{not json");
    assert!(
        dead["wrong_type"]["error"]
            .as_str()
            .unwrap()
            .contains("Sensor-1"),
        "{:?}",
        dead["wrong_type"]
    );
    assert!(
        dead["wrong_length"]["error"]
            .as_str()
            .unwrap()
            .contains("591"),
        "{:?}",
        dead["wrong_length"]
    );
    assert_eq!(dead["wrong_type"]["column"], "Sensor-1");
    assert_eq!(dead["wrong_length"]["column"], "values");
    assert!(dead["malformed_json"].get("column").is_none());
    assert_eq!(dead["wrong_type"]["topic"], "e2e/rows");
    assert!(dead["wrong_type"]["received_at"].as_str().is_some());

    // The same story in /metrics, once the acknowledgements are through.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = http_get(app.web_addr, "/metrics").await;
        // The acknowledger sets the queue's gauge after the batch's latencies.
        if (m.contains("faultline_row_latency_seconds_count 5")
            && m.contains("faultline_queue_rows 0"))
            || tokio::time::Instant::now() > deadline
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in [
        "faultline_rows_received_total{source=\"mqtt\"} 5",
        "faultline_rows_scored_total 2",
        "faultline_faults_total 1",
        "faultline_rows_dead_lettered_total{reason=\"malformed_json\"} 1",
        "faultline_rows_dead_lettered_total{reason=\"wrong_type\"} 1",
        "faultline_rows_dead_lettered_total{reason=\"wrong_length\"} 1",
        "faultline_source_connected{source=\"mqtt\"} 1",
        "faultline_queue_rows 0",
        // The test's runtime, which the pipeline runs on here.
        "faultline_runtime_workers 2",
        "faultline_row_latency_seconds_count 5",
        "faultline_http_requests_total{path=\"/healthz\",status=\"200\"} 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
    assert!(metrics.contains(&format!(
        "faultline_model_info{{version=\"{}\"}} 1",
        model.version()
    )));

    app.shutdown().await.unwrap();
}

/// A large unreadable message (4 MB of control bytes, which JSON escapes to 24 MB) is
/// dead-lettered with its first 64 KiB, and the rows behind it are scored: its whole text would
/// make a dead letter over the publisher's limit, whose retries stopped the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_unreadable_message_is_dead_lettered_clipped_and_the_stream_goes_on() {
    let port = common::free_port();
    let cfg = config("big", Some(port), port, &[]);
    let model = Arc::new(Model::embedded().unwrap());
    let app = app::start(&cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    let mut c = Client::connect(port, "big-test", &["big/scores".into(), "big/dead".into()]).await;
    c.publish("big/rows", vec![1u8; 4 << 20]).await;
    let (_, _, good) = rows(&model, 0);
    c.publish("big/rows", good).await;
    let got = c
        .collect_until(30, |g| {
            g.iter().any(|(t, _)| t == "big/dead") && g.iter().any(|(t, _)| t == "big/scores")
        })
        .await;
    let (_, letter) = got.iter().find(|(t, _)| t == "big/dead").unwrap();
    let size = serde_json::to_string(letter).unwrap().len();
    assert!(size < 500_000, "{size} bytes");
    assert_eq!(letter["reason"], "malformed_json");
    let payload = letter["payload"].as_str().unwrap();
    assert!(
        payload.ends_with("…(truncated: 4194304 bytes in all)"),
        "{}",
        &payload[payload.len() - 60..]
    );
    assert_eq!(
        payload.len(),
        64 * 1024 + "…(truncated: 4194304 bytes in all)".len()
    );
    app.shutdown().await.unwrap();
}

/// On Mosquitto, which takes messages up to MQTT's 256 MiB, a message over faultline's 16 MiB
/// payload limit is dead-lettered as too large and the rows behind it are read. faultline's
/// client refused the packet and dropped the connection, and the broker, keeping the session,
/// sent it again at every reconnect: nothing behind it was read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_payload_limit_is_dead_lettered_and_the_rows_behind_it_are_read() {
    let broker = common::Mosquitto::start();
    over_the_payload_limit(config("huge", None, broker.port, &[]), broker.port).await;
}

/// The same on the embedded broker, which refused such a message itself (at faultline's 16 MiB
/// it closed the publisher's connection, and a publisher sending it again stalled there): it
/// takes up to 32 MiB, so faultline reads the message and dead-letters it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_passes_a_message_over_the_limit_on_to_be_dead_lettered() {
    let port = common::free_port();
    over_the_payload_limit(config("huge", Some(port), port, &[]), port).await;
}

async fn over_the_payload_limit(cfg: faultline::config::Config, port: u16) {
    let model = Arc::new(Model::embedded().unwrap());
    let app = app::start(&cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    let mut c = Client::connect(
        port,
        "huge-test",
        &["huge/scores".into(), "huge/dead".into()],
    )
    .await;
    c.publish("huge/rows", vec![b' '; 17 << 20]).await;
    let (_, _, good) = rows(&model, 0);
    c.publish("huge/rows", good).await;
    let got = c
        .collect_until(60, |g| {
            g.iter().any(|(t, _)| t == "huge/dead") && g.iter().any(|(t, _)| t == "huge/scores")
        })
        .await;
    let (_, letter) = got.iter().find(|(t, _)| t == "huge/dead").unwrap();
    assert_eq!(letter["reason"], "too_large", "{letter}");
    assert!(letter["error"].as_str().unwrap().contains("17825792 bytes"));
    app.shutdown().await.unwrap();
}

/// The default outputs (no scores topic): a fault is published whole, with its unusual sensors and
/// contributions, and nothing else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_scores_topic_only_faults_are_published_and_they_are_whole() {
    let port = common::free_port();
    let mut env = daemon_env("lean", Some(port), port, &[]);
    env.retain(|(k, _)| k != "FAULTLINE_SINK__SCORES_TOPIC");
    let cfg = RawConfig::load_with_env(None, env)
        .unwrap()
        .validate()
        .unwrap();
    let model = Arc::new(Model::embedded().unwrap());
    let app = app::start(&cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    let mut c = Client::connect(port, "lean-test", &["lean/#".into()]).await;
    let (_, faulty, good) = rows(&model, 0);
    c.publish("lean/rows", good.clone()).await;
    c.publish("lean/rows", faulty).await;
    c.publish("lean/rows", good.replace("Known-Good", "Known-Good-2"))
        .await;

    // Every row scored and acknowledged, then whatever was published has had time to arrive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = http_get(app.web_addr, "/metrics").await;
        if m.contains("faultline_row_latency_seconds_count 3") {
            assert!(m.contains("faultline_rows_scored_total 3"), "{m}");
            assert!(m.contains("faultline_faults_total 1"), "{m}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not scored: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = c
        .collect_until(20, |g| g.iter().any(|(t, _)| t == "lean/faults"))
        .await;
    // The rows were acknowledged only after their outputs reached the broker: anything else
    // published is on its way to this subscriber already.
    while let Ok(Some((topic, payload))) =
        tokio::time::timeout(Duration::from_millis(500), c.messages.recv()).await
    {
        got.push((topic, serde_json::from_slice(&payload).unwrap()));
    }
    let published: Vec<&(String, Value)> = got.iter().filter(|(t, _)| t != "lean/rows").collect();
    assert_eq!(published.len(), 1, "{published:?}");
    let (topic, f) = published[0];
    assert_eq!(topic, "lean/faults");
    assert_eq!(f["id"], "Known-Faulty");
    assert_eq!(f["unusual_sensors"].as_array().unwrap().len(), 3, "{f}");
    assert_eq!(f["contributions"].as_array().unwrap().len(), 5, "{f}");

    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_taken_by_another_broker_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = config("taken", Some(port), port, &[]);
    let e = app::start(&cfg, Arc::new(Model::embedded().unwrap()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already in use") && e.contains("FAULTLINE_BROKER__LISTEN"),
        "{e}"
    );
}

/// A first run where the default address is taken by a broker (as on a machine that runs
/// Mosquitto on 1883): `serve` uses that broker, and rows published there are scored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_address_taken_by_an_mqtt_broker_serves_on_that_broker() {
    let broker = common::Mosquitto::start();
    let mut cfg = config("existing", Some(broker.port), broker.port, &[]);
    // As when [broker] listen is the default rather than chosen (config.rs tests which is which).
    match &mut cfg.bus {
        Bus::Embedded { use_existing, .. } => *use_existing = true,
        other => panic!("{other:?}"),
    }
    let model = Arc::new(Model::embedded().unwrap());
    let mut c = Client::connect(broker.port, "existing-test", &["existing/faults".into()]).await;
    let app = app::start(&cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    let (_, faulty, _) = rows(&model, 0);
    c.publish("existing/rows", faulty).await;
    let got = c.collect_until(20, |g| !g.is_empty()).await;
    assert_eq!(got[0].1["id"], "Known-Faulty", "{got:?}");
    app.shutdown().await.unwrap();

    // Something that is not an MQTT broker on the default address is still a clear error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cfg = config("taken-default", Some(port), port, &[]);
    if let Bus::Embedded { use_existing, .. } = &mut cfg.bus {
        *use_existing = true;
    }
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let answer = std::thread::spawn(move || {
        // Accept the probe and say nothing MQTT until the test ends: the probe must give up on
        // its own, not hang.
        let (_conn, _) = taken.accept().unwrap();
        let _ = finished.recv();
    });
    let e = app::start(&cfg, model).await.unwrap_err().to_string();
    assert!(e.contains("already in use"), "{e}");
    drop(done);
    answer.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_stream_loses_no_row_on_mosquitto() {
    let broker = common::Mosquitto::start();
    let model = Arc::new(Model::embedded().unwrap());
    let cfg = config("restart", None, broker.port, &[]);
    let (rows, _, _) = rows(&model, 2000);
    let mut c = Client::connect(broker.port, "restart-test", &["restart/scores".into()]).await;

    let app = app::start(&cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    for r in &rows[..1000] {
        c.publish("restart/rows", r.clone()).await;
    }
    // Stop while rows are in flight; publish the rest while faultline is down.
    app.shutdown().await.unwrap();
    for r in &rows[1000..] {
        c.publish("restart/rows", r.clone()).await;
    }
    let app = app::start(&cfg, model.clone()).await.unwrap();
    let got = c
        .collect_until(60, |g| {
            let ids: HashSet<&str> = g.iter().map(|(_, v)| v["id"].as_str().unwrap()).collect();
            ids.len() == 2000
        })
        .await;
    let duplicates = got.len() - 2000;
    eprintln!("restart mid-stream: 2000 rows, 0 lost, {duplicates} scored twice");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_shared_subscription_split_the_rows() {
    let broker = common::Mosquitto::start();
    let model = Arc::new(Model::embedded().unwrap());
    let group = [(
        "FAULTLINE_SOURCE__MQTT__SHARED_GROUP",
        "scorers".to_string(),
    )];
    let mut a = config("shared", None, broker.port, &group);
    a.bus.mqtt_mut().unwrap().client_id = "faultline-shared-a".into();
    let mut b = a.clone();
    b.bus.mqtt_mut().unwrap().client_id = "faultline-shared-b".into();
    let mut c = Client::connect(broker.port, "shared-test", &["shared/scores".into()]).await;
    let app_a = app::start(&a, model.clone()).await.unwrap();
    let app_b = app::start(&b, model.clone()).await.unwrap();
    wait_ready(app_a.web_addr).await;
    wait_ready(app_b.web_addr).await;
    let (rows, _, _) = rows(&model, 400);
    for r in &rows {
        c.publish("shared/rows", r.clone()).await;
    }
    let got = c
        .collect_until(60, |g| {
            g.iter()
                .map(|(_, v)| v["id"].as_str().unwrap())
                .collect::<HashSet<_>>()
                .len()
                == 400
        })
        .await;
    assert_eq!(got.len(), 400, "each row is scored by exactly one instance");
    app_a.shutdown().await.unwrap();
    app_b.shutdown().await.unwrap();
}

/// Two instances given one client id knock each other off the broker, which keeps one
/// connection an id: each reconnects 100 ms later and closes the other's. Each says what is
/// likely wrong, naming the id, instead of only "Lost the MQTT broker" again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_one_client_id_are_told_so() {
    let broker = common::Mosquitto::start();
    let env = daemon_env("sameid", None, broker.port, &[]);
    let first = common::Daemon::start(&env).await;
    let second = common::Daemon::spawn(&env);
    let hint = "is another faultline (or any client) connected as this client_id?";
    for daemon in [&first, &second] {
        daemon.wait_log(hint, 30).await;
        let log = daemon.log_text();
        assert!(
            log.lines()
                .any(|l| l.contains(hint) && l.contains("client_id=faultline-sameid")),
            "{log}"
        );
    }
    first.terminate();
    second.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_no_row_readiness_follows_it_and_logs_stay_quiet() {
    let broker = common::Mosquitto::start_persistent();
    let port = broker.port;
    let model = Arc::new(Model::embedded().unwrap());
    let (rows, _, _) = rows(&model, 1000);
    let mut c = Client::connect_with(port, "bounce-test", &["bounce/scores".into()], false).await;
    // In its own process, so its log is its own; on one worker thread, the setting for a small
    // machine shared with the broker, so that the reconnects are seen to need no second one.
    let one = [("FAULTLINE_RUNTIME__WORKERS", "1".to_string())];
    let app = common::Daemon::start(&daemon_env("bounce", None, port, &one)).await;
    let metrics = http_get(app.web, "/metrics").await;
    assert!(
        metrics.contains("\nfaultline_runtime_workers 1\n"),
        "{metrics}"
    );
    for r in &rows[..500] {
        c.publish("bounce/rows", r.clone()).await;
    }
    let first = c.collect_until(30, |g| g.len() >= 100).await;
    let seen: HashSet<String> = first
        .iter()
        .map(|(_, v)| v["id"].as_str().unwrap().to_string())
        .collect();

    let stopped = broker.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = http_get(app.web, "/readyz").await;
        if r.contains("503") {
            assert!(r.contains("not connected"), "{r}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready with the broker gone: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Gone for a while: long enough for several reconnect attempts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let broker = common::Mosquitto::start_again(stopped);
    wait_ready(app.web).await;
    for r in &rows[500..] {
        c.publish("bounce/rows", r.clone()).await;
    }
    let got = c
        .collect_until(60, |g| {
            let mut all = seen.clone();
            all.extend(g.iter().map(|(_, v)| v["id"].as_str().unwrap().to_string()));
            all.len() == 1000
        })
        .await;
    let duplicates = first.len() + got.len() - 1000;
    eprintln!("broker restart mid-stream: 1000 rows, 0 lost, {duplicates} delivered twice");
    let log = app.log_text();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    eprintln!(
        "{} warnings while the broker was away:\n{}",
        warnings.len(),
        warnings.join("\n")
    );
    // One line per client (rows, verdicts) when the broker goes; none per reconnect attempt.
    assert!(warnings.len() <= 4, "the outage flooded the log:\n{log}");
    assert!(app.terminate().success());
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_names_the_sensor_that_moved_in_the_api_and_the_gauges() {
    common::log();
    let port = common::free_port();
    let extra = [
        ("FAULTLINE_DRIFT__INTERVAL_MS", "100".to_string()),
        ("FAULTLINE_DRIFT__WINDOW_ROWS", "200".to_string()),
    ];
    let cfg = config("drift", Some(port), port, &extra);
    let model = Arc::new(Model::embedded().unwrap());
    let app = app::start(&cfg, model.clone()).await.unwrap();
    let c = Client::connect(port, "drift-test", &[]).await;
    wait_ready(app.web_addr).await;
    let card = model.card();
    let moved = card
        .sensors
        .iter()
        .position(|s| s.iqr.is_some_and(|q| q > 0.0) && s.missing_ratio < 0.1)
        .unwrap();
    let batch = synthetic::rows(card, 120, 4);
    for i in 0..batch.len() {
        let mut row = batch.row(i).to_vec();
        row[moved] =
            (card.sensors[moved].median.unwrap() + 12.0 * card.sensors[moved].iqr.unwrap()) as f32;
        c.publish(
            "drift/rows",
            encode_row(&batch.ids[i], &row, model.features()),
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let report: Value = loop {
        let r = http_get(app.web_addr, "/api/drift").await;
        let body = r.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if v["window_rows"] == 120 {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "drift never covered the rows: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report["judged"], true);
    let sensors = report["sensors"].as_array().unwrap();
    let hit = sensors
        .iter()
        .find(|s| s["sensor"] == card.sensors[moved].name.as_str())
        .expect("the moved sensor");
    assert!(hit["shift_z"].as_f64().unwrap() > 10.0, "{hit}");
    assert_eq!(hit["reasons"][0], "median_shift");
    let metrics = http_get(app.web_addr, "/metrics").await;
    let out_of_range = metrics
        .lines()
        .find_map(|l| l.strip_prefix("faultline_drift_sensors_out_of_range "))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap();
    assert_eq!(
        out_of_range,
        report["sensors_out_of_range"].as_i64().unwrap()
    );
    assert!(out_of_range >= 1);
    app.shutdown().await.unwrap();
}

/// Collects score messages into `seen` (ids) until `done`; returns how many arrived in all.
async fn count_scores(
    c: &mut Client,
    seen: &mut HashSet<String>,
    secs: u64,
    mut done: impl FnMut(usize, &HashSet<String>) -> bool,
) -> usize {
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done(total, seen) {
        match tokio::time::timeout_at(deadline, c.messages.recv()).await {
            Ok(Some((_, payload))) => {
                let v: Value = serde_json::from_slice(&payload).unwrap();
                seen.insert(v["id"].as_str().unwrap().to_string());
                total += 1;
            }
            _ => panic!(
                "timed out after {secs} s: {total} verdicts, {} distinct",
                seen.len()
            ),
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_stream_loses_no_row_on_mosquitto() {
    // Rows read and not yet acknowledged: what a crash may have scored without the broker
    // knowing. Smaller than the default, so the bound below says something.
    const QUEUE_ROWS: usize = 2_000;
    let broker = common::Mosquitto::start();
    let model = Model::embedded().unwrap();
    let n = common::crash_row_count(100_000);
    let (rows, origin) =
        common::crash_rows(&model, n, "a_kill_9_mid_stream_loses_no_row_on_mosquitto");
    let env: Vec<(String, String)> = [
        ("FAULTLINE_SOURCE__KIND", "mqtt".to_string()),
        (
            "FAULTLINE_SOURCE__MQTT__URL",
            format!("mqtt://127.0.0.1:{}", broker.port),
        ),
        ("FAULTLINE_SOURCE__MQTT__TOPIC", "k9/rows".into()),
        ("FAULTLINE_SOURCE__MQTT__CLIENT_ID", "faultline-k9".into()),
        ("FAULTLINE_SINK__SCORES_TOPIC", "k9/scores".into()),
        ("FAULTLINE_SINK__FAULTS_TOPIC", "k9/faults".into()),
        ("FAULTLINE_SINK__DEAD_LETTER_TOPIC", "k9/dead".into()),
        ("FAULTLINE_BATCH__QUEUE_ROWS", QUEUE_ROWS.to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec();
    let mut c = Client::connect(broker.port, "k9-test", &["k9/scores".into()]).await;
    let daemon = common::Daemon::start(&env).await;
    let publisher = c.client.clone();
    let publishing = tokio::spawn(async move {
        for (_, row) in rows {
            publisher
                .publish("k9/rows", rumqttc::QoS::AtLeastOnce, false, row)
                .await
                .unwrap();
        }
    });
    let kill_at = common::random_point(n);
    let mut seen = HashSet::new();
    let before = count_scores(&mut c, &mut seen, 600, |total, _| total >= kill_at).await;
    daemon.kill9();
    // Ready within `start`'s 30 s while the session's backlog floods in: its SUBSCRIBE once
    // waited behind the backlog, and /readyz stayed 503 while rows were scored.
    let daemon = common::Daemon::start(&env).await;
    let after = count_scores(&mut c, &mut seen, 900, |_, seen| seen.len() == n).await;
    publishing.await.unwrap();
    // The kill must have fallen mid-stream, or the test shows nothing: the restarted daemon read
    // rows the killed one had not acknowledged (or had not been sent).
    let resumed = common::counter_or_zero(
        daemon.web,
        "faultline_rows_received_total{source=\"mqtt\"} ",
    )
    .await;
    assert!(
        resumed > 0.0,
        "the restarted daemon read no row: the killed one (at {before} verdicts) had finished all {n}"
    );
    let duplicates = before + after - n;
    // Only rows in flight come again. Before the driver wrote its own PUBACKs, rumqttc sent about
    // one per ten rows read, and 85-93% of the rows scored before the kill were scored twice.
    assert!(
        duplicates <= QUEUE_ROWS,
        "{duplicates} rows scored twice, more than the {QUEUE_ROWS} that may be in flight: \
         PUBACKs fell behind the verdicts (killed after {before} verdicts)"
    );
    eprintln!(
        "kill -9 mid-stream (MQTT, Mosquitto, QoS 1, persistent session): {n} {origin} published, \
         killed after {before} verdicts; the restarted daemon read {resumed} rows; 0 lost, \
         {duplicates} scored twice"
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// What the relay does with the broker's packets to the publisher while it holds them.
#[derive(Clone, Copy, PartialEq)]
enum Held {
    /// Dropped: they never arrive (the connection then ends with the broker).
    Lost,
    /// Passed on once the hold ends (the relay reads nothing from the broker meanwhile).
    Delayed,
}

/// A TCP relay in front of a broker on `broker`. While `hold` is true it holds the broker's
/// packets to the publisher's connection (the client id ending in `-out`) after its CONNACK, as
/// `held` says: its publishes reach the broker, but no PUBACK comes back, as with a broker that
/// cannot confirm the writes. Every other connection passes untouched. While `open` is false it
/// closes every new connection at once (a broker that is not back yet, for faultline's clients
/// only).
async fn relay(
    broker: u16,
    hold: tokio::sync::watch::Receiver<bool>,
    open: tokio::sync::watch::Receiver<bool>,
    held: Held,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            if !*open.borrow() {
                drop(client);
                continue;
            }
            let mut hold = hold.clone();
            tokio::spawn(async move {
                let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", broker)).await
                else {
                    return;
                };
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut broker_rx, mut broker_tx) = upstream.into_split();
                let mut buf = vec![0u8; 64 * 1024];
                // The first packet is CONNECT, with the client id in it.
                let Ok(n) = client_rx.read(&mut buf).await else {
                    return;
                };
                let publisher = buf[..n].windows(4).any(|w| w == b"-out");
                if n == 0 || broker_tx.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_rx, &mut broker_tx).await;
                });
                // CONNACK is the broker's first 4 bytes; what follows may be held.
                let mut passed = 0usize;
                loop {
                    let Ok(n) = broker_rx.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let mut from = 0;
                    if publisher && passed < 4 {
                        from = n.min(4 - passed);
                        passed += from;
                        if client_tx.write_all(&buf[..from]).await.is_err() {
                            return;
                        }
                    }
                    if publisher && held == Held::Delayed {
                        if hold.wait_for(|hold| !*hold).await.is_err() {
                            return;
                        }
                    } else if publisher && *hold.borrow_and_update() {
                        // Lost on the way, as if the broker never sent them (released later, a
                        // connection would see half packets: it ends with the broker instead).
                        continue;
                    }
                    if client_tx.write_all(&buf[from..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Mosquitto without persistence (its default) restarted twice mid-stream, with SIGTERM and then
/// SIGKILL, while the broker had not acknowledged faultline's verdicts: faultline stays up and
/// ready, every verdict it had published unacknowledged arrives again from the new broker, and
/// every row that reached it gets a verdict. The lost sessions are counted, logged once each and
/// shown on `/readyz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_forgets_its_sessions_never_stops_detection() {
    let broker = common::Mosquitto::start();
    let port = broker.port;
    let (hold_tx, hold) = tokio::sync::watch::channel(false);
    let (open_tx, open) = tokio::sync::watch::channel(true);
    // faultline's clients reach the broker through the relay; the test's connect directly.
    let via = relay(port, hold, open, Held::Lost).await;
    let model = Arc::new(Model::embedded().unwrap());
    let (rows, _, _) = rows(&model, 900);
    let daemon = common::Daemon::start(&daemon_env("forget", None, via, &[])).await;
    let mut broker = Some(broker);
    let mut c = Client::connect(port, "forget-test", &["forget/scores".into()]).await;
    let ids = |got: &[(String, Value)]| -> HashSet<String> {
        got.iter()
            .map(|(_, v)| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    for (round, how) in [common::Stop::Term, common::Stop::Kill]
        .into_iter()
        .enumerate()
    {
        let batch = &rows[round * 300..(round + 1) * 300];
        let want = row_ids(batch);
        // The broker receives the verdicts (the subscriber sees them) but its PUBACKs are held:
        // every verdict of the round is published and unacknowledged, every row unacknowledged.
        hold_tx.send_replace(true);
        for r in batch {
            c.publish("forget/rows", r.clone()).await;
        }
        let got = c.collect_until(60, |g| want.is_subset(&ids(g))).await;
        assert!(want.is_subset(&ids(&got)));
        // Restart the broker without its memory; faultline's clients stay out until the test's
        // subscriber is back, so that nothing they re-send can pass unseen.
        open_tx.send_replace(false);
        let port = broker.take().unwrap().stop_with(how);
        broker = Some(common::Mosquitto::start_on(port));
        // A new id: the old client is still trying to reconnect, and two clients with one id
        // take the connection from each other.
        let id = format!("forget-test-{round}");
        c = Client::connect(port, &id, &["forget/scores".into()]).await;
        hold_tx.send_replace(false);
        open_tx.send_replace(true);
        // Every verdict it had published unacknowledged arrives again.
        let mut again = vec![];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !want.is_subset(&ids(&again)) {
            match tokio::time::timeout_at(deadline, c.messages.recv()).await {
                Ok(Some((topic, payload))) => {
                    again.push((topic, serde_json::from_slice(&payload).unwrap()))
                }
                _ => panic!(
                    "after restart {}: {} of {} verdicts arrived again:\n{}",
                    round + 1,
                    want.intersection(&ids(&again)).count(),
                    want.len(),
                    daemon.log_text()
                ),
            }
        }
        eprintln!(
            "broker restart {} ({how:?}) without persistence: {} verdicts re-sent for {} rows",
            round + 1,
            again.len(),
            want.len()
        );
        wait_ready(daemon.web).await;
        // Its subscription is requested with the CONNECT's answer: wait until the broker routes
        // rows to it again (a probe row's verdict arrives) before the next rows come.
        let model = Model::embedded().unwrap();
        let probe_rows = synthetic::rows(model.card(), 1, 7);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for i in 0.. {
            let id = format!("probe-{round}-{i}");
            c.publish(
                "forget/rows",
                encode_row(&id, probe_rows.row(0), model.features()),
            )
            .await;
            let until = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
            let mut seen = false;
            while let Ok(Some((_, payload))) =
                tokio::time::timeout_at(until, c.messages.recv()).await
            {
                let v: Value = serde_json::from_slice(&payload).unwrap();
                if v["id"] == id.as_str() {
                    seen = true;
                    break;
                }
            }
            if seen {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no probe verdict after restart {}",
                round + 1
            );
        }
    }
    // And it keeps scoring what comes next.
    let rest = row_ids(&rows[600..]);
    for r in &rows[600..] {
        c.publish("forget/rows", r.clone()).await;
    }
    c.collect_until(60, |g| rest.is_subset(&ids(g))).await;
    let ready = http_get(daemon.web, "/readyz").await;
    assert!(ready.contains("200 OK"), "{ready}");
    assert!(ready.contains("lost the publisher's session"), "{ready}");
    assert!(ready.contains("lost the source's session"), "{ready}");
    let lost = "faultline_broker_session_lost_total{client=\"publisher\"} ";
    assert_eq!(metric(daemon.web, lost).await, 2.0);
    let lost = "faultline_broker_session_lost_total{client=\"source\"} ";
    assert_eq!(metric(daemon.web, lost).await, 2.0);
    let log = daemon.log_text();
    let said = log.matches("lost this client's session").count();
    assert_eq!(said, 4, "one warning per client and restart:\n{log}");
    assert_eq!(daemon.terminate().code(), Some(0), "{log}");
}

/// The ids of JSON rows.
fn row_ids(rows: &[String]) -> HashSet<String> {
    rows.iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// SIGTERM ends the daemon within its grace period even while an HTTP client holds a request
/// open (here an upload that stopped sending): the request is cut off, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_left_open_does_not_hold_the_shutdown() {
    use tokio::io::AsyncWriteExt;
    let port = common::free_port();
    let extra = [("FAULTLINE_SHUTDOWN__GRACE_MS", "1000".to_string())];
    let mut daemon = common::Daemon::start(&daemon_env("open", Some(port), port, &extra)).await;
    let mut upload = tokio::net::TcpStream::connect(daemon.web).await.unwrap();
    upload
        .write_all(
            b"POST /api/score HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n\
              Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    // The server asks for the body once the handler reads it: the request is in.
    read_until(&mut upload, &mut Vec::new(), "100 Continue").await;
    upload.write_all(b"id,Sensor-1\nW-1,1.5\n").await.unwrap();
    daemon.sigterm();
    // The grace period is 1 s, and closing gets at most a second more.
    let status = daemon.wait_exit(Duration::from_secs(15)).await;
    let log = daemon.log_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    assert!(log.contains("was cut off"), "{log}");
    drop(upload);
}

/// A SIGTERM during a SIGHUP's reload stops the daemon within the grace period: the reload (here
/// stuck opening a model file that is a FIFO nobody writes, as a hung network disk would be)
/// used to be awaited before the signal was even seen, for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_hangs_does_not_hold_the_shutdown() {
    let models = tempfile::tempdir().unwrap();
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/wafer-fault");
    for f in ["model.onnx", "model.json", "golden.csv"] {
        std::fs::copy(from.join(f), models.path().join(f)).unwrap();
    }
    let port = common::free_port();
    let extra = [
        ("FAULTLINE_SHUTDOWN__GRACE_MS", "1000".to_string()),
        (
            "FAULTLINE_MODEL__DIR",
            models.path().to_str().unwrap().to_string(),
        ),
        ("FAULTLINE_MODEL__WATCH_MS", "0".to_string()),
    ];
    let mut daemon =
        common::Daemon::start(&daemon_env("hung-reload", Some(port), port, &extra)).await;
    let onnx = models.path().join("model.onnx");
    std::fs::remove_file(&onnx).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&onnx)
        .status()
        .unwrap();
    assert!(made.success());
    daemon.signal("HUP");
    // The reload is under way, and never ends.
    daemon.wait_log("SIGHUP: reloading the model", 30).await;
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(15)).await;
    let log = daemon.log_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    assert!(log.contains("Stopped."), "{log}");
}

/// Reads from `stream` into `answer` until it holds `what` (at most 20 s).
async fn read_until(stream: &mut tokio::net::TcpStream, answer: &mut Vec<u8>, what: &str) {
    use tokio::io::AsyncReadExt;
    while !String::from_utf8_lossy(answer).contains(what) {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {what}: {}", String::from_utf8_lossy(answer)))
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(answer));
        answer.extend_from_slice(&buf[..n]);
    }
}

/// A CSV upload to `path` on `web` that declares `length` bytes and, after `100 Continue`, sends
/// only `first` and stops; the connection and what it has received so far.
async fn stalled_upload(
    web: std::net::SocketAddr,
    path: &str,
    length: usize,
    first: &[u8],
) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let mut upload = tokio::net::TcpStream::connect(web).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n\
         Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    upload.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    read_until(&mut upload, &mut answer, "100 Continue").await;
    upload.write_all(first).await.unwrap();
    (upload, answer)
}

/// An upload that stops sending (a laptop asleep mid-upload, a dropped VPN) is answered 408 once
/// it has sent nothing for `[web] upload_idle_ms`, and gives back its scoring slot: with one
/// slot, the next upload scores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_stops_sending_is_cut_off_and_frees_its_slot() {
    let port = common::free_port();
    let extra = [
        ("FAULTLINE_WEB__UPLOAD_IDLE_MS", "3000".to_string()),
        ("FAULTLINE_WEB__MAX_CONCURRENT", "1".to_string()),
    ];
    let daemon = common::Daemon::start(&daemon_env("stall", Some(port), port, &extra)).await;
    // Made before the upload stalls: the 503 below must come within the idle limit.
    let features = Model::embedded().unwrap().features().to_vec();
    let csv = format!(
        ",{}\nW-2{}\n",
        features.join(","),
        ",1.5".repeat(features.len())
    );
    // The handler reads the body (the slot is taken), and the upload stops after the header and
    // one row: the parser waits for the rest.
    let start = csv.replace("W-2", "W-1");
    let (mut upload, mut answer) =
        stalled_upload(daemon.web, "/api/score", 1_000_000, start.as_bytes()).await;
    // While it is stalled, its slot is taken: another upload is refused.
    let headers = [("Content-Type", "text/csv")];
    let (status, body) = common::http(daemon.web, "POST", "/api/score", &headers, &csv).await;
    assert_eq!(status, 503, "{body}");
    read_until(&mut upload, &mut answer, "sent nothing for 3000 ms").await;
    let text = String::from_utf8_lossy(&answer).to_string();
    assert!(text.contains("HTTP/1.1 408"), "{text}");
    let (status, body) = common::http(daemon.web, "POST", "/api/score", &headers, &csv).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"W-2\""), "{body}");

    // A labels upload that stops sending is cut off the same way.
    let (mut labels, mut answer) =
        stalled_upload(daemon.web, "/api/labels", 1000, b"id,Good/Bad\nW-1,1\n").await;
    read_until(&mut labels, &mut answer, "sent nothing for 3000 ms").await;
    let text = String::from_utf8_lossy(&answer).to_string();
    assert!(text.contains("HTTP/1.1 408"), "{text}");
}

/// An upload that trickles, never pausing for `[web] upload_idle_ms` but never ending, is
/// answered 408 after `[web] upload_timeout_ms` and gives back its scoring slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_trickles_is_cut_off_at_its_deadline_and_frees_its_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = common::free_port();
    let extra = [
        ("FAULTLINE_WEB__UPLOAD_IDLE_MS", "1000".to_string()),
        ("FAULTLINE_WEB__UPLOAD_TIMEOUT_MS", "3000".to_string()),
        ("FAULTLINE_WEB__MAX_CONCURRENT", "1".to_string()),
    ];
    let daemon = common::Daemon::start(&daemon_env("trickle", Some(port), port, &extra)).await;
    let features = Model::embedded().unwrap().features().to_vec();
    let csv = format!(
        ",{}\nW-2{}\n",
        features.join(","),
        ",1.5".repeat(features.len())
    );
    let header = format!(",{}\n", features.join(","));
    let (mut upload, mut answer) =
        stalled_upload(daemon.web, "/api/score", 1_000_000, header.as_bytes()).await;
    // A byte every 200 ms, well within the idle limit, until the daemon answers.
    let started = std::time::Instant::now();
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            n = upload.read(&mut buf) => {
                let n = n.unwrap();
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
                answer.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&answer).contains("upload_timeout_ms") {
                    break;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                assert!(started.elapsed() < Duration::from_secs(30), "no answer to a trickle");
                // The row's id, a character at a time; a write may fail once the daemon answers.
                let _ = upload.write_all(b"W").await;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    assert!(text.contains("HTTP/1.1 408"), "{text}");
    assert!(text.contains("still arriving after 3000 ms"), "{text}");
    let headers = [("Content-Type", "text/csv")];
    let (status, body) = common::http(daemon.web, "POST", "/api/score", &headers, &csv).await;
    assert_eq!(status, 200, "{body}");
}

/// A page of another site that DNS rebinding points at faultline's address is addressed to that
/// site's name: on a loopback address, faultline answers only localhost, IP addresses and the
/// names in `[web] allowed_hosts`, on every route, and refuses the rest with 403 before acting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_addressed_to_a_name_faultline_is_not_known_by_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = common::free_port();
    let extra = [("FAULTLINE_WEB__ALLOWED_HOSTS", "fab-box".to_string())];
    let daemon = common::Daemon::start(&daemon_env("hosts", Some(port), port, &extra)).await;
    let web = daemon.web;
    let ask = |method: &'static str, path: &'static str, host: String| async move {
        let mut s = tokio::net::TcpStream::connect(web).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let p = web.port();
    for host in [
        format!("localhost:{p}"),
        format!("127.0.0.1:{p}"),
        format!("[::1]:{p}"),
        format!("page.localhost:{p}"),
        format!("fab-box:{p}"),
        "FAB-BOX.".to_string(),
    ] {
        let answer = ask("GET", "/api/model", host.clone()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/api/model"),
        ("GET", "/metrics"),
        ("POST", "/api/model/reload"),
    ] {
        let answer = ask(method, path, format!("rebound.example:{p}")).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
        assert!(
            answer.contains("not known as \\\"rebound.example:")
                && answer.contains("[web] allowed_hosts"),
            "{path}: {answer}"
        );
    }
}

/// A Sparkplug subscription that cannot take births is warned about at start: data that sends
/// aliases alone could never be read through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparkplug_subscription_without_births_is_warned_about() {
    let port = common::free_port();
    let extra = [
        ("FAULTLINE_SOURCE__MQTT__FORMAT", "sparkplug".to_string()),
        (
            "FAULTLINE_SOURCE__MQTT__TOPIC",
            "spBv1.0/fab/DDATA/#".to_string(),
        ),
    ];
    let daemon = common::Daemon::start(&daemon_env("nobirths", Some(port), port, &extra)).await;
    daemon.wait_log("takes no births", 10).await;
    let log = daemon.log_text();
    assert!(log.contains("spBv1.0/fab/DDATA/#"), "{log}");
}

/// A row published at QoS 0 is read (at most once, as its publisher asked), and the log says
/// once that such rows are not kept or redelivered: README promises at least once only for rows
/// published at QoS 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_published_at_qos_0_is_scored_and_said_to_be_at_most_once() {
    // Mosquitto delivers at the lower of the two QoS, as MQTT asks (the embedded rumqttd delivers
    // at the subscription's).
    let broker = common::Mosquitto::start();
    let daemon = common::Daemon::start(&daemon_env("qos0", None, broker.port, &[])).await;
    let model = Model::embedded().unwrap();
    let mut c = Client::connect(broker.port, "qos0-test", &["qos0/scores".into()]).await;
    for id in ["Q-1", "Q-2"] {
        let row = rows(&model, 0).2.replace("Known-Good", id);
        c.publish_at(rumqttc::QoS::AtMostOnce, "qos0/rows", row)
            .await;
    }
    c.collect_until(30, |got| got.len() >= 2).await;
    daemon.wait_log("A row arrived at QoS 0", 10).await;
    let log = daemon.log_text();
    assert_eq!(log.matches("A row arrived at QoS 0").count(), 1, "{log}");
}

/// With `on_session_lost = "exit"` the same restart stops faultline (status 1), naming the broker
/// and the setting, for a supervisor to decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_session_lost_exit_stops_when_the_broker_forgets_unacknowledged_verdicts() {
    let broker = common::Mosquitto::start();
    let port = broker.port;
    let (hold_tx, hold) = tokio::sync::watch::channel(true);
    let via = relay(port, hold, tokio::sync::watch::channel(true).1, Held::Lost).await;
    let model = Arc::new(Model::embedded().unwrap());
    let (rows, _, _) = rows(&model, 50);
    let extra = [(
        "FAULTLINE_SOURCE__MQTT__ON_SESSION_LOST",
        "exit".to_string(),
    )];
    let mut daemon = common::Daemon::start(&daemon_env("exit", None, via, &extra)).await;
    let mut c = Client::connect(port, "exit-test", &["exit/scores".into()]).await;
    for r in &rows {
        c.publish("exit/rows", r.clone()).await;
    }
    c.collect_until(60, |g| g.len() >= 50).await;
    let port = broker.stop_with(common::Stop::Term);
    let _broker = common::Mosquitto::start_on(port);
    hold_tx.send_replace(false);
    let status = daemon.wait_exit(Duration::from_secs(60)).await;
    let log = daemon.log_text();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(log.contains("on_session_lost"), "{log}");
}

/// A daemon's environment on the MQTT broker at `port`: topics `<tag>/rows`, `<tag>/scores`,
/// `<tag>/faults`, `<tag>/dead`, client id `faultline-<tag>`, 300 rows in flight at most, in
/// batches of 50; then `extra`.
fn bounded_env(tag: &str, port: u16, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("FAULTLINE_SOURCE__KIND", "mqtt".to_string()),
        (
            "FAULTLINE_SOURCE__MQTT__URL",
            format!("mqtt://127.0.0.1:{port}"),
        ),
        ("FAULTLINE_SOURCE__MQTT__TOPIC", format!("{tag}/rows")),
        (
            "FAULTLINE_SOURCE__MQTT__CLIENT_ID",
            format!("faultline-{tag}"),
        ),
        ("FAULTLINE_SINK__SCORES_TOPIC", format!("{tag}/scores")),
        ("FAULTLINE_SINK__FAULTS_TOPIC", format!("{tag}/faults")),
        ("FAULTLINE_SINK__DEAD_LETTER_TOPIC", format!("{tag}/dead")),
        ("FAULTLINE_BATCH__QUEUE_ROWS", "300".into()),
        ("FAULTLINE_BATCH__MAX_ROWS", "50".into()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_verdicts_are_not_confirmed_reading_stops_and_no_row_is_acknowledged() {
    let broker = common::Mosquitto::start();
    let (hold_tx, hold) = tokio::sync::watch::channel(true);
    let via = relay(
        broker.port,
        hold,
        tokio::sync::watch::channel(true).1,
        Held::Lost,
    )
    .await;
    let model = Model::embedded().unwrap();
    let n = 2000;
    let (rows, _) = common::crash_rows(&model, n, "stuck output on MQTT");
    let env = |port: u16| bounded_env("stuck", port, &[]);
    let daemon = common::Daemon::start(&env(via)).await;
    let mut c = Client::connect(broker.port, "stuck-test", &["stuck/scores".into()]).await;
    for (_, row) in &rows {
        c.publish("stuck/rows", row.clone()).await;
    }

    // No PUBACK for the verdicts: it reads until the in-flight bound is full, then stops, and
    // the bound holds.
    let first = common::reading_stops_at(&daemon, "mqtt", 300).await;
    let received = "faultline_rows_received_total{source=\"mqtt\"} ";

    // A crash now. No row was acknowledged, so the broker hands every one to the next
    // instance: it receives all n, the ones the first held included.
    daemon.kill9();
    hold_tx.send_replace(false);
    let daemon = common::Daemon::start(&env(broker.port)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while metric(daemon.web, received).await < n as f64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted daemon got {} of {n} rows:\n{}",
            metric(daemon.web, received).await,
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen = HashSet::new();
    count_scores(&mut c, &mut seen, 120, |_, seen| seen.len() == n).await;
    assert_eq!(metric(daemon.web, received).await, n as f64);
    eprintln!("stuck output (MQTT): reading stopped at {first} rows in flight with no verdict confirmed; after a kill -9 the next instance received all {n} rows and scored every one");
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// A pipeline full for longer than 1.5 × the source's keep-alive (its verdicts not confirmed:
/// the broker's PUBACKs to the publisher are delayed) while Mosquitto holds the rest of the rows.
/// rumqttc pings only while polled, and the source was not polled while it waited for room, so
/// Mosquitto dropped the silent connection; once room came, the source reconnected and the broker
/// delivered again every row whose PUBACK had not gone out (all those in flight). The source now
/// pings while it waits: one connection, every row received once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_full_for_longer_than_the_keep_alive_keeps_the_source_connected() {
    let broker = common::Mosquitto::start();
    let (hold_tx, hold) = tokio::sync::watch::channel(true);
    let open = tokio::sync::watch::channel(true).1;
    let via = relay(broker.port, hold, open, Held::Delayed).await;
    let model = Model::embedded().unwrap();
    // Past the 300 in flight and the 300 decoded ahead of them, so that the source waits.
    // Small rows (one sensor each): Mosquitto 2.0 does not time out a client while its writes to
    // it are blocked, so what is left at the broker must fit in the sockets' buffers.
    let n = 700;
    let sensor = &model.features()[0];
    let rows: Vec<String> = (0..n)
        .map(|i| format!("{{\"id\":\"full#{i}\",\"{sensor}\":1}}"))
        .collect();
    // Mosquitto drops a client it has heard nothing from for 7.5 s.
    let env = bounded_env(
        "full",
        via,
        &[("FAULTLINE_SOURCE__MQTT__KEEP_ALIVE_S", "5")],
    );
    let daemon = common::Daemon::start(&env).await;
    let mut c = Client::connect(broker.port, "full-test", &["full/scores".into()]).await;
    for row in &rows {
        c.publish("full/rows", row.clone()).await;
    }
    // Full: reading has stopped (this takes 5 s of the wait).
    common::reading_stops_at(&daemon, "mqtt", 300).await;
    // Three times the keep-alive in all: Mosquitto 2.0 drops a client silent for 1.5 times its
    // keep-alive at its next check, which took up to 12 s here at 5 s. Nothing to wait on
    // instead: what is tested is that nothing happens.
    tokio::time::sleep(Duration::from_secs(10)).await;
    hold_tx.send_replace(false);
    let mut seen = HashSet::new();
    count_scores(&mut c, &mut seen, 120, |_, seen| seen.len() == n).await;
    let received = "faultline_rows_received_total{source=\"mqtt\"} ";
    let log = daemon.log_text();
    assert_eq!(
        metric(daemon.web, received).await,
        n as f64,
        "rows delivered twice:\n{log}"
    );
    // The publisher's PINGRESPs are delayed with its PUBACKs: it reconnects, as it should.
    let source_lost =
        |line: &&str| line.contains("Lost the MQTT broker") && line.contains("\"source\"");
    assert_eq!(log.lines().find(source_lost), None, "{log}");
    assert_eq!(daemon.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_private_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::issue(
        d,
        "ca",
        &[("server", "serverAuth"), ("client", "clientAuth")],
    );
    common::issue(d, "other-ca", &[]);
    // Mosquitto with a plain listener (for the test's client) and a TLS one that requires a
    // client certificate signed by the CA.
    let (plain, tls) = (common::free_port(), common::free_port());
    let _broker = common::mosquitto_with(
        d,
        &format!(
            "per_listener_settings true\nuser root\nmax_queued_messages 0\n\
             listener {plain} 127.0.0.1\nallow_anonymous true\n\
             listener {tls} 127.0.0.1\nallow_anonymous true\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nrequire_certificate true\n",
            d.display()
        ),
        &[plain, tls],
    );
    let path = |f: &str| d.join(f).display().to_string();
    let tls_config = |tag: &str, ca: &str| {
        config(
            tag,
            None,
            0,
            &[
                (
                    "FAULTLINE_SOURCE__MQTT__URL",
                    format!("mqtts://localhost:{tls}"),
                ),
                ("FAULTLINE_SOURCE__MQTT__CA_FILE", path(ca)),
                (
                    "FAULTLINE_SOURCE__MQTT__CLIENT_CERT_FILE",
                    path("client.pem"),
                ),
                (
                    "FAULTLINE_SOURCE__MQTT__CLIENT_KEY_FILE",
                    path("client.key"),
                ),
            ],
        )
    };
    let model = Arc::new(Model::embedded().unwrap());

    // The right CA and a client certificate: connected, scoring.
    let app = app::start(&tls_config("tls", "ca.pem"), model.clone())
        .await
        .unwrap();
    wait_ready(app.web_addr).await;
    let mut c = Client::connect(plain, "tls-test", &["tls/scores".into()]).await;
    let (_, faulty, _) = rows(&model, 0);
    c.publish("tls/rows", faulty).await;
    let got = c.collect_until(20, |g| !g.is_empty()).await;
    assert_eq!(got[0].1["id"], "Known-Faulty");
    app.shutdown().await.unwrap();

    // A broker certificate from a CA faultline does not trust: never connected, never ready.
    let app = app::start(&tls_config("tls-bad", "other-ca.pem"), model.clone())
        .await
        .unwrap();
    let r = common::readyz_when(app.web_addr, |r| r.contains("the source cannot connect")).await;
    assert!(
        r.contains("503") && r.contains("the source cannot connect: TLS: "),
        "{r}"
    );
    app.shutdown().await.unwrap();

    // Unusable files are refused at start, naming the setting.
    let mut cfg = tls_config("tls-missing", "ca.pem");
    cfg.bus.mqtt_mut().unwrap().tls.as_mut().unwrap().ca_file = Some(d.join("nope.pem"));
    let e = app::start(&cfg, model).await.unwrap_err().to_string();
    assert!(
        e.contains("source.mqtt.ca_file") && e.contains("nope.pem"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_requires_a_login_gets_it_and_a_wrong_one_is_named_on_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Mosquitto with an open listener (for the test's client) and one that requires a login.
    let passwords = d.join("passwd");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["faultline", "s3cret-pass"])
        .status()
        .expect("mosquitto_passwd runs (apt-get install mosquitto)");
    assert!(status.success());
    let (open, login) = (common::free_port(), common::free_port());
    let _broker = common::mosquitto_with(
        d,
        &format!(
            "per_listener_settings true\nuser root\nmax_queued_messages 0\n\
             listener {open} 127.0.0.1\nallow_anonymous true\n\
             listener {login} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
        &[open, login],
    );
    let password_file = d.join("password");
    std::fs::write(&password_file, "s3cret-pass\n").unwrap();
    let login_config = |tag: &str, login_env: &[(&str, String)]| {
        let mut env = vec![(
            "FAULTLINE_SOURCE__MQTT__URL",
            format!("mqtt://127.0.0.1:{login}"),
        )];
        env.extend(login_env.iter().cloned());
        config(tag, None, 0, &env)
    };
    let model = Arc::new(Model::embedded().unwrap());
    let not_ready_because = |tag: &'static str, env: Vec<(&'static str, String)>| {
        let model = model.clone();
        async move {
            let labels = env.iter().any(|(k, _)| *k == "FAULTLINE_LABELS__TOPIC");
            let app = app::start(&login_config(tag, &env), model).await.unwrap();
            // Refused, and retrying: never ready; /readyz says why, not just "not connected".
            let r = common::readyz_when(app.web_addr, |r| {
                r.contains("the source cannot connect")
                    && r.contains("the publisher cannot connect")
                    && (!labels || r.contains("the labels reader cannot connect"))
            })
            .await;
            app.shutdown().await.unwrap();
            assert!(r.contains("503"), "{r}");
            r
        }
    };

    let r = not_ready_because(
        "login-wrong",
        vec![
            ("FAULTLINE_SOURCE__MQTT__USERNAME", "faultline".into()),
            (
                "FAULTLINE_SOURCE__MQTT__PASSWORD",
                "not-the-password".into(),
            ),
            ("FAULTLINE_LABELS__TOPIC", "login-wrong/labels".into()),
        ],
    )
    .await;
    // The labels reader is part of readiness: a daemon that cannot read labels says so.
    assert!(
        r.contains("the labels reader cannot connect: the broker refused this client"),
        "{r}"
    );
    // Mosquitto refuses a wrong password as "not authorized" (MQTT 3.1.1 return code 5).
    assert!(
        r.contains("the source cannot connect: the broker refused this client: not authorized")
            && r.contains("the publisher cannot connect"),
        "{r}"
    );
    assert!(!r.contains("not-the-password"), "{r}");
    let r = not_ready_because("login-none", vec![]).await;
    assert!(r.contains("not authorized"), "{r}");

    // The password from a file (a mounted secret): the source, the publisher and the labels
    // reader all log in; a row goes in and its verdict comes out.
    let cfg = login_config(
        "login",
        &[
            ("FAULTLINE_SOURCE__MQTT__USERNAME", "faultline".into()),
            (
                "FAULTLINE_SOURCE__MQTT__PASSWORD_FILE",
                password_file.display().to_string(),
            ),
            ("FAULTLINE_LABELS__TOPIC", "login/labels".into()),
        ],
    );
    assert!(!format!("{cfg:?}").contains("s3cret-pass"));
    let app = app::start(&cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    let ready = http_get(app.web_addr, "/readyz").await;
    let body: Value = serde_json::from_str(ready.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["labels"]["connected"], true, "{body}");
    let mut c = Client::connect(open, "login-test", &["login/scores".into()]).await;
    let (_, faulty, _) = rows(&model, 0);
    c.publish("login/rows", faulty).await;
    let got = c.collect_until(20, |g| !g.is_empty()).await;
    assert_eq!(got[0].1["id"], "Known-Faulty");
    c.publish("login/labels", r#"{"id": "Known-Faulty", "label": 1}"#)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !http_get(app.web_addr, "/metrics")
        .await
        .contains("faultline_labels_total{result=\"joined\"} 1")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the label never joined its row"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.shutdown().await.unwrap();

    // `faultline replay` without --to publishes where serve reads, logging in as it does; an
    // address given with --to gets a plain connection, which this broker refuses.
    let mut c = Client::connect(open, "login-replay", &["login-replay/rows".into()]).await;
    let replay = |to: Option<String>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
        cmd.arg("replay")
            .arg(common::repo().join("examples/wafers.csv"));
        if let Some(to) = to {
            cmd.args(["--to", &to]);
        }
        cmd.envs([
            ("FAULTLINE_SOURCE__KIND", "mqtt".to_string()),
            (
                "FAULTLINE_SOURCE__MQTT__URL",
                format!("mqtt://127.0.0.1:{login}"),
            ),
            ("FAULTLINE_SOURCE__MQTT__TOPIC", "login-replay/rows".into()),
            ("FAULTLINE_SOURCE__MQTT__USERNAME", "faultline".into()),
            (
                "FAULTLINE_SOURCE__MQTT__PASSWORD_FILE",
                password_file.display().to_string(),
            ),
            // The web token is serve's, not replay's: unreadable here, and not read.
            ("FAULTLINE_WEB__TOKEN_FILE", "/nonexistent/token".into()),
        ]);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let o = replay(None).await.unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "Published 50 rows to mqtt://127.0.0.1:{login}/login-replay/rows (as configured)"
        )),
        "{said}"
    );
    let got = c.collect_until(20, |g| g.len() >= 50).await;
    assert_eq!(got.len(), 50);
    let o = replay(Some(format!("mqtt://127.0.0.1:{login}/login-replay/rows")))
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("NotAuthorized"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_store_never_stops_the_fault_stream() {
    let port = common::free_port();
    let base = tempfile::tempdir().unwrap();
    // A regular file where the store's parent directory should be: nothing can be created there.
    let blocker = base.path().join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let store = blocker.join("store");
    let cfg = config(
        "nostore",
        Some(port),
        port,
        &[("FAULTLINE_STORE__DIR", store.display().to_string())],
    );
    let model = Arc::new(Model::embedded().unwrap());
    let app = app::start(&cfg, model.clone()).await.unwrap();
    let mut c = Client::connect(port, "nostore-test", &["nostore/scores".into()]).await;
    wait_ready(app.web_addr).await;
    let (rows, _, _) = rows(&model, 50);
    for r in &rows {
        c.publish("nostore/rows", r.clone()).await;
    }
    // Every row is still scored and published.
    c.collect_until(30, |g| g.len() >= 50).await;
    let ready = http_get(app.web_addr, "/readyz").await;
    assert!(
        ready.contains("200 OK"),
        "the store does not decide readiness: {ready}"
    );
    let body: Value = serde_json::from_str(ready.split_once("\r\n\r\n").unwrap().1).unwrap();
    let error = body["store"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not-a-directory"),
        "/readyz names the problem: {body}"
    );
    // The writer tries (and fails) within its 250 ms linger: every scored row is counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = http_get(app.web_addr, "/metrics").await;
        assert!(metrics.contains("faultline_store_healthy 0"), "{metrics}");
        if metrics.contains("faultline_store_rows_dropped_total{kind=\"scored\"} 50") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "every scored row is counted as not stored:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Live quality still works from memory: the label is applied, and the answer says it is
    // not on disk.
    let (status, body) = common::http(
        app.web_addr,
        "POST",
        "/api/labels",
        &[("Content-Type", "application/json")],
        &format!(
            r#"{{"id": {}, "label": 1}}"#,
            serde_json::from_str::<Value>(&rows[0]).unwrap()["id"]
        ),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("applied but are not on disk after 5 s"),
        "{body}"
    );
    assert!(error.contains("not-a-directory"), "{body}");
    // Told apart from a refusal, with the counts a 200 gives.
    assert_eq!(answer["applied"], true, "{body}");
    assert_eq!(answer["accepted"], 1, "{body}");
    assert_eq!(answer["joined"], 1, "{body}");
    let (status, body) = common::http(app.web_addr, "GET", "/api/quality", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let quality: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(quality["labels"]["joined"], 1, "{quality}");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_labels_is_read_to_the_last_one() {
    // Labels faster than they are applied: the reader must keep polling its event loop (which
    // sends the acknowledgements) while it waits for room; if it does not, the labels stall.
    let broker = common::Mosquitto::start();
    let port = broker.port;
    let n = 50_000;
    // With a store: each label is acknowledged only once written.
    let store = tempfile::tempdir().unwrap();
    let cfg = config(
        "flood",
        None,
        port,
        &[
            ("FAULTLINE_LABELS__TOPIC", "flood/labels".to_string()),
            ("FAULTLINE_STORE__DIR", store.path().display().to_string()),
        ],
    );
    let model = Arc::new(Model::embedded().unwrap());
    let app = app::start(&cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    let c = Client::connect(port, "flood-test", &[]).await;
    for i in 0..n {
        c.publish("flood/labels", format!(r#"{{"id": "W-{i}", "label": -1}}"#))
            .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let r = http_get(app.web_addr, "/api/quality").await;
        let body: Value = serde_json::from_str(r.split_once("\r\n\r\n").unwrap().1).unwrap();
        if body["labels"]["received"] == n && body["store"]["labels_written"] == n {
            // None of their rows was scored: every one waits.
            assert_eq!(body["labels"]["pending"], n, "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the labels stalled: {} {}",
            body["labels"],
            body["store"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_while_starting_stops_the_daemon_gracefully() {
    // A shadow model whose file is a FIFO nobody writes: reading it holds the start-up for as
    // long as the test wants (a large shadow model or store on a slow disk does the same).
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.onnx");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let port = common::free_port();
    let env = daemon_env(
        "starting",
        Some(port),
        port,
        &[("FAULTLINE_SHADOW__MODEL", dir.path().display().to_string())],
    );
    let mut daemon = common::Daemon::spawn(&env);
    daemon.wait_log("Loaded the model.", 30).await;
    let log = daemon.log_text();
    assert!(!log.contains("faultline is serving"), "{log}");
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(15)).await;
    let log = daemon.log_text();
    let status = status.unwrap_or_else(|| panic!("still running 15 s after SIGTERM:\n{log}"));
    // Not killed by the signal's default action: a clean exit that says what happened.
    assert_eq!(status.code(), Some(0), "{status}:\n{log}");
    assert!(log.contains("Stopped while starting"), "{log}");
}

/// Starts faultline on `cfg`, waits until it reads, and stops it: the broker keeps its session.
async fn run_once(cfg: &Config, model: &Arc<Model>) {
    let app = app::start(cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    app.shutdown().await.unwrap();
}

/// Publishes `ids` (good rows) to `topic` one after the other, each once the one before it was
/// scored on `scores`; returns every score received by then, by id.
async fn score_in_turn(
    c: &mut Client,
    model: &Model,
    topic: &str,
    scores: &str,
    ids: &[&str],
) -> Vec<String> {
    let (_, _, good) = rows(model, 0);
    let mut got = vec![];
    for id in ids {
        c.publish(topic, good.replace("Known-Good", id)).await;
        let g = c
            .collect_until(20, |g| g.iter().any(|(t, v)| t == scores && v["id"] == *id))
            .await;
        got.extend(
            g.into_iter()
                .filter(|(t, _)| t == scores)
                .map(|(_, v)| v["id"].as_str().unwrap().to_string()),
        );
    }
    got
}

/// faultline restarted with another topic under the same client id: Mosquitto's session keeps
/// the old subscription, and a row on the old topic reached faultline and was scored. Now it is
/// acknowledged unread (and logged); only the configured topic's rows are scored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_kept_from_an_earlier_topic_is_not_read() {
    let broker = common::Mosquitto::start();
    let model = Arc::new(Model::embedded().unwrap());
    let same_client = (
        "FAULTLINE_SOURCE__MQTT__CLIENT_ID",
        "faultline-moved".to_string(),
    );
    run_once(
        &config(
            "moved-a",
            None,
            broker.port,
            std::slice::from_ref(&same_client),
        ),
        &model,
    )
    .await;
    let app = app::start(
        &config("moved-b", None, broker.port, &[same_client]),
        model.clone(),
    )
    .await
    .unwrap();
    wait_ready(app.web_addr).await;
    let mut c = Client::connect(broker.port, "moved-test", &["moved-b/scores".into()]).await;
    c.publish(
        "moved-a/rows",
        rows(&model, 0).2.replace("Known-Good", "Old-Topic"),
    )
    .await;
    let got = score_in_turn(
        &mut c,
        &model,
        "moved-b/rows",
        "moved-b/scores",
        &["New-1", "New-2"],
    )
    .await;
    assert_eq!(got, ["New-1", "New-2"], "the old topic's row was scored");
    app.shutdown().await.unwrap();
}

/// A wildcard subscription reads rows on a topic that begins with a character of several bytes.
/// rumqttc's topic matching panicked on such a topic: the source stopped reading for good while
/// `/readyz` still said ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_subscription_reads_topics_that_begin_with_any_character() {
    let broker = common::Mosquitto::start();
    let model = Arc::new(Model::embedded().unwrap());
    let wildcard = ("FAULTLINE_SOURCE__MQTT__TOPIC", "+/rows".to_string());
    let app = app::start(
        &config("wild", None, broker.port, &[wildcard]),
        model.clone(),
    )
    .await
    .unwrap();
    wait_ready(app.web_addr).await;
    let mut c = Client::connect(broker.port, "wild-test", &["wild/scores".into()]).await;
    for (topic, id) in [("Ätzen/rows", "Etch-1"), ("line-2/rows", "Etch-2")] {
        let got = score_in_turn(&mut c, &model, topic, "wild/scores", &[id]).await;
        assert_eq!(got, [id], "on {topic}");
    }
    app.shutdown().await.unwrap();
}

/// The embedded broker on an IPv6 address, faultline's own clients on it, and a replay to it by a
/// bracketed address, reported in brackets (d8f7631 changed how such addresses are parsed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_and_replay_work_on_ipv6() {
    let port = common::free_port();
    let listen = ("FAULTLINE_BROKER__LISTEN", format!("[::1]:{port}"));
    let cfg = config("v6", Some(port), port, &[listen]);
    let model = Arc::new(Model::embedded().unwrap());
    let app = app::start(&cfg, model).await.unwrap();
    wait_ready(app.web_addr).await;
    let sample = common::repo().join("examples/wafers.csv");
    let to = format!("mqtt://[::1]:{port}/v6/rows");
    let o = tokio::task::spawn_blocking(move || {
        common::command()
            .args(["replay", sample.to_str().unwrap(), "--to", &to])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("Published 50 rows to mqtt://[::1]:"),
        "{said}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(app.web_addr, "faultline_rows_scored_total").await < 50.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rows were not scored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.shutdown().await.unwrap();
}
