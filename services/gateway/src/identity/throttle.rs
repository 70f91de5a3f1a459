//! Login and registration throttles, shared by every gateway replica through the store.
//!
//! Argon2 makes one guess expensive for the service, not for the guesser; the throttle makes
//! guessing slow for the guesser. Logins are throttled per account and per client address,
//! each by a count of failures that is forgotten `forget_after` after the last one:
//!
//! - The first `free_failures` failures cost nothing.
//! - Past them an attempt needs a turn, and a failure locks the key for
//!   `base_lockout × 2^(failures − free_failures − 1)`, at most `max_lockout`.
//!   So one account can be guessed about a dozen times an hour, and a locked account or address
//!   is refused with 429 + `Retry-After` before anything is hashed.
//! - A success resets the account (not the address: a guesser that owns one account must not
//!   clear its address by logging in to it between guesses).
//!
//! An attempt counts as a failure from the moment it starts until it proves otherwise, and past
//! the free failures only the attempt that claims the key's lock (`set_nx`, atomic across
//! replicas) goes on: a burst of concurrent guesses gets one evaluated, not one per connection.
//! An answer that says nothing about the password (auth overloaded, a bad request) is undone.
//! Registrations are capped per client address in a fixed window.
//!
//! Keys are per account (a digest of the normalised email, whether or not the account exists,
//! so the throttle tells nothing about which emails are registered) and per client address,
//! as [`ClientAddr`] sees it behind `trusted_proxies`.
//!
//! The throttle fails open: when the store errs or does not answer within `store_timeout` the
//! attempt goes on unthrottled (counted in `gateway_throttle_store_errors_total`). Logins
//! keep working through a Redis outage; what guards them meanwhile is the auth service's
//! bounded hashing.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use mesh_core::store::{Bounded, Store, StoreResult};
use serde::{Deserialize, Serialize};

pub use crate::lockouts::SeenLocks;

use crate::error::ApiError;
use crate::state::AppState;

/// The limits of the login and registration throttles.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Failed logins per account (every address together). Default: 5 free failures, then
    /// 1s doubling up to 15m, forgotten 1h after the last failure.
    pub login_per_account: FailureLimit,
    /// Failed logins per client address (every account together); more free failures than per
    /// account, since many people may share one address. Default: 20 free, then 1s doubling up
    /// to 15m, forgotten after 1h.
    pub login_per_address: FailureLimit,
    /// Registrations per client address. Default: 20 per 1h.
    pub register_per_address: AttemptLimit,
    /// Time allowed for one throttle operation on the store before the throttle gives up and
    /// lets the attempt through (fail open); the throttle then leaves the store alone for a
    /// second (the store tier's rest). Default: 250ms.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub store_timeout: Duration,
    /// How long a refused attempt waits before its 429 (at most what is left of the lockout).
    /// A guesser that does not wait for `Retry-After` is held to one guess per connection per
    /// this long instead of a refusal per millisecond: a flood's rate is bounded by its own
    /// concurrency, and the gateway's cores stay with the other users. Default: 500ms.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub refusal_delay: Duration,
}

/// Failures allowed free, then a lockout that doubles with every further failure.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FailureLimit {
    /// Failures before any lockout; `0` locks from the first failure. Default: 5 (account) /
    /// 20 (address).
    pub free_failures: u32,
    /// Lockout after the first failure past the free ones. Default: 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub base_lockout: Duration,
    /// The longest lockout; doubling stops here. Default: 15m.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub max_lockout: Duration,
    /// Failures are forgotten this long after the latest one. Default: 1h.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub forget_after: Duration,
}

/// At most `per_window` attempts in a fixed window that starts at the first one.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AttemptLimit {
    /// Attempts per window; `0` turns the limit off. Default: 20.
    pub per_window: u32,
    /// The window `per_window` counts over (fixed windows). Default: 1h.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            login_per_account: FailureLimit::default(),
            login_per_address: FailureLimit { free_failures: 20, ..FailureLimit::default() },
            register_per_address: AttemptLimit::default(),
            store_timeout: Duration::from_millis(250),
            refusal_delay: Duration::from_millis(500),
        }
    }
}

