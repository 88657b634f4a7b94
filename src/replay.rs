//! `faultline replay`: publishes a wafer CSV to the bus, one JSON object per row — for demos and as
//! the load generator.

use crate::config::parse_mqtt_url;
use crate::row::csv::{CsvOptions, CsvRows};
use crate::row::json::encode_row;
use crate::row::Schema;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::path::Path;
use std::time::{Duration, Instant};

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The target is not usable.
    #[error("{0}")]
    Target(String),
    /// The CSV is not usable.
    #[error(transparent)]
    Csv(#[from] crate::row::csv::CsvError),
    /// Reading the file failed.
    #[error("cannot open {0}: {1}")]
    Open(String, std::io::Error),
    /// The broker went away.
    #[error("the MQTT broker failed: {0}")]
    Broker(String),
}

/// Where to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topic.
    pub topic: String,
}

/// Parses `mqtt://HOST:PORT/TOPIC` (the topic may contain `/`).
pub fn parse_target(to: &str) -> Result<Target, ReplayError> {
    if to.starts_with("kafka://") {
        return Err(ReplayError::Target(
            "this build of faultline cannot publish to Kafka yet; use mqtt://HOST:PORT/TOPIC"
                .into(),
        ));
    }
    let rest = to
        .strip_prefix("mqtt://")
        .ok_or_else(|| ReplayError::Target(format!("--to '{to}' is not mqtt://HOST:PORT/TOPIC")))?;
    let (addr, topic) = rest
        .split_once('/')
        .filter(|(_, t)| !t.is_empty())
        .ok_or_else(|| {
            ReplayError::Target(format!(
                "--to '{to}' names no topic; write mqtt://HOST:PORT/TOPIC"
            ))
        })?;
    if topic.contains(['+', '#']) {
        return Err(ReplayError::Target(format!(
            "--to '{to}': a publish topic cannot contain + or #"
        )));
    }
    let (host, port) = parse_mqtt_url(&format!("mqtt://{addr}")).map_err(ReplayError::Target)?;
    Ok(Target {
        host,
        port,
        topic: topic.to_string(),
    })
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplaySummary {
    /// Rows published (and acknowledged by the broker).
    pub rows: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Publishes every row of `file` to `target` at up to `rate` rows/s (unlimited when `None`),
/// `passes` times (ids get a `#<pass>` suffix after the first pass, so every row is unique), and
/// returns once the broker has acknowledged them all.
pub async fn replay(
    file: &Path,
    target: &Target,
    features: &[String],
    rate: Option<f64>,
    passes: Option<u64>,
) -> Result<ReplaySummary, ReplayError> {
    let client_id = format!("faultline-replay-{}", std::process::id());
    let mut options = MqttOptions::new(client_id, &target.host, target.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 24, 1 << 24)
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let (acked_tx, acked) = tokio::sync::watch::channel(0u64);
    let poller = tokio::spawn(async move {
        let mut count = 0u64;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    count += 1;
                    acked_tx.send_replace(count);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    let schema = Schema::new(features);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut pass = 0u64;
    loop {
        let input = std::fs::File::open(file)
            .map_err(|e| ReplayError::Open(file.display().to_string(), e))?;
        let mut rows = CsvRows::new(
            input,
            &schema,
            CsvOptions {
                allow_extra_columns: true,
                batch_rows: 1024,
            },
        )?;
        while let Some(batch) = rows.next_batch()? {
            for i in 0..batch.len() {
                let id = if pass == 0 {
                    batch.ids[i].clone()
                } else {
                    format!("{}#{pass}", batch.ids[i])
                };
                let payload = encode_row(&id, batch.row(i), features);
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs_f64(sent as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                if poller.is_finished() {
                    break;
                }
                client
                    .publish(&target.topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .map_err(|e| ReplayError::Broker(e.to_string()))?;
                sent += 1;
            }
        }
        pass += 1;
        if passes.is_some_and(|p| pass >= p) || poller.is_finished() {
            break;
        }
    }
    let mut acked = acked;
    let done = tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|a| *a >= sent))
        .await
        .map(|r| r.is_ok());
    let seconds = start.elapsed().as_secs_f64();
    if poller.is_finished() {
        let result = poller
            .await
            .map_err(|e| ReplayError::Broker(e.to_string()))?;
        result.map_err(ReplayError::Broker)?;
    }
    if done != Ok(true) {
        return Err(ReplayError::Broker(format!(
            "the broker acknowledged only {} of {sent} rows",
            *acked.borrow()
        )));
    }
    let _ = client.disconnect().await;
    Ok(ReplaySummary {
        rows: sent,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_or_say_how_to_write_them() {
        assert_eq!(
            parse_target("mqtt://127.0.0.1:1883/faultline/rows").unwrap(),
            Target {
                host: "127.0.0.1".into(),
                port: 1883,
                topic: "faultline/rows".into()
            }
        );
        assert!(parse_target("mqtt://h:1")
            .unwrap_err()
            .to_string()
            .contains("names no topic"));
        assert!(parse_target("kafka://h:9092/t")
            .unwrap_err()
            .to_string()
            .contains("Kafka"));
        assert!(parse_target("http://h/t")
            .unwrap_err()
            .to_string()
            .contains("mqtt://HOST:PORT/TOPIC"));
        assert!(parse_target("mqtt://h:1/a/#")
            .unwrap_err()
            .to_string()
            .contains("cannot contain"));
    }
}
