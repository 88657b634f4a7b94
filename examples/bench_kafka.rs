//! Kafka throughput and latency of `faultline serve`, end to end over real sockets, with the daemon
//! in its own process: publish rows → Kafka → faultline → Kafka → the scores topic.
//!
//! ```text
//! cargo build --release --features kafka
//! cargo run --release --features kafka --example bench_kafka -- \
//!     [--rows 50000] [--rate 5000] [--partitions 4] [--bootstrap HOST:PORT] [--input wafers.csv] \
//!     [--bin target/release/faultline] [--compact] [--broker-pid PID] [--faults-only] [--backlog]
//!     [--idle SECONDS] [--rows-per-message 1]
//! ```
//!
//! With `--faults-only` the daemon publishes faults only, as configured by default, instead of a
//! score for every row: the run ends when its own `faultline_rows_scored_total` reaches the row
//! count (read every 20 ms; the CPU shares stop there), and latency covers the faults alone.
//!
//! With `--backlog` every row is published (and acknowledged by the broker) before the daemon
//! starts, which then reads the topic as a backlog, as after an outage: the producer is out of
//! the picture, so the rate is the daemon's and the broker's fetches alone. The clock and the CPU
//! shares run from the first row the daemon counts as scored to the last; faults only, and of
//! latency only the daemon's own histogram (the rows waited in the topic).
//!
//! With `--idle SECONDS` no row is published: the daemon is started, left 2 s to join its group,
//! and the CPU-seconds it and the broker use while it waits for rows are measured for SECONDS
//! (what the consumer's empty fetches cost: see `fetch.wait.max.ms`).
//!
//! Without `--bootstrap` the cluster is librdkafka's in-process MockCluster (in this process, not
//! the daemon's), which keeps only 5 MiB a partition: a run at full speed that would put more than
//! 80% of that on a partition (on average) is refused, since older rows would be dropped unread. With `--bootstrap`, any Kafka-protocol broker (tansu: `target/tools/tansu-0.6.0-dynostore-libsql/bin/tansu broker ...`).
//! Rows are real wafers with `--input`, else synthetic; every id is unique. `--compact` sends the
//! `{"id", "values": [...]}` form instead of one key per sensor. `--rows-per-message K` sends each
//! message as a JSON array of K rows (the last one may hold fewer), keyed by its first row's id;
//! every row of a message counts as sent when the message is. Prints rows/s (first publish to
//! last verdict), p50/p99/max publish → verdict latency, the daemon's peak RSS and CPU time, and
//! the CPU-seconds each process (this one, the daemon, the broker given by `--broker-pid`), the
//! rest of the machine and idle took while the rows flowed.

mod common;

