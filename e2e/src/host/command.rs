//! Running the machine's own tools (ip, iptables, umount) where a failure is reported with
//! what the tool said.

use std::process::Command;

use super::error::{Error, Result};

/// Runs `program` with `args` and returns its stdout, or an error carrying its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(Error::io(format!("running {program}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Io {
            what: format!("{program} {}", args.join(" ")),
            source: std::io::Error::other(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ),
        })
    }
}
