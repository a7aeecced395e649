//! One reconcile of one model, as a pipeline of stages over one observed snapshot:
//!
//! ```text
//! snapshot ─> read (files, store) ─> decide ─> resolve (store new records) ─> build
//!          ─> plan ─> carry out (Docker writes) ─> report (status)
//! ```
//!
//! The snapshot is taken once, at the start, and passed down as a value: every stage sees
//! the same swarm. The writes then refresh the cache for what they touched, and the
//! report reads the cache once more only if there were writes, so that a model's status
//! shows what its own writes did. A stage that ends the reconcile early (a hold, a store
//! error, a record that does not build) says so as a [`Stop`].

use super::Controller;
use super::decide::{Decision, decide};
use super::images::{self, ResolveImage};
use crate::desired::naming;
use crate::desired::record::{self, DeploymentRecord, HistoryEntry, Source};
use crate::desired::{Desired, Identity};
use crate::reconcile::events::{self, Note};
use crate::reconcile::notify;
use crate::reconcile::observe::Observed;
use crate::reconcile::plan::{self, Action, Intent, Observation, Plan};
use crate::reconcile::problem::Problem;
use crate::reconcile::queue::Outcome;
use crate::reconcile::rollback;
use crate::reconcile::status::{self, Applied, Verdict};
use crate::swarm::{ObservedService, UpdateState};
use std::sync::Arc;
use tracing::{debug, info, warn};

/// What a model is converged to: its stack (none: remove its services), and the verdict
/// so far.
struct Target {
    desired: Option<Arc<Desired>>,
    verdict: Verdict,
}

/// Why a reconcile ends before planning.
enum Stop {
    /// Report this verdict and end with this outcome.
    Report(Verdict, Outcome),
    /// Nothing declared, recorded or live: forget the model's status.
    Forget,
}

/// What a decision resolved to once new records are stored.
enum Resolved {
    Apply(Arc<HistoryEntry>),
    Absent,
    Hold { problem: Problem, valid: bool },
    Forget,
    Retry(Problem),
}

