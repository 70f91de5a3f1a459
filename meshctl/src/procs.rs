//! The processes and files `meshctl` owns (a bench run's, `up --processes`'s), and the waits
//! on them.
//!
//! Every child runs in a process group of its own and is killed with its whole group when its
//! guard is dropped (nginx's workers die with their master), so neither an error, a panic nor
//! Ctrl-C leaves a server behind. Every temporary directory is removed the same way. Waits
//! poll a condition until a deadline; none sleeps a fixed time and hopes.

use std::future::Future;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::process::{Pid, Resource, Rlimit, Signal, getrlimit, kill_process_group, setrlimit};
use tokio::process::{Child, Command};

/// How often a wait looks at its condition again.
const POLL: Duration = Duration::from_millis(50);

/// A child process and its process group, killed together when this is dropped.
#[derive(Debug)]
pub(crate) struct Guard {
    name: String,
    child: Child,
    log: PathBuf,
}

// === impl Guard ===

impl Guard {
    /// Starts `command` in a new process group, its stdout and stderr appended to `log` (a
    /// restarted process goes on in the same file).
    pub(crate) fn spawn(name: &str, mut command: Command, log: PathBuf) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0).kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Self { name: name.into(), child, log })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last lines the process wrote, for an error message.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Fails, with the log's tail, when the process has already exited.
    pub(crate) fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            anyhow::bail!("{} exited ({status}); its last output:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// The exit status, once the process has exited (it is reaped then).
    pub(crate) fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM (the process drains), and the whole group killed if it has not exited within
    /// `grace`; returns once it is gone.
    pub(crate) async fn terminate(mut self, grace: Duration) {
        if let Some(pid) = self.child.id().and_then(|id| Pid::from_raw(id as i32)) {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                self.kill_group();
                return;
            }
        }
        self.stop().await;
    }

    /// Kills the process group and waits for the process to be gone.
    pub(crate) async fn stop(mut self) {
        self.kill_group();
        let _ = self.child.wait().await;
    }

    fn kill_group(&self) {
        if let Some(pid) = self.child.id().and_then(|id| Pid::from_raw(id as i32)) {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // kill_on_drop kills the process itself and lets tokio reap it; the group's other
        // members (nginx workers) go with this.
        self.kill_group();
    }
}

/// A directory of its own under the system temp dir, removed with everything in it on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

// === impl TempDir ===

impl TempDir {
    pub(crate) fn new(purpose: &str) -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("meshctl-bench-{}-{purpose}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `redis-server` on `host:port`, with nothing persisted (its working directory `dir`).
pub(crate) fn redis_command(program: &Path, host: IpAddr, port: u16, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .args(["--port", &port.to_string(), "--bind", &host.to_string(), "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir);
    command
}

/// A loopback port nothing listens on right now (the kernel's choice for port 0).
pub(crate) fn free_port(host: IpAddr) -> anyhow::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::new(host, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether every one of `ports` on `host` can be bound now.
pub(crate) fn ports_free(host: IpAddr, ports: &[u16]) -> bool {
    ports.iter().all(|&port| TcpListener::bind(SocketAddr::new(host, port)).is_ok())
}

/// Polls `condition` until it holds or `timeout` passes; the error says what was awaited. An
/// error from the condition (the process being waited on exited) ends the wait at once.
pub(crate) async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await.with_context(|| format!("waiting for {what}"))? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS`), if it is still there.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The highest resident memory of one process while it is watched, sampled every 100 ms.
#[derive(Debug)]
pub(crate) struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

// === impl PeakRss ===

impl PeakRss {
    pub(crate) fn watch(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while let Some(rss) = rss_kib(pid) {
                seen.fetch_max(rss, Ordering::Relaxed);
                tick.tick().await;
            }
        });
        Self { peak, task }
    }

    /// The peak so far, in KiB.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Raises this process's open-file limit to its hard limit (children inherit it): a thousand
/// connections and the mesh's side of them need more than the usual soft limit of 1024.
pub(crate) fn raise_open_file_limit() {
    let limit = getrlimit(Resource::Nofile);
    if limit.maximum != limit.current {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum });
    }
}

/// The first executable named `name` on `PATH`, or in the sbin directories a non-root `PATH`
/// often lacks (Debian puts nginx in /usr/sbin).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
