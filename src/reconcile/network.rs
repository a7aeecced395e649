//! The shared network's addresses: which subnet to create it with, how many addresses it
//! has, and how many the swarm's services use and will need.
//!
//! Every task on an overlay network takes one of its addresses, every service in VIP mode
//! one more, and every node with a task on it one for its load balancer. Docker's default
//! pool hands out /24s (253 usable addresses), which about 120 one-replica models fill; a
//! network that is full leaves new tasks in state `New` for good, and Swarm says why only
//! in its log. So mlmodel creates the shared network as a /16 by default, counts, and says
//! so in the status when the addresses run out.
//!
//! Everything here is a pure function of listed values.

use crate::reconcile::observe::Observed;
use crate::swarm::{ListedNetwork, ObservedService};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// An IPv4 subnet in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

/// A subnet that does not read as IPv4 CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an IPv4 subnet in CIDR form (expected, for example, 10.20.0.0/16)")]
pub struct CidrError {
    /// What was given.
    pub text: String,
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || CidrError {
            text: text.to_string(),
        };
        let (address, prefix) = text.trim().split_once('/').ok_or_else(error)?;
        let address: std::net::Ipv4Addr = address.parse().map_err(|_| error())?;
        let prefix: u8 = prefix.parse().map_err(|_| error())?;
        if prefix > 32 {
            return Err(error());
        }
        Ok(Self::new(u32::from(address), prefix))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.base), self.prefix)
    }
}

impl Cidr {
    /// The subnet of `prefix` bits that holds `address`.
    fn new(address: u32, prefix: u8) -> Self {
        Self {
            base: address & Self::mask(prefix),
            prefix,
        }
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// Prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn last(&self) -> u32 {
        self.base | !Self::mask(self.prefix)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }

    /// Addresses tasks and VIPs can take: all but the network and broadcast addresses and
    /// the gateway Docker keeps.
    pub fn usable(&self) -> u64 {
        (1u64 << (32 - u32::from(self.prefix))).saturating_sub(3)
    }

    /// The subnets of `prefix` bits inside this one, in order (itself if it is smaller).
    fn split(&self, prefix: u8) -> impl Iterator<Item = Cidr> {
        let prefix = prefix.max(self.prefix);
        let step = 1u64 << (32 - u32::from(prefix));
        let count = 1u64 << (u32::from(prefix) - u32::from(self.prefix));
        let base = u64::from(self.base);
        (0..count).map(move |i| Cidr::new((base + i * step) as u32, prefix))
    }
}

/// The prefix mlmodel creates the shared network with: 65,533 addresses.
pub const SHARED_PREFIX: u8 = 16;

/// How the shared network's subnet is chosen when mlmodel creates it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SubnetChoice {
    /// The first /16 of the swarm's address pools that overlaps nothing in use (the
    /// swarm's networks and its nodes' addresses), skipping the pool's first /16, where
    /// Swarm's own /24s go.
    #[default]
    Auto,
    /// This subnet, as given.
    Fixed(Cidr),
}

impl FromStr for SubnetChoice {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().eq_ignore_ascii_case("auto") {
            Ok(Self::Auto)
        } else {
            text.parse().map(Self::Fixed)
        }
    }
}

/// The first /16 of `pools` that overlaps none of `taken`, skipping each pool's first
/// /16; `None` if every one overlaps. An unreadable pool or taken subnet is skipped
/// (IPv6 ones, for example).
pub fn pick_subnet(pools: &[String], taken: &[String]) -> Option<Cidr> {
    let taken: Vec<Cidr> = taken.iter().filter_map(|t| t.parse().ok()).collect();
    let pools: Vec<Cidr> = if pools.is_empty() {
        // Docker's default when the swarm was initialised without --default-addr-pool.
        vec![Cidr::new(10 << 24, 8)]
    } else {
        pools.iter().filter_map(|p| p.parse().ok()).collect()
    };
    pools.iter().find_map(|pool| {
        pool.split(SHARED_PREFIX)
            .skip(usize::from(pool.prefix() < SHARED_PREFIX))
            .find(|candidate| !taken.iter().any(|t| t.overlaps(candidate)))
    })
}

/// What is in use in the swarm that a new subnet must not overlap: every network's
/// subnets and each node's address (as a /32).
pub fn taken_subnets(networks: &[ListedNetwork], node_addrs: &[String]) -> Vec<String> {
    networks
        .iter()
        .flat_map(|n| n.subnets.iter().cloned())
        .chain(
            node_addrs
                .iter()
                .filter(|a| !a.is_empty())
                .map(|a| format!("{a}/32")),
        )
        .collect()
}

/// The shared network, its addresses, and how many of them are used and needed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkReport {
    /// Network name.
    pub name: String,
    /// Its subnets (CIDR), as Docker reports them.
    pub subnets: Vec<String>,
    /// Usable addresses over its IPv4 subnets; `None` when Docker reports no IPv4 subnet
    /// (then nothing is counted against it).
    pub capacity: Option<u64>,
    /// What the swarm's services on it use now.
    pub used: Usage,
    /// What they use once every desired task runs.
    pub needed: Usage,
}

