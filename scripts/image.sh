#!/usr/bin/env bash
# Builds the txoutbox container image from the Dockerfile at the repository
# root and prints its name and size.
#
#   scripts/image.sh                         txoutbox:<version>
#   scripts/image.sh --tag registry.example.com/txoutbox:0.1.0
#
#   VERSION    the version (what `txoutbox version` prints, the image's tag
#              and its org.opencontainers.image.version label); default
#              `git describe --tags --always --dirty`, else "dev"
#   GO_IMAGE   the build stage's base (the Dockerfile's default: the
#              official golang image). Without a registry, build one from
#              this machine's toolchain: GO_IMAGE="$(.ci/go-image.sh)"
#
# Uses BuildKit when the docker command has it (buildx), else the classic
# builder; the Dockerfile works with both.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

tag=
while (($#)); do
	case "$1" in
	--tag)
		tag="${2:?usage: $0 [--tag NAME[:TAG]]}"
		shift 2
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "usage: $0 [--tag NAME[:TAG]]" >&2
		exit 2
		;;
	esac
done

version="${VERSION:-}"
revision=
if git rev-parse --git-dir >/dev/null 2>&1; then
	revision="$(git rev-parse HEAD)"
	[[ -n "$version" ]] || version="$(git describe --tags --always --dirty)"
fi
version="${version:-dev}"
# An image tag is at most 128 of [A-Za-z0-9_.-], not starting with . or -.
if [[ ! "$version" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
	echo "error: VERSION $version cannot be an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]*)" >&2
	exit 2
fi
tag="${tag:-txoutbox:$version}"

args=(--tag "$tag" --build-arg "VERSION=$version" --build-arg "REVISION=$revision")
if [[ -n "${GO_IMAGE:-}" ]]; then
	args+=(--build-arg "GO_IMAGE=$GO_IMAGE")
fi
if [[ -z "${DOCKER_BUILDKIT:-}" ]] && ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi

start=$SECONDS
echo "building $tag (version $version${GO_IMAGE:+, build stage on $GO_IMAGE})" >&2
docker build "${args[@]}" .
size="$(docker image inspect -f '{{.Size}}' "$tag")"
echo "built $tag in $((SECONDS - start))s: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f MB", s / 1e6 }'))"
