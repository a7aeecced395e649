use super::*;
use crate::desired::record::{DeploymentRecord, Source};
use crate::desired::record::{ModelSpec, new_deployment_id};
use serde_json::json;
use std::collections::BTreeMap;

pub(crate) fn record(name: &str, build_id: &str) -> DeploymentRecord {
    DeploymentRecord {
        spec: ModelSpec {
            name: name.into(),
            domain: format!("{}.example.com", name.replace('_', "-")),
            image: "registry.example.com/team/server:1.2".into(),
            port: 8080,
            build_id: build_id.into(),
            run_id: "run-7".into(),
            scale: 3,
            cpu_limit: "1.5".into(),
            cpu_reservation: "0.25".into(),
            mem_limit: "2G".into(),
            mem_reservation: "512M".into(),
            deploy_delay: "5s".into(),
            deploy_monitor_period: "1m30s".into(),
            template_file: "default.template.yml".into(),
            model_type: Some("default".into()),
            generic_resources: Default::default(),
            follow_tag: None,
            extra_template_attributes: BTreeMap::from([
                (
                    "env".to_string(),
                    json!({"A": "1", "B": [1, 2.5, null, {"c": true}]}),
                ),
                ("team".to_string(), json!("ranking")),
            ]),
        },
        deployment_id: new_deployment_id(),
        deployment_time: 1586932393.268678,
        rendered_template: "version: \"3.7\"\nservices:\n  app:\n    image: x\n".into(),
        image_digest: None,
    }
}

pub(crate) fn entry(name: &str, build_id: &str) -> HistoryEntry {
    HistoryEntry {
        record: record(name, build_id),
        source: Source::Api,
    }
}

pub(crate) fn build_ids(store: &Store, name: &str, n: usize) -> Vec<String> {
    store
        .history(name, n)
        .into_iter()
        .map(|e| e.unwrap().record.spec.build_id)
        .collect()
}

fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[tokio::test]
async fn history_is_newest_first_and_limited_to_n() {
    let (_dir, store) = open_temp();
    for build in ["b1", "b2", "b3"] {
        store.append(entry("m", build)).await.unwrap();
    }
    assert_eq!(build_ids(&store, "m", 10), ["b3", "b2", "b1"]);
    assert_eq!(build_ids(&store, "m", 2), ["b3", "b2"]);
    assert_eq!(build_ids(&store, "m", 0), Vec::<String>::new());
    assert_eq!(
        store.latest("m").unwrap().unwrap().record.spec.build_id,
        "b3"
    );
    assert!(store.latest("other").unwrap().is_none());
    assert!(store.history("other", 5).is_empty());
}

/// Opens the store again once the previous handle's background threads have let go
/// of its file lock (sled releases it shortly after the last handle drops).
async fn reopen(dir: &Path) -> Store {
    when_unlocked(dir, || Store::open(dir)).await
}

