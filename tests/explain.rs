//! The model's own explanations: exact TreeSHAP against XGBoost's `pred_contribs`, local accuracy on
//! the committed model (synthetic rows, and the real wafers where they are), sensors the model does
//! not read never listed, and a listed sensor moving P(fault) the way its contribution says.

mod common;

use faultline::model::{onnx, synthetic, Explain, Model};

fn logit(p: f32) -> f64 {
    let p = p as f64;
    (p / (1.0 - p)).ln()
}

#[test]
fn contributions_equal_xgboost_pred_contribs_on_the_fixture_graph() {
    let dir = common::repo().join("tests/fixtures/graphs");
    let graph = onnx::compile(&std::fs::read(dir.join("xgb_contribs.onnx")).unwrap()).unwrap();
    let shap = graph.shap.as_ref().expect("the fixture carries node cover");
    let mut r = csv::Reader::from_path(dir.join("xgb_contribs.csv")).unwrap();
    let num = |s: &str| {
        if s.is_empty() {
            f32::NAN
        } else {
            s.parse::<f64>().unwrap() as f32
        }
    };
    let mut checked = 0;
    for rec in r.records() {
        let rec = rec.unwrap();
        let row: Vec<f32> = (0..8).map(|i| num(&rec[i])).collect();
        let p = num(&rec[8]);
        let want: Vec<f64> = (9..17).map(|i| num(&rec[i]) as f64).collect();
        let bias = num(&rec[17]) as f64;
        let mut phi = vec![0.0; 8];
        shap.contributions(&row, &mut phi);
        let base = graph.base_margin as f64 + shap.expected();
        assert!((base - bias).abs() < 1e-4, "bias {base} vs xgboost {bias}");
        for (f, (a, b)) in phi.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() < 1e-4,
                "row {checked} feature {f}: {a} vs xgboost {b}"
            );
        }
        assert!((base + phi.iter().sum::<f64>() - logit(p)).abs() < 1e-4);
        checked += 1;
    }
    assert_eq!(checked, 200);
}

/// Local accuracy, untouched unread sensors, and sorted, non-zero lists, for a batch of rows.
fn check_rows(model: &Model, values: &[f32]) -> usize {
    let w = model.width();
    let read: std::collections::HashSet<&str> = model.card().training["features_used"]
        .as_array()
        .expect("the card lists the sensors the model reads")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut probs = vec![0.0; values.len() / w];
    model.probabilities(values, &mut probs);
    for (row, p) in values.chunks(w).zip(&probs) {
        let (base, phi) = model
            .contributions(row)
            .expect("the committed model is explainable");
        let sum = base + phi.iter().sum::<f64>();
        assert!(
            (sum - logit(*p)).abs() < 1e-4,
            "base + contributions = {sum}, logit(P) = {}",
            logit(*p)
        );
        for (i, c) in phi.iter().enumerate() {
            if !read.contains(model.features()[i].as_str()) {
                assert_eq!(
                    *c,
                    0.0,
                    "{} is not read but moved the score",
                    model.features()[i]
                );
            }
        }
        let e = model.explain(row, 5).unwrap();
        assert!(e.contributions.len() <= 5);
        for pair in e.contributions.windows(2) {
            assert!(pair[0].contribution.abs() >= pair[1].contribution.abs());
        }
        for c in &e.contributions {
            assert!(c.contribution != 0.0 && read.contains(model.features()[c.index].as_str()));
        }
        let listed: f64 = e.contributions.iter().map(|c| c.contribution as f64).sum();
        assert!((e.base as f64 + listed + e.rest as f64 - logit(*p)).abs() < 1e-3);
    }
    probs.len()
}

#[test]
fn committed_model_contributions_add_up_to_its_log_odds() {
    let model = Model::embedded().unwrap();
    let rows = synthetic::rows(model.card(), 300, 11);
    assert_eq!(check_rows(&model, &rows.values), 300);
    if let Some(dir) = common::data_dir("committed_model_contributions_add_up_to_its_log_odds") {
        let batch = common::read_wafers(&dir.join("wafer/wafer_train.csv"), &model);
        assert_eq!(check_rows(&model, &batch.values), 1145);
    }
}

