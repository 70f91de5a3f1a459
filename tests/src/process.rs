//! A component's real binary as a child process, for tests that signal or kill it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The path of a workspace binary built beside the running test (`target/<profile>/<name>`).
/// `cargo test --workspace` builds every binary first; with `-p`, build them with
/// `cargo build --bins` (scripts/test.sh does).
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("a target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Lines of a child's stdout kept for [`ServiceProcess::wait_for_log`]; past it the oldest go.
const KEPT_LOG_LINES: usize = 100_000;

/// A running binary started with `MESH_LISTEN=127.0.0.1:0` and `MESH_ADMIN_LISTEN=127.0.0.1:0`;
/// its addresses are read from its "listening" log line. Killed on drop.
#[derive(Debug)]
pub struct ServiceProcess {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    /// Its stdout (the log), line by line.
    log: Arc<Mutex<VecDeque<String>>>,
}

impl ServiceProcess {
    /// Starts `binary` with `env` added to the environment and waits (at most 20 s) until it
    /// says where it listens.
    pub fn start(binary: impl AsRef<std::ffi::OsStr>, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let binary = binary.as_ref();
        let mut child = Command::new(binary)
            .env("MESH_LISTEN", "127.0.0.1:0")
            .env("MESH_ADMIN_LISTEN", "127.0.0.1:0")
            .env("MESH_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.to_string_lossy()))?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log on a thread so a silent child cannot block the test past its deadline;
        // the thread keeps draining stdout afterwards so the child never blocks on a full pipe.
        let log = Arc::new(Mutex::new(VecDeque::new()));
        std::thread::spawn({
            let log = log.clone();
            move || {
                let mut sent = false;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if !sent && line.contains("listening") {
                        sent = tx.send(line.clone()).is_ok();
                    }
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    if log.len() == KEPT_LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                bail!("{} did not log where it listens within 20s", binary.to_string_lossy());
            }
        };
        let field = |name: &str| -> anyhow::Result<SocketAddr> {
            let value: serde_json::Value = serde_json::from_str(&line).context("log lines are JSON")?;
            value[name]
                .as_str()
                .with_context(|| format!("no {name} in {line}"))?
                .parse()
                .context("an address")
        };
        Ok(Self { addr: field("listen")?, admin: field("admin")?, child, log })
    }

    /// The log lines (stdout) written so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Waits at most `timeout` for a log line that `matches`, and returns it.
    pub async fn wait_for_log(&self, timeout: Duration, matches: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) =
                self.log.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|l| matches(l)).cloned()
            {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM (through `kill`, as an orchestrator would).
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal("TERM")
    }

    /// Sends a signal by name: `TERM`, `KILL`, `STOP`, `CONT`.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// Waits at most `timeout` for the process to exit. Async, so the test's own connections
    /// keep being served (and can answer the server's GOAWAY) meanwhile.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `path` from an HTTP/1.1 server on `addr`: (status, body). Enough for admin endpoints.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let status = head.split_whitespace().nth(1).context("no status")?.parse()?;
    Ok((status, body.to_owned()))
}
