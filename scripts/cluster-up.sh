#!/usr/bin/env bash
# Brings up a multi-node Docker swarm on this one machine, for mlmodel's
# real-cluster tests: every node is a real dockerd in its own network namespace
# (see scripts/cluster-lib.sh for the layout), joined into one swarm.
# Idempotent: a node that answers is left running, a node in the swarm is not
# joined again, an image a node has is not loaded again.
#
#   scripts/cluster-up.sh [--managers N] [--workers M]
#
# Defaults: one manager and two workers (MLMODEL_CLUSTER_MANAGERS,
# MLMODEL_CLUSTER_WORKERS). Nodes are mlmodel-node-1 .. mlmodel-node-(N+M), the
# first N of them managers. A node of an earlier run beyond N+M is removed, and
# a node whose role changed is promoted or demoted.
#
# Every node gets the host's test images (mlmodel-test/*), built first with
# scripts/build-test-image.sh if the host has none, and mlmodel's own image
# (mlmodel/mlmodel) if scripts/build-mlmodel-image.sh built it: the host's
# dockerd must answer (scripts/swarm-up.sh starts it).
#
# The swarm's dispatcher heartbeat is 2 s (Docker's default is 5 s), so that a
# stopped node is marked down in seconds.
#
# The last line of output is the DOCKER_HOST value of the first manager.
# scripts/cluster-node.sh stops and starts one node; scripts/cluster-down.sh
# removes everything.
set -euo pipefail
script_name=cluster-up
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/cluster-lib.sh
source "$repo_root/scripts/cluster-lib.sh"

