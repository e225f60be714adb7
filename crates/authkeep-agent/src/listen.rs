//! Where the token API listens: a unix socket (0600; by default `agent.sock`
//! in the state directory) or a loopback TCP address, which requires an API
//! key read from a 0600 file. No other address is accepted.
//!
//! A socket is bound in a private directory beside its path, made 0600 there
//! and renamed into place, so that no other user can connect in between. A
//! socket file left by an agent that died is removed only when nothing
//! answers on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::AgentError;

/// Where to listen, as `--listen` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket at this path.
    Unix(PathBuf),
    /// A loopback TCP address.
    Tcp(SocketAddr),
}

impl Listen {
    /// Reads `unix:PATH` or `IP:PORT` (loopback only: 127.0.0.0/8 or `[::1]`).
    pub fn parse(text: &str) -> Result<Self, AgentError> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AgentError::Usage(
                    "--listen unix: needs a path (unix:/run/authkeep/agent.sock)".into(),
                ));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = text.parse().map_err(|_| {
            AgentError::Usage(format!(
                "invalid --listen {:?}: write unix:PATH or 127.0.0.1:PORT",
                text.chars().take(80).collect::<String>()
            ))
        })?;
        if !addr.ip().is_loopback() {
            return Err(AgentError::Usage(format!(
                "--listen {addr}: the agent listens on loopback only (127.0.0.1:PORT or [::1]:PORT), \
                 or on a unix socket"
            )));
        }
        Ok(Listen::Tcp(addr))
    }

    /// Whether this listener needs an API key (TCP does).
    pub fn needs_key(&self) -> bool {
        matches!(self, Listen::Tcp(_))
    }
}

/// The API key every TCP request must carry as `Authorization: Bearer KEY`.
/// Its `Debug` never shows it; it is zeroized on drop.
#[derive(Clone)]
pub struct ApiKey(Zeroizing<String>);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// The shortest key accepted.
const MIN_KEY_CHARS: usize = 16;

impl ApiKey {
    /// A key from its text (surrounding white space removed): at least 16
    /// visible ASCII characters.
    pub fn new(text: &str) -> Result<Self, String> {
        let key = text.trim();
        if key.len() < MIN_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the key must be at least {MIN_KEY_CHARS} visible ASCII characters on one line \
                 (make one with: head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE)"
            ));
        }
        Ok(Self(Zeroizing::new(key.to_owned())))
    }

    /// Reads the key file, refusing one that group or others may read or
    /// change.
    pub fn read_file(path: &Path) -> Result<Self, AgentError> {
        let problem = |problem: String| AgentError::ApiKey {
            path: path.to_owned(),
            problem,
        };
        let file = std::fs::File::open(path).map_err(|e| problem(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let mode = file.metadata().map_err(|e| problem(e.to_string()))?.mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(problem(format!(
                    "it is accessible by group or others (mode {mode:04o}); fix it with `chmod 600 {}`",
                    path.display()
                )));
            }
        }
        let mut text = Zeroizing::new(String::new());
        std::io::Read::read_to_string(&mut std::io::Read::take(file, 4096), &mut text)
            .map_err(|_| problem("it is not readable text".into()))?;
        Self::new(&text).map_err(problem)
    }

    /// Whether `presented` is the key, in time that does not depend on where
    /// they differ.
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::{Digest as _, Sha256};
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }

    /// The key, for whatever must derive from it (the status page's cookie).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

/// A bound listener, ready to serve.
#[derive(Debug)]
pub enum Bound {
    /// A unix socket (removed when the agent stops).
    Unix(tokio::net::UnixListener, PathBuf),
    /// A loopback TCP socket.
    Tcp(tokio::net::TcpListener),
}

impl Bound {
    /// Binds `listen`.
    pub async fn bind(listen: &Listen) -> Result<Bound, AgentError> {
        match listen {
            Listen::Tcp(addr) => tokio::net::TcpListener::bind(addr)
                .await
                .map(Bound::Tcp)
                .map_err(|e| AgentError::io("cannot listen on", addr.to_string(), e)),
            Listen::Unix(path) => bind_unix(path).await,
        }
    }

