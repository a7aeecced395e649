//! The reconciler against the fake swarm: fast, deterministic, no sleeps.

use super::*;
use crate::desired::Identity;
use crate::desired::record::{self, HistoryEntry, Source};
use crate::reconcile::observe;
use crate::reconcile::status::Phase;
use crate::sources::files::scan;
use crate::swarm::fake::{FakeSwarm, Op};
use std::collections::BTreeSet;
use std::path::Path;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const MODEL: &str = "domain: {domain}.example.com\nimage: mlmodel-test/static-http:1\nbuild_id: b1\nrun_id: r1\nscale: {scale}\nmem_reservation: 16M\nmem_limit: 64M\n";

struct Rig {
    controller: Arc<Controller>,
    fake: Arc<FakeSwarm>,
    manifests: tempfile::TempDir,
    data: tempfile::TempDir,
    files_tx: watch::Sender<Arc<FileDeclarations>>,
}

fn manifest(name: &str, scale: u64) -> String {
    MODEL
        .replace("{domain}", &name.replace('_', "-"))
        .replace("{scale}", &scale.to_string())
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

impl Rig {
    async fn new() -> Self {
        let manifests = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let fake = Arc::new(FakeSwarm::new());
        Self::with(fake, manifests, data).await
    }

    async fn with(
        fake: Arc<FakeSwarm>,
        manifests: tempfile::TempDir,
        data: tempfile::TempDir,
    ) -> Self {
        Self::with_templates(fake, manifests, data, Templates::builtin().unwrap()).await
    }

    async fn with_templates(
        fake: Arc<FakeSwarm>,
        manifests: tempfile::TempDir,
        data: tempfile::TempDir,
        templates: Templates,
    ) -> Self {
        let store = Store::open(data.path()).unwrap();
        let (files_tx, files) = watch::channel(Arc::new(FileDeclarations::default()));
        let controller = Controller::new(Parts {
            swarm: fake.clone(),
            store,
            files,
            instance: Instance::default(),
            templates: Arc::new(templates),
            // Each converge sees the registry as it is then (the shared answers have
            // their own tests in images.rs).
            images: ImagePolicy {
                digest_ttl: DigestTtl::NONE,
                ..Default::default()
            },
            network_subnet: Default::default(),
            lease: None,
        });
        controller.ensure_network().await.unwrap();
        Self {
            controller,
            fake,
            manifests,
            data,
            files_tx,
        }
    }

    /// A rig whose templates directory holds the template `name` and `files` (path,
    /// content), with the model `m` declared to use that template.
    async fn with_template(
        name: &str,
        template: &str,
        files: &[(&str, &str)],
    ) -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), name, template);
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let templates = Templates::load(Some(dir.path())).unwrap();
        let rig = Self::with_templates(
            Arc::new(FakeSwarm::new()),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            templates,
        )
        .await;
        let text = format!("{}template_file: {name}\n", manifest("m", 1));
        write(rig.manifests.path(), "m.yml", &text);
        rig.rescan();
        (rig, dir)
    }

    /// Rescans the manifests directory, as the watcher would after a change.
    fn rescan(&self) {
        let previous = self.files_tx.borrow().clone();
        self.files_tx
            .send(Arc::new(scan(
                self.manifests.path(),
                &previous,
                &Default::default(),
            )))
            .unwrap();
    }

    async fn relist(&self) {
        observe::relist(self.fake.as_ref(), &self.controller.observed)
            .await
            .unwrap();
    }

    /// Relists and reconciles every model once, as a resync does.
    async fn converge(&self) {
        self.relist().await;
        for name in self.controller.all_models() {
            assert_eq!(
                self.controller.reconcile(&name).await,
                Outcome::Done,
                "reconcile of {name}"
            );
        }
        self.relist().await;
        for name in self.controller.all_models() {
            self.controller.reconcile(&name).await;
        }
    }

    fn status(&self, name: &str) -> Arc<crate::reconcile::status::ModelStatus> {
        self.controller
            .status
            .get(name)
            .unwrap_or_else(|| panic!("no status for {name}"))
    }

    fn replicas(&self, service: &str) -> Option<i64> {
        self.fake.service(service)?.spec.mode?.replicated?.replicas
    }
}

