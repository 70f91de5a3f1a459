//! Password hashing with argon2id, bounded.
//!
//! Hashing is deliberately slow (tens of milliseconds) and big (`memory_kib` each), so it is
//! bounded the way a connection pool is: at most `permits` hashes run at once, each on one of as
//! many dedicated threads (never the runtime's workers, never the unbounded blocking pool, whose
//! hundreds of threads each keep an allocator arena the size of a hash). A call waits for a slot
//! at most `hashing.max_wait`, and never so long that its hash could not finish before the
//! caller's deadline; past that it is refused with RESOURCE_EXHAUSTED. A hash that was queued
//! when its caller gave up is not started, so a flood of abandoned logins costs no hashing.
//!
//! Hashes are PHC strings that carry their own salt and parameters, so verifying works across
//! parameter changes.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use mesh_core::ServiceError;
use rand::rngs::OsRng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::config::{HashingConfig, PasswordHashConfig};

const BUSY: &str = "too many password checks in progress, try again shortly";

/// Hashes and verifies passwords. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    argon: Argon2<'static>,
    /// A hash of a random password, verified against when the account does not exist so an
    /// unknown email costs the same time as a wrong password (no user enumeration by timing).
    dummy_hash: String,
    /// One permit per hashing thread: holding one is the right to hash.
    slots: Arc<Semaphore>,
    /// Jobs for the hashing threads; never more queued than there are permits out.
    jobs: mpsc::Sender<Job>,
    permits: usize,
    max_wait: Duration,
    /// Duration of the latest hash: the time a caller must still have left for a hash to be
    /// worth starting.
    last_hash_micros: Arc<AtomicU64>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The argon2id parameters of `cfg`, refused when argon2 would refuse them.
pub(crate) fn params(cfg: PasswordHashConfig) -> anyhow::Result<Params> {
    Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
        .map_err(|e| anyhow::anyhow!("password_hash: {e}"))
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon.hash_password(password.as_bytes(), &salt)?.to_string())
}

fn verify_with(argon: &Argon2<'_>, phc: &str, password: &str) -> Result<bool, ServiceError> {
    let parsed =
        PasswordHash::new(phc).map_err(|e| ServiceError::internal(format!("stored password hash: {e}")))?;
    match argon.verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(ServiceError::internal(format!("password verify: {e}"))),
    }
}

/// Starts `n` hashing threads fed by one queue. They end when the last sender is dropped.
fn spawn_hashers(n: usize) -> anyhow::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
            loop {
                // The guard is a temporary: the lock is released before the job runs.
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(poisoned) => poisoned.into_inner().recv(),
                };
                let Ok(job) = job else { return };
                // A panicking job drops its answer channel (the caller sees an internal error);
                // the thread lives on, so the pool never shrinks.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            }
        })?;
    }
    Ok(tx)
}

/// Counts a caller waiting for a slot for as long as it waits.
struct Waiting;

impl Waiting {
    fn new() -> Self {
        metrics::gauge!("auth_password_hash_waiting").increment(1.0);
        Self
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        metrics::gauge!("auth_password_hash_waiting").decrement(1.0);
    }
}

fn refused(reason: &'static str) -> ServiceError {
    metrics::counter!("auth_password_hash_refused_total", "reason" => reason).increment(1);
    ServiceError::ResourceExhausted(BUSY.into())
}

// === impl Passwords ===

