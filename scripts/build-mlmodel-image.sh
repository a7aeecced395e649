#!/usr/bin/env bash
# Builds the image of mlmodel itself, for running it as a Swarm service
# (deploy/mlmodel.stack.yml): `mlmodel` compiled in release mode as a fully
# static binary (glibc linked in, so the FROM scratch image needs no libc) and
# put alone in the image deploy/mlmodel.Dockerfile describes.
#
# The image is tagged mlmodel/mlmodel:<version of Cargo.toml> and :latest. The
# build is skipped when the image carries a label with the SHA-256 of the
# binary it would contain (cargo itself skips an up-to-date binary).
#
# Environment:
#   MLMODEL_IMAGE      repository name (default mlmodel/mlmodel)
#   CARGO_TARGET_DIR   where cargo builds (default <repo>/target); the static
#                      build goes to its static/ subdirectory, apart from the
#                      ordinary builds
set -euo pipefail

log() { printf 'build-mlmodel-image: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${MLMODEL_IMAGE:-mlmodel/mlmodel}"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}/static"
triple="$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')"
[[ -n $triple ]] || die "rustc is not installed"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo_root/Cargo.toml" | head -n 1)"
label="mlmodel.binary-sha256"

command -v docker >/dev/null 2>&1 || die "the docker client is not installed"
docker info >/dev/null 2>&1 ||
	die "the Docker daemon does not answer 'docker info' (run scripts/swarm-up.sh first)"

log "compiling mlmodel (release, static, $triple)"
# The target is named so that RUSTFLAGS reach only the binary's build, not
# build scripts and proc macros (which must stay dynamic to be loaded).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
	cargo build --release --locked --bin mlmodel --target "$triple" \
	--target-dir "$target_dir" --manifest-path "$repo_root/Cargo.toml" >&2 ||
	die "cargo build failed (a static glibc build needs libc6-dev, which provides libc.a)"
binary="$target_dir/$triple/release/mlmodel"
if command -v ldd >/dev/null 2>&1 && ldd "$binary" 2>&1 | grep -q '=>'; then
	die "$binary is dynamically linked; it would not run in a FROM scratch image"
fi
hash="$(sha256sum "$binary" | cut -d' ' -f1)"

current="$(docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$image:$version" 2>/dev/null || true)"
if [[ $current == "$hash" ]]; then
	log "$image:$version up to date (binary sha256 ${hash:0:12})"
else
	context="$(mktemp -d)"
	trap 'rm -rf "$context"' EXIT
	cp "$binary" "$context/mlmodel"
	cp "$repo_root/deploy/mlmodel.Dockerfile" "$context/Dockerfile"
	if ! docker buildx version >/dev/null 2>&1; then
		# Without the buildx plugin, BuildKit cannot run: use the legacy builder.
		export DOCKER_BUILDKIT=0
	fi
	log "building $image:$version"
	docker build --label "$label=$hash" --tag "$image:$version" "$context" >&2 ||
		die "docker build failed"
fi
[[ "$(docker image inspect --format '{{.Id}}' "$image:latest" 2>/dev/null || true)" == \
	"$(docker image inspect --format '{{.Id}}' "$image:$version")" ]] ||
	docker tag "$image:$version" "$image:latest"
log "ready: $image:$version ($image:latest)"
