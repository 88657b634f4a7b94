//! The in-memory join of scored rows and late labels, which live quality is computed from.
//!
//! Bounded three ways: the last `max_rows` scored rows (their probabilities, not their features),
//! labels waiting for their row (`max_pending`, each for at most `pending_ttl_ms`), and the last
//! `window` joined wafers. Rebuilt from the on-disk store at start.

use crate::quality::{self, Quality};
use crate::row::labels::Label;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A map by wafer id. Every scored row is inserted and looked up once (and evicted once), so the
/// hash is on the stream's path: foldhash's quality variant hashes a short id several times faster
/// than SipHash. It is seeded per process but, by its own account, only minimally resistant to ids
/// crafted to collide; ids come from the plant's own producers, and the map is bounded.
type ById<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// The scores one row got: (model version, P(fault)), the serving model's first.
pub type Scores = Vec<(Arc<str>, f32)>;

/// A recently scored row: id, when (ms since the epoch), and the score of the model that served
/// then (its version, P(fault)).
pub type Recent<'a> = (&'a str, i64, &'a (Arc<str>, f32));

/// A scored row, as far as the join needs it.
#[derive(Debug, Clone)]
struct Scored {
    /// When it was scored (ms since the epoch); tells a row from its later redelivery.
    at_ms: i64,
    scores: Scores,
    /// The verdict published for it (the serving model's, the first of `scores`).
    fault: bool,
    /// Whether a label joined it (it entered the window, and may have left it since).
    joined: bool,
}

/// A labelled wafer with its scores.
#[derive(Debug, Clone)]
struct Joined {
    id: String,
    faulty: bool,
    scores: Scores,
    /// The verdict published for it, by the first of `scores`.
    fault: bool,
}

impl Joined {
    /// The P(fault) model `version` gave this wafer, if it scored it.
    fn score(&self, version: &str) -> Option<f32> {
        self.scores
            .iter()
            .find(|(v, _)| &**v == version)
            .map(|(_, p)| *p)
    }
}

/// The labelled wafers a model's quality is computed from ([`Ledger::model_rows`]).
#[derive(Debug, Clone)]
pub enum QualityRows {
    /// (P(fault), faulty), counted at the threshold.
    AtThreshold(Vec<(f32, bool)>, f32),
    /// (P(fault), faulty, flagged): the verdicts published.
    Verdicts(Vec<(f32, bool, bool)>),
}

impl QualityRows {
    /// The figures, with their intervals.
    pub fn compute(&self) -> Quality {
        self.compute_with(quality::Intervals::Bootstrap)
    }

    /// The figures, with intervals or not (the gauges have none to show).
    pub fn compute_with(&self, intervals: quality::Intervals) -> Quality {
        match self {
            QualityRows::AtThreshold(pairs, threshold) => {
                quality::compute_with(pairs, *threshold, intervals)
            }
            QualityRows::Verdicts(rows) => quality::compute_verdicts_with(rows, intervals),
        }
    }
}

/// What a label did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOutcome {
    /// Its row was scored: joined.
    Joined,
    /// Its row was joined before; the label replaced the earlier one.
    Relabelled,
    /// Its row has not been scored (yet): kept for a while.
    Pending,
}

/// Label counts since start (and since the store's history was read back).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LabelCounts {
    /// Labels accepted.
    pub received: u64,
    /// Labels joined to a scored row (at once or after waiting).
    pub joined: u64,
    /// Labels waiting for their row now.
    pub pending: u64,
    /// Labels whose row never came within the waiting time (or that were pushed out).
    pub expired: u64,
}

/// Sizes of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerLimits {
    /// Scored rows remembered.
    pub max_rows: usize,
    /// Labelled wafers live quality is computed over.
    pub window: usize,
    /// Labels waiting for their row.
    pub max_pending: usize,
    /// How long a label waits for its row, in ms.
    pub pending_ttl_ms: i64,
}

