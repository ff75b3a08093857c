#!/usr/bin/env bash
# Smoke test of a PostgreSQL image the way testcontainers-go's postgres
# module uses it, and of port publishing on this Docker engine:
#
#   .ci/postgres-image-check.sh [IMAGE]    default IMAGE: txoutbox-postgres:15
#
# Starts IMAGE with POSTGRES_PASSWORD/POSTGRES_DB, `postgres -c fsync=off`
# as the command and 5432 published on a random loopback port; then checks
# that "database system is ready to accept connections" is logged exactly
# twice, that the host reaches the server through the published port with
# the password (and not with a wrong one), that the database exists and the
# -c setting applies, and that `docker stop` returns quickly (the stop
# signal reaches postgres as PID 1). Removes the container in any case.
# Needs docker, pg_isready and psql on the host.
set -euo pipefail

IMAGE="${1:-txoutbox-postgres:15}"
READY_LINE='database system is ready to accept connections'
START_TIMEOUT=60 # seconds
STOP_LIMIT=5     # seconds

cid=
cleanup() {
	if [[ -n "$cid" ]]; then
		docker rm -f -v "$cid" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT

fail() {
	echo "error: $IMAGE: $*" >&2
	if [[ -n "$cid" ]]; then
		echo "---- container log ----" >&2
		docker logs "$cid" 2>&1 | tail -n 40 >&2 || true
	fi
	exit 1
}

ready_count() { docker logs "$cid" 2>&1 | grep -cF "$READY_LINE" || true; }

docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "no such image (build it with .ci/postgres-image.sh)"
begin=$SECONDS
cid="$(docker run -d --pull never -p 127.0.0.1::5432 -e POSTGRES_PASSWORD=secret -e POSTGRES_DB=app \
	"$IMAGE" postgres -c fsync=off)"
port="$(docker port "$cid" 5432/tcp | head -n 1)"
port="${port##*:}"
[[ "$port" =~ ^[0-9]+$ ]] || fail "no published port for 5432/tcp (docker port said '$port')"

deadline=$((SECONDS + START_TIMEOUT))
until (($(ready_count) >= 2)); do
	if [[ "$(docker inspect -f '{{.State.Running}}' "$cid")" != true ]]; then
		fail "container exited during startup"
	fi
	((SECONDS < deadline)) || fail "not ready (twice) within ${START_TIMEOUT}s"
	sleep 0.2
done
started=$((SECONDS - begin))

pg_isready -q -t 10 -h 127.0.0.1 -p "$port" || fail "pg_isready fails on published port 127.0.0.1:$port"
got="$(PGPASSWORD=secret PGCONNECT_TIMEOUT=10 psql -h 127.0.0.1 -p "$port" -U postgres -d app -X -At \
	-c "select current_database() || ' ' || current_setting('fsync')")" ||
	fail "psql with the password fails on 127.0.0.1:$port"
[[ "$got" == "app off" ]] || fail "expected database app with fsync off, got '$got'"
if PGPASSWORD=wrong PGCONNECT_TIMEOUT=10 psql -h 127.0.0.1 -p "$port" -U postgres -d app -X -At -c 'select 1' >/dev/null 2>&1; then
	fail "a wrong password is accepted"
fi
n="$(ready_count)"
((n == 2)) || fail "'$READY_LINE' logged $n times, want exactly 2"

stop_begin=$SECONDS
docker stop -t 30 "$cid" >/dev/null
stopped=$((SECONDS - stop_begin))
((stopped <= STOP_LIMIT)) || fail "docker stop took ${stopped}s (signals do not reach postgres?)"
code="$(docker inspect -f '{{.State.ExitCode}}' "$cid")"
[[ "$code" == 0 ]] || fail "exit code $code after docker stop, want 0"

echo "$IMAGE ok: ready twice after ${started}s, password login on published port 127.0.0.1:$port, stopped in ${stopped}s"
