# Shared by cluster-up.sh, cluster-node.sh and cluster-down.sh: where the test
# cluster's nodes live and how one node's dockerd is started and stopped.
#
# Each node is a real dockerd in its own network namespace (a veth pair to the
# bridge mlmodel-cl0), its own UTS namespace (so `docker node ls` shows its own
# host name) and its own mount namespace (its container mounts stay its own),
# with its own data root, exec root, pidfile and socket:
#
#   node           mlmodel-node-N (host name, network namespace)
#   address        192.168.213.(10+N) on mlmodel-cl0 (192.168.213.1 is the host)
#   socket         unix:///run/mlmodel-cluster/mlmodel-node-N/docker.sock
#   data root      /var/lib/mlmodel-cluster/mlmodel-node-N
#   log            /var/log/mlmodel-cluster/mlmodel-node-N.log
#   node socket    /var/lib/mlmodel-node-socket/docker.sock, the same path on every
#                  node but each node's own (a tmpfs of its mount namespace): what a
#                  service that bind-mounts "the node's Docker socket" mounts here
#                  (mlmodel's own stack, with MLMODEL_DOCKER_SOCKET set to it)
#
# The nodes have no default route: a pull of an image no node has fails at
# once instead of waiting for a DNS server it cannot reach.
# shellcheck shell=bash

cluster_bridge="${MLMODEL_CLUSTER_BRIDGE:-mlmodel-cl0}"
cluster_net="${MLMODEL_CLUSTER_NET:-192.168.213}"
cluster_run="${MLMODEL_CLUSTER_RUN:-/run/mlmodel-cluster}"
cluster_data="${MLMODEL_CLUSTER_DATA:-/var/lib/mlmodel-cluster}"
cluster_logs="${MLMODEL_CLUSTER_LOGS:-/var/log/mlmodel-cluster}"
cluster_prefix="mlmodel-node-"
node_socket_dir="/var/lib/mlmodel-node-socket"

