//! The store's disk fills up under a running `mlmodel serve`, on a small tmpfs: writes
//! answer 507 saying the disk is full and where, `/healthz` says so, the models keep
//! running as last declared, and once space is freed writes work again without a
//! restart. After a restart every acknowledged write is there.

mod common;

use common::server::Server;
use common::{skip_or_fail, unique_name};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted over a directory, unmounted (lazily: the store may still hold files
/// open) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn body(run_id: &str, scale: u64) -> String {
    format!(
        r#"{{"domain": "full.example.com", "build_id": "b1", "run_id": "{run_id}", "image": "mlmodel-test/static-http:1", "port": 80, "scale": {scale}, "mem_reservation": "8M", "mem_limit": "64M"}}"#
    )
}

#[test]
fn a_full_disk_answers_507_keeps_models_running_and_writes_work_again_once_space_is_freed() {
    if tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(common::swarm())
        .is_none()
    {
        return;
    }
    let mut server = Server::start(&unique_name("full"));
    server.stop();
    let data = server.data.path().to_path_buf();
    let Some(_tmpfs) = Tmpfs::mount(&data, "3m") else {
        skip_or_fail("cannot mount a tmpfs (needs root)");
        return;
    };
    server.spawn();

    // A model that runs before the disk fills.
    let (code, _) = server.request("POST", "/keep", Some(&body("keep-1", 1)));
    assert_eq!(code, 200);
    server.wait_for("keep Available", Duration::from_secs(90), || {
        server.phase("keep").as_deref() == Some("Available")
    });

    // Something else fills the disk, then the store's writes run out of room.
    let filler = data.join("filler");
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=1k", "count=2000"])
        .arg(format!("of={}", filler.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let mut acknowledged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refusal = None;
    for i in 0..2000 {
        let model = format!("m{}", i % 5);
        let run_id = format!("r{i}");
        let (code, answer) = server.request("POST", &format!("/{model}"), Some(&body(&run_id, 0)));
        match code {
            200 => acknowledged.entry(model).or_default().push(run_id),
            _ => {
                refusal = Some((code, answer));
                break;
            }
        }
    }
    let (code, answer) = refusal.expect("the disk fills up");
    assert_eq!(code, 507, "{answer}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "the disk holding the store {} is full",
            data.display()
        )),
        "{detail}"
    );
    assert!(detail.contains("no restart needed"), "{detail}");
    let (code, health) = server.get("/healthz");
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["checks"]["store"]["ok"], false, "{health}");
    assert!(
        health["checks"]["store"]["detail"]
            .as_str()
            .unwrap()
            .contains("is full"),
        "{health}"
    );
    // The model declared before runs on, and its status is served. Its history is not
    // readable while the store cannot open on the full disk: 503, saying so.
    assert_eq!(server.phase("keep").as_deref(), Some("Available"));
    let (code, answer) = server.get("/keep");
    assert_eq!(code, 503, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be read now because its disk is full"),
        "{answer}"
    );
    let (code, listing) = server.get("/");
    assert_eq!(code, 200, "{listing}");
    let (code, _) = server.request("POST", "/later", Some(&body("later-1", 0)));
    assert_eq!(code, 507, "still full");

    // Space comes back: the next write works, in the same process.
    std::fs::remove_file(&filler).unwrap();
    let (code, answer) = server.request("POST", "/later", Some(&body("later-1", 0)));
    assert_eq!(code, 200, "{answer}");
    acknowledged
        .entry("later".to_string())
        .or_default()
        .push("later-1".to_string());
    let (code, health) = server.get("/healthz");
    assert_eq!(health["checks"]["store"]["ok"], true, "{health}");
    assert_eq!(code, 200, "{health}");
    let (code, _) = server.get("/keep");
    assert_eq!(code, 200, "history readable again");
    // Every model is still converged: a resync found nothing to change.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(server.phase("keep").as_deref(), Some("Available"));
    assert!(server.log_text().contains("the store is open again"));

    // A restart finds every acknowledged write.
    server.stop();
    server.spawn();
    for (model, run_ids) in &acknowledged {
        let (code, records) = server.get(&format!("/{model}?n=10000"));
        assert_eq!(code, 200, "{model}: {records}");
        let stored: Vec<&str> = records
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .filter_map(|r: &Value| r["run_id"].as_str())
            .collect();
        let expected: Vec<&str> = run_ids.iter().map(String::as_str).collect();
        let acked: Vec<&str> = stored
            .iter()
            .copied()
            .filter(|r| expected.contains(r))
            .collect();
        assert_eq!(
            acked, expected,
            "every acknowledged write of {model}, in order"
        );
        // The refused write may or may not have reached the disk before the error; an
        // unacknowledged write is all that can be there besides.
        assert!(stored.len() <= expected.len() + 1, "{model}: {stored:?}");
    }
    assert!(
        acknowledged.values().map(Vec::len).sum::<usize>() > 50,
        "the disk held a good number of writes before it filled"
    );
}
