//! mlmodel keeps machine-learning model images served on Docker Swarm exactly as declared.
//!
//! Modules, in pipeline order:
//!
//! - [`naming`]: Docker's name grammars (image references, service and host names).
//! - [`units`]: Docker's value grammars (durations, memory sizes, CPU counts).
//! - [`compose`]: the compose-file subset mlmodel deploys: typed model and parser,
//!   reporting every unsupported key and bad value with its path.
//! - [`convert`]: compose file to the service specs `docker stack deploy` would send.
//! - [`stack`]: a stack's service specs and networks, ownership labels and spec hashes.

pub mod compose;
pub mod convert;
pub mod naming;
pub mod stack;
pub mod units;
