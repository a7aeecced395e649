//! Deciding what a model's desired state is, from its two sources and the live swarm.
//!
//! A pure function of what the manifests directory says, the newest record in the store,
//! and the services found live. The rules: a manifest file wins over the API; a name two
//! files declare is held as it runs until the conflict is gone; a broken manifest holds
//! its models as they run; a model whose manifest was removed, or that was deleted
//! through the API, is removed; services this instance owns but has no record of (the
//! store was lost) are adopted from the record they carry, never deleted.

use crate::desired::record::{DeploymentRecord, HistoryEntry, ModelSpec, Source};
use crate::desired::stack::labels;
use crate::desired::validate::FieldError;
use crate::reconcile::problem::HoldReason;
use crate::swarm::ObservedService;
use std::sync::Arc;

/// What the manifests directory says about one model.
#[derive(Debug, Clone, PartialEq)]
pub enum FileView {
    /// No manifest declares it.
    Undeclared,
    /// One manifest document declares it.
    Declared {
        /// The manifest (and document) it comes from.
        origin: String,
        /// The file path, as recorded in the history's source.
        path: String,
        /// The declared spec.
        spec: Arc<ModelSpec>,
        /// Set when the file is unreadable now and this is its last good content.
        stale: Option<String>,
    },
    /// The manifest declaring it does not parse as a spec.
    Invalid {
        /// Where.
        origin: String,
        /// Every problem.
        errors: Vec<FieldError>,
    },
    /// Several manifest documents declare it.
    Conflict {
        /// All of them.
        origins: Vec<String>,
    },
    /// No manifest declares it, but the manifests directory itself is missing, so that
    /// says nothing about whether its manifest was removed.
    DirectoryMissing {
        /// The directory.
        dir: String,
    },
}

/// What to do about a model's desired state.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Converge to this stored record.
    Apply {
        /// The record.
        entry: Arc<HistoryEntry>,
    },
    /// Record a new deployment of `spec` (new id and time), then converge to it.
    Record {
        /// The spec.
        spec: ModelSpec,
        /// Where it comes from.
        source: Source,
    },
    /// Adopt live services the store has no record of: store this record, then converge.
    Adopt {
        /// The record rebuilt from the services' label.
        record: DeploymentRecord,
    },
    /// Remove every service of the model.
    Absent,
    /// Leave live services as they are; the problem goes in the status.
    Hold {
        /// Why.
        problem: HoldReason,
        /// Whether a valid record exists regardless (a broken file's last good content).
        valid: bool,
    },
    /// Nothing declared, nothing recorded, nothing live: forget the model.
    Forget,
}

/// Decides one model's desired state.
pub fn decide(
    file: &FileView,
    latest: Option<&Arc<HistoryEntry>>,
    stopped: bool,
    live: &[&ObservedService],
) -> Decision {
    match file {
        FileView::Declared {
            stale: Some(error), ..
        } => Decision::Hold {
            problem: HoldReason::StaleManifest {
                error: error.clone(),
            },
            valid: true,
        },
        FileView::Declared { path, spec, .. } => {
            let source = Source::File { path: path.clone() };
            match latest {
                Some(entry) if entry.record.spec == **spec && entry.source == source => {
                    Decision::Apply {
                        entry: entry.clone(),
                    }
                }
                _ => Decision::Record {
                    spec: (**spec).clone(),
                    source,
                },
            }
        }
        FileView::Invalid { origin, errors } => Decision::Hold {
            problem: HoldReason::InvalidManifest {
                origin: origin.clone(),
                errors: errors.clone(),
            },
            valid: false,
        },
        FileView::Conflict { origins } => Decision::Hold {
            problem: HoldReason::DeclaredTwice {
                origins: origins.clone(),
            },
            valid: false,
        },
        FileView::DirectoryMissing { dir } => match latest {
            Some(entry) if matches!(entry.source, Source::File { .. }) && !stopped => {
                Decision::Hold {
                    problem: HoldReason::ManifestsDirMissing { dir: dir.clone() },
                    valid: true,
                }
            }
            _ => decide(&FileView::Undeclared, latest, stopped, live),
        },
        FileView::Undeclared => match latest {
            None if stopped && live.is_empty() => Decision::Forget,
            _ if stopped => Decision::Absent,
            Some(entry) if matches!(entry.source, Source::File { .. }) => Decision::Absent,
            Some(entry) => Decision::Apply {
                entry: entry.clone(),
            },
            None if live.is_empty() => Decision::Forget,
            None => adopt(live),
        },
    }
}