managers="${MLMODEL_CLUSTER_MANAGERS:-1}"
workers="${MLMODEL_CLUSTER_WORKERS:-2}"
while (($# > 0)); do
	case "$1" in
	--managers)
		(($# >= 2)) || die "--managers needs a number"
		managers="$2"
		shift
		;;
	--workers)
		(($# >= 2)) || die "--workers needs a number"
		workers="$2"
		shift
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
	shift
done
[[ $managers =~ ^[1-9][0-9]*$ ]] || die "--managers must be a number of at least 1, not '$managers'"
[[ $workers =~ ^[0-9]+$ ]] || die "--workers must be a number, not '$workers'"
total=$((managers + workers))
first="${cluster_prefix}1"

command -v docker >/dev/null 2>&1 || die "the docker client is not installed (run scripts/swarm-up.sh first)"
docker info >/dev/null 2>&1 || die "the host's dockerd does not answer (run scripts/swarm-up.sh first)"

# --- nodes beyond the wanted count, from an earlier run ------------------------
for node in $(known_nodes); do
	if (($(node_index "$node") > total)); then
		log "$node: not wanted any more; removing it"
		if node_answers "$node"; then
			node_docker "$node" swarm leave --force >/dev/null 2>&1 || true
		fi
		stop_node "$node"
		node_answers "$first" && node_docker "$first" node rm --force "$node" >/dev/null 2>&1 || true
		ip netns del "$node" 2>/dev/null || true
		rm -rf "${cluster_data:?}/$node" "${cluster_run:?}/$node"
	fi
done

# --- daemons ---------------------------------------------------------------------
for i in $(seq "$total"); do
	start_node "$cluster_prefix$i"
done
# A node left running by an earlier run may hold a stale vxlan device too; nothing
# joins a network while the cluster comes up.
for i in $(seq "$total"); do
	ip netns list 2>/dev/null | grep -q "^$cluster_prefix$i\b" && clear_stale_vxlan "$cluster_prefix$i"
done

swarm_state() { node_docker "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true; }
cluster_id() { node_docker "$1" info --format '{{.Swarm.Cluster.ID}}' 2>/dev/null || true; }
wait_state() {
	local node="$1" state
	for _ in $(seq 30); do
		state="$(swarm_state "$node")"
		[[ $state == pending ]] || break
		sleep 1
	done
	printf '%s\n' "$state"
}

# --- the first manager -------------------------------------------------------------
case "$(wait_state "$first")" in
active) log "$first: swarm active" ;;
inactive)
	log "$first: initialising the swarm"
	node_docker "$first" swarm init --advertise-addr "$(node_address "$first")" \
		--dispatcher-heartbeat 2s >/dev/null
	;;
*) die "$first: swarm state '$(swarm_state "$first")' (scripts/cluster-down.sh starts over)" ;;
esac
[[ "$(node_docker "$first" info --format '{{.Swarm.ControlAvailable}}')" == true ]] ||
	die "$first is not a manager (scripts/cluster-down.sh starts over)"
swarm="$(cluster_id "$first")"
manager_token="$(node_docker "$first" swarm join-token -q manager)"
worker_token="$(node_docker "$first" swarm join-token -q worker)"

# --- the other nodes join -----------------------------------------------------------
for i in $(seq 2 "$total"); do
	node="$cluster_prefix$i"
	role=worker
	token="$worker_token"
	if ((i <= managers)); then
		role=manager
		token="$manager_token"
	fi
	state="$(wait_state "$node")"
	if [[ $state == active ]]; then
		ours="$(cluster_id "$node")"
		# A worker does not know the cluster id; ask the manager whether it knows the node.
		if [[ -n $ours && $ours != "$swarm" ]] ||
			! node_docker "$first" node inspect "$node" >/dev/null 2>&1; then
			log "$node: in another swarm; leaving it"
			node_docker "$node" swarm leave --force >/dev/null
			state=inactive
		fi
	fi
	if [[ $state != active ]]; then
		[[ $state == inactive ]] || node_docker "$node" swarm leave --force >/dev/null 2>&1 || true
		log "$node: joining as a $role"
		# A node that left may still be listed, down, under its old id.
		for stale in $(node_docker "$first" node ls --filter "name=$node" --format '{{.ID}} {{.Hostname}} {{.Status}}' |
			awk -v n="$node" '$2 == n && $3 == "Down" {print $1}'); do
			node_docker "$first" node rm --force "$stale" >/dev/null 2>&1 || true
		done
		node_docker "$node" swarm join --token "$token" --advertise-addr "$(node_address "$node")" \
			"$(node_address "$first"):2377" >/dev/null
	fi
done

# --- roles -------------------------------------------------------------------------
for i in $(seq 2 "$total"); do
	node="$cluster_prefix$i"
	id="$(node_docker "$node" info --format '{{.Swarm.NodeID}}')"
	current="$(node_docker "$first" node inspect --format '{{.Spec.Role}}' "$id")"
	wanted=worker
	((i <= managers)) && wanted=manager
	if [[ $current != "$wanted" ]]; then
		log "$node: $current -> $wanted"
		if [[ $wanted == manager ]]; then
			node_docker "$first" node promote "$id" >/dev/null
		else
			node_docker "$first" node demote "$id" >/dev/null
		fi
	fi
	availability="$(node_docker "$first" node inspect --format '{{.Spec.Availability}}' "$id")"
	[[ $availability == active ]] || node_docker "$first" node update --availability active "$id" >/dev/null
done

# --- every node Ready ----------------------------------------------------------------
waited=0
while true; do
	ready="$(node_docker "$first" node ls --format '{{.Hostname}} {{.Status}}' |
		awk -v p="$cluster_prefix" 'index($1, p) == 1 && $2 == "Ready"' | wc -l)"
	((ready >= total)) && break
	((waited < 60)) || die "only $ready of $total nodes are Ready after 60 s: $(node_docker "$first" node ls)"
	sleep 1
	waited=$((waited + 1))
done
log "$total nodes Ready ($managers manager(s), $workers worker(s))"

# --- test images ---------------------------------------------------------------------
images=()
list_images() {
	docker images --format '{{.Repository}}:{{.Tag}}' 'mlmodel-test/*'
	# mlmodel's own image, when scripts/build-mlmodel-image.sh has built it.
	docker images --format '{{.Repository}}:{{.Tag}}' 'mlmodel/mlmodel'
}
while read -r image; do images+=("$image"); done < <(list_images)
if ! docker image inspect mlmodel-test/static-http:1 >/dev/null 2>&1; then
	bash "$repo_root/scripts/build-test-image.sh" || die "building the test image failed"
	images=()
	while read -r image; do images+=("$image"); done < <(list_images)
fi
archive="$cluster_run/images.tar"
for i in $(seq "$total"); do
	node="$cluster_prefix$i"
	missing=0
	for image in "${images[@]}"; do
		[[ "$(node_docker "$node" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)" == \
			"$(docker image inspect --format '{{.Id}}' "$image")" ]] || missing=1
	done
	if ((missing)); then
		[[ -f $archive ]] || docker save -o "$archive" "${images[@]}"
		log "$node: loading the test images"
		node_docker "$node" load -q -i "$archive" >/dev/null
	fi
done
rm -f "$archive"

log "ready: $total nodes; DOCKER_HOST of the first manager follows"
node_host "$first"
