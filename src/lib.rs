//! mlmodel keeps machine-learning model images served on Docker Swarm exactly as declared.

pub mod naming;
pub mod units;
