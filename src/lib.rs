//! mlmodel keeps machine-learning model images served on Docker Swarm exactly as declared.
//!
//! The program is a pipeline; each module owns one stage:
//!
//! ```text
//! sources (manifests dir, API store) ─┐
//!                                     ├─> desired: records ─> render ─> stack (service specs)
//! swarm observer (list + events) ─────┘                                      │
//!                                          reconcile: plan (pure diff) <─────┘
//!                                               │
//!                                          apply (Docker writes) ─> status ─> api / cli
//! ```
//!
//! - [`desired`]: offline and pure: the deployment record, manifests, validation and
//!   Docker's grammars, templates, the compose subset and its conversion into service
//!   specs. `mlmodel validate` and `render` are this stage alone.
//! - [`sources`]: where declarations come from: the watched manifests directory and the
//!   sled store of every model's history.
//! - [`swarm`]: the narrow Docker trait, its bollard implementation and the fake.
//! - [`reconcile`]: observe, plan, queue, the controller and its loops, statuses.
//! - [`api`]: the HTTP API over the reconciler's caches and the store.
//! - [`cli`]: the edges a person uses: the command line, `mlmodel serve`'s wiring of
//!   sources, reconciler and API ([`cli::serve`]), the offline commands, and the commands
//!   that talk to a running server ([`cli::remote`]).

pub mod api;
pub mod cli;
pub mod desired;
pub mod reconcile;
pub mod sources;
pub mod swarm;