#[tokio::test]
async fn a_dropped_manifest_becomes_a_labelled_service_and_a_history_record() {
    let rig = Rig::new().await;
    write(
        rig.manifests.path(),
        "carls_model.yml",
        &manifest("carls_model", 2),
    );
    rig.rescan();
    rig.converge().await;
    let service = rig
        .fake
        .service("mlmodel_carls_model_mlmodel")
        .expect("service created");
    assert_eq!(service.label(labels::MANAGED_BY), Some("mlmodel"));
    assert_eq!(service.label(labels::NAME), Some("carls_model"));
    assert_eq!(
        service.label(labels::STACK_NAMESPACE),
        Some("mlmodel_carls_model")
    );
    assert!(service.label(labels::RECORD).is_some());
    assert_eq!(rig.replicas("mlmodel_carls_model_mlmodel"), Some(2));
    let history = rig
        .controller
        .store()
        .history("carls_model", 10)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(history.len(), 1);
    let status = rig.status("carls_model");
    assert_eq!(status.phase, Phase::Available, "{status:?}");
    assert!(status.valid && status.active && status.synced);
}

#[tokio::test]
async fn a_model_whose_tasks_are_rejected_is_degraded_with_swarms_error() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 1));
    rig.rescan();
    rig.converge().await;
    let missing = "No such image: mlmodel-test/static-http:1";
    rig.fake.set_running("mlmodel_m_mlmodel", 0).unwrap();
    rig.fake
        .set_task_error("mlmodel_m_mlmodel", "rejected", missing)
        .unwrap();
    rig.converge().await;
    let status = rig.status("m");
    assert_eq!(status.phase, Phase::Degraded, "{status:?}");
    assert!(status.message.starts_with(missing), "{status:?}");
    assert!(
        status.message.contains("docker login"),
        "says what to do: {status:?}"
    );
    assert_eq!(status.tasks.len(), 1, "{status:?}");
    assert_eq!(status.tasks[0].state.as_str(), "Rejected");
    assert_eq!(status.tasks[0].desired_state.as_str(), "Ready");
}

#[tokio::test]
async fn a_resync_of_a_converged_swarm_sends_no_write_and_adds_no_history() {
    let rig = Rig::new().await;
    for i in 0..5 {
        write(
            rig.manifests.path(),
            &format!("m{i}.yml"),
            &manifest(&format!("m{i}"), 1),
        );
    }
    rig.rescan();
    rig.converge().await;
    rig.fake.reset_calls();
    rig.rescan();
    rig.converge().await;
    assert_eq!(rig.fake.writes(), 0, "calls: {:?}", rig.fake.calls());
    assert_eq!(
        rig.fake.calls_of(Op::InspectService),
        0,
        "no per-model calls: {:?}",
        rig.fake.calls()
    );
    assert_eq!(
        rig.controller
            .store()
            .history("m0", 10)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_edited_manifest_updates_the_service_and_appends_history() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 2));
    rig.rescan();
    rig.converge().await;
    write(
        rig.manifests.path(),
        "m.yml",
        &manifest("m", 3).replace("static-http:1", "static-http:2"),
    );
    rig.rescan();
    rig.converge().await;
    assert_eq!(rig.replicas("mlmodel_m_mlmodel"), Some(3));
    let service = rig.fake.service("mlmodel_m_mlmodel").unwrap();
    let image = service
        .spec
        .task_template
        .unwrap()
        .container_spec
        .unwrap()
        .image
        .unwrap();
    assert_eq!(image, "mlmodel-test/static-http:2");
    assert_eq!(
        rig.controller
            .store()
            .history("m", 10)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_new_image_is_not_available_while_the_old_tasks_still_run_it() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 2));
    rig.rescan();
    rig.converge().await;
    assert_eq!(rig.status("m").phase, Phase::Available);
    // Swarm has taken the new spec but not yet started replacing the tasks: both old
    // replicas run and no update status shows yet.
    rig.fake.hold_rollout("mlmodel_m_mlmodel").unwrap();
    write(
        rig.manifests.path(),
        "m.yml",
        &manifest("m", 2).replace("static-http:1", "static-http:2"),
    );
    rig.rescan();
    assert_eq!(rig.controller.reconcile("m").await, Outcome::Done);
    let written = rig.status("m");
    assert_eq!(written.phase, Phase::Progressing, "{written:?}");
    assert_eq!(written.replicas_running, 2, "{written:?}");
    rig.converge().await;
    let listed = rig.status("m");
    assert_eq!(listed.phase, Phase::Progressing, "{listed:?}");
    assert!(listed.synced, "{listed:?}");

    rig.fake.release_rollout("mlmodel_m_mlmodel").unwrap();
    rig.converge().await;
    let done = rig.status("m");
    assert_eq!(done.phase, Phase::Available, "{done:?}");
    assert!(
        done.tasks
            .iter()
            .all(|task| task.image == "mlmodel-test/static-http:2"),
        "{done:?}"
    );
}

