use super::*;
use bollard::models::ServiceSpec;
use std::collections::BTreeSet;

fn service(id: &str, name: &str, owner: Option<(&str, &str)>) -> ObservedService {
    let labels = owner.map(|(instance, model)| {
        HashMap::from([
            (labels::MANAGED_BY.to_string(), instance.to_string()),
            (labels::NAME.to_string(), model.to_string()),
        ])
    });
    ObservedService {
        id: id.to_string(),
        version: 1,
        spec: ServiceSpec {
            name: Some(name.to_string()),
            labels,
            ..Default::default()
        },
        running_tasks: 0,
        desired_tasks: 0,
        update_state: None,
        update_message: None,
        updated_at: None,
    }
}

/// Whether every cached task of the service named `name` is up to date.
fn all_up_to_date(cache: &ObservedCache, name: &str) -> bool {
    let observed = cache.get();
    let service = observed.services.values().find(|s| s.name() == name);
    let tasks = observed.tasks.get(&service.unwrap().id).unwrap();
    assert!(!tasks.is_empty());
    tasks.iter().all(|t| t.up_to_date)
}

#[tokio::test]
async fn tasks_are_up_to_date_while_they_run_their_services_template() {
    use crate::swarm::fake::FakeSwarm;
    use bollard::models::{TaskSpec, TaskSpecContainerSpec};
    let fake = FakeSwarm::new();
    let cache = ObservedCache::default();
    let with_image = |image: &str| ServiceSpec {
        name: Some("m_web".into()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = fake.create_service(&with_image("img:1")).await.unwrap();
    relist(&fake, &cache).await.unwrap();
    assert!(all_up_to_date(&cache, "m_web"));

    // A new template that Swarm has not begun to roll out: the old tasks are behind,
    // from the moment the service is re-read and on every list after.
    fake.hold_rollout("m_web").unwrap();
    let update = |image: &'static str| {
        let (fake, id) = (&fake, id.clone());
        async move {
            let version = fake.service(&id).unwrap().version;
            fake.update_service(&id, version, &with_image(image))
                .await
                .unwrap();
        }
    };
    update("img:2").await;
    refresh_service(&fake, &cache, "mlmodel", &id)
        .await
        .unwrap();
    assert!(!all_up_to_date(&cache, "m_web"));
    relist(&fake, &cache).await.unwrap();
    assert!(!all_up_to_date(&cache, "m_web"));

    // Put back before the rollout began: the old tasks run the template again. The
    // re-read marks them behind without comparing; the next list compares again.
    update("img:1").await;
    refresh_service(&fake, &cache, "mlmodel", &id)
        .await
        .unwrap();
    assert!(!all_up_to_date(&cache, "m_web"));
    relist(&fake, &cache).await.unwrap();
    assert!(all_up_to_date(&cache, "m_web"));
    relist(&fake, &cache).await.unwrap();
    assert!(all_up_to_date(&cache, "m_web"));
}

#[tokio::test]
async fn a_relist_that_finds_every_service_as_it_was_keeps_the_map() {
    use crate::swarm::fake::FakeSwarm;
    let fake = FakeSwarm::new();
    let cache = ObservedCache::default();
    let spec = |name: &str, replicas: i64| ServiceSpec {
        name: Some(name.into()),
        mode: Some(bollard::models::ServiceSpecMode {
            replicated: Some(bollard::models::ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let a = fake.create_service(&spec("a_web", 1)).await.unwrap();
    fake.create_service(&spec("b_web", 1)).await.unwrap();
    relist(&fake, &cache).await.unwrap();
    let first = cache.get();
    relist(&fake, &cache).await.unwrap();
    let second = cache.get();
    assert!(first.services().ptr_eq(second.services()));
    assert_eq!(second.services().len(), 2);

    // One service changed: a new map, with the other service's entry kept.
    let version = fake.service(&a).unwrap().version;
    fake.update_service(&a, version, &spec("a_web", 2))
        .await
        .unwrap();
    relist(&fake, &cache).await.unwrap();
    let third = cache.get();
    assert!(!second.services().ptr_eq(third.services()));
    assert_eq!(
        third.services()[&a].version,
        fake.service(&a).unwrap().version
    );
    let b = third
        .services()
        .values()
        .find(|s| s.name() == "b_web")
        .unwrap();
    assert!(Arc::ptr_eq(b, &second.services()[&b.id]));

    // One service gone: a new map without it.
    fake.remove_service(&a).await.unwrap();
    relist(&fake, &cache).await.unwrap();
    let fourth = cache.get();
    assert_eq!(fourth.services().len(), 1);
    assert!(!fourth.services().contains_key(&a));
}

fn ids(services: &[&ObservedService]) -> Vec<String> {
    let mut ids: Vec<String> = services.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids
}

/// Every lookup a reconcile makes.
type Lookups = (Vec<String>, Vec<String>, Vec<String>, BTreeSet<String>);

const NAMES: [&str; 3] = ["mlmodel_a_web", "mlmodel_b_web", "other"];

/// The lookups, answered from the index.
fn lookups(o: &Observed) -> Lookups {
    (
        o.owned_by("mlmodel", "a")
            .iter()
            .map(|s| s.id.clone())
            .collect(),
        ids(&o.owned_by("mlmodel", "b")),
        ids(&o.named_other_than(&o.owned_by("mlmodel", "a"), &NAMES)),
        o.models("mlmodel").into_iter().map(String::from).collect(),
    )
}

/// The same lookups, answered by scanning every service.
fn scanned(o: &Observed) -> Lookups {
    let owner = |s: &ObservedService| {
        (
            s.label(labels::MANAGED_BY).map(String::from),
            s.label(labels::NAME).map(String::from),
        )
    };
    let mine = |model: &str| (Some("mlmodel".to_string()), Some(model.to_string()));
    let owned = |model: &str| {
        let mut owned: Vec<&ObservedService> = o
            .services()
            .values()
            .map(Arc::as_ref)
            .filter(|s| owner(s) == mine(model))
            .collect();
        owned.sort_by(|a, b| (a.name(), &a.id).cmp(&(b.name(), &b.id)));
        owned.iter().map(|s| s.id.clone()).collect::<Vec<_>>()
    };
    let foreign: Vec<&ObservedService> = o
        .services()
        .values()
        .map(Arc::as_ref)
        .filter(|s| NAMES.contains(&s.name()) && owner(s) != mine("a"))
        .collect();
    let models = o
        .services()
        .values()
        .filter_map(|s| match owner(s) {
            (Some(instance), Some(model)) if instance == "mlmodel" => Some(model),
            _ => None,
        })
        .collect();
    let mut owned_b = owned("b");
    owned_b.sort();
    (owned("a"), owned_b, ids(&foreign), models)
}

#[test]
fn a_published_snapshot_answers_lookups_as_a_scan_would() {
    let cache = ObservedCache::default();
    cache.update(|o| {
        for s in [
            service("1", "mlmodel_a_web", Some(("mlmodel", "a"))),
            service("2", "mlmodel_a_db", Some(("mlmodel", "a"))),
            service("3", "mlmodel_b_web", Some(("mlmodel", "b"))),
            service("4", "other", Some(("staging", "a"))),
            service("5", "mlmodel_a_web", None),
        ] {
            o.put_service(Arc::new(s));
        }
    });
    let published = cache.get();
    assert_eq!(lookups(&published), scanned(&published));
    let (owned_a, owned_b, foreign, models) = lookups(&published);
    assert_eq!(owned_a, ["2", "1"], "sorted by name");
    assert_eq!(owned_b, ["3"]);
    assert_eq!(foreign, ["3", "4", "5"]);
    assert_eq!(models, BTreeSet::from(["a".to_string(), "b".to_string()]));
}

#[test]
fn an_update_reindexes_the_snapshot_it_publishes() {
    let cache = ObservedCache::default();
    cache.update(|o| {
        o.put_service(Arc::new(service(
            "1",
            "mlmodel_a_web",
            Some(("mlmodel", "a")),
        )));
    });
    let before = cache.get();
    assert_eq!(before.owned_by("mlmodel", "a").len(), 1);
    cache.update(|o| {
        o.remove_service("1");
        o.put_service(Arc::new(service(
            "2",
            "mlmodel_b_web",
            Some(("mlmodel", "b")),
        )));
    });
    let observed = cache.get();
    assert!(observed.owned_by("mlmodel", "a").is_empty());
    assert_eq!(ids(&observed.owned_by("mlmodel", "b")), ["2"]);
    assert_eq!(observed.models("mlmodel"), ["b"]);
    assert_eq!(
        ids(&before.owned_by("mlmodel", "a")),
        ["1"],
        "an earlier snapshot is left as it was"
    );
    assert_eq!(lookups(&observed), scanned(&observed));
}

#[test]
fn a_service_replaced_under_its_id_leaves_its_old_name_and_owner() {
    let mut o = Observed::default();
    o.put_service(Arc::new(service(
        "1",
        "mlmodel_a_web",
        Some(("mlmodel", "a")),
    )));
    o.put_service(Arc::new(service(
        "2",
        "mlmodel_a_db",
        Some(("mlmodel", "a")),
    )));
    // The same id relabelled and renamed (an update of a foreign service's labels).
    o.put_service(Arc::new(service("1", "other", Some(("staging", "a")))));
    assert_eq!(lookups(&o), scanned(&o));
    assert_eq!(ids(&o.owned_by("mlmodel", "a")), ["2"]);
    assert_eq!(
        ids(&o.named_other_than(&o.owned_by("mlmodel", "a"), &["other"])),
        ["1"]
    );
    o.put_service(Arc::new(service("2", "mlmodel_a_db", None)));
    assert!(o.models("mlmodel").is_empty());
    assert_eq!(lookups(&o), scanned(&o));
}

#[test]
fn many_changes_keep_the_index_equal_to_a_scan() {
    let mut o = Observed::default();
    let owners = [
        Some(("mlmodel", "a")),
        Some(("mlmodel", "b")),
        Some(("staging", "a")),
        None,
    ];
    // A fixed walk of puts and removes over a few ids, names and owners.
    let mut state: u64 = 7;
    let mut removes = 0;
    for _ in 0..500 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let step = (state >> 33) as usize;
        let id = (step % 9).to_string();
        if step.is_multiple_of(5) {
            removes += 1;
            o.remove_service(&id);
        } else {
            let name = NAMES[(step / 7) % NAMES.len()];
            let owner = owners[(step / 11) % owners.len()];
            o.put_service(Arc::new(service(&id, name, owner)));
        }
        assert_eq!(lookups(&o), scanned(&o));
    }
    assert!((50..150).contains(&removes), "{removes} removes");
}

#[test]
fn reconnect_delay_doubles_from_half_a_second_to_thirty() {
    let delays: Vec<u128> = (1..=9).map(|a| reconnect_delay(a).as_millis()).collect();
    assert_eq!(
        delays,
        [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    );
}
