//! `authkeep logout`: delete the local session of a profile, then revoke its
//! tokens at the provider (RFC 7009). The profile stays in the configuration.

use anyhow::Result;
use authkeep::store::Store as _;
use authkeep::{Error, Logout, Revocation, SessionKey, StoreError};

use crate::config;
use crate::names::{NetworkArgs, PolicyArgs, ProfileArg};
use crate::printer::{self, Level};

/// Delete the local session of a profile, then revoke its refresh token and access token at
/// the provider when it offers revocation. The local session is deleted even when the provider
/// cannot be reached (that is said). The profile's settings stay, so `authkeep login` logs in
/// again. A session file that cannot be read is moved aside, not deleted.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    profile: ProfileArg,
    /// Only delete the local session; leave the tokens valid at the provider.
    #[arg(long)]
    no_revoke: bool,
    #[command(flatten)]
    network: NetworkArgs,
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    let (settings, warning) =
        config::Settings::resolve_lenient(&args.profile, &PolicyArgs::default(), &args.network)?;
    if let Some(warning) = warning {
        printer::status(level, Level::Normal, &config::ignored_warning(&warning));
    }
    let key = settings.key.clone();
    let keeper = settings.keeper().build();
    crate::runtime()?.block_on(async {
        match keeper.logout_and_revoke(&key, !args.no_revoke).await {
            Ok(logout) => printer::status(level, Level::Normal, &said(&key, &logout)),
            Err(Error::Store(StoreError::Corrupt { .. })) => {
                let store = keeper.store();
                let guard = store.lock(&key, keeper.lock_timeout(), || {}).await?;
                let aside = store.set_aside(&guard, keeper.now())?;
                printer::status(
                    level,
                    Level::Normal,
                    &format!(
                        "{key}: the session file was unreadable; moved it to {} and logged out",
                        aside.display()
                    ),
                );
            }
            Err(other) => return Err(other.into()),
        }
        Ok(())
    })
}

/// What a logout did, in one line.
fn said(key: &SessionKey, logout: &Logout) -> String {
    if !logout.removed {
        return format!("{key}: no session to log out of");
    }
    let revoked = match &logout.revocation {
        Revocation::NotAsked => "not revoked at the provider (--no-revoke)".to_owned(),
        Revocation::NothingToRevoke => "it held no token to revoke".to_owned(),
        Revocation::NotOffered => {
            "the provider offers no revocation, so its tokens stay valid until they expire"
                .to_owned()
        }
        Revocation::Revoked {
            refresh_token,
            access_token,
        } => match (refresh_token, access_token) {
            (true, true) => "revoked the refresh token and the access token".to_owned(),
            (true, false) => {
                "revoked the refresh token (the provider does not revoke access tokens)".to_owned()
            }
            (false, true) => "revoked the access token".to_owned(),
            (false, false) => "the provider revoked neither token".to_owned(),
        },
        Revocation::Failed {
            failure,
            refresh_token_revoked,
        } => format!(
            "could not revoke {}at the provider ({}); its tokens may stay valid until they expire",
            if *refresh_token_revoked {
                "the access token (the refresh token was revoked) "
            } else {
                "the tokens "
            },
            failure.summary()
        ),
        _ => "revocation ended in an unknown way".to_owned(),
    };
    format!("{key}: logged out; local session deleted; {revoked}")
}
