#!/usr/bin/env bash
# Makes sure `promtool` (Prometheus' rule checker) is on PATH, for the
# checks of deploy/prometheus: when missing, takes it from Debian's
# prometheus package, fetched from the machine's apt sources with
# `apt-get download`. Only /usr/bin/promtool is unpacked, into
# /usr/local/bin: installing the package would add the Prometheus server,
# a system user and a service that nothing here needs. promtool is a
# static Go program, so it needs none of the package's dependencies.
# Idempotent: a second run only prints the version.
set -euo pipefail

if command -v promtool >/dev/null; then
	promtool --version 2>&1 | head -n 1
	exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
	echo "error: $0 needs root to put promtool into /usr/local/bin (or install Debian's prometheus package)" >&2
	exit 1
fi
start=$SECONDS
work="$(mktemp -d "${TMPDIR:-/tmp}/txoutbox-promtool.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! (cd "$work" && apt-get -q -o DPkg::Lock::Timeout=120 update && apt-get -q download prometheus) >"$work/apt.log" 2>&1; then
	tail -n 20 "$work/apt.log" >&2
	echo "error: could not download Debian's prometheus package" >&2
	exit 1
fi
deb="$(ls "$work"/prometheus_*.deb)"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" ./usr/bin/promtool
install -m 0755 "$work/usr/bin/promtool" /usr/local/bin/promtool
echo "promtool from $(basename "$deb") in $((SECONDS - start))s: $(promtool --version 2>&1 | head -n 1)"
