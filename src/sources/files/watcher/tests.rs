use super::*;
use notify::event::{CreateKind, ModifyKind};
use std::fs;

const MINIMAL: &str = "domain: carls-model.com\nimage: qarlm/server\nrun_id: r1\n";
/// Generous: only a broken watcher takes this long.
const PATIENCE: Duration = Duration::from_secs(10);

fn manifest(build_id: &str) -> String {
    format!("{MINIMAL}build_id: {build_id}\n")
}

fn config() -> WatchConfig {
    // Rescans far apart, so that these tests prove notifications work.
    WatchConfig {
        debounce: Duration::from_millis(20),
        rescan: Duration::from_secs(60),
        ..WatchConfig::default()
    }
}

struct Running {
    declarations: watch::Receiver<Arc<FileDeclarations>>,
    changes: mpsc::UnboundedReceiver<BTreeSet<String>>,
    health: WatcherHealth,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn start(dir: &Path) -> Running {
    let shutdown = CancellationToken::new();
    let (declarations, changes, health) =
        ManifestWatcher::spawn(dir.to_path_buf(), config(), shutdown.clone()).unwrap();
    Running {
        declarations,
        changes,
        health,
        shutdown,
    }
}

impl Running {
    async fn wait_for(
        &mut self,
        what: &str,
        condition: impl Fn(&FileDeclarations) -> bool,
    ) -> Arc<FileDeclarations> {
        let seen = tokio::time::timeout(PATIENCE, self.declarations.wait_for(|d| condition(d)))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"))
            .expect("the watcher stopped");
        Arc::clone(&seen)
    }

    async fn wait_for_build(&mut self, name: &str, build_id: &str) -> Arc<FileDeclarations> {
        self.wait_for(&format!("{name} is at build {build_id}"), |d| {
            d.models
                .get(name)
                .and_then(|m| m.spec())
                .is_some_and(|spec| spec.build_id == build_id)
                && d.models[name].stale.is_none()
        })
        .await
    }
}

#[tokio::test]
async fn a_created_file_is_declared_and_its_name_reported_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(dir.path());
    assert!(running.declarations.borrow().models.is_empty());
    fs::write(dir.path().join("m.yml"), manifest("b1")).unwrap();
    running.wait_for_build("m", "b1").await;
    let changed = tokio::time::timeout(PATIENCE, running.changes.recv())
        .await
        .unwrap();
    assert_eq!(changed, Some(BTreeSet::from(["m".to_string()])));
    let health = running.health.report();
    assert!(health.is_healthy(), "{health:?}");
    assert!(health.last_scan.is_some() && health.dir_present);
}

#[tokio::test]
async fn the_first_scan_is_there_before_spawn_returns() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("m.yml"), manifest("b1")).unwrap();
    let running = start(dir.path());
    assert_eq!(
        running.declarations.borrow().models["m"]
            .spec()
            .unwrap()
            .build_id,
        "b1"
    );
}

#[tokio::test]
async fn an_editor_save_through_swap_probe_and_rename_ends_in_the_new_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yml");
    fs::write(&path, manifest("b1")).unwrap();
    let mut running = start(dir.path());
    // What vim does on save: a swap file, a probe file, then the new file renamed over.
    fs::write(dir.path().join(".m.yml.swp"), "swap").unwrap();
    fs::write(dir.path().join("4913"), "").unwrap();
    fs::remove_file(dir.path().join("4913")).unwrap();
    fs::write(dir.path().join("m.yml.tmp"), manifest("b2")).unwrap();
    fs::rename(dir.path().join("m.yml.tmp"), &path).unwrap();
    fs::remove_file(dir.path().join(".m.yml.swp")).unwrap();
    let seen = running.wait_for_build("m", "b2").await;
    assert!(seen.broken.is_empty());
    assert_eq!(seen.models.len(), 1);
}

#[tokio::test]
async fn a_deleted_file_withdraws_its_model() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("m.yml"), manifest("b1")).unwrap();
    fs::write(dir.path().join("keep.yml"), manifest("k")).unwrap();
    let mut running = start(dir.path());
    fs::remove_file(dir.path().join("m.yml")).unwrap();
    running
        .wait_for("m is gone", |d| !d.models.contains_key("m"))
        .await;
    assert!(running.declarations.borrow().models.contains_key("keep"));
}

#[tokio::test]
async fn a_partial_write_stays_stale_until_the_write_completes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yml");
    fs::write(&path, manifest("b1")).unwrap();
    let mut running = start(dir.path());
    let full = manifest("b2");
    fs::write(
        &path,
        full[..full.find("image").unwrap() + 10].replace(": ", ": ["),
    )
    .unwrap();
    let stale = running
        .wait_for("m is stale", |d| {
            d.models.get("m").is_some_and(|m| m.stale.is_some())
        })
        .await;
    assert_eq!(stale.models["m"].spec().unwrap().build_id, "b1");
    assert!(stale.broken.contains_key(&path));
    fs::write(&path, &full).unwrap();
    let done = running.wait_for_build("m", "b2").await;
    assert!(done.broken.is_empty());
}

#[tokio::test]
async fn a_new_subdirectory_is_watched_and_a_deleted_one_withdraws_its_models() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(dir.path());
    let sub = dir.path().join("team/a");
    fs::create_dir_all(&sub).unwrap();
    fs::write(sub.join("m.yml"), manifest("b1")).unwrap();
    running.wait_for_build("m", "b1").await;
    fs::write(sub.join("m.yml"), manifest("b2")).unwrap();
    running.wait_for_build("m", "b2").await;
    fs::remove_dir_all(dir.path().join("team")).unwrap();
    running.wait_for("m is gone", |d| d.models.is_empty()).await;
}

