//! Converging: the swarm made to match the desired state, and what is learned on the way.
//!
//! The loop reads a model's declaration and what the swarm runs, decides, plans the
//! writes as values, carries them out through the [`crate::swarm::Swarm`] trait and
//! reports a status. Decisions are pure functions of values; only [`observe`] and
//! [`controller`] touch the swarm, which keeps every rule testable over the fake.
//!
//! - [`observe`]: the cache of live services and tasks, and the event-following loop.
//! - [`plan`]: the pure diff of desired and observed, as actions.
//! - [`queue`]: per-model work queue with coalescing and backoff.
//! - [`controller`]: decides, plans and applies per model; runs the loops.
//! - [`status`]: each model's phase and message, cached for readers.

pub mod controller;
pub mod observe;
pub mod plan;
pub mod problem;
pub mod queue;
pub mod status;