impl Default for FailureLimit {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_lockout: Duration::from_secs(1),
            max_lockout: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
        }
    }
}

impl Default for AttemptLimit {
    fn default() -> Self {
        Self { per_window: 20, window: Duration::from_secs(3600) }
    }
}

// === impl FailureLimit ===

impl FailureLimit {
    /// The lockout after `failures` failures: none within the free ones, then
    /// `base_lockout × 2^(failures − free − 1)`, capped at `max_lockout`.
    pub fn lockout(&self, failures: i64) -> Option<Duration> {
        let past = failures - i64::from(self.free_failures);
        if past <= 0 {
            return None;
        }
        // 2^31 × any base is past every sane cap already; the shift stays in range.
        let factor = 1u32 << (past - 1).min(31) as u32;
        Some(self.base_lockout.saturating_mul(factor).min(self.max_lockout))
    }
}

/// The client's address: the TCP peer, or who a trusted proxy (the router) says it forwarded
/// for (`trusted_proxies`). A request without a peer (a test driving the app in-process) came
/// from inside this machine, so it counts as loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |ConnectInfo(addr)| addr.ip());
        let client = state.cfg.trusted_proxies.client_addr(peer, &parts.headers);
        // Counted as the mesh counts clients: an IPv6 client by its /64.
        Ok(Self(mesh_core::forwarded::client_key(client)))
    }
}

/// The throttle over one gateway's store. Built per request: all of its state is in the store
/// (and what it saw of it, in [`SeenLocks`]).
#[derive(Clone, Copy, Debug)]
pub struct Throttle<'a> {
    store: &'a Store,
    cfg: &'a ThrottleConfig,
    seen: Option<&'a SeenLocks>,
    /// How long a claimed turn lasts if its gateway dies before the answer: the whole-request
    /// deadline, after which the attempt is over either way.
    turn_ttl: Duration,
}

/// What one key (an account, an address) says about a login attempt.
#[derive(Debug)]
struct Side<'a> {
    by: &'static str,
    limit: &'a FailureLimit,
    failures: String,
    lock: String,
    /// This attempt's number in the failure count; `None` when the store did not answer.
    counted: Option<i64>,
    /// The value of the lock this attempt claimed, to release only its own.
    turn: Option<String>,
}

/// A login in progress: report how it ended so the counts follow.
#[derive(Debug)]
#[must_use = "report how the login ended"]
pub struct LoginAttempt<'a> {
    throttle: Throttle<'a>,
    sides: [Side<'a>; 2],
}

const FIELD: &str = "n";
/// A lock's value while an attempt holds the key's turn (followed by a unique id).
const TURN: &str = "turn:";

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long the lock value `value` still refuses attempts, read at `now` (Unix ms).
fn locked_for(value: &str, now: u64) -> Option<Duration> {
    if value.starts_with(TURN) {
        // Another attempt is being checked right now; it ends within a hash or so.
        return Some(Duration::from_secs(1));
    }
    let until: u64 = value.parse().ok()?;
    (until > now).then(|| Duration::from_millis(until - now))
}

/// Whole seconds for `Retry-After`, rounded up so a client that obeys is not refused again.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn refusal(action: &'static str, by: &'static str, wait: Duration) -> ApiError {
    metrics::counter!("gateway_throttle_refused_total", "action" => action, "by" => by).increment(1);
    let seconds = retry_after(wait).max(1);
    let detail = match action {
        "login" => format!("too many failed logins for this {by}; try again in {seconds}s"),
        _ => format!("too many registrations from this {by}; try again in {seconds}s"),
    };
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too-many-attempts", "Too many attempts", detail)
        .with_retry_after(seconds)
}

// === impl Throttle ===