/// `open()` of the store in `dir`, retried while the handle this test dropped still
/// holds the lock (for up to 2 s).
async fn when_unlocked<T>(dir: &Path, open: impl Fn() -> Result<T, StoreError>) -> T {
    for _ in 0..100 {
        match open() {
            Err(StoreError::Locked { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            other => return other.unwrap(),
        }
    }
    panic!(
        "the store in {} stayed locked after its handle was dropped",
        dir.display()
    );
}

#[tokio::test]
async fn history_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let first = entry("m", "b1");
    {
        let store = Store::open(dir.path()).unwrap();
        store.append(first.clone()).await.unwrap();
        store.append(entry("m", "b2")).await.unwrap();
        store.set_stopped("m", true).await.unwrap();
    }
    let store = reopen(dir.path()).await;
    assert_eq!(build_ids(&store, "m", 10), ["b2", "b1"]);
    assert!(store.is_stopped("m").unwrap());
    assert_eq!(
        store.find("m", &first.record.deployment_id).unwrap(),
        Some(first)
    );
    store.append(entry("m", "b3")).await.unwrap();
    assert_eq!(build_ids(&store, "m", 10), ["b3", "b2", "b1"]);
}

#[tokio::test]
async fn a_record_with_every_field_round_trips_exactly() {
    let (_dir, store) = open_temp();
    let mut original = entry("carls_model", "b1");
    original.record.deployment_time = 1712345678.123_456_7;
    original.source = Source::File {
        path: "manifests/team/carls_model.yml".into(),
    };
    store.append(original.clone()).await.unwrap();
    // Decoded from the database, not the newest-entry cache.
    let back = store.history("carls_model", 1).remove(0).unwrap();
    assert_eq!(back, original);
    assert!(!original.record.rendered_template.is_empty());
    // The newest entry comes without its rendered template; the rest is the same.
    let latest = store.latest("carls_model").unwrap().unwrap();
    assert_eq!(latest.record.rendered_template, "");
    let mut stripped = original.clone();
    stripped.record.rendered_template = String::new();
    assert_eq!(*latest, stripped);
    store.lock_latest().entries.clear();
    assert_eq!(*store.latest("carls_model").unwrap().unwrap(), stripped);
    assert_eq!(
        back.record.deployment_time.to_bits(),
        original.record.deployment_time.to_bits()
    );
    for source in [Source::Api, Source::Adopted] {
        let mut other = entry("carls_model", "b2");
        other.source = source.clone();
        store.append(other).await.unwrap();
        assert_eq!(store.latest("carls_model").unwrap().unwrap().source, source);
    }
}

#[tokio::test]
async fn the_source_is_shown_with_a_kind() {
    let shown = serde_json::to_value(Source::File {
        path: "a.yml".into(),
    })
    .unwrap();
    assert_eq!(shown, json!({"kind": "file", "path": "a.yml"}));
    assert_eq!(
        serde_json::to_value(Source::Adopted).unwrap(),
        json!({"kind": "adopted"})
    );
}

#[tokio::test]
async fn appending_clears_the_stopped_flag() {
    let (_dir, store) = open_temp();
    assert!(!store.is_stopped("m").unwrap());
    store.append(entry("m", "b1")).await.unwrap();
    store.set_stopped("m", true).await.unwrap();
    assert!(store.is_stopped("m").unwrap());
    assert_eq!(build_ids(&store, "m", 10), ["b1"], "stopping keeps history");
    store.append(entry("m", "b2")).await.unwrap();
    assert!(!store.is_stopped("m").unwrap());
    store.set_stopped("m", true).await.unwrap();
    store.set_stopped("m", false).await.unwrap();
    assert!(!store.is_stopped("m").unwrap());
}

#[tokio::test]
async fn the_cached_stopped_flag_follows_every_write_as_the_database_holds_it() {
    let (_dir, store) = open_temp();
    let in_database =
        |store: &Store, name: &str| store.meta(name).unwrap().is_some_and(|m| m.stopped);
    let check = |store: &Store, step: &str| {
        for name in ["a", "b"] {
            // Twice: the first read may fill the cache, the second is served from it.
            for _ in 0..2 {
                let cached = store.is_stopped(name).unwrap();
                assert_eq!(cached, in_database(store, name), "{name} after {step}");
            }
        }
    };
    check(&store, "nothing");
    store.append(entry("a", "a1")).await.unwrap();
    check(&store, "append a");
    store.set_stopped("a", true).await.unwrap();
    check(&store, "stop a");
    assert!(store.is_stopped("a").unwrap());
    store.set_stopped("b", true).await.unwrap();
    check(&store, "stop b, which has no history");
    store.append(entry("a", "a2")).await.unwrap();
    check(&store, "append a again");
    assert!(!store.is_stopped("a").unwrap());
    store.clear_and_stop("a").await.unwrap();
    check(&store, "clear and stop a");
    assert!(store.is_stopped("a").unwrap());
    store.clear("a").await.unwrap();
    check(&store, "clear a");
    store.set_stopped("b", false).await.unwrap();
    check(&store, "start b");
    assert!(!store.is_stopped("b").unwrap());
}

/// A reconcile reads the newest entry, then the stopped flag. While a model is being
/// cleared and stopped, it may see the record and either flag, or no record and
/// stopped; never no record and not stopped, which would adopt the live services
/// back. A reader on another thread reads the model being written, again and again,
/// with the newest entry dropped from the cache before each read (as when a read
/// raced a write to another model), while its stopped flag stays cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_racing_clear_and_stop_never_sees_no_record_and_not_stopped() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (_dir, store) = open_temp();
    let names: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    for name in &names {
        store.append(entry(name, "b1")).await.unwrap();
    }
    let current = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, names) = (store.clone(), names.clone());
        let (current, done) = (current.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let name = &names[current.load(Ordering::Relaxed)];
                store.lock_latest().entries.remove(name);
                // Both ways a reconcile may read them: one after the other, and at once.
                let (latest, stopped) = if reads.is_multiple_of(2) {
                    (store.latest(name).unwrap(), store.is_stopped(name).unwrap())
                } else {
                    store.latest_and_stopped(name).unwrap()
                };
                assert!(
                    latest.is_some() || stopped,
                    "{name}: no record and not stopped, after {reads} reads"
                );
                reads += 1;
            }
            reads
        })
    };
    for (i, name) in names.iter().enumerate() {
        current.store(i, Ordering::Relaxed);
        // Let the reader cache the flag before the write.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        store.clear_and_stop(name).await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw no forbidden state");
    assert!(reads > 0);
    for name in &names {
        assert!(store.latest(name).unwrap().is_none());
        assert!(store.is_stopped(name).unwrap());
    }
}

