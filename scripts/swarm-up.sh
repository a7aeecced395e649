#!/usr/bin/env bash
# Makes a Docker engine in swarm mode available to the tests and to
# `mlmodel serve`, starting from a machine that may only have a docker client.
# Idempotent: every step checks first, so a second run is a quick no-op.
#
#   1. install Debian's docker.io (engine + containerd) if dockerd is missing
#   2. start dockerd in the background if the daemon does not answer
#      (no systemd needed; log in /var/log/mlmodel-dockerd.log), advertising
#      the node generic resource ${MLMODEL_NODE_GENERIC_RESOURCES:-NVIDIA-GPU=GPU-mlmodel-test-0}
#      (no GPU is needed for Swarm to schedule by it); a dockerd this script
#      started earlier with other settings is restarted with these
#   3. `docker swarm init` if this engine is not in a swarm
#   4. create the shared attachable overlay network ${MLMODEL_NETWORK:-mlmodel}
#      as a free 10.N.0.0/16, as mlmodel creates it
#   5. build the test image (scripts/build-test-image.sh)
#   6. deploy the reverse proxy mlmodel ships (scripts/proxy-up.sh: Traefik v3 on
#      port 80 in host mode, so each model answers on its domain), unless skipped
#   7. start a private registry with password auth on 127.0.0.1:5000
#      (scripts/registry-up.sh), for the private-image tests, unless skipped
#   8. install Debian's chromium (headless) for the dashboard's browser test
#      (tests/swarm_ui.rs), unless skipped or a chromium is on PATH already
#
# Options:
#   --no-proxy          skip step 6 (also MLMODEL_PROXY=0)
#   --proxy-port PORT   the proxy's host port (also MLMODEL_PROXY_PORT; default 80)
#   --no-registry       skip step 7 (also MLMODEL_REGISTRY=0)
#   --no-browser        skip step 8 (also MLMODEL_BROWSER=0)
#
# If DOCKER_HOST names a remote daemon (anything but a unix socket), steps 1
# and 2 are skipped: that daemon must already answer.
#
# Environment:
#   MLMODEL_NETWORK         overlay network to create (default mlmodel)
#   MLMODEL_DOCKERD_LOG     dockerd log file (default /var/log/mlmodel-dockerd.log)
#   MLMODEL_DOCKERD_WAIT    seconds to wait for a started dockerd (default 60)
#   MLMODEL_NODE_GENERIC_RESOURCES  dockerd's --node-generic-resource values,
#                           space-separated (default NVIDIA-GPU=GPU-mlmodel-test-0;
#                           empty for none)
#   MLMODEL_PROXY           0 to skip the proxy (default 1)
#   MLMODEL_PROXY_PORT      the proxy's host port (default 80)
#   MLMODEL_REGISTRY        0 to skip the registry (default 1)
#   MLMODEL_BROWSER         0 to skip installing chromium (default 1)
set -euo pipefail

log() { printf 'swarm-up: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proxy="${MLMODEL_PROXY:-1}"
registry="${MLMODEL_REGISTRY:-1}"
browser="${MLMODEL_BROWSER:-1}"
while (($# > 0)); do
	case "$1" in
	--no-proxy) proxy=0 ;;
	--no-registry) registry=0 ;;
	--no-browser) browser=0 ;;
	--proxy-port)
		(($# >= 2)) || die "--proxy-port needs a port"
		export MLMODEL_PROXY_PORT="$2"
		shift
		;;
	--proxy-port=*) export MLMODEL_PROXY_PORT="${1#--proxy-port=}" ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
	shift
done
network="${MLMODEL_NETWORK:-mlmodel}"
dockerd_log="${MLMODEL_DOCKERD_LOG:-/var/log/mlmodel-dockerd.log}"
dockerd_wait="${MLMODEL_DOCKERD_WAIT:-60}"
generic_resources="${MLMODEL_NODE_GENERIC_RESOURCES-NVIDIA-GPU=GPU-mlmodel-test-0}"

# Runs a command as root: directly, or through passwordless sudo.
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		die "'$*' needs root, and passwordless sudo is not available"
	fi
}

daemon_answers() { docker info >/dev/null 2>&1; }

# Prints the path of dockerd; /usr/sbin is often missing from a user's PATH.
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

# A unix socket (or nothing, meaning the default socket) is a local daemon
# this script may install and start; anything else is someone else's.
local_daemon=1
case "${DOCKER_HOST:-}" in
"" | unix://*) ;;
*) local_daemon=0 ;;
esac