/// README's figures on the shipped model's explanations, recomputed on the real training wafers:
/// how many it flags, the largest single contribution, and the share of a flagged wafer's rise
/// from `base` that the five listed sensors carry (median and quartiles). A retrained model that
/// changes them fails here until README says what is so.
#[test]
fn the_readmes_figures_on_explanations_hold_on_the_training_wafers() {
    let Some(dir) =
        common::data_dir("the_readmes_figures_on_explanations_hold_on_the_training_wafers")
    else {
        return;
    };
    let model = Model::embedded().unwrap();
    let batch = common::read_wafers(&dir.join("wafer/wafer_train.csv"), &model);
    let w = model.width();
    let mut probs = vec![0.0; batch.len()];
    model.probabilities(&batch.values, &mut probs);
    let (mut largest, mut shares) = (0.0f64, Vec::new());
    for (row, &p) in batch.values.chunks(w).zip(&probs) {
        let (base, phi) = model.contributions(row).unwrap();
        largest = phi.iter().fold(largest, |m, c| m.max(c.abs()));
        if p >= model.threshold() {
            let e = model.explain(row, 5).unwrap();
            let listed: f64 = e.contributions.iter().map(|c| c.contribution as f64).sum();
            shares.push(listed / (logit(p) - base));
        }
    }
    shares.sort_by(f64::total_cmp);
    // numpy's default percentile: linear between the two nearest.
    let at = |q: f64| {
        let x = q * (shares.len() - 1) as f64;
        let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
        shares[lo] + (shares[hi] - shares[lo]) * (x - lo as f64)
    };
    let pct = |x: f64| (x * 100.0).round() as i64;
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let said = format!(
        "on the {} training wafers it flags, a median of {}% of the rise from `base` to the wafer's log-odds (quartiles {}% and {}%)",
        shares.len(),
        pct(at(0.5)),
        pct(at(0.25)),
        pct(at(0.75))
    );
    assert!(
        readme.contains(&said),
        "README should say: {said} ({:?})",
        [at(0.25), at(0.5), at(0.75)]
    );
    let bound = format!(
        "none moves the log-odds by more than {:.2})",
        (largest * 100.0).ceil() / 100.0
    );
    assert!(
        readme.contains(&bound),
        "README should say: {bound} (largest {largest})"
    );
}

#[test]
fn a_listed_sensor_moves_p_fault_the_way_its_contribution_says() {
    let model = Model::embedded().unwrap();
    let rows = synthetic::rows(model.card(), 200, 12);
    let w = model.width();
    let mut moved = 0;
    for row in rows.values.chunks(w) {
        let e = model.explain(row, 3).unwrap();
        let mut p = [0.0f32];
        model.probabilities(row, &mut p);
        for c in &e.contributions {
            // Put the sensor back on its training median: its contribution goes to what the median
            // contributes, and P(fault) must move by exactly that change in log-odds.
            let mut changed = row.to_vec();
            changed[c.index] = model.card().sensors[c.index].median.unwrap() as f32;
            let (_, phi2) = model.contributions(&changed).unwrap();
            let delta = phi2[c.index] - c.contribution as f64;
            let mut p2 = [0.0f32];
            model.probabilities(&changed, &mut p2);
            let observed = logit(p2[0]) - logit(p[0]);
            assert!(
                (observed - delta).abs() < 1e-3,
                "{}: log-odds moved {observed}, contributions say {delta}",
                model.features()[c.index]
            );
            if delta.abs() > 1e-3 {
                assert_eq!(observed > 0.0, delta > 0.0);
                moved += 1;
            }
        }
    }
    assert!(moved > 50, "only {moved} perturbations moved the score");
}

