//! Request limits: token buckets (per client address for the request rate,
//! per user and per address for failed logins) and the byte budget of
//! manifest bodies held in memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Token buckets keyed by client address (or any other key).
pub struct RateLimiter<K = IpAddr> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `rate` requests per second on average, bursts of up to `burst`.
    pub fn new(rate: f64, burst: f64) -> RateLimiter<K> {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `key`; on refusal, the seconds until one is available.
    pub fn check(&self, key: K) -> Result<(), u64> {
        self.update(key, true)
    }

    /// Whether `key` has a token left, without taking it; on refusal, the
    /// seconds until one is available.
    pub fn peek(&self, key: K) -> Result<(), u64> {
        self.update(key, false)
    }

    fn update(&self, key: K, take: bool) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter poisoned");
        if buckets.len() > 100_000 {
            // Forget clients whose bucket has refilled: they lose nothing.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        if !take && !buckets.contains_key(&key) {
            return Ok(());
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            if take {
                *tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// Why a manifest body could not be held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetError {
    /// The budget stayed spent until the body's deadline.
    Exhausted,
}

/// A budget of bytes shared by every manifest body being received: a request
/// takes its bytes as they arrive and gives them back when it ends.
#[derive(Clone)]
pub struct ByteBudget {
    bytes: Arc<Semaphore>,
}

impl ByteBudget {
    /// A budget of `bytes` in all.
    pub fn new(bytes: usize) -> ByteBudget {
        ByteBudget {
            bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Take `n` more bytes into `held`, waiting at most until `deadline`.
    pub async fn take(
        &self,
        held: &mut Option<OwnedSemaphorePermit>,
        n: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), BudgetError> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| BudgetError::Exhausted)?;
        let more = tokio::time::timeout_at(deadline, self.bytes.clone().acquire_many_owned(n))
            .await
            .map_err(|_| BudgetError::Exhausted)?
            .map_err(|_| BudgetError::Exhausted)?;
        match held {
            Some(permit) => permit.merge(more),
            None => *held = Some(more),
        }
        Ok(())
    }

    /// Bytes not taken now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// The deadline of a body that must arrive whole within `limit`.
pub fn deadline(limit: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_with_retry_after() {
        let limiter: RateLimiter = RateLimiter::new(1.0, 3.0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip), Ok(()));
        }
        assert_eq!(limiter.check(ip), Err(1));
        assert_eq!(
            limiter.check("127.0.0.2".parse().unwrap()),
            Ok(()),
            "per client"
        );
    }

    #[test]
    fn peek_does_not_take() {
        let limiter: RateLimiter<String> = RateLimiter::new(0.001, 1.0);
        assert_eq!(limiter.peek("u".into()), Ok(()));
        assert_eq!(limiter.peek("u".into()), Ok(()));
        assert_eq!(limiter.check("u".into()), Ok(()));
        assert!(limiter.peek("u".into()).is_err());
    }

    #[tokio::test]
    async fn the_byte_budget_is_shared_and_given_back() {
        let budget = ByteBudget::new(10);
        let soon = deadline(Duration::from_millis(50));
        let mut a = None;
        budget.take(&mut a, 6, soon).await.unwrap();
        budget.take(&mut a, 2, soon).await.unwrap();
        let mut b = None;
        assert_eq!(
            budget.take(&mut b, 3, soon).await,
            Err(BudgetError::Exhausted)
        );
        drop(a);
        assert_eq!(budget.available(), 10);
        budget
            .take(&mut b, 3, deadline(Duration::from_millis(50)))
            .await
            .unwrap();
    }
}
