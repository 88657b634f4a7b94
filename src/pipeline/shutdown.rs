//! One stop signal for every task of `faultline serve`: [`Shutdown`] is held by the daemon,
//! each task holds a [`Stopping`] and ends when it fires. The order in which the stages drain
//! (source, batcher, scoring, acknowledger, then the rest) is in [`super::App::shutdown`].

use tokio::sync::watch;

/// Fires the stop signal.
#[derive(Debug)]
pub struct Shutdown(watch::Sender<bool>);

/// Observes the stop signal.
#[derive(Debug, Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(watch::channel(false).0)
    }
}

impl Shutdown {
    /// A handle for one task.
    pub fn subscribe(&self) -> Stopping {
        Stopping(self.0.subscribe())
    }

    /// Tells every task to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Stopping {
    /// Resolves once the daemon is stopping (at once if it already is).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }

    /// The signal as a watch receiver, for the stages below the pipeline (the batcher).
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}