/// The committed model and 400 synthetic rows, with the threshold set so that the top quarter of
/// them (synthetic rows sit near the training medians) are faults.
fn top_quarter_flagged() -> (Model, faultline::row::RowBatch) {
    let model = Model::embedded().unwrap();
    let rows = synthetic::rows(model.card(), 400, 13);
    let mut p = vec![0.0; rows.len()];
    model.probabilities(&rows.values, &mut p);
    p.sort_by(f32::total_cmp);
    (model.with_threshold(p[300]), rows)
}

#[test]
fn faults_carry_explanations_and_unread_sensors_never_appear() {
    let (model, rows) = top_quarter_flagged();
    let verdicts = model.score(&rows);
    let faults: Vec<_> = verdicts.iter().filter(|v| v.fault).collect();
    assert!(!faults.is_empty());
    for v in &verdicts {
        assert_eq!(v.explanation.is_some(), v.fault, "faults only, by default");
    }
    for v in faults {
        let e = v.explanation.as_ref().unwrap();
        assert_eq!(e.contributions.len(), 5);
    }
}

#[test]
fn unusual_sensors_on_faults_only_leave_every_fault_as_it_was() {
    let (model, rows) = top_quarter_flagged();
    // By default every verdict lists its unusual sensors (the CLI, the page, a scores topic).
    let every = model.score(&rows);
    let faults = every.iter().filter(|v| v.fault).count();
    assert!(faults > 0 && faults < every.len());
    assert!(every.iter().all(|v| v.unusual_sensors.len() == 3));
    // The stream without a scores topic publishes faults alone and skips the others' lists.
    let explain = Explain {
        unusual_all_rows: false,
        ..model.explain_settings()
    };
    let lean = model.score_explaining(&rows, &mut model.decider(), explain);
    assert_eq!(lean.len(), every.len());
    for (a, b) in every.iter().zip(&lean) {
        assert_eq!(
            (&a.id, a.probability, a.fault),
            (&b.id, b.probability, b.fault)
        );
        assert_eq!(a.explanation, b.explanation);
        if a.fault {
            assert_eq!(a.unusual_sensors, b.unusual_sensors, "{}", a.id);
        } else {
            assert!(b.unusual_sensors.is_empty(), "{}", a.id);
        }
    }
}

#[test]
fn a_graph_without_node_cover_scores_alike_and_says_it_cannot_explain() {
    let (onnx, card) = common::committed();
    let (bytes, card) = common::rewrite(&onnx, &card, |m| {
        let graph = m.graph.as_mut().unwrap();
        for node in &mut graph.node {
            node.attribute.retain(|a| a.name != "nodes_hitrates");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.onnx"), &bytes).unwrap();
    std::fs::write(dir.path().join("model.json"), card.to_string()).unwrap();
    // The same trees: the committed golden rows score alike.
    std::fs::copy(
        common::repo().join("models/wafer-fault/golden.csv"),
        dir.path().join("golden.csv"),
    )
    .unwrap();
    let stripped = Model::load_dir(dir.path()).unwrap();
    assert!(stripped
        .explainable()
        .unwrap_err()
        .contains("nodes_hitrates"));
    let model = Model::embedded().unwrap();
    let rows = synthetic::rows(model.card(), 50, 14);
    let (mut a, mut b) = (vec![0.0; 50], vec![0.0; 50]);
    model.probabilities(&rows.values, &mut a);
    stripped.probabilities(&rows.values, &mut b);
    assert_eq!(a, b, "node cover never changes a score");
    let stripped = stripped.with_threshold(0.0001);
    assert!(stripped
        .score(&rows)
        .iter()
        .all(|v| v.fault && v.explanation.is_none()));
    // `faultline model` says so.
    let o = common::faultline(&["model", "--model", dir.path().to_str().unwrap()]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("explains   nothing: the graph carries no node cover"),
        "{text}"
    );
    let o = common::faultline(&["model"]);
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .contains("explains   faults, with exact TreeSHAP"));
}
