use super::*;
use crate::reconcile::observe::Observed;
use crate::swarm::{ObservedNode, ObservedTask, TaskState};
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, NetworkAttachmentConfig, ServiceSpec, TaskSpec,
};
use std::sync::Arc;

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

#[test]
fn cidrs_read_print_count_and_overlap() {
    assert_eq!(cidr("10.0.1.7/24").to_string(), "10.0.1.0/24");
    assert_eq!(cidr("10.0.1.0/24").usable(), 253);
    assert_eq!(cidr("10.1.0.0/16").usable(), 65_533);
    assert_eq!(cidr("10.0.0.1/32").usable(), 0);
    assert!(cidr("10.0.0.0/8").overlaps(&cidr("10.20.0.0/16")));
    assert!(cidr("10.20.0.0/16").overlaps(&cidr("10.20.3.4/32")));
    assert!(!cidr("10.20.0.0/16").overlaps(&cidr("10.21.0.0/24")));
    for bad in ["10.0.0.0", "10.0.0.0/33", "fd00::/64", "ten/8", ""] {
        let error = bad.parse::<Cidr>().unwrap_err();
        assert!(error.to_string().contains("CIDR"), "{error}");
    }
    assert_eq!("auto".parse::<SubnetChoice>().unwrap(), SubnetChoice::Auto);
    assert_eq!(
        "10.9.0.0/16".parse::<SubnetChoice>().unwrap(),
        SubnetChoice::Fixed(cidr("10.9.0.0/16"))
    );
}

#[test]
fn the_picked_subnet_is_the_first_free_16_after_the_pools_first() {
    let pools = vec!["10.0.0.0/8".to_string()];
    // Swarm's own /24s (ingress, stacks) sit in 10.0.0.0/16; it is skipped anyway.
    let taken = vec!["10.0.0.0/24".to_string(), "10.0.5.0/24".to_string()];
    assert_eq!(pick_subnet(&pools, &taken), Some(cidr("10.1.0.0/16")));
    // A network or a node address inside a candidate rules it out.
    let taken = vec!["10.1.200.0/24".to_string(), "10.2.0.9/32".to_string()];
    assert_eq!(pick_subnet(&pools, &taken), Some(cidr("10.3.0.0/16")));
    // No pools reported: Docker's default, 10.0.0.0/8.
    assert_eq!(pick_subnet(&[], &[]), Some(cidr("10.1.0.0/16")));
    // A pool smaller than a /16 is taken whole.
    let small = vec!["192.168.64.0/20".to_string()];
    assert_eq!(pick_subnet(&small, &[]), Some(cidr("192.168.64.0/20")));
    assert_eq!(pick_subnet(&small, &["192.168.70.0/24".to_string()]), None);
    // Unreadable entries (IPv6) are skipped, not fatal.
    assert_eq!(
        pick_subnet(&pools, &["fd00::/64".to_string()]),
        Some(cidr("10.1.0.0/16"))
    );
}

fn service(id: &str, network: &str, desired: u64, dnsrr: bool) -> Arc<ObservedService> {
    Arc::new(ObservedService {
        id: id.into(),
        version: 1,
        spec: ServiceSpec {
            name: Some(id.into()),
            task_template: Some(TaskSpec {
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(network.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            endpoint_spec: dnsrr.then(|| EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ..Default::default()
            }),
            ..Default::default()
        },
        running_tasks: 0,
        desired_tasks: desired,
        update_state: None,
        update_message: None,
        updated_at: None,
    })
}

fn task(service: &str, slot: i64, state: TaskState, node: &str) -> ObservedTask {
    ObservedTask {
        id: format!("{service}.{slot}"),
        service_id: service.into(),
        slot: Some(slot),
        node_id: Some(node.into()),
        image: String::new(),
        desired_state: TaskState::Running,
        state,
        state_since: None,
        message: String::new(),
        error: String::new(),
        up_to_date: true,
    }
}

fn ready(id: &str) -> ObservedNode {
    ObservedNode {
        id: id.into(),
        hostname: id.into(),
        state: "ready".into(),
        availability: "active".into(),
        ..ObservedNode::default()
    }
}

#[test]
fn usage_counts_tasks_vips_and_nodes_of_the_services_on_the_network() {
    let mut observed = Observed::default();
    for s in [
        service("a", "net1", 2, false),
        service("b", "net1", 1, true),
        service("other", "net2", 5, false),
    ] {
        observed.put_service(s);
    }
    observed.tasks.insert(
        "a".into(),
        Arc::from(vec![
            task("a", 1, TaskState::Running, "n1"),
            task("a", 2, TaskState::New, ""),
        ]),
    );
    observed.tasks.insert(
        "b".into(),
        Arc::from(vec![task("b", 1, TaskState::Running, "n2")]),
    );
    observed.tasks.insert(
        "other".into(),
        Arc::from(vec![task("other", 1, TaskState::Running, "n1")]),
    );
    for n in ["n1", "n2", "n3"] {
        observed.nodes.insert(n.into(), ready(n));
    }
    let report = NetworkReport::of("shared", "net1", vec!["10.0.1.0/29".into()], &observed);
    assert_eq!(report.capacity, Some(5));
    // a: one task addressed (the other is New) and its VIP; b: dnsrr, one task.
    assert_eq!(
        report.used,
        Usage {
            tasks: 2,
            vips: 1,
            nodes: 2
        }
    );
    // Once every replica runs: 3 tasks, a's VIP, and up to 3 ready nodes.
    assert_eq!(
        report.needed,
        Usage {
            tasks: 3,
            vips: 1,
            nodes: 3
        }
    );
    assert!(report.is_short() && report.is_full());
    let shortage = report.shortage().unwrap();
    assert!(
        shortage.starts_with("network shared (10.0.1.0/29, 5 addresses) is too small: the services on it need 7 addresses"),
        "{shortage}"
    );
    assert!(shortage.contains("--network-subnet"), "{shortage}");

    let roomy = NetworkReport::of("shared", "net1", vec!["10.1.0.0/16".into()], &observed);
    assert!(!roomy.is_short() && !roomy.is_full());
    assert_eq!(roomy.shortage(), None);
    assert_eq!(
        roomy.detail(),
        "network shared (10.1.0.0/16, 65533 addresses): 5 in use, 7 needed once every replica runs"
    );
    let unknown = NetworkReport::of("shared", "net1", vec![], &observed);
    assert!(!unknown.is_short());
}
