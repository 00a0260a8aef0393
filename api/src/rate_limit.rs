//! Per-owner rate limits on authorize and complete, and per-client-IP limits on failed
//! authentications: the GCRA (generic cell rate algorithm) of the `governor` crate, one keyed
//! limiter per policy. Each API process keeps its own state in memory (nothing is shared
//! through Redis), so a fleet of N API processes admits up to N times each rate.
//!
//! A policy with a sustained `rate` per `period` and a `burst` lets a key make `burst` calls
//! at once, then one call every `period / rate`. Its 429 advertises it, per
//! draft-ietf-httpapi-ratelimit-headers-10, as `q = burst` calls per `w` seconds, `w` being the
//! time a drained burst takes to refill (`burst × period / rate`, rounded up to whole seconds,
//! at least 1): see [`RateLimitInfo`].
//!
//! Memory: a key's state is 8 bytes plus the key; [`RateLimits::spawn_housekeeping`] drops,
//! every [`HOUSEKEEPING_INTERVAL`], the keys whose state is back to a full burst.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use kiln_shared::config::RateLimitSettings;
use kiln_shared::domain::OwnerId;
use kiln_shared::metrics::Metrics;

use crate::error::{ApiError, RateLimitInfo};

/// How often [`RateLimits::spawn_housekeeping`] forgets the keys that are back to a full burst.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(30);

/// The `policy` name of the per-client-IP limit on failed authentications.
pub const AUTH_FAILURES: &str = "auth_failures";

/// A rate-limited owner route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `POST /v1/uploads` (`rate_limits.authorize_per_second`).
    Authorize,
    /// `POST /v1/uploads/{id}/complete` (`rate_limits.complete_per_second`).
    Complete,
}

impl Policy {
    /// The policy's name in the `RateLimit-Policy` and `RateLimit` fields and in the `policy`
    /// label of `kiln_rate_limited_total`: `authorize` or `complete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Complete => "complete",
        }
    }
}

/// One policy's keyed GCRA limiter and how its 429 describes it.
struct Limiter<K: Hash + Eq + Clone> {
    policy: &'static str,
    gcra: DefaultKeyedRateLimiter<K>,
    /// `q`: the burst.
    quota: u32,
    /// `w`: seconds for a drained burst to refill.
    window_secs: u64,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `rate` calls per `period` sustained, `burst` at once (0 counts as 1); `None` when
    /// `rate` is 0 (the policy is off).
    fn new(policy: &'static str, rate: u32, period: Duration, burst: u32) -> Option<Self> {
        let quota = quota(rate, period, burst)?;
        Some(Self {
            policy,
            gcra: DefaultKeyedRateLimiter::dashmap(quota),
            quota: quota.burst_size().get(),
            window_secs: window_secs(quota),
        })
    }

    /// Counts one call of `key`: `Err` with what the 429 says when it does not conform (the
    /// call is then not counted).
    fn check(&self, key: &K) -> Result<(), RateLimitInfo> {
        self.gcra
            .check_key(key)
            .map_err(|not_until| self.info(not_until.wait_time_from(self.gcra.clock().now())))
    }

    /// The 429's description of this policy, `retry_after` from now.
    fn info(&self, retry_after: Duration) -> RateLimitInfo {
        RateLimitInfo {
            policy: self.policy,
            quota: self.quota,
            window_secs: self.window_secs,
            retry_after,
        }
    }

    /// Forgets the keys whose state is that of a fresh key (a full burst).
    fn forget_idle(&self) {
        self.gcra.retain_recent();
        self.gcra.shrink_to_fit();
    }
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("policy", &self.policy)
            .field("quota", &self.quota)
            .field("window_secs", &self.window_secs)
            .field("keys", &self.gcra.len())
            .finish()
    }
}

/// The GCRA quota of `rate` calls per `period` with `burst` at once (0 counts as 1: calls
/// evenly spaced, no burst); `None` when `rate` is 0.
fn quota(rate: u32, period: Duration, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
    Some(Quota::with_period(period / rate.get())?.allow_burst(burst))
}

/// `w` of the `RateLimit-Policy` field: the whole seconds a drained burst takes to refill,
/// rounded up, at least 1.
fn window_secs(quota: Quota) -> u64 {
    quota
        .burst_size_replenished_in()
        .as_secs_f64()
        .ceil()
        .max(1.0) as u64
}

