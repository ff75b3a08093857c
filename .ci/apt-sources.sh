#!/usr/bin/env bash
# Prints the machine's enabled binary apt sources, one "URI SUITE" pair per
# line, read from /etc/apt/sources.list, /etc/apt/sources.list.d/*.list
# (one-line format) and /etc/apt/sources.list.d/*.sources (deb822 format).
# Files with other suffixes (e.g. *.disabled) are ignored, as apt does.
#
#   .ci/apt-sources.sh                 all pairs
#   .ci/apt-sources.sh --mirror SUITE  the URI of the first source that
#                                      serves SUITE exactly (e.g. bookworm),
#                                      exit 1 when there is none
#
# APT_SOURCES_DIR overrides /etc/apt (for testing this script).
set -euo pipefail

apt_dir="${APT_SOURCES_DIR:-/etc/apt}"

list_files() {
	[[ -f "$apt_dir/sources.list" ]] && printf '%s\n' "$apt_dir/sources.list"
	local f
	for f in "$apt_dir"/sources.list.d/*.list; do
		[[ -f "$f" ]] && printf '%s\n' "$f"
	done
	return 0
}

sources_files() {
	local f
	for f in "$apt_dir"/sources.list.d/*.sources; do
		[[ -f "$f" ]] && printf '%s\n' "$f"
	done
	return 0
}

# One-line format: deb [ options ] uri suite [component...]
parse_list() {
	awk '
		{ sub(/#.*/, "") }
		$1 != "deb" { next }
		{
			i = 2
			if ($i ~ /^\[/) {               # skip "[ opt=val ... ]"
				while (i <= NF && $i !~ /\]$/) i++
				i++
			}
			if (i + 1 <= NF) print $i, $(i + 1)
		}
	' "$1"
}

# deb822 format: stanzas separated by blank lines; fields Types, URIs,
# Suites, Enabled. Continuation lines (leading whitespace) belong to
# multi-line fields such as an inline Signed-By key and are skipped.
parse_sources() {
	awk '
		function flush(   nu, ns, u, s, i, j, isdeb, nt, t) {
			if (types != "" && uris != "" && suites != "" && tolower(enabled) != "no") {
				nt = split(types, t, /[ \t]+/)
				isdeb = 0
				for (i = 1; i <= nt; i++) if (t[i] == "deb") isdeb = 1
				if (isdeb) {
					nu = split(uris, u, /[ \t]+/)
					ns = split(suites, s, /[ \t]+/)
					for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
						if (u[i] != "" && s[j] != "") print u[i], s[j]
				}
			}
			types = uris = suites = enabled = ""
		}
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		/^[ \t]/   { next }
		{
			key = tolower($0); sub(/:.*/, "", key)
			val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
			if (key == "types") types = val
			else if (key == "uris") uris = val
			else if (key == "suites") suites = val
			else if (key == "enabled") enabled = val
		}
		END { flush() }
	' "$1"
}

all_sources() {
	local f
	while IFS= read -r f; do parse_list "$f"; done < <(list_files)
	while IFS= read -r f; do parse_sources "$f"; done < <(sources_files)
}

case "${1:-}" in
"")
	all_sources
	;;
--mirror)
	suite="${2:?usage: $0 --mirror SUITE}"
	uri="$(all_sources | awk -v s="$suite" '$2 == s && !found++ { print $1 }')"
	if [[ -z "$uri" ]]; then
		echo "no enabled 'deb' source for suite '$suite' in $apt_dir/sources.list{,.d/*.list,.d/*.sources}" >&2
		exit 1
	fi
	printf '%s\n' "${uri%/}"
	;;
*)
	echo "usage: $0 [--mirror SUITE]" >&2
	exit 2
	;;
esac
