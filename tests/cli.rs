//! `faultline score` and `faultline model`, run as a user runs them: the real binary, real files.

mod common;

use common::{data_dir, faultline};
use faultline::model::{synthetic, Model};
use std::path::Path;

fn write_sample(dir: &Path, rows: usize) -> std::path::PathBuf {
    let model = Model::embedded().unwrap();
    let batch = synthetic::rows(model.card(), rows, 11);
    let path = dir.join("sample.csv");
    synthetic::write_csv(
        &batch,
        model.features(),
        std::fs::File::create(&path).unwrap(),
    )
    .unwrap();
    path
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn score_writes_one_verdict_per_row_matching_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_sample(dir.path(), 300);
    let output = dir.path().join("out.csv");
    let o = score_files(&input, &output);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("Scored 300 rows"), "{}", stderr(&o));

    let model = Model::embedded().unwrap();
    let batch = synthetic::rows(model.card(), 300, 11);
    let expected = model.score(&batch);
    let mut reader = csv::Reader::from_path(&output).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "id",
            "probability",
            "fault",
            "threshold",
            "rule",
            "base",
            "contributions",
            "unusual_sensors",
            "model_version"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 300);
    for (rec, v) in records.iter().zip(&expected) {
        assert_eq!(&rec[0], v.id);
        let p: f32 = rec[1].parse().unwrap();
        // Written with f32's shortest round-trip form: exactly the library's value.
        assert_eq!(p, v.probability);
        assert_eq!(&rec[2], if v.fault { "true" } else { "false" });
        assert_eq!(rec[3].parse::<f32>().unwrap(), model.threshold());
        assert_eq!(&rec[4], "threshold");
        assert_eq!(&rec[8], model.version());
        // Faults carry the model's own contributions (five, in log-odds); other rows none.
        let listed = rec[6].split("; ").filter(|s| !s.is_empty()).count();
        assert_eq!(
            listed,
            v.explanation.as_ref().map_or(0, |e| e.contributions.len())
        );
        assert_eq!(rec[5].is_empty(), v.explanation.is_none());
        assert_eq!(rec[7].matches("(z=").count(), v.unusual_sensors.len());
    }
}

#[test]
fn stdin_and_stdout_work_with_dash() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_sample(dir.path(), 5);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["score", "--input", "-", "--output", "-"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 6);
}

