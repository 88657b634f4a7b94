//! MQTT throughput and latency of `faultline serve`, end to end over real sockets:
//! publish rows → broker → faultline → broker → the scores topic.
//!
//! ```text
//! cargo run --release --example bench_mqtt -- [--rows 20000] [--rate 5000] [--broker embedded|mosquitto] [--input wafers.csv] [--bin target/release/faultline] [--rows-per-message 1]
//! ```
//!
//! With `--faults-only` (needs `--bin`) the daemon runs as configured by default: it publishes
//! faults only, not a score for every row. The run ends when the daemon's own
//! `faultline_rows_scored_total` reaches the row count (read every 20 ms; the CPU shares stop
//! there), and latency covers the faults alone.
//!
//! With `--rows-per-message K` each message is a JSON array of K rows (the last one may hold
//! fewer), as a producer that batches sends them; `--rate` then paces messages so that rows
//! still arrive at that rate (in bursts of K).
//!
//! With `--bin` the daemon runs as its own process (build it first: `cargo build --release`) and
//! its CPU time and peak RSS are reported; without it, it runs in this process.
//!
//! Starts the daemon in-process (its own runtime threads) against an embedded rumqttd or a fresh
//! Mosquitto on a free port, publishes rows (unique ids; real wafers with --input, else synthetic)
//! at QoS 1 as fast as possible or at --rate, and records, per row, publish → score-message time.
//! Prints rows/s, p50/p99/max latency and the process's peak RSS, and the CPU-seconds each
//! process (this one, the daemon with `--bin`, Mosquitto), the rest of the machine and idle took
//! while the rows flowed: on a machine with no idle left, the largest share is what binds.

mod common;

