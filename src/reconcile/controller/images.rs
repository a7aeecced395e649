//! Pinning images to digests, as `docker stack deploy --resolve-image changed` pins
//! them: every node then runs the same bits, even if the tag moves meanwhile.
//!
//! The digest is asked for when a service write needs one: a new service, or an update
//! that changes the image. An update that keeps the tag keeps the digest the service
//! runs, so an unrelated change (scale, limits) never pulls a tag that moved. A
//! registry that cannot be asked leaves the image unpinned, with the CLI's warning.
//!
//! The registry's answers are shared ([`Digests`]): lookups of one tag at the same time
//! make one call, and its answer serves the lookups that start soon after it
//! ([`DigestTtl`]). A bulk deploy of a thousand models of one image asks the registry a
//! few times, not a thousand, and a slow registry holds the workers once, not once each.

use super::Controller;
use crate::desired::naming;
use crate::swarm::{ObservedService, Swarm, SwarmError};
use bollard::models::ServiceSpec;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tracing::{debug, warn};

/// How long the registry's answers for a tag are used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestTtl {
    /// A digest: short, so that a tag pushed again is seen by the next create soon; it
    /// has to cover the reconciles that run at once, and the time the next lookup takes.
    pub found: Duration,
    /// Why there is no digest (no registry answers, the name is unknown, a lookup timed
    /// out): longer, since the image then runs unpinned, as with the CLI, and each node
    /// resolves the tag itself; asking again at once would only hold the workers again.
    pub missing: Duration,
}

/// The lifetimes `mlmodel serve` uses.
pub const DIGEST_TTL: DigestTtl = DigestTtl {
    found: Duration::from_secs(10),
    missing: Duration::from_secs(60),
};

impl DigestTtl {
    /// Answers never reused: only lookups in flight are shared.
    pub const NONE: DigestTtl = DigestTtl {
        found: Duration::ZERO,
        missing: Duration::ZERO,
    };
}

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
    /// How long a registry's answers are used again ([`DIGEST_TTL`]).
    pub digest_ttl: DigestTtl,
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
#[derive(Debug)]
struct Answer {
    digest: Result<String, Arc<SwarmError>>,
    at: Instant,
    /// Whether a lookup was given it already.
    given: AtomicBool,
}

/// What a lookup got: the answer, and whether it is the first lookup given that answer
/// (the one that says so in the log; the others reused it).
#[derive(Debug)]
pub(super) struct Lookup {
    /// The digest, or why the registry gave none.
    pub digest: Result<String, Arc<SwarmError>>,
    /// The first lookup given this answer.
    pub first: bool,
}

/// The registry's recent answers by tagged image; see the module's documentation.
#[derive(Debug, Default)]
pub(super) struct Digests {
    /// An empty cell is a lookup in flight: who asks meanwhile waits for its answer.
    answers: Mutex<HashMap<String, Arc<OnceCell<Answer>>>>,
}

impl Digests {
    /// The digest of `tagged` (`name:tag`), asked of `swarm` unless a lookup of it is in
    /// flight or was answered recently enough for `ttl`.
    pub async fn get(&self, swarm: &dyn Swarm, tagged: &str, ttl: DigestTtl) -> Lookup {
        let cell = {
            // Never held across an await; a poisoned lock only means another worker
            // panicked between two map operations, which leave the map whole.
            let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            answers.retain(|_, cell| cell.get().is_none_or(|a| a.fresh(now, ttl)));
            answers.entry(tagged.to_string()).or_default().clone()
        };
        let answer = cell
            .get_or_init(|| async {
                Answer {
                    digest: swarm.image_digest(tagged).await.map_err(Arc::new),
                    at: Instant::now(),
                    given: AtomicBool::new(false),
                }
            })
            .await;
        Lookup {
            digest: answer.digest.clone(),
            first: !answer.given.swap(true, Ordering::Relaxed),
        }
    }
}

