//! Helpers shared by the examples (each example uses some of them).
#![allow(dead_code)]

use faultline::model::{synthetic, Model};
use faultline::row::csv::{CsvOptions, CsvRows};
use faultline::row::{RowBatch, Schema};

/// The value after `name` on the command line.
pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `--rows-per-message K` (at least 1; 1 when not given).
pub fn rows_per_message(args: &[String]) -> anyhow::Result<usize> {
    let k: usize = arg(args, "--rows-per-message")
        .unwrap_or("1".into())
        .parse()?;
    anyhow::ensure!(k >= 1, "--rows-per-message must be at least 1");
    Ok(k)
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The wafers in the CSV at `path`, or 2,000 synthetic ones drawn from the model card.
pub fn wafer_rows(path: Option<String>, model: &Model) -> anyhow::Result<RowBatch> {
    Ok(match path {
        Some(path) => CsvRows::new(
            std::fs::File::open(path)?,
            &Schema::new(model.features()),
            CsvOptions {
                allow_extra_columns: true,
                batch_rows: 4096,
            },
        )?
        .read_all()?,
        None => synthetic::rows(model.card(), 2000, 3),
    })
}

/// (peak RSS in MB, user+system CPU seconds) of process `pid`, from /proc.
pub fn usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, r)| r.split_whitespace().collect());
    // utime and stime are fields 14 and 15 (1-based); after the ')' they are 12 and 13 (1-based).
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|x| x.parse::<f64>().ok()).sum()
    });
    (rss, ticks / 100.0)
}

/// The whole machine's CPU time since boot from /proc/stat: (busy, idle) in seconds (all cores).
pub fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    let busy: f64 = ticks.iter().take(8).sum::<f64>() - idle;
    (busy / 100.0, idle / 100.0)
}

/// Where the machine's CPU went during a run: each named process's CPU-seconds between two
/// snapshots of [`usage`], the rest of the machine, and idle, with each share of the total.
pub struct CpuBudget {
    pids: Vec<(String, u32, f64)>,
    machine: (f64, f64),
}

impl CpuBudget {
    /// Snapshots `pids` (name, pid) and the machine now.
    pub fn start(pids: Vec<(String, u32)>) -> CpuBudget {
        CpuBudget {
            pids: pids
                .into_iter()
                .map(|(name, pid)| {
                    let cpu = usage(pid).1;
                    (name, pid, cpu)
                })
                .collect(),
            machine: machine_cpu(),
        }
    }

    /// One line: each process's CPU-seconds since [`CpuBudget::start`] and its share.
    pub fn report(&self) -> String {
        let (busy, idle) = machine_cpu();
        let (busy, idle) = (busy - self.machine.0, idle - self.machine.1);
        let total = (busy + idle).max(1e-9);
        let mut named = 0.0;
        let mut parts = Vec::new();
        for (name, pid, before) in &self.pids {
            let cpu = usage(*pid).1 - before;
            named += cpu;
            parts.push(format!("{name} {cpu:.2} ({:.0}%)", 100.0 * cpu / total));
        }
        let rest = (busy - named).max(0.0);
        parts.push(format!(
            "rest of the machine {rest:.2} ({:.0}%)",
            100.0 * rest / total
        ));
        parts.push(format!("idle {idle:.2} ({:.0}%)", 100.0 * idle / total));
        format!(
            "CPU-seconds during the run ({total:.2} on all cores): {}",
            parts.join(", ")
        )
    }
}

/// Starts `bin serve` as its own process with `env` and waits until its /readyz (on `web`)
/// answers 200.
pub fn spawn_daemon(
    bin: &str,
    env: &[(String, String)],
    web: u16,
) -> anyhow::Result<std::process::Child> {
    let mut daemon = start_daemon(bin, env, web)?;
    let ready = std::time::Instant::now();
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", web)).is_ok_and(|mut s| {
            use std::io::{Read, Write};
            let _ = s
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out.contains("200 OK")
        });
        if up {
            return Ok(daemon);
        }
        if ready.elapsed() > std::time::Duration::from_secs(30) {
            let _ = daemon.kill();
            anyhow::bail!("{bin} serve was not ready within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Starts `bin serve` as its own process with `env`, its web server on `web`, without waiting.
pub fn start_daemon(
    bin: &str,
    env: &[(String, String)],
    web: u16,
) -> anyhow::Result<std::process::Child> {
    std::process::Command::new(bin)
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("FAULTLINE_WEB__LISTEN", format!("127.0.0.1:{web}"))
        .env("RUST_LOG", "warn")
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {bin}: {e}"))
}

/// The daemon's /metrics text, from its web port (2 s timeouts).
pub fn metrics_text(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = std::time::Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// A counter of the daemon's (`name`, without labels), from its /metrics on `port`.
pub fn daemon_counter(port: u16, name: &str) -> Option<u64> {
    metrics_text(port)?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Reads the daemon's `faultline_rows_scored_total` every 20 ms until it reaches `n`, for at most
/// 300 s (saying so when it does not): when it did, and the last count read.
pub async fn wait_scored(web: u16, n: usize) -> (Option<std::time::Instant>, u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut count = 0;
    while std::time::Instant::now() < deadline {
        count = daemon_counter(web, faultline::metrics::ROWS_SCORED).unwrap_or(count);
        if count >= n as u64 {
            return (Some(std::time::Instant::now()), count);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!("NOT FINISHED: the daemon scored {count} of {n} rows in 300 s");
    (None, count)
}
