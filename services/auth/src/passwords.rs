//! Password hashing with argon2id, bounded.
//!
//! Hashing is deliberately slow (tens of milliseconds) and big (`memory_kib` each), so it is
//! bounded the way a connection pool is: at most `permits` hashes run at once, each on one of as
//! many dedicated threads (never the runtime's workers, never the unbounded blocking pool). Each
//! thread keeps argon2's work memory from one hash to the next instead of allocating it per hash:
//! freed 19 MiB blocks linger in the allocator's per-thread arenas, so allocating per hash grew
//! the process by 171 MiB under a flood with two slots, against 2 × 19 MiB held now. The threads
//! run at a lower CPU priority (`hashing.nice`): a hash is throughput work and yields to the
//! latency-bound calls of this process and its neighbours. A call waits for a slot
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

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use mesh_core::ServiceError;
use rand::rngs::OsRng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::hashing::{HashingConfig, PasswordHashConfig};

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

/// Work for a hashing thread, given that thread's argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The first `blocks` blocks of a thread's `memory`, grown if a stored hash needs more.
fn work_memory(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    &mut memory[..blocks]
}

/// argon2 of `password` and `salt` into an output of `len` bytes, in the thread's `memory`.
fn compute(
    argon: &Argon2<'_>,
    memory: &mut Vec<Block>,
    password: &[u8],
    salt: Salt<'_>,
    len: usize,
) -> Result<Output, argon2::password_hash::Error> {
    let mut salt_buf = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let blocks = work_memory(memory, argon.params().block_count());
    Output::init_with(len, |out| {
        Ok(argon.hash_password_into_with_memory(password, salt, out, &mut *blocks)?)
    })
}

/// What `PasswordHasher::hash_password` does, in the thread's memory.
fn hash_with(
    argon: &Argon2<'_>,
    memory: &mut Vec<Block>,
    password: &str,
) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let len = argon.params().output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let hash = compute(argon, memory, password.as_bytes(), salt.as_salt(), len)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params())?,
        salt: Some(salt.as_salt()),
        hash: Some(hash),
    };
    Ok(phc.to_string())
}

/// What `PasswordVerifier::verify_password` does, in the thread's memory: the stored hash's own
/// algorithm, version and parameters, compared in constant time (`Output`'s `PartialEq`).
fn verify_with(memory: &mut Vec<Block>, phc: &str, password: &str) -> Result<bool, ServiceError> {
    fn corrupt(e: impl std::fmt::Display) -> ServiceError {
        ServiceError::internal(format!("stored password hash: {e}"))
    }
    let parsed = PasswordHash::new(phc).map_err(corrupt)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(ServiceError::internal("stored password hash: no salt or no hash"));
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(corrupt)?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(corrupt)?.unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(corrupt)?;
    let argon = Argon2::new(algorithm, version, params);
    let computed = compute(&argon, memory, password.as_bytes(), salt, expected.len())
        .map_err(|e| ServiceError::internal(format!("password verify: {e}")))?;
    Ok(computed == expected)
}

/// Starts `n` hashing threads fed by one queue, at `nice`; each keeps `blocks` blocks of memory
/// between hashes. They end when the last sender is dropped.
fn spawn_hashers(n: usize, blocks: usize, nice: i32) -> anyhow::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
            lower_priority(nice);
            let mut memory = Vec::new();
            loop {
                // The guard is a temporary: the lock is released before the job runs.
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(poisoned) => poisoned.into_inner().recv(),
                };
                let Ok(job) = job else { return };
                // A panicking job drops its answer channel (the caller sees an internal error);
                // the thread lives on, so the pool never shrinks.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory)));
                // A stored hash of a higher cost grew the memory; give the excess back.
                if memory.len() > blocks {
                    memory.truncate(blocks);
                    memory.shrink_to_fit();
                }
            }
        })?;
    }
    Ok(tx)
}

/// Sets the calling thread's nice value (Linux: per thread). Raising it needs no privilege;
/// failing to is logged and harmless.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice != 0
        && let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)
    {
        tracing::warn!(nice, error = %e, "could not lower the priority of a hashing thread");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
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
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, cfg.params()?);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let permits = hashing.permits(cfg, cores);
        let jobs = spawn_hashers(permits, argon.params().block_count(), hashing.nice)?;
        let dummy_hash = {
            let (argon, (tx, rx)) = (argon.clone(), oneshot::channel());
            let secret = mesh_core::ids::random_hex(16);
            let job: Job = Box::new(move |memory| drop(tx.send(hash_with(&argon, memory, &secret))));
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
        self.run(deadline, move |argon, memory| {
            hash_with(argon, memory, &password).map_err(ServiceError::internal)
        })
        .await
    }

    /// Whether `password` matches the stored `phc` hash.
    pub async fn verify(
        &self,
        phc: &str,
        password: &str,
        deadline: Option<Instant>,
    ) -> Result<bool, ServiceError> {
        let (phc, password) = (phc.to_owned(), password.to_owned());
        self.run(deadline, move |_, memory| verify_with(memory, &phc, &password)).await
    }

    /// Spends the time of one verification and fails: for logins to accounts that do not exist.
    pub async fn verify_nothing(
        &self,
        password: &str,
        deadline: Option<Instant>,
    ) -> Result<bool, ServiceError> {
        let (dummy, password) = (self.inner.dummy_hash.clone(), password.to_owned());
        self.run(deadline, move |_, memory| verify_with(memory, &dummy, &password).map(|_| false)).await
    }

    /// Runs `work` on a hashing thread once a slot is free, unless the caller is gone by then.
    async fn run<T: Send + 'static>(
        &self,
        deadline: Option<Instant>,
        work: impl FnOnce(&Argon2<'static>, &mut Vec<Block>) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let permit = self.slot(deadline).await?;
        let (tx, rx) = oneshot::channel::<Result<T, ServiceError>>();
        let (argon, last_hash) = (self.inner.argon.clone(), self.inner.last_hash_micros.clone());
        let job: Job = Box::new(move |memory| {
            // The slot is the thread's until the hash ends, even if the caller leaves: memory in
            // use is what the bound is about.
            let _permit = permit;
            // Dropped by tonic when its deadline passed or the client went away.
            if tx.is_closed() || deadline.is_some_and(|d| Instant::now() >= d) {
                let _ = tx.send(Err(refused("deadline")));
                return;
            }
            let started = Instant::now();
            let result = work(&argon, memory);
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
    async fn hashes_are_interchangeable_with_the_argon2_crates_own() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let passwords = passwords(1, Duration::from_secs(1)).await;
        let theirs = |cost: PasswordHashConfig| {
            let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, cost.params().unwrap());
            argon.hash_password(b"pw", &SaltString::generate(&mut OsRng)).unwrap().to_string()
        };
        // Stored by the crate's own hasher, at this cost and at another (a cost changed since).
        for stored in
            [theirs(cheap()), theirs(PasswordHashConfig { memory_kib: 256, iterations: 2, parallelism: 2 })]
        {
            assert!(passwords.verify(&stored, "pw", None).await.unwrap(), "{stored}");
            assert!(!passwords.verify(&stored, "pw!", None).await.unwrap(), "{stored}");
        }
        let ours = passwords.hash("pw", None).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok(), "the crate verifies ours");
        assert!(Argon2::default().verify_password(b"pw!", &parsed).is_err());
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
}
