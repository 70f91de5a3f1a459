//! A binary run to its exit, for commands that answer and stop (`--help`, `check`,
//! `print-config`): its status and output, or an error if it is still running at the deadline
//! (it then serves instead of answering, and is killed).

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// What a finished command said.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// From start to exit.
    pub took: Duration,
}

/// Runs `binary args` with `env` added (and `MESH_CONFIG` removed, so the caller's environment
/// names no file) until it exits, at most `deadline`.
pub fn run_to_exit(
    binary: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    deadline: Duration,
) -> anyhow::Result<Finished> {
    let start = Instant::now();
    let mut child = Command::new(binary)
        .args(args)
        .env_remove("MESH_CONFIG")
        .env("RUST_BACKTRACE", "0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    // Drained on threads so a long output (the whole reference) never blocks the child.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = pipe.read_to_string(&mut out);
            out
        })
    };
    let stdout = drain(Box::new(child.stdout.take().context("stdout is piped")?));
    let stderr = drain(Box::new(child.stderr.take().context("stderr is piped")?));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} {args:?} still running after {deadline:?}: it served instead of answering",
                binary.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    Ok(Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        took,
    })
}