/// The key of a client IP: an IPv4 address (IPv4-mapped IPv6 addresses included) or an IPv6
/// /64 prefix (one end site usually holds a whole /64, so its addresses count as one client).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// The API process's rate limiters (`[rate_limits]`); a policy whose rate is 0 is off.
#[derive(Default)]
pub struct RateLimits {
    /// Per owner, `authorize_per_second` with `burst`.
    authorize: Option<Limiter<OwnerId>>,
    /// Per owner, `complete_per_second` with `burst`.
    complete: Option<Limiter<OwnerId>>,
    /// Per client IP ([`client_key`]), `auth_failures_per_minute` with `auth_failures_burst`;
    /// counts 401 responses only.
    auth_failures: Option<Limiter<IpAddr>>,
    /// Client IPs over `auth_failures`, until when: their requests get 429 without running.
    blocked: DashMap<IpAddr, Instant>,
    /// Where every 429 is counted (`kiln_rate_limited_total{policy}`), once set.
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("authorize", &self.authorize)
            .field("complete", &self.complete)
            .field("auth_failures", &self.auth_failures)
            .field("blocked", &self.blocked.len())
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    /// The limiters `settings` describe: per owner, `authorize_per_second` and
    /// `complete_per_second` calls a second with `burst` at once; per client IP,
    /// `auth_failures_per_minute` failed authentications a minute with `auth_failures_burst`.
    /// A rate of 0 turns its policy off; a burst of 0 counts as 1.
    pub fn from_settings(settings: &RateLimitSettings) -> Self {
        let second = Duration::from_secs(1);
        Self {
            authorize: Limiter::new(
                Policy::Authorize.as_str(),
                settings.authorize_per_second,
                second,
                settings.burst,
            ),
            complete: Limiter::new(
                Policy::Complete.as_str(),
                settings.complete_per_second,
                second,
                settings.burst,
            ),
            auth_failures: Limiter::new(
                AUTH_FAILURES,
                settings.auth_failures_per_minute,
                Duration::from_secs(60),
                settings.auth_failures_burst,
            ),
            blocked: DashMap::new(),
            metrics: None,
        }
    }

    /// Counts every 429 in `metrics` (`kiln_rate_limited_total{policy[,owner]}`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Counts one `policy` request of `owner`.
    ///
    /// # Errors
    /// [`ApiError::RateLimited`] when the owner is over the policy's rate (the request is then
    /// not counted, and `kiln_rate_limited_total{policy}` is incremented).
    pub fn check(&self, policy: Policy, owner: &OwnerId) -> Result<(), ApiError> {
        let limiter = match policy {
            Policy::Authorize => &self.authorize,
            Policy::Complete => &self.complete,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.check(owner).map_err(|info| {
            self.record(info.policy, Some(owner.as_str()));
            ApiError::RateLimited(info)
        })
    }

    /// When `ip` is over `auth_failures`: the 429 that answers its requests until then.
    fn blocked(&self, ip: IpAddr) -> Option<RateLimitInfo> {
        let limiter = self.auth_failures.as_ref()?;
        let now = Instant::now();
        let until = *self.blocked.get(&ip)?;
        if until > now {
            return Some(limiter.info(until - now));
        }
        self.blocked.remove_if(&ip, |_, until| *until <= now);
        None
    }

    /// Counts one 401 of `ip`: `Err` with the 429 to send instead when it is over
    /// `auth_failures` (then `ip` is blocked until it conforms again).
    fn count_auth_failure(&self, ip: IpAddr) -> Result<(), RateLimitInfo> {
        let Some(limiter) = &self.auth_failures else {
            return Ok(());
        };
        limiter.check(&ip).inspect_err(|info| {
            self.blocked.insert(ip, Instant::now() + info.retry_after);
        })
    }

    /// `kiln_rate_limited_total{policy[,owner]}` + 1, when metrics are set.
    fn record(&self, policy: &str, owner: Option<&str>) {
        if let Some(m) = &self.metrics {
            m.record_rate_limited(policy, owner);
        }
    }

    /// Forgets the keys back to a full burst and the client IPs no longer blocked (their
    /// state is that of a key never seen).
    pub fn forget_idle(&self) {
        for limiter in [&self.authorize, &self.complete].into_iter().flatten() {
            limiter.forget_idle();
        }
        if let Some(limiter) = &self.auth_failures {
            limiter.forget_idle();
        }
        let now = Instant::now();
        self.blocked.retain(|_, until| *until > now);
        self.blocked.shrink_to_fit();
    }

    /// Calls [`Self::forget_idle`] every [`HOUSEKEEPING_INTERVAL`] on a Tokio task, which
    /// ends once the last `Arc` of `self` is dropped. This bounds the limiters' memory to the
    /// keys active within one interval plus one burst refill time.
    pub fn spawn_housekeeping(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let limits: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limits) = limits.upgrade() else {
                    return;
                };
                limits.forget_idle();
            }
        })
    }
}

