//! A command run to its exit within a deadline: a binary's answering commands (`--help`,
//! `check`, `print-config`), which must not serve instead, and the container tools, which must
//! not hang a test. Its status and output, or an error if it is still running at the deadline
//! (it is then killed).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a killed command's output is waited for: its pipes close as the group dies.
const PRINTED_AFTER_KILL: Duration = Duration::from_secs(5);

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
    let mut command = Command::new(binary);
    command.args(args).env_remove("MESH_CONFIG").env("RUST_BACKTRACE", "0").envs(env.iter().copied());
    run_bounded(command, deadline).map_err(|e| e.context("it served instead of answering"))
}

/// Runs `command` (in a process group of its own, stdin closed) until it exits, at most
/// `deadline`; past it the whole group is killed (a tool's own children too: podman-compose
/// waits on `podman wait` children that would otherwise wait forever) and the error carries
/// what it had printed.
pub fn run_bounded(mut command: Command, deadline: Duration) -> anyhow::Result<Finished> {
    let start = Instant::now();
    let shown = format!("{command:?}");
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    // Drained on threads so a long output (the whole reference) never blocks the child. Each
    // sends what it read once its pipe closes, so a wait for it can itself be bounded.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        let (sent, read) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = pipe.read_to_string(&mut out);
            let _ = sent.send(out);
        });
        read
    };
    let stdout = drain(Box::new(child.stdout.take().context("stdout is piped")?));
    let stderr = drain(Box::new(child.stderr.take().context("stderr is piped")?));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
            // A process that left the group (a daemon) may still hold the pipes: what was printed
            // is waited for a moment only, so the deadline holds whatever the command started.
            let printed = |read: mpsc::Receiver<String>| {
                read.recv_timeout(PRINTED_AFTER_KILL).unwrap_or_else(|_| "(pipe still held open)".into())
            };
            bail!(
                "{shown} still running after {deadline:?}, killed; it printed:\n{}\n{}",
                printed(stdout),
                printed(stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    Ok(Finished {
        status,
        stdout: stdout.recv().unwrap_or_default(),
        stderr: stderr.recv().unwrap_or_default(),
        took,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deadline kills the whole group: a tool that hangs on a child of its own (as
    /// podman-compose did on `podman wait`) ends, and so does the child.
    #[test]
    fn a_command_past_its_deadline_is_killed_with_its_children() {
        // A sleep this test alone runs (its pid in the fraction), which the shell waits on.
        let marker = format!("sleep 600.{}", std::process::id());
        let mut command = Command::new("sh");
        command.args(["-c", &format!("echo started; {marker} & wait")]);
        let deadline = Duration::from_millis(300);
        let started = Instant::now();
        let error = run_bounded(command, deadline).unwrap_err().to_string();
        assert!(error.contains("still running after 300ms"), "{error}");
        assert!(error.contains("started"), "the output so far is in the error: {error}");
        // Ended at the deadline, not after the 600 s sleep.
        assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
        // And the child is gone: SIGKILL reached it (waited for, since its exit is the kernel's
        // to finish; without the group kill it would run on for 600 s).
        let gone = Instant::now();
        loop {
            let left = Command::new("pgrep").args(["-f", &marker]).output().unwrap();
            if !left.status.success() {
                break;
            }
            assert!(
                gone.elapsed() < Duration::from_secs(30),
                "the child outlived the deadline: {}",
                String::from_utf8_lossy(&left.stdout)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_command_that_ends_gives_its_status_and_output() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo err >&2; exit 3"]);
        let finished = run_bounded(command, Duration::from_secs(60)).unwrap();
        assert_eq!(finished.status.code(), Some(3));
        assert_eq!((finished.stdout.as_str(), finished.stderr.as_str()), ("out\n", "err\n"));
    }
}
