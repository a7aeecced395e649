#!/usr/bin/env bash
# Runs a private image registry with password authentication on loopback, for
# tests of deployments whose images need registry credentials: the Docker
# distribution registry, as Debian packages it, serving plain HTTP on
# 127.0.0.1:${MLMODEL_REGISTRY_PORT:-5000}. Docker treats registries on
# 127.0.0.0/8 as insecure by default, so `docker login`, push and pull work
# without TLS or daemon configuration.
# Idempotent: every step checks first, so a second run is a quick no-op.
#
#   1. install Debian's docker-registry and apache2-utils (htpasswd) if missing
#   2. create the state directory: a password for the user `mlmodel`, generated
#      once (file `password`, mode 600), its bcrypt htpasswd file, the
#      registry's configuration (realm "mlmodel-test", deletes enabled) and its
#      storage
#   3. start `docker-registry serve` in the background (pid file `registry.pid`,
#      log `registry.log`), unless the instance this script started runs with
#      the same configuration and password
#   4. wait until /v2/ answers 401 without credentials and 200 with them
#
# Its one line on stdout names the address, the user and the password file:
#
#   docker login 127.0.0.1:5000 -u mlmodel --password-stdin <"$state/password"
#
# Stop it with scripts/registry-down.sh (--purge also removes the state
# directory and so the images and the password).
#
# Environment:
#   MLMODEL_REGISTRY_STATE  state directory (default /var/tmp/mlmodel-registry)
#   MLMODEL_REGISTRY_PORT   port on 127.0.0.1 (default 5000)
#   MLMODEL_REGISTRY_WAIT   seconds to wait for the registry to answer (default 30)
set -euo pipefail

log() { printf 'registry-up: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

case "${1:-}" in
"") ;;
-h | --help)
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*) die "unknown option '$1' (see --help)" ;;
esac

state="${MLMODEL_REGISTRY_STATE:-/var/tmp/mlmodel-registry}"
port="${MLMODEL_REGISTRY_PORT:-5000}"
wait_seconds="${MLMODEL_REGISTRY_WAIT:-30}"
user=mlmodel
realm=mlmodel-test
registry=/usr/bin/docker-registry

[[ -n $state ]] || die "MLMODEL_REGISTRY_STATE must not be empty"
if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
	die "MLMODEL_REGISTRY_PORT='$port' is not a port (1 to 65535)"
