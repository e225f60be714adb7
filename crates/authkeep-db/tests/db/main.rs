//! The database stores' tests, one binary: the shared store contract on
//! SQLite and PostgreSQL, leases and fencing with real tasks on separate
//! connections, a keeper on many stores against the development identity
//! provider, clients, accounts and claims, and bad input.
//!
//! PostgreSQL tests need the server that `scripts/with-postgres.sh` starts
//! (it sets `AUTHKEEP_TEST_POSTGRES_URL`); each test works in a schema of its
//! own. Without the variable they fail, saying so.

mod accounts;
mod bad_input;
mod commit;
mod contract;
mod harness;
mod keeper;
mod leases;

#[path = "../../../authkeep/tests/support/store_contract.rs"]
mod suite;
