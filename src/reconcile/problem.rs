//! Why a model is not (or not fully) converged, as a value.
//!
//! Each stage reports what went wrong in its own type: [`decide`](fn@super::controller::decide)
//! a [`HoldReason`], the offline pipeline its [`FieldError`]s, the store a
//! [`StoreError`], the planner a [`NameTaken`], Docker a [`SwarmError`]. A [`Problem`]
//! carries one of them to the status rules unflattened, which tell a fatal problem (the
//! model is Failed until its declaration changes) from a transient one (retried), and it
//! becomes words only when the status is written for a user ([`std::fmt::Display`]).

use crate::desired::record::Source;
use crate::desired::validate::FieldError;
use crate::reconcile::plan::NameTaken;
use crate::reconcile::rollback::RolledBack;
use crate::sources::store::StoreError;
use crate::swarm::SwarmError;
use std::fmt;
use std::sync::Arc;

/// Why [`decide`](fn@super::controller::decide) leaves a model's live services as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum HoldReason {
    /// The manifest is unreadable now; its last good content keeps running.
    StaleManifest {
        /// What is wrong with the file now, naming it.
        error: String,
    },
    /// The manifest declaring the model does not read as a spec.
    InvalidManifest {
        /// The manifest (and document).
        origin: String,
        /// Every problem in it.
        errors: Vec<FieldError>,
    },
    /// Several manifest documents declare the model.
    DeclaredTwice {
        /// All of them.
        origins: Vec<String>,
    },
    /// The manifests directory is missing, so a missing manifest says nothing.
    ManifestsDirMissing {
        /// The directory.
        dir: String,
    },
    /// Services run with no record in the store, and the record label they carry does
    /// not read.
    UnreadableRecordLabel {
        /// The label's decoding error.
        error: String,
    },
    /// Services run with no record in the store and carry no record label.
    NoRecordLabel,
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::desired::stack::labels::RECORD;
        match self {
            Self::StaleManifest { error } => write!(
                f,
                "{error}; the model keeps running as last declared until the file is fixed"
            ),
            Self::InvalidManifest { origin, errors } => {
                let prefix = format!("{origin}: ");
                join(f, errors.iter().map(|e| (prefix.as_str(), e)))
            }
            Self::DeclaredTwice { origins } => write!(
                f,
                "declared by {}: neither is applied until only one declares it",
                origins.join(" and ")
            ),
            Self::ManifestsDirMissing { dir } => write!(
                f,
                "the manifests directory {dir} is missing: the model keeps running as last declared until it is back"
            ),
            Self::UnreadableRecordLabel { error } => write!(
                f,
                "services run with no record in the store and their {RECORD} label cannot be read ({error}): redeploy the model to take it over"
            ),
            Self::NoRecordLabel => write!(
                f,
                "services run with no record in the store and no {RECORD} label: redeploy the model to take it over"
            ),
        }
    }
}

/// What stands between a model and convergence, until it becomes a status message.
#[derive(Debug, Clone)]
pub enum Problem {
    /// The declaration says to leave the model as it runs.
    Held(HoldReason),
    /// The record does not build into a valid stack (its template, its fields).
    Invalid {
        /// Where the record comes from; a manifest's path prefixes each error.
        source: Source,
        /// Every problem found.
        errors: Vec<FieldError>,
    },
    /// The store could not be read.
    StoreRead(Arc<StoreError>),
    /// A new record could not be written to the store.
    StoreWrite(Arc<StoreError>),
    /// Desired service names are taken by services this instance does not own.
    NamesTaken(Vec<NameTaken>),
    /// A Docker write failed.
    DockerWrite(SwarmError),
    /// This copy does not hold the lease: it observes and reports, and writes nothing.
    Standby(String),
    /// Swarm rolled the deployment back: held as it runs until a new deployment.
    RolledBack(Box<RolledBack>),
}

impl Problem {
    /// Whether the problem makes the model Failed until something changes (a declaration
    /// error, a name conflict, an unreadable store), rather than a failed write that a
    /// retry may get through.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Self::StoreWrite(_) | Self::DockerWrite(_) | Self::Standby(_)
        )
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Held(reason) => reason.fmt(f),
            Self::Invalid { source, errors } => {
                let prefix = match source {
                    Source::File { path } => format!("{path}: "),
                    Source::Api | Source::Adopted => String::new(),
                };
                join(f, errors.iter().map(|e| (prefix.as_str(), e)))
            }
            Self::StoreRead(error) => write!(f, "cannot read the store: {error}"),
            Self::StoreWrite(error) => write!(f, "cannot write the store: {error}"),
            Self::NamesTaken(taken) => join(f, taken.iter().map(|t| ("", t))),
            Self::DockerWrite(error) => error.fmt(f),
            Self::Standby(why) => f.write_str(why),
            Self::RolledBack(rolled) => rolled.fmt(f),
        }
    }
}

impl From<HoldReason> for Problem {
    fn from(reason: HoldReason) -> Self {
        Self::Held(reason)
    }
}

/// Writes each item after its prefix, `"; "` between them.
fn join<'a, T: fmt::Display + 'a>(
    f: &mut fmt::Formatter<'_>,
    items: impl Iterator<Item = (&'a str, &'a T)>,
) -> fmt::Result {
    for (i, (prefix, item)) in items.enumerate() {
        if i > 0 {
            f.write_str("; ")?;
        }
        write!(f, "{prefix}{item}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_reads_as_the_user_is_told_it() {
        let errors = vec![
            FieldError::new("port", "expected a whole number"),
            FieldError::new("scale", "expected at most 100"),
        ];
        let from_file = Problem::Invalid {
            source: Source::File {
                path: "m.yml".into(),
            },
            errors: errors.clone(),
        };
        assert_eq!(
            from_file.to_string(),
            "m.yml: port: expected a whole number; m.yml: scale: expected at most 100"
        );
        let from_api = Problem::Invalid {
            source: Source::Api,
            errors,
        };
        assert_eq!(
            from_api.to_string(),
            "port: expected a whole number; scale: expected at most 100"
        );
        let held = Problem::from(HoldReason::DeclaredTwice {
            origins: vec!["a.yml".into(), "b.yml".into()],
        });
        assert_eq!(
            held.to_string(),
            "declared by a.yml and b.yml: neither is applied until only one declares it"
        );
    }

    #[test]
    fn only_failed_writes_are_transient() {
        let write = Problem::DockerWrite(SwarmError::Unreachable {
            message: "connection refused".into(),
        });
        assert!(!write.is_fatal());
        assert!(Problem::Held(HoldReason::NoRecordLabel).is_fatal());
        assert!(Problem::NamesTaken(vec![]).is_fatal());
    }
}