#[tokio::test]
async fn clearing_forgets_history_and_metadata_of_that_model_only() {
    let (_dir, store) = open_temp();
    store.append(entry("a", "a1")).await.unwrap();
    store.append(entry("a", "a2")).await.unwrap();
    store.append(entry("ab", "ab1")).await.unwrap();
    store.set_stopped("a", true).await.unwrap();
    store.clear("a").await.unwrap();
    assert!(store.history("a", 10).is_empty());
    assert!(!store.is_stopped("a").unwrap());
    assert_eq!(store.names().unwrap(), ["ab"]);
    assert_eq!(build_ids(&store, "ab", 10), ["ab1"]);
    store.append(entry("a", "a3")).await.unwrap();
    assert_eq!(build_ids(&store, "a", 10), ["a3"]);
}

#[tokio::test]
async fn clearing_and_stopping_leaves_a_stopped_model_without_history() {
    let (_dir, store) = open_temp();
    store.append(entry("a", "a1")).await.unwrap();
    store.append(entry("a", "a2")).await.unwrap();
    store.append(entry("ab", "ab1")).await.unwrap();
    store.clear_and_stop("a").await.unwrap();
    assert!(store.history("a", 10).is_empty());
    assert!(store.latest("a").unwrap().is_none());
    assert!(store.is_stopped("a").unwrap());
    assert_eq!(store.names().unwrap(), ["a", "ab"]);
    assert_eq!(build_ids(&store, "ab", 10), ["ab1"]);
    assert!(!store.is_stopped("ab").unwrap());
    store.append(entry("a", "a3")).await.unwrap();
    assert_eq!(build_ids(&store, "a", 10), ["a3"]);
    assert!(!store.is_stopped("a").unwrap());
}

#[tokio::test]
async fn two_models_do_not_interfere_even_when_one_name_prefixes_the_other() {
    let (_dir, store) = open_temp();
    store.append(entry("m", "m1")).await.unwrap();
    store.append(entry("m_2", "x1")).await.unwrap();
    store.append(entry("m", "m2")).await.unwrap();
    store.set_stopped("m_2", true).await.unwrap();
    assert_eq!(build_ids(&store, "m", 10), ["m2", "m1"]);
    assert_eq!(build_ids(&store, "m_2", 10), ["x1"]);
    assert!(!store.is_stopped("m").unwrap());
    assert_eq!(store.names().unwrap(), ["m", "m_2"]);
}

