//! End-to-end tests of the `authkeep` binary, run as real processes against the
//! development identity provider. One test binary (see `harness`).

mod agent;
mod audit;
mod conformance;
mod credential;
mod doctor;
mod engine;
mod exec;
mod faults;
mod harness;
mod kube;
mod login;
mod oidc;
mod permissions;
mod profiles;
mod providers;
mod race;
mod request;
mod scale;
mod screens;
mod skeleton;
mod stores;