/// The offline commands run where the daemon's secret files cannot be read (an operator's shell
/// with the daemon's environment); `serve` still refuses to start without them.
#[test]
fn offline_commands_do_not_read_the_daemons_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_sample(dir.path(), 5);
    let mut secrets = [
        ("FAULTLINE_WEB__TOKEN_FILE", "/nonexistent/token"),
        ("FAULTLINE_SOURCE__MQTT__USERNAME", "plant"),
        (
            "FAULTLINE_SOURCE__MQTT__PASSWORD_FILE",
            "/nonexistent/password",
        ),
    ]
    .to_vec();
    if cfg!(feature = "kafka") {
        // On Kafka, a property kept in a file; underscores read as dots (sasl.password.file).
        secrets.extend([
            ("FAULTLINE_SOURCE__KIND", "kafka"),
            (
                "FAULTLINE_SOURCE__KAFKA__PROPERTIES__SASL_PASSWORD_FILE",
                "/nonexistent/kafka",
            ),
        ]);
    }
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(args)
            .envs(secrets.iter().copied())
            .env("FAULTLINE_WEB__LISTEN", "127.0.0.1:0")
            .output()
            .unwrap()
    };
    let o = run(&["score", "-i", input.to_str().unwrap(), "-o", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 6);
    let o = run(&["model"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["serve"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot read it"), "{}", stderr(&o));
}

#[test]
fn bad_input_exits_non_zero_with_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    let model = Model::embedded().unwrap();
    let mut text = String::from(",");
    text.push_str(&model.features().join(","));
    text.push('\n');
    let mut cells = vec!["1.0"; model.width()];
    cells[41] = "oops";
    text.push_str(&format!("Wafer-9,{}\n", cells.join(",")));
    std::fs::write(&input, text).unwrap();
    let output = dir.path().join("out.csv");
    let o = score_files(&input, &output);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("line 2 (Wafer-9), column Sensor-42: 'oops' is not a number"),
        "{err}"
    );
    assert!(
        !output.exists(),
        "a failed run must not leave a partial output"
    );
}

#[test]
fn threshold_override_changes_verdicts_and_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_sample(dir.path(), 50);
    let o = score_stdout(&input, &["--threshold", "0.000001"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        text.lines()
            .skip(1)
            .filter(|l| l.contains(",true,"))
            .count(),
        50
    );
    let o = score_stdout(&input, &["--threshold", "2"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not between 0 and 1"), "{}", stderr(&o));
    // A share below one wafer of the window says how to widen the window, which has no flag.
    let o = score_stdout(&input, &["--alarm-rate", "0.001"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("less than one wafer") && e.contains("FAULTLINE_MODEL__ALARM_WINDOW_ROWS"),
        "{e}"
    );
}

#[test]
fn model_and_version_name_the_model() {
    let model = Model::embedded().unwrap();
    let o = faultline(&["model"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains(model.version()), "{text}");
    assert!(text.contains("ROC-AUC"), "{text}");
    // Each figure with its interval, at the card's threshold.
    assert!(
        text.contains(&format!("threshold  {} —", model.threshold())),
        "{text}"
    );
    assert!(text.contains("(95% interval ["), "{text}");
    assert!(!text.contains("in force"), "{text}");
    // The fixed threshold's flag share over the validation windows, and the budget's figures,
    // from the card.
    let v = &model.card().validation;
    let shares: Vec<f64> = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["threshold_flagged"].as_f64().unwrap() * 100.0)
        .collect();
    let (low, high) = (
        shares.iter().copied().fold(f64::INFINITY, f64::min),
        shares.iter().copied().fold(0.0, f64::max),
    );
    let b = &v["alarm_budget"];
    assert!(
        text.contains(&format!(
            "flag share in the card's time-ordered validation the fixed threshold flagged from {low:.0}% to {high:.0}% of a window's wafers; an alarm budget of {} over {} wafers caught {} of {} faults",
            b["rate"], b["window_rows"], b["true_positives"], b["faults"]
        )),
        "{text}"
    );
    // And what the shipped model itself flags there at the threshold, from the later windows.
    let windows = v["windows"].as_array().unwrap();
    let late = &windows[windows.len() / 2..];
    let sum = |k: &str| late.iter().map(|w| w[k].as_u64().unwrap()).sum::<u64>();
    let flagged = late
        .iter()
        .map(|w| w["shipped_threshold_flagged"].as_f64().unwrap() * w["rows"].as_f64().unwrap())
        .sum::<f64>();
    assert!(
        text.contains(&format!(
            "the shipped model itself, at the card's threshold, flagged {:.0} of the later windows' {} wafers and caught {} of their {} faults",
            flagged,
            sum("rows"),
            sum("shipped_threshold_caught"),
            sum("faults")
        )),
        "{text}"
    );
    // A threshold set in the configuration is said apart from the card's figures.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("model")
        .env("FAULTLINE_MODEL__THRESHOLD", "0.3")
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains(&format!("threshold  {} —", model.threshold()))
            && text
                .contains("in force   0.3 ([model] threshold; the figures below are at the card's"),
        "{text}"
    );
    // Another model (--model) decides at its own card's threshold: [model] threshold is a number
    // for [model] dir's model, on its scale (it used to apply to any model given).
    let other = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "model.json", "golden.csv"] {
        std::fs::copy(
            common::repo().join("models/wafer-fault").join(f),
            other.path().join(f),
        )
        .unwrap();
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["model", "--model", other.path().to_str().unwrap()])
        .env("FAULTLINE_MODEL__THRESHOLD", "0.3")
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(!text.contains("in force   0.3"), "{text}");
    let note = String::from_utf8_lossy(&o.stderr);
    assert!(
        note.contains("--model's model decides at its own card's threshold.")
            && !note.contains("--threshold"),
        "{note}"
    );
    // With --threshold given there is nothing to note: that threshold decides.
    let csv = common::repo().join("examples/wafers.csv");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["score", "--output", "-", "--threshold", "0.2", "--input"])
        .arg(&csv)
        .arg("--model")
        .arg(other.path())
        .env("FAULTLINE_MODEL__THRESHOLD", "0.3")
        .output()
        .unwrap();
    let note = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !note.contains("Note: [model] threshold"),
        "{note}"
    );
    // [model] dir itself, spelt another way, keeps [model] threshold.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["model", "--model"])
        .arg(
            other
                .path()
                .join("..")
                .join(other.path().file_name().unwrap()),
        )
        .env("FAULTLINE_MODEL__DIR", other.path())
        .env("FAULTLINE_MODEL__THRESHOLD", "0.3")
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("in force   0.3"), "{text}");
    let o = faultline(&["--version"]);
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .contains(model.version()));
    let o = faultline(&["model", "--json"]);
    let card: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(card["version"], model.version());
}