# --- 1. install the engine ---------------------------------------------------
if [[ $local_daemon == 1 ]] && ! { find_dockerd >/dev/null && command -v docker >/dev/null 2>&1; }; then
	log "dockerd not found; installing Debian's docker.io package"
	command -v apt-get >/dev/null 2>&1 || die "dockerd is missing and apt-get is not available to install it"
	export DEBIAN_FRONTEND=noninteractive
	# needrestart (recommended by docker.io) must not restart anything.
	export NEEDRESTART_MODE=l NEEDRESTART_SUSPEND=1
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
		die "apt-get update failed"
	as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l NEEDRESTART_SUSPEND=1 \
		apt-get install -y -q docker.io ||
		die "apt-get install docker.io failed"
	find_dockerd >/dev/null || die "docker.io is installed but dockerd cannot be found"
fi
command -v docker >/dev/null 2>&1 || die "the docker client is not installed"

# A dockerd this script started is marked MLMODEL_SWARM_UP=<settings> in its
# environment (older versions of it set DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1,
# which stops every pull, private registries' included). If it runs with other
# settings than these, it is stopped here and started again below; the swarm
# and its services survive a daemon restart.
settings="generic-resources=$generic_resources"
# The host's own dockerd, by its pidfile: other dockerd processes may run beside it
# (the multi-node test cluster's, scripts/cluster-up.sh), and are not this script's.
host_dockerd_pid() {
	local pidfile pid
	for pidfile in /var/run/docker.pid /run/docker.pid; do
		pid="$(cat "$pidfile" 2>/dev/null || true)"
		if [[ -n $pid && "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == dockerd ]]; then
			printf '%s\n' "$pid"
			return 0
		fi
	done
	return 1
}
dockerd_environ() {
	local pid
	pid="$(host_dockerd_pid)" || return 1
	as_root cat "/proc/$pid/environ" 2>/dev/null | tr '\0' '\n'
}
if [[ $local_daemon == 1 ]] && daemon_answers; then
	environ="$(dockerd_environ || true)"
	if grep -qx 'DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1' <<<"$environ" ||
		{ grep -q '^MLMODEL_SWARM_UP=' <<<"$environ" && ! grep -qxF "MLMODEL_SWARM_UP=$settings" <<<"$environ"; }; then
		log "restarting the dockerd this script started earlier, with the current settings ($settings)"
		pid="$(host_dockerd_pid || true)"
		[[ -z $pid ]] || as_root kill -TERM "$pid" || true
		waited=0
		while [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; do
			((waited < 60)) || die "dockerd still runs 60 s after SIGTERM"
			sleep 1
			waited=$((waited + 1))
		done
	fi
fi

# --- 2. start the daemon -------------------------------------------------------
if daemon_answers; then
	log "Docker daemon answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
elif [[ $local_daemon == 0 ]]; then
	die "DOCKER_HOST=$DOCKER_HOST does not answer 'docker info'; start that daemon first"
else
	dockerd="$(find_dockerd)" || die "dockerd is not installed"
	dockerd_args=()
	if [[ -n ${DOCKER_HOST:-} && $DOCKER_HOST != unix:///var/run/docker.sock &&
		$DOCKER_HOST != unix:///run/docker.sock ]]; then
		dockerd_args+=(--host "$DOCKER_HOST")
	fi
	for resource in $generic_resources; do
		dockerd_args+=(--node-generic-resource "$resource")
	done
	if host_dockerd_pid >/dev/null; then
		log "a dockerd process exists but does not answer yet; waiting for it"
	else
		# dockerd refuses to start if its pid file names a live process, and
		# after a crash that pid may have been reused by something else.
		for pidfile in /var/run/docker.pid /run/docker.pid; do
			if [[ -f $pidfile ]]; then
				pid="$(cat "$pidfile" 2>/dev/null || true)"
				if [[ -z $pid || "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != dockerd ]]; then
					as_root rm -f "$pidfile"
				fi
			fi
		done
		log "starting dockerd in the background (log: $dockerd_log)"
		as_root mkdir -p "$(dirname "$dockerd_log")"
		# setsid --fork + nohup: the daemon must outlive this script and its
		# process group (CI runners kill a step's processes when it ends).
		# The swarm executor tries to pull each task's image before using the
		# local copy; with no registry reachable that fails in milliseconds, and
		# it is what lets a node pull from the private test registry.
		# shellcheck disable=SC2016 # "$@" and $0 are expanded by that sh
		as_root setsid --fork nohup env MLMODEL_SWARM_UP="$settings" sh -c \
			'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH; exec "$@" >>"$0" 2>&1' \
			"$dockerd_log" "$dockerd" "${dockerd_args[@]}" </dev/null >/dev/null 2>&1 ||
			die "could not start dockerd"
	fi
	waited=0
	until daemon_answers; do
		if ((waited >= dockerd_wait)); then
			log "dockerd did not answer within ${dockerd_wait}s; last lines of $dockerd_log:"
			as_root tail -n 40 "$dockerd_log" >&2 || true
			die "could not start the Docker daemon"
		fi
		if ((waited >= 3)) && ! host_dockerd_pid >/dev/null; then
			log "dockerd exited; last lines of $dockerd_log:"
			as_root tail -n 40 "$dockerd_log" >&2 || true
			die "could not start the Docker daemon"
		fi
		sleep 1
		waited=$((waited + 1))
	done
	log "Docker daemon answers after ${waited}s ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
fi

# --- 3. swarm mode -------------------------------------------------------------
swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true; }
state="$(swarm_state)"
# Right after a daemon restart a member node can be "pending" for a moment.
for _ in $(seq 30); do
	[[ $state == pending ]] || break
	sleep 1
	state="$(swarm_state)"
done
case "$state" in
active)
	log "swarm mode active"
	;;
inactive)
	log "initialising a single-node swarm"
	docker swarm init --advertise-addr 127.0.0.1 >/dev/null || die "docker swarm init failed"
	[[ "$(swarm_state)" == active ]] || die "swarm state is '$(swarm_state)' after docker swarm init"
	log "swarm mode active"
	;;
locked)
	die "the swarm is locked (autolock); unlock it with 'docker swarm unlock'"
	;;
*)
	die "unexpected swarm state '$state' (see 'docker info'; 'docker swarm leave --force' resets it)"
	;;
esac
[[ "$(docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null)" == true ]] ||
	die "this engine is a swarm worker, not a manager; services can only be managed on a manager"

# --- 4. shared overlay network ---------------------------------------------------
if driver="$(docker network inspect --format '{{.Driver}} {{.Scope}} {{.Attachable}}' "$network" 2>/dev/null)"; then
	[[ $driver == "overlay swarm true" ]] ||
		die "network '$network' exists but is not an attachable swarm overlay network (driver, scope, attachable: $driver)"
	log "overlay network '$network' exists"
else
	# A /16 as mlmodel creates it (Docker's default /24 holds about 120 one-replica
	# models): the first 10.N.0.0/16 that no network's subnet overlaps.
	used="$(docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' \
		$(docker network ls -q) 2>/dev/null || true)"
	subnet=""
	for n in $(seq 1 254); do
		clash=0
		for cidr in $used; do
			case "$cidr" in
			10.$n.* | 10.0.0.0/8 | 10.0.0.0/[0-9]) clash=1 ;;
			esac
		done
		if ((clash == 0)); then
			subnet="10.$n.0.0/16"
			break
		fi
	done
	[[ -n $subnet ]] || die "no free 10.N.0.0/16 for the overlay network '$network'"
	log "creating the attachable overlay network '$network' ($subnet)"
	docker network create --driver overlay --attachable --subnet "$subnet" "$network" >/dev/null ||
		die "could not create the overlay network '$network'"
fi

# --- 5. test image ---------------------------------------------------------------
bash "$repo_root/scripts/build-test-image.sh" || die "building the test image failed"

# --- 6. the reverse proxy -------------------------------------------------------
ready="swarm active, network '$network', test image built"
if [[ $proxy == 0 ]]; then
	log "not deploying the proxy (--no-proxy or MLMODEL_PROXY=0)"
else
	MLMODEL_NETWORK="$network" bash "$repo_root/scripts/proxy-up.sh" || die "deploying the proxy failed (skip it with --no-proxy)"
	ready+=", proxy on port ${MLMODEL_PROXY_PORT:-80}"
fi

# --- 7. the private registry ------------------------------------------------------
if [[ $registry == 0 ]]; then
	log "not starting the test registry (--no-registry or MLMODEL_REGISTRY=0)"
else
	bash "$repo_root/scripts/registry-up.sh" >/dev/null || die "starting the test registry failed (skip it with --no-registry)"
	ready+=", registry on 127.0.0.1:${MLMODEL_REGISTRY_PORT:-5000}"
fi

# --- 8. a headless browser for the dashboard's test ---------------------------------
if [[ $browser == 0 ]]; then
	log "not installing chromium (--no-browser or MLMODEL_BROWSER=0)"
elif command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
	command -v google-chrome >/dev/null 2>&1; then
	ready+=", chromium"
else
	log "chromium not found; installing Debian's chromium package"
	command -v apt-get >/dev/null 2>&1 || die "chromium is missing and apt-get is not available to install it (skip it with --no-browser)"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null ||
		die "apt-get update failed"
	as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l NEEDRESTART_SUSPEND=1 \
		apt-get install -y -q --no-install-recommends chromium >/dev/null ||
		die "apt-get install chromium failed (skip it with --no-browser)"
	ready+=", chromium"
fi
log "ready: $ready"
