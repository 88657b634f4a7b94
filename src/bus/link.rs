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
    /// Why a connected publisher holds its outputs, while it does.
    held: Arc<Mutex<Option<String>>>,
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

    /// Records that a connected publisher holds its outputs, and why (`/readyz` is not ready
    /// meanwhile).
    pub fn hold(&self, why: String) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// The publisher delivers again.
    pub fn release(&self) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Why the publisher holds its outputs, while it does.
    pub fn held(&self) -> Option<String> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Refused, String)>> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
