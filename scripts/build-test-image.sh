#!/usr/bin/env bash
# Builds the test image that stands in for a model: the std-only HTTP server in
# examples/static-http-server/main.rs, compiled into a fully static binary with
# plain rustc (no cargo, so it takes seconds) and put alone in a FROM scratch
# image. No image registry is reachable in CI, so nothing may be pulled.
#
# The image is tagged mlmodel-test/static-http:1, :2 and :latest, all the same
# image; the tests switch a service from :1 to :2 to exercise image updates.
# It is also tagged as the original service's test image,
# qarlm/static-http-response-server:latest and :1 to :10, so the original's
# requests run unchanged.
#
# Rebuilding is skipped when the :1 image carries a label holding the SHA-256
# of main.rs and the Dockerfile that matches the current files; the other tags
# are then just re-pointed at it if needed.
#
# Environment:
#   MLMODEL_TEST_IMAGE          repository name (default mlmodel-test/static-http)
#   MLMODEL_TEST_ORIGINAL_IMAGE the original's test image name to tag too
#                               (default qarlm/static-http-response-server)
#   MLMODEL_TEST_IMAGE_REBUILD  set to 1 to rebuild even when up to date
#   CARGO_TARGET_DIR            where the binary goes (default <repo>/target)
set -euo pipefail

log() { printf 'build-test-image: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src_dir="$repo_root/examples/static-http-server"
src="$src_dir/main.rs"
dockerfile="$src_dir/Dockerfile"
image="${MLMODEL_TEST_IMAGE:-mlmodel-test/static-http}"
tags=(1 2 latest)
original_image="${MLMODEL_TEST_ORIGINAL_IMAGE:-qarlm/static-http-response-server}"
original_tags=(latest 1 2 3 4 5 6 7 8 9 10)
label="mlmodel.test-source-sha256"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
out_dir="$target_dir/static-http-server"
binary="$out_dir/server"

[[ -f $src ]] || die "missing $src"
[[ -f $dockerfile ]] || die "missing $dockerfile"
command -v docker >/dev/null 2>&1 || die "the docker client is not installed"
docker info >/dev/null 2>&1 ||
	die "the Docker daemon does not answer 'docker info' (run scripts/swarm-up.sh first)"

mkdir -p "$out_dir"
# Tests running in parallel may all call this script: build one at a time.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$out_dir/.lock"
	flock 9
fi

source_hash="$(cat "$src" "$dockerfile" | sha256sum | cut -d' ' -f1)"

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
image_label() {
	docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true
}

# Points every tag at the :1 image. Prints nothing, returns 0.
retag() {
	local id tag
	id="$(image_id "$image:1")"
	for tag in "${tags[@]:1}"; do
		if [[ "$(image_id "$image:$tag")" != "$id" ]]; then
			log "tagging $image:$tag"
			docker tag "$image:1" "$image:$tag"
		fi
	done
	for tag in "${original_tags[@]}"; do
		if [[ "$(image_id "$original_image:$tag")" != "$id" ]]; then
			docker tag "$image:1" "$original_image:$tag"
		fi
	done
}

if [[ ${MLMODEL_TEST_IMAGE_REBUILD:-0} != 1 &&
	-n "$(image_id "$image:1")" &&
	"$(image_label "$image:1")" == "$source_hash" ]]; then
	retag
	log "$image:{1,2,latest} up to date (source sha256 ${source_hash:0:12})"
	exit 0
fi

# --- compile ---------------------------------------------------------------
if [[ -x $binary && -f $binary.sha256 && "$(cat "$binary.sha256")" == "$source_hash" ]]; then
	log "reusing $binary"
else
	command -v rustc >/dev/null 2>&1 || die "rustc is not installed"
	log "compiling $src (static, release)"
	rm -f "$binary.sha256"
	# +crt-static links glibc statically: the scratch image has no libc.
	rustc --edition 2024 -O \
		-C target-feature=+crt-static \
		-C strip=symbols \
		--crate-name static_http_server \
		-o "$binary" "$src" ||
		die "rustc failed (a static glibc build needs libc6-dev, which provides libc.a)"
	if command -v ldd >/dev/null 2>&1 && ldd "$binary" 2>&1 | grep -q '=>'; then
		die "$binary is dynamically linked; it would not run in a FROM scratch image"
	fi
	printf '%s\n' "$source_hash" >"$binary.sha256"
fi

# --- build the image -------------------------------------------------------
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/server"
cp "$dockerfile" "$context/Dockerfile"

# Recent docker clients build with BuildKit, which needs the buildx plugin.
# Without it they fall back to the legacy builder when DOCKER_BUILDKIT is
# unset (with a deprecation notice) but fail outright when it is 1, so choose
# explicitly. The legacy builder is fine for a FROM scratch image.
if docker buildx version >/dev/null 2>&1; then
	builder="BuildKit"
else
	builder="legacy builder (no buildx plugin)"
	export DOCKER_BUILDKIT=0
fi
log "building $image:1 with the $builder"
if ! docker build --label "$label=$source_hash" --tag "$image:1" "$context" >&2; then
	# Last resort that needs no builder at all: import the binary as a
	# one-file root filesystem and set what the Dockerfile sets.
	log "docker build failed; importing the image with 'docker import' instead"
	tar -C "$context" -cf - server |
		docker import \
			--change 'EXPOSE 80' \
			--change 'ENTRYPOINT ["/server"]' \
			--change "LABEL $label=$source_hash" \
			- "$image:1" >/dev/null ||
		die "could not build $image:1"
fi
[[ "$(image_label "$image:1")" == "$source_hash" ]] ||
	die "$image:1 lacks the label $label=$source_hash after the build"
retag

# Drop earlier builds of this image that no tag points to any more.
docker image prune --force --filter "label=$label" >/dev/null || true

log "built $image:{1,2,latest} ($(image_id "$image:1"))"
