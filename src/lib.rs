//! mlmodel keeps machine-learning model images served on Docker Swarm exactly as declared.
//!
//! The program is a pipeline; each module owns one stage, and arrows only point down it:
//!
//! ```text
//! sources: manifests dir (files), API writes (store) ──> desired: record ─> validate ─>
//!                                                        render ─> compose ─> convert ─> stack
//!                                                                                        │
//! swarm: list + events ─> reconcile::observe (one snapshot) ─> decide ─> plan <──────────┘
//!                                                                          │
//!                           swarm writes <─ reconcile::controller (execute)┘
//!                                                          │
//!                                        reconcile::status ─> api (readers) ─> cli::remote
//! ```
//!
//! - [`desired`]: offline and pure: the deployment record and its history entry,
//!   manifests, validation and Docker's grammars, templates, the compose subset and its
//!   conversion into service specs. `mlmodel validate` and `render` are this stage alone.
//! - [`sources`]: where declarations come from: the watched manifests directory and the
//!   sled store of every model's history. Boundaries with a filesystem and a disk.
//! - [`swarm`]: the narrow Docker trait, its bollard adapter (the one place Docker's JSON
//!   and state words are read), call counting, and the fake (tests and benches only).
//! - [`reconcile`]: observe, decide, plan, execute, the work queue, statuses and the
//!   loops; problems stay typed until a status words them.
//! - [`api`]: the HTTP API over reader handles of the reconciler (status, store, queue).
//! - [`cli`]: the edges a person uses: `mlmodel serve`'s wiring ([`cli::serve`]), the
//!   offline commands, and the commands that talk to a running server ([`cli::remote`]).

pub mod api;
pub mod cli;
pub mod desired;
pub mod reconcile;
pub mod sources;
pub mod swarm;