use common::{arg, free_port};
use faultline::model::Model;
use faultline::row::json::encode_row;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--rows").unwrap_or("50000".into()).parse()?;
    let rate: Option<f64> = arg(&args, "--rate").map(|r| r.parse()).transpose()?;
    let partitions: i32 = arg(&args, "--partitions").unwrap_or("4".into()).parse()?;
    let compact = args.iter().any(|a| a == "--compact");
    let per_message = common::rows_per_message(&args)?;
    let idle: Option<f64> = arg(&args, "--idle").map(|s| s.parse()).transpose()?;
    let backlog = args.iter().any(|a| a == "--backlog");
    let faults_only = backlog || args.iter().any(|a| a == "--faults-only");
    anyhow::ensure!(
        !(backlog && rate.is_some()),
        "--backlog publishes every row before the daemon starts; it takes no --rate"
    );
    let bin = arg(&args, "--bin").unwrap_or("target/release/faultline".into());
    let model = Model::embedded()?;

    let base = common::wafer_rows(arg(&args, "--input"), &model)?;
    // Id "b<i>" so the receiver finds the send time by index.
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let j = i % base.len();
            let id = format!("b{i}");
            if compact {
                let values: Vec<String> = base
                    .row(j)
                    .iter()
                    .map(|v| {
                        if v.is_nan() {
                            "null".into()
                        } else {
                            v.to_string()
                        }
                    })
                    .collect();
                format!(r#"{{"id":"{id}","values":[{}]}}"#, values.join(","))
            } else {
                encode_row(&id, base.row(j), model.features())
            }
        })
        .collect();
    let bytes: usize = rows.iter().map(String::len).sum();
    // One message per row, or arrays of `per_message` rows.
    let payloads: Vec<String> = if per_message == 1 {
        rows
    } else {
        rows.chunks(per_message)
            .map(|chunk| format!("[{}]", chunk.join(",")))
            .collect()
    };

    // The cluster: MockCluster here, or the given broker.
    let mock = match arg(&args, "--bootstrap") {
        Some(_) => None,
        None => {
            // librdkafka's mock partitions keep 5 MiB (rdkafka_mock.c) and drop older messages:
            // published faster than the daemon reads, rows would vanish unread. Keyed messages
            // are spread by hash, not evenly, so the average is held well under that.
            let per_partition = payloads.iter().map(String::len).sum::<usize>() as f64
                / partitions.max(1) as f64
                / 1e6;
            let keeps = 5.0 * 1024.0 * 1024.0 / 1e6;
            let allowed = 0.8 * keeps;
            anyhow::ensure!(
                idle.is_some() || rate.is_some() || per_partition < allowed,
                "this run puts {per_partition:.1} MB on each of its {partitions} partitions on \
                 average, and MockCluster keeps {keeps:.1} MB a partition, dropping older rows \
                 before the daemon reads them: give --bootstrap (a real broker, e.g. tansu), more \
                 --partitions or fewer --rows (runs under {allowed:.1} MB a partition on average \
                 are allowed), or a --rate the daemon keeps up with (then this is only a note)"
            );
            if idle.is_none() && per_partition >= allowed {
                println!(
                    "note: {per_partition:.1} MB a partition on average, near or past the \
                     {keeps:.1} MB MockCluster keeps: rows are lost if the daemon falls behind \
                     the rate"
                );
            }
            Some(MockCluster::new(1)?)
        }
    };
    let bootstrap = match (&mock, arg(&args, "--bootstrap")) {
        (Some(m), _) => m.bootstrap_servers(),
        (None, b) => b.unwrap_or_default(),
    };
    let run = format!("bench{}", std::process::id());
    let (rows_topic, scores_topic) = (format!("{run}.rows"), format!("{run}.scores"));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    for (t, p) in [
        (&rows_topic, partitions),
        (&scores_topic, 1),
        (&format!("{run}.faults"), 1),
        (&format!("{run}.dead"), 1),
    ] {
        // MockCluster has no CreateTopics handler.
        if let Some(m) = &mock {
            m.create_topic(t, p, 1)?;
            continue;
        }
        let r = admin
            .create_topics(
                &[NewTopic::new(t, p, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await?;
        if let Some(Err((t, e))) = r.into_iter().next() {
            anyhow::ensure!(e == RDKafkaErrorCode::TopicAlreadyExists, "{t}: {e}");
        }
    }

    // The daemon, in its own process.
    let env: Vec<(String, String)> = [
        ("FAULTLINE_SOURCE__KIND", "kafka".to_string()),
        ("FAULTLINE_SOURCE__KAFKA__BROKERS", bootstrap.clone()),
        ("FAULTLINE_SOURCE__KAFKA__TOPIC", rows_topic.clone()),
        ("FAULTLINE_SOURCE__KAFKA__GROUP_ID", run.clone()),
        ("FAULTLINE_SINK__SCORES_TOPIC", scores_topic.clone()),
        ("FAULTLINE_SINK__FAULTS_TOPIC", format!("{run}.faults")),
        ("FAULTLINE_SINK__DEAD_LETTER_TOPIC", format!("{run}.dead")),
    ]
    .into_iter()
    .filter(|(k, _)| !(faults_only && *k == "FAULTLINE_SINK__SCORES_TOPIC"))
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // What the receiver reads: every score, or with --faults-only the faults.
    let watched_topic = if faults_only {
        format!("{run}.faults")
    } else {
        scores_topic.clone()
    };
    let broker_pid: Option<u32> = arg(&args, "--broker-pid").map(|p| p.parse()).transpose()?;
    if let Some(seconds) = idle {
        anyhow::ensure!(!backlog, "--idle publishes no rows; it takes no --backlog");
        let web = free_port();
        let mut daemon = common::spawn_daemon(&bin, &env, web)?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let budget = common::CpuBudget::start(watched(
            vec![("daemon".to_string(), daemon.id())],
            broker_pid,
        ));
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        println!("idle for {seconds} s, no rows: {}", budget.report());
        daemon.kill()?;
        daemon.wait()?;
        return Ok(());
    }
    if backlog {
        return drain_backlog(
            &bootstrap,
            &rows_topic,
            (&payloads, per_message, n, bytes),
            &bin,
            &env,
            broker_pid,
        )
        .await;
    }
    let web = free_port();
    let mut daemon = common::spawn_daemon(&bin, &env, web)
        .map_err(|e| anyhow::anyhow!("{e} (build it with --features kafka)"))?;
    let pid = daemon.id();

    // Receiver: every verdict on the scores topic (or every fault), from the start.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("{run}-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&watched_topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    // Who used the cores while the rows flowed (what binds, when the daemon is not it).
    let budget = common::CpuBudget::start(watched(
        vec![
            (
                "producer and receiver (this process)".to_string(),
                std::process::id(),
            ),
            ("daemon".to_string(), pid),
        ],
        broker_pid,
    ));
    let start = Instant::now();
    // Faults only: once every row is scored, how many faults the daemon published.
    let (done_tx, mut done) = tokio::sync::watch::channel(None::<usize>);
    let receiver = tokio::spawn(async move {
        let mut arrived = vec![None::<Instant>; n];
        let mut count = 0;
        // Every score: until each row's has arrived (or 30 s pass without one). Faults only:
        // until as many faults have arrived as the daemon published, or 10 s after it said so.
        let mut drain_until = None;
        loop {
            let want = if faults_only { *done.borrow() } else { Some(n) };
            if want.is_some_and(|w| count >= w) {
                break;
            }
            let now = tokio::time::Instant::now();
            if faults_only && want.is_some() && drain_until.is_none() {
                drain_until = Some(now + Duration::from_secs(10));
            }
            let limit = drain_until.unwrap_or(now + Duration::from_secs(30));
            let next = tokio::select! {
                m = tokio::time::timeout_at(limit, consumer.recv()) => m,
                r = done.changed(), if faults_only && want.is_none() => {
                    if r.is_err() {
                        break;
                    }
                    continue;
                }
            };
            match next {
                Ok(Ok(m)) => {
                    let i = m
                        .key()
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .and_then(|k| k.strip_prefix('b'))
                        .and_then(|k| k.parse::<usize>().ok());
                    if let Some(i) = i.filter(|&i| i < n) {
                        if arrived[i].is_none() {
                            arrived[i] = Some(Instant::now());
                            count += 1;
                        }
                    }
                }
                _ => break,
            }
        }
        arrived
    });

    let producer = producer(&bootstrap)?;
    let mut sent_at = Vec::with_capacity(n);
    let mut reports = Vec::with_capacity(n);
    for (m, payload) in payloads.iter().enumerate() {
        // The message's first row.
        let i = m * per_message;
        if let Some(rate) = rate {
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        let now = Instant::now();
        sent_at.resize((i + per_message).min(n), now);
        reports.push(send(&producer, &rows_topic, i, payload).await);
    }
    let published = start.elapsed();
    for r in reports {
        r.await?.map_err(|(e, _)| e)?;
    }
    // Faults only: the daemon's own count says when every row is scored.
    let mut finished = None;
    let mut last_count = 0;
    let mut budget_report = None;
    if faults_only {
        (finished, last_count) = common::wait_scored(web, n).await;
        // CPU shares up to here: the wait for the last faults below is the benchmark's own.
        budget_report = Some(budget.report());
        let faults = common::daemon_counter(web, faultline::metrics::FAULTS).unwrap_or(0);
        done_tx.send_replace(Some(faults as usize));
    }
    let arrived = receiver.await?;
    let budget = budget_report.unwrap_or_else(|| budget.report());
    let (rss, cpu) = common::usage(pid);
    let inside = daemon_latency(web);
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = daemon.wait();

    let mut latencies: Vec<f64> = arrived
        .iter()
        .zip(&sent_at)
        .filter_map(|(a, s)| a.map(|a| (a - *s).as_secs_f64() * 1000.0))
        .collect();
    let got = latencies.len();
    anyhow::ensure!(got > 0, "no verdict arrived");
    let last = arrived.iter().flatten().max().copied().unwrap_or(start);
    latencies.sort_by(f64::total_cmp);
    println!(
        "kafka ({}), {} rows ({:.1} KB each, {}, {per_message} a message), {} partitions{}",
        if arg(&args, "--bootstrap").is_some() {
            "external broker"
        } else {
            "MockCluster"
        },
        n,
        bytes as f64 / n as f64 / 1024.0,
        if compact {
            "compact"
        } else {
            "one key per sensor"
        },
        partitions,
        rate.map(|r| format!(", offered {r} rows/s"))
            .unwrap_or_default()
    );
    if faults_only {
        let published_faults = *done_tx.borrow();
        println!(
            "faults only: {got} faults received of the {} the daemon published; rows scored {last_count}/{n}; published in {:.2} s; rows/s (first publish → every row scored): {:.0}",
            published_faults.map_or("?".into(), |p| p.to_string()),
            published.as_secs_f64(),
            last_count as f64 / (finished.unwrap_or_else(Instant::now) - start).as_secs_f64()
        );
    } else {
        println!(
            "verdicts: {got}/{n}; published in {:.2} s; rows/s (first publish → last verdict): {:.0}",
            published.as_secs_f64(),
            got as f64 / (last - start).as_secs_f64()
        );
    }
    println!(
        "latency publish → verdict: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[got - 1]
    );
    // Where the slowest rows sit: the latency of each second of publishing, so a start-up
    // wait (the consumer group's first assignment) is told apart from a steady tail.
    let mut by_second: Vec<Vec<f64>> = vec![];
    for (a, s) in arrived.iter().zip(&sent_at) {
        if let Some(a) = a {
            let sec = (*s - start).as_secs() as usize;
            if by_second.len() <= sec {
                by_second.resize(sec + 1, vec![]);
            }
            by_second[sec].push((*a - *s).as_secs_f64() * 1000.0);
        }
    }
    let seconds: Vec<String> = by_second
        .iter_mut()
        .map(|l| {
            l.sort_by(f64::total_cmp);
            if l.is_empty() {
                "-".into()
            } else {
                format!("{:.0}/{:.0}", percentile(l, 0.5), percentile(l, 0.99))
            }
        })
        .collect();
    println!(
        "latency p50/p99 ms by second of publishing: {}",
        seconds.join(" ")
    );
    let steady: Vec<f64> = {
        let mut v: Vec<f64> = by_second.iter().skip(1).flatten().copied().collect();
        v.sort_by(f64::total_cmp);
        v
    };
    if !steady.is_empty() {
        println!(
            "latency after the first second: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&steady, 0.5),
            percentile(&steady, 0.99),
            steady[steady.len() - 1]
        );
    }
    let rows = if faults_only {
        last_count as usize
    } else {
        got
    };
    println!(
        "daemon: peak RSS {rss:.0} MB, CPU {cpu:.2} s: {:.1} µs a row",
        cpu * 1e6 / rows.max(1) as f64
    );
    println!("{budget}");
    print_daemon_latency(inside);
    Ok(())
}

/// The processes whose CPU the run reports: `named`, and the broker when its pid was given.
fn watched(mut named: Vec<(String, u32)>, broker_pid: Option<u32>) -> Vec<(String, u32)> {
    named.extend(broker_pid.map(|pid| ("broker".to_string(), pid)));
    named
}

/// Prints the daemon's own row latency, as read by [`daemon_latency`].
fn print_daemon_latency(inside: Option<(f64, f64)>) {
    if let Some((p50, p99)) = inside {
        println!(
            "inside the daemon (faultline_row_latency_seconds: arrival → acknowledged to the source, after its verdict if published): p50 ≤ {:.1} ms, p99 ≤ {:.1} ms",
            p50 * 1000.0,
            p99 * 1000.0
        );
    }
}

/// The load generator's producer.
fn producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.max.bytes", "16777216")
        .create()?)
}

/// Queues the message whose first row is `i` (key `b<i>`) for `topic`, waiting while the
/// producer's queue is full.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    i: usize,
    payload: &str,
) -> rdkafka::producer::DeliveryFuture {
    let key = format!("b{i}");
    let mut record = FutureRecord::to(topic).key(&key).payload(payload);
    loop {
        match producer.send_result(record) {
            Ok(r) => return r,
            Err((_, r)) => {
                record = r;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// `--backlog`: publishes every message (`per_message` rows each, `n` rows of `bytes` in all),
/// then starts the daemon (faults only) and times it from the first row it counts as scored to
/// the last.
async fn drain_backlog(
    bootstrap: &str,
    rows_topic: &str,
    (payloads, per_message, n, bytes): (&[String], usize, usize, usize),
    bin: &str,
    env: &[(String, String)],
    broker_pid: Option<u32>,
) -> anyhow::Result<()> {
    let producer = producer(bootstrap)?;
    let start = Instant::now();
    let mut reports = Vec::with_capacity(payloads.len());
    for (m, payload) in payloads.iter().enumerate() {
        reports.push(send(&producer, rows_topic, m * per_message, payload).await);
    }
    for r in reports {
        r.await?.map_err(|(e, _)| e)?;
    }
    let published = start.elapsed();
    drop(producer);
    let web = free_port();
    let mut daemon = common::start_daemon(bin, env, web)?;
    let pid = daemon.id();
    // The clock starts at the first row scored (its /metrics read every millisecond from the
    // start): the daemon's start and the group's join are not its rate.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let count = common::daemon_counter(web, faultline::metrics::ROWS_SCORED).unwrap_or(0);
        if count > 0 {
            break count;
        }
        if let Some(status) = daemon.try_wait()? {
            anyhow::bail!("{bin} serve exited ({status}) before scoring a row");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the daemon scored no row within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let t0 = Instant::now();
    let cpu0 = common::usage(pid).1;
    let budget = common::CpuBudget::start(watched(vec![("daemon".to_string(), pid)], broker_pid));
    let (finished, last) = common::wait_scored(web, n).await;
    let report = budget.report();
    let (rss, cpu) = common::usage(pid);
    let cpu = cpu - cpu0;
    let seconds = (finished.unwrap_or_else(Instant::now) - t0).as_secs_f64();
    let rows = last.saturating_sub(first);
    let inside = daemon_latency(web);
    let exited = daemon.try_wait()?;
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = daemon.wait();
    if let Some(status) = exited {
        anyhow::bail!("{bin} serve exited ({status}) after scoring {last} of {n} rows");
    }
    anyhow::ensure!(finished.is_some(), "the daemon scored {last} of {n} rows");
    anyhow::ensure!(
        rows > 0,
        "the daemon scored all {n} rows before its first count was read: give more --rows"
    );
    println!(
        "kafka backlog: {n} rows ({:.1} KB each, {per_message} a message) published in {:.2} s before the daemon started",
        bytes as f64 / n as f64 / 1024.0,
        published.as_secs_f64()
    );
    println!(
        "drained: rows scored {last}/{n}; {rows} rows from the first scored ({first}) to the last in {seconds:.2} s: {:.0} rows/s",
        rows as f64 / seconds
    );
    println!(
        "daemon: peak RSS {rss:.0} MB, CPU {cpu:.2} s while draining: {:.1} µs a row",
        cpu * 1e6 / rows.max(1) as f64
    );
    println!("{report}");
    print_daemon_latency(inside);
    Ok(())
}

/// p50 and p99 upper bounds of the daemon's own row latency histogram (from a row's arrival until
/// it is acknowledged to its source, after its verdict if published), read from its `/metrics`.
fn daemon_latency(web: u16) -> Option<(f64, f64)> {
    let text = common::metrics_text(web)?;
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("faultline_row_latency_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, count) = l.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(le, _)| *le)
            .unwrap_or(f64::INFINITY)
    };
    (total > 0.0).then(|| (quantile(0.5), quantile(0.99)))
}
