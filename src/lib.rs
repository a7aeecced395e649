//! mlmodel keeps machine-learning model images served on Docker Swarm exactly as declared.
//!
//! The program is a pipeline; each module owns one stage:
//!
//! ```text
//! sources (manifests dir, API store) ─┐
//!                                     ├─> records ─> render ─> stack (service specs)
//! swarm observer (list + events) ─────┘                              │
//!                                          plan (pure diff) <────────┘
//!                                               │
//!                                          apply (Docker writes) ─> status ─> API / CLI
//! ```
//!
//! Desired state:
//! - [`record`]: the deployment record and its defaults.
//! - [`manifest`]: YAML manifests (several documents per file) into specs, every error collected.
//! - [`validate`]: each field against Docker's grammars; [`units`] and [`naming`] hold them.
//! - [`sources`]: the watched manifests directory; [`store`]: the sled history of records.
//!
//! From record to stack:
//! - [`render`]: minijinja templates, with every value quoted so it cannot change the YAML.
//! - [`compose`]: the compose subset mlmodel deploys, parsed with path-named errors.
//! - [`convert`]: compose into the service specs `docker stack deploy` would send.
//! - [`stack`]: service specs and networks, ownership labels and spec hashes.
//! - [`desired`]: the whole offline pipeline for one model (validate, render, convert, stamp).
//!
//! Converging:
//! - [`swarm`]: the narrow Docker trait, its bollard implementation and the fake.
//! - [`observe`]: the cache of live services and tasks, and the event-following loop.
//! - [`plan`]: the pure diff of desired and observed, as actions.
//! - [`queue`]: per-model work queue with coalescing and backoff.
//! - [`controller`]: decides, plans and applies per model; runs the loops.
//! - [`status`]: each model's phase and message, cached for readers.
//!
//! Edges:
//! - [`api`]: the HTTP API; [`serve`]: `mlmodel serve` wiring; [`cli`]: the command line;
//!   [`client`]: the CLI commands that talk to the API.

pub mod api;
pub mod cli;
pub mod client;
pub mod compose;
pub mod controller;
pub mod convert;
pub mod desired;
pub mod manifest;
pub mod naming;
pub mod observe;
pub mod plan;
pub mod queue;
pub mod record;
pub mod render;
pub mod serve;
pub mod sources;
pub mod stack;
pub mod status;
pub mod store;
pub mod swarm;
pub mod units;
pub mod validate;
