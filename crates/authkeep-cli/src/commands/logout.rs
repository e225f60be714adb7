//! `authkeep logout`: delete the local session of a profile.

use anyhow::Result;
use authkeep::store::Store as _;
use authkeep::{Error, StoreError};

use crate::config;
use crate::names::{NetworkArgs, PolicyArgs, ProfileArg};
use crate::printer::{self, Level};

/// Delete the local session of a profile (its tokens and client settings). A
/// session file that cannot be read is moved aside, not deleted.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    profile: ProfileArg,
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    let (settings, warning) = config::Settings::resolve_lenient(
        &args.profile,
        &PolicyArgs::default(),
        &NetworkArgs::default(),
    )?;
    if let Some(warning) = warning {
        printer::status(level, Level::Normal, &config::ignored_warning(&warning));
    }
    let key = settings.key.clone();
    let keeper = settings.keeper().build();
    crate::runtime()?.block_on(async {
        match keeper.logout(&key).await {
            Ok(true) => printer::status(
                level,
                Level::Normal,
                &format!("{key}: logged out; local session deleted"),
            ),
            Ok(false) => printer::status(
                level,
                Level::Normal,
                &format!("{key}: no session to log out of"),
            ),
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