#[tokio::test]
async fn the_kept_names_follow_every_write() {
    let (_dir, store) = open_temp();
    assert!(store.shared_names().unwrap().is_empty());
    store.append(entry("b", "b1")).await.unwrap();
    assert_eq!(*store.shared_names().unwrap(), ["b"]);
    store.append(entry("a", "a1")).await.unwrap();
    assert_eq!(*store.shared_names().unwrap(), ["a", "b"]);
    store.set_stopped("c", true).await.unwrap();
    assert_eq!(*store.shared_names().unwrap(), ["a", "b", "c"]);
    store.clear("b").await.unwrap();
    assert_eq!(*store.shared_names().unwrap(), ["a", "c"]);
    // Kept: the same list is handed out until the next write.
    let (first, second) = (store.shared_names().unwrap(), store.shared_names().unwrap());
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(store.read_names().unwrap(), *first);
}

#[tokio::test]
async fn stopping_a_model_without_history_lists_it() {
    let (_dir, store) = open_temp();
    store.set_stopped("quiet", true).await.unwrap();
    assert_eq!(store.names().unwrap(), ["quiet"]);
    assert!(store.latest("quiet").unwrap().is_none());
}

#[tokio::test]
async fn find_looks_a_deployment_up_by_id() {
    let (_dir, store) = open_temp();
    let old = entry("m", "b1");
    store.append(old.clone()).await.unwrap();
    store.append(entry("m", "b2")).await.unwrap();
    assert_eq!(
        store.find("m", &old.record.deployment_id).unwrap(),
        Some(old.clone())
    );
    assert_eq!(store.find("m", "0".repeat(32).as_str()).unwrap(), None);
    assert_eq!(
        store.find("other", &old.record.deployment_id).unwrap(),
        None
    );
}

#[tokio::test]
async fn a_corrupt_record_is_an_error_naming_it_and_hides_nothing_else() {
    let (dir, store) = open_temp();
    let good = entry("m", "b1");
    store.append(good.clone()).await.unwrap();
    store
        .handles()
        .unwrap()
        .history
        .insert(history_key("m", 1), &b"{not json"[..])
        .unwrap();
    store.append(entry("m", "b3")).await.unwrap();

    let history = store.history("m", 10);
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].as_ref().unwrap().record.spec.build_id, "b3");
    let error = history[1].as_ref().unwrap_err().to_string();
    assert!(
        error.starts_with("undecodable value for model m under key history/m/1: "),
        "{error}"
    );
    assert_eq!(history[2].as_ref().unwrap(), &good);
    assert_eq!(
        store.find("m", &good.record.deployment_id).unwrap(),
        Some(good)
    );
    assert!(
        store.find("m", "missing").is_err(),
        "the missing one may be the corrupt one"
    );

    store
        .handles()
        .unwrap()
        .history
        .insert(history_key("m", 3), &b"[]"[..])
        .unwrap();
    // Reopened, so that the newest entry is read from the database again.
    drop(store);
    let store = reopen(dir.path()).await;
    assert!(matches!(store.latest("m"), Err(StoreError::Corrupt { .. })));
}

#[tokio::test]
async fn corrupt_metadata_is_an_error_and_the_next_write_repairs_it() {
    let (_dir, store) = open_temp();
    store
        .handles()
        .unwrap()
        .models
        .insert("m", &b"\xff"[..])
        .unwrap();
    let error = store.is_stopped("m").unwrap_err().to_string();
    assert!(error.contains("model m under key models/m"), "{error}");
    store.append(entry("m", "b1")).await.unwrap();
    assert!(!store.is_stopped("m").unwrap());
}

#[tokio::test]
async fn names_with_a_nul_are_refused() {
    let (_dir, store) = open_temp();
    let bad = entry("a\0b", "b1");
    assert!(matches!(
        store.append(bad).await,
        Err(StoreError::InvalidName { .. })
    ));
    assert!(store.history("a\0b", 1).is_empty());
}

