//! Where desired state comes from.
//!
//! Two sources declare models: the manifests directory, read by [`files`], and the HTTP API,
//! whose declarations are kept in the [`store`] (sled) with every model's history. Both
//! are boundaries with the outside world (a filesystem, a disk), kept apart from the pure
//! [`crate::desired`] stage that gives their contents a meaning.

pub mod files;
pub mod store;