/// A file holding wafers the model was trained on is warned about, counting them from the ids
/// its card lists; a file of other wafers is not.
#[test]
fn scoring_wafers_the_model_was_trained_on_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::repo().join("models/wafer-fault");
    for f in ["model.onnx", "golden.csv"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("model.json")).unwrap()).unwrap();
    card["training"]["ids"] = serde_json::json!(["Synthetic-1", "Synthetic-7", "Elsewhere-1"]);
    std::fs::write(dir.path().join("model.json"), card.to_string()).unwrap();
    let input = common::repo().join("examples/wafers.csv");
    let score = |model: Option<&std::path::Path>| {
        let mut args = vec!["score", "-i", input.to_str().unwrap(), "-o", "-"];
        if let Some(m) = model {
            args.extend(["--model", m.to_str().unwrap()]);
        }
        let o = faultline(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let said = score(Some(dir.path()));
    assert!(
        said.contains("Warning: 2 of this file's 50 wafers were in the model's training data"),
        "{said}"
    );
    // The shipped card lists the real training wafers, none of them synthetic.
    let said = score(None);
    assert!(!said.contains("training data"), "{said}");
}

#[test]
fn a_model_directory_that_does_not_match_its_card_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::repo().join("models/wafer-fault");
    std::fs::copy(src.join("model.onnx"), dir.path().join("model.onnx")).unwrap();
    let mut card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("model.json")).unwrap()).unwrap();
    card["onnx_sha256"] = "0".repeat(64).into();
    std::fs::write(dir.path().join("model.json"), card.to_string()).unwrap();
    let o = faultline(&["model", "--model", dir.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not the graph its card describes"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn real_wafer_file_scores_with_labels_carried_through() {
    let Some(data) = data_dir("real_wafer_file_scores_with_labels_carried_through") else {
        return;
    };
    let input = data.join("wafer/Training_Batch_Files/wafer_20012020_090819.csv");
    let o = score_stdout(&input, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut reader = csv::Reader::from_reader(o.stdout.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().next_back(),
        Some("Good/Bad")
    );
    let recs: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 100);
    assert_eq!(recs.iter().filter(|r| &r[9] == "1").count(), 17);
    // The file's own labels evaluate its verdicts, counted here from the output.
    let caught = recs
        .iter()
        .filter(|r| &r[9] == "1" && &r[2] == "true")
        .count();
    let false_alarms = recs
        .iter()
        .filter(|r| &r[9] == "-1" && &r[2] == "true")
        .count();
    let said = stderr(&o);
    assert!(
        said.contains("Against the file's Good/Bad labels (100 wafers, 17 faulty)")
            && said.contains(&format!("caught {caught} of 17 faulty wafers"))
            && said.contains(&format!("{false_alarms} false alarms among 83 good wafers")),
        "{said}"
    );
    assert!(!said.contains("alarm budget"), "{said}");
    // A batch file of the training wafers: said so, and 17 faults are few.
    assert!(
        said.contains("Warning: 100 of this file's 100 wafers were in the model's training data")
            && said.contains("With 17 faulty wafers these figures are rough."),
        "{said}"
    );
    // Under an alarm budget the figures are still the threshold's, and the sentence says so.
    let o = score_stdout(&input, &["--alarm-rate", "0.2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stderr(&o);
    assert!(
        said.contains(&format!("caught {caught} of 17 faulty wafers"))
            && said.contains("not the alarm budget's flags"),
        "{said}"
    );
}

/// A budget whose warm-up ends before its window holds 1/rate wafers flags more than its share
/// early on: `score` warns, naming the warm-up that avoids it, and its summary says which wafers
/// the threshold decided (the budget decides from the wafer that fills the warm-up on).
#[test]
fn a_warm_up_shorter_than_one_over_the_rate_is_warned_about() {
    let input = common::repo().join("examples/wafers.csv");
    let run = |warmup: Option<&str>| {
        let mut c = common::command();
        c.args([
            "score",
            "-i",
            input.to_str().unwrap(),
            "-o",
            "-",
            "--alarm-rate",
            "0.05",
        ]);
        if let Some(w) = warmup {
            c.env("FAULTLINE_MODEL__ALARM_WARMUP_ROWS", w);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let said = run(Some("5"));
    assert!(
        said.contains("Warning: model.alarm_warmup_rows is 5 at model.alarm_rate 0.05")
            && said.contains("set alarm_warmup_rows to at least 20"),
        "{said}"
    );
    assert!(
        said.contains("for the first 4,") || said.contains("for the first 4 "),
        "{said}"
    );
    // The default warm-up (100) is long enough at 0.05.
    let said = run(None);
    assert!(!said.contains("alarm_warmup_rows"), "{said}");
    assert!(said.contains("for the first 99,"), "{said}");
    assert!(run(Some("1")).contains("wafers, from the first,"));
}

#[test]
fn the_readme_sample_scores() {
    let input = common::repo().join("examples/wafers.csv");
    let o = faultline(&["score", "--input", input.to_str().unwrap(), "--output", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 51);
    // The README's demo shows faults arriving: the sample must hold some the model flags, each
    // with its contributions, and mostly wafers it does not.
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let faults: Vec<csv::StringRecord> = r
        .records()
        .map(Result::unwrap)
        .filter(|rec| &rec[2] == "true")
        .collect();
    assert_eq!(
        faults.len(),
        5,
        "examples/make_sample.rs writes 5 faulty-looking wafers"
    );
    assert!(faults.iter().all(|rec| rec[6].split("; ").count() == 5));
    // Drawn from the training distribution: no drift warning, and no labels to evaluate.
    let said = stderr(&o);
    assert!(
        !said.contains("Warning") && !said.contains("Good/Bad labels"),
        "{said}"
    );
}

#[test]
fn replay_to_a_port_where_nothing_listens_names_the_address() {
    let port = common::free_port();
    let to = format!("mqtt://127.0.0.1:{port}/faultline/rows");
    let sample = common::repo().join("examples/wafers.csv");
    let o = faultline(&["replay", sample.to_str().unwrap(), "--to", &to]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(&format!("the broker at {to} failed")), "{e}");
    // Zero passes is refused before any broker is tried (it published the file once).
    let o = faultline(&[
        "replay",
        sample.to_str().unwrap(),
        "--to",
        &to,
        "--passes",
        "0",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("--passes must be at least 1"), "{e}");
}

/// `faultline score -i input -o -` and `extra`.
fn score_stdout(input: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["score", "-i", input.to_str().unwrap(), "-o", "-"];
    args.extend_from_slice(extra);
    faultline(&args)
}

/// `faultline score --input input --output output`.
fn score_files(input: &Path, output: &Path) -> std::process::Output {
    faultline(&[
        "score",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ])
}

/// [`score_files`], which must succeed.
fn score_into(input: &Path, output: &Path) {
    let o = score_files(input, output);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `--output` gets the permissions any program's new file gets (the umask's), and an existing
/// file keeps its own: the temporary file it is written through is the owner's alone.
#[cfg(unix)]
#[test]
fn score_output_has_the_permissions_of_a_file_created_in_place() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let input = write_sample(dir.path(), 5);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let reference = dir.path().join("reference");
    std::fs::File::create(&reference).unwrap();
    let run = |output: &Path| score_into(&input, output);
    let fresh = dir.path().join("fresh.csv");
    run(&fresh);
    assert_eq!(mode(&fresh), mode(&reference));
    let shared = dir.path().join("shared.csv");
    std::fs::write(&shared, "old").unwrap();
    // A mode no umask gives a new file: only a copy of the old file's keeps it.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o604)).unwrap();
    run(&shared);
    assert_eq!(mode(&shared), 0o604);
    assert!(std::fs::read_to_string(&shared).unwrap().starts_with("id,"));
}

/// `--output` naming a symbolic link writes the file it links to and leaves the link a link (a
/// renamed temporary file replaced the link itself, leaving its target stale); a link to a file
/// not there yet creates it, as `File::create` does. Run as root, an existing file keeps its
/// owner and group.
#[cfg(unix)]
#[test]
fn score_writes_through_a_symbolic_link_and_keeps_the_owner() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let input = write_sample(dir.path(), 5);
    let run = |output: &Path| score_into(&input, output);
    std::fs::create_dir(dir.path().join("shared")).unwrap();
    let target = dir.path().join("shared").join("verdicts.csv");
    std::fs::write(&target, "old").unwrap();
    // A relative link, through a second link.
    let link = dir.path().join("latest.csv");
    std::os::unix::fs::symlink("shared/verdicts.csv", &link).unwrap();
    let second = dir.path().join("today.csv");
    std::os::unix::fs::symlink(&link, &second).unwrap();
    let root = std::fs::metadata(dir.path()).unwrap().uid() == 0;
    if root {
        std::os::unix::fs::chown(&target, Some(4321), Some(4322)).unwrap();
    }
    run(&second);
    for l in [&link, &second] {
        assert!(
            std::fs::symlink_metadata(l)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{l:?}"
        );
    }
    assert!(std::fs::read_to_string(&target).unwrap().starts_with("id,"));
    if root {
        let m = std::fs::metadata(&target).unwrap();
        assert_eq!((m.uid(), m.gid()), (4321, 4322));
    } else {
        eprintln!("not root: the owner's part of this test is skipped");
    }
    // A dangling link: its target is created, the link kept.
    let dangling = dir.path().join("new.csv");
    std::os::unix::fs::symlink("shared/new-verdicts.csv", &dangling).unwrap();
    run(&dangling);
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    let created = dir.path().join("shared").join("new-verdicts.csv");
    assert!(std::fs::read_to_string(created).unwrap().starts_with("id,"));
}

/// `--output` naming a pipe (or a device such as /dev/null) is written into, never replaced by a
/// renamed temporary file: as root that rename once turned /dev/null into a regular file.
#[cfg(unix)]
#[test]
fn score_writes_into_a_pipe_and_leaves_it_a_pipe() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let input = write_sample(dir.path(), 20);
    let fifo = dir.path().join("verdicts.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let o = score_files(&input, &fifo);
    assert!(o.status.success(), "{}", stderr(&o));
    // First: still a pipe (were it replaced, the reader would wait for a writer for ever).
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let text = reader.join().unwrap();
    assert_eq!(text.lines().count(), 21, "{text}");
}

/// `-o /dev/stdout` writes into whatever standard output is: a pipe (whose link names no file,
/// "pipe:[N]"), or a file the shell opened for appending, whose earlier lines stay.
#[cfg(unix)]
#[test]
fn score_writes_to_dev_stdout_whether_a_pipe_or_an_appended_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_sample(dir.path(), 20);
    // A pipe: Command::output captures standard output through one.
    let o = faultline(&["score", "-i", input.to_str().unwrap(), "-o", "/dev/stdout"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 21);
    // A file opened for appending (the shell's `>>`): what it held stays, the verdicts follow.
    let log = dir.path().join("log.csv");
    std::fs::write(&log, "kept\n").unwrap();
    let appended = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let o = common::command()
        .args(["score", "-i", input.to_str().unwrap(), "-o", "/dev/stdout"])
        .stdout(appended)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("kept\n"), "{text}");
    assert_eq!(text.lines().count(), 22, "{text}");
}

/// A file name or an environment variable that is not UTF-8 (Latin-1, say) is no reason to
/// panic: the name is taken as it is, and a variable that is not faultline's is left alone.
#[cfg(unix)]
#[test]
fn names_and_variables_that_are_not_utf8_are_taken_as_they_are() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let sample = write_sample(dir.path(), 5);
    let latin1 = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9.csv"));
    std::fs::rename(&sample, &latin1).unwrap();
    let out = dir.path().join("out.csv");
    let o = common::command()
        .arg("score")
        .arg("-i")
        .arg(&latin1)
        .arg("-o")
        .arg(&out)
        .env("PLANT_NOTE", std::ffi::OsStr::from_bytes(b"caf\xe9"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 6);
}

/// A bad row part-way through a replay: the rows published before it are delivered, and the
/// error names the file, the row and how many went out.
#[test]
fn a_replay_that_meets_a_bad_row_says_where_and_how_many_went_out() {
    let broker = common::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let sample = write_sample(dir.path(), 2000);
    let text = std::fs::read_to_string(&sample).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Data row 1500 is line 1501: its first sensor becomes text.
    let mut cells: Vec<&str> = lines[1500].split(',').collect();
    cells[1] = "abc";
    lines[1500] = cells.join(",");
    std::fs::write(&sample, lines.join("\n") + "\n").unwrap();
    let to = format!("mqtt://127.0.0.1:{}/faultline/rows", broker.port);
    let o = faultline(&["replay", sample.to_str().unwrap(), "--to", &to]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("sample.csv: line 1501"), "{e}");
    assert!(e.contains("'abc'"), "{e}");
    assert!(
        e.contains("1024 rows had been published when it was found")
            && e.contains("the broker acknowledged them"),
        "{e}"
    );
}

/// `--loop` ends with Ctrl-C: the replay stops publishing, waits for the rows in flight and says
/// how many it published and how many the broker acknowledged.
#[cfg(unix)]
#[test]
fn an_interrupted_replay_says_what_it_published_and_the_broker_acknowledged() {
    let broker = common::Mosquitto::start();
    let sample = common::repo().join("examples/wafers.csv");
    let to = format!("mqtt://127.0.0.1:{}/faultline/rows", broker.port);
    // Interrupted once its rows are reaching the broker (a bounded wait on that, not a sleep).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut watcher = runtime.block_on(common::Client::connect(
        broker.port,
        "interrupt-watcher",
        &["faultline/rows".to_string()],
    ));
    let child = common::command()
        .args(["replay", sample.to_str().unwrap(), "--to", &to, "--loop"])
        .args(["--rate", "500"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    runtime.block_on(watcher.collect_until(60, |got| got.len() >= 60));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let number = |after: &str| -> u64 {
        let rest = &e[e.find(after).unwrap_or_else(|| panic!("{after:?} in {e}")) + after.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let published = number("Interrupted: published ");
    assert!(published > 50, "{e}");
    assert_eq!(number("the broker acknowledged "), published, "{e}");
}

/// An output made read-only is left as it is, not replaced by the renamed new file.
#[cfg(unix)]
#[test]
fn a_read_only_output_is_not_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let input = write_sample(dir.path(), 5);
    let out = dir.path().join("verdicts.csv");
    std::fs::write(&out, "keep me\n").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o444)).unwrap();
    let o = score_files(&input, &out);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is read-only"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me\n");
}

/// `score` stopped by Ctrl-C or SIGTERM while it reads leaves neither its output nor the hidden
/// temporary file it writes through (killed by the signal, it left `.tmpXXXXXX` beside the
/// output), ends as a shell reports the signal (130, 143) and says the output was not written.
#[cfg(unix)]
#[test]
fn an_interrupted_score_leaves_no_file_behind() {
    use std::io::Write;
    for (signal, status) in [("-INT", 130), ("-TERM", 143)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("verdicts.csv");
        let mut child = common::command()
            .args(["score", "-i", "-", "-o", out.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A header and a row, and standard input left open: the score waits for more.
        let sample = std::fs::read_to_string(common::repo().join("examples/wafers.csv")).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = sample.lines();
        writeln!(
            stdin,
            "{}\n{}",
            lines.next().unwrap(),
            lines.next().unwrap()
        )
        .unwrap();
        // The temporary file exists once the signals are watched.
        let hidden = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        let mut waited = 0;
        while hidden().is_empty() {
            assert!(waited < 1000, "no temporary file after 10 s");
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
        }
        assert!(hidden()[0].starts_with(".faultline-"), "{:?}", hidden());
        let sent = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let o = child.wait_with_output().unwrap();
        drop(stdin);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(status), "{signal}: {e}");
        assert!(e.contains("verdicts.csv was not written"), "{e}");
        assert_eq!(hidden(), Vec::<String>::new(), "{signal}");
    }
}

/// A file that cannot be read again for a later pass (rotated or removed while `--passes`
/// runs) ends the replay as a bad row does: the rows in flight are acknowledged first, and the
/// error says how many went out. The replay used to return at once, waiting for none of them.
#[cfg(unix)]
#[test]
fn a_file_gone_before_a_later_pass_ends_the_replay_saying_what_went_out() {
    let broker = common::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let sample = write_sample(dir.path(), 20);
    let to = format!("mqtt://127.0.0.1:{}/faultline/rows", broker.port);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut watcher = runtime.block_on(common::Client::connect(
        broker.port,
        "gone-watcher",
        &["faultline/rows".to_string()],
    ));
    // Ten rows a second: the first pass's last row goes out about 1.9 s in, and the second pass
    // opens the file then; it is removed once five rows have arrived, about 1.4 s before.
    let child = common::command()
        .args(["replay", sample.to_str().unwrap(), "--to", &to])
        .args(["--rate", "10", "--passes", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    runtime.block_on(watcher.collect_until(30, |got| got.len() >= 5));
    std::fs::remove_file(&sample).unwrap();
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("sample.csv")
            && e.contains("20 rows had been published")
            && e.contains("the broker acknowledged them"),
        "{e}"
    );
}

/// A "broker" that takes the connection and never answers: the rows queued meanwhile fail with
/// the client stopped, and the error gives the connection's own failure, not only "the
/// publisher has stopped" (which hid why).
#[test]
fn a_broker_that_never_answers_is_reported_with_the_connections_own_failure() {
    let dir = tempfile::tempdir().unwrap();
    let sample = write_sample(dir.path(), 1500);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s);
        }
    });
    let to = format!("mqtt://127.0.0.1:{port}/faultline/rows");
    let o = common::command()
        .args(["replay", sample.to_str().unwrap(), "--to", &to])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(!e.contains("the publisher has stopped"), "{e}");
    assert!(e.contains(&format!("the broker at {to} failed")), "{e}");
    assert!(e.contains("the broker acknowledged none of them"), "{e}");
}

