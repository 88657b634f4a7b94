//! The state of one connection to a broker, shared between the client that owns it and
//! `/readyz`: whether it is up (for a subscriber: connected and subscribed), and why not when the
//! broker refused it (bad credentials, an untrusted certificate, a subscription it does not allow)
//! rather than being out of reach.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One connection's state; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Link {
    up: Arc<AtomicBool>,
    /// What the broker refuses this client and why, until it accepts it again.
    refused: Arc<Mutex<Option<(Refused, String)>>>,
    /// The last time the broker lost this client's session, and what that means.
    session_lost: Arc<Mutex<Option<String>>>,
    /// Why a connected publisher holds its outputs, while it does: by what it holds (an output
    /// topic), how many holds are on it and why.
    held: Arc<Mutex<std::collections::BTreeMap<String, (usize, String)>>>,
}

/// A hold on a publisher's output ([`Link::hold`]), released when dropped.
#[derive(Debug)]
pub struct Hold {
    link: Link,
    what: String,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut held = self.link.held_map();
        if let Some((count, _)) = held.get_mut(&self.what) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.what);
            }
        }
    }
}

/// What a broker refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The connection (credentials, TLS).
    Connection,
    /// The subscription (the broker answered the SUBSCRIBE with a failure code).
    Subscription,
}

impl Link {
    /// Whether the connection is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records the connection as up (which clears any refusal) or down; returns the previous
    /// state.
    pub fn set_up(&self, up: bool) -> bool {
        if up {
            *self.lock() = None;
        }
        self.up.swap(up, Ordering::Relaxed)
    }

    /// Records that the broker refused the connection, and why; returns whether this is news
    /// (there was no refusal on record), so callers can log it once rather than per retry.
    pub fn refuse(&self, reason: String) -> bool {
        self.refuse_as(Refused::Connection, reason)
    }

    /// Records that the broker refused the subscription of a connection it accepted; returns
    /// whether this is news, as [`Link::refuse`] does.
    pub fn refuse_subscription(&self, reason: String) -> bool {
        self.refuse_as(Refused::Subscription, reason)
    }

    fn refuse_as(&self, what: Refused, reason: String) -> bool {
        self.up.store(false, Ordering::Relaxed);
        self.lock().replace((what, reason)).is_none()
    }

    /// Why the broker refuses this client, if it does.
    pub fn refused(&self) -> Option<String> {
        self.lock().as_ref().map(|(_, why)| why.clone())
    }

    /// What the broker refuses this client and why, if it does.
    pub fn refusal(&self) -> Option<(Refused, String)> {
        self.lock().clone()
    }

    /// Records that the broker lost this client's session (kept, with the time, for `/readyz`).
    pub fn note_session_lost(&self, what: String) {
        let note = format!("{}: {what}", crate::clock::now_rfc3339());
        *self.session_lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(note);
    }

    /// When the broker last lost this client's session, and what that means; `None` if never.
    pub fn session_lost(&self) -> Option<String> {
        self.session_lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records that a connected publisher holds what goes to `what`, and why, until the guard
    /// is dropped (`/readyz` is not ready meanwhile). Holds on one `what` are counted: it is
    /// released when the last goes.
    pub fn hold(&self, what: &str, why: String) -> Hold {
        self.held_map()
            .entry(what.to_string())
            .or_insert((0, why))
            .0 += 1;
        Hold {
            link: self.clone(),
            what: what.to_string(),
        }
    }

    /// Why the publisher holds its outputs, while it does (one reason a held output, joined).
    pub fn held(&self) -> Option<String> {
        let held = self.held_map();
        (!held.is_empty()).then(|| {
            held.values()
                .map(|(_, why)| why.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn held_map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, (usize, String)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Refused, String)>> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_lasts_until_the_last_hold_on_any_output_is_dropped() {
        let link = Link::default();
        let scores = link.hold("scores", "scores gone".into());
        let dead = link.hold("dead", "dead gone".into());
        let again = link.hold("scores", "scores gone".into());
        assert_eq!(link.held().unwrap(), "dead gone; scores gone");
        drop(scores);
        assert_eq!(link.held().unwrap(), "dead gone; scores gone");
        drop(again);
        assert_eq!(link.held().unwrap(), "dead gone");
        drop(dead);
        assert_eq!(link.held(), None);
    }

    #[test]
    fn a_refusal_is_news_once_and_cleared_by_a_connection() {
        let link = Link::default();
        assert!(!link.is_up());
        assert!(!link.set_up(true));
        assert!(link.is_up());
        assert!(link.refuse("bad password".into()));
        assert!(!link.is_up());
        assert!(!link.refuse("bad password, again".into()));
        assert_eq!(link.refused().as_deref(), Some("bad password, again"));
        assert!(!link.set_up(true));
        assert_eq!(link.refused(), None);
        assert!(link.refuse("bad password".into()));
        assert_eq!(
            link.refusal(),
            Some((Refused::Connection, "bad password".into()))
        );
        assert!(!link.refuse_subscription("not allowed".into()));
        assert_eq!(
            link.refusal(),
            Some((Refused::Subscription, "not allowed".into()))
        );
        assert!(!link.set_up(true));
        assert_eq!(link.refusal(), None);
    }
}