#[tokio::test]
async fn hand_edits_are_reverted_and_hand_removals_recreated() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 2));
    rig.rescan();
    rig.converge().await;
    rig.fake.scale_by_hand("mlmodel_m_mlmodel", 5).unwrap();
    rig.converge().await;
    assert_eq!(rig.replicas("mlmodel_m_mlmodel"), Some(2));
    rig.fake
        .set_label_by_hand("mlmodel_m_mlmodel", "mlmodel.build-id", "forged")
        .unwrap();
    rig.converge().await;
    let service = rig.fake.service("mlmodel_m_mlmodel").unwrap();
    assert_eq!(service.label("mlmodel.build-id"), Some("b1"));
    rig.fake.remove_by_hand("mlmodel_m_mlmodel").unwrap();
    rig.converge().await;
    assert!(rig.fake.service("mlmodel_m_mlmodel").is_some(), "recreated");
}

#[tokio::test]
async fn a_removed_manifest_prunes_the_services_but_keeps_history() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 1));
    write(rig.manifests.path(), "keep.yml", &manifest("keep", 1));
    rig.rescan();
    rig.converge().await;
    std::fs::remove_file(rig.manifests.path().join("m.yml")).unwrap();
    rig.rescan();
    rig.converge().await;
    assert!(rig.fake.service("mlmodel_m_mlmodel").is_none());
    assert!(rig.fake.service("mlmodel_keep_mlmodel").is_some());
    assert_eq!(
        rig.controller
            .store()
            .history("m", 10)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(rig.status("m").phase, Phase::Removed);
}

