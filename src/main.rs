//! The `faultline` command: parses the command line, loads configuration and calls the library.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use faultline::config::RawConfig;
use faultline::model::Model;
use faultline::row::csv::CsvOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flags faulty semiconductor wafers from their sensor readings.
#[derive(Debug, Parser)]
#[command(name = "faultline")]
struct Cli {
    /// Configuration file (TOML) layered over the built-in defaults; FAULTLINE_<SECTION>__<KEY>
    /// environment variables override both.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score a wafer CSV: writes id, probability, fault, threshold, rule, base, contributions,
    /// unusual_sensors, model_version (+ Good/Bad if present).
    Score {
        /// Input CSV in the wafer schema; `-` reads standard input.
        #[arg(long, short, value_name = "FILE")]
        input: PathBuf,
        /// Output CSV; `-` writes standard output. A file is written whole or not at all.
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
        /// Model directory (model.onnx + model.json + golden.csv); default: [model] dir, else the embedded model.
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Decision threshold on P(fault), overriding the model card's.
        #[arg(long, value_name = "P")]
        threshold: Option<f32>,
        /// Flag the top share of wafers instead ([model] alarm_rate), over a window rolling through
        /// the file in its order ([model] alarm_window_rows, alarm_warmup_rows).
        #[arg(long, value_name = "SHARE")]
        alarm_rate: Option<f64>,
    },
    /// Run the daemon: read rows from the bus, score them in micro-batches, publish faults.
    ///
    /// With no configuration it starts an embedded MQTT broker on 127.0.0.1:1883, reads JSON rows
    /// from faultline/rows and publishes faults to faultline/faults.
    Serve,
    /// Publish a wafer CSV to the bus, one JSON row per message (demo and load generator).
    Replay {
        /// Wafer CSV to publish.
        file: PathBuf,
        /// Where: mqtt://HOST:PORT/TOPIC, or kafka://HOST:PORT/TOPIC (builds with the kafka feature;
        /// rows are keyed by id), over a plain connection without a login. Default: the rows
        /// topic `serve` reads, as configured (its broker, login, TLS and Kafka properties).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// Rows per second (default: as fast as the broker takes them).
        #[arg(long, value_name = "ROWS_PER_S")]
        rate: Option<f64>,
        /// Publish the file again and again (ids get a #N suffix per pass) until interrupted.
        #[arg(long = "loop")]
        repeat: bool,
        /// Number of passes over the file (default 1; --loop: unlimited).
        #[arg(long, value_name = "N", conflicts_with = "repeat")]
        passes: Option<u64>,
    },
    /// Write the rows the daemon stored ([store] dir) as a wafer CSV for training: the sensors,
    /// Good/Bad from the labels that arrived, and Time (when the wafer was scored).
    Export {
        /// Only wafers that have a label (what training needs).
        #[arg(long)]
        labelled: bool,
        /// Only wafers scored at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Output CSV; `-` writes standard output. A file is written whole or not at all.
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
        /// Store directory; default: [store] dir.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Print the model card: version, threshold, validation metrics.
    Model {
        /// Model directory; default: [model] dir, else the embedded model.
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Print the whole card as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // Loading the embedded model (compiling its graph, checking its hash) costs as much CPU as
    // reading a few thousand rows: only `--version` pays for it here, not every command.
    // args_os: args() panics at an argument that is not UTF-8 (a Latin-1 file name), which
    // clap and the file system take as they are.
    let asked = std::env::args_os()
        .skip(1)
        .any(|a| a == "--version" || a == "-V");
    let version = if asked {
        format!(
            "{} (embedded model {})",
            env!("CARGO_PKG_VERSION"),
            Model::embedded()
                .map(|m| m.version().to_string())
                .unwrap_or_else(|e| format!("unavailable: {e}"))
        )
    } else {
        env!("CARGO_PKG_VERSION").to_string()
    };
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("faultline: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes the message already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let raw = RawConfig::load(cli.config.as_deref())?;
    let config = match cli.command {
        Command::Serve => raw.validate()?,
        // Replayed to the configured bus: with its login, TLS and Kafka properties.
        Command::Replay { to: None, .. } => raw.without_web_token().validate()?,
        _ => raw.offline().validate()?,
    };
    let load_model = |dir: Option<PathBuf>,
                      threshold: Option<f32>,
                      scoring: bool|
     -> anyhow::Result<Model> {
        let mut policy = config.policy();
        // `[model] threshold` is a number for [model] dir's model: another model's scores sit on
        // another scale (as the daemon treats its shadow), so `--model OTHER` decides at its own
        // card's threshold unless --threshold says otherwise.
        // Compared as the directories they name (`./x`, `x/`, an absolute path, a link).
        let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        let other = match (&dir, &config.model_dir) {
            (Some(d), Some(m)) => !same(d, m),
            (Some(_), None) => true,
            (None, _) => false,
        };
        // Said only when it changes the threshold in force (not under --threshold); `faultline
        // model` has no --threshold to suggest.
        if other && policy.threshold.is_some() && threshold.is_none() {
            eprintln!("Note: [model] threshold is for [model] dir's model; --model's model decides at its own card's threshold{}.", if scoring { " (give --threshold to set one)" } else { "" });
        }
        if other {
            policy = policy.for_other_model();
        }
        let dir = dir.or(config.model_dir.clone());
        let model = Model::load(dir.as_deref())?.with_policy(&policy);
        Ok(match threshold {
            Some(t) if t > 0.0 && t < 1.0 => model.with_threshold(t),
            Some(t) => anyhow::bail!("--threshold {t} is not between 0 and 1"),
            None => model,
        })
    };
    match cli.command {
        Command::Serve => {
            init_logging();
            let model = std::sync::Arc::new(load_model(None, None, true)?);
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = config.workers {
                runtime.worker_threads(n.get());
            }
            let runtime = runtime.enable_all().build()?;
            let result =
                runtime.block_on(faultline::pipeline::run(config, model, shutdown_signal()));
            // A close given up at the end of the grace period can still hold a blocking thread
            // (a Kafka client waiting for a cluster that is gone); dropping the runtime would
            // wait for it without end.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            file,
            to,
            rate,
            repeat,
            passes,
        } => {
            if rate.is_some_and(|r| !(r >= faultline::replay::MIN_RATE && r.is_finite())) {
                anyhow::bail!(
                    "--rate must be a number of rows per second from {} up",
                    faultline::replay::MIN_RATE
                );
            }
            let passes = match passes.map(std::num::NonZeroU64::new) {
                Some(None) => {
                    anyhow::bail!("--passes must be at least 1 (or leave it out with --loop)")
                }
                Some(p) => p,
                None if repeat => None,
                None => Some(std::num::NonZeroU64::MIN),
            };
            let target = match &to {
                Some(to) => {
                    faultline::replay::Destination::Address(faultline::replay::parse_target(to)?)
                }
                None => faultline::replay::Destination::configured(config.bus.clone())?,
            };
            let model = load_model(None, None, true)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let s = runtime.block_on(async {
                // The stop signal (how `--loop` ends) stops the publishing; the rows in flight
                // are still waited for, and counted.
                let (stop, stopped) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    shutdown_signal().await;
                    let _ = stop.send(true);
                });
                faultline::replay::replay(&file, &target, model.features(), rate, passes, stopped)
                    .await
            })?;
            let rate = s.rows as f64 / s.seconds.max(1e-9);
            if s.interrupted {
                eprintln!(
                    "Interrupted: published {} rows to {} in {:.2} s ({rate:.0} rows/s); the broker acknowledged {} of them{}.",
                    s.rows,
                    target,
                    s.seconds,
                    s.acked,
                    if s.acked < s.rows {
                        format!(" within {} s", faultline::replay::INTERRUPTED_ACK_WAIT.as_secs())
                    } else {
                        String::new()
                    }
                );
            } else {
                eprintln!(
                    "Published {} rows to {} in {:.2} s ({rate:.0} rows/s).",
                    s.rows, target, s.seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Score {
            input,
            output,
            model,
            threshold,
            alarm_rate,
        } => {
            let mut model = load_model(model, threshold, true)?;
            if let Some(rate) = alarm_rate {
                if !(rate > 0.0 && rate < 1.0) {
                    anyhow::bail!("--alarm-rate {rate} is not between 0 and 1 (exclusive)");
                }
                let (window_rows, warmup_rows) = config.alarm_rows;
                // The window is a setting, not a flag: say how to set it from here.
                let budget = faultline::model::Budget::new(rate, window_rows, warmup_rows)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "--alarm-rate {rate}: {e} (the window is [model] alarm_window_rows in the configuration, or FAULTLINE_MODEL__ALARM_WINDOW_ROWS)"
                        )
                    })?;
                model = model.with_budget(Some(budget));
            }
            // A budget from the configuration or the command line.
            if let Some(w) = model.budget().and_then(|b| b.short_warmup()) {
                eprintln!("Warning: {w}.");
            }
            let options = CsvOptions {
                allow_extra_columns: config.allow_extra_columns,
                batch_rows: config.csv_batch_rows.get(),
            };
            let summary = score_file(&model, &input, &output, options)?;
            let rule = match model.budget() {
                // The budget decides from the wafer that fills the warm-up on (decide.rs).
                Some(b) => match b.warmup_rows.saturating_sub(1) {
                    0 => format!(
                        "alarm budget: the top {} of the last {} wafers, from the first",
                        b.rate, b.window_rows
                    ),
                    before => format!(
                        "alarm budget: the top {} of the last {} wafers, threshold {} for the first {before}",
                        b.rate,
                        b.window_rows,
                        model.threshold(),
                    ),
                },
                None => format!("threshold {}", model.threshold()),
            };
            eprintln!(
                "Scored {} rows: {} flagged as faulty ({rule}, model {}).",
                summary.rows,
                summary.faults,
                model.version()
            );
            if let Some(q) = &summary.checks.evaluation {
                let mut said = faultline::score::describe_evaluation(q);
                if model.budget().is_some() {
                    // The flags above are the budget's; these figures are not about them.
                    said.push_str(" These are the model's threshold's figures, not the alarm budget's flags (the output's fault column).");
                }
                eprintln!("{said}");
            }
            if let Some(w) = &summary.checks.warning {
                eprintln!("Warning: {w}.");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export {
            labelled,
            since,
            output,
            store,
        } => {
            let Some(dir) = store.or(config.store.dir.clone()) else {
                anyhow::bail!("no store to export: set [store] dir (FAULTLINE_STORE__DIR) or pass --store DIR");
            };
            let since_ms = since
                .map(|t| {
                    chrono::DateTime::parse_from_rfc3339(t.trim())
                        .map(|d| d.timestamp_millis())
                        .with_context(|| format!("--since {t:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z"))
                })
                .transpose()?;
            let options = faultline::store::export::ExportOptions {
                labelled_only: labelled,
                since_ms,
            };
            let summary = write_atomically(&output, |out| {
                faultline::store::export::export(&dir, &options, out).map_err(anyhow::Error::msg)
            })?;
            eprintln!(
                "Exported {} rows ({} labelled, {} faulty) from {} store files in {}.",
                summary.rows,
                summary.labelled,
                summary.faulty,
                summary.segments,
                dir.display()
            );
            if summary.cut_short > 0 {
                eprintln!("{} store files ended early (a running daemon is writing them, or one was killed while writing them); their whole batches were exported.", summary.cut_short);
            }
            for why in &summary.unreadable {
                eprintln!("Left out a store file that cannot be read: {why}.");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Model { model, json } => {
            let model = load_model(model, None, false)?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, model.card())?;
                writeln!(out)?;
            } else {
                print_card(&model, &mut out)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level (info; the embedded broker's own log, which reports every client disconnect as an error, is off).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off,rumqttc=warn"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Scores `input` into `output`; a file output appears only when the whole input scored.
fn score_file(
    model: &Model,
    input: &Path,
    output: &Path,
    options: CsvOptions,
) -> anyhow::Result<faultline::score::ScoreSummary> {
    let reader: Box<dyn std::io::Read> = if input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(input)
                .with_context(|| format!("cannot open {}", input.display()))?,
        )
    };
    write_atomically(output, |out| {
        faultline::score::score_csv(model, reader, out, options).with_context(|| {
            if input == Path::new("-") {
                "standard input was not scored".to_string()
            } else {
                format!("{} was not scored", input.display())
            }
        })
    })
}

/// Runs `write` into `output` (`-`: standard output). A file appears only when `write`
/// succeeded: it is written to a temporary file beside it, then renamed. A device or pipe (say
/// /dev/null) is written in place, never replaced; a symbolic link is written through (its target
/// is replaced, the link stays); an existing file keeps its permissions and, where this user may
/// give it, its owner.
fn write_atomically<T>(
    output: &Path,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if output == Path::new("-") {
        let mut out = BufWriter::new(std::io::stdout().lock());
        let result = write(&mut out)?;
        out.flush()?;
        return Ok(result);
    }
    // A descriptor the shell handed over (/dev/stdout, /dev/fd/N, /proc/self/fd/N), or anything
    // that is not a regular file once the kernel has followed its links (/dev/null, a FIFO, a
    // terminal, a pipe or socket behind /dev/stdout): written in place. Renaming a temporary file
    // over it would replace the device or pipe itself (as root, /dev/null became a regular file
    // that every later `2>/dev/null` wrote into), or drop what `>>` appended to; and the links
    // behind /dev/stdout name no file when it is a pipe ("pipe:[N]").
    // Compared as paths, so /dev/./stdout is one and /dev/stdout.csv is not.
    let descriptor = output == Path::new("/dev/stdout")
        || output == Path::new("/dev/stderr")
        || output
            .parent()
            .is_some_and(|d| d == Path::new("/dev/fd") || d == Path::new("/proc/self/fd"));
    let resolved = if descriptor || std::fs::metadata(output).is_ok_and(|m| !m.is_file()) {
        output.to_path_buf()
    } else {
        through_links(output)?
    };
    let output = resolved.as_path();
    if descriptor || std::fs::metadata(output).is_ok_and(|m| !m.is_file()) {
        // Opening /dev/stdout anew starts at the file's beginning; appending keeps what the
        // shell's `>>` kept (and after `>` the file is empty anyway).
        let file = std::fs::OpenOptions::new()
            .write(true)
            .append(descriptor)
            .open(output)
            .with_context(|| format!("cannot write {}", output.display()))?;
        let mut out = BufWriter::new(file);
        let result = write(&mut out)?;
        out.flush()
            .with_context(|| format!("cannot write {}", output.display()))?;
        return Ok(result);
    }
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The file gets the permissions `File::create` would give it: an existing file's own, else
    // the usual ones less the umask (a temporary file alone is readable by its owner only).
    let mut builder = tempfile::Builder::new();
    // Named for what left it, should anything (a power cut) leave it behind.
    builder.prefix(".faultline-");
    let metadata = std::fs::metadata(output).ok();
    let existing = metadata.as_ref().map(|m| m.permissions());
    // A file made read-only is not replaced (`File::create` refuses it, but for root; a rename
    // would replace it for anyone who may write the folder).
    if existing.as_ref().is_some_and(|p| p.readonly()) {
        anyhow::bail!(
            "{} is read-only: faultline does not replace it (make it writable, or name another output)",
            output.display()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let stop = StopSignals::register();
    let tmp = builder
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "cannot create a file in {} (the output is written beside its name and renamed into place, so the folder must be writable)",
                dir.display()
            )
        })?;
    // The owner and group `File::create` would have kept (say, root scoring into an operator's
    // file); a user who may not give them leaves the file its own, or gives the group alone
    // (one of its own groups). Before the permissions: a change of owner clears setuid/setgid.
    #[cfg(unix)]
    if let Some(m) = &metadata {
        use std::os::unix::fs::MetadataExt;
        let file = tmp.as_file();
        if std::os::unix::fs::fchown(file, Some(m.uid()), Some(m.gid())).is_err() {
            let _ = std::os::unix::fs::fchown(file, None, Some(m.gid()));
        }
    }
    if let Some(permissions) = existing {
        tmp.as_file()
            .set_permissions(permissions)
            .with_context(|| format!("cannot write {}", output.display()))?;
    }
    let interrupted = stop.remove_on_stop(tmp.path(), output);
    let mut out = BufWriter::new(tmp.as_file());
    let result = write(&mut out)?;
    out.flush()
        .with_context(|| format!("cannot write {}", output.display()))?;
    drop(out);
    // Renamed under the lock: a stop signal either removes the temporary file first, or finds
    // the output in place.
    let mut written = interrupted.lock().unwrap_or_else(|e| e.into_inner());
    tmp.persist(output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    *written = true;
    Ok(result)
}

/// SIGINT and SIGTERM, caught from when they are registered (before the temporary file exists,
/// so a signal never finds it unwatched) until the process ends.
struct StopSignals {
    #[cfg(unix)]
    caught: Option<(
        tokio::runtime::Runtime,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
}

impl StopSignals {
    /// Registers the two; where that fails, a stop kills the process as it would anyway.
    fn register() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let caught = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .ok()
                .and_then(|runtime| {
                    let (int, term) = runtime.block_on(async {
                        (
                            signal(SignalKind::interrupt()),
                            signal(SignalKind::terminate()),
                        )
                    });
                    Some((runtime, int.ok()?, term.ok()?))
                });
            StopSignals { caught }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// On a stop, removes `tmp` and ends the process as the signal would have (status 130 for
    /// SIGINT, 143 for SIGTERM, as a shell reports them), saying `output` was not written;
    /// killed by the signal, the process would leave the hidden file beside the output. Returns
    /// the lock the rename into place holds and sets once the output is in place: a stop removes
    /// the file first, or finds the output written and lets the process finish as it would.
    fn remove_on_stop(self, tmp: &Path, output: &Path) -> std::sync::Arc<std::sync::Mutex<bool>> {
        let lock = std::sync::Arc::new(std::sync::Mutex::new(false));
        #[cfg(unix)]
        if let Some((runtime, mut int, mut term)) = self.caught {
            let (tmp, output, held) = (tmp.to_path_buf(), output.to_path_buf(), lock.clone());
            std::thread::spawn(move || {
                let status = runtime.block_on(async {
                    tokio::select! {
                        _ = int.recv() => 130,
                        _ = term.recv() => 143,
                    }
                });
                let written = held.lock().unwrap_or_else(|e| e.into_inner());
                if *written {
                    return;
                }
                if std::fs::remove_file(&tmp).is_ok() {
                    eprintln!("Interrupted: {} was not written.", output.display());
                }
                std::process::exit(status);
            });
        }
        #[cfg(not(unix))]
        let _ = (self, tmp, output);
        lock
    }
}

/// `path` with its symbolic links followed to the file they name (which need not exist, as
/// `File::create` creates a link's missing target); `path` itself when it is not a link.
fn through_links(path: &Path) -> anyhow::Result<PathBuf> {
    let mut path = path.to_path_buf();
    // Linux's own limit on links followed in one lookup.
    for _ in 0..40 {
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            return Ok(path);
        }
        let target = std::fs::read_link(&path)
            .with_context(|| format!("cannot read the link {}", path.display()))?;
        path = match path.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    anyhow::bail!(
        "cannot write {}: too many levels of symbolic links",
        path.display()
    )
}

fn print_card(model: &Model, out: &mut impl Write) -> std::io::Result<()> {
    let card = model.card();
    writeln!(out, "model      {} ({})", card.version, card.name)?;
    writeln!(out, "from       {}", model.origin())?;
    writeln!(out, "created    {}", card.created_at)?;
    writeln!(
        out,
        "features   {} ({}..{})",
        card.input.width,
        card.input.features[0],
        card.input.features[card.input.width - 1]
    )?;
    writeln!(out, "scored by  {}", model.scorer())?;
    writeln!(out, "trees      {}", model.tree_count())?;
    match model.explainable() {
        Ok(()) => writeln!(
            out,
            "explains   faults, with exact TreeSHAP contributions from the trees' node cover"
        )?,
        Err(why) => writeln!(out, "explains   nothing: {why}")?,
    }
    writeln!(out, "positive   {}", card.positive_class)?;
    if let Some(note) = card.flag_share_note() {
        writeln!(out, "flag share {note}")?;
    }
    writeln!(
        out,
        "threshold  {} — {}",
        card.threshold, card.threshold_rule
    )?;
    if model.threshold() != card.threshold {
        writeln!(
            out,
            "in force   {} ([model] threshold; the figures below are at the card's {})",
            model.threshold(),
            card.threshold
        )?;
    }
    if let Some(scheme) = card.validation.get("scheme").and_then(|v| v.as_str()) {
        writeln!(out, "validation {scheme}")?;
    }
    for (key, label) in [
        ("rows", "rows"),
        ("faults", "faulty rows"),
        ("roc_auc", "ROC-AUC"),
        ("pr_auc", "PR-AUC"),
        ("balanced_accuracy", "balanced accuracy"),
        ("recall", "recall at threshold"),
        ("false_alarm_rate", "false alarms at threshold"),
    ] {
        if let Some(v) = card.validation.get(key) {
            // With its bootstrap 95% interval when the card has one: 41 faults make them wide.
            match card.validation.get(format!("{key}_ci95")) {
                Some(ci) => writeln!(out, "  {label:<26} {v} (95% interval {ci})")?,
                None => writeln!(out, "  {label:<26} {v}")?,
            }
        }
    }
    Ok(())
}
