//! Cross-process locks, atomic file replacement, and the permissions of private
//! files: created 0600 in 0700 directories, and refused when other users may
//! read or change them ([`check_private`]).
//!
//! A session's lock is an advisory `flock`-style lock on a lock file that is never
//! deleted, so the OS releases it when its holder dies, however it dies; nothing is
//! ever guessed from timestamps. A lock belongs to an open file description, so two
//! opens in one process contend like two processes do; the coordinator pairs it with
//! an in-process single flight.
//!
//! A process that finds the lock held does not poll for it. It waits for the
//! holder to let go with a blocking *shared* lock taken on a helper thread, which
//! the kernel grants to every such waiter at once when the exclusive holder
//! releases; the waiter drops it at once and re-reads the record. So N waiters
//! wake together and read the winner's record without queueing for an exclusive
//! turn each; only one that still finds a refresh due competes for the exclusive
//! lock again.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::error::StoreError;

/// An exclusive lock on a lock file, released when dropped (or when the process
/// dies).
#[derive(Debug)]
pub struct FileLock {
    // Holding the open file holds the lock.
    _file: File,
}

impl FileLock {
    /// Takes the lock on `path` if nobody holds it; `None` if somebody does.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>, StoreError> {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(StoreError::io("locking", path)(e)),
        }
    }

    /// Whether someone holds the lock on `path` exclusively (a refresh is in
    /// progress), without taking it.
    pub fn is_held(path: &Path) -> Result<bool, StoreError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io("opening", path)(e)),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(StoreError::io("locking", path)(e)),
        }
    }

    /// Waits until nobody holds the lock on `path` exclusively, at most `wait`.
    /// Returns whether it was released in time (it may be taken again at once).
    pub async fn wait_for_release(path: &Path, wait: Duration) -> Result<bool, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        Self::spawn_waiter(path, move |outcome| {
            // A receiver that stopped waiting is owed nothing.
            tx.send(outcome).ok();
        })?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(outcome)) => outcome.map(|()| true),
            // The thread ended without an answer: only a panic inside std's
            // `lock_shared` could do that. Treat it as released; the caller
            // re-reads and tries again, bounded by its own deadline.
            Ok(Err(_)) => Ok(true),
            Err(_) => Ok(false),
        }
    }

    /// [`Self::wait_for_release`] for synchronous callers.
    pub fn wait_for_release_blocking(path: &Path, wait: Duration) -> Result<bool, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        Self::spawn_waiter(path, move |outcome| {
            // A receiver that stopped waiting is owed nothing.
            tx.send(outcome).ok();
        })?;
        match rx.recv_timeout(wait) {
            Ok(outcome) => outcome.map(|()| true),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Ok(true),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(false),
        }
    }

    /// Takes a shared lock on `path` on a thread of its own, drops it at once,
    /// and reports.
    ///
    /// A blocking `flock` cannot be abandoned at a deadline, so it runs on a
    /// thread; on time-out the thread is left blocked, and when the holder
    /// finally lets go it takes the shared lock and drops it at once. A plain
    /// thread rather than an async runtime's blocking pool, because a runtime
    /// waits for its blocking tasks when it shuts down and a stopped holder would
    /// keep the process from exiting.
    fn spawn_waiter(
        path: &Path,
        report: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let file = open_lock_file(path)?;
        let owned = path.to_owned();
        std::thread::Builder::new()
            .name("authkeep-lock-wait".into())
            .spawn(move || {
                let outcome = file
                    .lock_shared()
                    .map_err(StoreError::io("waiting for the lock", owned));
                // The shared lock is released as the file is dropped.
                drop(file);
                report(outcome);
            })
            .map(drop)
            .map_err(StoreError::io("starting a thread to wait for", path))
    }
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    open_private(path, false)
}

/// Opens `path` for writing, creating it readable by its owner only (0600);
/// `truncate` empties an existing file.
pub(crate) fn open_private(path: &Path, truncate: bool) -> Result<File, StoreError> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate);
    set_private_mode(&mut options);
    options.open(path).map_err(StoreError::io("opening", path))
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