impl<'a> Throttle<'a> {
    pub fn new(store: &'a Store, cfg: &'a ThrottleConfig, turn_ttl: Duration) -> Self {
        Self { store, cfg, seen: None, turn_ttl }
    }

    /// Remembers the locks it sees in `seen`.
    pub fn remembering(mut self, seen: &'a SeenLocks) -> Self {
        self.seen = Some(seen);
        self
    }

    /// The throttle of a gateway's state.
    pub fn of(state: &'a AppState) -> Self {
        Self::new(&state.store, &state.cfg.throttle, state.cfg.limits.request_timeout)
            .remembering(&state.seen_locks)
    }

    /// Checks and counts a login for `email` from `client`: refused with 429 while the account
    /// or the address is locked, or while another attempt holds its turn.
    pub async fn begin_login(self, email: &str, client: IpAddr) -> Result<LoginAttempt<'a>, ApiError> {
        let account = crate::fallback::digest(&email.trim().to_lowercase());
        let side = |by, limit, id: &str| Side {
            by,
            limit,
            failures: format!("gw:throttle:login:{by}:{id}"),
            lock: format!("gw:throttle:login:{by}:{id}:lock"),
            counted: None,
            turn: None,
        };
        let mut attempt = LoginAttempt {
            throttle: self,
            sides: [
                side("account", &self.cfg.login_per_account, &account),
                side("address", &self.cfg.login_per_address, &client.to_string()),
            ],
        };
        // Locked already: refused before anything is counted or hashed, at once when this
        // gateway has seen the lock before.
        if let Some(seen) = self.seen {
            for side in &attempt.sides {
                if let Some(wait) = seen.locked_for(&side.lock) {
                    return Err(self.refuse("login", side.by, wait).await);
                }
            }
        }
        let locks: Vec<String> = attempt.sides.iter().map(|s| s.lock.clone()).collect();
        if let Some(values) = self.guard("get_locks", self.store.get_many(&locks)).await {
            let now = now_millis();
            for (side, value) in attempt.sides.iter().zip(values) {
                let Some(value) = value else { continue };
                if let Some(wait) = locked_for(&value, now) {
                    self.saw(&side.lock, &value, wait);
                    return Err(self.refuse("login", side.by, wait).await);
                }
            }
        }
        // Counted as a failure until it proves otherwise, so concurrent guesses see each other.
        let (account_n, address_n) = tokio::join!(
            self.incr(&attempt.sides[0].failures, 1, self.cfg.login_per_account.forget_after),
            self.incr(&attempt.sides[1].failures, 1, self.cfg.login_per_address.forget_after),
        );
        attempt.sides[0].counted = account_n;
        attempt.sides[1].counted = address_n;
        // Past the free failures, one attempt at a time per key: the one that claims the lock.
        for i in 0..attempt.sides.len() {
            let side = &attempt.sides[i];
            let Some(n) = side.counted else { continue };
            if side.limit.lockout(n).is_none() {
                continue;
            }
            let turn = format!("{TURN}{}", mesh_core::ids::new_id());
            match self.guard("claim_turn", self.store.set_nx(&side.lock, &turn, Some(self.turn_ttl))).await {
                Some(true) => attempt.sides[i].turn = Some(turn),
                Some(false) => {
                    let (by, lock) = (side.by, side.lock.clone());
                    attempt.undo().await;
                    let now = now_millis();
                    let value = self.guard("get_lock", self.store.get(&lock)).await.flatten();
                    let wait = value.as_deref().and_then(|v| locked_for(v, now));
                    if let (Some(value), Some(wait)) = (&value, wait) {
                        self.saw(&lock, value, wait);
                    }
                    return Err(self.refuse("login", by, wait.unwrap_or(Duration::from_secs(1))).await);
                }
                // The store failed: this side lets the attempt through (fail open).
                None => {}
            }
        }
        Ok(attempt)
    }

    /// The refusal, after the refusal delay (see [`ThrottleConfig::refusal_delay`]).
    async fn refuse(&self, action: &'static str, by: &'static str, wait: Duration) -> ApiError {
        let delay = self.cfg.refusal_delay.min(wait);
        tokio::time::sleep(delay).await;
        // `Retry-After` counts from the answer, not from when the lock was read.
        refusal(action, by, wait.saturating_sub(delay))
    }

    /// Notes a lock seen in the store: a real lock until it ends, another attempt's turn briefly.
    fn saw(&self, key: &str, value: &str, wait: Duration) {
        if let Some(seen) = self.seen {
            seen.note(key, if value.starts_with(TURN) { crate::lockouts::TURN_SEEN_FOR } else { wait });
        }
    }

    /// Counts a registration from `client`; refused with 429 past the window's limit.
    pub async fn register(self, client: IpAddr) -> Result<(), ApiError> {
        let limit = &self.cfg.register_per_address;
        if limit.per_window == 0 {
            return Ok(());
        }
        let key = format!("gw:throttle:register:address:{client}");
        let counted = self.store.add_bounded(&key, 1, 0, i64::from(limit.per_window), Some(limit.window));
        if let Some(Bounded::Refused(_)) = self.guard("count_registration", counted).await {
            let left = self.guard("registration_window", self.store.ttl(&key)).await.flatten();
            return Err(self.refuse("register", "address", left.unwrap_or(limit.window)).await);
        }
        Ok(())
    }

    /// Adds `delta` to a failure count, whose expiry restarts with every change.
    async fn incr(&self, key: &str, delta: i64, forget_after: Duration) -> Option<i64> {
        self.guard("count", self.store.hash_incr(key, FIELD, delta, Some(forget_after))).await
    }

    /// Runs one store operation within `store_timeout`; `None` (fail open) when it errs or is late.
    /// One store operation through the store tier that fails open (the mesh's one wrapper:
    /// `store_timeout`, a miss on failure, then a rest), so a Redis outage lets attempts
    /// through and costs one timeout per rest, not one per login.
    async fn guard<R>(&self, op: &'static str, operation: impl Future<Output = StoreResult<R>>) -> Option<R> {
        self.store.fail_open("login-throttle").with_timeout(self.cfg.store_timeout).run(op, operation).await
    }
}

