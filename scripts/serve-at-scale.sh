#!/usr/bin/env bash
# Runs `mlmodel serve` itself over many converged models and prints what it costs: how
# long it takes to create their services, then its CPU and resident memory between
# resyncs, and after a `GET /`. The resync benchmark (scripts/bench.sh swarm_resync)
# measures one resync in isolation against a baseline; this measures the whole daemon,
# API, manifest watcher and event follower included, as a user would run it.
#
#   scripts/serve-at-scale.sh              10,000 models
#   MODELS=2000 scripts/serve-at-scale.sh  another count
#
# Environment: MODELS (default 10000), RESYNC (the --resync period, default 30s),
# WATCH_SECONDS (how long to sample once every service exists, default 120).
#
# Needs a swarm manager and the test image (scripts/swarm-up.sh). Models are declared
# with 0 replicas, so no container starts and 10,000 services fit on one node. It
# creates services named mlmodelbench-serve_*, and removes them (and its temporary
# directory) when done, also when interrupted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

models=${MODELS:-10000}
resync=${RESYNC:-30s}
watch_seconds=${WATCH_SECONDS:-120}
instance=mlmodelbench-serve
image=mlmodel-test/static-http:1

docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null | grep -qx true ||
	{ echo "serve-at-scale: no swarm manager answers (run scripts/swarm-up.sh)" >&2; exit 1; }
docker image inspect "$image" >/dev/null 2>&1 ||
	{ echo "serve-at-scale: the test image $image is missing (run scripts/swarm-up.sh)" >&2; exit 1; }
if [[ -n "$(docker service ls -q --filter "name=${instance}_")" ]]; then
	echo "serve-at-scale: services named ${instance}_* exist already; remove them first" >&2
	exit 1
fi

cargo build --release --quiet
binary=target/release/mlmodel
work=$(mktemp -d)
pid=""

remove_services() {
	docker service ls -q --filter "name=${instance}_" | xargs -r -n 200 docker service rm >/dev/null
}
cleanup() {
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		wait "$pid" || true
	fi
	remove_services
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/manifests"
python3 - "$work/manifests" "$models" "$image" <<'PY'
import sys
directory, count, image = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(count):
    with open(f"{directory}/scale-{i:05d}.yml", "w") as f:
        f.write(
            "domain: bench.example.com\n"
            f"image: {image}\n"
            "build_id: build-1\nrun_id: run-1\nscale: 0\n"
            'cpu_limit: "0.5"\ncpu_reservation: "0.001"\n'
            "mem_limit: 64M\nmem_reservation: 8M\n"
        )
PY

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start=$(date +%s.%N)
"$binary" serve --manifests "$work/manifests" --data-dir "$work/data" --instance "$instance" \
	--listen "127.0.0.1:$port" --resync "$resync" --log-format json >"$work/log" 2>&1 &
pid=$!

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
rss_mb() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }
peak_mb() { awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }
alive() { kill -0 "$pid" 2>/dev/null || { echo "serve-at-scale: mlmodel serve exited; its log:" >&2; tail -n 20 "$work/log" >&2; exit 1; }; }

echo "serve-at-scale: $models manifests of 0 replicas; mlmodel serve --resync $resync"
while :; do
	alive
	count=$(docker service ls -q --filter "name=${instance}_" | wc -l)
	[[ $count -ge $models ]] && break
	sleep 2
done
created=$(python3 -c "import time; print(f'{time.time() - $start:.0f}')")
echo "serve-at-scale: all $models services exist after $created s (resident $(rss_mb) MB)"

# Between resyncs: CPU over each 15 s, and resident memory at its end.
samples=$((watch_seconds / 15))
total_ms=0
max_rss=0
before=$(cpu_ticks)
for ((i = 1; i <= samples; i++)); do
	sleep 15
	alive
	now=$(cpu_ticks)
	ms=$(((now - before) * 1000 / hz))
	before=$now
	total_ms=$((total_ms + ms))
	rss=$(rss_mb)
	((rss > max_rss)) && max_rss=$rss
	printf '  +%4d s  CPU %6d ms over 15 s  resident %4d MB\n' $((i * 15)) "$ms" "$rss"
done
settled=$(rss_mb)
listing=$(curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "http://127.0.0.1:$port/")
after_list=$(rss_mb)
warnings=$(grep -c '"level":"\(WARN\|ERROR\)"' "$work/log" || true)

echo
printf '%-52s %s\n' "models" "$models"
printf '%-52s %s s\n' "manifests written -> every service created" "$created"
printf '%-52s %s ms (%s%% of one core)\n' "CPU over ${watch_seconds} s after that" "$total_ms" \
	"$(python3 -c "print(f'{$total_ms / ($watch_seconds * 10):.1f}')")"
printf '%-52s %s MB (highest sample %s MB; target < 256 MB)\n' "resident memory, converged" "$settled" "$max_rss"
printf '%-52s %s\n' "GET / (status, bytes, seconds)" "$listing"
printf '%-52s %s MB\n' "resident memory after GET /" "$after_list"
printf '%-52s %s MB\n' "peak resident memory (creation included)" "$(peak_mb)"
printf '%-52s %s\n' "warnings and errors logged" "$warnings"
