//! MQTT throughput and latency of `faultline serve`, end to end over real sockets:
//! publish rows → broker → faultline → broker → the scores topic.
//!
//! ```text
//! cargo run --release --example bench_mqtt -- [--rows 20000] [--rate 5000] [--broker embedded|mosquitto] [--input wafers.csv] [--bin target/release/faultline]
//! ```
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

use common::{arg, free_port};
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
    let model = Arc::new(Model::embedded()?);

    // Rows: real wafers when given, else synthetic; ids made unique per row.
    let base = common::wafer_rows(arg(&args, "--input"), &model)?;
    let payloads: Vec<(String, String)> = (0..n)
        .map(|i| {
            let j = i % base.len();
            let id = format!("{}#{i}", base.ids[j]);
            let p = encode_row(&id, base.row(j), model.features());
            (id, p)
        })
        .collect();

    let port = free_port();
    let mut mosquitto = None;
    let mut env = vec![
        (
            "FAULTLINE_SINK__SCORES_TOPIC".to_string(),
            "bench/scores".to_string(),
        ),
        ("FAULTLINE_SOURCE__MQTT__TOPIC".into(), "bench/rows".into()),
        (
            "FAULTLINE_SOURCE__MQTT__CLIENT_ID".into(),
            format!("bench-{port}"),
        ),
    ];
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
    let bin = arg(&args, "--bin");
    let mut app = None;
    let mut daemon = None;
    match &bin {
        Some(bin) => daemon = Some(common::spawn_daemon(bin, &env, free_port())?),
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
                    sub.subscribe("bench/scores", QoS::AtLeastOnce)
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
    let receiver = tokio::spawn(async move {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(x)) => got.push(x),
                _ => break,
            }
        }
        got
    });
    for (i, (id, payload)) in payloads.into_iter().enumerate() {
        if let Some(rate) = rate {
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        sent_at.insert(id, Instant::now());
        publisher
            .publish("bench/rows", QoS::AtLeastOnce, false, payload)
            .await?;
    }
    let got = receiver.await?;
    let budget = budget.report();
    let elapsed = got
        .last()
        .map(|(_, t)| *t - start)
        .unwrap_or_default()
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
    println!(
        "broker={broker} rows={n} scored={} rate={} -> {:.0} rows/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; peak RSS ({who}) {rss:.0} MB",
        got.len(),
        rate.map(|r| format!("{r:.0}/s")).unwrap_or("max".into()),
        got.len() as f64 / elapsed.max(1e-9),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    println!("{budget}");
    if let Some(mut d) = daemon {
        let (_, cpu) = common::usage(d.id());
        println!(
            "daemon CPU {cpu:.2} s for {} rows: {:.1} µs per row, {:.2} CPU-s per 100,000 rows",
            got.len(),
            cpu * 1e6 / got.len().max(1) as f64,
            cpu * 1e5 / got.len().max(1) as f64
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
