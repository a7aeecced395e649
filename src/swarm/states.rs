//! Docker's task and rolling-update states as types, parsed once where Docker's answer is
//! read (the adapter, the fake), so that the reconciler and the status rules match on
//! variants instead of comparing strings.
//!
//! A state this version of mlmodel does not know (a newer engine's) is kept as Docker
//! wrote it ([`TaskState::Other`], [`UpdateState::Other`]): it is shown to users as is and
//! counts as neither running nor failed.

use std::fmt;

/// Where a task stands in Swarm's task lifecycle (`docker service ps` shows these).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Created, not yet allocated.
    New,
    /// Resources (IP addresses) allocated.
    Allocated,
    /// Waiting for a node with room: the scheduler's error says why.
    Pending,
    /// Assigned to a node.
    Assigned,
    /// The node accepted it.
    Accepted,
    /// Pulling the image, creating the container.
    Preparing,
    /// Ready to start; also the desired state of a failed task waiting to restart.
    Ready,
    /// Starting.
    Starting,
    /// Its container runs.
    Running,
    /// Exited with status 0.
    Complete,
    /// Stopped by Swarm (replaced, scaled down, removed).
    Shutdown,
    /// Exited with an error.
    Failed,
    /// The node could not run it (a missing image, a bad mount).
    Rejected,
    /// Marked for removal.
    Remove,
    /// Its node has been down too long.
    Orphaned,
    /// A state this version does not know, as Docker wrote it.
    Other(String),
}

impl TaskState {
    /// Reads Docker's word for a task state (`"running"`, `"rejected"`, ...).
    pub fn parse(state: &str) -> Self {
        match state {
            "new" => Self::New,
            "allocated" => Self::Allocated,
            "pending" => Self::Pending,
            "assigned" => Self::Assigned,
            "accepted" => Self::Accepted,
            "preparing" => Self::Preparing,
            "ready" => Self::Ready,
            "starting" => Self::Starting,
            "running" => Self::Running,
            "complete" => Self::Complete,
            "shutdown" => Self::Shutdown,
            "failed" => Self::Failed,
            "rejected" => Self::Rejected,
            "remove" => Self::Remove,
            "orphaned" => Self::Orphaned,
            other => Self::Other(other.to_string()),
        }
    }

    /// Docker's word for it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::New => "new",
            Self::Allocated => "allocated",
            Self::Pending => "pending",
            Self::Assigned => "assigned",
            Self::Accepted => "accepted",
            Self::Preparing => "preparing",
            Self::Ready => "ready",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Shutdown => "shutdown",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Remove => "remove",
            Self::Orphaned => "orphaned",
            Self::Other(other) => other,
        }
    }

    /// Whether the task holds addresses on its networks: allocated, and not yet ended.
    pub fn has_address(&self) -> bool {
        matches!(
            self,
            Self::Allocated
                | Self::Pending
                | Self::Assigned
                | Self::Accepted
                | Self::Preparing
                | Self::Ready
                | Self::Starting
                | Self::Running
        )
    }

    /// Whether the task waits before any node runs it: not yet allocated, or not yet
    /// scheduled.
    pub fn is_waiting(&self) -> bool {
        matches!(self, Self::New | Self::Allocated | Self::Pending)
    }

    /// Whether the task ended in an error (Swarm restarts such tasks after a delay).
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed | Self::Rejected)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a service's rolling update (`UpdateStatus.State`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpdateState {
    /// Tasks are being replaced.
    Updating,
    /// Stopped after too many failures (`failure_action: pause`).
    Paused,
    /// Every task was replaced.
    Completed,
    /// Going back to the previous spec after failures.
    RollbackStarted,
    /// The rollback stopped after failures.
    RollbackPaused,
    /// The previous spec is back.
    RollbackCompleted,
    /// A state this version does not know, as Docker wrote it.
    Other(String),
}

impl UpdateState {
    /// Reads Docker's word for an update state (`"updating"`, `"rollback_completed"`, ...).
    pub fn parse(state: &str) -> Self {
        match state {
            "updating" => Self::Updating,
            "paused" => Self::Paused,
            "completed" => Self::Completed,
            "rollback_started" => Self::RollbackStarted,
            "rollback_paused" => Self::RollbackPaused,
            "rollback_completed" => Self::RollbackCompleted,
            other => Self::Other(other.to_string()),
        }
    }

    /// Docker's word for it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Updating => "updating",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::RollbackStarted => "rollback_started",
            Self::RollbackPaused => "rollback_paused",
            Self::RollbackCompleted => "rollback_completed",
            Self::Other(other) => other,
        }
    }

    /// Whether the rollout failed: paused, or rolled (or rolling) back.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::Paused | Self::RollbackStarted | Self::RollbackPaused | Self::RollbackCompleted
        )
    }

    /// The state in words ("rollback completed").
    pub fn words(&self) -> String {
        self.as_str().replace('_', " ")
    }
}

impl fmt::Display for UpdateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads an optional update state, treating Docker's empty string as none.
pub fn update_state(state: Option<&str>) -> Option<UpdateState> {
    state.filter(|s| !s.is_empty()).map(UpdateState::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_state_reads_back_as_docker_wrote_it() {
        for word in [
            "new",
            "allocated",
            "pending",
            "assigned",
            "accepted",
            "preparing",
            "ready",
            "starting",
            "running",
            "complete",
            "shutdown",
            "failed",
            "rejected",
            "remove",
            "orphaned",
        ] {
            let state = TaskState::parse(word);
            assert!(!matches!(state, TaskState::Other(_)), "{word}");
            assert_eq!(state.as_str(), word);
        }
        for word in [
            "updating",
            "paused",
            "completed",
            "rollback_started",
            "rollback_paused",
            "rollback_completed",
        ] {
            let state = UpdateState::parse(word);
            assert!(!matches!(state, UpdateState::Other(_)), "{word}");
            assert_eq!(state.to_string(), word);
        }
    }

    #[test]
    fn an_unknown_state_is_kept_and_counts_as_nothing() {
        let task = TaskState::parse("hibernating");
        assert_eq!(task, TaskState::Other("hibernating".into()));
        assert_eq!(task.as_str(), "hibernating");
        assert!(!task.is_failure());
        let update = UpdateState::parse("rollback_hibernating");
        assert!(!update.is_failure());
        assert_eq!(update.words(), "rollback hibernating");
        assert_eq!(update_state(Some("")), None);
        assert_eq!(update_state(None), None);
    }

    #[test]
    fn failed_rollouts_and_tasks_are_told_apart() {
        assert!(UpdateState::RollbackCompleted.is_failure());
        assert!(UpdateState::Paused.is_failure());
        assert!(!UpdateState::Updating.is_failure());
        assert!(!UpdateState::Completed.is_failure());
        assert!(TaskState::Rejected.is_failure());
        assert!(!TaskState::Pending.is_failure());
    }
}
