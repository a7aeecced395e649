#!/usr/bin/env bash
# Runs mlmodel's benchmarks and prints one table per benchmark: metric, value, the
# baseline measured in the same run, their ratio, the target and whether it is met.
# Timings are never asserted: a missed target is a row saying NO, not a failure.
#
#   scripts/bench.sh            all of them (the swarm ones only if a swarm answers)
#   scripts/bench.sh fake       only those that run in process over the fake swarm
#   scripts/bench.sh swarm      only those that need the real swarm
#   scripts/bench.sh NAME...    the named ones (resync, memory, api_list,
#                               swarm_latency, swarm_throughput, swarm_resync,
#                               swarm_proxy)
#
# In process, over the fake swarm (no Docker needed):
#   resync            a resync of 1000 converged models: Docker calls and CPU time
#   memory            resident memory with 1000 converged models
#   api_list          GET / with 1000 models: requests/s and latency
# On the real swarm (need a swarm manager and the test image: scripts/swarm-up.sh):
#   swarm_latency     manifest -> service created; service removed by hand -> recreated
#   swarm_throughput  100 new manifests -> all tasks running, against the raw API
#   swarm_resync      a resync of 1000 converged models through bollard: calls and CPU
#   swarm_proxy       failed requests through Traefik (shipped and stock polling) while a
#                     model is updated and scaled, drain template vs none; and seconds
#                     from a new model's task running to its first routed request
#
# Environment: BENCH_MODELS (models; default 1000, or 100 for swarm_throughput),
# BENCH_ROUNDS (resync, swarm_resync), BENCH_SECONDS and BENCH_CONNECTIONS (api_list),
# BENCH_SAMPLES and BENCH_RECREATE_SAMPLES (swarm_latency), BENCH_RATE, BENCH_SETTLE,
# BENCH_PHASES and BENCH_SAMPLES (swarm_proxy).
#
# The swarm benchmarks create services named mlmodelbench-* and remove them when done;
# after an interrupted run, MLMODEL_TEST_PREFIX=mlmodelbench scripts/swarm-down.sh
# removes what is left.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fake=(resync memory api_list)
swarm=(swarm_latency swarm_throughput swarm_resync swarm_proxy)

swarm_ready() {
	command -v docker >/dev/null 2>&1 &&
		[[ "$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null)" == "active true" ]] &&
		docker image inspect mlmodel-test/static-http:1 >/dev/null 2>&1
}

case "${1:-all}" in
all)
	selected=("${fake[@]}")
	if swarm_ready; then
		selected+=("${swarm[@]}")
	else
		echo "bench: no swarm manager with the test image; skipping ${swarm[*]} (run scripts/swarm-up.sh first)" >&2
	fi
	;;
fake) selected=("${fake[@]}") ;;
swarm)
	swarm_ready || {
		echo "bench: ${swarm[*]} need a swarm manager with the test image; run scripts/swarm-up.sh first" >&2
		exit 2
	}
	selected=("${swarm[@]}")
	;;
*) selected=("$@") ;;
esac

# Build once, so that compile time does not land inside any measurement.
cargo bench --no-run "${selected[@]/#/--bench=}" >&2
for bench in "${selected[@]}"; do
	echo "bench: $bench" >&2
	cargo bench --quiet --bench "$bench"
done
