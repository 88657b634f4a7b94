//! Closing the loop, end to end through a real Mosquitto and the `faultline` binary: the dataset's
//! wafers replayed in production order, their labels following later on the labels topic; live
//! quality checked against scikit-learn on the store's own files; a restart in between; the
//! labelled rows exported and trained on; the trained model run as a shadow and promoted.

mod common;

use common::{http, Client, Daemon, Mosquitto};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The repository's Python with scikit-learn and pyarrow, or `None` (the test then says it
/// skipped that part, unless `FAULTLINE_REQUIRE_PYTHON=1`, which scripts/test.sh sets).
fn python(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("FAULTLINE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo().join(".venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import sklearn, pyarrow, xgboost, onnx"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    if std::env::var("FAULTLINE_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("{test}: FAULTLINE_REQUIRE_PYTHON=1 but {} lacks scikit-learn/pyarrow (pip install -r training/requirements.txt)", python.display());
    }
    eprintln!(
        "{test}: SKIPPED the scikit-learn and training steps — no {} with training/requirements.txt",
        python.display()
    );
    None
}

/// The real wafers in production order: (id, JSON row message, label +1/-1).
fn wafers(dir: &Path, model: &faultline::model::Model) -> Vec<(String, String, i8)> {
    let rows = common::read_wafers(&dir.join("wafer/wafer_train.csv"), model);
    (0..rows.len())
        .map(|i| {
            let id = rows.ids[i].clone();
            let msg = faultline::row::json::encode_row(&id, rows.row(i), model.features());
            (
                id,
                msg,
                rows.labels[i].expect("wafer_train.csv is labelled"),
            )
        })
        .collect()
}

