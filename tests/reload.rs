//! Safe model changes while `faultline serve` runs: a new model in `[model] dir` is checked and
//! swapped in (by the API, by a change of the files, by SIGHUP); a broken or incompatible one is
//! refused and the model in service keeps scoring. Verdicts on the bus carry the version that
//! scored them.

mod common;

use common::{committed, http, http_get, rewrite, rows, wait_ready, Client};
use faultline::config::{Config, RawConfig};
use faultline::model::Model;
use faultline::pipeline as app;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A model directory holding the committed model's files.
fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "model.json", "golden.csv"] {
        std::fs::copy(
            common::repo().join("models/wafer-fault").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    dir
}

/// Writes a graph and card the way the docs say: to temporary names, renamed into place.
fn install(dir: &Path, onnx: &[u8], card: &Value) {
    let tmp = dir.join(".model.onnx.tmp");
    std::fs::write(&tmp, onnx).unwrap();
    std::fs::rename(&tmp, dir.join("model.onnx")).unwrap();
    let tmp = dir.join(".model.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(card).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("model.json")).unwrap();
}

/// The committed model with another producer version: the same trees (so the committed golden
/// rows still reproduce), another graph hash, so another model version.
fn second_model() -> (Vec<u8>, Value) {
    let (onnx, card) = committed();
    rewrite(&onnx, &card, |m| {
        m.producer_version = "reload-test-2".into()
    })
}

fn config(tag: &str, port: u16, dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut env: Vec<(String, String)> = vec![
        ("FAULTLINE_SOURCE__KIND".into(), "embedded".into()),
        (
            "FAULTLINE_BROKER__LISTEN".into(),
            format!("127.0.0.1:{port}"),
        ),
        (
            "FAULTLINE_SOURCE__MQTT__TOPIC".into(),
            format!("{tag}/rows"),
        ),
        (
            "FAULTLINE_SOURCE__MQTT__CLIENT_ID".into(),
            format!("faultline-{tag}"),
        ),
        (
            "FAULTLINE_SINK__SCORES_TOPIC".into(),
            format!("{tag}/scores"),
        ),
        (
            "FAULTLINE_SINK__FAULTS_TOPIC".into(),
            format!("{tag}/faults"),
        ),
        (
            "FAULTLINE_SINK__DEAD_LETTER_TOPIC".into(),
            format!("{tag}/dead"),
        ),
        ("FAULTLINE_WEB__LISTEN".into(), "127.0.0.1:0".into()),
        ("FAULTLINE_MODEL__DIR".into(), dir.display().to_string()),
    ];
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    RawConfig::load_with_env(None, env)
        .unwrap()
        .validate()
        .unwrap()
}

/// Publishes one row and returns the version on its score message.
async fn scored_by(c: &mut Client, tag: &str, model: &Model, id: &str) -> String {
    let (_, _, good) = rows(model, 0);
    let row = good.replace("Known-Good", id);
    c.publish(&format!("{tag}/rows"), row).await;
    let got = c
        .collect_until(20, |g| g.iter().any(|(_, v)| v["id"] == id))
        .await;
    let (_, v) = got.iter().find(|(_, v)| v["id"] == id).unwrap();
    v["model_version"].as_str().unwrap().to_string()
}

/// `/readyz`'s JSON.
async fn readyz(addr: std::net::SocketAddr) -> Value {
    let r = http_get(addr, "/readyz").await;
    serde_json::from_str(r.split_once("\r\n\r\n").unwrap().1).unwrap()
}

/// A daemon serving the committed model (v1, from `dir`) with [`second_model`] (v2) as its
/// shadow, the model files watched by nothing but the API, and a client reading its scores.
struct WithShadow {
    dir: tempfile::TempDir,
    _shadow: tempfile::TempDir,
    app: app::App,
    c: Client,
    model: Arc<Model>,
    v1: String,
    v2: String,
}

async fn with_shadow(tag: &str) -> WithShadow {
    let dir = model_dir();
    let shadow = model_dir();
    let (onnx2, card2) = second_model();
    install(shadow.path(), &onnx2, &card2);
    let port = common::free_port();
    let cfg = config(
        tag,
        port,
        dir.path(),
        &[
            ("FAULTLINE_MODEL__WATCH_MS", "0"),
            ("FAULTLINE_SHADOW__MODEL", shadow.path().to_str().unwrap()),
        ],
    );
    let model = Arc::new(Model::load_dir(dir.path()).unwrap());
    let v1 = model.version().to_string();
    let v2 = card2["version"].as_str().unwrap().to_string();
    let app = app::start(&cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    let c = Client::connect(port, &format!("{tag}-test"), &[format!("{tag}/scores")]).await;
    WithShadow {
        dir,
        _shadow: shadow,
        app,
        c,
        model,
        v1,
        v2,
    }
}

/// The version `/readyz` reports, and its last reload.
async fn served(addr: std::net::SocketAddr) -> (String, Value) {
    let body = readyz(addr).await;
    (
        body["model"]["version"].as_str().unwrap().to_string(),
        body["model"]["last_reload"].clone(),
    )
}

/// Polls [`served`] until `done` holds for the version and the last reload; panics after 30 s
/// (generous for a debug build on a loaded machine), saying `what` did not happen.
async fn served_when(
    addr: std::net::SocketAddr,
    what: &str,
    done: impl Fn(&str, &Value) -> bool,
) -> (String, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (version, last) = served(addr).await;
        if done(&version, &last) {
            return (version, last);
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A daemon watching `[model] dir` every 100 ms, whose files are replaced by `onnx` and `card`
/// after its model was read and before it starts (as a deploy racing the start would).
async fn started_as_files_change(
    tag: &str,
    onnx: &[u8],
    card: &Value,
) -> (app::App, tempfile::TempDir) {
    let dir = model_dir();
    let port = common::free_port();
    let cfg = config(
        tag,
        port,
        dir.path(),
        &[("FAULTLINE_MODEL__WATCH_MS", "100")],
    );
    let model = Arc::new(Model::load_dir(dir.path()).unwrap());
    install(dir.path(), onnx, card);
    (app::start(&cfg, model).await.unwrap(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_swaps_in_a_checked_model_and_refuses_a_broken_or_incompatible_one() {
    let dir = model_dir();
    let port = common::free_port();
    let tag = "reload-api";
    let cfg = config(
        tag,
        port,
        dir.path(),
        &[
            ("FAULTLINE_MODEL__WATCH_MS", "0"),
            ("FAULTLINE_WEB__TOKEN", "s3cret"),
        ],
    );
    let model = Arc::new(Model::load_dir(dir.path()).unwrap());
    let v1 = model.version().to_string();
    let app = app::start(&cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    let mut c = Client::connect(port, "reload-api-test", &[format!("{tag}/scores")]).await;
    assert_eq!(scored_by(&mut c, tag, &model, "W-1").await, v1);
    let auth = [("Authorization", "Bearer s3cret")];

    let (code, _) = http(app.web_addr, "POST", "/api/model/reload", &[], "").await;
    assert_eq!(code, 401, "the reload needs the token");

    // A new model: checked, swapped in, on the next verdicts.
    let (onnx2, card2) = second_model();
    let v2 = card2["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    install(dir.path(), &onnx2, &card2);
    let (code, body) = http(app.web_addr, "POST", "/api/model/reload", &auth, "").await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(status["ok"], true);
    assert_eq!(status["version"], v2.as_str());
    assert_eq!(status["previous_version"], v1.as_str());
    assert_eq!(status["trigger"], "api");
    assert_eq!(scored_by(&mut c, tag, &model, "W-2").await, v2);
    assert_eq!(served(app.web_addr).await.0, v2);

    // Another feature list: refused, the model in service keeps scoring.
    let (onnx, card) = committed();
    let mut renamed = card.clone();
    renamed["input"]["features"][0] = "Sensor-9000".into();
    renamed["sensors"][0]["name"] = "Sensor-9000".into();
    let (onnx3, card3) = rewrite(&onnx, &renamed, |m| m.producer_version = "renamed".into());
    let golden = std::fs::read_to_string(dir.path().join("golden.csv")).unwrap();
    let (header, rest) = golden.split_once('\n').unwrap();
    let first = card["input"]["features"][0].as_str().unwrap();
    let header = header.replacen(&format!(",{first},"), ",Sensor-9000,", 1);
    install(dir.path(), &onnx3, &card3);
    std::fs::write(dir.path().join("golden.csv"), format!("{header}\n{rest}")).unwrap();
    let (code, body) = http(app.web_addr, "POST", "/api/model/reload", &auth, "").await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("needs a restart"), "{body}");
    assert!(
        body.contains(&format!(
            "position 1 ('Sensor-9000' where the model in service reads '{first}')"
        )),
        "{body}"
    );
    // The same model as a shadow is refused at start, saying what a shadow must read.
    let shadow = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "model.json", "golden.csv"] {
        std::fs::copy(dir.path().join(f), shadow.path().join(f)).unwrap();
    }
    let cfg2 = config(
        "reload-api-shadow",
        common::free_port(),
        dir.path(),
        &[("FAULTLINE_SHADOW__MODEL", shadow.path().to_str().unwrap())],
    );
    let refused = app::start(&cfg2, model.clone())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("a shadow must read the serving model's features in the same order")
            && refused.contains("position 1 ('Sensor-9000'"),
        "{refused}"
    );
    std::fs::write(dir.path().join("golden.csv"), golden).unwrap();

    // A graph that does not match its card (a half-copied model): refused too.
    install(dir.path(), b"not a graph", &card2);
    let (code, body) = http(app.web_addr, "POST", "/api/model/reload", &auth, "").await;
    assert_eq!(code, 422, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["ok"], false);
    assert_eq!(status["version"], v2.as_str());
    assert!(
        status["error"].as_str().unwrap().contains("sha256"),
        "{body}"
    );
    assert_eq!(scored_by(&mut c, tag, &model, "W-3").await, v2);
    let (version, last) = served(app.web_addr).await;
    assert_eq!(version, v2);
    assert_eq!(last["ok"], false);

    let m = http_get(app.web_addr, "/metrics").await;
    for line in [
        "faultline_model_reloads_total{result=\"ok\"} 1".to_string(),
        "faultline_model_reloads_total{result=\"failed\"} 2".to_string(),
        "faultline_model_reload_failing 1".to_string(),
        format!("faultline_model_info{{version=\"{v2}\"}} 1"),
    ] {
        assert!(m.contains(&line), "missing `{line}` in:\n{m}");
    }
    assert!(!m.contains(&format!("version=\"{v1}\"")), "{m}");
    // The whole model copied in at last: taken, and the gauge the alert reads goes back to 0.
    install(dir.path(), &onnx2, &card2);
    let (code, body) = http(app.web_addr, "POST", "/api/model/reload", &auth, "").await;
    assert_eq!(code, 200, "{body}");
    let m = http_get(app.web_addr, "/metrics").await;
    assert!(m.contains("faultline_model_reload_failing 0"), "{m}");
    app.shutdown().await.unwrap();
    drop(onnx);
}

/// After a promotion, `[model] dir`'s model runs as the shadow, so a reload (a SIGHUP, the API,
/// changed files) replaces it there: the promoted model keeps serving, and promoting again serves
/// the reloaded one. A reload used to put the directory's model back in service, undoing the
/// promotion and leaving the same model in both places.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_after_a_promotion_replaces_the_shadow_and_the_promoted_model_keeps_serving() {
    let tag = "reload-promoted";
    let WithShadow {
        dir,
        app,
        mut c,
        model,
        v1,
        v2,
        ..
    } = with_shadow(tag).await;
    let (code, body) = http(app.web_addr, "POST", "/api/model/promote", &[], "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(scored_by(&mut c, tag, &model, "P-1").await, v2);

    // A third model in [model] dir, reloaded: it becomes the shadow; v2 keeps serving.
    let (onnx, card) = committed();
    let (onnx3, card3) = rewrite(&onnx, &card, |m| {
        m.producer_version = "reload-test-3".into()
    });
    let v3 = card3["version"].as_str().unwrap().to_string();
    install(dir.path(), &onnx3, &card3);
    let (code, body) = http(app.web_addr, "POST", "/api/model/reload", &[], "").await;
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["version"], v2.as_str(), "{body}");
    assert_eq!(status["shadow_version"], v3.as_str(), "{body}");
    assert_eq!(scored_by(&mut c, tag, &model, "P-2").await, v2);
    let m = http_get(app.web_addr, "/metrics").await;
    assert!(m.contains(&format!("version=\"{v3}\"")), "{m}");
    assert!(!m.contains(&format!("version=\"{v1}\"")), "{m}");
    // Promoting again serves the reloaded model; /readyz keeps the reload and the promotion
    // apart (a promotion used to overwrite the last reload, and with it why a reload failed).
    let (code, body) = http(app.web_addr, "POST", "/api/model/promote", &[], "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(scored_by(&mut c, tag, &model, "P-3").await, v3);
    let (_, last_reload) = served(app.web_addr).await;
    assert_eq!(last_reload["shadow_version"], v3.as_str(), "{last_reload}");
    let ready = readyz(app.web_addr).await;
    assert_eq!(
        ready["model"]["last_promotion"]["version"],
        v3.as_str(),
        "{ready}"
    );
    app.shutdown().await.unwrap();
}

/// A promotion that names the versions it expects happens only if they are still in place: a
/// second operator's click (or one after a reload) on a page showing the old pair used to swap
/// the models back without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_expecting_other_versions_changes_nothing() {
    let tag = "promote-expect";
    let WithShadow {
        app,
        mut c,
        model,
        v1,
        v2,
        ..
    } = with_shadow(tag).await;
    let seen = format!("/api/model/promote?serving={v1}&shadow={v2}");

    // An unknown query is refused, not ignored.
    let (code, body) = http(
        app.web_addr,
        "POST",
        "/api/model/promote?version=x",
        &[],
        "",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown field"), "{body}");
    // The first click promotes and says which model is the shadow now.
    let (code, body) = http(app.web_addr, "POST", &seen, &[], "").await;
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["version"], v2.as_str(), "{body}");
    assert_eq!(status["shadow_version"], v1.as_str(), "{body}");
    assert_eq!(scored_by(&mut c, tag, &model, "E-1").await, v2);
    // The second, from a page that still shows v1 serving, changes nothing.
    let (code, body) = http(app.web_addr, "POST", &seen, &[], "").await;
    assert_eq!(code, 409, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["ok"], false, "{body}");
    assert_eq!(status["version"], v2.as_str(), "{body}");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains(&format!("{v2} serves, not {v1}")), "{error}");
    assert!(
        error.contains(&format!("{v1} runs as the shadow, not {v2}")),
        "{error}"
    );
    assert_eq!(scored_by(&mut c, tag, &model, "E-2").await, v2);
    // /readyz still shows the promotion in force, not the refused one.
    let ready = readyz(app.web_addr).await;
    assert_eq!(ready["model"]["last_promotion"]["ok"], true, "{ready}");
    assert_eq!(
        ready["model"]["last_promotion"]["version"],
        v2.as_str(),
        "{ready}"
    );
    // A stale view is not a failed reload: the reload-failure counter stays at zero.
    let m = http_get(app.web_addr, "/metrics").await;
    assert!(
        !m.lines().any(
            |l| l.starts_with("faultline_model_reloads_total{result=\"failed\"}")
                && !l.ends_with(" 0")
        ),
        "{m}"
    );
    // Naming only the shadow works as well; without a query, the swap is unconditional.
    let (code, body) = http(
        app.web_addr,
        "POST",
        &format!("/api/model/promote?shadow={v1}"),
        &[],
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(scored_by(&mut c, tag, &model, "E-3").await, v1);
    let (code, body) = http(app.web_addr, "POST", "/api/model/promote", &[], "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(scored_by(&mut c, tag, &model, "E-4").await, v2);
    app.shutdown().await.unwrap();
}

/// Under an alarm budget, a reload to another version starts the budget afresh: the new model's
/// scores are not ranked against a window of the old model's (another scale: it would flag nearly
/// every wafer, or nearly none, until the window turned over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_another_version_starts_the_alarm_budget_afresh() {
    let dir = model_dir();
    let port = common::free_port();
    let tag = "reload-budget";
    let cfg = config(
        tag,
        port,
        dir.path(),
        &[
            ("FAULTLINE_MODEL__WATCH_MS", "0"),
            ("FAULTLINE_MODEL__ALARM_RATE", "0.5"),
            ("FAULTLINE_MODEL__ALARM_WINDOW_ROWS", "20"),
            ("FAULTLINE_MODEL__ALARM_WARMUP_ROWS", "3"),
        ],
    );
    // As `faultline serve` loads it: with the configured policy.
    let model = Arc::new(
        Model::load_dir(dir.path())
            .unwrap()
            .with_policy(&cfg.policy()),
    );
    let app = app::start(&cfg, model.clone()).await.unwrap();
    wait_ready(app.web_addr).await;
    let mut c = Client::connect(port, "reload-budget-test", &[format!("{tag}/scores")]).await;
    let (_, _, good) = rows(&model, 0);
    // Each row waits for its verdict, so each is its own micro-batch, in order.
    let mut rule_of = async |id: &str| -> String {
        c.publish(&format!("{tag}/rows"), good.replace("Known-Good", id))
            .await;
        let got = c
            .collect_until(20, |g| g.iter().any(|(_, v)| v["id"] == id))
            .await;
        let (_, v) = got.iter().find(|(_, v)| v["id"] == id).unwrap();
        v["rule"].as_str().unwrap().to_string()
    };
    let before: Vec<String> = [
        rule_of("B-1").await,
        rule_of("B-2").await,
        rule_of("B-3").await,
        rule_of("B-4").await,
    ]
    .to_vec();
    assert_eq!(before, ["warmup", "warmup", "alarm_rate", "alarm_rate"]);
    let (onnx2, card2) = second_model();
    install(dir.path(), &onnx2, &card2);
    let (code, body) = http(app.web_addr, "POST", "/api/model/reload", &[], "").await;
    assert_eq!(code, 200, "{body}");
    let after = [
        rule_of("A-1").await,
        rule_of("A-2").await,
        rule_of("A-3").await,
    ];
    assert_eq!(after, ["warmup", "warmup", "alarm_rate"]);
    app.shutdown().await.unwrap();
}

/// Model files replaced while the daemon starts (after its model was read, before the watch's
/// first look) are served: the watch took the new files for the ones in service and never
/// reloaded them until they changed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_changed_during_start_up_are_reloaded() {
    let (onnx2, card2) = second_model();
    let (app, _dir) = started_as_files_change("reload-start", &onnx2, &card2).await;
    let v2 = card2["version"].as_str().unwrap();
    let (_, last) = served_when(app.web_addr, "not swapped", |version, _| version == v2).await;
    assert_eq!(last["trigger"], "files changed during start-up");
    app.shutdown().await.unwrap();
}

/// The same for a card replaced alone (the graph unchanged, so the same version): the watch
/// compared only model.onnx's hash at start, so a new model.json waited for the next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_changed_during_start_up_is_reloaded() {
    let (onnx, mut card) = committed();
    card["threshold"] = serde_json::json!(0.5);
    let (app, _dir) = started_as_files_change("reload-card-start", &onnx, &card).await;
    served_when(app.web_addr, "not reloaded", |_, last| {
        last["trigger"] == "files changed during start-up"
    })
    .await;
    let r = http_get(app.web_addr, "/api/model").await;
    let card: Value = serde_json::from_str(r.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(card["threshold"], 0.5, "{card}");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_reloaded_and_a_half_written_model_waits_for_the_rest() {
    let dir = model_dir();
    let port = common::free_port();
    let cfg = config(
        "reload-watch",
        port,
        dir.path(),
        &[("FAULTLINE_MODEL__WATCH_MS", "100")],
    );
    let model = Arc::new(Model::load_dir(dir.path()).unwrap());
    let v1 = model.version().to_string();
    let app = app::start(&cfg, model).await.unwrap();
    wait_ready(app.web_addr).await;

    // The graph first (its card still the old one: the check fails, the old model serves)...
    let (onnx2, card2) = second_model();
    std::fs::write(dir.path().join("model.onnx"), &onnx2).unwrap();
    // Each step has a deadline of its own.
    let (version, last) =
        served_when(app.web_addr, "no reload", |_, last| last["ok"] == false).await;
    assert_eq!(version, v1);
    assert_eq!(last["trigger"], "files changed");
    // ...then its card: the next look finds a model that checks out.
    std::fs::write(
        dir.path().join("model.json"),
        serde_json::to_vec_pretty(&card2).unwrap(),
    )
    .unwrap();
    let v2 = card2["version"].as_str().unwrap();
    let (_, last) = served_when(app.web_addr, "not swapped", |version, _| version == v2).await;
    assert_eq!(last["ok"], true);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_model_cannot_be_reloaded_and_says_how_to_serve_one_that_can() {
    let cfg = common::embedded_config();
    let app = app::start(&cfg, Arc::new(Model::embedded().unwrap()))
        .await
        .unwrap();
    let (code, body) = http(app.web_addr, "POST", "/api/model/reload", &[], "").await;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("FAULTLINE_MODEL__DIR"), "{body}");
    // Said, not counted as a failed reload: the gauge (and its alert) would stay up for good, as
    // no reload can succeed without a directory; nor is it the last reload on /readyz.
    let m = http_get(app.web_addr, "/metrics").await;
    assert!(m.contains("faultline_model_reload_failing 0"), "{m}");
    assert!(
        m.contains(r#"faultline_model_reloads_total{result="failed"} 0"#),
        "{m}"
    );
    let ready = http_get(app.web_addr, "/readyz").await;
    assert!(ready.contains(r#""last_reload":null"#), "{ready}");
    app.shutdown().await.unwrap();
}

#[test]
fn sighup_reloads_the_model_of_a_running_daemon() {
    let dir = model_dir();
    let (port, web) = (common::free_port(), common::free_port());
    let log = dir.path().join("serve.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("serve")
        .env("FAULTLINE_BROKER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FAULTLINE_WEB__LISTEN", format!("127.0.0.1:{web}"))
        .env("FAULTLINE_MODEL__DIR", dir.path())
        .env("FAULTLINE_MODEL__WATCH_MS", "0")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{web}").parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (onnx2, card2) = second_model();
        install(dir.path(), &onnx2, &card2);
        let status = std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let v2 = card2["version"].as_str().unwrap();
        // The reload has a deadline of its own, not the rest of the start's.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (version, last) = served(addr).await;
            if version == v2 {
                assert_eq!(last["trigger"], "SIGHUP");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not reloaded: {last}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop the daemon"
    );
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
