//! End-to-end tests of the `authkeep` binary, run as real processes against the
//! development identity provider. One test binary (see `harness`).

mod engine;
mod faults;
mod harness;
mod profiles;
mod providers;
mod race;
mod request;
mod screens;
mod skeleton;