impl Controller {
    /// The pipeline; see the module's documentation.
    pub(super) async fn reconcile_once(&self, name: &str) -> Outcome {
        let observed = self.observed.get();
        if !observed.is_listed() {
            // An empty cache is not an empty swarm: planning now would create services
            // that already run (Docker refuses with 409) and miss ones to remove or adopt.
            // The first list queues every model (see `follow_events`).
            return Outcome::Done;
        }
        if let Some(why) = self.lease.standby() {
            self.report(name, &self.standby_verdict(name, why), &observed);
            return Outcome::Done;
        }
        let owned = observed.owned_by(&self.cx.instance.name, name);
        let target = match self.target(name, &owned, &observed).await {
            Ok(target) => target,
            Err(Stop::Forget) => {
                self.status.remove(name);
                return Outcome::Done;
            }
            Err(Stop::Report(verdict, outcome)) => {
                self.report(name, &verdict, &observed);
                return outcome;
            }
        };
        let plan = self.plan_for(name, target.desired.as_deref(), &owned, &observed);
        drop(owned);
        let (verdict, outcome) = self.carry_out(name, &plan, target.verdict).await;
        let after = if plan.actions.is_empty() {
            observed
        } else {
            self.observed.get()
        };
        self.report(name, &verdict, &after);
        let removed = plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::RemoveService { .. }));
        if removed && outcome == Outcome::Done {
            // With its services gone, a model without records has nothing left to keep.
            // Docker's remove event arrives after the cache has dropped the service, so it
            // queues nothing: look again now, and the model leaves the listings at once
            // rather than at the next resync.
            self.queue.add(name);
        }
        outcome
    }

    /// Reads the model's declarations, decides, stores a new record if the decision makes
    /// one, and builds the stack to converge to.
    async fn target(
        &self,
        name: &str,
        owned: &[&ObservedService],
        observed: &Observed,
    ) -> Result<Target, Stop> {
        let store = &self.cx.store;
        let (latest, stopped) = match store.latest_and_stopped(name) {
            Ok(read) => read,
            Err(e) => {
                warn!(model = name, error = %e, "cannot read the store");
                let problem = Problem::StoreRead(Arc::new(e));
                return Err(Stop::Report(
                    Verdict::failed(problem, false),
                    Outcome::Retry,
                ));
            }
        };
        let file = self.cx.declarations.view(name);
        match self
            .resolve(name, decide(&file, latest.as_ref(), stopped, owned))
            .await
        {
            Resolved::Apply(entry) => {
                if let Some(rolled) = rollback::rolled_back(&entry.record, owned, observed) {
                    // Sending it again would only be rolled back again.
                    let verdict = Verdict {
                        problem: Some(Problem::RolledBack(Box::new(rolled))),
                        ..Verdict::applying(&entry)
                    };
                    return Err(Stop::Report(verdict, Outcome::Done));
                }
                let entry = self.followed(name, &entry, owned).await.unwrap_or(entry);
                match self.memo.desired_for(&self.cx, &entry) {
                    Ok(desired) => Ok(Target {
                        verdict: Verdict {
                            warnings: desired.stack.warnings.clone(),
                            ..Verdict::applying(&entry)
                        },
                        desired: Some(desired),
                    }),
                    Err(problem) => {
                        Err(Stop::Report(Verdict::failed(problem, false), Outcome::Done))
                    }
                }
            }
            Resolved::Absent => Ok(Target {
                desired: None,
                verdict: Verdict::absent(latest.is_some()),
            }),
            Resolved::Hold { problem, valid } => {
                Err(Stop::Report(Verdict::failed(problem, valid), Outcome::Done))
            }
            Resolved::Forget => Err(Stop::Forget),
            Resolved::Retry(problem) => Err(Stop::Report(
                Verdict::failed(problem, false),
                Outcome::Retry,
            )),
        }
    }

    /// A new deployment of `entry` at the digest its image's tag has moved to, if the
    /// model follows its tag (`follow_tag`, else `--follow-tags`), runs at rest pinned
    /// to another digest, and was not already deployed at this one.
    async fn followed(
        &self,
        name: &str,
        entry: &Arc<HistoryEntry>,
        owned: &[&ObservedService],
    ) -> Option<Arc<HistoryEntry>> {
        let record = &entry.record;
        let spec = &record.spec;
        let follows = spec.follow_tag.unwrap_or(self.cx.images.follow_tags);
        if !follows || self.cx.images.resolve == ResolveImage::Never || spec.image.contains('@') {
            return None;
        }
        let tagged = naming::with_tag(&spec.image);
        let main = owned.iter().find(|s| {
            images::image_of(&s.spec)
                .split_once('@')
                .is_some_and(|(running, _)| naming::with_tag(running) == tagged)
        })?;
        // A rollout in flight, paused or rolled back is left as it is.
        if main
            .update_state
            .as_ref()
            .is_some_and(|u| !matches!(u, UpdateState::Completed))
        {
            return None;
        }
        let running = images::image_digest_of(&main.spec)?;
        let digest = match self.digest(&tagged).await.digest {
            Ok(digest) => digest,
            Err(error) => {
                debug!(model = name, image = %tagged, %error, "cannot ask the registry whether the tag moved");
                return None;
            }
        };
        if digest == running || record.image_digest.as_deref() == Some(digest.as_str()) {
            return None;
        }
        info!(model = name, image = %tagged, from = running, to = %digest, "the image's tag moved to a new digest: deploying it");
        let identity = Identity {
            deployment_id: record::new_deployment_id(),
            deployment_time: record::now_unix_seconds(),
            image_digest: Some(digest),
        };
        let desired = self
            .cx
            .pipeline()
            .build(spec.clone(), identity, &entry.source)
            .ok()?;
        match self.append(desired.record, entry.source.clone()).await {
            Resolved::Apply(next) => Some(next),
            _ => None,
        }
    }

    /// Turns a decision into a record to apply, storing new records first.
    async fn resolve(&self, name: &str, decision: Decision) -> Resolved {
        match decision {
            Decision::Apply { entry } => Resolved::Apply(entry),
            Decision::Absent => Resolved::Absent,
            Decision::Forget => Resolved::Forget,
            Decision::Hold { problem, valid } => Resolved::Hold {
                problem: problem.into(),
                valid,
            },
            Decision::Record { spec, source } => {
                let identity = Identity {
                    deployment_id: record::new_deployment_id(),
                    deployment_time: record::now_unix_seconds(),
                    image_digest: None,
                };
                match self.cx.pipeline().build(spec, identity, &source) {
                    Ok(desired) => self.append(desired.record, source).await,
                    Err(errors) => Resolved::Hold {
                        problem: Problem::Invalid { source, errors },
                        valid: false,
                    },
                }
            }
            Decision::Adopt { record } => {
                info!(model = name, deployment = %record.deployment_id, "adopting live services that the store has no record of");
                self.append(record, Source::Adopted).await
            }
        }
    }

    async fn append(&self, record: DeploymentRecord, source: Source) -> Resolved {
        let entry = Arc::new(HistoryEntry { record, source });
        match self.cx.store.append(entry.clone()).await {
            Ok(()) => {
                let record = &entry.record;
                info!(model = %record.spec.name, deployment = %record.deployment_id, source = %entry.source, "recorded a new deployment");
                let id = record.deployment_id.as_str();
                let note = match entry.source {
                    Source::Adopted => Note::adopted(id),
                    _ => Note::recorded(id, &record.spec.image, &entry.source.to_string()),
                };
                self.events.record(&record.spec.name, vec![note], Some(id));
                Resolved::Apply(entry)
            }
            Err(e) => Resolved::Retry(Problem::StoreWrite(Arc::new(e))),
        }
    }

    /// The writes that make the live services match `desired` (none: remove them).
    fn plan_for(
        &self,
        name: &str,
        desired: Option<&Desired>,
        owned: &[&ObservedService],
        observed: &Observed,
    ) -> Plan {
        let intent = desired.map_or(Intent::Absent, |d| Intent::Apply(&d.stack));
        let names: Vec<&str> = desired
            .into_iter()
            .flat_map(|d| d.stack.services.iter())
            .filter_map(|s| s.name.as_deref())
            .collect();
        let foreign = observed.named_other_than(owned, &names);
        let in_sync = self.memo.in_sync(name);
        let plan = plan::plan(
            intent,
            Observation {
                owned,
                foreign: &foreign,
                network_ids: &observed.networks,
                in_sync: &in_sync,
            },
        );
        self.memo.keep_in_sync(name, &plan.in_sync);
        plan
    }

    /// Sends the plan's writes in order, stopping at the first that fails, and completes
    /// the verdict with what happened.
    async fn carry_out(&self, name: &str, plan: &Plan, verdict: Verdict) -> (Verdict, Outcome) {
        let mut verdict = verdict;
        if !plan.conflicts.is_empty() {
            verdict.problem = Some(Problem::NamesTaken(plan.conflicts.clone()));
        }
        let mut outcome = Outcome::Done;
        let needed = || {
            plan.actions.iter().filter_map(|a| match a {
                Action::EnsureObject { object } => Some((object.kind, object.name.as_str())),
                _ => None,
            })
        };
        self.objects.hold(needed());
        for action in &plan.actions {
            if let Some(why) = self.lease.standby() {
                // The lease ran out during the reconcile: not one more write.
                verdict.problem = Some(Problem::Standby(why));
                outcome = Outcome::Done;
                break;
            }
            if let Err(error) = self.execute(name, action).await {
                warn!(model = name, target = action.target(), error = %error, "docker write failed");
                let note = events::of_write_failure(action, &error);
                self.events.record(name, vec![note], deployment(&verdict));
                verdict.problem = Some(Problem::DockerWrite(error));
                outcome = Outcome::Retry;
                break;
            }
            if let Some(note) = events::of_action(action) {
                self.events.record(name, vec![note], deployment(&verdict));
            }
            if matches!(
                action,
                Action::UpdateService { .. } | Action::RemoveService { .. }
            ) {
                // It may have let go of a secret or config.
                self.objects.want_collection();
            }
        }
        self.objects.release(needed());
        verdict.synced = plan.conflicts.is_empty() && outcome == Outcome::Done;
        (verdict, outcome)
    }

    /// What a standby reports of a model: its record as read, the swarm as observed, and
    /// why it does not act.
    fn standby_verdict(&self, name: &str, why: String) -> Verdict {
        let latest = self.cx.store.latest(name).ok().flatten();
        let declared = !matches!(
            self.cx.declarations.view(name),
            super::decide::FileView::Undeclared
        );
        Verdict {
            valid: latest.is_some(),
            wanted: latest.is_some() || declared,
            // The swarm is shown as it is; this copy does not judge it.
            synced: true,
            problem: Some(Problem::Standby(why)),
            applied: latest.as_ref().map(|entry| Applied {
                source: entry.source.to_string(),
                deployment_id: entry.record.deployment_id.clone(),
                deployment_time: entry.record.deployment_time,
            }),
            warnings: Vec::new(),
        }
    }

    /// Derives and stores a model's status from the verdict and `observed`.
    fn report(&self, name: &str, verdict: &Verdict, observed: &Observed) {
        let services = observed.owned_by(&self.cx.instance.name, name);
        let tasks = observed.tasks_of(&services);
        let network = self.network.report();
        let scene = status::Scene::of(observed, network.as_deref());
        let new = status::derive(name, verdict, &services, &tasks, &scene);
        // A model's first status since the start is no change: nothing happened that
        // this copy saw.
        if let Some(old) = self.status.get(name) {
            let notes = events::of_change(&old, &new);
            self.events
                .record(name, notes, new.deployment_id.as_deref());
            // Only the active copy notifies: standbys see the same changes.
            if let Some(notifier) = self.notifier().filter(|_| self.lease.may_write())
                && let Some(notification) =
                    notify::of_change(&old, &new, jiff::Timestamp::now().to_string())
            {
                notifier.notify(notification);
            }
        }
        self.status.set(new);
    }
}

/// The deployment a verdict converges to, for events.
fn deployment(verdict: &Verdict) -> Option<&str> {
    verdict.applied.as_ref().map(|a| a.deployment_id.as_str())
}

impl Verdict {
    /// Converging to `entry`.
    fn applying(entry: &HistoryEntry) -> Self {
        Self {
            valid: true,
            wanted: true,
            synced: false,
            problem: None,
            applied: Some(Applied {
                source: entry.source.to_string(),
                deployment_id: entry.record.deployment_id.clone(),
                deployment_time: entry.record.deployment_time,
            }),
            warnings: Vec::new(),
        }
    }

    /// Removing the model's services; `recorded` if it has records still.
    fn absent(recorded: bool) -> Self {
        Self {
            valid: recorded,
            wanted: false,
            synced: false,
            problem: None,
            applied: None,
            warnings: Vec::new(),
        }
    }

    /// Stopped by `problem`; `valid` if a valid record exists regardless.
    fn failed(problem: Problem, valid: bool) -> Self {
        Self {
            valid,
            wanted: true,
            synced: false,
            problem: Some(problem),
            applied: None,
            warnings: Vec::new(),
        }
    }
}