/// Rebuilds the record a live service carries in its label.
fn adopt(live: &[&ObservedService]) -> Decision {
    let labelled = live.iter().find_map(|s| s.label(labels::RECORD));
    match labelled.map(serde_json::from_str::<DeploymentRecord>) {
        Some(Ok(record)) => Decision::Adopt { record },
        Some(Err(e)) => Decision::Hold {
            problem: HoldReason::UnreadableRecordLabel {
                error: e.to_string(),
            },
            valid: false,
        },
        None => Decision::Hold {
            problem: HoldReason::NoRecordLabel,
            valid: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ServiceSpec;
    use std::collections::HashMap;

    fn spec(scale: u64) -> ModelSpec {
        ModelSpec {
            scale,
            ..crate::desired::validate::tests::good_spec()
        }
    }

    fn record(scale: u64) -> DeploymentRecord {
        DeploymentRecord {
            spec: spec(scale),
            deployment_id: "d1".into(),
            deployment_time: 1.0,
            rendered_template: String::new(),
            image_digest: None,
        }
    }

    fn entry(scale: u64, source: Source) -> Arc<HistoryEntry> {
        Arc::new(HistoryEntry {
            record: record(scale),
            source,
        })
    }

    fn file(scale: u64) -> FileView {
        FileView::Declared {
            origin: "m.yml".into(),
            path: "m.yml".into(),
            spec: Arc::new(spec(scale)),
            stale: None,
        }
    }

    fn live_with_label(label: Option<&str>) -> ObservedService {
        let mut labels = HashMap::new();
        if let Some(value) = label {
            labels.insert(labels::RECORD.to_string(), value.to_string());
        }
        ObservedService {
            id: "s1".into(),
            version: 1,
            spec: ServiceSpec {
                name: Some("mlmodel_m_mlmodel".into()),
                labels: Some(labels),
                ..Default::default()
            },
            running_tasks: 1,
            desired_tasks: 1,
            update_state: None,
            update_message: None,
            updated_at: None,
        }
    }

    fn file_source() -> Source {
        Source::File {
            path: "m.yml".into(),
        }
    }

    #[test]
    fn a_new_manifest_is_recorded() {
        let decision = decide(&file(2), None, false, &[]);
        assert_eq!(
            decision,
            Decision::Record {
                spec: spec(2),
                source: file_source()
            }
        );
    }

    #[test]
    fn an_unchanged_manifest_adds_nothing_to_history() {
        let latest = entry(2, file_source());
        assert_eq!(
            decide(&file(2), Some(&latest), false, &[]),
            Decision::Apply {
                entry: latest.clone()
            }
        );
    }

    #[test]
    fn an_edited_manifest_is_recorded_again() {
        let latest = entry(2, file_source());
        assert_eq!(
            decide(&file(3), Some(&latest), false, &[]),
            Decision::Record {
                spec: spec(3),
                source: file_source()
            }
        );
    }

    #[test]
    fn a_manifest_wins_over_an_api_record() {
        let latest = entry(2, Source::Api);
        assert_eq!(
            decide(&file(2), Some(&latest), false, &[]),
            Decision::Record {
                spec: spec(2),
                source: file_source()
            }
        );
    }

    #[test]
    fn a_removed_manifest_removes_the_model() {
        let latest = entry(2, file_source());
        assert_eq!(
            decide(&FileView::Undeclared, Some(&latest), false, &[]),
            Decision::Absent
        );
    }

    #[test]
    fn an_api_record_is_applied_until_stopped() {
        let latest = entry(2, Source::Api);
        assert_eq!(
            decide(&FileView::Undeclared, Some(&latest), false, &[]),
            Decision::Apply {
                entry: latest.clone()
            }
        );
        assert_eq!(
            decide(&FileView::Undeclared, Some(&latest), true, &[]),
            Decision::Absent
        );
    }

    #[test]
    fn conflicts_and_broken_manifests_hold_what_runs() {
        let conflict = FileView::Conflict {
            origins: vec!["a.yml".into(), "b.yml".into()],
        };
        match decide(&conflict, None, false, &[]) {
            Decision::Hold {
                problem,
                valid: false,
            } => assert!(problem.to_string().contains("a.yml and b.yml"), "{problem}"),
            other => panic!("{other:?}"),
        }
        let invalid = FileView::Invalid {
            origin: "m.yml".into(),
            errors: vec![FieldError::new("port", "expected a whole number")],
        };
        match decide(&invalid, Some(&entry(2, file_source())), false, &[]) {
            Decision::Hold {
                problem,
                valid: false,
            } => assert_eq!(problem.to_string(), "m.yml: port: expected a whole number"),
            other => panic!("{other:?}"),
        }
        let stale = FileView::Declared {
            origin: "m.yml".into(),
            path: "m.yml".into(),
            spec: Arc::new(spec(5)),
            stale: Some("m.yml: not valid YAML".into()),
        };
        assert!(matches!(
            decide(&stale, None, false, &[]),
            Decision::Hold { valid: true, .. }
        ));
    }

    #[test]
    fn live_services_without_a_record_are_adopted_not_deleted() {
        let label = serde_json::to_string(&record(4)).unwrap();
        let live = live_with_label(Some(&label));
        assert_eq!(
            decide(&FileView::Undeclared, None, false, &[&live]),
            Decision::Adopt { record: record(4) }
        );
        let unlabelled = live_with_label(None);
        assert!(matches!(
            decide(&FileView::Undeclared, None, false, &[&unlabelled]),
            Decision::Hold { .. }
        ));
        let garbled = live_with_label(Some("{not json"));
        assert!(matches!(
            decide(&FileView::Undeclared, None, false, &[&garbled]),
            Decision::Hold { .. }
        ));
    }

    #[test]
    fn a_model_whose_records_were_cleared_is_not_adopted_back() {
        let live = live_with_label(Some(&serde_json::to_string(&record(4)).unwrap()));
        assert_eq!(
            decide(&FileView::Undeclared, None, true, &[&live]),
            Decision::Absent
        );
        assert_eq!(
            decide(&FileView::Undeclared, None, true, &[]),
            Decision::Forget
        );
    }

    #[test]
    fn a_missing_manifests_directory_holds_file_models_instead_of_pruning_them() {
        let missing = FileView::DirectoryMissing {
            dir: "manifests".into(),
        };
        let from_file = entry(2, file_source());
        assert!(matches!(
            decide(&missing, Some(&from_file), false, &[]),
            Decision::Hold { valid: true, .. }
        ));
        let from_api = entry(2, Source::Api);
        assert_eq!(
            decide(&missing, Some(&from_api), false, &[]),
            Decision::Apply {
                entry: from_api.clone()
            }
        );
    }

    #[test]
    fn nothing_anywhere_is_forgotten() {
        assert_eq!(
            decide(&FileView::Undeclared, None, false, &[]),
            Decision::Forget
        );
    }
}
