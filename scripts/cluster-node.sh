#!/usr/bin/env bash
# Stops or starts one node of the test cluster (scripts/cluster-up.sh).
#
#   scripts/cluster-node.sh stop NODE    SIGTERM its dockerd (its containers stop
#                                        with it), then kill what is left in its
#                                        network namespace
#   scripts/cluster-node.sh start NODE   start its dockerd again; it rejoins the
#                                        swarm on its own
#
# NODE is the host name `docker node ls` shows (mlmodel-node-N). Both are
# idempotent: stopping a stopped node or starting a running one does nothing.
set -euo pipefail
script_name=cluster-node
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/cluster-lib.sh
source "$repo_root/scripts/cluster-lib.sh"

(($# == 2)) || die "usage: $0 stop|start NODE"
action="$1"
node="$2"
node_index "$node" >/dev/null
[[ -d $cluster_data/$node ]] || die "$node is not a node of the test cluster (scripts/cluster-up.sh makes them)"
case "$action" in
stop) stop_node "$node" ;;
start) start_node "$node" ;;
*) die "unknown action '$action' (stop or start)" ;;
esac
