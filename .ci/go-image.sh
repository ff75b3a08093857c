#!/usr/bin/env bash
# Builds a local Go builder image for the Dockerfile's build stage (its
# GO_IMAGE argument) without any container registry: this machine's Go
# toolchain (`go env GOROOT`) and a module proxy directory holding exactly
# the modules `go mod download` needs for go.mod, imported with
# `docker import`. Prints the image's name on standard output (progress
# goes to standard error):
#
#   GO_IMAGE="$(.ci/go-image.sh)" scripts/image.sh
#
# The name is txoutbox-go:<go version>-<hash of go.mod and go.sum>, so a
# new toolchain or a changed go.sum builds a new image; an existing one is
# reused (REBUILD=1 forces a rebuild), and older txoutbox-go images are
# removed after a build. The modules come from the machine's module cache
# (GOMODCACHE), and from its GOPROXY for any the cache lacks (zips of
# modules that only other platforms build, say): that is the only network
# access, once per go.sum. Inside the image the proxy is a directory
# (GOPROXY=file:///goproxy), so the build itself runs offline.
#
# The image has no shell and no C toolchain (CGO_ENABLED=0): the
# Dockerfile's RUN lines are in exec form and build without cgo. It comes
# with a warm build cache for ./cmd/txoutbox (below). Needs go, tar and a
# running Docker engine (.ci/docker-up.sh); the root file system is put
# together under $TMPDIR_BASE (default /var/tmp) and removed afterwards.
set -euo pipefail

TMPDIR_BASE="${TMPDIR_BASE:-/var/tmp}"
REPO_NAME=txoutbox-go
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export PATH="$PATH:/usr/local/go/bin"
start=$SECONDS

for tool in go docker tar sha256sum; do
	if ! command -v "$tool" >/dev/null; then
		echo "error: $tool not found (.ci/docker-up.sh installs and starts Docker)" >&2
		exit 1
	fi
done
if [[ ! -s "$CA_BUNDLE" ]]; then
	# The final stage copies it from the build stage, as from the
	# official golang image.
	echo "error: no CA bundle at $CA_BUNDLE (apt-get install ca-certificates)" >&2
	exit 1
fi

go_version="$(go env GOVERSION)"
goroot="$(go env GOROOT)"
sum="$(cat "$repo/go.mod" "$repo/go.sum" | sha256sum | cut -c1-12)"
IMAGE="$REPO_NAME:${go_version#go}-$sum"

old_id="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
if [[ -n "$old_id" && "${REBUILD:-}" != 1 ]]; then
	echo "image $IMAGE already exists (REBUILD=1 to rebuild)" >&2
	echo "$IMAGE"
	exit 0
fi
echo "building $IMAGE from $goroot ($go_version) and the modules of go.sum" >&2

workdir="$(mktemp -d "$TMPDIR_BASE/txoutbox-go-image.XXXXXX")"
warm="txoutbox-go-warm-$$"
cleanup() {
	docker rm -f "$warm" >/dev/null 2>&1 || true
	docker rmi "$IMAGE-cold" >/dev/null 2>&1 || true
	# The module cache is read-only, as go leaves it.
	chmod -R u+w "$workdir" 2>/dev/null || true
	rm -rf "$workdir"
}
trap cleanup EXIT
rootfs="$workdir/rootfs"
mkdir -p "$rootfs/usr/local" "$rootfs/tmp" "$rootfs/root" "$rootfs/go" "$rootfs/etc/ssl/certs"
chmod 1777 "$rootfs/tmp"

# The toolchain, without its own tests and API lists (nothing the build
# stage runs reads them).
echo "--> toolchain" >&2
tar -C "$goroot" --exclude=./test --exclude=./api -c . | { mkdir "$rootfs/usr/local/go" && tar -C "$rootfs/usr/local/go" -x; }
test -x "$rootfs/usr/local/go/bin/go"

# The modules: `go mod download` for a copy of go.mod and go.sum, into a
# cache of its own, whose cache/download directory is in the layout of a
# module proxy. GOFLAGS is cleared: the machine's own flags are not the
# image's business.
echo "--> modules" >&2
mkdir "$workdir/module"
cp "$repo/go.mod" "$repo/go.sum" "$workdir/module/"
host_proxy="$(go env GOPROXY)"
host_cache="$(go env GOMODCACHE)"
if ! (cd "$workdir/module" && env GOFLAGS= GOMODCACHE="$workdir/modcache" \
	GOPROXY="file://$host_cache/cache/download,$host_proxy" \
	go mod download) >"$workdir/download.log" 2>&1; then
	tail -n 40 "$workdir/download.log" >&2
	echo "error: go mod download failed" >&2
	exit 1
fi
cp -r "$workdir/modcache/cache/download" "$rootfs/goproxy"
# Only what a proxy serves: no lock files, no partial downloads.
find "$rootfs/goproxy" -type f ! \( -name '*.info' -o -name '*.mod' -o -name '*.zip' -o -name list \) -delete
echo "    $(du -sh "$rootfs/goproxy" | cut -f1) of modules" >&2

cp "$CA_BUNDLE" "$rootfs$CA_BUNDLE"

echo "--> docker import $IMAGE" >&2
# As the official golang image: the toolchain on PATH, GOPATH=/go. The
# proxy is the directory, and no other: a module missing there fails the
# build instead of reaching out.
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -c . |
	docker import \
		--change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV GOPATH=/go' \
		--change 'ENV HOME=/root' \
		--change 'ENV GOTOOLCHAIN=local' \
		--change 'ENV CGO_ENABLED=0' \
		--change 'ENV GOPROXY=file:///goproxy' \
		--change 'LABEL org.txoutbox.builder=go-image' \
		--change "LABEL org.opencontainers.image.description=\"txoutbox builder: $go_version and the modules of go.sum $sum, no shell\"" \
		--message "built by .ci/go-image.sh" \
		- "$IMAGE-cold" >/dev/null

# A warm build cache: the image builds ./cmd/txoutbox once, with the
# Dockerfile's settings (CGO_ENABLED=0, -trimpath; -ldflags is the link
# step's alone), and keeps the compiled packages and the unpacked modules.
# A build of the Dockerfile then compiles only the packages that changed:
# those of this module, in CI. Without a network, to prove the proxy
# directory is complete.
echo "--> build cache (go build ./cmd/txoutbox in the image)" >&2
if ! docker run --name "$warm" --network none -v "$repo:/src:ro" -w /src \
	-e GOFLAGS='-trimpath -buildvcs=false' \
	"$IMAGE-cold" go build -o /dev/null ./cmd/txoutbox >"$workdir/warm.log" 2>&1; then
	tail -n 40 "$workdir/warm.log" >&2
	echo "error: go build in the image failed" >&2
	exit 1
fi
# The run's command, directory and GOFLAGS are not the image's.
docker commit --change 'CMD ["go", "version"]' --change 'WORKDIR /' --change 'ENV GOFLAGS=' "$warm" "$IMAGE" >/dev/null

# Older builder images go, unless a container still uses them: a rebuild's
# predecessor, now untagged, and those of other toolchains or go.sums.
if [[ -n "$old_id" && "$old_id" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]]; then
	docker rmi "$old_id" >/dev/null 2>&1 || true
fi
docker image ls "$REPO_NAME" --format '{{.Repository}}:{{.Tag}}' | while read -r old; do
	if [[ "$old" != "$IMAGE" ]]; then
		docker rmi "$old" >/dev/null 2>&1 && echo "removed the older $old" >&2 || true
	fi
done

echo "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')) in $((SECONDS - start))s" >&2
echo "$IMAGE"
