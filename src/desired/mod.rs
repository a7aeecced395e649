//! Desired state, offline: from what a user declares to the exact Swarm services mlmodel
//! wants running.
//!
//! Everything here is pure and synchronous (no tokio, no Docker, no I/O beyond reading a
//! manifest or template file), so `mlmodel validate` and `mlmodel render` run it without a
//! swarm and its tests need nothing but values. The boundary is there so that the
//! reconciler, the API and the offline commands all mean the same thing by a spec.
//!
//! - [`record`]: the deployment record and its defaults; a history entry and its source.
//! - [`manifest`]: YAML manifests (several documents per file) into specs, every error
//!   collected.
//! - [`validate`]: each field against Docker's grammars; [`units`] and [`naming`] hold them.
//! - [`render`]: minijinja templates, with every value quoted so it cannot change the YAML.
//! - [`compose`]: the compose subset mlmodel deploys, parsed with path-named errors.
//! - [`convert`]: compose into the service specs `docker stack deploy` would send.
//! - [`stack`]: service specs and networks, ownership labels and spec hashes.
//! - [`build`](Pipeline): the whole pipeline for one model (validate, render, convert,
//!   stamp), re-exported here.

mod build;
pub mod compose;
pub mod convert;
pub mod manifest;
pub mod naming;
pub mod record;
pub mod render;
pub mod stack;
pub mod units;
pub mod validate;

pub use build::{Desired, Identity, Pipeline, offline_identity};
