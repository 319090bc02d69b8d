//! The per-client rate limit (`serve --rate-limit`): a token bucket per client address. A
//! client over its rate gets `429 Too Many Requests` with `Retry-After`; nothing it asked for
//! is done. Registered workers' own traffic (heartbeats, takes, reports) is not counted: it is
//! paced by the judge's work, and refusing it would only make the service re-queue submissions
//! (its router has no [`limit`] layer: `Access::OwnWorker`).
//!
//! A client is its IP address (for IPv6, its /64 network, since one host may hold many
//! addresses of it). Behind a reverse proxy every request seems to come from the proxy; limit
//! there instead.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::sync::lock;

/// Buckets kept before full ones (clients quiet long enough to be back at their burst) are
/// first dropped.
const PRUNE_AT: usize = 10_000;

/// How fast one client may call the API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, on average.
    pub per_second: f64,
    /// Requests a quiet client may make at once.
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` requests a second, in bursts of as many (at least one).
    pub fn new(per_second: f64) -> Self {
        RateLimit {
            per_second,
            burst: per_second.ceil().max(1.0) as u32,
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct Buckets {
    by_client: HashMap<IpAddr, Bucket>,
    /// Size at which full buckets are dropped next: twice what was left after the last time,
    /// so many active clients cost a scan now and then, not one per request.
    prune_at: usize,
}

/// The buckets of every client seen.
pub struct Limiter {
    limit: RateLimit,
    buckets: Mutex<Buckets>,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        Limiter {
            limit,
            buckets: Mutex::new(Buckets {
                by_client: HashMap::new(),
                prune_at: PRUNE_AT,
            }),
        }
    }

    /// Takes one token of `client`'s bucket at `now`: `Ok`, or how long until there is one.
    pub fn admit(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let RateLimit { per_second, burst } = self.limit;
        let burst = f64::from(burst);
        let mut buckets = lock(&self.buckets);
        let buckets = &mut *buckets;
        if buckets.by_client.len() >= buckets.prune_at {
            buckets.by_client.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < burst
            });
            buckets.prune_at = (buckets.by_client.len() * 2).max(PRUNE_AT);
        }
        let bucket = buckets.by_client.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

/// The client a request counts against: its peer's address, IPv6 reduced to the /64 (and
/// IPv4-mapped IPv6 to IPv4). A request without one (served in process) is one client.
fn client(request: &Request) -> IpAddr {
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return IpAddr::from([0, 0, 0, 0]);
    };
    match peer.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// Middleware of every router but the workers' own (`Access::is_limited`):
/// refuses a request over its client's rate with 429 and `Retry-After`.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limiter) = &state.limiter else {
        return next.run(request).await;
    };
    let client = client(&request);
    match limiter.admit(client, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::debug!(%client, ?wait, "rate limited");
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "tooManyRequests",
                format!(
                    "more than {} requests a second from this client; slow down",
                    limiter.limit.per_second
                ),
            );
            e.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = Limiter::new(RateLimit {
            per_second: 2.0,
            burst: 3,
        });
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit(a, t0), Ok(()));
        }
        let wait = limiter.admit(a, t0).expect_err("over the burst");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        // Another client has its own bucket.
        assert_eq!(limiter.admit(b, t0), Ok(()));
        // Half a second later one token came back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.admit(a, t1), Ok(()));
        assert!(limiter.admit(a, t1).is_err());
        // A long pause refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.admit(a, t2), Ok(()));
        }
        assert!(limiter.admit(a, t2).is_err());
    }

    #[test]
    fn quiet_clients_are_forgotten_and_busy_ones_kept() {
        let limiter = Limiter::new(RateLimit {
            per_second: 1.0,
            burst: 1,
        });
        let client = |i: u32| IpAddr::from(i.to_be_bytes());
        let busy = IpAddr::from([10, 1, 1, 1]);
        let t0 = Instant::now();
        assert_eq!(limiter.admit(busy, t0), Ok(()));
        for i in 1..PRUNE_AT as u32 {
            assert_eq!(limiter.admit(client(i), t0), Ok(()));
        }
        // Half a second on no bucket is back at its burst: the scan drops none, and the next
        // one waits until the map has doubled.
        let t1 = t0 + Duration::from_millis(500);
        assert!(limiter.admit(busy, t1).is_err());
        {
            let buckets = limiter.buckets.lock().unwrap();
            assert_eq!(
                (buckets.by_client.len(), buckets.prune_at),
                (PRUNE_AT, 2 * PRUNE_AT)
            );
        }
        // Much later the busy client calls again, and new clients fill the map up to the next
        // scan: the clients quiet since t0 are dropped, the busy and the new ones kept.
        let t2 = t0 + Duration::from_secs(10);
        assert_eq!(limiter.admit(busy, t2), Ok(()));
        let mut i = 1 << 24;
        while limiter.buckets.lock().unwrap().prune_at == 2 * PRUNE_AT {
            assert_eq!(limiter.admit(client(i), t2), Ok(()));
            i += 1;
        }
        let buckets = limiter.buckets.lock().unwrap();
        assert!(!buckets.by_client.contains_key(&client(1)));
        assert!(buckets.by_client.contains_key(&busy));
        assert_eq!(buckets.by_client.len(), (i - (1 << 24)) as usize + 1);
    }

    #[test]
    fn ipv6_clients_are_their_64_network() {
        let request = |ip: &str| {
            let mut r = Request::new(axum::body::Body::empty());
            r.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 1)));
            client(&r)
        };
        assert_eq!(
            request("2001:db8:1:2:aaaa::1"),
            request("2001:db8:1:2:bbbb::9")
        );
        assert_ne!(request("2001:db8:1:2::1"), request("2001:db8:1:3::1"));
        assert_eq!(request("::ffff:192.0.2.7"), request("192.0.2.7"));
    }
}