/// Middleware: per-client-IP limit on failed authentications (`auth_failures`). Each 401
/// response counts against the client IP's `rate_limits.auth_failures_per_minute` (burst
/// `auth_failures_burst`); the 401 that goes over it is answered 429 `rate_limited` (policy
/// `auth_failures`) instead, and until the IP conforms again its requests are answered the same
/// 429 before any handler runs, whatever their token. Only `/v1/…` routes are limited:
/// `/healthz`, `/readyz`, `/metrics` and `/openapi.json` always run.
///
/// The client IP is the connection's peer address (axum's `ConnectInfo<SocketAddr>`; behind a
/// proxy, the proxy's), IPv6 addresses by /64. Without `ConnectInfo` (a router served without
/// `into_make_service_with_connect_info`) nothing is limited.
pub async fn limit_auth_failures(
    State(limits): State<Arc<RateLimits>>,
    req: Request,
    next: Next,
) -> Response {
    // Only the `/v1/` routes authenticate; health checks and scrapes are never held back.
    if !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>();
    let ip = match (&limits.auth_failures, peer) {
        (Some(_), Some(ConnectInfo(addr))) => client_key(addr.ip()),
        _ => return next.run(req).await,
    };
    if let Some(info) = limits.blocked(ip) {
        limits.record(AUTH_FAILURES, None);
        return ApiError::RateLimited(info).into_response();
    }
    let response = next.run(req).await;
    if response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    match limits.count_auth_failure(ip) {
        Ok(()) => response,
        Err(info) => {
            limits.record(AUTH_FAILURES, None);
            ApiError::RateLimited(info).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_second: u32, burst: u32) -> RateLimitSettings {
        RateLimitSettings {
            authorize_per_second: per_second,
            complete_per_second: per_second,
            burst,
            auth_failures_per_minute: 60,
            auth_failures_burst: 20,
        }
    }

    fn owner(name: &str) -> OwnerId {
        OwnerId::parse(name).unwrap()
    }

    fn rate_limited(result: Result<(), ApiError>) -> RateLimitInfo {
        match result {
            Err(ApiError::RateLimited(info)) => info,
            other => panic!("expected a 429, got {other:?}"),
        }
    }

    #[test]
    fn the_policy_is_q_burst_per_w_refill_seconds() {
        let w = |rate, period, burst| window_secs(quota(rate, period, burst).unwrap());
        let second = Duration::from_secs(1);
        // The defaults: 200 at once, refilled at 20/s in 10 s.
        assert_eq!(w(20, second, 200), 10);
        assert_eq!(w(1, second, 3), 3);
        // Rounded up, at least 1.
        assert_eq!(w(3, second, 4), 2);
        assert_eq!(w(1000, second, 1), 1);
        // 20 failures refilled at 60/min: 20 s.
        assert_eq!(w(60, Duration::from_secs(60), 20), 20);
        assert!(quota(0, second, 10).is_none());
        assert_eq!(quota(5, second, 0).unwrap().burst_size().get(), 1);
    }

    #[test]
    fn the_burst_passes_then_429_names_the_policy() {
        let limits = RateLimits::from_settings(&settings(1, 3));
        let alice = owner("alice");
        for _ in 0..3 {
            limits.check(Policy::Authorize, &alice).unwrap();
        }
        let info = rate_limited(limits.check(Policy::Authorize, &alice));
        assert_eq!(
            (info.policy, info.quota, info.window_secs),
            ("authorize", 3, 3)
        );
        assert!(info.retry_after > Duration::ZERO && info.retry_after <= Duration::from_secs(1));
        assert_eq!(info.retry_after_secs(), 1);
        let headers = info.headers().map(|(n, v)| format!("{n}: {v}"));
        assert_eq!(
            headers,
            [
                "retry-after: 1",
                "ratelimit-policy: \"authorize\";q=3;w=3",
                "ratelimit: \"authorize\";r=0;t=1",
            ]
        );
        // Other owners and the other policy have their own state.
        limits.check(Policy::Authorize, &owner("bob")).unwrap();
        limits.check(Policy::Complete, &alice).unwrap();
    }

    #[test]
    fn a_rate_of_zero_is_off() {
        let limits = RateLimits::from_settings(&settings(0, 1));
        for _ in 0..1000 {
            limits.check(Policy::Complete, &owner("alice")).unwrap();
        }
        assert!(limits.blocked("10.0.0.1".parse().unwrap()).is_none());
        assert!(
            limits
                .count_auth_failure("10.0.0.1".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn an_ip_over_its_failures_is_blocked_until_it_conforms() {
        let limits = RateLimits::from_settings(&RateLimitSettings {
            auth_failures_per_minute: 60,
            auth_failures_burst: 2,
            ..settings(0, 1)
        });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(limits.blocked(ip).is_none());
        limits.count_auth_failure(ip).unwrap();
        limits.count_auth_failure(ip).unwrap();
        let info = limits.count_auth_failure(ip).unwrap_err();
        assert_eq!(
            (info.policy, info.quota, info.window_secs),
            (AUTH_FAILURES, 2, 2)
        );
        let blocked = limits
            .blocked(ip)
            .expect("blocked after the refused failure");
        assert!(blocked.retry_after <= Duration::from_secs(1));
        assert!(limits.blocked(other).is_none());
        limits.forget_idle();
        assert!(
            limits.blocked(ip).is_some(),
            "still blocked after housekeeping"
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_prefix() {
        let key = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
    }
}