    /// What it listens on, for a start-up line (`unix:PATH` or `IP:PORT`).
    pub fn describe(&self) -> String {
        match self {
            Bound::Unix(_, path) => format!("unix:{}", path.display()),
            Bound::Tcp(listener) => listener
                .local_addr()
                .map_or_else(|_| "tcp".into(), |a| a.to_string()),
        }
    }
}

async fn bind_unix(path: &Path) -> Result<Bound, AgentError> {
    let shown = || path.display().to_string();
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileTypeExt as _;
                if !meta.file_type().is_socket() {
                    return Err(AgentError::Usage(format!(
                        "{} exists and is not a socket; it was left alone",
                        shown()
                    )));
                }
            }
            #[cfg(not(unix))]
            drop(meta);
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(AgentError::SocketInUse {
                    path: path.to_owned(),
                });
            }
            // Nothing answers: a socket left by an agent that died.
            std::fs::remove_file(path)
                .map_err(|e| AgentError::io("cannot remove the stale socket", shown(), e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AgentError::io("cannot inspect", shown(), e)),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&parent)
        .map_err(|e| AgentError::io("cannot create", parent.display().to_string(), e))?;
    // A private directory beside the socket: nobody else can connect before
    // the socket is 0600 and in place.
    let private = tempfile::Builder::new()
        .prefix(".agent-sock.")
        .tempdir_in(&parent)
        .map_err(|e| {
            AgentError::io(
                "cannot create a directory in",
                parent.display().to_string(),
                e,
            )
        })?;
    let staged = private.path().join("s");
    let listener = tokio::net::UnixListener::bind(&staged)
        .map_err(|e| AgentError::io("cannot listen on", shown(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| AgentError::io("cannot restrict", shown(), e))?;
    }
    std::fs::rename(&staged, path).map_err(|e| AgentError::io("cannot place", shown(), e))?;
    private
        .close()
        .map_err(|e| AgentError::io("cannot remove the staging directory of", shown(), e))?;
    Ok(Bound::Unix(listener, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_unix_sockets_are_accepted() {
        assert_eq!(
            Listen::parse("unix:/tmp/a.sock").unwrap(),
            Listen::Unix("/tmp/a.sock".into())
        );
        assert!(Listen::parse("127.0.0.1:8080").unwrap().needs_key());
        assert!(Listen::parse("[::1]:8080").is_ok());
        assert!(Listen::parse("0.0.0.0:8080").is_err());
        assert!(Listen::parse("192.168.1.2:8080").is_err());
        assert!(Listen::parse("localhost:8080").is_err());
        assert!(Listen::parse("unix:").is_err());
    }

    #[test]
    fn keys_are_checked_in_full_and_never_shown() {
        let key = ApiKey::new("  0123456789abcdef-key\n").unwrap();
        assert!(key.matches("0123456789abcdef-key"));
        assert!(!key.matches("0123456789abcdef-kez"));
        assert!(!key.matches("0123456789abcdef-key "));
        assert!(!key.matches(""));
        assert_eq!(format!("{key:?}"), "ApiKey([redacted])");
        assert!(ApiKey::new("short").is_err());
        assert!(ApiKey::new("0123456789abcdef 0123").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = ApiKey::read_file(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        assert!(!error.contains("0123456789abcdef"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            ApiKey::read_file(&path)
                .unwrap()
                .matches("0123456789abcdef0123")
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_socket_is_private_and_a_live_one_is_never_replaced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let first = Bound::bind(&Listen::Unix(path.clone())).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            Bound::bind(&Listen::Unix(path.clone())).await,
            Err(AgentError::SocketInUse { .. })
        ));
        drop(first);
        // Nobody answers now: the stale socket is replaced.
        Bound::bind(&Listen::Unix(path.clone())).await.unwrap();
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no staging directory is left");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        assert!(Bound::bind(&Listen::Unix(plain.clone())).await.is_err());
        assert!(plain.exists(), "a file that is not a socket is left alone");
    }
}
