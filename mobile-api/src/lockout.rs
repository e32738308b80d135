//! Lockout of clients that present refused credentials too often, by peer address: the
//! operator API counts unknown bearer tokens and feed tickets, the mobile gateway forged or
//! malformed device tokens at `hello`. A locked-out client's refused credentials are answered
//! "try again later" (HTTP 429 with `Retry-After`; at the gateway a `rate_limited` error and
//! close 1013) for [`Lockout::LOCK`]. A valid credential is always taken: a dispatch centre
//! or a mobile carrier's NAT puts many clients behind one address, and one misconfigured
//! screen must not lock the others out; the credentials are beyond guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Unknown tokens per client within [`Lockout::WINDOW`] before it is locked out, by default
/// (`lockout_failures` in the configuration).
pub const DEFAULT_LOCKOUT_FAILURES: u32 = 20;

/// Clients that present unknown tokens too often, by peer address.
#[derive(Debug)]
pub struct Lockout {
    clients: Mutex<HashMap<IpAddr, Failures>>,
    max_failures: u32,
}

impl Default for Lockout {
    fn default() -> Self {
        Self::new(DEFAULT_LOCKOUT_FAILURES)
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
    locked_until: Option<Instant>,
}

impl Lockout {
    /// The window in which `max_failures` failures lock a client out.
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// How long a client stays locked out.
    pub const LOCK: Duration = Duration::from_secs(60);
    /// Clients remembered at most; past it, entries whose window has passed are dropped.
    const MAX_CLIENTS: usize = 65_536;

    /// A lockout after `max_failures` unknown tokens within [`Lockout::WINDOW`].
    pub fn new(max_failures: u32) -> Self {
        Self {
            clients: Mutex::default(),
            max_failures: max_failures.max(1),
        }
    }

    /// Whether `client` is locked out now: the seconds it has to wait.
    pub fn locked(&self, client: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let until = clients.get(&client)?.locked_until?;
        (until > now).then(|| (until - now).as_secs().max(1))
    }

    /// Records a refused token from `client`; answers the seconds it is locked out for when
    /// this failure locked it.
    pub fn failed(&self, client: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= Self::MAX_CLIENTS {
            clients.retain(|_, f| {
                now.duration_since(f.since) < Self::WINDOW
                    || f.locked_until.is_some_and(|u| u > now)
            });
        }
        let f = clients.entry(client).or_insert(Failures {
            since: now,
            count: 0,
            locked_until: None,
        });
        if now.duration_since(f.since) >= Self::WINDOW && f.locked_until.is_none_or(|u| u <= now) {
            *f = Failures {
                since: now,
                count: 0,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= self.max_failures && f.locked_until.is_none_or(|u| u <= now) {
            f.locked_until = Some(now + Self::LOCK);
            return Some(Self::LOCK.as_secs());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_locked_out_after_repeated_failures_and_others_are_not() {
        let lockout = Lockout::default();
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 1..DEFAULT_LOCKOUT_FAILURES {
            assert_eq!(lockout.failed(attacker), None);
            assert_eq!(lockout.locked(attacker), None);
        }
        assert_eq!(lockout.failed(attacker), Some(Lockout::LOCK.as_secs()));
        let wait = lockout.locked(attacker).expect("locked");
        assert!(wait >= 1 && wait <= Lockout::LOCK.as_secs());
        assert_eq!(lockout.locked(other), None);
    }
}
