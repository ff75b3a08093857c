#!/usr/bin/env bash
# Makes sure a Docker engine answers on this machine, for the container test
# path: installs docker.io and debootstrap (for .ci/postgres-image.sh) from
# the machine's apt sources when missing, and starts dockerd in the
# background when `docker info` fails. Idempotent: a second run only checks.
#
#   DOCKERD_LOG      dockerd's log file (default /var/log/txoutbox-dockerd.log)
#   DOCKERD_TIMEOUT  seconds to wait for the engine (default 60)
#   DOCKERD_FLAGS    extra dockerd flags for the first attempt (default none)
#
# On this CI machine kind (Debian bookworm VM, cgroup v1, ext4 root, kernel
# with nf_tables) dockerd 20.10 from Debian works with its defaults: overlay2
# storage and iptables NAT, so published ports reach the host's loopback
# (.ci/postgres-image-check.sh verifies that with a real container).
# Should the defaults fail to start, one more attempt is made without
# iptables (published ports then go through docker-proxy alone) and with the
# vfs storage driver (slower, but needs no overlay support).
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/txoutbox-dockerd.log}"
DOCKERD_TIMEOUT="${DOCKERD_TIMEOUT:-60}"
FALLBACK_FLAGS="--iptables=false --storage-driver=vfs"

start=$SECONDS

as_root() {
	if [[ "$(id -u)" != 0 ]]; then
		echo "error: $0 needs root to $*" >&2
		exit 1
	fi
}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
	as_root "install ${missing[*]}"
	pkgs="$(printf '%s\n' "${missing[@]}" | sort -u | paste -sd ' ')"
	echo "installing $pkgs"
	export DEBIAN_FRONTEND=noninteractive
	apt_log="$(mktemp /var/tmp/txoutbox-apt.XXXXXX)"
	# shellcheck disable=SC2086 # pkgs is a word list
	if ! { apt-get -q -o DPkg::Lock::Timeout=120 update &&
		apt-get -q -y -o DPkg::Lock::Timeout=120 --no-install-recommends install $pkgs; } >"$apt_log" 2>&1; then
		tail -n 40 "$apt_log" >&2
		echo "error: could not install $pkgs" >&2
		exit 1
	fi
	rm -f "$apt_log"
	echo "installed $pkgs in $((SECONDS - start))s"
fi

if docker info >/dev/null 2>&1; then
	echo "Docker engine already running: $(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})')"
	exit 0
fi

dockerd_pid() {
	local pid
	pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		echo "$pid"
	fi
}

# wait_ready PID: 0 once `docker info` answers, 1 if PID exits first, 2 if
# the timeout passes first.
wait_ready() {
	local pid="$1" deadline=$((SECONDS + DOCKERD_TIMEOUT))
	while ((SECONDS < deadline)); do
		if docker info >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		sleep 0.5
	done
	return 2
}

# start_dockerd FLAGS...: starts a detached dockerd (its own session, so a
# Ctrl-C on CI does not reach it), prints its pid.
start_dockerd() {
	echo "starting dockerd${*:+ $*} (log: $DOCKERD_LOG)" >&2
	printf '\n==== %s dockerd %s\n' "$(date -u +%FT%TZ)" "$*" >>"$DOCKERD_LOG"
	setsid dockerd "$@" </dev/null >>"$DOCKERD_LOG" 2>&1 &
	echo $!
}

stop_dockerd() {
	local pid="$1"
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 40); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.25
	done
	kill -9 "$pid" 2>/dev/null || true
}

# The log of the latest dockerd attempt.
log_tail() {
	echo "---- last lines of $DOCKERD_LOG (latest attempt) ----" >&2
	awk '/^==== / { n = 0 } { buf[n++] = $0 } END { s = n > 30 ? n - 30 : 0; for (i = s; i < n; i++) print buf[i] }' \
		"$DOCKERD_LOG" >&2 || true
}

as_root "start dockerd"
mkdir -p "$(dirname "$DOCKERD_LOG")"

pid="$(dockerd_pid)"
if [[ -n "$pid" ]]; then
	# A dockerd is already starting (or hanging): wait for it, never start a second.
	echo "dockerd (pid $pid) is running but not answering yet; waiting"
	if ! wait_ready "$pid"; then
		echo "error: dockerd (pid $pid) did not answer within ${DOCKERD_TIMEOUT}s" >&2
		log_tail
		exit 1
	fi
else
	if [[ -n "${DOCKERD_FLAGS:-}" ]]; then
		attempts=("$DOCKERD_FLAGS")
	else
		attempts=("" "$FALLBACK_FLAGS")
	fi
	ready=
	for flags in "${attempts[@]}"; do
		# shellcheck disable=SC2086 # flags is a word list
		pid="$(start_dockerd $flags)"
		rc=0
		wait_ready "$pid" || rc=$?
		if ((rc == 0)); then
			ready=1
			break
		fi
		if ((rc == 1)); then
			echo "error: dockerd ${flags:-(default flags)} exited during startup" >&2
		else
			echo "error: dockerd ${flags:-(default flags)} did not answer within ${DOCKERD_TIMEOUT}s" >&2
		fi
		log_tail
		stop_dockerd "$pid"
	done
	if [[ -z "$ready" ]]; then
		echo "error: no Docker engine (tried: $(printf "'%s' " "${attempts[@]}"); set DOCKERD_FLAGS to try others)" >&2
		exit 1
	fi
fi

echo "Docker engine ready after $((SECONDS - start))s: $(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})'), storage $(docker info -f '{{.Driver}}')"
