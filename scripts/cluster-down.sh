#!/usr/bin/env bash
# Removes the test cluster of scripts/cluster-up.sh: every node's dockerd and
# what runs in its namespaces, the namespaces, veth pairs and bridge, and the
# nodes' data, run and log directories. Idempotent.
set -euo pipefail
script_name=cluster-down
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/cluster-lib.sh
source "$repo_root/scripts/cluster-lib.sh"

nodes="$(
	{
		known_nodes
		ip netns list 2>/dev/null | awk '{print $1}' | grep "^$cluster_prefix[0-9]*$" || true
	} | sort -u
)"
for node in $nodes; do
	stop_node "$node"
	ip link del "mlmcl$(node_index "$node")" 2>/dev/null || true
	ip netns del "$node" 2>/dev/null || true
done
ip link del "$cluster_bridge" 2>/dev/null || true
while iptables -D FORWARD -i "$cluster_bridge" -o "$cluster_bridge" -j ACCEPT 2>/dev/null; do :; done
rm -rf "${cluster_data:?}" "${cluster_run:?}" "${cluster_logs:?}"
log "removed the test cluster"
