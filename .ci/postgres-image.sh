#!/usr/bin/env bash
# Builds a local PostgreSQL image for the container test path without any
# container registry: a minbase Debian root made by debootstrap from the
# machine's own apt mirror, with postgresql-$PG_MAJOR and an entrypoint
# compatible with the official postgres image (.ci/postgres-entrypoint.sh),
# imported with `docker import`.
#
#   .ci/postgres-image.sh [IMAGE]        default IMAGE: txoutbox-postgres:15
#
# Does nothing when IMAGE already exists (REBUILD=1 forces a rebuild).
# Needs root, debootstrap and a running Docker engine (.ci/docker-up.sh).
# The root file system is built under $TMPDIR_BASE (default /var/tmp),
# outside the repository, and removed afterwards.
set -euo pipefail

IMAGE="${1:-txoutbox-postgres:15}"
SUITE="${SUITE:-bookworm}"
PG_MAJOR="${PG_MAJOR:-15}"
TMPDIR_BASE="${TMPDIR_BASE:-/var/tmp}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
start=$SECONDS

old_id="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
if [[ -n "$old_id" && "${REBUILD:-}" != 1 ]]; then
	echo "image $IMAGE already exists (REBUILD=1 to rebuild)"
	exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
	echo "error: $0 must run as root (debootstrap and chroot)" >&2
	exit 1
fi
for tool in debootstrap docker chroot tar; do
	if ! command -v "$tool" >/dev/null; then
		echo "error: $tool not found (run .ci/docker-up.sh, which installs docker.io and debootstrap)" >&2
		exit 1
	fi
done

# Mirrors from this machine's apt sources; updates and security are
# optional, the main suite is not.
mirror="$("$here/apt-sources.sh" --mirror "$SUITE")"
updates="$("$here/apt-sources.sh" --mirror "$SUITE-updates" 2>/dev/null || true)"
security="$("$here/apt-sources.sh" --mirror "$SUITE-security" 2>/dev/null || true)"
echo "building $IMAGE from $SUITE at $mirror (postgresql-$PG_MAJOR)"

workdir="$(mktemp -d "$TMPDIR_BASE/txoutbox-postgres-image.XXXXXX")"
rootfs="$workdir/rootfs"
cleanup() {
	# Nothing is mounted into the root; a failed debootstrap may still
	# have left its own mounts behind, so unmount anything under it.
	local m
	if [[ -d "$rootfs" ]]; then
		while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done < <(awk -v r="$rootfs" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r)
	fi
	rm -rf "$workdir"
}
trap cleanup EXIT

include=()
if [[ "$mirror $updates $security" == *https://* ]]; then
	include=(--include=ca-certificates) # for apt inside the root
fi
echo "--> debootstrap --variant=minbase ${include[*]:+${include[*]} }$SUITE $rootfs $mirror"
if ! debootstrap --variant=minbase "${include[@]}" "$SUITE" "$rootfs" "$mirror" >"$workdir/debootstrap.log" 2>&1; then
	tail -n 40 "$workdir/debootstrap.log" >&2
	tail -n 40 "$rootfs/debootstrap/debootstrap.log" 2>/dev/null >&2 || true
	echo "error: debootstrap failed" >&2
	exit 1
fi
echo "    done after $((SECONDS - start))s"

{
	echo "deb $mirror $SUITE main"
	if [[ -n "$updates" ]]; then echo "deb $updates $SUITE-updates main"; fi
	if [[ -n "$security" ]]; then echo "deb $security $SUITE-security main"; fi
} >"$rootfs/etc/apt/sources.list"
rm -f "$rootfs"/etc/apt/sources.list.d/*
# No services are started while packages install.
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"

in_root() {
	chroot "$rootfs" /usr/bin/env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
apt_in_root() {
	if ! in_root apt-get -q -y -o Dpkg::Use-Pty=0 --no-install-recommends "$@" >>"$workdir/apt.log" 2>&1; then
		tail -n 40 "$workdir/apt.log" >&2
		echo "error: apt-get $* failed in the image root" >&2
		exit 1
	fi
}

echo "--> apt-get install postgresql-$PG_MAJOR"
apt_in_root update
# As in the official image: no Debian-style "main" cluster, the entrypoint
# creates the cluster in $PGDATA instead.
apt_in_root install postgresql-common
sed -ri 's/^#?\s*(create_main_cluster)\s*=.*$/\1 = false/' "$rootfs/etc/postgresql-common/createcluster.conf"
grep -q '^create_main_cluster = false' "$rootfs/etc/postgresql-common/createcluster.conf"
apt_in_root install "postgresql-$PG_MAJOR"
echo "    done after $((SECONDS - start))s"

pgbin="/usr/lib/postgresql/$PG_MAJOR/bin"
test -x "$rootfs$pgbin/postgres"
# shellcheck disable=SC2016 # ${Version} is dpkg-query's, not ours
pg_version="$(in_root dpkg-query -W -f '${Version}' "postgresql-$PG_MAJOR")"

# Listen on all interfaces by default (initdb copies the sample).
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" \
	"$rootfs/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"
grep -q "^listen_addresses = '\*'" "$rootfs/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"

install -m 0755 "$here/postgres-entrypoint.sh" "$rootfs/usr/local/bin/docker-entrypoint.sh"
in_root sh -eu -c '
	mkdir -p /docker-entrypoint-initdb.d /var/lib/postgresql/data /var/run/postgresql
	chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
	chmod 0700 /var/lib/postgresql/data
	chmod 03775 /var/run/postgresql
'

# Slim the root: caches, docs, build-time leftovers.
in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
	"$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
	"$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs/debootstrap" \
	"$rootfs/usr/sbin/policy-rc.d"
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"

echo "--> docker import $IMAGE"
# `docker import` (Docker 20.10 as in Debian bookworm) cannot set
# STOPSIGNAL, so the import gets a temporary tag and a one-line local build
# (no registry involved: the base is local) adds it. SIGINT is postgres'
# fast shutdown, as in the official image; SIGTERM would wait for clients.
base="${IMAGE%%:*}-rootfs:import-$$"
path="/usr/local/sbin:/usr/local/bin:$pgbin:/usr/sbin:/usr/bin:/sbin:/bin"
tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
	docker import \
		--change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
		--change 'CMD ["postgres"]' \
		--change "ENV PATH=$path" \
		--change 'ENV LANG=C.UTF-8' \
		--change "ENV PG_MAJOR=$PG_MAJOR" \
		--change "ENV PG_VERSION=$pg_version" \
		--change 'ENV PGDATA=/var/lib/postgresql/data' \
		--change 'EXPOSE 5432' \
		--change "LABEL org.opencontainers.image.description=\"txoutbox CI PostgreSQL $pg_version ($SUITE minbase)\"" \
		--message "built by .ci/postgres-image.sh from $mirror" \
		- "$base" >/dev/null
mkdir "$workdir/context"
printf 'FROM %s\nSTOPSIGNAL SIGINT\n' "$base" >"$workdir/context/Dockerfile"
if ! DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$workdir/context" >"$workdir/build.log" 2>&1; then
	cat "$workdir/build.log" >&2
	docker rmi "$base" >/dev/null 2>&1 || true
	echo "error: docker build (STOPSIGNAL layer) failed" >&2
	exit 1
fi
docker rmi "$base" >/dev/null
# A rebuild leaves the previous image untagged: remove it unless in use.
if [[ -n "$old_id" && "$old_id" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]]; then
	docker rmi "$old_id" >/dev/null 2>&1 || true
fi

docker image ls "$IMAGE"
echo "built $IMAGE (PostgreSQL $pg_version) in $((SECONDS - start))s"
