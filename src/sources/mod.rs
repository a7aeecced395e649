//! Where desired state comes from.
//!
//! Two sources declare models: the manifests directory, read by [`files`], and the HTTP API,
//! whose declarations are kept in the [`crate::store`] with every model's history.

pub mod files;