fi
[[ $wait_seconds =~ ^[0-9]+$ ]] || die "MLMODEL_REGISTRY_WAIT='$wait_seconds' is not a whole number of seconds"
# The configuration and the registry's command line need an absolute path.
[[ $state == /* ]] || state="$PWD/$state"
address="127.0.0.1:$port"
config="$state/config.yml"
password_file="$state/password"
htpasswd_file="$state/htpasswd"
secret_file="$state/http-secret"
pid_file="$state/registry.pid"
log_file="$state/registry.log"

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

# --- 1. install the registry and htpasswd --------------------------------------
packages=()
[[ -x $registry ]] || packages+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || packages+=(apache2-utils)
command -v curl >/dev/null 2>&1 || packages+=(curl)
if ((${#packages[@]} > 0)); then
	log "installing Debian's ${packages[*]}"
	command -v apt-get >/dev/null 2>&1 || die "${packages[*]} missing and apt-get is not available to install them"
	# The package list may be stale or absent (fresh images): update once on failure.
	if ! as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l NEEDRESTART_SUSPEND=1 \
		apt-get install -y -q "${packages[@]}" >&2; then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
		as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l NEEDRESTART_SUSPEND=1 \
			apt-get install -y -q "${packages[@]}" >&2 || die "apt-get install ${packages[*]} failed"
	fi
	[[ -x $registry ]] || die "docker-registry is installed but $registry is missing"
	command -v htpasswd >/dev/null 2>&1 || die "apache2-utils is installed but htpasswd cannot be found"
	# Where services may start, the package starts its own registry (on port
	# 5000 of every interface, with its own configuration): this script only
	# wanted the binary, so the service it just caused goes.
	if [[ " ${packages[*]} " == *" docker-registry "* ]]; then
		if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
			if systemctl is-active --quiet docker-registry.service 2>/dev/null; then
				log "stopping the docker-registry service the package started"
				as_root systemctl stop docker-registry.service >&2 || log "warning: could not stop the docker-registry service"
			fi
		elif [[ -x /etc/init.d/docker-registry ]] && packaged_pid="$(cat /var/run/docker-registry.pid 2>/dev/null)" &&
			[[ $packaged_pid =~ ^[0-9]+$ && -d /proc/$packaged_pid ]]; then
			log "stopping the docker-registry service the package started"
			as_root /etc/init.d/docker-registry stop >&2 || log "warning: could not stop the docker-registry service"
		fi
	fi
fi

# --- 2. state: password, htpasswd, configuration --------------------------------
# Everything in it is private: the password, its hash, the HTTP secret.
umask 077
if [[ ! -d $state ]]; then
	{ (umask 022 && mkdir -p "$(dirname "$state")") && mkdir -m 700 "$state"; } ||
		die "cannot create the state directory $state"
fi
[[ -O $state ]] || die "the state directory $state belongs to another user"
mkdir -p "$state/data" || die "cannot create $state/data"

# Prints n random URL-safe characters (no ':', which basic auth cannot carry).
random_string() { head -c 48 /dev/urandom | base64 -w 0 | tr '+/' '-_' | cut -c "1-$1"; }

if [[ ! -s $password_file ]]; then
	log "generating the password of '$user' ($password_file)"
	random_string 32 >"$password_file.tmp"
	mv -f "$password_file.tmp" "$password_file"
fi
chmod 600 "$password_file"
password="$(<"$password_file")"
[[ -n $password && $password != *:* ]] || die "$password_file is empty or holds a ':'; remove it to generate a new password"

[[ -s $secret_file ]] || { random_string 32 >"$secret_file.tmp" && mv -f "$secret_file.tmp" "$secret_file"; }

# The registry reads htpasswd at startup: a rewritten file means a restart.
changed=0
if ! htpasswd -vb "$htpasswd_file" "$user" "$password" >/dev/null 2>&1; then
	log "writing the htpasswd file for '$user' (bcrypt)"
	htpasswd -Bbn "$user" "$password" >"$htpasswd_file.tmp" || die "htpasswd -Bbn failed"
	mv -f "$htpasswd_file.tmp" "$htpasswd_file"
	changed=1
fi

new_config="$(
	cat <<EOF
# Written by scripts/registry-up.sh; changes are overwritten.
version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $state/data
  delete:
    enabled: true
http:
  addr: $address
  secret: $(<"$secret_file")
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: $realm
    path: $htpasswd_file
EOF
)"
if [[ ! -f $config || "$(<"$config")" != "$new_config" ]]; then
	log "writing the configuration ($config)"
	printf '%s\n' "$new_config" >"$config.tmp"
	mv -f "$config.tmp" "$config"
	changed=1
fi

# --- 3. the registry process ------------------------------------------------------
# Prints the pid of the registry this script started for this state directory.
our_pid() {
	local pid
	pid="$(cat "$pid_file" 2>/dev/null || true)"
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	# A pid reused by another process after a crash is not ours.
	[[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == docker-registry ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF " serve $config " || return 1
	printf '%s\n' "$pid"
}

stop_registry() {
	local pid="$1"
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	log "the registry (pid $pid) ignored SIGTERM; killing it"
	kill -KILL "$pid" 2>/dev/null || true
	sleep 0.5
}

# In a subshell: a failed `exec` redirection would end this script.
port_taken() (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null

# Prints the HTTP status of GET /v2/, with the credentials if asked ("000": no answer).
v2_status() {
	local args=(-s -o /dev/null -w '%{http_code}' --max-time 3)
	if [[ ${1:-} == auth ]]; then
		# The password goes through stdin, not the command line.
		printf 'user = "%s:%s"\n' "$user" "$password" |
			curl "${args[@]}" -K - "http://$address/v2/" 2>/dev/null || true
	else
		curl "${args[@]}" "http://$address/v2/" 2>/dev/null || true
	fi
}

if pid="$(our_pid)"; then
	if ((changed)); then
		log "the configuration or the password changed: restarting the registry (pid $pid)"
		stop_registry "$pid"
		rm -f "$pid_file"
	else
		log "the registry runs (pid $pid)"
	fi
else
	rm -f "$pid_file"
fi

if ! our_pid >/dev/null; then
	if port_taken; then
		holder=""
		command -v ss >/dev/null 2>&1 &&
			holder="$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(([^)]*)' | head -n 1 || true)"
		die "port $port on 127.0.0.1 is already in use${holder:+ ($holder)}; stop what listens there (the docker-registry package's own service: 'service docker-registry stop'), or set MLMODEL_REGISTRY_PORT"
	fi
	log "starting the registry on $address (log: $log_file)"
	# REGISTRY_* variables override the configuration file: none of the caller's.
	while IFS= read -r name; do
		unset "$name"
	done < <(compgen -e | grep '^REGISTRY_' || true)
	# setsid --fork + nohup: the registry must outlive this script and its
	# process group (CI runners kill a step's processes when it ends). The
	# shell writes its own pid, which exec hands on to the registry.
	# shellcheck disable=SC2016 # $$ and $0.. are expanded by that sh
	setsid --fork nohup sh -c 'echo $$ >"$0" && exec "$1" serve "$2" >>"$3" 2>&1' \
		"$pid_file" "$registry" "$config" "$log_file" </dev/null >/dev/null 2>&1 ||
		die "could not start $registry"
fi

# --- 4. wait until it answers -----------------------------------------------------
waited=0
while :; do
	status="$(v2_status)"
	[[ $status == 401 ]] && break
	if ((waited >= wait_seconds * 5)) || { ((waited >= 5)) && ! our_pid >/dev/null; }; then
		if our_pid >/dev/null; then
			log "GET http://$address/v2/ answered '$status', not 401, within ${wait_seconds}s; last lines of $log_file:"
		else
			log "the registry exited; last lines of $log_file:"
		fi
		tail -n 40 "$log_file" >&2 || true
		if pid="$(our_pid)"; then
			stop_registry "$pid"
			rm -f "$pid_file"
		fi
		die "the registry does not serve on $address"
	fi
	sleep 0.2
	waited=$((waited + 1))
done
status="$(v2_status auth)"
if [[ $status != 200 ]]; then
	log "GET http://$address/v2/ as '$user' answered '$status', not 200; last lines of $log_file:"
	tail -n 40 "$log_file" >&2 || true
	die "the registry does not accept the password in $password_file"
fi

printf 'registry-up: ready: %s (user %s, password in %s)\n' "$address" "$user" "$password_file"
