#!/usr/bin/env bash
# Runs the txoutbox image (the Dockerfile's, built by scripts/image.sh)
# against this machine's PostgreSQL, as a deployment runs it:
#
#   .ci/image-check.sh IMAGE
#
#   1. The image: at most MAX_IMAGE_MB, a numeric non-root user, txoutbox
#      as the entrypoint, no shell, `version` answering, the OCI labels.
#   2. `migrate up` on a scratch database (dropped at the end).
#   3. `relay` with its configuration mounted read-only, a read-only root
#      file system and a webhook handler whose receiver
#      (.ci/webhook-receiver.go, on a loopback port) holds each request for
#      a few seconds; /readyz answers 200 and /metrics the table's gauges.
#   4. `enqueue` from the image; while the delivery is in flight, `docker
#      stop` (SIGTERM): the relay finishes it and exits 0 within the grace
#      period; the entry is done, and `status` from the image says so.
#
# The containers use the host's network (--network host): PostgreSQL at
# 127.0.0.1:5432 as user postgres (PGHOST, PGPORT and PGUSER override),
# the endpoints on a free loopback port. Needs docker, go, psql and curl.
# Removes what it started and the scratch database in any case.
set -euo pipefail

IMAGE="${1:?usage: $0 IMAGE}"
# The bound on the image's size: the binary (about 24 MB stripped) and the
# CA bundle, with room for the binary to grow by half.
MAX_IMAGE_MB=40
HOLD=3             # seconds the receiver holds each request
GRACE=30           # docker stop's grace period, seconds
SHUTDOWN_TIMEOUT=20s # relay.shutdown_timeout: below GRACE
READY_TIMEOUT=60   # seconds for /readyz
DONE_TIMEOUT=60    # seconds for the entry to arrive at the receiver

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"

db="txoutbox_image_$$_$RANDOM"
url="postgres://$PGUSER@$PGHOST:$PGPORT/$db?sslmode=disable"
name="txoutbox-image-check-$$"
work="$(mktemp -d "${TMPDIR:-/tmp}/txoutbox-image-check.XXXXXX")"
receiver_pid=
db_created=
begin=$SECONDS

cleanup() {
	docker rm -f "$name" >/dev/null 2>&1 || true
	if [[ -n "$receiver_pid" ]]; then
		kill "$receiver_pid" 2>/dev/null || true
		wait "$receiver_pid" 2>/dev/null || true
	fi
	if [[ -n "$db_created" ]]; then
		psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "error: $IMAGE: $*" >&2
	if docker inspect "$name" >/dev/null 2>&1; then
		echo "---- relay log ----" >&2
		docker logs "$name" 2>&1 | tail -n 40 >&2 || true
	fi
	if [[ -s "$work/receiver.log" ]]; then
		echo "---- receiver log ----" >&2
		tail -n 20 "$work/receiver.log" >&2
	fi
	exit 1
}

# txoutbox ARGS...: the image's command, once, on the host's network.
txoutbox() { docker run --rm --pull never --network host -e DATABASE_URL="$url" "$IMAGE" "$@"; }

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
	local timeout="$1" what="$2" deadline=$((SECONDS + $1))
	shift 2
	until "$@"; do
		((SECONDS < deadline)) || fail "no $what within ${timeout}s"
		sleep 0.2
	done
}

