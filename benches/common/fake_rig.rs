//! A controller over the fake swarm with many converged models, as `mlmodel serve` would
//! hold them: one manifest file per model, scanned; one record per model in the store;
//! one live service per model.

use mlmodel::desired::render::{Instance, Templates};
use mlmodel::reconcile::controller::{Controller, Parts};
use mlmodel::reconcile::queue::Outcome;
use mlmodel::sources::files::{FileDeclarations, scan};
use mlmodel::sources::store::Store;
use mlmodel::swarm::fake::FakeSwarm;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// The manifest of model `name`: the local test image, small reservations.
pub fn manifest(name: &str, scale: u64) -> String {
    format!(
        "domain: {domain}.example.com\nimage: mlmodel-test/static-http:1\nbuild_id: build-1\nrun_id: run-1\nscale: {scale}\ncpu_limit: \"0.5\"\ncpu_reservation: \"0.01\"\nmem_limit: 64M\nmem_reservation: 8M\n",
        domain = name.replace('_', "-")
    )
}

/// The name of the `i`-th of `n` models: `m0007` for n = 1000.
pub fn model_name(i: usize, n: usize) -> String {
    let width = n.saturating_sub(1).to_string().len().max(2);
    format!("m{i:0width$}")
}

/// Writes one manifest file per model into `dir`.
pub fn write_manifests(dir: &Path, n: usize) {
    for i in 0..n {
        let name = model_name(i, n);
        std::fs::write(dir.join(format!("{name}.yml")), manifest(&name, 1))
            .expect("write a manifest");
    }
}

/// A controller over a fake swarm, with its directories kept alive.
pub struct FakeRig {
    /// The controller.
    pub controller: Arc<Controller>,
    /// The fake swarm under it.
    pub fake: Arc<FakeSwarm>,
    /// The manifests directory.
    pub manifests: tempfile::TempDir,
    /// The store's directory.
    pub data: tempfile::TempDir,
    /// Publishes new scans of the manifests directory to the controller.
    pub files_tx: watch::Sender<Arc<FileDeclarations>>,
}

impl FakeRig {
    /// A controller over an empty fake swarm and `n` manifests, not yet reconciled.
    pub async fn new(n: usize) -> Self {
        let manifests = tempfile::tempdir().expect("temp dir");
        let data = tempfile::tempdir().expect("temp dir");
        write_manifests(manifests.path(), n);
        let fake = Arc::new(FakeSwarm::new());
        let store = Store::open(data.path()).expect("open the store");
        let declarations = scan(
            manifests.path(),
            &FileDeclarations::default(),
            &Default::default(),
        );
        assert_eq!(declarations.models.len(), n, "every manifest scanned");
        let (files_tx, files) = watch::channel(Arc::new(declarations));
        let controller = Controller::new(Parts {
            swarm: fake.clone(),
            store,
            files,
            instance: Instance::default(),
            templates: Arc::new(Templates::builtin().expect("built-in templates")),
            images: Default::default(),
            network_subnet: Default::default(),
            lease: None,
        });
        controller.ensure_network().await.expect("network");
        Self {
            controller,
            fake,
            manifests,
            data,
            files_tx,
        }
    }

    /// Reconciles every model until the swarm matches (two rounds, as a controller that
    /// creates and then sees its services would), checking nothing fails.
    pub async fn converge(&self) {
        for _ in 0..2 {
            self.resync().await;
        }
        let observed = self.controller.observed.get();
        let live = observed.models(&self.controller.instance().name);
        assert_eq!(
            live.len(),
            self.files().models.len(),
            "one live service per model"
        );
    }

    /// One resync as the controller's loop does it, without the queue: relist, then
    /// reconcile every model in turn.
    pub async fn resync(&self) {
        self.controller.relist().await.expect("relist");
        for name in self.controller.all_models() {
            let outcome = self.controller.reconcile(&name).await;
            assert_eq!(outcome, Outcome::Done, "reconcile of {name}");
        }
    }

    /// The manifests as last scanned.
    pub fn files(&self) -> Arc<FileDeclarations> {
        self.files_tx.borrow().clone()
    }
}
