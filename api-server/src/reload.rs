//! A value read from files and read again when they change, for what Kubernetes mounts from a
//! Secret and updates in place: the HTTPS certificate and the PII key ring. Kubernetes updates a
//! mounted Secret by swapping a symlink to a new directory; the files' metadata (followed
//! through the link) then changes, which is what is compared. The files are looked at when the
//! value is used, at most once a second; a new version that cannot be read (half written,
//! invalid) is logged and the value in use is kept.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How often a use may look at the files.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies one version of a file: modification time, size and inode.
type Stamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len(), meta.ino()))
}

type Loader<T, E> = Box<dyn Fn() -> Result<T, E> + Send + Sync>;

struct Current<T> {
    value: Arc<T>,
    /// None for a file whose metadata could not be read: the next check reads it again.
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
}

/// The value `load` makes of `files`, made again when one of them changes.
pub struct Reloading<T, E> {
    /// Names the value in log lines, e.g. "TLS certificate".
    what: &'static str,
    files: Vec<PathBuf>,
    load: Loader<T, E>,
    current: RwLock<Current<T>>,
}

impl<T, E> std::fmt::Debug for Reloading<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("files", &self.files)
            .finish()
    }
}

impl<T, E: Display> Reloading<T, E> {
    /// Fails when `load` fails now: a server must not start without the value.
    pub fn new(
        what: &'static str,
        files: Vec<PathBuf>,
        load: impl Fn() -> Result<T, E> + Send + Sync + 'static,
    ) -> Result<Self, E> {
        let stamps = files.iter().map(|file| stamp(file).ok()).collect();
        let value = Arc::new(load()?);
        Ok(Self {
            what,
            files,
            load: Box::new(load),
            current: RwLock::new(Current {
                value,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The value to use now, made again first if the files changed since the last look.
    pub fn current(&self) -> Arc<T> {
        {
            // A poisoned lock only means a panic elsewhere while holding it; the data is whole.
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if current.checked.elapsed() < CHECK_EVERY {
                return current.value.clone();
            }
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.checked.elapsed() >= CHECK_EVERY {
            self.reload(&mut current, false);
        }
        current.value.clone()
    }

    /// Reads the files again now, whether or not they look changed or were looked at within
    /// the last second, for a caller that knows the value it holds is behind.
    pub fn reload_now(&self) -> Arc<T> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        self.reload(&mut current, true);
        current.value.clone()
    }

    fn reload(&self, current: &mut Current<T>, always: bool) {
        current.checked = Instant::now();
        let stamps: Vec<Option<Stamp>> = self.files.iter().map(|file| stamp(file).ok()).collect();
        if stamps.iter().any(Option::is_none) {
            tracing::warn!(what = self.what, files = ?self.files, "files unreadable; keeping the version in use");
            return;
        }
        if !always && stamps == current.stamps {
            return;
        }
        match (self.load)() {
            Ok(value) => {
                current.value = Arc::new(value);
                current.stamps = stamps;
                tracing::info!(what = self.what, files = ?self.files, "reloaded");
            }
            // Seen between the writes of an update; the next check reads it again.
            Err(error) => {
                tracing::warn!(what = self.what, %error, "not reloaded; keeping the version in use")
            }
        }
    }
}
