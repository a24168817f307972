//! Runs the external tools (debootstrap, chroot, pip, gcc, tar, ctr) with their output in a log
//! file, so that a failure reports the step, the log and its last lines.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::{Error, Result};

const TAIL_LINES: usize = 20;

/// Runs `command`, appending its stdout and stderr to `log` after a line naming it.
pub fn logged(step: &str, command: &mut Command, log: &Path) -> Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io(format!("opening the log {}", log.display())))?;
    writeln!(file, "\n### {step}\n$ {command:?}")
        .map_err(Error::io(format!("writing the log {}", log.display())))?;
    let stderr = file
        .try_clone()
        .map_err(Error::io("duplicating the log handle"))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .status()
        .map_err(|source| Error::Spawn {
            step: step.to_string(),
            program: program.clone(),
            source,
        })?;
    if status.success() {
        return Ok(());
    }
    Err(Error::CommandFailed {
        step: step.to_string(),
        program,
        status: status.to_string(),
        log: log.to_path_buf(),
        tail: tail(log),
    })
}

fn tail(log: &Path) -> String {
    let text = std::fs::read(log)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// The effective uid, from /proc so that no extra nix feature is needed.
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub fn require_root() -> Result<()> {
    match effective_uid() {
        Some(0) | None => Ok(()),
        Some(uid) => Err(Error::NotRoot(uid)),
    }
}
