//! Token-bucket rate limits: one bucket per client address plus one global bucket, so
//! neither one address nor many addresses together can walk a secret space (session keys,
//! passwords) quickly.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Bucket {
            tokens: capacity,
            last: now,
        }
    }

    /// Refills at `per_sec` up to `capacity`, then takes one token if there is one.
    fn take(&mut self, capacity: f64, per_sec: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Address,
    Global,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_address: f64,
    global: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    addresses: HashMap<IpAddr, Bucket>,
    global: Bucket,
    last_sweep: Instant,
}

impl RateLimiter {
    /// `per_address` and `global` are attempts per minute (also the burst size).
    pub fn per_minute(per_address: u32, global: u32) -> Self {
        let now = Instant::now();
        RateLimiter {
            per_address: per_address as f64,
            global: global as f64,
            state: Mutex::new(State {
                addresses: HashMap::new(),
                global: Bucket::full(global as f64, now),
                last_sweep: now,
            }),
        }
    }

    /// Takes one attempt for `addr`; refused attempts do not consume the global budget.
    pub fn check(&self, addr: IpAddr) -> Result<(), Limited> {
        self.check_at(addr, Instant::now())
    }

    fn check_at(&self, addr: IpAddr, now: Instant) -> Result<(), Limited> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(s.last_sweep).as_secs() >= 60 {
            // Buckets idle for a minute are full again: forget them to bound memory.
            let cap = self.per_address;
            s.addresses.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * cap / 60.0 < cap
            });
            s.last_sweep = now;
        }
        let cap = self.per_address;
        let bucket = s
            .addresses
            .entry(addr)
            .or_insert_with(|| Bucket::full(cap, now));
        if !bucket.take(cap, cap / 60.0, now) {
            return Err(Limited::Address);
        }
        let g = self.global;
        if !s.global.take(g, g / 60.0, now) {
            return Err(Limited::Global);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_address_then_global() {
        let rl = RateLimiter::per_minute(3, 5);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(rl.check_at(a, t0), Ok(()));
        }
        assert_eq!(rl.check_at(a, t0), Err(Limited::Address));
        assert_eq!(rl.check_at(b, t0), Ok(()));
        assert_eq!(rl.check_at(b, t0), Ok(()));
        assert_eq!(rl.check_at(b, t0), Err(Limited::Global));
        // 20 s later one token per address is back (3/min), and 1.66 globally.
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(rl.check_at(a, t1), Ok(()));
    }
}