free_port() {
	local port
	for _ in $(seq 1 50); do
		port=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

echo "--> the image"
docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "no such image (build it with scripts/image.sh)"
size="$(docker image inspect -f '{{.Size}}' "$IMAGE")"
size_mb="$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')"
((size <= MAX_IMAGE_MB * 1000000)) || fail "$size_mb MB, more than the bound of $MAX_IMAGE_MB MB"
user="$(docker image inspect -f '{{.Config.User}}' "$IMAGE")"
[[ "$user" =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] || fail "runs as user '$user', want a numeric non-root uid"
entrypoint="$(docker image inspect -f '{{json .Config.Entrypoint}}' "$IMAGE")"
[[ "$entrypoint" == '["/usr/local/bin/txoutbox"]' ]] || fail "entrypoint $entrypoint"
for label in title source version revision; do
	value="$(docker image inspect -f "{{index .Config.Labels \"org.opencontainers.image.$label\"}}" "$IMAGE")"
	[[ -n "$value" ]] || fail "no org.opencontainers.image.$label label"
done
if docker run --rm --pull never --entrypoint /bin/sh "$IMAGE" -c true >/dev/null 2>&1; then
	fail "has a shell (/bin/sh)"
fi
version="$(docker run --rm --pull never "$IMAGE" version)" || fail "version fails"
echo "    $size_mb MB (bound $MAX_IMAGE_MB MB), user $user, no shell, $version"

echo "--> migrate up on the scratch database $db"
psql -X -q -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null || fail "cannot create $db on $PGHOST:$PGPORT"
db_created=1
txoutbox migrate up >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; fail "migrate up failed"; }
tail -n 1 "$work/migrate.log" | sed 's/^/    /'
[[ "$(psql -X -At -d "$db" -c "SELECT to_regclass('outbox_entries') IS NOT NULL")" == t ]] ||
	fail "no outbox_entries table after migrate up"

echo "--> relay (configuration mounted read-only, read-only root file system)"
# Built, not `go run`: a signal to `go run` would not reach the receiver.
go build -o "$work/webhook-receiver" .ci/webhook-receiver.go || fail "cannot build .ci/webhook-receiver.go"
"$work/webhook-receiver" -delay "${HOLD}s" >"$work/receiver.log" 2>&1 &
receiver_pid=$!
wait_for 10 "receiver address" grep -q '^listening ' "$work/receiver.log"
receiver="$(awk '/^listening / { print $2; exit }' "$work/receiver.log")"
listen="127.0.0.1:$(free_port)" || fail "no free loopback port"
mkdir "$work/config"
cat >"$work/config/relay.json" <<EOF
{
  "log": {"format": "json", "level": "info"},
  "relay": {"poll_interval": "1s", "shutdown_timeout": "$SHUTDOWN_TIMEOUT"},
  "handlers": [{"kind": "webhook", "config": {
    "endpoints": {"sink": {"url": "http://$receiver/hook", "secrets_env": ["SINK_WEBHOOK_SECRET"]}},
    "allow_private_networks": true
  }}]
}
EOF
chmod 0755 "$work/config"
chmod 0644 "$work/config/relay.json"
secret="whsec_$(head -c 32 /dev/urandom | base64 -w0)"
docker run -d --pull never --name "$name" --network host --read-only \
	-v "$work/config:/etc/txoutbox:ro" -e DATABASE_URL="$url" -e SINK_WEBHOOK_SECRET="$secret" \
	"$IMAGE" relay --config /etc/txoutbox/relay.json --listen "$listen" >/dev/null
ready() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$listen/readyz")" == 200 ]]; }
wait_for "$READY_TIMEOUT" "200 from /readyz" ready
echo "    /readyz 200 after $((SECONDS - begin))s of the check"

echo "--> enqueue, and SIGTERM while the delivery is in flight"
out="$(txoutbox enqueue webhook.deliver '{"endpoint": "sink", "type": "ci.image", "data": {"n": 1}}' --key ci-image-1)" ||
	fail "enqueue failed: $out"
id="$(sed -nE 's/^enqueued entry ([0-9]+)$/\1/p' <<<"$out")"
[[ -n "$id" ]] || fail "enqueue printed '$out'"
wait_for "$DONE_TIMEOUT" "delivery at the receiver" grep -q '^received ' "$work/receiver.log"
curl -sf "http://$listen/metrics" >"$work/metrics" || fail "/metrics failed"
grep -qx 'txoutbox_database_up 1' "$work/metrics" || fail "/metrics lacks txoutbox_database_up 1"
grep -q '^txoutbox_entries_running{queue="default",topic="webhook.deliver"} 1$' "$work/metrics" ||
	fail "/metrics does not show the running entry"
stop_begin=$SECONDS
docker stop -t "$GRACE" "$name" >/dev/null
stopped=$((SECONDS - stop_begin))
code="$(docker inspect -f '{{.State.ExitCode}}' "$name")"
((code == 0)) || fail "exit code $code after docker stop, want 0"
((stopped < GRACE)) || fail "docker stop took ${stopped}s: the grace period ran out (SIGKILL)"
grep -q '^answered ' "$work/receiver.log" || fail "the in-flight delivery was not answered before the relay stopped"
state="$(psql -X -At -d "$db" -c "SELECT state FROM outbox_entries WHERE id = $id")"
[[ "$state" == done ]] || fail "entry $id is '$state' after the drain, want done"
txoutbox status --json >"$work/status.json" || fail "status failed"
status="$(tr -d ' \n' <"$work/status.json")"
[[ "$status" == *'"done_last_hour":1,'*'"topic":"webhook.deliver"'* ]] ||
	fail "status --json does not show the done webhook.deliver entry: $(cat "$work/status.json")"
echo "    entry $id delivered and done; relay stopped in ${stopped}s (grace ${GRACE}s), exit 0"

echo "$IMAGE ok in $((SECONDS - begin))s"
