//! Soak run: `faultline serve` (its own process) under a steady MQTT load for a bounded time,
//! sampling its resident memory, to show whether it stays flat.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example soak -- [--minutes 30] [--rate 5000] [--sample-s 30] \
//!     [--input wafers.csv] [--bin target/release/faultline] [--store DIR [--store-max-rows N]]
//! ```
//!
//! With `--store DIR` the daemon also keeps every row in the store under DIR (bounded by
//! `--store-max-rows`, default 1,000,000) and reads labels from `faultline/labels`, where the
//! soak publishes each wafer's label 1,000 rows after the wafer (the whole loop under load); each
//! sample then adds the labels joined and the store's size on disk.
//!
//! Starts a Mosquitto on a free port and the daemon against it, publishes rows (real wafers with
//! `--input`, else synthetic; every id unique) at QoS 1 at `--rate`, and prints one line per
//! sample: minutes, rows scored, rows/s over the interval, rows in flight, daemon RSS. At the end
//! it compares RSS after the first sample (warm-up) with the last and the highest.

mod common;

use common::{arg, free_port};
use faultline::model::Model;
use faultline::row::json::encode_row;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use std::time::{Duration, Instant};

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The value of the `/metrics` line starting with `prefix`.
fn metric(web: u16, prefix: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", web)) else {
        return f64::NAN;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let minutes: f64 = arg(&args, "--minutes").unwrap_or("30".into()).parse()?;
    let rate: f64 = arg(&args, "--rate").unwrap_or("5000".into()).parse()?;
    let sample = Duration::from_secs(arg(&args, "--sample-s").unwrap_or("30".into()).parse()?);
    let bin = arg(&args, "--bin").unwrap_or("target/release/faultline".into());
    let store = arg(&args, "--store");
    let store_max_rows = arg(&args, "--store-max-rows").unwrap_or("1000000".into());
    let model = Model::embedded()?;
    let base = common::wafer_rows(arg(&args, "--input"), &model)?;
    // Each row's JSON after its id, so a unique id costs one format! per message.
    let bodies: Vec<String> = (0..base.len())
        .map(|i| {
            let full = encode_row("x", base.row(i), model.features());
            full.split_once(',')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default()
        })
        .collect();

    let port = free_port();
    let dir = std::env::temp_dir().join(format!("faultline-soak-{port}"));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 1000\n"),
    )?;
    let mut mosquitto = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let web = free_port();
    let mut command = std::process::Command::new(&bin);
    if let Some(dir) = &store {
        command
            .env("FAULTLINE_STORE__DIR", dir)
            .env("FAULTLINE_STORE__MAX_ROWS", &store_max_rows)
            .env(
                "FAULTLINE_STORE__SEGMENT_ROWS",
                (store_max_rows.parse::<usize>()? / 10).max(1).to_string(),
            )
            .env("FAULTLINE_LABELS__TOPIC", "faultline/labels");
    }
    let with_labels = store.is_some();
    let mut daemon = command
        .arg("serve")
        .env("FAULTLINE_SOURCE__KIND", "mqtt")
        .env(
            "FAULTLINE_SOURCE__MQTT__URL",
            format!("mqtt://127.0.0.1:{port}"),
        )
        .env("FAULTLINE_SOURCE__MQTT__CLIENT_ID", format!("soak-{port}"))
        .env("FAULTLINE_WEB__LISTEN", format!("127.0.0.1:{web}"))
        .env("RUST_LOG", "warn")
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {bin}: {e}"))?;
    let pid = daemon.id();
    let ready = Instant::now();
    while metric(web, "faultline_source_connected{source=\"mqtt\"} ") != 1.0 {
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(30),
            "daemon never connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut options = MqttOptions::new(format!("soak-pub-{port}"), "127.0.0.1", port);
    options
        .set_max_packet_size(1 << 24, 1 << 24)
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let total = Duration::from_secs_f64(minutes * 60.0);
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        let mut i = 0u64;
        while start.elapsed() < total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let body = &bodies[i as usize % bodies.len()];
            let payload = format!("{{\"id\":\"soak-{i}\",{body}");
            if client
                .publish("faultline/rows", QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                break;
            }
            if with_labels && i >= 1000 {
                let label = format!(
                    "{{\"id\":\"soak-{}\",\"label\":{}}}",
                    i - 1000,
                    if i.is_multiple_of(17) { 1 } else { -1 }
                );
                if client
                    .publish("faultline/labels", QoS::AtLeastOnce, false, label)
                    .await
                    .is_err()
                {
                    break;
                }
            }
            i += 1;
        }
        i
    });

    println!(
        "soak: {minutes} min at {rate} rows/s, {} distinct wafers; daemon pid {pid}",
        base.len()
    );
    println!(
        "{:>7} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "minutes", "rows scored", "rows/s", "in flight", "RSS MB", "joined", "store MB"
    );
    let (mut last_rows, mut last_t) = (0.0, Instant::now());
    let mut samples: Vec<f64> = vec![];
    while start.elapsed() < total + Duration::from_secs(5) {
        tokio::time::sleep(sample).await;
        let rows = metric(web, "faultline_rows_scored_total ");
        let in_flight = metric(web, "faultline_queue_rows ");
        let rss = rss_mb(pid);
        let joined = metric(web, "faultline_labels_total{result=\"joined\"} ");
        let store_mb = store.as_ref().map_or(f64::NAN, |d| {
            std::fs::read_dir(d)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok()?.metadata().ok())
                        .map(|m| m.len() as f64)
                        .sum::<f64>()
                        / 1_048_576.0
                })
                .unwrap_or(f64::NAN)
        });
        let now = Instant::now();
        println!(
            "{:>7.1} {:>12.0} {:>9.0} {:>9.0} {:>9.1} {:>9.0} {:>9.0}",
            start.elapsed().as_secs_f64() / 60.0,
            rows,
            (rows - last_rows) / (now - last_t).as_secs_f64(),
            in_flight,
            rss,
            joined,
            store_mb
        );
        samples.push(rss);
        (last_rows, last_t) = (rows, now);
    }
    let published = publisher.await?;
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let status = daemon.wait()?;
    let _ = mosquitto.kill();
    let _ = mosquitto.wait();
    // Allocators and buffers grow to their working size first: judge the second half.
    let warm = samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN);
    let last = samples.last().copied().unwrap_or(f64::NAN);
    let peak = samples.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "published {published} rows; RSS at half time {warm:.1} MB, last {last:.1} MB, peak {peak:.1} MB \
         ({:+.1}% last vs half time); daemon exit: {status}",
        (last - warm) / warm * 100.0
    );
    Ok(())
}