// === impl LoginAttempt ===

impl LoginAttempt<'_> {
    /// The password was right: the account starts afresh; the address forgets this attempt.
    pub async fn succeeded(self) {
        let t = self.throttle;
        let [account, address] = &self.sides;
        tokio::join!(
            async {
                if account.counted.is_some() {
                    t.guard("reset", t.store.delete(&account.failures)).await;
                }
                release(t, account).await;
            },
            async {
                if address.counted.is_some() {
                    t.incr(&address.failures, -1, address.limit.forget_after).await;
                }
                release(t, address).await;
            },
        );
    }

    /// The password was wrong: the failure stays counted, and past the free failures the key
    /// is locked for the lockout its count earns.
    pub async fn failed(self) {
        let t = self.throttle;
        tokio::join!(lock(t, &self.sides[0]), lock(t, &self.sides[1]));
    }

    /// The answer said nothing about the password (auth busy or down, a bad request): as if the
    /// attempt had not been made.
    pub async fn void(self) {
        self.undo().await;
    }

    async fn undo(&self) {
        let t = self.throttle;
        tokio::join!(undo(t, &self.sides[0]), undo(t, &self.sides[1]));
    }
}

/// Locks `side` for the lockout its failures earn, if any.
async fn lock(t: Throttle<'_>, side: &Side<'_>) {
    let Some(n) = side.counted else { return };
    if side.limit.lockout(n).is_none() {
        return;
    }
    // The count now, not at the start: concurrent attempts refused meanwhile were undone.
    let n = t.incr(&side.failures, 0, side.limit.forget_after).await.unwrap_or(n);
    match side.limit.lockout(n) {
        Some(lockout) => {
            let until = (now_millis() + lockout.as_millis() as u64).to_string();
            t.guard("lock", t.store.set(&side.lock, &until, Some(lockout))).await;
        }
        None => release(t, side).await,
    }
}