#[tokio::test]
async fn a_foreign_service_with_a_colliding_name_is_untouched_and_reported() {
    let rig = Rig::new().await;
    let foreign = bollard::models::ServiceSpec {
        name: Some("mlmodel_m_mlmodel".into()),
        labels: Some(HashMap::from([(
            "owner".to_string(),
            "someone".to_string(),
        )])),
        ..Default::default()
    };
    rig.fake.create_by_hand(&foreign).unwrap();
    let before = rig.fake.service("mlmodel_m_mlmodel").unwrap();
    write(rig.manifests.path(), "m.yml", &manifest("m", 2));
    rig.rescan();
    rig.converge().await;
    let after = rig.fake.service("mlmodel_m_mlmodel").unwrap();
    assert_eq!(after.version, before.version, "foreign service untouched");
    let status = rig.status("m");
    assert_eq!(status.phase, Phase::Failed);
    assert!(
        status.message.contains("already exists"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn a_broken_manifest_among_good_ones_only_fails_itself() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "good.yml", &manifest("good", 1));
    write(
        rig.manifests.path(),
        "bad.yml",
        &manifest("bad", 1).replace("scale: 1", "scael: 1"),
    );
    write(
        rig.manifests.path(),
        "worse.yml",
        &manifest("worse", 1).replace("static-http:1", "Not An Image"),
    );
    rig.rescan();
    rig.converge().await;
    assert!(rig.fake.service("mlmodel_good_mlmodel").is_some());
    assert!(rig.fake.service("mlmodel_bad_mlmodel").is_none());
    let bad = rig.status("bad");
    assert_eq!(bad.phase, Phase::Failed);
    assert!(
        bad.message.contains("scael: unknown field"),
        "{}",
        bad.message
    );
    let worse = rig.status("worse");
    assert!(worse.message.contains("image:"), "{}", worse.message);
}

#[tokio::test]
async fn two_files_declaring_one_name_apply_neither_until_one_goes() {
    let rig = Rig::new().await;
    write(
        rig.manifests.path(),
        "a.yml",
        &format!("name: m\n{}", manifest("m", 1)),
    );
    write(
        rig.manifests.path(),
        "b.yml",
        &format!("name: m\n{}", manifest("m", 3)),
    );
    rig.rescan();
    rig.converge().await;
    assert!(rig.fake.service("mlmodel_m_mlmodel").is_none());
    let status = rig.status("m");
    assert!(
        status.message.contains("a.yml") && status.message.contains("b.yml"),
        "{}",
        status.message
    );
    std::fs::remove_file(rig.manifests.path().join("b.yml")).unwrap();
    rig.rescan();
    rig.converge().await;
    assert_eq!(rig.replicas("mlmodel_m_mlmodel"), Some(1));
}

#[tokio::test]
async fn a_restarted_controller_waits_for_its_first_list_before_writing() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 1));
    rig.rescan();
    rig.converge().await;
    // Restart: a new controller on the same store, manifests and swarm, nothing listed yet.
    let Rig {
        controller,
        fake,
        manifests,
        data,
        ..
    } = rig;
    drop(controller);
    let restarted = Rig::with(fake, manifests, data).await;
    restarted.rescan();
    restarted.fake.reset_calls();
    assert_eq!(restarted.controller.reconcile("m").await, Outcome::Done);
    assert_eq!(
        restarted.fake.writes(),
        0,
        "an empty cache is not an empty swarm: {:?}",
        restarted.fake.calls()
    );
    restarted.converge().await;
    assert_eq!(restarted.fake.writes(), 0, "{:?}", restarted.fake.calls());
    assert_eq!(restarted.status("m").phase, Phase::Available);
}

#[tokio::test]
async fn a_lost_store_adopts_live_services_instead_of_deleting_them() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 2));
    rig.rescan();
    rig.converge().await;
    std::fs::remove_file(rig.manifests.path().join("m.yml")).unwrap();
    // Lose the store: a fresh controller, empty store, no manifests, same swarm.
    let fake = rig.fake.clone();
    let before = fake.service("mlmodel_m_mlmodel").unwrap().version;
    drop(rig);
    let fresh = Rig::with(
        fake.clone(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    )
    .await;
    fresh.fake.reset_calls();
    fresh.converge().await;
    let service = fresh
        .fake
        .service("mlmodel_m_mlmodel")
        .expect("not deleted");
    assert_eq!(service.version, before, "adopted without an update");
    assert_eq!(fresh.fake.writes(), 0, "{:?}", fresh.fake.calls());
    let history = fresh
        .controller
        .store()
        .history("m", 10)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].source, Source::Adopted);
    assert_eq!(fresh.status("m").phase, Phase::Available);
}

#[tokio::test]
async fn an_update_out_of_sequence_is_reread_and_retried() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 1));
    rig.rescan();
    rig.converge().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 2));
    rig.rescan();
    rig.relist().await;
    rig.fake.fail_next(
        Op::UpdateService,
        SwarmError::OutOfSequence {
            what: "mlmodel_m_mlmodel".into(),
        },
    );
    assert_eq!(rig.controller.reconcile("m").await, Outcome::Done);
    assert_eq!(rig.replicas("mlmodel_m_mlmodel"), Some(2));
    assert_eq!(rig.fake.calls_of(Op::UpdateService), 2);
}

#[tokio::test]
async fn docker_going_away_makes_the_reconcile_retry_and_report_it() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 1));
    rig.rescan();
    rig.relist().await;
    rig.fake.set_unreachable(true);
    assert_eq!(rig.controller.reconcile("m").await, Outcome::Retry);
    assert!(
        rig.status("m").message.contains("unreachable"),
        "{}",
        rig.status("m").message
    );
    rig.fake.set_unreachable(false);
    rig.converge().await;
    assert!(rig.fake.service("mlmodel_m_mlmodel").is_some());
}

