//! Pinning images to digests, as `docker stack deploy --resolve-image changed` pins
//! them: every node then runs the same bits, even if the tag moves meanwhile.
//!
//! The digest is asked for when a service write needs one: a new service, or an update
//! that changes the image. An update that keeps the tag keeps the digest the service
//! runs, so an unrelated change (scale, limits) never pulls a tag that moved. A
//! registry that cannot be asked leaves the image unpinned, with the CLI's warning.

use super::Controller;
use crate::desired::naming;
use crate::swarm::ObservedService;
use bollard::models::ServiceSpec;
use std::borrow::Cow;
use tracing::warn;

/// When images are resolved to digests (`mlmodel serve --resolve-image`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ResolveImage {
    /// On creates, and on updates that change the image (Docker's `changed`).
    #[default]
    Changed,
    /// On every service write (Docker's `always`).
    Always,
    /// Never: nodes resolve the tag themselves.
    Never,
}

/// What the reconciler does about image digests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImagePolicy {
    /// When tags are resolved.
    pub resolve: ResolveImage,
    /// Whether a model that does not say (`follow_tag`) follows its tag to new digests.
    pub follow_tags: bool,
}

/// The image a spec runs ("" if none).
pub(super) fn image_of(spec: &ServiceSpec) -> &str {
    spec.task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default()
}

/// The digest a spec's image is pinned to, if it is.
pub fn image_digest_of(spec: &ServiceSpec) -> Option<&str> {
    image_of(spec).split_once('@').map(|(_, digest)| digest)
}

/// `spec` running `image` instead.
fn with_image(spec: &ServiceSpec, image: String) -> ServiceSpec {
    let mut spec = spec.clone();
    if let Some(container) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    {
        container.image = Some(image);
    }
    spec
}

impl Controller {
    /// `spec` with its image pinned to a digest, if the policy and the registry allow.
    /// `live` is the service the write replaces, if any.
    pub(super) async fn pinned<'a>(
        &self,
        model: &str,
        spec: Cow<'a, ServiceSpec>,
        live: Option<&ObservedService>,
    ) -> Cow<'a, ServiceSpec> {
        let image = image_of(&spec);
        if image.is_empty() || image.contains('@') || self.cx.images.resolve == ResolveImage::Never
        {
            return spec;
        }
        let tagged = naming::with_tag(image);
        if self.cx.images.resolve == ResolveImage::Changed
            && let Some((running, digest)) = live.and_then(|l| image_of(&l.spec).split_once('@'))
            && naming::with_tag(running) == tagged
        {
            let pinned = format!("{tagged}@{digest}");
            return Cow::Owned(with_image(&spec, pinned));
        }
        match self.cx.swarm.image_digest(&tagged).await {
            Ok(digest) => {
                let pinned = format!("{tagged}@{digest}");
                Cow::Owned(with_image(&spec, pinned))
            }
            Err(error) => {
                warn!(model, image, error = %error, "image {image} could not be accessed on a registry to record its digest; each node will access {image} independently, possibly leading to different nodes running different versions of the image");
                spec
            }
        }
    }
}
