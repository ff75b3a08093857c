#!/usr/bin/env bash
# The README's first command, run the way a newcomer runs it: from the
# repository root of a fresh clone, with nothing configured.
#
#   .ci/newcomer.sh
#
# Takes the command from README.md (the first ```sh block under "## The two
# commands"), so the README and this check cannot drift apart, and runs it
# with DATABASE_URL, TXOUTBOX_TEST_DATABASE_URL and the other TXOUTBOX_*
# variables unset: the quickstart then starts its own throwaway PostgreSQL
# server (a container when a Docker engine answers and the image is there or
# can be pulled, else a cluster from the local server binaries). Fails
# unless the output shows the server it used and the story's key lines,
# and unless the run left no server, container or temporary directory
# behind. Needs go on PATH; takes a few seconds (plus a first build).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"

fail() {
	echo "newcomer: $*" >&2
	exit 1
}

# The command, exactly as the README gives it.
cmd="$(awk '
	/^## The two commands/ { section = 1; next }
	/^## / { section = 0 }
	section && /^```sh/ { inblock = 1; next }
	inblock && /^```/ { exit }
	inblock { print }
' README.md)"
[[ -n "$cmd" ]] || fail 'README.md has no ```sh block under "## The two commands"'
[[ "$(wc -l <<<"$cmd")" -eq 1 && "$cmd" == "go run "* ]] ||
	fail "README.md's first command is not a single go run line: $cmd"
echo "README.md's first command: $cmd"

# What a run could leave behind, before and after. A local cluster's
# directory names its owner's pid (owner.pid); those of processes still
# running belong to someone else on this machine (a developer's tests), not
# to the finished run, and are not counted.
owned_by_live_process() {
	local pid
	pid="$(cat "$1/owner.pid" 2>/dev/null)" || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}
postmasters() {
	ps -eo pid=,args= | awk '$2 ~ /(^|\/)postgres$/ && / -D / { $1 = $1; print }' | sort |
		while read -r line; do
			dir="$(sed -E 's/.* -D ([^ ]+).*/\1/' <<<"$line")"
			owned_by_live_process "$(dirname "$dir")" || echo "$line"
		done
}
temp_entries() {
	local e
	for e in "${TMPDIR:-/tmp}"/txoutbox-* /dev/shm/txoutbox-*; do
		[[ -e "$e" ]] || continue
		owned_by_live_process "$e" || echo "$e"
	done | sort
}
containers() {
	if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
		# The label is host/boot-id/pid of the process that started it.
		docker ps -a --filter label=org.txoutbox.throwaway.owner \
			--format '{{.ID}} {{.Label "org.txoutbox.throwaway.owner"}}' |
			while read -r id owner; do
				pid="${owner##*/}"
				[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || echo "$id"
			done | sort
	fi
}
pm_before="$(postmasters)"
tmp_before="$(temp_entries)"
ctr_before="$(containers)"

log="$(mktemp "${TMPDIR:-/tmp}/newcomer-log.XXXXXX")"
trap 'rm -f "$log"' EXIT
begin=$SECONDS
status=0
env -u DATABASE_URL -u TXOUTBOX_TEST_DATABASE_URL -u TXOUTBOX_TEST_POSTGRES_IMAGE -u TXOUTBOX_TEST_SOURCE \
	timeout 600 bash -c "$cmd" >"$log" 2>&1 || status=$?
cat "$log"
echo "newcomer: the command took $((SECONDS - begin))s and exited $status"
((status == 0)) || fail "the README's first command failed (exit $status)"

ok=1
expect() {
	if ! grep -qE -- "$1" "$log"; then
		echo "newcomer: the output lacks a line matching: $1" >&2
		ok=
	fi
}
expect '^  postgres +DATABASE_URL is not set: starting a throwaway PostgreSQL server'
expect '^  postgres +started (a .* container|a local cluster from )'
expect 'client +POST /signup'
expect '201 Created in [0-9.]+m?s: user 1, and in the same transaction #1 welcome email'
expect '200 OK in [0-9.]+m?s: user 1 existed; 3 of 3 entries were already queued under the same keys, nothing new'
expect 'partner +webhook-id user\.created:1: signature valid; answered 503'
expect '\(partner webhook\) attempt 1 failed: webhook: endpoint "partner"'
expect '\(partner webhook\) done on attempt 2'
expect 'smtp +accepted "Welcome, ada" for ada@example\.com, Message-ID <txoutbox\.'
expect '\(invoice PDF\) done on attempt 1'
expect '\(reminder email, due in 3s\) done on attempt 1'
expect 'Duplicates: 2 signup requests, 1 user; 2 emails for 2 Message-IDs; 2 webhook requests for 1 webhook-id, acted on once\.'
expect 'The database: 1 user, 1 order, 4 entries done, 0 pending, 0 dead\.'

new_pm="$(comm -13 <(echo "$pm_before") <(postmasters) | sed '/^$/d')"
[[ -z "$new_pm" ]] || { echo "newcomer: postmasters left running: $new_pm" >&2; ok=; }
new_tmp="$(comm -13 <(echo "$tmp_before") <(temp_entries) | sed '/^$/d')"
[[ -z "$new_tmp" ]] || { echo "newcomer: left behind: $new_tmp" >&2; ok=; }
new_ctr="$(comm -13 <(echo "$ctr_before") <(containers) | sed '/^$/d')"
[[ -z "$new_ctr" ]] || { echo "newcomer: containers left behind: $new_ctr" >&2; ok=; }

[[ -n "$ok" ]] || fail "the output or the machine is not as a newcomer should find it"
echo "newcomer: ok"