impl Rig {
    /// Records a deployment of `name` through the store, as the API does.
    async fn record_through_api(&self, name: &str) {
        let spec = crate::desired::manifest::parse_manifest(
            Path::new("api.yml"),
            &format!("name: {name}\n{}", manifest(name, 1)),
        )
        .unwrap()[0]
            .spec
            .clone()
            .unwrap();
        let desired = self
            .controller
            .pipeline()
            .build(
                spec,
                Identity {
                    deployment_id: record::new_deployment_id(),
                    deployment_time: 1.0,
                    image_digest: None,
                },
                &Source::Api,
            )
            .unwrap();
        self.controller
            .store()
            .append(HistoryEntry {
                record: desired.record,
                source: Source::Api,
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_model_stopped_through_the_api_is_removed_and_stays_removed() {
    let rig = Rig::new().await;
    rig.record_through_api("api_model").await;
    rig.converge().await;
    assert!(rig.fake.service("mlmodel_api_model_mlmodel").is_some());
    rig.controller
        .store()
        .set_stopped("api_model", true)
        .await
        .unwrap();
    rig.converge().await;
    assert!(rig.fake.service("mlmodel_api_model_mlmodel").is_none());
    rig.converge().await;
    assert!(rig.fake.service("mlmodel_api_model_mlmodel").is_none());
    let _ = &rig.data;
}

#[tokio::test]
async fn a_model_whose_records_are_cleared_while_it_runs_is_removed_not_adopted() {
    let rig = Rig::new().await;
    rig.record_through_api("api_model").await;
    rig.converge().await;
    assert!(rig.fake.service("mlmodel_api_model_mlmodel").is_some());
    // What DELETE ?clear_all_records=true writes. Any reconcile from here on, even one
    // that was already queued by Docker's events, must see a stopped model.
    rig.controller
        .store()
        .clear_and_stop("api_model")
        .await
        .unwrap();
    rig.relist().await;
    assert_eq!(rig.controller.reconcile("api_model").await, Outcome::Done);
    assert!(rig.fake.service("mlmodel_api_model_mlmodel").is_none());
    assert!(
        rig.controller
            .store()
            .latest("api_model")
            .unwrap()
            .is_none(),
        "no record was adopted back from the live services"
    );
    // The removal queued a second look, which forgets the model at once rather than at
    // the next resync.
    assert_eq!(rig.controller.queue.depth(), 1);
    assert_eq!(rig.controller.reconcile("api_model").await, Outcome::Done);
    assert!(rig.controller.status.get("api_model").is_none());
}

#[tokio::test(start_paused = true)]
async fn run_reacts_to_a_service_removed_by_hand_through_events() {
    let rig = Rig::new().await;
    write(rig.manifests.path(), "m.yml", &manifest("m", 1));
    rig.rescan();
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let config = RunConfig {
        concurrency: 2,
        resync: Duration::from_secs(3600),
        progress_interval: Duration::from_secs(3600),
    };
    let running = tokio::spawn(
        rig.controller
            .clone()
            .run(config, changes, shutdown.clone()),
    );
    for _ in 0..200 {
        if rig.fake.service("mlmodel_m_mlmodel").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        rig.fake.service("mlmodel_m_mlmodel").is_some(),
        "created at start"
    );
    rig.fake.remove_by_hand("mlmodel_m_mlmodel").unwrap();
    let mut recreated = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if rig.fake.service("mlmodel_m_mlmodel").is_some() {
            recreated = true;
            break;
        }
    }
    assert!(
        recreated,
        "recreated through the event stream, long before any resync"
    );
    changes_tx.send(BTreeSet::from(["m".to_string()])).unwrap();
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn a_vanished_manifests_directory_holds_its_models_instead_of_pruning_them() {
    let rig = Rig::new().await;
    rig.controller
        .set_manifests_dir(rig.manifests.path().to_path_buf());
    write(rig.manifests.path(), "m.yml", &manifest("m", 1));
    rig.rescan();
    rig.converge().await;
    std::fs::remove_dir_all(rig.manifests.path()).unwrap();
    rig.rescan();
    rig.converge().await;
    assert!(
        rig.fake.service("mlmodel_m_mlmodel").is_some(),
        "not pruned"
    );
    let status = rig.status("m");
    assert!(status.message.contains("is missing"), "{}", status.message);
    std::fs::create_dir(rig.manifests.path()).unwrap();
    rig.rescan();
    rig.converge().await;
    assert!(
        rig.fake.service("mlmodel_m_mlmodel").is_none(),
        "an empty directory that exists does prune"
    );
}

/// A template whose stack mounts a secret read from the templates directory.
const SECRET_TEMPLATE: &str = "services:\n  mlmodel:\n    image: {{ image }}\n    secrets: [token]\nsecrets:\n  token:\n    file: files/token.txt\n";

fn secret_names(fake: &FakeSwarm) -> Vec<String> {
    fake.objects().into_iter().map(|o| o.name).collect()
}

#[tokio::test]
async fn a_secret_is_created_before_its_service_rotated_when_its_file_changes_and_collected_after()
{
    let (rig, templates_dir) = Rig::with_template(
        "secret.yml",
        SECRET_TEMPLATE,
        &[("files/token.txt", "first")],
    )
    .await;
    rig.converge().await;
    let first = secret_names(&rig.fake);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with("mlmodel_m_token-"), "{first:?}");
    let object = &rig.fake.objects()[0];
    assert_eq!(object.labels[labels::MANAGED_BY], "mlmodel");
    assert_eq!(object.labels[labels::NAME], "m");
    let service = rig.fake.service("mlmodel_m_mlmodel").unwrap();
    let reference = service
        .spec
        .task_template
        .unwrap()
        .container_spec
        .unwrap()
        .secrets
        .unwrap();
    assert_eq!(reference[0].secret_id.as_deref(), Some(object.id.as_str()));
    assert_eq!(rig.status("m").phase, Phase::Available);

    // A converged resync asks nothing about secrets.
    rig.fake.reset_calls();
    rig.converge().await;
    for op in [
        Op::ObjectId,
        Op::CreateObject,
        Op::ListObjects,
        Op::RemoveObject,
    ] {
        assert_eq!(rig.fake.calls_of(op), 0, "{op:?}: {:?}", rig.fake.calls());
    }
    assert_eq!(rig.fake.writes(), 0);

    // New content: a new secret, the service moved to it, the old one collected.
    write(templates_dir.path(), "files/token.txt", "second, longer");
    rig.converge().await;
    let both = secret_names(&rig.fake);
    assert_eq!(both.len(), 2, "{both:?}");
    let service = rig.fake.service("mlmodel_m_mlmodel").unwrap();
    let reference = service
        .spec
        .task_template
        .unwrap()
        .container_spec
        .unwrap()
        .secrets
        .unwrap();
    let now = reference[0].secret_name.clone().unwrap();
    assert_ne!(now, first[0]);
    rig.controller.collect_objects().await;
    assert_eq!(secret_names(&rig.fake), vec![now]);
    // Nothing more to collect until a write frees something.
    rig.fake.reset_calls();
    rig.controller.collect_objects().await;
    assert_eq!(rig.fake.calls_of(Op::ListObjects), 0);

    // A secret removed by hand is created again at the next service write.
    std::fs::remove_file(rig.manifests.path().join("m.yml")).unwrap();
    rig.rescan();
    rig.converge().await;
    assert!(rig.fake.service("mlmodel_m_mlmodel").is_none());
    rig.controller.collect_objects().await;
    assert!(
        secret_names(&rig.fake).is_empty(),
        "a removed model's secrets are collected"
    );
}

#[tokio::test]
async fn a_missing_external_secret_is_a_problem_the_status_names() {
    let (rig, _templates) = Rig::with_template(
        "ext.yml",
        "services:\n  mlmodel:\n    image: {{ image }}\n    secrets: [shared]\nsecrets:\n  shared:\n    external: true\n    name: team_token\n",
        &[],
    )
    .await;
    rig.relist().await;
    assert_eq!(rig.controller.reconcile("m").await, Outcome::Retry);
    let status = rig.status("m");
    let message = status.message.clone();
    assert!(
        message.contains("external secret team_token not found"),
        "{message}"
    );
    assert!(rig.fake.service("mlmodel_m_mlmodel").is_none());
    // Once it exists, the model deploys and references it.
    let id = rig
        .fake
        .create_object(&crate::swarm::ObjectRequest::Secret(
            bollard::models::SecretSpec {
                name: Some("team_token".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(rig.controller.reconcile("m").await, Outcome::Done);
    let service = rig.fake.service("mlmodel_m_mlmodel").unwrap();
    let reference = service
        .spec
        .task_template
        .unwrap()
        .container_spec
        .unwrap()
        .secrets
        .unwrap();
    assert_eq!(reference[0].secret_id.as_deref(), Some(id.as_str()));
    // mlmodel never collects what it did not create.
    rig.controller.collect_objects().await;
    std::fs::remove_file(rig.manifests.path().join("m.yml")).unwrap();
    rig.rescan();
    rig.converge().await;
    rig.controller.collect_objects().await;
    assert_eq!(secret_names(&rig.fake), ["team_token"]);
}

fn running_image(fake: &FakeSwarm, service: &str) -> String {
    let spec = fake.service(service).unwrap().spec;
    spec.task_template
        .unwrap()
        .container_spec
        .unwrap()
        .image
        .unwrap()
}

#[tokio::test]
async fn images_are_pinned_to_their_digest_when_the_image_changes_and_kept_otherwise() {
    let rig = Rig::new().await;
    let service = "mlmodel_m_mlmodel";
    rig.fake
        .push_image("mlmodel-test/static-http:1", "sha256:aaa");
    write(rig.manifests.path(), "m.yml", &manifest("m", 1));
    rig.rescan();
    rig.converge().await;
    assert_eq!(
        running_image(&rig.fake, service),
        "mlmodel-test/static-http:1@sha256:aaa"
    );
    let status = rig.status("m");
    assert_eq!(status.image.as_deref(), Some("mlmodel-test/static-http:1"));
    assert_eq!(status.image_digest.as_deref(), Some("sha256:aaa"));

    // Converged: nothing is resolved again.
    rig.fake.reset_calls();
    rig.converge().await;
    assert_eq!(rig.fake.calls_of(Op::ImageDigest), 0);
    assert_eq!(rig.fake.writes(), 0);

    // The tag moves, but a change that keeps the image keeps the digest (`changed`).
    rig.fake
        .push_image("mlmodel-test/static-http:1", "sha256:bbb");
    write(rig.manifests.path(), "m.yml", &manifest("m", 2));
    rig.rescan();
    rig.converge().await;
    assert_eq!(rig.replicas(service), Some(2));
    assert_eq!(
        running_image(&rig.fake, service),
        "mlmodel-test/static-http:1@sha256:aaa"
    );
    assert_eq!(rig.fake.calls_of(Op::ImageDigest), 0);

    // A new image is resolved; one no registry knows runs unpinned, as with the CLI.
    rig.fake
        .push_image("mlmodel-test/static-http:2", "sha256:ccc");
    let two = manifest("m", 2).replace("static-http:1", "static-http:2");
    write(rig.manifests.path(), "m.yml", &two);
    rig.rescan();
    rig.converge().await;
    assert_eq!(
        running_image(&rig.fake, service),
        "mlmodel-test/static-http:2@sha256:ccc"
    );
    let unknown = two.replace("static-http:2", "static-http:3");
    write(rig.manifests.path(), "m.yml", &unknown);
    rig.rescan();
    rig.converge().await;
    assert_eq!(
        running_image(&rig.fake, service),
        "mlmodel-test/static-http:3"
    );
    assert_eq!(rig.status("m").image_digest, None);
    assert_eq!(rig.status("m").phase, Phase::Available);
}

#[tokio::test]
async fn a_model_that_follows_its_tag_is_redeployed_when_the_tag_moves_and_others_stay() {
    let rig = Rig::new().await;
    rig.fake
        .push_image("mlmodel-test/static-http:1", "sha256:aaa");
    let follower = format!("{}follow_tag: true\n", manifest("follower", 1));
    write(rig.manifests.path(), "follower.yml", &follower);
    write(rig.manifests.path(), "stayer.yml", &manifest("stayer", 1));
    rig.rescan();
    rig.converge().await;
    let pinned = |digest: &str| format!("mlmodel-test/static-http:1@{digest}");
    assert_eq!(
        running_image(&rig.fake, "mlmodel_follower_mlmodel"),
        pinned("sha256:aaa")
    );
    let history = |name: &str| rig.controller.store().history(name, 10).len();
    assert_eq!(history("follower"), 1);

    // Unmoved: asked, nothing recorded or written.
    rig.fake.reset_calls();
    rig.converge().await;
    assert!(
        rig.fake.calls_of(Op::ImageDigest) > 0,
        "a follower asks at each reconcile"
    );
    assert_eq!(rig.fake.writes(), 0);
    assert_eq!(history("follower"), 1);

    // Retrained and pushed again under the same tag.
    rig.fake
        .push_image("mlmodel-test/static-http:1", "sha256:bbb");
    rig.converge().await;
    assert_eq!(
        running_image(&rig.fake, "mlmodel_follower_mlmodel"),
        pinned("sha256:bbb")
    );
    assert_eq!(history("follower"), 2, "the move is a new deployment");
    let latest = rig.controller.store().latest("follower").unwrap().unwrap();
    assert_eq!(latest.record.image_digest.as_deref(), Some("sha256:bbb"));
    assert_eq!(
        latest.record.spec.image, "mlmodel-test/static-http:1",
        "the declared tag is kept"
    );
    assert_eq!(
        rig.status("follower").image_digest.as_deref(),
        Some("sha256:bbb")
    );
    assert_eq!(
        running_image(&rig.fake, "mlmodel_stayer_mlmodel"),
        pinned("sha256:aaa")
    );
    assert_eq!(history("stayer"), 1);

    // Converged on the new digest: no further deployment.
    rig.fake.reset_calls();
    rig.converge().await;
    assert_eq!(history("follower"), 2);
    assert_eq!(rig.fake.writes(), 0);
}

#[tokio::test]
async fn a_deployment_swarm_rolled_back_is_failed_and_not_sent_again_until_a_new_one() {
    let rig = Rig::new().await;
    let service = "mlmodel_m_mlmodel";
    write(rig.manifests.path(), "m.yml", &manifest("m", 1));
    rig.rescan();
    rig.converge().await;
    let first = rig.status("m").deployment_id.clone().unwrap();
    write(
        rig.manifests.path(),
        "m.yml",
        &manifest("m", 1).replace("static-http:1", "static-http:2"),
    );
    rig.rescan();
    rig.converge().await;
    let second = rig.status("m").deployment_id.clone().unwrap();
    assert_ne!(first, second);
    rig.fake
        .roll_back(
            service,
            "update rolled back due to failure or early termination of task t1",
        )
        .unwrap();
    rig.fake.reset_calls();
    rig.converge().await;
    assert_eq!(
        rig.fake.writes(),
        0,
        "not sent again: {:?}",
        rig.fake.calls()
    );
    let status = rig.status("m");
    assert_eq!(status.phase, Phase::Failed, "{status:?}");
    assert_eq!(status.deployment_id.as_deref(), Some(second.as_str()));
    assert!(
        status.message.starts_with(&format!(
            "deployment {second} was rolled back by Swarm on service {service}: its new tasks failed (Swarm: update rolled back due to failure or early termination of task t1); it runs deployment {first} again"
        )),
        "{status:?}"
    );
    assert_eq!(status.image.as_deref(), Some("mlmodel-test/static-http:1"));
    let events = rig.controller.events.list("m").unwrap();
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    for reason in [
        "Recorded",
        "Created",
        "Available",
        "Updated",
        "RolledBack",
        "Failed",
    ] {
        assert!(reasons.contains(&reason), "{reason} in {events:#?}");
    }
    let failed = events.iter().find(|e| e.reason == "Failed").unwrap();
    assert_eq!(failed.message, status.message);
    assert_eq!(failed.deployment_id.as_deref(), Some(second.as_str()));
    // A fixed version is a new deployment: sent, and the model converges on it.
    write(
        rig.manifests.path(),
        "m.yml",
        &manifest("m", 1).replace("static-http:1", "static-http:latest"),
    );
    rig.rescan();
    rig.converge().await;
    let status = rig.status("m");
    assert_eq!(status.phase, Phase::Available, "{status:?}");
    assert_eq!(
        status.image.as_deref(),
        Some("mlmodel-test/static-http:latest")
    );
}