impl Passwords {
    /// Builds the hasher, its threads and its dummy hash (one hash at start-up).
    pub async fn new(cfg: PasswordHashConfig, hashing: &HashingConfig) -> anyhow::Result<Self> {
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params(cfg)?);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let permits = hashing.permits(cfg, cores);
        let jobs = spawn_hashers(permits)?;
        let dummy_hash = {
            let (argon, (tx, rx)) = (argon.clone(), oneshot::channel());
            let secret = mesh_core::ids::random_hex(16);
            let job: Job = Box::new(move || drop(tx.send(hash_with(&argon, &secret))));
            jobs.send(job).map_err(|_| anyhow::anyhow!("the hashing threads did not start"))?;
            rx.await?.map_err(|e| anyhow::anyhow!("password_hash: {e}"))?
        };
        metrics::gauge!("auth_password_hash_slots").set(permits as f64);
        tracing::info!(permits, memory_kib = cfg.memory_kib, max_wait = ?hashing.max_wait, "password hashing bounded");
        Ok(Self {
            inner: Arc::new(Inner {
                argon,
                dummy_hash,
                slots: Arc::new(Semaphore::new(permits)),
                jobs,
                permits,
                max_wait: hashing.max_wait,
                last_hash_micros: Arc::new(AtomicU64::new(0)),
            }),
        })
    }

    /// How many hashes may run at once.
    pub fn permits(&self) -> usize {
        self.inner.permits
    }

    /// A PHC string (`$argon2id$v=19$m=…`) of `password` with a fresh random salt.
    pub async fn hash(&self, password: &str, deadline: Option<Instant>) -> Result<String, ServiceError> {
        let password = password.to_owned();
        self.run(deadline, move |argon| hash_with(argon, &password).map_err(ServiceError::internal)).await
    }

    /// Whether `password` matches the stored `phc` hash.
    pub async fn verify(
        &self,
        phc: &str,
        password: &str,
        deadline: Option<Instant>,
    ) -> Result<bool, ServiceError> {
        let (phc, password) = (phc.to_owned(), password.to_owned());
        self.run(deadline, move |argon| verify_with(argon, &phc, &password)).await
    }

    /// Spends the time of one verification and fails: for logins to accounts that do not exist.
    pub async fn verify_nothing(
        &self,
        password: &str,
        deadline: Option<Instant>,
    ) -> Result<bool, ServiceError> {
        let (dummy, password) = (self.inner.dummy_hash.clone(), password.to_owned());
        self.run(deadline, move |argon| verify_with(argon, &dummy, &password).map(|_| false)).await
    }

    /// Runs `work` on a hashing thread once a slot is free, unless the caller is gone by then.
    async fn run<T: Send + 'static>(
        &self,
        deadline: Option<Instant>,
        work: impl FnOnce(&Argon2<'static>) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let permit = self.slot(deadline).await?;
        let (tx, rx) = oneshot::channel::<Result<T, ServiceError>>();
        let (argon, last_hash) = (self.inner.argon.clone(), self.inner.last_hash_micros.clone());
        let job: Job = Box::new(move || {
            // The slot is the thread's until the hash ends, even if the caller leaves: memory in
            // use is what the bound is about.
            let _permit = permit;
            // Dropped by tonic when its deadline passed or the client went away.
            if tx.is_closed() || deadline.is_some_and(|d| Instant::now() >= d) {
                let _ = tx.send(Err(refused("deadline")));
                return;
            }
            let started = Instant::now();
            let result = work(&argon);
            last_hash.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            metrics::counter!("auth_password_hashes_total").increment(1);
            let _ = tx.send(result);
        });
        self.inner.jobs.send(job).map_err(|_| ServiceError::internal("the hashing threads are gone"))?;
        rx.await.map_err(|_| ServiceError::internal("a password hash panicked"))?
    }

    /// A hashing slot: at once if one is free, else after a wait bounded by `max_wait` and by the
    /// caller's deadline less one hash (a hash finishing after the deadline helps no one).
    async fn slot(&self, deadline: Option<Instant>) -> Result<OwnedSemaphorePermit, ServiceError> {
        let slots = self.inner.slots.clone();
        let wait = match deadline {
            Some(deadline) => {
                let one_hash = Duration::from_micros(self.inner.last_hash_micros.load(Ordering::Relaxed));
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(refused("deadline"));
                }
                self.inner.max_wait.min(left.saturating_sub(one_hash))
            }
            None => self.inner.max_wait,
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = Waiting::new();
        match tokio::time::timeout(wait, slots.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(refused("busy")),
        }
    }
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").field("params", self.inner.argon.params()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHashConfig {
        PasswordHashConfig { memory_kib: 64, iterations: 1, parallelism: 1 }
    }

    async fn passwords(max_concurrent: usize, max_wait: Duration) -> Passwords {
        let hashing = HashingConfig { max_concurrent, max_wait, ..HashingConfig::default() };
        Passwords::new(cheap(), &hashing).await.unwrap()
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let passwords = passwords(2, Duration::from_secs(1)).await;
        let a = passwords.hash("correct horse", None).await.unwrap();
        let b = passwords.hash("correct horse", None).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt per hash");
        assert!(passwords.verify(&a, "correct horse", None).await.unwrap());
        assert!(!passwords.verify(&a, "correct horse!", None).await.unwrap());
        assert!(!passwords.verify_nothing("correct horse", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_internal_not_a_match() {
        let passwords = passwords(1, Duration::from_secs(1)).await;
        assert!(matches!(passwords.verify("not a hash", "x", None).await, Err(ServiceError::Internal(_))));
    }

    #[tokio::test]
    async fn a_call_waits_for_a_slot_at_most_max_wait_then_is_refused() {
        let max_wait = Duration::from_millis(100);
        let passwords = passwords(1, max_wait).await;
        // Hold the only slot, as a running hash would.
        let held = passwords.inner.slots.clone().try_acquire_owned().unwrap();
        let started = Instant::now();
        let refused = passwords.hash("correct horse", None).await;
        let waited = started.elapsed();
        assert!(matches!(refused, Err(ServiceError::ResourceExhausted(_))), "{refused:?}");
        assert!(waited >= max_wait, "refused after {waited:?}, before max_wait");
        // Once the slot frees, the next call hashes.
        drop(held);
        assert!(passwords.hash("correct horse", None).await.is_ok());
    }

    #[tokio::test]
    async fn the_wait_never_outlasts_the_callers_deadline_and_no_hash_starts_after_it() {
        let passwords = passwords(1, Duration::from_secs(10)).await;
        let held = passwords.inner.slots.clone().try_acquire_owned().unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(100);
        let refused = passwords.hash("correct horse", Some(deadline)).await;
        assert!(matches!(refused, Err(ServiceError::ResourceExhausted(_))), "{refused:?}");
        let waited = started.elapsed();
        // The wait ends at the 100ms deadline (less one hash), far short of max_wait's 10s.
        assert!(waited < Duration::from_secs(1), "waited {waited:?} for a call due in 100ms");
        drop(held);
        let past = Instant::now().checked_sub(Duration::from_millis(1)).unwrap();
        assert!(matches!(passwords.hash("x", Some(past)).await, Err(ServiceError::ResourceExhausted(_))));
    }

    #[tokio::test]
    async fn an_abandoned_wait_leaves_the_slots_whole() {
        let passwords = passwords(1, Duration::from_secs(5)).await;
        let held = passwords.inner.slots.clone().try_acquire_owned().unwrap();
        // The caller gives up while waiting (tonic drops the future at the deadline).
        let abandoned = tokio::time::timeout(Duration::from_millis(50), passwords.hash("x", None)).await;
        assert!(abandoned.is_err());
        drop(held);
        assert_eq!(passwords.inner.slots.available_permits(), 1);
        assert!(passwords.hash("y", None).await.is_ok());
    }

    #[test]
    fn parameters_argon2_refuses_are_refused_at_start() {
        assert!(params(PasswordHashConfig { memory_kib: 1, iterations: 1, parallelism: 1 }).is_err());
        assert!(params(PasswordHashConfig::default()).is_ok());
    }
}
