#!/usr/bin/env bash
# Removes what an interrupted test run left behind in the swarm: stacks whose
# namespace starts with `mlmodeltest` and services whose name does, then the
# networks, configs, secrets and volumes of those stacks (or so named). Leaves
# the swarm itself, the shared `mlmodel` network and the images alone.
#
# Do not run it while tests are running: their stacks match the prefix too.
#
# Environment:
#   MLMODEL_TEST_PREFIX   name prefix to clean up (default mlmodeltest)
set -euo pipefail

log() { printf 'swarm-down: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

prefix="${MLMODEL_TEST_PREFIX:-mlmodeltest}"
[[ -n $prefix ]] || die "MLMODEL_TEST_PREFIX must not be empty"
ns_label="com.docker.stack.namespace"

docker info >/dev/null 2>&1 || die "the Docker daemon does not answer 'docker info'"
[[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" == active ]] || {
	log "swarm mode is not active; nothing to clean up"
	exit 0
}

# Prints the names of objects of one kind (service, network, config, secret)
# whose name, or stack namespace label, starts with the prefix.
leftovers() {
	local kind="$1" template ids
	case "$kind" in
	network | volume) template="{{.Name}} {{index .Labels \"$ns_label\"}}" ;;
	*) template="{{.Spec.Name}} {{index .Spec.Labels \"$ns_label\"}}" ;;
	esac
	ids="$(docker "$kind" ls --quiet)"
	[[ -n $ids ]] || return 0
	# An object removed meanwhile makes inspect fail; the others still print.
	# shellcheck disable=SC2086 # one argument per id
	{ docker "$kind" inspect --format "$template" $ids 2>/dev/null || true; } |
		awk -v p="$prefix" 'index($1, p) == 1 || index($2, p) == 1 { print $1 }'
}

names="$(leftovers service)"
if [[ -n $names ]]; then
	mapfile -t services <<<"$names"
	log "removing services: ${services[*]}"
	docker service rm "${services[@]}" >/dev/null
else
	log "no services to remove"
fi

# Networks can only go once the services' containers have stopped.
running_tasks() {
	docker ps --filter "label=com.docker.swarm.service.name" \
		--format '{{.Label "com.docker.swarm.service.name"}}' |
		awk -v p="$prefix" 'index($1, p) == 1'
}
for _ in $(seq 30); do
	[[ -z "$(running_tasks)" ]] && break
	sleep 1
done
[[ -z "$(running_tasks)" ]] || log "warning: some task containers are still running"

status=0
for kind in network config secret volume; do
	names="$(leftovers "$kind")"
	[[ -n $names ]] || continue
	mapfile -t objects <<<"$names"
	log "removing ${kind}s: ${objects[*]}"
	for object in "${objects[@]}"; do
		# Something else (a finishing `docker stack rm`) may remove it first.
		if ! docker "$kind" rm "$object" >/dev/null 2>&1 &&
			docker "$kind" inspect "$object" >/dev/null 2>&1; then
			log "could not remove $kind $object"
			status=1
		fi
	done
done
((status == 0)) || die "some objects could not be removed (still in use?)"
log "done"