log() { printf '%s: %s\n' "${script_name:-cluster}" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

[[ $EUID -eq 0 ]] || die "the test cluster needs root (network namespaces, dockerd)"

# node_index NODE -> N
node_index() {
	local node="$1"
	[[ $node =~ ^${cluster_prefix}([0-9]+)$ ]] || die "'$node' is not a cluster node (expected ${cluster_prefix}N)"
	printf '%s\n' "${BASH_REMATCH[1]}"
}
node_address() { printf '%s.%s\n' "$cluster_net" "$((10 + $(node_index "$1")))"; }
node_socket() { printf '%s/%s/docker.sock\n' "$cluster_run" "$1"; }
node_host() { printf 'unix://%s\n' "$(node_socket "$1")"; }
node_pidfile() { printf '%s/%s/docker.pid\n' "$cluster_run" "$1"; }
node_docker() {
	local node="$1"
	shift
	docker -H "$(node_host "$node")" "$@"
}
node_answers() { node_docker "$1" info >/dev/null 2>&1; }

# The nodes that have a data root, sorted by number.
known_nodes() {
	local dir
	for dir in "$cluster_data"/"$cluster_prefix"*; do
		[[ -d $dir ]] && basename "$dir"
	done | sort -t- -k3 -n
}

find_dockerd() {
	local candidate
	for candidate in "$(command -v dockerd 2>/dev/null || true)" /usr/sbin/dockerd /usr/bin/dockerd; do
		if [[ -n $candidate && -x $candidate ]]; then
			printf '%s\n' "$candidate"
			return 0
		fi
	done
	return 1
}

# The bridge on the host that every node's veth joins.
ensure_bridge() {
	if ! ip link show "$cluster_bridge" >/dev/null 2>&1; then
		log "creating the bridge $cluster_bridge ($cluster_net.1/24)"
		ip link add "$cluster_bridge" type bridge
	fi
	# Read whole before matching: `grep -q` would close the pipe early, and under
	# pipefail the writer's SIGPIPE would read as "not there".
	local addrs
	addrs="$(ip addr show dev "$cluster_bridge")"
	[[ $addrs == *"inet $cluster_net.1/24"* ]] || ip addr add "$cluster_net.1/24" dev "$cluster_bridge"
	ip link set "$cluster_bridge" up
	# The host's FORWARD policy is DROP once Docker runs, and bridged frames pass
	# through iptables: let the nodes reach each other.
	iptables -C FORWARD -i "$cluster_bridge" -o "$cluster_bridge" -j ACCEPT 2>/dev/null ||
		iptables -I FORWARD 1 -i "$cluster_bridge" -o "$cluster_bridge" -j ACCEPT
}

# A node's network namespace and its veth pair, addressed.
ensure_netns() {
	local node="$1" index address host_if
	index="$(node_index "$node")"
	address="$(node_address "$node")"
	host_if="mlmcl$index"
	local namespaces addrs
	namespaces="$(ip netns list)"
	[[ $'\n'$namespaces == *$'\n'"$node"[[:space:]]* || $'\n'$namespaces == *$'\n'"$node" ]] ||
		ip netns add "$node"
	if ! ip link show "$host_if" >/dev/null 2>&1; then
		ip link add "$host_if" type veth peer name eth0 netns "$node"
	fi
	ip link set "$host_if" master "$cluster_bridge" up
	ip -n "$node" link set lo up
	ip -n "$node" link set eth0 up
	addrs="$(ip -n "$node" addr show dev eth0)"
	[[ $addrs == *"inet $address/24"* ]] || ip -n "$node" addr add "$address/24" dev eth0
}

# Removes vxlan devices left in a node's own network namespace. dockerd's overlay
# driver creates a network's vxlan device there and at once moves it into the
# network's sandbox, so one found there later was left behind by a dockerd that
# stopped half-way. While it stays, every overlay network given the same VNI fails on
# that node ("network sandbox join failed: ... error creating vxlan interface: file
# exists"), and Swarm rejects the tasks it sends there for good (seen after nodes had
# been stopped and started by the tests: mlmodel's failover found no node to run on).
clear_stale_vxlan() {
	local node="$1" link
	for link in $(ip netns exec "$node" ip -o link show type vxlan 2>/dev/null |
		awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
		log "$node: removing the stale vxlan device $link"
		ip netns exec "$node" ip link delete "$link" 2>/dev/null || true
	done
}

# Starts a node's dockerd in the background unless it answers; waits for it.
start_node() {
	local node="$1" dockerd pid pidfile waited=0
	node_answers "$node" && return 0
	dockerd="$(find_dockerd)" || die "dockerd is not installed (run scripts/swarm-up.sh first)"
	ensure_bridge
	ensure_netns "$node"
	# Nothing of this node's can be using one while its dockerd is down.
	clear_stale_vxlan "$node"
	mkdir -p "$cluster_run/$node/exec" "$cluster_data/$node" "$cluster_logs"
	pidfile="$(node_pidfile "$node")"
	if [[ -f $pidfile ]]; then
		pid="$(cat "$pidfile" 2>/dev/null || true)"
		if [[ -z $pid || "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != dockerd ]]; then
			rm -f "$pidfile"
		fi
	fi
	if [[ ! -f $pidfile ]]; then
		rm -f "$(node_socket "$node")"
		# setsid --fork + nohup: the daemon outlives this script and its process group.
		# shellcheck disable=SC2016 # expanded by the inner sh
		# In the new mount namespace /sys is mounted again from inside the node's
		# network namespace, so that /sys/class/net shows the node's own devices;
		# the host's cgroup mounts are moved onto it.
		setsid --fork nohup unshare --mount --uts --propagation private sh -c '
			node="$1" netns="/run/netns/$1" log="$2" cgroups="$3" sockets="$4"
			shift 4
			hostname "$node"
			PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
			export PATH
			mkdir -p "$cgroups" "$sockets"
			mount --rbind /sys/fs/cgroup "$cgroups"
			mount -t tmpfs -o size=1m,mode=0755 tmpfs "$sockets"
			exec nsenter --net="$netns" sh -c "
				mount -t sysfs sysfs /sys &&
				mount --move \"\$0\" /sys/fs/cgroup &&
				exec \"\$@\"" "$cgroups" "$@" >>"$log" 2>&1' \
			sh "$node" "$cluster_logs/$node.log" "$cluster_run/$node/cgroup" "$node_socket_dir" \
			"$dockerd" \
			--host "$(node_host "$node")" \
			--host "unix://$node_socket_dir/docker.sock" \
			--data-root "$cluster_data/$node" \
			--exec-root "$cluster_run/$node/exec" \
			--pidfile "$pidfile" \
			--log-level warn \
			</dev/null >/dev/null 2>&1 || die "could not start dockerd for $node"
	fi
	until node_answers "$node"; do
		if ((waited >= 60)); then
			tail -n 30 "$cluster_logs/$node.log" >&2 || true
			die "dockerd of $node did not answer within 60 s (log: $cluster_logs/$node.log)"
		fi
		sleep 1
		waited=$((waited + 1))
	done
	log "$node: dockerd answers at $(node_host "$node")"
}

# The processes in a node's network namespace: its dockerd, containerd, shims, tasks.
node_pids() { ip netns pids "$1" 2>/dev/null || true; }

# Stops a node's dockerd (SIGTERM, as a shutdown does: its containers stop with it),
# then anything left in its namespace.
stop_node() {
	local node="$1" pid waited=0
	pid="$(cat "$(node_pidfile "$node")" 2>/dev/null || true)"
	if [[ -n $pid ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == dockerd ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do
			if ((waited >= 30)); then
				log "$node: dockerd still runs 30 s after SIGTERM; killing it"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 1
			waited=$((waited + 1))
		done
	fi
	local left
	left="$(node_pids "$node")"
	if [[ -n $left ]]; then
		# shellcheck disable=SC2086 # one pid per word
		kill -KILL $left 2>/dev/null || true
		sleep 1
	fi
	rm -f "$(node_pidfile "$node")" "$(node_socket "$node")"
	log "$node: stopped"
}
