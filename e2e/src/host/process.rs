//! Starting the components as daemons that outlive `dfr-cluster up`, and stopping exactly the
//! processes a cluster started (by the PIDs it recorded in its state dir, checked against their
//! command lines so a recycled PID is never signalled).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::error::{Error, Result};

pub struct Started {
    pub component: String,
    pub child: Child,
    pub log: PathBuf,
}

pub fn spawn(
    bin_dir: &Path,
    component: &str,
    args: &[String],
    state_dir: &Path,
) -> Result<Started> {
    spawn_program(&bin_dir.join(component), component, args, state_dir)
}

/// Starts `program` as `component`; its arguments must mention the state dir, which is how
/// `stop_all` recognises it later.
pub fn spawn_program(
    program: &Path,
    component: &str,
    args: &[String],
    state_dir: &Path,
) -> Result<Started> {
    spawn_program_with_env(program, component, args, &[], state_dir)
}

/// `spawn_program` with extra environment variables: the way to hand a daemon a secret, since
/// /proc/<pid>/cmdline is readable by every user and /proc/<pid>/environ only by its owner.
pub fn spawn_program_with_env(
    program: &Path,
    component: &str,
    args: &[String],
    env: &[(&str, &str)],
    state_dir: &Path,
) -> Result<Started> {
    use std::os::unix::process::CommandExt;
    let logs = state_dir.join("logs");
    let pids = state_dir.join("pids");
    for dir in [&logs, &pids] {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    let log = logs.join(format!("{component}.log"));
    let out =
        std::fs::File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(Error::io("duplicating a log handle"))?;
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: a Ctrl-C in the shell that ran `up` must not stop the cluster.
        .process_group(0)
        .spawn()
        .map_err(Error::io(format!("starting {component}")))?;
    let pid_file = pids.join(format!("{component}.pid"));
    std::fs::write(&pid_file, child.id().to_string())
        .map_err(Error::io(format!("writing {}", pid_file.display())))?;
    Ok(Started {
        component: component.to_string(),
        child,
        log,
    })
}

/// The last lines of a log, for error messages.
pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Started {
    /// Fails with the log's tail if the process has already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::ComponentExited {
                component: self.component.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: tail(&self.log, 20),
            }),
            _ => Ok(()),
        }
    }

    /// The error for a component that is still running but not ready after `seconds`.
    pub fn not_ready(&self, seconds: u64) -> Error {
        Error::NotReady {
            component: self.component.clone(),
            seconds,
            log: self.log.clone(),
            tail: tail(&self.log, 20),
        }
    }
}

/// Whether `pid` is a live process whose command line mentions `marker` (our state dir).
fn is_ours(pid: i32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
        .unwrap_or(false)
}

/// Stops every component recorded in the state dir, newest first: SIGTERM, then SIGKILL after
/// a grace period. Safe to call twice and after a crash.
pub fn stop_all(state_dir: &Path, order: &[&str]) -> Result<Vec<String>> {
    let marker = state_dir.display().to_string();
    let mut stopped = Vec::new();
    for component in order {
        let pid_file = state_dir.join("pids").join(format!("{component}.pid"));
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            continue;
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            continue;
        };
        if is_ours(pid, &marker) {
            signal(component, pid, Signal::SIGTERM)?;
            let deadline = Instant::now() + Duration::from_secs(15);
            while is_ours(pid, &marker) && !is_zombie(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if is_ours(pid, &marker) && !is_zombie(pid) {
                signal(component, pid, Signal::SIGKILL)?;
            }
            stopped.push(format!("{component} (pid {pid})"));
        }
        let _ = std::fs::remove_file(&pid_file);
    }
    Ok(stopped)
}

/// Whether a process runs a program from `programs` and names `marker` on its command line:
/// a tool this project built, started against this cluster.
/// The state dir or a path under it, not another cluster's whose name starts the same.
pub fn is_stray(exe: &Path, args: &[&str], programs: &Path, marker: &str) -> bool {
    let under = format!("{marker}/");
    exe.starts_with(programs)
        && args
            .iter()
            .any(|arg| arg.ends_with(marker) || arg.contains(&under))
}

/// Stops processes no pid file records that run a program from `programs` (the cache of built
/// tools) against the cluster whose state dir this is: a test's own S3 server, whose test was
/// killed before its Drop ran, would otherwise hold its port on the host interface into the
/// next cluster. Nothing else is touched, not even a shell that names the state dir.
pub fn stop_strays(state_dir: &Path, programs: &Path) -> Result<Vec<String>> {
    let marker = state_dir.display().to_string();
    let own = std::process::id();
    // Components with a pid file are stopped in their order by `stop_all`, not here.
    let recorded: Vec<i32> = std::fs::read_dir(state_dir.join("pids"))
        .map(|files| {
            files
                .flatten()
                .filter_map(|file| std::fs::read_to_string(file.path()).ok())
                .filter_map(|text| text.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut stopped = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Ok(stopped);
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if u32::try_from(pid).ok() == Some(own) || recorded.contains(&pid) {
            continue;
        }
        let (Ok(exe), Ok(cmdline)) = (
            std::fs::read_link(entry.path().join("exe")),
            std::fs::read(entry.path().join("cmdline")),
        ) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        let args: Vec<&str> = cmdline.split('\0').collect();
        if !is_stray(&exe, &args, programs, &marker) || is_zombie(pid) {
            continue;
        }
        let program = exe
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        signal(&program, pid, Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_ours(pid, &marker) && !is_zombie(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if is_ours(pid, &marker) && !is_zombie(pid) {
            signal(&program, pid, Signal::SIGKILL)?;
        }
        stopped.push(format!("{program} (pid {pid}, not started by up)"));
    }
    Ok(stopped)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn signal(component: &str, pid: i32, signal: Signal) -> Result<()> {
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(Error::Signal {
            component: component.to_string(),
            pid,
            source,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("dfr-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("x.log");
        std::fs::write(&log, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&log, 2), "c\nd");
        assert_eq!(tail(&dir.join("missing.log"), 2), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stray_is_a_built_tool_that_names_this_cluster() {
        let programs = Path::new("/root/.cache/dfr");
        let state = "/var/lib/dfr/clusters/node";
        let versitygw = Path::new("/root/.cache/dfr/versitygw-v1-abc/versitygw");
        let line = [
            "versitygw",
            "--cert",
            "/var/lib/dfr/clusters/node/s3/server.crt",
            "posix",
            "/data",
        ];
        assert!(is_stray(versitygw, &line, programs, state));
        // Another cluster's server (even one whose name starts the same), a shell tailing the
        // state dir, and a tool not built here.
        for other in ["other", "node-2"] {
            let cert = format!("/var/lib/dfr/clusters/{other}/s3/server.crt");
            assert!(!is_stray(
                versitygw,
                &["versitygw", "--cert", &cert],
                programs,
                state
            ));
        }
        assert!(!is_stray(
            Path::new("/usr/bin/tail"),
            &line,
            programs,
            state
        ));
        assert!(!is_stray(
            Path::new("/usr/bin/bash"),
            &line,
            programs,
            state
        ));
    }

    #[test]
    fn a_process_that_does_not_mention_the_state_dir_is_never_ours() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(!is_ours(me, "/definitely/not/a/dfr/state/dir"));
        assert!(!is_ours(i32::MAX, "/"));
    }
}
