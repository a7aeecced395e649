//! A store damaged on disk, with the real swarm: `mlmodel serve` refuses to start and
//! says the way out; with `--recover-store` it moves the damaged store aside (kept),
//! starts with an empty one and takes the running model over without restarting it.

mod common;

use common::server::Server;
use common::{running_task_ids, unique_name};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn manifest(name: &str) -> String {
    let domain = name.replace('_', "-");
    format!(
        "name: {name}\ndomain: {domain}.example.com\nimage: mlmodel-test/static-http:1\nbuild_id: b1\nrun_id: r1\nscale: 1\nmem_reservation: 16M\nmem_limit: 64M\n"
    )
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the directory reads") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_damaged_store_stops_the_start_and_recovering_takes_the_running_model_over() {
    if tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(common::swarm())
        .is_none()
    {
        return;
    }
    let mut server = Server::start(&unique_name("rec"));
    let model = "rec_model";
    let service = server.service_name(model);
    server.write_manifest("model.yml", &manifest(model));
    server.wait_for("the model to run", Duration::from_secs(90), || {
        server.phase(model).as_deref() == Some("Available")
    });
    let tasks = running_task_ids(&service);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(server.stop(), Some(0));

    let data = server.data.path().to_path_buf();
    let damaged = files(&data);
    assert!(!damaged.is_empty(), "the store has files");
    for file in &damaged {
        std::fs::write(file, b"\x00not a store\xff".repeat(128)).expect("overwrite");
    }

    let refused = server.command().output().expect("mlmodel serve runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains(&data.display().to_string()), "{stderr}");
    assert!(stderr.contains("--recover-store"), "{stderr}");
    assert_eq!(
        running_task_ids(&service),
        tasks,
        "a refused start touches nothing"
    );

    server.add_args(&["--recover-store"]);
    server.spawn();
    server.wait_for(
        "the model to be taken over and Available",
        Duration::from_secs(90),
        || server.phase(model).as_deref() == Some("Available"),
    );
    assert_eq!(running_task_ids(&service), tasks, "nothing was restarted");
    assert!(server.history_len(model) >= 1);
    let parent = data.parent().expect("a parent directory");
    let prefix = format!(
        "{}.damaged-",
        data.file_name().expect("a name").to_string_lossy()
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(parent)
        .expect("the parent reads")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    assert_eq!(aside.len(), 1, "the damaged store is kept: {aside:?}");
    assert_eq!(files(&aside[0]).len(), damaged.len(), "with every file");
    assert!(server.log_text().contains("moved it aside"));
    let _ = std::fs::remove_dir_all(&aside[0]);
}