/// A broker that goes away part-way through a replay: the error says how many rows went out
/// and how many the broker acknowledged (it used to say only that the broker failed).
#[test]
fn a_broker_lost_part_way_is_reported_with_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::Mosquitto::start();
    let sample = write_sample(dir.path(), 40);
    let to = format!("mqtt://127.0.0.1:{}/faultline/rows", broker.port);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut watcher = runtime.block_on(common::Client::connect(
        broker.port,
        "lost-watcher",
        &["faultline/rows".to_string()],
    ));
    // Ten rows a second: the broker is killed once five have arrived, about 3.5 s before the end.
    let child = common::command()
        .args(["replay", sample.to_str().unwrap(), "--to", &to])
        .args(["--rate", "10"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    runtime.block_on(watcher.collect_until(30, |got| got.len() >= 5));
    broker.stop_with(common::Stop::Kill);
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains(&format!("the broker at {to} failed")), "{e}");
    let counts = regex_lite_counts(&e);
    assert!(
        counts.is_some_and(|(sent, acked)| (5..40).contains(&sent) && (5..=sent).contains(&acked)),
        "{e}"
    );
}

/// `(sent, acked)` from "... N rows had been published and the broker acknowledged M of them".
fn regex_lite_counts(e: &str) -> Option<(u64, u64)> {
    let (before, after) = e.split_once(" rows had been published and the broker acknowledged ")?;
    let sent = before.rsplit(' ').next()?.parse().ok()?;
    let acked = after.split(' ').next()?.parse().ok()?;
    Some((sent, acked))
}
