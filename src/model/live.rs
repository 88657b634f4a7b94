//! The model being served, and its safe replacement while faultline runs.
//!
//! A reload (SIGHUP, `POST /api/model/reload`, or a change of the files under `[model] dir`)
//! loads the directory's graph and card with every check a start-up load makes (hashes, schema,
//! opsets, golden rows re-scored), then requires the same feature list as the model in service
//! (the bus decoder and the drift window are laid out by it). Only then is the new model swapped
//! in, atomically: the scorer takes [`LiveModel::current`] once per micro-batch, so a batch is
//! scored by one model and its messages carry that model's version. If anything fails, the old
//! model keeps serving and the reason goes to the log, `faultline_model_reloads_total{result}`
//! and the API.

use super::{Model, Policy};
use crate::metrics::Metrics;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tracing::{error, info, warn};

/// What the last reload did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReloadStatus {
    /// When it ran (RFC 3339).
    pub at: String,
    /// What asked for it: `SIGHUP`, `api` or `files changed`.
    pub trigger: String,
    /// Whether the files' model now runs: serving, or after a promotion as the shadow
    /// (`shadow_version`). False: the models that ran keep running.
    pub ok: bool,
    /// The version serving after it.
    pub version: String,
    /// The version before it.
    pub previous_version: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A reload after a promotion (`[model] dir`'s model runs as the shadow, and a reload
    /// replaces it there): the version it loaded, now the shadow. A promotion: the shadow after
    /// it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_version: Option<String>,
}

/// The versions a promotion's caller saw in place, each optional: the swap happens only if they
/// still are.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// The serving model's version.
    pub serving: Option<String>,
    /// The shadow's version.
    pub shadow: Option<String>,
}

impl Expected {
    /// Why the models in place are not the ones expected, if they are not.
    fn moved(&self, serving: &str, shadow: Option<&str>) -> Option<String> {
        let mut wrong = Vec::new();
        if let Some(want) = self.serving.as_deref().filter(|w| *w != serving) {
            wrong.push(format!("{serving} serves, not {want}"));
        }
        if let Some(want) = self.shadow.as_deref().filter(|w| Some(*w) != shadow) {
            wrong.push(match shadow {
                Some(s) => format!("{s} runs as the shadow, not {want}"),
                None => format!("no shadow runs, not {want}"),
            });
        }
        (!wrong.is_empty()).then(|| {
            format!(
                "nothing was promoted: {} (a promotion or a reload came first); look at the \
                 models again before promoting",
                wrong.join(" and ")
            )
        })
    }
}

/// The model in service, shared by the scorer, the web server and the drift task.
#[derive(Debug, Clone)]
pub struct LiveModel {
    inner: Arc<Inner>,
}

/// The serving model and the shadow beside it, swapped together.
#[derive(Debug, Clone)]
struct Serving {
    model: Arc<Model>,
    shadow: Option<Arc<Model>>,
    /// The shadow serves since a promotion (promoting again rolls back): `[model] dir`'s model
    /// is the shadow, and reloads go there.
    promoted: bool,
}

#[derive(Debug)]
struct Inner {
    current: RwLock<Serving>,
    /// Where reloads read from; `None` for the embedded model.
    dir: Option<PathBuf>,
    /// The configured decision policy (threshold override, alarm budget, explanations), applied to
    /// every model loaded.
    policy: Policy,
    metrics: Option<Arc<Metrics>>,
    /// One reload or promotion at a time (held while a model loads: seconds).
    changing: Mutex<()>,
    /// The last reload; held only to read or write it, so `/readyz` never waits for a reload.
    last: Mutex<Option<ReloadStatus>>,
    /// The last promotion, apart: one written over the last reload hid why that failed while
    /// `faultline_model_reload_failing` (and its alert) stayed up.
    last_promotion: Mutex<Option<ReloadStatus>>,
}

