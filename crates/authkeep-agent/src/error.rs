//! What can stop the agent from starting or serving, in words that name the
//! file, socket or address and never a secret.

use std::path::PathBuf;
use std::sync::Arc;

/// Why the agent could not start or keep serving.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A `--listen` value or an option is not acceptable.
    #[error("{0}")]
    Usage(String),
    /// The API key file cannot be used.
    #[error("API key file {}: {problem}", path.display())]
    ApiKey {
        /// The file.
        path: PathBuf,
        /// What is wrong, never its content.
        problem: String,
    },
    /// Something answers on the unix socket already.
    #[error("another process is listening on {} (is an agent running?)", path.display())]
    SocketInUse {
        /// The socket.
        path: PathBuf,
    },
    /// A socket could not be set up or served.
    #[error("{action} {what}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The socket or address.
        what: String,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The store failed while the agent started.
    #[error(transparent)]
    Store(#[from] authkeep_db::DbError),
}

impl AgentError {
    pub(crate) fn io(
        action: &'static str,
        what: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        AgentError::Io {
            action,
            what: what.into(),
            source: Arc::new(source),
        }
    }
}
