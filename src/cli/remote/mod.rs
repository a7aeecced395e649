//! The command-line client of the mlmodel HTTP API: `get`, `describe`, `apply`, `delete`,
//! `history`, `rollback` and `diff`, in the manner of kubectl.
//!
//! - [`api`] is the only place that speaks HTTP: one [`api::ApiClient`] with a typed
//!   method per endpoint, returning [`api::ApiError`]s that say whether the server
//!   refused or could not be reached.
//! - [`wire`] holds the JSON shapes the API answers with, read leniently so an older or
//!   newer server still lists.
//! - [`table`], [`views`] and [`diff`] are pure: values in, text out. Every column,
//!   age and diff line is decided there and unit-tested without a server.
//! - [`manifests`] reads and checks manifest files locally before anything is sent.
//! - [`commands`] carries each subcommand out: fetch, format, print, pick the exit code.
//! - [`flags`] holds the commands' clap definitions and turns them into those calls.
//!
//! # Exit codes
//!
//! Scripts can rely on these:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | the command did what was asked (`diff`: no differences) |
//! | 1 | the server refused (its `detail` is printed after `error: `), a manifest is invalid, `apply --wait` saw the rollout fail or time out (`diff`: there are differences) |
//! | 2 | usage: bad flags or arguments (`diff`: any error but an unreachable server) |
//! | 3 | the server could not be reached (not running, wrong `--server`, no answer in time) |
//!
//! The bearer token is sent with every request when given and is never printed.

pub mod api;
pub mod commands;
pub mod diff;
pub mod flags;
pub mod manifests;
pub mod table;
pub mod views;
pub mod wire;

/// Exit codes of the client commands; see the module documentation.
pub mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// The server refused, the input was invalid or the operation failed.
    pub const FAILED: u8 = 1;
    /// Bad flags or arguments.
    pub const USAGE: u8 = 2;
    /// The server could not be reached.
    pub const UNREACHABLE: u8 = 3;
    /// `diff`: differences were found.
    pub const DIFF_FOUND: u8 = 1;
    /// `diff`: the comparison could not be made.
    pub const DIFF_ERROR: u8 = 2;
}

/// The exit codes as `--help` shows them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes of get, describe, apply, delete, history, rollback and diff:
  0  ok (diff: no differences)
  1  the server refused or the operation failed; the server's reason follows `error: `
     (diff: there are differences)
  2  usage error (diff: any other error)
  3  cannot connect to the server";
