use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong building or importing an image. Each message names the step and,
/// where there is one, its log file.
#[derive(Error, Debug)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: could not start {program}: {source}; is it installed?")]
    Spawn {
        step: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: {program} exited with {status}; last lines of {log}:\n{tail}")]
    CommandFailed {
        step: String,
        program: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{file}, line {line}: {message}")]
    PackageList {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no image recipe named {0:?}; the binary images are dfr-api and dfr-operator")]
    UnknownImage(String),
    #[error(
        "{0:?} is not an image tag (up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`)"
    )]
    InvalidTag(String),
    #[error("{what} is {size} bytes, more than a tar header can describe")]
    TooLarge { what: String, size: u64 },
    #[error("{mount} is still mounted after the build under {root}; unmount it by hand")]
    StillMounted { root: PathBuf, mount: PathBuf },
    #[error("building images needs root (debootstrap and chroot); this runs as uid {0}")]
    NotRoot(u32),
    #[error("HOME is not set; cannot find the cache directory")]
    NoHome,
}

impl Error {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
