//! One file per command: parse, call the library, print.

pub mod accounts;
pub mod agent;
pub mod completions;
pub mod credential;
pub mod demo;
pub mod devidp;
pub mod doctor;
pub mod exec;
pub mod kubectl;
pub mod login;
pub mod logout;
pub mod profiles;
pub mod request;
pub mod status;
pub mod store;
pub mod token;