#[tokio::test]
async fn a_non_finite_time_is_refused_rather_than_stored_unreadable() {
    let (_dir, store) = open_temp();
    let mut bad = entry("m", "b1");
    bad.record.deployment_time = f64::NAN;
    let error = store.append(bad).await.unwrap_err().to_string();
    assert!(error.contains("deployment_time NaN"), "{error}");
    assert!(store.names().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_readers_neither_lose_entries_nor_deadlock() {
    let (_dir, store) = open_temp();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let name = format!("m{}", i % 4);
        tasks.push(tokio::spawn(async move {
            store.append(entry(&name, &format!("b{i}"))).await.unwrap();
            if i % 8 == 0 {
                store.set_stopped(&name, true).await.unwrap();
            }
            assert!(!store.history(&name, 100).is_empty());
            store.flush().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut builds: Vec<String> = (0..4)
        .flat_map(|m| build_ids(&store, &format!("m{m}"), 100))
        .collect();
    assert_eq!(builds.len(), 40);
    builds.sort();
    builds.dedup();
    assert_eq!(builds.len(), 40);
}

#[test]
fn opening_a_store_that_is_already_open_fails_naming_the_directory() {
    let (dir, _store) = open_temp();
    let error = Store::open(dir.path()).unwrap_err();
    assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("locked by another process"), "{message}");
}

#[test]
fn a_directory_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let error = Store::open(&file.join("store")).unwrap_err().to_string();
    assert!(
        error.starts_with("failed to create the store directory "),
        "{error}"
    );
    assert!(error.contains("plain-file"), "{error}");
}

proptest::proptest! {
    #[test]
    fn any_finite_deployment_time_round_trips_bit_for_bit(time in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL) {
        let mut original = entry("m", "b");
        original.record.deployment_time = time;
        let bytes = serde_json::to_vec(&original).unwrap();
        let back = decode_entry("m", &history_key("m", 0), &bytes).unwrap();
        proptest::prop_assert_eq!(back.record.deployment_time.to_bits(), time.to_bits());
    }
}

/// Overwrites every file of the store in `dir` with garbage, as a damaged disk might.
fn damage(dir: &Path) {
    for entry in walk(dir) {
        std::fs::write(&entry, b"\x00garbage\xffnot a sled file\x00".repeat(64)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_damaged_store_does_not_open_and_recovering_moves_it_aside_and_starts_empty() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    {
        let store = Store::open(&dir).unwrap();
        store.append(Arc::new(entry("m", "b1"))).await.unwrap();
        store.flush().await.unwrap();
    }
    damage(&dir);
    let Err(error) = Store::open(&dir) else {
        panic!("a damaged store does not open");
    };
    assert!(matches!(error, StoreError::Open { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&dir.display().to_string()),
        "{error}"
    );

    let (store, moved) = Store::open_or_recover(&dir, true).unwrap();
    let moved = moved.expect("the damaged store was moved aside");
    assert!(moved.starts_with(parent.path()), "{}", moved.display());
    assert!(
        moved
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("data.damaged-"),
        "{}",
        moved.display()
    );
    assert!(!walk(&moved).is_empty(), "the damaged files are kept");
    assert!(store.names().unwrap().is_empty(), "a fresh store");
    drop(store);
    // A healthy store is opened as it is, recovering or not.
    let (again, moved) = when_unlocked(&dir, || Store::open_or_recover(&dir, true)).await;
    assert!(moved.is_none());
    drop(again);
}

#[tokio::test]
async fn a_store_cut_to_a_short_line_of_garbage_is_refused_not_opened_empty() {
    // sled alone opens these as an empty store, forgetting every model.
    for (conf, db) in [
        (Some(&b"garbage\n"[..]), &b"more garbage\n"[..]),
        (Some(&b"not sled's conf, but long enough\n"[..]), &b"x"[..]),
        (None, &b"a data file without its conf\n"[..]),
    ] {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        {
            let store = Store::open(&dir).unwrap();
            store.append(Arc::new(entry("m", "b1"))).await.unwrap();
        }
        let _ = std::fs::remove_file(dir.join("conf"));
        if let Some(conf) = conf {
            std::fs::write(dir.join("conf"), conf).unwrap();
        }
        std::fs::write(dir.join("db"), db).unwrap();
        let Err(error) = Store::open(&dir) else {
            panic!("{conf:?}/{db:?} opened as a store");
        };
        let shown = format!("{error} ({})", std::error::Error::source(&error).unwrap());
        assert!(matches!(error, StoreError::Open { .. }), "{shown}");
        assert!(shown.contains("configuration file"), "{shown}");
    }
}