/// The last `window` labelled wafers, oldest first, found by id without a search: a label
/// upload of 100,000 wafers used to compare each id with the whole window under the ledger's
/// lock (about 10^8 comparisons, while scoring waited for the lock).
#[derive(Debug)]
struct Window {
    wafers: VecDeque<Joined>,
    /// Each wafer's place, counted from the first wafer ever pushed; `first` is the front's.
    at: ById<String, u64>,
    first: u64,
    /// Changed whenever a wafer may have: unique in the process (see [`Ledger::window_stamp`]).
    stamp: u64,
}

impl Default for Window {
    fn default() -> Window {
        Window {
            wafers: VecDeque::new(),
            at: ById::default(),
            first: 0,
            stamp: next_stamp(),
        }
    }
}

/// A number no window of this process has had before.
fn next_stamp() -> u64 {
    static STAMPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    STAMPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Window {
    /// A wafer to change (the window's stamp moves).
    fn get_mut(&mut self, id: &str) -> Option<&mut Joined> {
        let at = *self.at.get(id)?;
        self.stamp = next_stamp();
        self.wafers.get_mut(usize::try_from(at - self.first).ok()?)
    }

    /// Appends a wafer not in the window, then drops the oldest beyond `window`.
    fn push(&mut self, wafer: Joined, window: usize) {
        self.stamp = next_stamp();
        self.at
            .insert(wafer.id.clone(), self.first + self.wafers.len() as u64);
        self.wafers.push_back(wafer);
        while self.wafers.len() > window {
            if let Some(old) = self.wafers.pop_front() {
                self.at.remove(&old.id);
            }
            self.first += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Joined> {
        self.wafers.iter()
    }

    fn len(&self) -> usize {
        self.wafers.len()
    }
}

/// The join.
#[derive(Debug)]
pub struct Ledger {
    limits: LedgerLimits,
    /// The scored rows by id; the id's one copy is shared with `order`.
    scored: ById<Arc<str>, Scored>,
    /// Scoring order, for eviction: (id, at_ms); stale entries (re-scored rows) are skipped.
    order: VecDeque<(Arc<str>, i64)>,
    joined: Window,
    pending: ById<String, (Label, i64)>,
    /// Arrival order of the pending labels: (id, received_ms).
    pending_order: VecDeque<(String, i64)>,
    counts: LabelCounts,
}

impl Ledger {
    /// An empty ledger.
    pub fn new(limits: LedgerLimits) -> Ledger {
        Ledger {
            limits,
            scored: ById::default(),
            order: VecDeque::new(),
            joined: Window::default(),
            pending: ById::default(),
            pending_order: VecDeque::new(),
            counts: LabelCounts::default(),
        }
    }

    /// Remembers a scored row and the verdict published for it (`fault`, by the serving model,
    /// the first of `scores`); joins the label that waited for it, if any.
    /// Returns true when a label that was waiting for this row joined it.
    pub fn scored(&mut self, id: &str, at_ms: i64, scores: Scores, fault: bool) -> bool {
        let id: Arc<str> = Arc::from(id);
        self.order.push_back((id.clone(), at_ms));
        let again = self.scored.insert(
            id.clone(),
            Scored {
                at_ms,
                scores,
                fault,
                joined: false,
            },
        );
        if again.is_some_and(|old| old.joined) {
            // Scored again after its label joined (a redelivery): the window takes the last
            // scoring, as the store's files and the export do. Rare, so the search is fine.
            if let Some(now) = self.scored.get_mut(&*id) {
                now.joined = true;
                if let Some(j) = self.joined.get_mut(&id) {
                    j.scores = now.scores.clone();
                    j.fault = now.fault;
                }
            }
        }
        while self.scored.len() > self.limits.max_rows {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self.scored.get(&*old).is_some_and(|s| s.at_ms == at) {
                self.scored.remove(&*old);
            }
        }
        // Keep the eviction queue from filling with stale entries of re-scored rows.
        if self.order.len() > 2 * self.limits.max_rows.max(1) {
            let scored = &self.scored;
            self.order
                .retain(|(id, at)| scored.get(&**id).is_some_and(|s| s.at_ms == *at));
        }
        if let Some((label, _)) = self.pending.remove(&*id) {
            self.counts.pending = self.pending.len() as u64;
            self.join(label);
            return true;
        }
        false
    }

    /// Applies a label received at `now_ms`.
    pub fn label(&mut self, label: Label, now_ms: i64) -> LabelOutcome {
        self.counts.received += 1;
        if self.scored.contains_key(label.id.as_str()) {
            return self.join(label);
        }
        if let Some(j) = self.joined.get_mut(&label.id) {
            // Its row was evicted, but the wafer is still in the window: relabel it.
            j.faulty = label.faulty;
            return LabelOutcome::Relabelled;
        }
        self.pending_order.push_back((label.id.clone(), now_ms));
        self.pending.insert(label.id.clone(), (label, now_ms));
        // Entries of labels that joined their row or were replaced stay in the arrival order
        // until they would expire (a day): dropped here once they outnumber the limit, or labels
        // that usually come before their rows would grow it without bound.
        if self.pending_order.len() > 2 * self.limits.max_pending.max(1) {
            let pending = &self.pending;
            self.pending_order
                .retain(|(id, at)| pending.get(id).is_some_and(|(_, t)| t == at));
        }
        while self.pending.len() > self.limits.max_pending {
            match self.pending_order.pop_front() {
                Some((id, at)) => {
                    if self.pending.get(&id).is_some_and(|(_, t)| *t == at) {
                        self.pending.remove(&id);
                        self.counts.expired += 1;
                    }
                }
                None => break,
            }
        }
        self.counts.pending = self.pending.len() as u64;
        LabelOutcome::Pending
    }

    fn join(&mut self, label: Label) -> LabelOutcome {
        let (scores, fault, before) = self
            .scored
            .get_mut(label.id.as_str())
            .map(|s| {
                (
                    s.scores.clone(),
                    s.fault,
                    std::mem::replace(&mut s.joined, true),
                )
            })
            .unwrap_or_default();
        if let Some(j) = self.joined.get_mut(&label.id) {
            j.faulty = label.faulty;
            j.scores = scores;
            j.fault = fault;
            return LabelOutcome::Relabelled;
        }
        if before {
            // Joined before and since pushed out of the window by newer wafers: a wafer keeps
            // its first place, so a new label for it neither joins again nor re-enters.
            return LabelOutcome::Relabelled;
        }
        self.counts.joined += 1;
        self.joined.push(
            Joined {
                id: label.id,
                faulty: label.faulty,
                scores,
                fault,
            },
            self.limits.window,
        );
        LabelOutcome::Joined
    }

    /// Drops the labels that waited longer than the waiting time; returns how many.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let mut expired = 0;
        while let Some((id, at)) = self.pending_order.front() {
            if now_ms - at < self.limits.pending_ttl_ms {
                break;
            }
            if self.pending.get(id).is_some_and(|(_, t)| t == at) {
                self.pending.remove(id);
                expired += 1;
            }
            self.pending_order.pop_front();
        }
        self.counts.expired += expired as u64;
        self.counts.pending = self.pending.len() as u64;
        expired as usize
    }

    /// Quality of model `version` over the last `window` joined wafers it scored.
    pub fn quality(&self, version: &str, threshold: f32) -> Quality {
        self.model_rows(version, threshold, false).compute()
    }

    /// Live quality of a model as `/api/quality` and the gauges give it: of the verdicts it
    /// published when `by_verdicts` (a serving model under an alarm budget), else at `threshold`.
    pub fn model_quality(&self, version: &str, threshold: f32, by_verdicts: bool) -> Quality {
        self.model_rows(version, threshold, by_verdicts).compute()
    }

    /// Quality of the verdicts model `version` published, over the last `window` joined wafers
    /// it scored as the serving model: ranks by its P(fault), counts by what it flagged (an
    /// alarm budget's moving threshold, which no one threshold reproduces).
    pub fn verdict_quality(&self, version: &str) -> Quality {
        self.model_rows(version, 0.0, true).compute()
    }

    /// What [`Ledger::model_quality`] computes from, to compute it after the ledger's lock is
    /// let go (its intervals resample the window many times; the scorer takes the lock for every
    /// batch).
    pub fn model_rows(&self, version: &str, threshold: f32, by_verdicts: bool) -> QualityRows {
        if by_verdicts {
            QualityRows::Verdicts(
                self.joined
                    .iter()
                    .filter_map(|j| match j.scores.first() {
                        Some((v, p)) if &**v == version => Some((*p, j.faulty, j.fault)),
                        _ => None,
                    })
                    .collect(),
            )
        } else {
            QualityRows::AtThreshold(
                self.joined
                    .iter()
                    .filter_map(|j| Some((j.score(version)?, j.faulty)))
                    .collect(),
                threshold,
            )
        }
    }

    /// A number that changes whenever the window of joined wafers may have (a wafer joined,
    /// relabelled or scored again), and that no other ledger of the process has had: figures
    /// computed from the window stay right while it is the same.
    pub fn window_stamp(&self) -> u64 {
        self.joined.stamp
    }

    /// The joined wafers both `a` and `b` scored: (P(fault) by `a`, by `b`, faulty), for
    /// [`quality::compare`].
    pub fn both_scored(&self, a: &str, b: &str) -> Vec<(f32, f32, bool)> {
        self.joined
            .iter()
            .filter_map(|j| Some((j.score(a)?, j.score(b)?, j.faulty)))
            .collect()
    }

    /// Label counts.
    pub fn counts(&self) -> LabelCounts {
        self.counts.clone()
    }

    /// Scored rows remembered.
    pub fn rows(&self) -> usize {
        self.scored.len()
    }

    /// The last `n` rows scored, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Recent<'_>> {
        // An id twice in one micro-batch leaves two entries with the same time: listed once.
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<_> = self
            .order
            .iter()
            .rev()
            .filter_map(|(id, at)| {
                let s = self.scored.get(&**id).filter(|s| s.at_ms == *at)?;
                seen.insert(&**id).then_some(())?;
                Some((&**id, *at, s.scores.first()?))
            })
            .take(n)
            .collect();
        out.reverse();
        out
    }

    /// Labelled wafers in the window.
    pub fn window_len(&self) -> usize {
        self.joined.len()
    }

    /// The configured window.
    pub fn limits(&self) -> LedgerLimits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LedgerLimits {
        LedgerLimits {
            max_rows: 3,
            window: 2,
            max_pending: 2,
            pending_ttl_ms: 1000,
        }
    }

    fn label(id: &str, faulty: bool) -> Label {
        Label {
            id: id.into(),
            faulty,
            at: None,
        }
    }

    fn v(p: f32) -> Scores {
        vec![(Arc::from("m1"), p), (Arc::from("m2"), 1.0 - p)]
    }

    #[test]
    fn labels_join_now_or_when_their_row_comes() {
        let mut l = Ledger::new(limits());
        l.scored("a", 1, v(0.9), true);
        assert_eq!(l.label(label("a", true), 10), LabelOutcome::Joined);
        assert_eq!(l.label(label("b", false), 10), LabelOutcome::Pending);
        assert_eq!(l.counts().pending, 1);
        l.scored("b", 2, v(0.1), false);
        assert_eq!(l.counts().pending, 0);
        assert_eq!(l.counts().joined, 2);
        let q = l.quality("m1", 0.5);
        assert_eq!((q.labelled, q.roc_auc), (2, Some(1.0)));
        // The shadow scored the same wafers the other way round.
        assert_eq!(l.quality("m2", 0.5).roc_auc, Some(0.0));
        assert_eq!(l.quality("m3", 0.5).labelled, 0);
    }

    /// The window's stamp moves on every change to the joined wafers (live quality's figures are
    /// kept while it stays) and on nothing else; no two ledgers share one.
    #[test]
    fn the_window_stamp_moves_whenever_the_joined_wafers_may_change() {
        let mut l = Ledger::new(limits());
        let mut last = l.window_stamp();
        assert_ne!(Ledger::new(limits()).window_stamp(), last);
        let mut moved = |l: &Ledger| {
            let now = l.window_stamp();
            std::mem::replace(&mut last, now) != now
        };
        l.scored("a", 1, v(0.9), true);
        assert!(!moved(&l), "a row scored, no label");
        assert_eq!(l.label(label("b", false), 2), LabelOutcome::Pending);
        assert!(!moved(&l), "a label waiting");
        assert_eq!(l.label(label("a", true), 3), LabelOutcome::Joined);
        assert!(moved(&l), "a label joined its row");
        l.scored("b", 4, v(0.1), false);
        assert!(moved(&l), "a row joined the label that waited");
        assert_eq!(l.label(label("a", false), 5), LabelOutcome::Relabelled);
        assert!(moved(&l), "relabelled");
        l.scored("a", 6, v(0.3), false);
        assert!(moved(&l), "scored again after its label joined");
        // Rows evicted (max_rows 3): a wafer still in the window is relabelled all the same.
        for (i, id) in ["c", "d", "e"].iter().enumerate() {
            l.scored(id, 7 + i as i64, v(0.5), false);
        }
        assert!(!moved(&l), "rows scored and evicted");
        assert_eq!(l.label(label("a", true), 10), LabelOutcome::Relabelled);
        assert!(moved(&l), "relabelled after its row was evicted");
    }

    #[test]
    fn recent_rows_come_oldest_first_once_each() {
        let mut l = Ledger::new(limits());
        l.scored("a", 1, v(0.9), true);
        l.scored("b", 2, v(0.2), false);
        l.scored("a", 3, v(0.4), false); // re-scored: only its latest score counts
        let recent: Vec<(&str, i64, f32)> = l
            .recent(10)
            .into_iter()
            .map(|(id, at, (_, p))| (id, at, *p))
            .collect();
        assert_eq!(recent, [("b", 2, 0.2), ("a", 3, 0.4)]);
        assert_eq!(l.recent(1).len(), 1);
        assert_eq!(l.recent(1)[0].0, "a");
        // The same id twice in one micro-batch (one time): listed once, its last score.
        l.scored("c", 4, v(0.7), true);
        l.scored("c", 4, v(0.6), true);
        let last: Vec<(&str, f32)> = l
            .recent(2)
            .into_iter()
            .map(|(id, _, (_, p))| (id, *p))
            .collect();
        assert_eq!(last, [("a", 0.4), ("c", 0.6)]);
    }

    #[test]
    fn bounded_everywhere() {
        let mut l = Ledger::new(limits());
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            l.scored(id, i as i64, v(0.5), true);
        }
        assert_eq!(l.rows(), 3);
        // "a" was evicted: its label waits.
        assert_eq!(l.label(label("a", true), 0), LabelOutcome::Pending);
        for id in ["b", "c", "d"] {
            l.label(label(id, false), 0);
        }
        assert_eq!(l.window_len(), 2);
        l.label(label("x", true), 0);
        l.label(label("y", true), 5);
        assert_eq!(l.counts().pending, 2);
        assert_eq!(l.counts().expired, 1, "the oldest waiting label made room");
        assert_eq!(l.expire(1004), 1);
        assert_eq!(l.counts().pending, 1);
        assert_eq!(l.expire(1005), 1);
        assert_eq!(l.counts().expired, 3);
    }

    #[test]
    fn labels_that_come_before_their_rows_keep_the_waiting_order_bounded() {
        let mut l = Ledger::new(limits());
        for i in 0..1000 {
            let id = format!("w{i}");
            assert_eq!(l.label(label(&id, true), i), LabelOutcome::Pending);
            // A second label for a waiting wafer replaces the first.
            l.label(label(&id, false), i);
            assert!(l.scored(&id, i, v(0.5), true));
            assert!(
                l.pending_order.len() <= 2 * limits().max_pending + 1,
                "{} entries after {i}",
                l.pending_order.len()
            );
        }
        assert_eq!(l.counts().pending, 0);
        assert_eq!(l.counts().expired, 0);
        // What still waits is kept, in order.
        l.label(label("late", true), 2000);
        l.label(label("later", true), 2001);
        assert_eq!(l.expire(2000 + limits().pending_ttl_ms), 1);
        assert_eq!(l.counts().pending, 1);
    }

    /// Under an alarm budget the verdicts are not `P >= threshold`: their quality counts what
    /// was flagged, for the wafers the version scored as the serving model, and ranks by P.
    #[test]
    fn verdict_quality_counts_the_published_verdicts() {
        let mut l = Ledger::new(LedgerLimits {
            window: 10,
            ..limits()
        });
        // Low scores, the top one flagged by a budget (a fixed 0.5 would flag none).
        l.scored("a", 1, v(0.2), true);
        l.scored("b", 2, v(0.1), false);
        l.scored("c", 3, v(0.15), false);
        for (id, faulty) in [("a", true), ("b", false), ("c", true)] {
            l.label(label(id, faulty), 5);
        }
        let q = l.verdict_quality("m1");
        assert_eq!((q.labelled, q.positives), (3, 2));
        assert_eq!((q.true_positives, q.false_positives), (1, 0));
        assert_eq!((q.false_negatives, q.true_negatives), (1, 1));
        assert_eq!((q.recall, q.false_alarm_rate), (Some(0.5), Some(0.0)));
        assert_eq!(
            (q.threshold, q.basis),
            (None, crate::quality::Basis::Verdicts)
        );
        assert_eq!(q.roc_auc, l.quality("m1", 0.5).roc_auc);
        assert_eq!(l.quality("m1", 0.5).true_positives, 0);
        // The shadow published no verdict: none of its rows count.
        assert_eq!(l.verdict_quality("m2").labelled, 0);
    }

    /// A wafer's place in the window is its first label's; its figures are its last scoring's
    /// and its last label's.
    #[test]
    fn a_wafer_keeps_its_first_place_and_its_last_scoring() {
        let mut l = Ledger::new(LedgerLimits {
            max_rows: 10,
            ..limits()
        });
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            l.scored(id, i as i64, v(0.9), true);
        }
        // Window of two: a, then b; c pushes a out.
        for id in ["a", "b", "c"] {
            assert_eq!(l.label(label(id, true), 0), LabelOutcome::Joined);
        }
        assert_eq!(l.counts().joined, 3);
        // a's row is still remembered: a new label for it is a relabel, not a new join, and it
        // does not push b out.
        assert_eq!(l.label(label("a", false), 0), LabelOutcome::Relabelled);
        assert_eq!(l.counts().joined, 3);
        assert_eq!(l.quality("m1", 0.5).positives, 2, "b and c, both faulty");
        // b delivered again and scored differently: the window holds its last scoring.
        l.scored("b", 5, v(0.1), false);
        let q = l.verdict_quality("m1");
        assert_eq!((q.true_positives, q.false_negatives), (1, 1));
        // And a label that joined before the row came again still counts once.
        l.scored("c", 6, v(0.9), true);
        assert_eq!(l.label(label("c", false), 0), LabelOutcome::Relabelled);
        assert_eq!(l.counts().joined, 3);
    }

    #[test]
    fn the_window_finds_its_wafers_by_id_after_many_passed_through() {
        let mut l = Ledger::new(LedgerLimits {
            max_rows: 1,
            ..limits()
        });
        for i in 0..50 {
            l.scored(&format!("w{i}"), i, v(0.9), true);
            assert_eq!(
                l.label(label(&format!("w{i}"), true), i),
                LabelOutcome::Joined
            );
        }
        assert_eq!(l.window_len(), 2);
        assert_eq!(l.quality("m1", 0.5).positives, 2);
        // w49's row is remembered, w48's only in the window: both are relabelled in place.
        assert_eq!(l.label(label("w49", false), 60), LabelOutcome::Relabelled);
        assert_eq!(l.label(label("w48", false), 60), LabelOutcome::Relabelled);
        let q = l.quality("m1", 0.5);
        assert_eq!((q.labelled, q.positives), (2, 0));
        // w47 left both: its label waits for a row.
        assert_eq!(l.label(label("w47", false), 60), LabelOutcome::Pending);
        assert_eq!(l.counts().joined, 50);
    }

    #[test]
    fn a_second_label_replaces_the_first() {
        let mut l = Ledger::new(limits());
        l.scored("a", 1, v(0.9), true);
        l.label(label("a", false), 0);
        assert_eq!(l.label(label("a", true), 0), LabelOutcome::Relabelled);
        let q = l.quality("m1", 0.5);
        assert_eq!((q.labelled, q.positives), (1, 1));
        // A redelivered row keeps one entry.
        l.scored("a", 2, v(0.8), true);
        assert_eq!(l.rows(), 1);
    }
}