/// Refuses a file or directory of a session store that other users may read or
/// change: one that grants group or others any access, or that another user
/// owns (as ssh refuses such a private key). `meta` is its metadata, links
/// followed. The error names the shell command that fixes it. Only Unix has
/// these permission bits; elsewhere nothing is refused.
pub(crate) fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        // Asked once per process: the warm path checks two paths.
        static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let mode = meta.mode() & 0o7777;
        let me = *EUID.get_or_init(|| rustix::process::geteuid().as_raw());
        let owner = (meta.uid() != me).then_some(meta.uid());
        if mode & 0o077 == 0 && owner.is_none() {
            return Ok(());
        }
        let is_dir = meta.is_dir();
        let shown = shell_quoted(path);
        let mut fix = Vec::new();
        if owner.is_some() {
            fix.push(format!("chown {me} {shown}"));
        }
        if mode & 0o077 != 0 {
            let private = if is_dir { "700" } else { "600" };
            fix.push(format!("chmod {private} {shown}"));
        }
        Err(StoreError::InsecurePermissions {
            path: path.to_owned(),
            is_dir,
            mode,
            owner,
            fix: fix.join(" && "),
        })
    }
    #[cfg(not(unix))]
    {
        let _unused = (path, meta);
        Ok(())
    }
}

/// `path` as a shell word: as it is when it holds only characters no shell
/// treats specially, else in single quotes.
#[cfg(unix)]
fn shell_quoted(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
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
    async fn a_waiter_wakes_when_the_holder_releases_and_times_out_while_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let held = FileLock::try_acquire(&path)
            .unwrap()
            .expect("free at first");
        assert!(FileLock::try_acquire(&path).unwrap().is_none(), "held");
        assert!(
            !FileLock::wait_for_release(&path, Duration::from_millis(50))
                .await
                .unwrap(),
            "still held after the wait"
        );
        let waiter = tokio::spawn({
            let path = path.clone();
            async move { FileLock::wait_for_release(&path, Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "the waiter waits while the lock is held"
        );
        drop(held);
        assert!(waiter.await.unwrap().unwrap(), "woken by the release");
        // The waiter's shared lock is gone too: the lock can be taken again.
        let again = FileLock::try_acquire(&path).unwrap();
        assert!(again.is_some());
    }

    #[cfg(unix)]
    #[test]
    fn files_and_directories_others_may_use_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let sessions = dir.path().join("my sessions");
        create_private_dir(&sessions).unwrap();
        let file = sessions.join("a.json");
        std::fs::write(&file, b"{}").unwrap();
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let check = |path: &Path| check_private(path, &std::fs::metadata(path).unwrap());
        set(&file, 0o600);
        check(&file).unwrap();
        check(&sessions).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            set(&file, mode);
            let error = check(&file).unwrap_err();
            let StoreError::InsecurePermissions {
                mode: found,
                is_dir,
                owner,
                ref fix,
                ..
            } = error
            else {
                panic!("{error:?}");
            };
            assert_eq!((found, is_dir, owner), (mode, false, None));
            let quoted = format!("'{}'", file.display());
            assert_eq!(fix, &format!("chmod 600 {quoted}"));
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("session file {} ", file.display()))
                    && message.contains(&format!("(mode {mode:04o})"))
                    && message.ends_with(&format!("fix it with `chmod 600 {quoted}`")),
                "{message}"
            );
            assert!(error.is_misconfiguration() && !error.is_transient());
        }
        set(&sessions, 0o755);
        let error = check(&sessions).unwrap_err();
        assert!(
            error.to_string().starts_with("session directory ")
                && error.to_string().contains("(mode 0755)")
                && error.to_string().contains("chmod 700 "),
            "{error}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_another_user_owns_is_refused_even_when_private() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        open_private(&file, false).unwrap();
        let me = std::fs::metadata(&file).unwrap().uid();
        // Giving a file away takes privileges; without them (a developer's
        // machine) this part cannot be set up, and the test has nothing to show.
        if std::os::unix::fs::chown(&file, Some(me + 4242), None).is_err() {
            return;
        }
        let error = check_private(&file, &std::fs::metadata(&file).unwrap()).unwrap_err();
        let StoreError::InsecurePermissions { owner, ref fix, .. } = error else {
            panic!("{error:?}");
        };
        assert_eq!(owner, Some(me + 4242));
        assert_eq!(fix, &format!("chown {me} {}", file.display()));
        assert!(
            error
                .to_string()
                .contains(&format!("is owned by another user (uid {})", me + 4242)),
            "{error}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn paths_in_a_fix_are_quoted_for_the_shell() {
        assert_eq!(shell_quoted(Path::new("/a/b-c_d.json")), "/a/b-c_d.json");
        assert_eq!(shell_quoted(Path::new("/a b/c")), "'/a b/c'");
        assert_eq!(shell_quoted(Path::new("/it's")), "'/it'\\''s'");
        assert_eq!(shell_quoted(Path::new("$(x)")), "'$(x)'");
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
