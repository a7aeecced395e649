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
    assert!(Arc::ptr_eq(&first.services, &second.services));
    assert_eq!(second.services.len(), 2);

    // One service changed: a new map, with the other service's entry kept.
    let version = fake.service(&a).unwrap().version;
    fake.update_service(&a, version, &spec("a_web", 2))
        .await
        .unwrap();
    relist(&fake, &cache).await.unwrap();
    let third = cache.get();
    assert!(!Arc::ptr_eq(&second.services, &third.services));
    assert_eq!(
        third.services[&a].version,
        fake.service(&a).unwrap().version
    );
    let b = third
        .services
        .values()
        .find(|s| s.name() == "b_web")
        .unwrap();
    assert!(Arc::ptr_eq(b, &second.services[&b.id]));

    // One service gone: a new map without it.
    fake.remove_service(&a).await.unwrap();
    relist(&fake, &cache).await.unwrap();
    let fourth = cache.get();
    assert_eq!(fourth.services.len(), 1);
    assert!(!fourth.services.contains_key(&a));
}

fn ids(services: &[&ObservedService]) -> Vec<String> {
    let mut ids: Vec<String> = services.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids
}

/// Every lookup answered from the index and by scanning.
type Lookups = (
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    BTreeSet<String>,
);

fn lookups(o: &Observed) -> Lookups {
    let names = ["mlmodel_a_web", "mlmodel_b_web", "other"];
    (
        o.owned_by("mlmodel", "a")
            .iter()
            .map(|s| s.id.clone())
            .collect(),
        ids(&o.owned_by("mlmodel", "b")),
        ids(&o.foreign("mlmodel", "a", &names)),
        ids(&o.named_other_than(&o.owned_by("mlmodel", "a"), &names)),
        o.models("mlmodel").into_iter().map(String::from).collect(),
    )
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
            Arc::make_mut(&mut o.services).insert(s.id.clone(), Arc::new(s));
        }
    });
    let published = cache.get();
    assert!(published.index.0.is_some());
    let scanned = (*published).clone();
    assert!(scanned.index.0.is_none(), "a clone carries no index");
    assert_eq!(lookups(&published), lookups(&scanned));
    let (owned_a, owned_b, foreign, other_than_owned, models) = lookups(&published);
    assert_eq!(owned_a, ["2", "1"], "sorted by name");
    assert_eq!(owned_b, ["3"]);
    assert_eq!(foreign, ["3", "4", "5"]);
    assert_eq!(other_than_owned, foreign);
    assert_eq!(models, BTreeSet::from(["a".to_string(), "b".to_string()]));
}

#[test]
fn an_update_reindexes_the_snapshot_it_publishes() {
    let cache = ObservedCache::default();
    cache.update(|o| {
        let s = service("1", "mlmodel_a_web", Some(("mlmodel", "a")));
        Arc::make_mut(&mut o.services).insert(s.id.clone(), Arc::new(s));
    });
    assert_eq!(cache.get().owned_by("mlmodel", "a").len(), 1);
    cache.update(|o| {
        Arc::make_mut(&mut o.services).remove("1");
        let s = service("2", "mlmodel_b_web", Some(("mlmodel", "b")));
        Arc::make_mut(&mut o.services).insert(s.id.clone(), Arc::new(s));
    });
    let observed = cache.get();
    assert!(observed.owned_by("mlmodel", "a").is_empty());
    assert_eq!(ids(&observed.owned_by("mlmodel", "b")), ["2"]);
    assert_eq!(observed.models("mlmodel"), ["b"]);
}

#[test]
fn reconnect_delay_doubles_from_half_a_second_to_thirty() {
    let delays: Vec<u128> = (1..=9).map(|a| reconnect_delay(a).as_millis()).collect();
    assert_eq!(
        delays,
        [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    );
}
