//! Converging: the swarm made to match the desired state, and what is learned on the way.
//!
//! The loop reads a model's declaration and what the swarm runs, decides, plans the
//! writes as values, carries them out through the [`crate::swarm::Swarm`] trait and
//! reports a status. Decisions are pure functions of values; only [`observe`] and
//! [`controller`] touch the swarm, which keeps every rule testable over the fake.
//!
//! - [`observe`]: the cache of live services and tasks (a reconcile takes one snapshot of
//!   it), the relist and the event-following loop.
//! - [`controller`]: one reconcile per model as a pipeline of stages (read, decide,
//!   resolve, build, plan, carry out, report) over a small context of boundaries; the
//!   loops; reader handles for the API. Its `decide` is pure.
//! - [`events`]: each model's events (what mlmodel and Swarm did, and why), collapsed
//!   and bounded, kept in the store and fed to watchers.
//! - [`lease`]: at most one active copy of an instance, by a lease held in Swarm.
//! - [`network`]: the shared network's subnet (picked free, a /16) and its addresses, used
//!   and needed, as a report the status and `/healthz` read.
//! - [`notify`]: phase changes and rollbacks POSTed to `--notify-url`s, never in the way.
//! - [`plan`]: the pure diff of desired and observed, as actions.
//! - [`problem`]: why a model is not converged, typed until the status words it.
//! - [`queue`]: per-model work queue with coalescing and backoff.
//! - [`rollback`]: a deployment Swarm rolled back, held and told rather than resent.
//! - [`status`]: each model's phase and message (a pure derivation, with why replicas wait
//!   or moved), cached for readers.

pub mod controller;
pub mod events;
pub mod journal;
pub mod lease;
pub mod network;
pub mod notify;
pub mod observe;
pub mod plan;
pub mod problem;
pub mod queue;
pub mod rollback;
pub mod status;
