//! mlmodel keeps machine-learning model images served on Docker Swarm exactly as declared.

pub mod manifest;
pub mod naming;
pub mod record;
pub mod render;
pub mod store;
pub mod swarm;
pub mod units;
pub mod validate;