/// Takes this attempt back out of `side`'s count and frees its turn.
async fn undo(t: Throttle<'_>, side: &Side<'_>) {
    if side.counted.is_some() {
        t.incr(&side.failures, -1, side.limit.forget_after).await;
    }
    release(t, side).await;
}

/// Frees the turn `side` claimed, if it still holds it.
async fn release(t: Throttle<'_>, side: &Side<'_>) {
    if let Some(turn) = &side.turn {
        t.guard("release_turn", t.store.delete_if_eq(&side.lock, turn)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(free: u32) -> FailureLimit {
        FailureLimit { free_failures: free, ..FailureLimit::default() }
    }

    #[test]
    fn lockouts_start_past_the_free_failures_and_double_up_to_the_cap() {
        let l = limit(5);
        let secs = |n| l.lockout(n).map(|d| d.as_secs());
        for n in [-3, 0, 1, 5] {
            assert_eq!(secs(n), None, "failure {n} is free");
        }
        assert_eq!((6..=15).map(secs).collect::<Vec<_>>(), [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map(Some));
        assert_eq!(secs(16), Some(900), "1024s is past the 15m cap");
        assert_eq!(secs(10_000), Some(900), "no overflow however many failures");
        assert_eq!(limit(0).lockout(1), Some(Duration::from_secs(1)), "0 free: locked from the first");
        let fine = FailureLimit { base_lockout: Duration::from_millis(300), ..limit(2) };
        assert_eq!(fine.lockout(4), Some(Duration::from_millis(600)));
    }

    #[test]
    fn lock_values_say_how_long_they_refuse() {
        assert_eq!(locked_for("10500", 10_000), Some(Duration::from_millis(500)));
        assert_eq!(locked_for("10000", 10_000), None, "over at its time");
        assert_eq!(locked_for("turn:01J", 10_000), Some(Duration::from_secs(1)));
        assert_eq!(locked_for("garbage", 10_000), None);
        assert_eq!(retry_after(Duration::from_millis(500)), 1);
        assert_eq!(retry_after(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after(Duration::from_secs(2)), 2);
    }

    fn throttle<'a>(store: &'a Store, cfg: &'a ThrottleConfig) -> Throttle<'a> {
        Throttle::new(store, cfg, Duration::from_secs(10))
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    async fn fail(t: Throttle<'_>, email: &str, from: &str) -> Result<(), ApiError> {
        t.begin_login(email, addr(from)).await?.failed().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_lock_once_seen_is_refused_without_asking_the_store() {
        let (store, cfg) = (Store::memory(), ThrottleConfig::default());
        let seen = SeenLocks::default();
        let t = throttle(&store, &cfg).remembering(&seen);
        for _ in 0..6 {
            fail(t, "seen@example.com", "192.0.2.9").await.unwrap();
        }
        assert_eq!(
            fail(t, "seen@example.com", "192.0.2.9").await.unwrap_err().status,
            StatusCode::TOO_MANY_REQUESTS
        );
        // The store forgets the lock (as if it were another gateway's store view going stale):
        // this gateway still refuses from what it saw, until the lock's own end.
        let lock = format!("gw:throttle:login:account:{}:lock", crate::fallback::digest("seen@example.com"));
        store.delete(&lock).await.unwrap();
        let refused = fail(t, "seen@example.com", "192.0.2.10").await.unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.retry_after.is_some());
        // Without the memory the store is asked, and says nothing is locked.
        assert!(throttle(&store, &cfg).begin_login("seen@example.com", addr("192.0.2.11")).await.is_ok());
    }

    #[tokio::test]
    async fn an_account_locks_past_its_free_failures_and_a_success_resets_it() {
        let (store, cfg) = (Store::memory(), ThrottleConfig::default());
        let t = throttle(&store, &cfg);
        for _ in 0..6 {
            fail(t, "Ada@Example.com", "192.0.2.1").await.unwrap();
        }
        // The sixth failure locked the account, for every address and any case of the email.
        let refused = t.begin_login(" ada@example.com", addr("198.51.100.9")).await.unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.retry_after, Some(1));
        // Other accounts from the same address are not.
        t.begin_login("bob@example.com", addr("192.0.2.1")).await.unwrap().succeeded().await;
        // Once the lock is over, a success resets the count: five free failures again.
        let account = format!("gw:throttle:login:account:{}", crate::fallback::digest("ada@example.com"));
        store.delete(&format!("{account}:lock")).await.unwrap();
        t.begin_login("ada@example.com", addr("192.0.2.1")).await.unwrap().succeeded().await;
        assert_eq!(store.hash_get_all_many(std::slice::from_ref(&account)).await.unwrap()[0], []);
        for _ in 0..5 {
            fail(t, "ada@example.com", "192.0.2.1").await.unwrap();
        }
        assert!(store.get(&format!("{account}:lock")).await.unwrap().is_none(), "free failures lock nothing");
    }

    #[tokio::test]
    async fn a_failing_or_silent_store_lets_attempts_through() {
        let cfg = ThrottleConfig { store_timeout: Duration::from_millis(20), ..ThrottleConfig::default() };
        let store = Store::memory();
        let t = throttle(&store, &cfg);
        let failed = t
            .guard("count", async { Err::<(), _>(mesh_core::store::StoreError::Unavailable("down".into())) })
            .await;
        assert!(failed.is_none());
        let started = std::time::Instant::now();
        assert!(t.guard("count", std::future::pending::<StoreResult<()>>()).await.is_none());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn past_the_free_failures_concurrent_attempts_get_one_turn() {
        let (store, cfg) = (Store::memory(), ThrottleConfig::default());
        let t = throttle(&store, &cfg);
        for _ in 0..5 {
            fail(t, "ada@example.com", "192.0.2.1").await.unwrap();
        }
        let first = t.begin_login("ada@example.com", addr("192.0.2.2")).await.unwrap();
        // While it is being checked, a second guess is refused and not counted.
        let second = t.begin_login("ada@example.com", addr("192.0.2.3")).await.unwrap_err();
        assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
        first.failed().await;
        let key = format!("gw:throttle:login:account:{}", crate::fallback::digest("ada@example.com"));
        let counts = store.hash_get_all_many(&[key]).await.unwrap();
        assert_eq!(counts[0], [("n".to_owned(), 6)], "the refused guess was undone");
    }

    #[tokio::test]
    async fn an_address_locks_for_every_account_and_others_are_unaffected() {
        let cfg = ThrottleConfig {
            login_per_address: FailureLimit { free_failures: 3, ..FailureLimit::default() },
            ..ThrottleConfig::default()
        };
        let store = Store::memory();
        let t = throttle(&store, &cfg);
        for i in 0..4 {
            fail(t, &format!("user{i}@example.com"), "203.0.113.5").await.unwrap();
        }
        let refused = t.begin_login("new@example.com", addr("203.0.113.5")).await.unwrap_err();
        assert!(refused.problem.detail.contains("address"), "{}", refused.problem.detail);
        t.begin_login("new@example.com", addr("203.0.113.6")).await.unwrap().succeeded().await;
    }

    #[tokio::test]
    async fn registrations_are_capped_per_address_in_a_window() {
        let cfg = ThrottleConfig {
            register_per_address: AttemptLimit { per_window: 2, window: Duration::from_secs(60) },
            ..ThrottleConfig::default()
        };
        let store = Store::memory();
        let t = throttle(&store, &cfg);
        t.register(addr("192.0.2.1")).await.unwrap();
        t.register(addr("192.0.2.1")).await.unwrap();
        let refused = t.register(addr("192.0.2.1")).await.unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!((59..=60).contains(&refused.retry_after.unwrap()), "{:?}", refused.retry_after);
        t.register(addr("192.0.2.2")).await.unwrap();
    }
}
