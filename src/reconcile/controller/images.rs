//! Pinning images to digests, as `docker stack deploy --resolve-image changed` pins
//! them: every node then runs the same bits, even if the tag moves meanwhile.
//!
//! The digest is asked for when a service write needs one: a new service, or an update
//! that changes the image. An update that keeps the tag keeps the digest the service
//! runs, so an unrelated change (scale, limits) never pulls a tag that moved. A
//! registry that cannot be asked leaves the image unpinned, with the CLI's warning.
//!
//! The registry's answers are shared ([`Digests`]): lookups of one tag at the same time
//! make one call, and its answer serves the lookups that start within [`DIGEST_TTL`]
//! after it. A bulk deploy of a thousand models of one image asks the registry a few
//! times, not a thousand, and a slow registry holds the workers once, not once each.

use super::Controller;
use crate::desired::naming;
use crate::swarm::{ObservedService, Swarm, SwarmError};
use bollard::models::ServiceSpec;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tracing::warn;

/// How long the registry's answer for a tag (a digest, or why there is none) is used
/// again. Short, so that a tag pushed again and deployed again is seen: it only has to
/// cover the reconciles that run at once.
pub const DIGEST_TTL: Duration = Duration::from_secs(2);

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImagePolicy {
    /// When tags are resolved.
    pub resolve: ResolveImage,
    /// Whether a model that does not say (`follow_tag`) follows its tag to new digests.
    pub follow_tags: bool,
    /// How long a registry's answer is used again ([`DIGEST_TTL`]).
    pub digest_ttl: Duration,
}

impl Default for ImagePolicy {
    fn default() -> Self {
        Self {
            resolve: ResolveImage::default(),
            follow_tags: false,
            digest_ttl: DIGEST_TTL,
        }
    }
}

/// The registry's answer for one tag, and when it came.
#[derive(Debug, Clone)]
struct Answer {
    digest: Result<String, Arc<SwarmError>>,
    at: Instant,
}

/// The registry's recent answers by tagged image; see the module's documentation.
#[derive(Debug, Default)]
pub(super) struct Digests {
    /// An empty cell is a lookup in flight: who asks meanwhile waits for its answer.
    answers: Mutex<HashMap<String, Arc<OnceCell<Answer>>>>,
}

impl Digests {
    /// The digest of `tagged` (`name:tag`), asked of `swarm` unless a lookup of it is in
    /// flight or answered less than `ttl` ago.
    pub async fn get(
        &self,
        swarm: &dyn Swarm,
        tagged: &str,
        ttl: Duration,
    ) -> Result<String, Arc<SwarmError>> {
        let cell = {
            // Never held across an await; a poisoned lock only means another worker
            // panicked between two map operations, which leave the map whole.
            let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            answers.retain(|_, cell| cell.get().is_none_or(|a| fresh(a.at, now, ttl)));
            answers.entry(tagged.to_string()).or_default().clone()
        };
        let answer = cell
            .get_or_init(|| async {
                Answer {
                    digest: swarm.image_digest(tagged).await.map_err(Arc::new),
                    at: Instant::now(),
                }
            })
            .await;
        answer.digest.clone()
    }
}

/// Whether an answer given `at` may still be used `now`.
fn fresh(at: Instant, now: Instant, ttl: Duration) -> bool {
    now.saturating_duration_since(at) < ttl
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
    /// The digest `tagged` (`name:tag`) has on its registry, through the shared answers.
    pub(super) async fn digest(&self, tagged: &str) -> Result<String, Arc<SwarmError>> {
        let ttl = self.cx.images.digest_ttl;
        self.cx
            .digests
            .get(self.cx.swarm.as_ref(), tagged, ttl)
            .await
    }

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
        match self.digest(&tagged).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::fake::{FakeSwarm, Op};

    #[tokio::test(start_paused = true)]
    async fn lookups_at_once_make_one_call_and_its_answer_serves_until_it_is_stale() {
        let fake = FakeSwarm::new();
        fake.push_image("img:1", "sha256:aaa");
        let digests = Digests::default();
        let ttl = Duration::from_secs(2);
        let lookups = (0..8).map(|_| digests.get(&fake, "img:1", ttl));
        for digest in futures_util::future::join_all(lookups).await {
            assert_eq!(digest.unwrap(), "sha256:aaa");
        }
        assert_eq!(fake.calls_of(Op::ImageDigest), 1);

        // Within the TTL the answer stands, even if the tag moved meanwhile.
        fake.push_image("img:1", "sha256:bbb");
        tokio::time::advance(Duration::from_millis(1900)).await;
        assert_eq!(
            digests.get(&fake, "img:1", ttl).await.unwrap(),
            "sha256:aaa"
        );
        assert_eq!(fake.calls_of(Op::ImageDigest), 1);

        // Then it is asked again.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(
            digests.get(&fake, "img:1", ttl).await.unwrap(),
            "sha256:bbb"
        );
        assert_eq!(fake.calls_of(Op::ImageDigest), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn each_tag_has_its_own_answer_and_a_refusal_is_shared_too() {
        let fake = FakeSwarm::new();
        fake.push_image("img:1", "sha256:aaa");
        let digests = Digests::default();
        let ttl = Duration::from_secs(2);
        assert!(digests.get(&fake, "img:2", ttl).await.is_err());
        assert!(digests.get(&fake, "img:2", ttl).await.is_err());
        assert_eq!(
            digests.get(&fake, "img:1", ttl).await.unwrap(),
            "sha256:aaa"
        );
        assert_eq!(fake.calls_of(Op::ImageDigest), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_ttl_only_lookups_in_flight_are_shared() {
        let fake = FakeSwarm::new();
        fake.push_image("img:1", "sha256:aaa");
        let digests = Digests::default();
        digests.get(&fake, "img:1", Duration::ZERO).await.unwrap();
        digests.get(&fake, "img:1", Duration::ZERO).await.unwrap();
        assert_eq!(fake.calls_of(Op::ImageDigest), 2);
    }

    #[test]
    fn an_answer_is_fresh_for_less_than_its_ttl() {
        let at = Instant::now();
        let ttl = Duration::from_secs(2);
        assert!(fresh(at, at, ttl));
        assert!(fresh(at, at + Duration::from_millis(1999), ttl));
        assert!(!fresh(at, at + ttl, ttl));
        assert!(!fresh(at, at, Duration::ZERO));
    }
}
