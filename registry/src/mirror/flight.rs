//! Single flight: concurrent misses of the same blob or manifest fetch it
//! from the upstream once. The first caller of a key leads (it fetches);
//! the others follow: they wait for the leader's outcome, then read what it
//! stored. A leader that is dropped without an outcome (its task panicked)
//! fails its followers rather than leaving them waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::error::UpstreamError;

type Outcome = Option<Result<(), UpstreamError>>;

/// The fetches in flight, by key.
#[derive(Default)]
pub struct Flights {
    running: Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>,
}

/// Whether this caller fetches, or waits for the one that does.
pub enum Joined {
    /// Fetch, then [`Leader::finish`].
    Leader(Leader),
    /// Wait with [`Follower::wait`].
    Follower(Follower),
}

/// The caller that fetches.
pub struct Leader {
    key: String,
    running: Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>,
    tx: watch::Sender<Outcome>,
}

/// A caller waiting for the leader.
pub struct Follower {
    rx: watch::Receiver<Outcome>,
}

impl Flights {
    /// Join the flight of `key`, leading it when none runs.
    pub fn join(&self, key: String) -> Joined {
        let mut running = self.running.lock().expect("flights lock");
        if let Some(rx) = running.get(&key) {
            return Joined::Follower(Follower { rx: rx.clone() });
        }
        let (tx, rx) = watch::channel(None);
        running.insert(key.clone(), rx);
        Joined::Leader(Leader {
            key,
            running: self.running.clone(),
            tx,
        })
    }

    /// How many fetches run now.
    pub fn len(&self) -> usize {
        self.running.lock().expect("flights lock").len()
    }

    /// Whether no fetch runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Leader {
    /// Tell the followers how the fetch ended (what it stored is visible).
    pub fn finish(self, outcome: Result<(), UpstreamError>) {
        self.running.lock().expect("flights lock").remove(&self.key);
        let _ = self.tx.send(Some(outcome));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // After finish() the key is gone already; a dropped leader fails its followers.
        let mut running = self.running.lock().expect("flights lock");
        if self.tx.borrow().is_none() {
            running.remove(&self.key);
            let _ = self.tx.send(Some(Err(UpstreamError::Unavailable {
                reason: "the fetch was abandoned".into(),
            })));
        }
    }
}

impl Follower {
    /// The leader's outcome.
    pub async fn wait(mut self) -> Result<(), UpstreamError> {
        match self.rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
            Err(_) => Err(UpstreamError::Unavailable {
                reason: "the fetch was abandoned".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_outcome() {
        let flights = Flights::default();
        let Joined::Leader(leader) = flights.join("a".into()) else {
            panic!("first caller must lead")
        };
        let Joined::Follower(follower) = flights.join("a".into()) else {
            panic!("second caller must follow")
        };
        assert!(matches!(flights.join("b".into()), Joined::Leader(_)));
        leader.finish(Err(UpstreamError::NotFound));
        assert!(matches!(
            follower.wait().await,
            Err(UpstreamError::NotFound)
        ));
        assert!(matches!(flights.join("a".into()), Joined::Leader(_)));
    }

    #[tokio::test]
    async fn a_dropped_leader_fails_its_followers() {
        let flights = Flights::default();
        let leader = flights.join("a".into());
        let Joined::Follower(follower) = flights.join("a".into()) else {
            panic!("second caller must follow")
        };
        drop(leader);
        assert!(follower.wait().await.is_err());
        assert!(flights.is_empty());
    }
}