use common::{arg, daemon_counter, free_port};
use faultline::config::RawConfig;
use faultline::model::Model;
use faultline::row::json::encode_row;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--rows").unwrap_or("20000".into()).parse()?;
    let rate: Option<f64> = arg(&args, "--rate").map(|r| r.parse()).transpose()?;
    let broker = arg(&args, "--broker").unwrap_or("embedded".into());
    let per_message = common::rows_per_message(&args)?;
    let faults_only = args.iter().any(|a| a == "--faults-only");
    let bin = arg(&args, "--bin");
    anyhow::ensure!(
        !faults_only || bin.is_some(),
        "--faults-only reads the daemon's /metrics: give --bin"
    );
    // What the receiver listens to: every score, or with --faults-only the faults.
    let watched_topic = if faults_only {
        "bench/faults"
    } else {
        "bench/scores"
    };
    let model = Arc::new(Model::embedded()?);

    // Rows: real wafers when given, else synthetic; ids made unique per row.
    let base = common::wafer_rows(arg(&args, "--input"), &model)?;
    let rows: Vec<(String, String)> = (0..n)
        .map(|i| {
            let j = i % base.len();
            let id = format!("{}#{i}", base.ids[j]);
            let p = encode_row(&id, base.row(j), model.features());
            (id, p)
        })
        .collect();
    // One message per row, or arrays of `per_message` rows: the ids a message carries, its text.
    let payloads: Vec<(Vec<String>, String)> = if per_message == 1 {
        rows.into_iter().map(|(id, p)| (vec![id], p)).collect()
    } else {
        rows.chunks(per_message)
            .map(|chunk| {
                let ids = chunk.iter().map(|(id, _)| id.clone()).collect();
                let texts: Vec<&str> = chunk.iter().map(|(_, p)| p.as_str()).collect();
                (ids, format!("[{}]", texts.join(",")))
            })
            .collect()
    };

    let port = free_port();
    let mut mosquitto = None;
    let mut env = vec![
        (
            "FAULTLINE_SINK__FAULTS_TOPIC".to_string(),
            "bench/faults".to_string(),
        ),
        ("FAULTLINE_SOURCE__MQTT__TOPIC".into(), "bench/rows".into()),
        (
            "FAULTLINE_SOURCE__MQTT__CLIENT_ID".into(),
            format!("bench-{port}"),
        ),
    ];
    if !faults_only {
        env.push(("FAULTLINE_SINK__SCORES_TOPIC".into(), "bench/scores".into()));
    }
    if broker == "mosquitto" {
        let dir = std::env::temp_dir().join(format!("faultline-bench-{port}"));
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 1000\n"))?;
        mosquitto = Some(
            std::process::Command::new("mosquitto")
                .arg("-c")
                .arg(&conf)
                .spawn()?,
        );
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        env.push(("FAULTLINE_SOURCE__KIND".into(), "mqtt".into()));
        env.push((
            "FAULTLINE_SOURCE__MQTT__URL".into(),
            format!("mqtt://127.0.0.1:{port}"),
        ));
    } else {
        env.push((
            "FAULTLINE_BROKER__LISTEN".into(),
            format!("127.0.0.1:{port}"),
        ));
    }
    // The daemon: in this process, or with --bin in its own (so its CPU and memory are its own).
    let mut app = None;
    let mut daemon = None;
    let web = free_port();
    match &bin {
        Some(bin) => daemon = Some(common::spawn_daemon(bin, &env, web)?),
        None => {
            env.push(("FAULTLINE_WEB__LISTEN".into(), "127.0.0.1:0".into()));
            let config = RawConfig::load_with_env(None, env)?.validate()?;
            app = Some(faultline::pipeline::start(&config, model.clone()).await?);
        }
    }

    // Subscriber: records when each id's score arrives.
    let mut options = MqttOptions::new(format!("bench-sub-{port}"), "127.0.0.1", port);
    options
        .set_max_packet_size(1 << 24, 1 << 24)
        .set_inflight(1000);
    let (sub, mut sub_loop) = AsyncClient::new(options, 10_000);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    sub.subscribe(watched_topic, QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.try_send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                    let _ = tx.send((
                        v["id"].as_str().unwrap_or_default().to_string(),
                        Instant::now(),
                    ));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    subscribed.recv().await;

    // Publisher.
    let mut options = MqttOptions::new(format!("bench-pub-{port}"), "127.0.0.1", port);
    options
        .set_max_packet_size(1 << 24, 1 << 24)
        .set_inflight(1000);
    let (publisher, mut pub_loop) = AsyncClient::new(options, 10_000);
    tokio::spawn(async move {
        loop {
            if pub_loop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let mut sent_at: HashMap<String, Instant> = HashMap::with_capacity(n);
    // Who used the two cores while the rows flowed (what binds, when the daemon is not it).
    let mut watched = vec![(
        "publisher and receiver (this process)".to_string(),
        std::process::id(),
    )];
    if let Some(d) = &daemon {
        watched.push(("daemon".into(), d.id()));
    }
    if let Some(m) = &mosquitto {
        watched.push(("mosquitto".into(), m.id()));
    }
    let budget = common::CpuBudget::start(watched);
    let start = Instant::now();
    // Faults only: once every row is scored, how many faults the daemon published.
    let (done_tx, mut done) = tokio::sync::watch::channel(None::<usize>);
    let receiver = tokio::spawn(async move {
        let mut got = Vec::with_capacity(n);
        // Every score: until each row's has arrived (or 30 s pass without one). Faults only:
        // until as many faults have arrived as the daemon published, or 10 s after it said so.
        let mut drain_until = None;
        loop {
            let want = if faults_only { *done.borrow() } else { Some(n) };
            if want.is_some_and(|w| got.len() >= w) {
                break;
            }
            let now = tokio::time::Instant::now();
            if faults_only && want.is_some() && drain_until.is_none() {
                drain_until = Some(now + Duration::from_secs(10));
            }
            let limit = drain_until.unwrap_or(now + Duration::from_secs(30));
            tokio::select! {
                x = tokio::time::timeout_at(limit, rx.recv()) => match x {
                    Ok(Some(x)) => got.push(x),
                    _ => break,
                },
                r = done.changed(), if faults_only && want.is_none() => {
                    if r.is_err() {
                        break;
                    }
                }
            }
        }
        got
    });
    for (i, (ids, payload)) in payloads.into_iter().enumerate() {
        if let Some(rate) = rate {
            let row = (i * per_message) as f64;
            tokio::time::sleep_until((start + Duration::from_secs_f64(row / rate)).into()).await;
        }
        let now = Instant::now();
        sent_at.extend(ids.into_iter().map(|id| (id, now)));
        publisher
            .publish("bench/rows", QoS::AtLeastOnce, false, payload)
            .await?;
    }
    // Faults only: the daemon's own count says when every row is scored (read every 20 ms).
    let mut finished = None;
    let mut last_count = 0;
    let mut budget_report = None;
    if faults_only {
        (finished, last_count) = common::wait_scored(web, n).await;
        // CPU shares up to here: the wait for the last faults below is the benchmark's own.
        budget_report = Some(budget.report());
        let faults = daemon_counter(web, faultline::metrics::FAULTS).unwrap_or(0) as usize;
        done_tx.send_replace(Some(faults));
    }
    let got = receiver.await?;
    let budget = budget_report.unwrap_or_else(|| budget.report());
    let scored = if faults_only {
        let published = *done_tx.borrow();
        if published != Some(got.len()) {
            println!(
                "received {} faults of the {} the daemon published (latency covers those received)",
                got.len(),
                published.map_or("?".into(), |p| p.to_string())
            );
        }
        last_count as usize
    } else {
        got.len()
    };
    let elapsed = if faults_only {
        finished.unwrap_or_else(Instant::now) - start
    } else {
        got.last().map(|(_, t)| *t - start).unwrap_or_default()
    }
    .as_secs_f64();
    let mut latencies: Vec<f64> = got
        .iter()
        .filter_map(|(id, t)| sent_at.get(id).map(|s| (*t - *s).as_secs_f64() * 1e3))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (rss, who) = match &daemon {
        Some(d) => (common::usage(d.id()).0, "daemon"),
        None => (peak_rss_mb(), "this process"),
    };
    let outputs = if faults_only {
        format!("faults only ({} faults; latency of faults)", got.len())
    } else {
        "every score".into()
    };
    println!(
        "broker={broker} rows={n} rows/message={per_message} outputs: {outputs}; scored={scored} rate={} -> {:.0} rows/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; peak RSS ({who}) {rss:.0} MB",
        rate.map(|r| format!("{r:.0}/s")).unwrap_or("max".into()),
        scored as f64 / elapsed.max(1e-9),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    println!("{budget}");
    if let Some(mut d) = daemon {
        let (_, cpu) = common::usage(d.id());
        println!(
            "daemon CPU {cpu:.2} s for {scored} rows: {:.1} µs per row, {:.2} CPU-s per 100,000 rows",
            cpu * 1e6 / scored.max(1) as f64,
            cpu * 1e5 / scored.max(1) as f64
        );
        let _ = d.kill();
        let _ = d.wait();
    }
    if let Some(app) = app {
        app.shutdown().await?;
    }
    if let Some(mut m) = mosquitto {
        let _ = m.kill();
    }
    Ok(())
}
