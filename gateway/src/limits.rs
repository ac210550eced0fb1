//! Per-key limits: what one key holder may take of the gateway, so one runaway client cannot
//! starve the others.
//!
//! Three limits, each with a default for every key (`ORBIT_KEY_RATE`, `ORBIT_KEY_BURST`,
//! `ORBIT_KEY_CONCURRENT`, `ORBIT_KEY_WEBSOCKETS`) and an override per key in the keys file
//! (`rate=`, `burst=`, `concurrent=`, `websockets=`):
//! - a token bucket of requests: `rate` per second, up to `burst` at once; past it, 429 with
//!   `Retry-After` saying when the next token comes;
//! - requests in flight at once (a `/run` waiting for its function counts until it answers);
//! - live relay sockets open at once.
//!
//! Limits follow the key's name: a key whose limits change in the file starts afresh with the
//! new ones. With auth off there are no keys, so only the gateway-wide bounds apply (body
//! size, jobs per batch, points per series).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::AuthError;

/// One key's limits; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyLimits {
    /// Requests per second, refilled continuously.
    pub rate: f64,
    /// Requests that may come at once after a quiet spell.
    pub burst: u32,
    /// Requests in flight at once.
    pub concurrent: u32,
    /// Live relay sockets open at once.
    pub websockets: u32,
}

impl KeyLimits {
    /// The defaults for every key, from the environment.
    pub fn from_env() -> Result<Self, AuthError> {
        let read = |name: &str, default: f64| -> Result<f64, AuthError> {
            match std::env::var(name) {
                Ok(text) if !text.is_empty() => non_negative(&text).ok_or_else(|| {
                    AuthError::Config(format!("{name}={text:?}: expected a number >= 0"))
                }),
                _ => Ok(default),
            }
        };
        let rate = read("ORBIT_KEY_RATE", 1000.0)?;
        Ok(Self {
            rate,
            burst: read("ORBIT_KEY_BURST", rate.max(1.0))? as u32,
            concurrent: read("ORBIT_KEY_CONCURRENT", 256.0)? as u32,
            websockets: read("ORBIT_KEY_WEBSOCKETS", 8.0)? as u32,
        })
    }

    pub fn unlimited() -> Self {
        Self {
            rate: 0.0,
            burst: 0,
            concurrent: 0,
            websockets: 0,
        }
    }
}

/// A finite number >= 0, as a limit is written.
fn non_negative(text: &str) -> Option<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|value| value.is_finite() && *value >= 0.0)
}

/// A key's own settings in the keys file; what it leaves out comes from the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitOverrides {
    pub rate: Option<f64>,
    pub burst: Option<u32>,
    pub concurrent: Option<u32>,
    pub websockets: Option<u32>,
}

impl LimitOverrides {
    /// Reads `rate=10`, `burst=20`, `concurrent=4`, `websockets=2` (any of them, any order).
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Self, AuthError> {
        let mut overrides = Self::default();
        for word in words {
            let bad = || {
                AuthError::Config(format!(
                    "{word:?}: expected rate=<per second>, burst=<n>, concurrent=<n> or \
                     websockets=<n> (0: unlimited)"
                ))
            };
            let (name, value) = word.split_once('=').ok_or_else(bad)?;
            let count = || value.parse::<u32>().map_err(|_| bad());
            match name {
                "rate" => overrides.rate = Some(non_negative(value).ok_or_else(bad)?),
                "burst" => overrides.burst = Some(count()?),
                "concurrent" => overrides.concurrent = Some(count()?),
                "websockets" => overrides.websockets = Some(count()?),
                _ => return Err(bad()),
            }
        }
        Ok(overrides)
    }

    /// The words `parse` reads back.
    pub fn words(&self) -> Vec<String> {
        let mut words = Vec::new();
        if let Some(rate) = self.rate {
            words.push(format!("rate={rate}"));
        }
        if let Some(burst) = self.burst {
            words.push(format!("burst={burst}"));
        }
        if let Some(concurrent) = self.concurrent {
            words.push(format!("concurrent={concurrent}"));
        }
        if let Some(websockets) = self.websockets {
            words.push(format!("websockets={websockets}"));
        }
        words
    }

    pub fn over(&self, defaults: KeyLimits) -> KeyLimits {
        let rate = self.rate.unwrap_or(defaults.rate);
        KeyLimits {
            rate,
            // A key given only a rate gets a burst of one second of it.
            burst: self.burst.unwrap_or(if self.rate.is_some() {
                rate.max(1.0) as u32
            } else {
                defaults.burst
            }),
            concurrent: self.concurrent.unwrap_or(defaults.concurrent),
            websockets: self.websockets.unwrap_or(defaults.websockets),
        }
    }
}

/// Why a request was held back.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Over the request rate; a token comes after this long.
    Rate { limit: f64, retry_after: Duration },
    /// As many requests in flight as the key may have.
    Concurrent { limit: u32 },
    /// As many relay sockets open as the key may have.
    WebSockets { limit: u32 },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Rate { .. } => "rate",
            Refusal::Concurrent { .. } => "concurrent",
            Refusal::WebSockets { .. } => "websockets",
        }
    }

    /// Whole seconds for `Retry-After`, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::Rate { retry_after, .. } => retry_after.as_secs_f64().ceil().max(1.0) as u64,
            _ => 1,
        }
    }

    pub fn message(&self, key: &str) -> String {
        match self {
            Refusal::Rate { limit, .. } => {
                format!("key {key:?} is over its rate of {limit} requests per second")
            }
            Refusal::Concurrent { limit } => {
                format!("key {key:?} already has {limit} requests in flight, its limit")
            }
            Refusal::WebSockets { limit } => {
                format!("key {key:?} already has {limit} relay sockets open, its limit")
            }
        }
    }
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// One key's live counters.
#[derive(Debug)]
struct KeyState {
    limits: KeyLimits,
    bucket: Mutex<Bucket>,
    inflight: Arc<Semaphore>,
    sockets: Arc<Semaphore>,
}

