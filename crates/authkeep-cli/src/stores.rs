//! Where a profile's secrets live: the backend chosen with `--store`
//! (`AUTHKEEP_STORE`, config `store`, per profile or for all), and the one
//! sealer every command's store uses. Both are the library's
//! (`authkeep::config`), so that every program reading the configuration opens
//! the same records the same way; this module names them for the commands.

pub use authkeep::config::{Backend, KEY_ENTRY, KeySource, NEXT_KEY_ENTRY, keyring_failure};

/// A keyring failure in the command's words, with what to do about it.
pub use authkeep::config::keyring_advice as keyring_message;