impl Answer {
    /// Whether the answer may still be used `now`.
    fn fresh(&self, now: Instant, ttl: DigestTtl) -> bool {
        let lifetime = match self.digest {
            Ok(_) => ttl.found,
            Err(_) => ttl.missing,
        };
        now.saturating_duration_since(self.at) < lifetime
    }
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
    pub(super) async fn digest(&self, tagged: &str) -> Lookup {
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
        let lookup = self.digest(&tagged).await;
        match lookup.digest {
            Ok(digest) => {
                let pinned = format!("{tagged}@{digest}");
                Cow::Owned(with_image(&spec, pinned))
            }
            // Said once per answer: a thousand models of one image log it once.
            Err(error) if lookup.first => {
                warn!(model, image, error = %error, "image {image} could not be accessed on a registry to record its digest; each node will access {image} independently, possibly leading to different nodes running different versions of the image");
                spec
            }
            Err(error) => {
                debug!(model, image, error = %error, "image {image} runs unpinned: its registry could not be asked (said above)");
                spec
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::fake::{FakeSwarm, Op};

    const TTL: DigestTtl = DigestTtl {
        found: Duration::from_secs(2),
        missing: Duration::from_secs(10),
    };

    #[tokio::test(start_paused = true)]
    async fn lookups_at_once_make_one_call_and_its_answer_serves_until_it_is_stale() {
        let fake = FakeSwarm::new();
        fake.push_image("img:1", "sha256:aaa");
        let digests = Digests::default();
        let lookups = (0..8).map(|_| digests.get(&fake, "img:1", TTL));
        let answers = futures_util::future::join_all(lookups).await;
        assert_eq!(answers.iter().filter(|a| a.first).count(), 1);
        for lookup in answers {
            assert_eq!(lookup.digest.unwrap(), "sha256:aaa");
        }
        assert_eq!(fake.calls_of(Op::ImageDigest), 1);

        // Within its lifetime the answer stands, even if the tag moved meanwhile.
        fake.push_image("img:1", "sha256:bbb");
        tokio::time::advance(Duration::from_millis(1900)).await;
        assert_eq!(
            digests.get(&fake, "img:1", TTL).await.digest.unwrap(),
            "sha256:aaa"
        );
        assert_eq!(fake.calls_of(Op::ImageDigest), 1);

        // Then it is asked again.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(
            digests.get(&fake, "img:1", TTL).await.digest.unwrap(),
            "sha256:bbb"
        );
        assert_eq!(fake.calls_of(Op::ImageDigest), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_kept_longer_than_a_digest_and_each_tag_has_its_own() {
        let fake = FakeSwarm::new();
        fake.push_image("img:1", "sha256:aaa");
        let digests = Digests::default();
        assert!(digests.get(&fake, "img:2", TTL).await.digest.is_err());
        assert_eq!(
            digests.get(&fake, "img:1", TTL).await.digest.unwrap(),
            "sha256:aaa"
        );
        assert_eq!(fake.calls_of(Op::ImageDigest), 2);

        // Pushed meanwhile: the refusal stands for its longer lifetime, the digest not.
        fake.push_image("img:2", "sha256:ccc");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(digests.get(&fake, "img:2", TTL).await.digest.is_err());
        assert_eq!(
            digests.get(&fake, "img:1", TTL).await.digest.unwrap(),
            "sha256:aaa"
        );
        assert_eq!(fake.calls_of(Op::ImageDigest), 3);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            digests.get(&fake, "img:2", TTL).await.digest.unwrap(),
            "sha256:ccc"
        );
        assert_eq!(fake.calls_of(Op::ImageDigest), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn without_lifetimes_only_lookups_in_flight_are_shared() {
        let fake = FakeSwarm::new();
        fake.push_image("img:1", "sha256:aaa");
        let digests = Digests::default();
        digests
            .get(&fake, "img:1", DigestTtl::NONE)
            .await
            .digest
            .unwrap();
        digests
            .get(&fake, "img:1", DigestTtl::NONE)
            .await
            .digest
            .unwrap();
        assert_eq!(fake.calls_of(Op::ImageDigest), 2);
    }
}