#[tokio::test]
async fn the_directory_deleted_and_recreated_is_watched_again() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("manifests");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("m.yml"), manifest("b1")).unwrap();
    let mut running = start(&dir);
    fs::remove_dir_all(&dir).unwrap();
    running
        .wait_for("everything is gone", |d| d.models.is_empty())
        .await;
    wait_until(|| !running.health.report().dir_present).await;
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("m.yml"), manifest("b2")).unwrap();
    running.wait_for_build("m", "b2").await;
    // The edit proves the new directory itself is watched, not only its creation.
    fs::write(dir.join("m.yml"), manifest("b3")).unwrap();
    running.wait_for_build("m", "b3").await;
    wait_until(|| running.health.report().is_healthy()).await;
}

#[tokio::test]
async fn a_directory_missing_at_start_is_read_once_it_appears() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("later");
    let mut running = start(&dir);
    let health = running.health.report();
    assert!(
        !health.dir_present && !health.watching && health.is_healthy(),
        "{health:?}"
    );
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("m.yml"), manifest("b1")).unwrap();
    running.wait_for_build("m", "b1").await;
}

#[tokio::test(start_paused = true)]
async fn without_notifications_the_periodic_rescan_finds_changes() {
    let parent = tempfile::tempdir().unwrap();
    // Its parent is missing too, so no notification can announce it: only the
    // periodic rescan can find it.
    let dir = parent.path().join("a/b/manifests");
    let shutdown = CancellationToken::new();
    let config = WatchConfig {
        debounce: Duration::from_millis(20),
        rescan: Duration::from_secs(30),
        ..WatchConfig::default()
    };
    let (mut declarations, _changes, health) =
        ManifestWatcher::spawn(dir.clone(), config, shutdown.clone()).unwrap();
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("m.yml"), manifest("b1")).unwrap();
    tokio::time::advance(Duration::from_secs(31)).await;
    let seen = tokio::time::timeout(
        PATIENCE,
        declarations.wait_for(|d| d.models.contains_key("m")),
    )
    .await
    .expect("the rescan found the file")
    .expect("the watcher is alive")
    .clone();
    assert_eq!(seen.models["m"].spec().unwrap().build_id, "b1");
    assert!(health.report().scans >= 2);
    shutdown.cancel();
}

#[tokio::test]
async fn cancelling_stops_the_watcher_and_its_health_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path());
    assert!(running.health.report().alive);
    running.shutdown.cancel();
    wait_until(|| !running.health.report().alive).await;
    assert!(!running.health.report().is_healthy());
}

#[test]
fn spawning_outside_a_runtime_is_an_error() {
    let error = ManifestWatcher::spawn(
        PathBuf::from("manifests"),
        WatchConfig::default(),
        CancellationToken::new(),
    )
    .unwrap_err();
    assert!(matches!(error, WatchError::NoRuntime));
}

async fn wait_until(condition: impl Fn() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition reached in time");
}

#[test]
fn a_burst_of_events_is_scanned_once_it_has_been_quiet_for_the_debounce() {
    let start = Instant::now();
    let ms = Duration::from_millis;
    let mut schedule = Schedule::new(&WatchConfig::default(), start);
    assert_eq!(schedule.next_scan(), start + Duration::from_secs(30));
    schedule.event(start + ms(10));
    schedule.event(start + ms(40));
    assert_eq!(schedule.next_scan(), start + ms(90));
    schedule.scanned(start + ms(90));
    assert_eq!(
        schedule.next_scan(),
        start + ms(90) + Duration::from_secs(30)
    );
}

#[test]
fn an_endless_stream_of_events_postpones_a_scan_by_at_most_twenty_debounces() {
    let start = Instant::now();
    let ms = Duration::from_millis;
    let mut schedule = Schedule::new(&WatchConfig::default(), start);
    for t in (0..2000).step_by(10) {
        schedule.event(start + ms(t));
    }
    assert_eq!(schedule.next_scan(), start + ms(1000));
}

#[test]
fn the_periodic_rescan_is_not_postponed_by_events() {
    let start = Instant::now();
    let config = WatchConfig {
        debounce: Duration::from_secs(10),
        rescan: Duration::from_secs(1),
        ..WatchConfig::default()
    };
    let mut schedule = Schedule::new(&config, start);
    schedule.event(start);
    assert_eq!(schedule.next_scan(), start + Duration::from_secs(1));
}

#[test]
fn reads_and_events_outside_the_directory_do_not_trigger_scans() {
    let dir = Path::new("/srv/manifests");
    let event = |kind: EventKind, path: &str| Event::new(kind).add_path(PathBuf::from(path));
    let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
    let close_read = EventKind::Access(AccessKind::Close(AccessMode::Read));
    let close_write = EventKind::Access(AccessKind::Close(AccessMode::Write));
    let create = EventKind::Create(CreateKind::File);
    let modify = EventKind::Modify(ModifyKind::Any);
    assert!(!is_relevant(dir, &event(open, "/srv/manifests/m.yml")));
    assert!(!is_relevant(
        dir,
        &event(close_read, "/srv/manifests/m.yml")
    ));
    assert!(!is_relevant(dir, &event(create, "/srv/other")));
    assert!(is_relevant(
        dir,
        &event(close_write, "/srv/manifests/m.yml")
    ));
    assert!(is_relevant(dir, &event(modify, "/srv/manifests/a/.x.swp")));
    assert!(is_relevant(dir, &event(create, "/srv/manifests")));
    assert!(is_relevant(dir, &Event::new(modify)));
    assert!(is_relevant(
        dir,
        &Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan)
    ));
}
