#!/usr/bin/env bash
# Entrypoint of the local PostgreSQL image that .ci/postgres-image.sh builds
# (installed there as /usr/local/bin/docker-entrypoint.sh). It follows the
# interface of the official postgres image's entrypoint, which is what
# testcontainers-go's postgres module expects:
#
#   POSTGRES_USER             superuser name (default postgres)
#   POSTGRES_PASSWORD         its password; required unless
#                             POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_DB               database created on first start (default: the user)
#   POSTGRES_HOST_AUTH_METHOD auth method for remote hosts (default: the
#                             server's password_encryption, scram-sha-256)
#   POSTGRES_INITDB_ARGS      extra initdb arguments
#   PGDATA                    data directory (default /var/lib/postgresql/data)
#   *_FILE variants of POSTGRES_USER/PASSWORD/DB/INITDB_ARGS
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once after initdb
#
# The command is `postgres [-c key=value ...]` (flags alone imply postgres).
# On first start it runs initdb, starts a temporary server that listens only
# on the unix socket, creates the database, runs the init scripts and stops
# it again, then execs the real server (as PID 1, as user postgres). Both
# servers log "database system is ready to accept connections", so the line
# appears exactly twice on a first start, once on a restart.
set -Eeo pipefail

log() { printf '%s\n' "$*"; }
error() { printf 'error: %s\n' "$*" >&2; }

# file_env VAR [DEFAULT]: VAR from $VAR, else the contents of ${VAR}_FILE.
file_env() {
	local var="$1" fileVar="${1}_FILE" def="${2:-}"
	if [[ -n "${!var:-}" && -n "${!fileVar:-}" ]]; then
		error "both $var and $fileVar are set (but are exclusive)"
		exit 1
	fi
	local val="$def"
	if [[ -n "${!var:-}" ]]; then
		val="${!var}"
	elif [[ -n "${!fileVar:-}" ]]; then
		val="$(<"${!fileVar}")"
	fi
	export "$var"="$val"
	unset "$fileVar"
}

# True when the arguments only ask postgres for help or its version.
want_help() {
	local arg
	for arg; do
		case "$arg" in
		-'?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

setup_env() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
	DATABASE_ALREADY_EXISTS=
	if [[ -s "$PGDATA/PG_VERSION" ]]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

create_db_directories() {
	local user
	user="$(id -u)"
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [[ "$user" == 0 ]]; then
		find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
	fi
}

verify_minimum_env() {
	if [[ -z "$POSTGRES_PASSWORD" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
		cat >&2 <<-'EOE'
			error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.
		EOE
		exit 1
	fi
	if [[ "$POSTGRES_HOST_AUTH_METHOD" == trust ]]; then
		log 'warning: POSTGRES_HOST_AUTH_METHOD=trust: all connections are allowed without a password'
	fi
}

init_database_dir() {
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list, as in the official image
	if [[ -n "$POSTGRES_PASSWORD" ]]; then
		# The process substitution must be on the initdb command itself:
		# its file descriptor only lives as long as that command.
		initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
	else
		initdb --username="$POSTGRES_USER" $POSTGRES_INITDB_ARGS
	fi
}

# Appends the rule for connections from other hosts (the docker bridge
# included): the same rule the official image writes.
setup_hba_conf() {
	if [[ "${1:-}" == postgres ]]; then shift; fi
	local auth
	auth="$(postgres -C password_encryption "$@")"
	: "${POSTGRES_HOST_AUTH_METHOD:=$auth}"
	{
		printf '\n'
		if [[ "$POSTGRES_HOST_AUTH_METHOD" == trust ]]; then
			printf '# warning trust is enabled for all connections\n'
		fi
		printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
	} >>"$PGDATA/pg_hba.conf"
}

temp_server_start() {
	if [[ "${1:-}" == postgres ]]; then shift; fi
	set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
	PGUSER="${PGUSER:-$POSTGRES_USER}" pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

temp_server_stop() {
	PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

process_sql() {
	local runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
	if [[ -n "$POSTGRES_DB" ]]; then
		runner+=(--dbname "$POSTGRES_DB")
	fi
	PGHOST='' PGHOSTADDR='' "${runner[@]}" "$@"
}

setup_db() {
	local db="$POSTGRES_DB" exists
	exists="$(POSTGRES_DB=postgres process_sql --set db="$db" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
	)"
	if [[ -z "$exists" ]]; then
		POSTGRES_DB=postgres process_sql --set db="$db" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
		log
	fi
}

process_init_files() {
	local f
	for f; do
		case "$f" in
		*.sh)
			if [[ -x "$f" ]]; then
				log "$0: running $f"
				"$f"
			else
				log "$0: sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql) log "$0: running $f"; process_sql -f "$f"; log ;;
		*.sql.gz) log "$0: running $f"; gunzip -c "$f" | process_sql; log ;;
		*.sql.xz) log "$0: running $f"; xzcat "$f" | process_sql; log ;;
		*.sql.zst) log "$0: running $f"; zstd -dc "$f" | process_sql; log ;;
		*) log "$0: ignoring $f" ;;
		esac
	done
}

on_init_signal() {
	log 'signal received during initialisation; stopping'
	if [[ -f "$PGDATA/postmaster.pid" ]]; then
		pg_ctl -D "$PGDATA" -m immediate -w stop || :
	fi
	exit 143
}

main() {
	if [[ "${1:0:1}" == '-' ]]; then
		set -- postgres "$@"
	fi

	if [[ "${1:-}" == postgres ]] && ! want_help "$@"; then
		setup_env
		create_db_directories
		if [[ "$(id -u)" == 0 ]]; then
			# Start again as user postgres; setpriv execs, so PID 1 stays.
			exec setpriv --reuid=postgres --regid=postgres --init-groups \
				env HOME=/var/lib/postgresql "${BASH_SOURCE[0]}" "$@"
		fi

		if [[ -z "$DATABASE_ALREADY_EXISTS" ]]; then
			# The shell is PID 1 until it execs postgres: without a trap
			# `docker stop` during initialisation would wait for SIGKILL.
			trap on_init_signal INT TERM
			verify_minimum_env
			init_database_dir
			setup_hba_conf "$@"

			export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
			temp_server_start "$@"
			setup_db
			shopt -s nullglob
			process_init_files /docker-entrypoint-initdb.d/*
			shopt -u nullglob
			temp_server_stop
			unset PGPASSWORD
			trap - INT TERM

			log
			log 'PostgreSQL init process complete; ready for start up.'
			log
		else
			log
			log 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
			log
		fi
	fi

	exec "$@"
}

main "$@"
