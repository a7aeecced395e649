#!/usr/bin/env bash
# Stops the private registry scripts/registry-up.sh started (the process its
# pid file names, and only if it is that registry). Idempotent: with nothing
# running it only says so.
#
# Options:
#   --purge   also remove the state directory: the stored images, the password,
#             the htpasswd file, the configuration and the log
#
# Environment:
#   MLMODEL_REGISTRY_STATE  state directory (default /var/tmp/mlmodel-registry)
set -euo pipefail

log() { printf 'registry-down: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

purge=0
while (($# > 0)); do
	case "$1" in
	--purge) purge=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
	shift
done

state="${MLMODEL_REGISTRY_STATE:-/var/tmp/mlmodel-registry}"
[[ -n $state ]] || die "MLMODEL_REGISTRY_STATE must not be empty"
[[ $state == /* ]] || state="$PWD/$state"
config="$state/config.yml"
pid_file="$state/registry.pid"

# Prints the pid of the registry registry-up.sh started for this state directory.
our_pid() {
	local pid
	pid="$(cat "$pid_file" 2>/dev/null || true)"
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	# A pid reused by another process after a crash is not ours.
	[[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == docker-registry ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF " serve $config " || return 1
	printf '%s\n' "$pid"
}

if pid="$(our_pid)"; then
	log "stopping the registry (pid $pid)"
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "the registry ignored SIGTERM for 10s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		for _ in $(seq 25); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		! kill -0 "$pid" 2>/dev/null || die "could not stop the registry (pid $pid)"
	fi
	rm -f "$pid_file"
	log "stopped"
else
	[[ -f $pid_file ]] && rm -f "$pid_file"
	log "no registry started by registry-up.sh runs for $state"
fi

if ((purge)); then
	if [[ ! -e $state ]]; then
		log "$state does not exist; nothing to purge"
	elif [[ -f $config ]] && grep -qF 'Written by scripts/registry-up.sh' "$config"; then
		log "removing $state"
		rm -rf -- "$state" || die "could not remove $state"
	else
		# Never remove a directory registry-up.sh did not set up.
		die "$state holds no configuration written by registry-up.sh; not removing it"
	fi
fi