impl LiveModel {
    /// Serves `model`; reloads read `dir` (none: the embedded model cannot be reloaded).
    pub fn new(
        model: Arc<Model>,
        dir: Option<PathBuf>,
        policy: Policy,
        metrics: Option<Arc<Metrics>>,
    ) -> LiveModel {
        LiveModel {
            inner: Arc::new(Inner {
                current: RwLock::new(Serving {
                    model,
                    shadow: None,
                    promoted: false,
                }),
                dir,
                policy,
                metrics,
                changing: Mutex::new(()),
                last: Mutex::new(None),
                last_promotion: Mutex::new(None),
            }),
        }
    }

    /// A model that is never reloaded.
    pub fn fixed(model: Arc<Model>) -> LiveModel {
        LiveModel::new(model, None, Policy::default(), None)
    }

    /// The model in service now.
    pub fn current(&self) -> Arc<Model> {
        self.both().0
    }

    /// The model in service and the shadow model, read together (one micro-batch uses both).
    pub fn both(&self) -> (Arc<Model>, Option<Arc<Model>>) {
        let s = self.serving();
        (s.model, s.shadow)
    }

    fn serving(&self) -> Serving {
        match self.inner.current.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The shadow model, if one runs.
    pub fn shadow(&self) -> Option<Arc<Model>> {
        self.both().1
    }

    fn write(&self, f: impl FnOnce(&mut Serving)) {
        match self.inner.current.write() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Runs `shadow` beside the serving model. It must read the same features.
    pub fn set_shadow(&self, shadow: Arc<Model>) -> Result<(), String> {
        same_features(&shadow, &self.current()).map_err(|e| {
            format!(
                "the shadow model cannot run beside the serving one: {e}; a shadow must read the \
                 serving model's features in the same order"
            )
        })?;
        if let Some(m) = &self.inner.metrics {
            m.set_shadow(Some(shadow.version()));
        }
        self.write(|s| s.shadow = Some(shadow));
        Ok(())
    }

    /// Swaps the shadow and the serving model, between micro-batches: the shadow serves and the
    /// model that served becomes the shadow, so promoting again rolls back. Not `ok` (nothing
    /// changed) when no shadow runs, or when `expect` names versions that are not the ones in
    /// place (someone promoted or reloaded since the caller looked: swapping then would roll back
    /// or serve a model the caller never saw).
    pub fn promote(&self, trigger: &str, expect: &Expected) -> ReloadStatus {
        let _one_at_a_time = match self.inner.changing.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (previous, shadow) = self.both();
        let mut status = ReloadStatus {
            at: crate::clock::now_rfc3339(),
            trigger: trigger.to_string(),
            ok: false,
            version: previous.version().to_string(),
            previous_version: previous.version().to_string(),
            error: None,
            shadow_version: None,
        };
        status.shadow_version = shadow.as_ref().map(|s| s.version().to_string());
        if let Some(moved) = expect.moved(previous.version(), shadow.as_ref().map(|s| s.version()))
        {
            // Not a failed promotion: the models are fine, the caller's view is stale. Not kept
            // as the last promotion either: /readyz keeps saying which swap is in force.
            warn!(trigger, error = %moved, "A promotion was asked for models no longer in place; nothing changed.");
            status.error = Some(moved);
            return status;
        }
        let checked = match shadow {
            None => Err("no shadow model runs; set [shadow] model (FAULTLINE_SHADOW__MODEL) to a model directory".to_string()),
            Some(s) => same_features(&s, &previous)
                .map(|_| s)
                .map_err(|e| format!("the shadow model cannot be promoted: {e}")),
        };
        let shadow = match checked {
            Ok(s) => s,
            Err(e) => {
                status.error = Some(e);
                if let Some(m) = &self.inner.metrics {
                    m.model_reloads.with_label_values(&["failed"]).inc();
                }
                Self::keep(&self.inner.last_promotion, &status);
                return status;
            }
        };
        self.write(|s| {
            s.model = shadow.clone();
            s.shadow = Some(previous.clone());
            s.promoted = !s.promoted;
        });
        if let Some(m) = &self.inner.metrics {
            m.set_model(shadow.version(), shadow.threshold());
            m.set_shadow(Some(previous.version()));
            m.model_reloads.with_label_values(&["ok"]).inc();
        }
        info!(trigger, from = %previous.version(), to = %shadow.version(), threshold = shadow.threshold(), "Promoted the shadow model; new batches are scored by it, and decided at this threshold (under an alarm budget, in its warm-up and for ties at its cutoff; a challenger's own card's, or for [model] dir's model [model] threshold when set), and the previous model runs as the shadow.");
        if let Err(why) = shadow.explainable() {
            warn!(version = %shadow.version(), reason = %why, "The promoted model cannot be explained: its verdicts will carry no contributions.");
        }
        status.ok = true;
        status.version = shadow.version().to_string();
        status.shadow_version = Some(previous.version().to_string());
        Self::keep(&self.inner.last_promotion, &status);
        status
    }

    /// The directory reloads read, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }

    fn remember(&self, status: &ReloadStatus) {
        Self::keep(&self.inner.last, status);
    }

    fn keep(slot: &Mutex<Option<ReloadStatus>>, status: &ReloadStatus) {
        match slot.lock() {
            Ok(mut l) => *l = Some(status.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(status.clone()),
        }
    }

    /// What the last promotion did, if one was asked for.
    pub fn last_promotion(&self) -> Option<ReloadStatus> {
        self.inner
            .last_promotion
            .lock()
            .ok()
            .and_then(|l| l.clone())
    }

    /// What the last reload did, if one ran.
    pub fn last_reload(&self) -> Option<ReloadStatus> {
        self.inner.last.lock().ok().and_then(|l| l.clone())
    }

    /// Loads, checks and swaps in the model in `[model] dir`. Blocking (reads files, compiles the
    /// graph, re-scores the golden rows): call it off the async runtime. After a promotion the
    /// directory's model is the shadow, and the new one replaces it there: the promoted model
    /// keeps serving.
    pub fn reload(&self, trigger: &str) -> ReloadStatus {
        let _one_at_a_time = match self.inner.changing.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Nothing to reload from: said to the caller (the API answers 409), but not a failed
        // reload. Counted as one, it set faultline_model_reload_failing for good (no reload can
        // succeed without a directory), and its alert fired until a restart.
        let Some(dir) = self.inner.dir.as_deref() else {
            let serving = self.current();
            let error = "faultline has no [model] dir to reload models from; set [model] dir \
                         (FAULTLINE_MODEL__DIR) to a directory holding the model to serve"
                .to_string();
            warn!(trigger, version = %serving.version(), "{error}.");
            return ReloadStatus {
                at: crate::clock::now_rfc3339(),
                trigger: trigger.to_string(),
                ok: false,
                version: serving.version().to_string(),
                previous_version: serving.version().to_string(),
                error: Some(error),
                shadow_version: None,
            };
        };
        if self.serving().promoted {
            return self.reload_shadow(trigger, dir);
        }
        let previous = self.current();
        let outcome = self.load_checked(dir, &previous, |e| {
            format!("the new model cannot replace the one in service: {e}; a model with another feature list needs a restart")
        });
        let status = ReloadStatus {
            at: crate::clock::now_rfc3339(),
            trigger: trigger.to_string(),
            ok: outcome.is_ok(),
            version: match &outcome {
                Ok(m) => m.version().to_string(),
                Err(_) => previous.version().to_string(),
            },
            previous_version: previous.version().to_string(),
            error: outcome.as_ref().err().cloned(),
            shadow_version: None,
        };
        match outcome {
            Ok(model) => {
                if let Some(m) = &self.inner.metrics {
                    m.set_model(model.version(), model.threshold());
                    m.model_reloads.with_label_values(&["ok"]).inc();
                    m.model_reload_failing.set(0);
                }
                info!(trigger, from = %status.previous_version, to = %status.version, "Reloaded the model; new batches are scored by it.");
                self.write(|s| s.model = model);
            }
            Err(ref e) => {
                if let Some(m) = &self.inner.metrics {
                    m.model_reloads.with_label_values(&["failed"]).inc();
                    m.model_reload_failing.set(1);
                }
                error!(trigger, error = %e, version = %previous.version(), "The model reload failed; the model in service keeps serving.");
            }
        }
        self.remember(&status);
        status
    }

    /// [`Self::reload`] after a promotion: `[model] dir`'s model runs as the shadow, and the new one
    /// replaces it there (checked against the serving model's features).
    fn reload_shadow(&self, trigger: &str, dir: &Path) -> ReloadStatus {
        let (serving, shadow) = self.both();
        let outcome = self.load_checked(dir, &serving, |e| {
            format!(
                "the new model cannot run as the shadow (since a promotion, [model] dir's model runs \
                 as the shadow) beside the promoted one: {e}; a shadow must read the serving \
                 model's features in the same order"
            )
        });
        let status = ReloadStatus {
            at: crate::clock::now_rfc3339(),
            trigger: trigger.to_string(),
            ok: outcome.is_ok(),
            version: serving.version().to_string(),
            previous_version: serving.version().to_string(),
            error: outcome.as_ref().err().cloned(),
            shadow_version: outcome.as_ref().ok().map(|m| m.version().to_string()),
        };
        match outcome {
            Ok(model) => {
                if let Some(m) = &self.inner.metrics {
                    m.set_shadow(Some(model.version()));
                    m.model_reloads.with_label_values(&["ok"]).inc();
                    m.model_reload_failing.set(0);
                }
                info!(trigger, serving = %serving.version(), from = %shadow.as_ref().map_or("", |s| s.version()), to = %model.version(), "Reloaded [model] dir's model, which runs as the shadow since a promotion; the promoted model keeps serving (promote again to serve the new one).");
                self.write(|s| s.shadow = Some(model));
            }
            Err(ref e) => {
                if let Some(m) = &self.inner.metrics {
                    m.model_reloads.with_label_values(&["failed"]).inc();
                    m.model_reload_failing.set(1);
                }
                error!(trigger, error = %e, version = %serving.version(), "The model reload failed; the models in service keep running.");
            }
        }
        self.remember(&status);
        status
    }

    /// `[model] dir`'s model, loaded with every check, or why not; `mismatch` says what a feature
    /// list other than `previous`'s means where the model goes.
    fn load_checked(
        &self,
        dir: &Path,
        previous: &Model,
        mismatch: impl FnOnce(String) -> String,
    ) -> Result<Arc<Model>, String> {
        let model = Model::load_dir(dir).map_err(|e| e.to_string())?;
        let model = model.with_policy(&self.inner.policy);
        same_features(&model, previous).map_err(mismatch)?;
        // Said at start for the first model; a reload to one without them must say it too.
        if let Err(why) = model.explainable() {
            warn!(version = %model.version(), reason = %why, "The new model cannot be explained: once it serves, its verdicts will carry no contributions.");
        }
        Ok(Arc::new(model))
    }

    /// Size and modification time of the model files, to notice when they change.
    pub fn fingerprint(&self) -> Option<super::Fingerprint> {
        Some(super::files_fingerprint(self.inner.dir.as_ref()?))
    }
}

/// `Ok` when `model` reads the features `previous` reads, in the same order.
fn same_features(model: &Model, previous: &Model) -> Result<(), String> {
    if model.features() == previous.features() {
        return Ok(());
    }
    let first = model
        .features()
        .iter()
        .zip(previous.features())
        .position(|(a, b)| a != b)
        .unwrap_or(model.width().min(previous.width()));
    let name = |m: &Model| {
        m.features()
            .get(first)
            .map_or("nothing".to_string(), |f| format!("'{f}'"))
    };
    Err(format!(
        "it reads {} features and the model in service {}; they first differ at position {} \
         ({} where the model in service reads {})",
        model.width(),
        previous.width(),
        first + 1,
        name(model),
        name(previous)
    ))
}