fn daemon_env(broker: u16, store: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("FAULTLINE_SOURCE__KIND", "mqtt".to_string()),
        (
            "FAULTLINE_SOURCE__MQTT__URL",
            format!("mqtt://127.0.0.1:{broker}"),
        ),
        ("FAULTLINE_SOURCE__MQTT__TOPIC", "loop/rows".into()),
        ("FAULTLINE_SOURCE__MQTT__CLIENT_ID", "loop".into()),
        ("FAULTLINE_SINK__FAULTS_TOPIC", "loop/faults".into()),
        ("FAULTLINE_SINK__SCORES_TOPIC", "loop/scores".into()),
        ("FAULTLINE_SINK__DEAD_LETTER_TOPIC", "loop/dead".into()),
        ("FAULTLINE_LABELS__TOPIC", "loop/labels".into()),
        ("FAULTLINE_LABELS__WINDOW_ROWS", "300".into()),
        ("FAULTLINE_STORE__DIR", store.display().to_string()),
        // Small files, so rotation runs.
        ("FAULTLINE_STORE__SEGMENT_ROWS", "250".into()),
        ("FAULTLINE_WEB__TOKEN", "loop-token".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

const AUTH: (&str, &str) = ("Authorization", "Bearer loop-token");

async fn quality(d: &Daemon) -> Value {
    let (status, body) = http(d.web, "GET", "/api/quality", &[AUTH], "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until `/api/quality` satisfies `done`.
async fn quality_until(d: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let q = quality(d).await;
        if done(&q) {
            return q;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened: {q}\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish_rows(c: &Client, rows: &[(String, String, i8)]) {
    for (_, msg, _) in rows {
        c.publish("loop/rows", msg.clone()).await;
    }
}

async fn publish_labels(c: &Client, rows: &[(String, String, i8)]) {
    for (id, _, y) in rows {
        let label = serde_json::json!({"id": id, "label": y, "at": "2026-11-26T12:00:00Z"});
        c.publish("loop/labels", label.to_string()).await;
    }
}

/// Waits for `n` distinct ids on the scores topic.
async fn scored(c: &mut Client, n: usize) {
    c.collect_until(120, |g| {
        g.iter()
            .filter_map(|(_, v)| v["id"].as_str())
            .collect::<HashSet<_>>()
            .len()
            >= n
    })
    .await;
}

/// The value of the series `series` on `/metrics`.
async fn gauge(d: &Daemon, series: &str) -> Option<f64> {
    let metrics = common::http_get(d.web, "/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn serving(q: &Value) -> &Value {
    &q["models"][0]["quality"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_labels_give_live_quality_that_matches_scikit_learn_across_a_restart() {
    let test = "late_labels_give_live_quality_that_matches_scikit_learn_across_a_restart";
    let Some(data) = common::data_dir(test) else {
        return;
    };
    let python = python(test);
    let model = faultline::model::Model::embedded().unwrap();
    let wafers = wafers(&data, &model);
    let n = wafers.len();
    let half = n / 2;
    let broker = Mosquitto::start();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let env = daemon_env(broker.port, &store, &[]);
    let mut c = Client::connect(
        broker.port,
        "loop-test",
        &["loop/scores".into(), "loop/dead".into()],
    )
    .await;

    // The first half of production, then (later) the labels of its first 400 wafers.
    let d = Daemon::start(&env).await;
    publish_rows(&c, &wafers[..half]).await;
    scored(&mut c, half).await;
    publish_labels(&c, &wafers[..400]).await;
    // A label that cannot be read goes to the dead-letter topic with the reason.
    c.publish("loop/labels", r#"{"id": "Wafer-1", "label": 7}"#)
        .await;
    // A label for a wafer not scored yet waits for it.
    publish_labels(&c, &wafers[half..half + 1]).await;
    // Labels are applied in order, and the dead letter's PUBACK comes between the 400th and the
    // waiting one: wait for both.
    quality_until(&d, "400 labels joined and one waiting", |q| {
        q["labels"]["joined"] == 400 && q["labels"]["pending"] == 1
    })
    .await;
    let dead = c
        .collect_until(30, |g| g.iter().any(|(t, _)| t == "loop/dead"))
        .await;
    let letter = &dead.iter().find(|(t, _)| t == "loop/dead").unwrap().1;
    assert_eq!(letter["reason"], "bad_label", "{letter}");
    assert!(letter["error"].as_str().unwrap().contains("use 1 (faulty)"));

    // A restart in between: the store brings back the rows, the labels and the joins.
    assert!(d.terminate().success());
    let d = Daemon::start(&env).await;
    let q = quality(&d).await;
    assert_eq!(q["labels"]["joined"], 400, "{q}");
    assert_eq!(q["labels"]["pending"], 1, "{q}");
    assert_eq!(q["store"]["rows_recovered"], half, "{q}");
    assert_eq!(serving(&q)["labelled"], 300, "{q}");

    // The rest of production, then the rest of the labels.
    publish_rows(&c, &wafers[half..]).await;
    scored(&mut c, n - half).await;
    publish_labels(&c, &wafers[400..]).await;
    let q = quality_until(&d, "every label joined", |q| q["labels"]["joined"] == n).await;
    assert_eq!(
        q["labels"]["pending"], 0,
        "the waiting label found its row: {q}"
    );
    assert_eq!(q["store"]["rows_dropped"], 0, "{q}");
    assert_eq!(q["store"]["labels_dropped"], 0, "{q}");
    assert!(q["store"]["error"].is_null(), "{q}");
    let live = serving(&q).clone();
    eprintln!("live quality over the last 300 of {n} wafers: {live}");
    let roc = live["roc_auc"].as_f64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The gauges are recomputed every second.
    while gauge(&d, "faultline_quality_roc_auc{model=\"serving\"}")
        .await
        .is_none_or(|g| (g - roc).abs() > 1e-12)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gauge never showed the API's ROC-AUC {roc}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.terminate().success());

    let Some(python) = python else { return };
    // scikit-learn on the same joined rows, read from the store's files with pyarrow.
    let out = Command::new(&python)
        .arg(common::repo().join("tests/python/quality_check.py"))
        .args(["--store", store.to_str().unwrap()])
        .args(["--version", model.version()])
        .args(["--threshold", &live["threshold"].to_string()])
        .args(["--window", "300"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sk: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("scikit-learn on the store's rows: {sk}");
    for key in [
        "labelled",
        "positives",
        "negatives",
        "true_positives",
        "false_positives",
        "false_negatives",
        "true_negatives",
    ] {
        assert_eq!(
            live[key], sk[key],
            "{key}: faultline {live} vs scikit-learn {sk}"
        );
    }
    for key in [
        "roc_auc",
        "pr_auc",
        "recall",
        "false_alarm_rate",
        "precision",
    ] {
        let (a, b) = (live[key].as_f64().unwrap(), sk[key].as_f64().unwrap());
        // Equal up to the order of floating-point summation.
        assert!(
            (a - b).abs() < 1e-12,
            "{key}: faultline {a} vs scikit-learn {b}"
        );
    }

    // The labelled rows exported in the wafer schema, and trained on.
    let fresh = work.path().join("fresh.csv");
    let export = common::faultline(&[
        "export",
        "--labelled",
        "--store",
        store.to_str().unwrap(),
        "--output",
        fresh.to_str().unwrap(),
    ]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let exported = common::read_wafers(&fresh, &model);
    assert_eq!(exported.len(), n, "every labelled wafer once");
    let by_id: std::collections::HashMap<&str, usize> = exported
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let original = common::read_wafers(&data.join("wafer/wafer_train.csv"), &model);
    for i in 0..original.len() {
        let j = by_id[original.ids[i].as_str()];
        assert_eq!(
            exported.labels[j], original.labels[i],
            "{}",
            original.ids[i]
        );
        let (a, b) = (exported.row(j), original.row(i));
        assert!(
            a.iter()
                .zip(b)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())),
            "{}: the exported sensors differ from the wafer file's",
            original.ids[i]
        );
    }
    let trained = work.path().join("retrained");
    // Training is deterministic: on exactly the committed model's rows it would rebuild the committed
    // model byte for byte. Train on the export's later rows (a --since window on its Time column), as
    // a plant retraining on recent production would, so the challenger differs. `Time` is when the
    // wafer was scored, in milliseconds, and a micro-batch (up to 256 rows) shares one: the window
    // starts where `Time` changes at or after the 151st row, so the rows before it fall outside
    // however the batches fell (a start inside a batch kept every row, and CI saw that).
    let since = {
        let mut r = csv::Reader::from_path(&fresh).unwrap();
        let time_col = r
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "Time")
            .unwrap();
        let times: Vec<String> = r
            .records()
            .map(|rec| rec.unwrap()[time_col].to_string())
            .collect();
        let at = (150..times.len())
            .find(|&i| times[i] != times[i - 1])
            .or_else(|| (1..times.len()).find(|&i| times[i] != times[i - 1]))
            .expect("the export's rows were scored at more than one time (two daemon runs)");
        eprintln!("retraining on rows {at}.. of {n}: Time >= {}", times[at]);
        times[at].clone()
    };
    let train = Command::new(&python)
        .arg(common::repo().join("training/train.py"))
        .args(["--input", fresh.to_str().unwrap()])
        .args(["--since", since.as_str()])
        .args(["--output-dir", trained.to_str().unwrap()])
        .args(["--grid", "quick"])
        .output()
        .unwrap();
    assert!(
        train.status.success(),
        "training on the export failed:\n{}",
        String::from_utf8_lossy(&train.stderr)
    );
    let card: Value =
        serde_json::from_slice(&std::fs::read(trained.join("model.json")).unwrap()).unwrap();
    let files = card["training"]["files"].as_array().unwrap();
    assert!(
        files.iter().any(|f| f["path"] == fresh.to_str().unwrap()
            && f["rows_read"] == n
            && f["rows_used"].as_u64().unwrap() < n as u64),
        "the model card names the exported file: {}",
        card["training"]
    );
    let challenger = card["version"].as_str().unwrap().to_string();
    eprintln!(
        "retrained on the export: {challenger} ({} rows)",
        card["training"]["rows"]
    );
    assert_ne!(challenger, model.version());

    // The retrained model as a shadow: both score every row, only the serving one publishes.
    let store = work.path().join("store-shadow");
    let shadow_env = daemon_env(
        broker.port,
        &store,
        &[
            ("FAULTLINE_SHADOW__MODEL", trained.to_str().unwrap()),
            ("FAULTLINE_SOURCE__MQTT__CLIENT_ID", "loop-shadow"),
        ],
    );
    // Every verdict (the scores topic), not only faults: how many of the second half the retrained
    // model flags depends on its threshold, and the export's window (by scoring time, which ties
    // at the millisecond) differs from run to run, so the model and its threshold do too.
    let mut c = Client::connect(
        broker.port,
        "loop-shadow-test",
        &["loop/faults".into(), "loop/scores".into()],
    )
    .await;
    let d = Daemon::start(&shadow_env).await;
    publish_rows(&c, &wafers[..half]).await;
    let before = c.collect_until(120, |g| g.len() >= 5).await;
    assert!(
        before
            .iter()
            .all(|(_, v)| v["model_version"] == model.version()),
        "only the serving model publishes"
    );
    publish_labels(&c, &wafers[..half]).await;
    let q = quality_until(&d, "both models' quality", |q| {
        q["models"][1]["quality"]["labelled"] == 300 && serving(q)["labelled"] == 300
    })
    .await;
    assert_eq!(q["models"][1]["role"], "shadow", "{q}");
    assert_eq!(q["models"][1]["version"], challenger.as_str(), "{q}");
    eprintln!(
        "side by side on the same 300 wafers: serving ROC-AUC {}, shadow ROC-AUC {}",
        serving(&q)["roc_auc"],
        q["models"][1]["quality"]["roc_auc"]
    );
    // Each figure has its interval, and the two models are compared on the wafers both scored,
    // with the interval of the difference: with a few dozen faulty wafers, what a promotion
    // should be weighed on.
    let cmp = &q["comparison"];
    assert_eq!(
        (&cmp["labelled"], &cmp["roc_auc_a"], &cmp["roc_auc_b"]),
        (
            &Value::from(300),
            &serving(&q)["roc_auc"],
            &q["models"][1]["quality"]["roc_auc"]
        ),
        "{q}"
    );
    let (lo, diff, hi) = (
        cmp["difference_ci95"][0].as_f64().unwrap(),
        cmp["difference"].as_f64().unwrap(),
        cmp["difference_ci95"][1].as_f64().unwrap(),
    );
    assert!(lo <= diff && diff <= hi && lo < hi, "{cmp}");
    let ci = &serving(&q)["roc_auc_ci95"];
    assert!(ci[0].as_f64().unwrap() < ci[1].as_f64().unwrap(), "{q}");
    let shadow_info = format!("faultline_shadow_model_info{{version=\"{challenger}\"}}");
    assert_eq!(gauge(&d, &shadow_info).await, Some(1.0));

    // Promotion needs the token, then swaps the models between micro-batches.
    let (status, _) = http(d.web, "POST", "/api/model/promote", &[], "").await;
    assert_eq!(status, 401);
    let (status, body) = http(d.web, "POST", "/api/model/promote", &[AUTH], "").await;
    assert_eq!(status, 200, "{body}");
    let promoted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(promoted["version"], challenger.as_str());
    assert_eq!(promoted["previous_version"], model.version());
    let second: HashSet<String> = wafers[half..].iter().map(|w| w.0.clone()).collect();
    publish_rows(&c, &wafers[half..]).await;
    let after = c
        .collect_until(120, |g| {
            g.iter()
                .filter(|(_, v)| second.contains(v["id"].as_str().unwrap()))
                .count()
                >= 3
        })
        .await;
    for (_, v) in after
        .iter()
        .filter(|(_, v)| second.contains(v["id"].as_str().unwrap()))
    {
        assert_eq!(
            v["model_version"],
            challenger.as_str(),
            "verdicts after the promotion carry the new version: {v}"
        );
    }
    let q = quality(&d).await;
    assert_eq!(q["models"][0]["version"], challenger.as_str(), "{q}");
    assert_eq!(
        q["models"][1]["version"],
        model.version(),
        "the previous model stays as the shadow: {q}"
    );
    // Promoting again rolls back.
    let (status, body) = http(d.web, "POST", "/api/model/promote", &[AUTH], "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["version"],
        model.version()
    );
    assert!(d.terminate().success());
}

/// `POST /api/labels` with one label, for the wafer `api-1`.
async fn post_one_label(d: &Daemon) -> (u16, String) {
    let json = ("Content-Type", "application/json");
    let body = r#"{"id": "api-1", "label": 1}"#;
    http(d.web, "POST", "/api/labels", &[AUTH, json], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_is_acknowledged_only_once_on_disk_so_a_kill_9_loses_none() {
    let broker = Mosquitto::start();
    let work = tempfile::tempdir().unwrap();
    let blocker = work.path().join("blocked");
    let env = daemon_env(broker.port, &blocker.join("store"), &[]);
    let c = Client::connect(broker.port, "loop-test", &[]).await;
    let d = Daemon::start(&env).await;
    // The disk fails: a file where the store's directory was.
    std::fs::remove_dir_all(&blocker).unwrap();
    std::fs::write(&blocker, b"").unwrap();
    for id in ["late-1", "late-2", "late-3"] {
        let label = serde_json::json!({"id": id, "label": 1});
        c.publish("loop/labels", label.to_string()).await;
    }
    // Applied (they wait for their rows), not written.
    let q = quality_until(&d, "3 labels applied on a failing disk", |q| {
        q["labels"]["pending"] == 3 && !q["store"]["error"].is_null()
    })
    .await;
    assert_eq!(q["store"]["labels_written"], 0, "{q}");
    assert_eq!(q["store"]["labels_dropped"], 0, "kept for a retry: {q}");
    // The API says so too, rather than 200.
    let (status, body) = post_one_label(&d).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not on disk"), "{body}");
    // Memory stays bounded: past 100,000 labels waiting for the disk, more are refused and not
    // applied.
    let csv = ("Content-Type", "text/csv");
    let many: String = std::iter::once("id,Good/Bad\n".to_string())
        .chain((0..100_000).map(|i| format!("many-{i},1\n")))
        .collect();
    let (status, body) = http(d.web, "POST", "/api/labels", &[AUTH, csv], &many).await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = http(
        d.web,
        "POST",
        "/api/labels",
        &[AUTH, csv],
        "id,Good/Bad\nmore,1\n",
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("100004 labels already wait for it; these were not applied"),
        "{body}"
    );
    let q = quality(&d).await;
    assert_eq!(
        q["labels"]["received"], 100_004,
        "the last one was not applied: {q}"
    );
    assert_eq!(q["store"]["labels_waiting"], 100_004, "{q}");
    // Killed with the labels applied but not on disk: they were never acknowledged...
    d.kill9();
    std::fs::remove_file(&blocker).unwrap();
    // ...so the broker sends them again, and now they are written.
    let d = Daemon::start(&env).await;
    quality_until(&d, "the 3 labels read again and written", |q| {
        q["labels"]["pending"] == 3 && q["store"]["labels_written"] == 3
    })
    .await;
    let (status, body) = post_one_label(&d).await;
    assert_eq!(status, 200, "{body}");
    assert!(d.terminate().success());
    let d = Daemon::start(&env).await;
    let q = quality(&d).await;
    assert_eq!(q["store"]["labels_recovered"], 4, "{q}");
    assert_eq!(q["labels"]["pending"], 4, "{q}");
    // Once written they were acknowledged: after a label sent now (which the broker delivers
    // after any it sends again), 5 were received in all, the 4 read back and this one.
    let label = serde_json::json!({"id": "late-4", "label": -1});
    c.publish("loop/labels", label.to_string()).await;
    let q = quality_until(&d, "the fifth label", |q| q["labels"]["pending"] == 5).await;
    assert_eq!(q["labels"]["received"], 5, "sent again: {q}");
    assert!(d.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_labels_held_by_a_failing_disk_is_prompt_and_loses_none() {
    // A broker that sends a client every message at once, unacknowledged or not.
    let work = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let _broker = common::mosquitto_with(
        work.path(),
        &format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n"),
        &[port],
    );
    let blocker = work.path().join("blocked");
    let env = daemon_env(port, &blocker.join("store"), &[]);
    let c = Client::connect(port, "loop-test", &[]).await;
    let mut d = Daemon::start(&env).await;
    std::fs::remove_dir_all(&blocker).unwrap();
    std::fs::write(&blocker, b"").unwrap();
    // More than faultline holds unacknowledged (1,024) and reads ahead (256): its reader waits
    // for room when the stop comes.
    let n = 1500;
    for i in 0..n {
        let label = serde_json::json!({"id": format!("held-{i}"), "label": 1});
        c.publish("loop/labels", label.to_string()).await;
    }
    quality_until(&d, "1,024 labels held", |q| {
        q["labels"]["received"] == 1024 && q["store"]["labels_waiting"] == 1024
    })
    .await;
    // The stop does not wait on the disk: no close outlasts the grace period (it used to, and
    // said the broker held it).
    d.sigterm();
    let status = d.wait_exit(Duration::from_secs(60)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let log = d.log_text();
    assert!(!log.contains("did not let faultline close"), "{log}");
    assert!(!log.contains("grace period ended"), "{log}");
    // Nothing was acknowledged, so all of them come again, and are written this time.
    std::fs::remove_file(&blocker).unwrap();
    let d = Daemon::start(&env).await;
    quality_until(&d, "every label read again and written", |q| {
        q["labels"]["pending"] == n && q["store"]["labels_written"] == n
    })
    .await;
    // Once written they were acknowledged: after a restart and one more label (delivered after
    // any sent again), n + 1 were received in all.
    assert!(d.terminate().success());
    let d = Daemon::start(&env).await;
    let label = serde_json::json!({"id": "last", "label": -1});
    c.publish("loop/labels", label.to_string()).await;
    let q = quality_until(&d, "the last label", |q| q["labels"]["pending"] == n + 1).await;
    assert_eq!(q["labels"]["received"], n + 1, "sent again: {q}");
    assert!(d.terminate().success());
}
