//! Notifications: a JSON POST to each `--notify-url` when a model changes phase or Swarm
//! rolls it back.
//!
//! [`of_change`] decides, a pure function of two statuses. [`Notifier`] delivers: one
//! bounded queue and one worker per URL, so a URL that answers 500 or never answers
//! delays only its own notifications. Each is tried [`ATTEMPTS`] times with backoff and a
//! timeout per try; a full queue drops the newest. Reconciling never waits on any of it.
//! The body carries a Slack-style `text`, so a Slack or Mattermost incoming webhook takes
//! it as it is.

use crate::reconcile::status::{ModelStatus, Phase};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::warn;

/// Tries per notification.
pub const ATTEMPTS: u32 = 4;
/// Notifications waiting per URL; more are dropped (and counted).
pub const QUEUE: usize = 256;
/// How long one try may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The wait before the second try; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// What is POSTed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// The model.
    pub model: String,
    /// Its phase before.
    pub previous_phase: Phase,
    /// Its phase now.
    pub phase: Phase,
    /// The status message ("" if none).
    pub message: String,
    /// The deployment it converges to.
    pub deployment_id: Option<String>,
    /// The image of its first service.
    pub image: Option<String>,
    /// Swarm rolled (or is rolling) its update back.
    pub rolled_back: bool,
    /// When (RFC 3339).
    pub time: String,
    /// One line for chat webhooks (Slack, Mattermost).
    pub text: String,
}

/// The notification two statuses of a model make: on a phase change, and when Swarm's
/// rollout turns to a rollback.
pub fn of_change(old: &ModelStatus, new: &ModelStatus, time: String) -> Option<Notification> {
    let rolling_back = |s: &ModelStatus| {
        s.rollout
            .as_ref()
            .is_some_and(|r| r.state.starts_with("rollback"))
    };
    let rolled_back = rolling_back(new) && !rolling_back(old);
    if old.phase == new.phase && !rolled_back {
        return None;
    }
    let mut text = format!(
        "mlmodel: {} is {} (was {})",
        new.name,
        new.phase.as_str(),
        old.phase.as_str()
    );
    if rolled_back {
        text.push_str(", rolled back by Swarm");
    }
    if !new.message.is_empty() {
        text.push_str(": ");
        text.push_str(&new.message);
    }
    Some(Notification {
        model: new.name.clone(),
        previous_phase: old.phase,
        phase: new.phase,
        message: new.message.clone(),
        deployment_id: new.deployment_id.clone(),
        image: new.image.clone(),
        rolled_back: rolled_back || new.message.contains("rolled back by Swarm"),
        time,
        text,
    })
}

/// One URL's queue and counters.
pub struct Target {
    /// The URL as given (it may hold a secret: only [`Target::shown`] is printed).
    url: reqwest::Url,
    queue: mpsc::Sender<Arc<Notification>>,
    /// Delivered (answered 2xx).
    pub sent: AtomicU64,
    /// Given up after [`ATTEMPTS`] tries.
    pub failed: AtomicU64,
    /// Not queued: the queue was full.
    pub dropped: AtomicU64,
}

impl Target {
    /// The URL without its path and query (webhook URLs carry their secret there).
    pub fn shown(&self) -> String {
        let mut shown = format!(
            "{}://{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or("")
        );
        if let Some(port) = self.url.port() {
            shown.push_str(&format!(":{port}"));
        }
        shown
    }
}

/// Delivers notifications to every URL.
pub struct Notifier {
    /// The URLs, in the order given.
    pub targets: Vec<Arc<Target>>,
}

impl Notifier {
    /// Starts one worker per URL (on the current runtime); they end when the notifier is
    /// dropped and their queues are empty.
    pub fn start(urls: &[reqwest::Url]) -> Result<Arc<Self>, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("mlmodel/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let targets = urls
            .iter()
            .map(|url| {
                let (queue, receiver) = mpsc::channel(QUEUE);
                let target = Arc::new(Target {
                    url: url.clone(),
                    queue,
                    sent: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                });
                tokio::spawn(deliver(http.clone(), target.clone(), receiver));
                target
            })
            .collect();
        Ok(Arc::new(Self { targets }))
    }

    /// Queues `notification` for every URL; never waits.
    pub fn notify(&self, notification: Notification) {
        let notification = Arc::new(notification);
        for target in &self.targets {
            if target.queue.try_send(notification.clone()).is_err() {
                target.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One URL's worker: each notification in turn, tried with backoff.
async fn deliver(
    http: reqwest::Client,
    target: Arc<Target>,
    mut queue: mpsc::Receiver<Arc<Notification>>,
) {
    while let Some(notification) = queue.recv().await {
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::new();
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            match http
                .post(target.url.clone())
                .json(&*notification)
                .send()
                .await
            {
                Ok(answer) if answer.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(answer) => last_error = format!("answered {}", answer.status()),
                Err(error) if error.is_timeout() => {
                    last_error = format!("no answer within {}s", TIMEOUT.as_secs());
                }
                Err(error) => last_error = crate::cli::remote::api::root_cause(&error),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        if delivered {
            target.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            target.failed.fetch_add(1, Ordering::Relaxed);
            warn!(target = %target.shown(), model = %notification.model, error = %last_error, "gave up on a notification after {ATTEMPTS} tries");
        }
    }
}

#[cfg(test)]
mod tests;