/// Addresses taken on one network, by what takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tasks.
    pub tasks: u64,
    /// Service virtual IPs.
    pub vips: u64,
    /// Nodes' load-balancer endpoints.
    pub nodes: u64,
}

impl Usage {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.tasks + self.vips + self.nodes
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} for tasks, {} for service VIPs, {} for nodes",
            self.tasks, self.vips, self.nodes
        )
    }
}

/// Usable addresses over the IPv4 subnets among `subnets`; `None` if there is none.
pub fn capacity(subnets: &[String]) -> Option<u64> {
    let cidrs: Vec<Cidr> = subnets.iter().filter_map(|s| s.parse().ok()).collect();
    (!cidrs.is_empty()).then(|| cidrs.iter().map(Cidr::usable).sum())
}

impl NetworkReport {
    /// The report for network `name` (id `id`, with `subnets`) over what is observed.
    pub fn of(name: &str, id: &str, subnets: Vec<String>, observed: &Observed) -> Self {
        let (used, needed) = usage(observed, id, name);
        Self {
            name: name.to_string(),
            capacity: capacity(&subnets),
            subnets,
            used,
            needed,
        }
    }

    /// Whether what is declared needs more addresses than the network has.
    pub fn is_short(&self) -> bool {
        self.capacity
            .is_some_and(|capacity| self.needed.total() > capacity)
    }

    /// Whether no address is left now.
    pub fn is_full(&self) -> bool {
        self.capacity
            .is_some_and(|capacity| self.used.total() >= capacity)
    }

    /// The network and its size in words: `network mlmodel (10.0.1.0/24, 253 addresses)`.
    pub fn named(&self) -> String {
        match self.capacity {
            Some(capacity) => format!(
                "network {} ({}, {capacity} addresses)",
                self.name,
                self.subnets.join(", ")
            ),
            None => format!("network {}", self.name),
        }
    }

    /// What `/healthz` and the start say when the network is too small, else `None`.
    pub fn shortage(&self) -> Option<String> {
        let capacity = self.capacity?;
        self.is_short().then(|| {
            format!(
                "{} is too small: the services on it need {} addresses once every replica runs ({}), {} more than it has; {}",
                self.named(),
                self.needed.total(),
                self.needed,
                self.needed.total() - capacity,
                REMEDY
            )
        })
    }

    /// The detail `/healthz` shows.
    pub fn detail(&self) -> String {
        self.shortage().unwrap_or_else(|| match self.capacity {
            Some(capacity) => format!(
                "{}: {} in use, {} needed once every replica runs",
                self.named(),
                self.used.total().min(capacity),
                self.needed.total()
            ),
            None => format!("{}: no IPv4 subnet reported", self.named()),
        })
    }
}

/// What to do about a network that is too small.
pub const REMEDY: &str = "remove the network once nothing uses it and let mlmodel create it again (a /16, or --network-subnet), or point --network at a larger one";

/// Addresses used now and needed once every desired task runs, over every service
/// attached to the network `id` (or named `name`).
fn usage(observed: &Observed, id: &str, name: &str) -> (Usage, Usage) {
    let mut used = Usage::default();
    let mut needed = Usage::default();
    let mut nodes: HashSet<&str> = HashSet::new();
    for service in observed.services().values() {
        if !attached(service, id, name) {
            continue;
        }
        let vip = u64::from(uses_vip(service));
        needed.vips += vip;
        needed.tasks += service.desired_tasks;
        let tasks = observed.tasks.get(&service.id);
        let addressed = tasks
            .iter()
            .flat_map(|tasks| tasks.iter())
            .filter(|t| t.state.has_address());
        let mut count = 0;
        for task in addressed {
            count += 1;
            if let Some(node) = &task.node_id {
                nodes.insert(node.as_str());
            }
        }
        used.tasks += count;
        // A service whose tasks have addresses has its VIP too.
        if count > 0 {
            used.vips += vip;
        }
    }
    used.nodes = nodes.len() as u64;
    needed.nodes = used
        .nodes
        .max(observed.nodes.values().filter(|n| n.takes_tasks()).count() as u64)
        .min(needed.tasks);
    (used, needed)
}

/// Whether the service's tasks join the network.
fn attached(service: &ObservedService, id: &str, name: &str) -> bool {
    let template = service.spec.task_template.as_ref();
    template
        .and_then(|t| t.networks.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|n| n.target.as_deref())
        .any(|target| target == id || target == name)
}

/// Whether the service has a virtual IP (Docker's default endpoint mode).
fn uses_vip(service: &ObservedService) -> bool {
    use bollard::models::EndpointSpecModeEnum;
    !matches!(
        service.spec.endpoint_spec.as_ref().and_then(|e| e.mode),
        Some(EndpointSpecModeEnum::DNSRR)
    )
}

#[cfg(test)]
mod tests;