impl KeyState {
    fn new(limits: KeyLimits) -> Self {
        let permits = |n: u32| Arc::new(Semaphore::new(n as usize));
        Self {
            limits,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limits.burst.max(1)),
                refilled: Instant::now(),
            }),
            inflight: permits(limits.concurrent),
            sockets: permits(limits.websockets),
        }
    }

    fn take_token(&self, now: Instant) -> Result<(), Refusal> {
        let rate = self.limits.rate;
        if rate <= 0.0 {
            return Ok(());
        }
        let Ok(mut bucket) = self.bucket.lock() else {
            return Ok(());
        };
        let capacity = f64::from(self.limits.burst.max(1));
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Refusal::Rate {
                limit: rate,
                retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / rate),
            })
        }
    }
}

/// What a request holds while it runs: its in-flight slot, and for the relay its socket slot
/// (handed to the connection, which keeps it until the socket closes).
#[derive(Debug, Default)]
pub struct Admitted {
    pub inflight: Option<OwnedSemaphorePermit>,
    pub socket: Option<OwnedSemaphorePermit>,
}

/// The limits of every key seen, by name.
#[derive(Debug)]
pub struct Limits {
    pub defaults: KeyLimits,
    keys: Mutex<HashMap<String, Arc<KeyState>>>,
}

impl Limits {
    pub fn new(defaults: KeyLimits) -> Self {
        Self {
            defaults,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn state(&self, name: &str, limits: KeyLimits) -> Arc<KeyState> {
        let Ok(mut keys) = self.keys.lock() else {
            return Arc::new(KeyState::new(limits));
        };
        match keys.get(name) {
            Some(state) if state.limits == limits => state.clone(),
            _ => {
                let state = Arc::new(KeyState::new(limits));
                keys.insert(name.to_string(), state.clone());
                state
            }
        }
    }

    /// Admits one request of key `name`, or says why not. `socket`: it opens a relay socket.
    pub fn admit(
        &self,
        name: &str,
        overrides: &LimitOverrides,
        socket: bool,
    ) -> Result<Admitted, Refusal> {
        let limits = overrides.over(self.defaults);
        let state = self.state(name, limits);
        state.take_token(Instant::now())?;
        let slot = |semaphore: &Arc<Semaphore>, limit: u32| -> Result<_, ()> {
            if limit == 0 {
                return Ok(None);
            }
            semaphore
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| ())
        };
        let inflight =
            slot(&state.inflight, limits.concurrent).map_err(|()| Refusal::Concurrent {
                limit: limits.concurrent,
            })?;
        let socket = if socket {
            slot(&state.sockets, limits.websockets).map_err(|()| Refusal::WebSockets {
                limit: limits.websockets,
            })?
        } else {
            None
        };
        Ok(Admitted { inflight, socket })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: u32, concurrent: u32, websockets: u32) -> KeyLimits {
        KeyLimits {
            rate,
            burst,
            concurrent,
            websockets,
        }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let state = KeyState::new(limits(10.0, 3, 0, 0));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(state.take_token(start).is_ok());
        }
        let Err(Refusal::Rate { retry_after, .. }) = state.take_token(start) else {
            panic!("the fourth request at once is over the burst");
        };
        assert!(retry_after <= Duration::from_millis(100));
        assert!(state.take_token(start + Duration::from_millis(100)).is_ok());
        assert!(state
            .take_token(start + Duration::from_millis(100))
            .is_err());
        // A quiet spell refills up to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(state.take_token(later).is_ok());
        }
        assert!(state.take_token(later).is_err());
    }

    #[test]
    fn slots_come_back_when_dropped() {
        let limits = Limits::new(limits(0.0, 0, 1, 1));
        let none = LimitOverrides::default();
        let first = limits.admit("a", &none, true).expect("a free slot");
        assert_eq!(
            limits.admit("a", &none, false).unwrap_err(),
            Refusal::Concurrent { limit: 1 }
        );
        assert!(limits.admit("b", &none, false).is_ok(), "keys are apart");
        drop(first.inflight);
        assert_eq!(
            limits.admit("a", &none, true).unwrap_err(),
            Refusal::WebSockets { limit: 1 }
        );
        drop(first.socket);
        assert!(limits.admit("a", &none, true).is_ok());
    }

    #[test]
    fn overrides_round_trip_and_fill_from_the_defaults() {
        let overrides = LimitOverrides::parse(["rate=2.5", "websockets=1"]).unwrap();
        assert_eq!(
            LimitOverrides::parse(overrides.words().iter().map(String::as_str)).unwrap(),
            overrides
        );
        let effective = overrides.over(limits(1000.0, 1000, 256, 8));
        assert_eq!(effective, limits(2.5, 2, 256, 1));
        assert!(LimitOverrides::parse(["rate=-1"]).is_err());
        assert!(LimitOverrides::parse(["speed=3"]).is_err());
        assert!(LimitOverrides::parse(["concurrent"]).is_err());
    }
}
