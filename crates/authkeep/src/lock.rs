//! Cross-process locks and atomic file replacement.
//!
//! A session's lock is an advisory `flock`-style lock on a lock file that is never
//! deleted, so the OS releases it when its holder dies, however it dies; nothing is
//! ever guessed from timestamps. A lock belongs to an open file description, so two
//! opens in one process contend like two processes do; the coordinator pairs it with
//! an in-process single flight.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::StoreError;

/// An exclusive lock on a lock file, released when dropped (or when the process
/// dies).
#[derive(Debug)]
pub struct FileLock {
    // Holding the open file holds the lock.
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock on `path`, waiting at most `wait`.
    ///
    /// std offers `lock()` (wait forever) and `try_lock()`; a blocking wait cannot be
    /// abandoned at a deadline, so this polls `try_lock` with a short, growing pause
    /// and gives up at the bound. `on_wait` is called once if the lock is busy.
    pub async fn acquire(
        path: &Path,
        key: &str,
        wait: Duration,
        on_wait: impl FnOnce(),
    ) -> Result<Self, StoreError> {
        let file = open_lock_file(path)?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        let mut on_wait = Some(on_wait);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Self {
                        _file: file,
                        path: path.to_owned(),
                    });
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(StoreError::io("locking", path)(e)),
            }
            if let Some(notify) = on_wait.take() {
                notify();
            }
            let elapsed = started.elapsed();
            if elapsed >= wait {
                return Err(StoreError::LockTimeout {
                    key: key.to_owned(),
                    waited_secs: wait.as_secs(),
                });
            }
            tokio::time::sleep(pause.min(wait - elapsed)).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    set_private_mode(&mut options);
    options
        .open(path)
        .map_err(StoreError::io("opening lock file", path))
}

/// Replaces `path` with `bytes` atomically: a private temporary file in the same
/// directory, fsync, rename over the target, fsync of the directory. A reader sees
/// the old content or the new, never a mix; after a crash the file parses.
/// `temp_prefix` names the temporary file so that stale ones can be found later.
pub fn write_atomically(path: &Path, temp_prefix: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // tempfile creates the file 0600 (readable by its owner only) with O_EXCL.
    let mut temp = tempfile::Builder::new()
        .prefix(temp_prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(StoreError::io("creating a temporary file in", dir))?;
    temp.write_all(bytes)
        .map_err(StoreError::io("writing", temp.path().to_owned()))?;
    temp.as_file()
        .sync_all()
        .map_err(StoreError::io("syncing", temp.path().to_owned()))?;
    temp.persist(path)
        .map_err(|e| StoreError::io("replacing", path)(e.error))?;
    sync_dir(dir)
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(StoreError::io("syncing directory", dir))
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a directory for syncing; a rename there is durable
        // once MoveFileEx returns with the write-through flag tempfile uses.
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` (and parents) private to its owner (0700), and tightens it if it
/// already exists with a broader mode.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        // Every directory created on the way is private, not just the last.
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(StoreError::io("creating directory", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(dir).map_err(StoreError::io("reading", dir))?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(StoreError::io("restricting permissions of", dir))?;
        }
    }
    Ok(())
}

fn set_private_mode(options: &mut OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = options;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_open_waits_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let held = FileLock::acquire(&path, "s", Duration::from_secs(1), || {})
            .await
            .unwrap();
        let mut waited = false;
        let err = FileLock::acquire(&path, "s", Duration::from_millis(50), || waited = true)
            .await
            .unwrap_err();
        assert!(waited);
        assert!(matches!(err, StoreError::LockTimeout { .. }), "{err}");
        drop(held);
        FileLock::acquire(&path, "s", Duration::from_millis(50), || {})
            .await
            .unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_is_private_and_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_atomically(&path, ".r.json.", b"one").unwrap();
        write_atomically(&path, ".r.json.", b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.json")]);
    }
}
