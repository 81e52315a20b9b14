# shellcheck shell=bash
# PostgreSQL: our own cluster (Debian's binaries, our data dir), run as the
# `postgres` OS user when we are root. Sourced by stack.sh.

PG_DATA=$DATA_DIR/postgres
PG_SOCKET_DIR=$RUN_DIR/postgres
PG_LOG=$LOG_DIR/postgres.log
PG_CONF=$INFRA_DIR/postgres/postgresql.conf
PG_DB=mlops
PG_ROLE=mlops
POSTGRES_SETTINGS=(POSTGRES_PORT)

# Debian's newest installed server version, e.g. /usr/lib/postgresql/15/bin.
pg_bindir() {
  local dir
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
  [[ -n $dir && -x $dir/postgres ]] || die "postgres: no server binaries under /usr/lib/postgresql; run 'stack.sh install'"
  echo "$dir"
}

# Run a command as the postgres OS user (or as ourselves when not root).
as_pg_user() {
  if ((EUID == 0)); then
    (cd / && setpriv --reuid=postgres --regid=postgres --init-groups --reset-env -- "$@")
  else
    "$@"
  fi
}

# Debian's postinst creates and starts a "main" cluster on 5432. We run our
# own cluster on that port, so theirs must never start.
postgres_disable_debian_cluster() {
  local conf ver
  for conf in /etc/postgresql/*/main/start.conf; do
    [[ -f $conf ]] || continue
    ver=$(basename "$(dirname "$(dirname "$conf")")")
    if pg_lsclusters -h 2>/dev/null | awk -v v="$ver" '$1 == v && $2 == "main" && $4 ~ /online/ {f=1} END {exit !f}'; then
      log "postgres: stopping Debian's cluster $ver/main"
      pg_ctlcluster "$ver" main stop || warn "could not stop Debian's cluster $ver/main"
    fi
    if [[ $(grep -v '^[[:space:]]*#' "$conf" | tr -d '[:space:]') != manual ]]; then
      log "postgres: setting Debian's cluster $ver/main to manual start"
      sed -i 's/^[[:space:]]*\(auto\|disabled\)[[:space:]]*$/manual/' "$conf"
    fi
  done
}

postgres_install() {
  postgres_disable_debian_cluster
  log "postgres: using $(pg_bindir)"
}

postgres_marker() { echo "$PG_DATA"; }
postgres_running() { running_pid postgres "$(postgres_marker)" >/dev/null; }

postgres_prepare_dirs() {
  mkdir -p "$PG_SOCKET_DIR"
  touch "$PG_LOG"
  if ((EUID == 0)); then
    # The postgres user must be able to reach the state dir.
    if ! setpriv --reuid=postgres --regid=postgres --init-groups -- test -x "$STATE_DIR"; then
      die "postgres: OS user 'postgres' cannot traverse $STATE_DIR; put MLOPS_HOME somewhere world-traversable"
    fi
    chown postgres:postgres "$PG_SOCKET_DIR"
  fi
}

postgres_initdb_if_needed() {
  [[ -f $PG_DATA/PG_VERSION ]] && return 0
  log "postgres: initdb into $PG_DATA"
  mkdir -p "$PG_DATA"
  chmod 700 "$PG_DATA"
  if ((EUID == 0)); then chown postgres:postgres "$PG_DATA"; fi
  if ! as_pg_user "$(pg_bindir)/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=peer --auth-host=scram-sha-256 >>"$PG_LOG" 2>&1; then
    log_tail "$PG_LOG"
    die "postgres: initdb failed"
  fi
}

postgres_start() {
  local pid
  if pid=$(running_pid postgres "$(postgres_marker)"); then
    log "postgres: already running (pid $pid)"
    return 0
  fi
  require_free_port postgres "$POSTGRES_PORT"
  postgres_prepare_dirs
  postgres_initdb_if_needed
  log "postgres: starting on 127.0.0.1:$POSTGRES_PORT"
  local -a cmd=("$(pg_bindir)/postgres" -D "$PG_DATA" -c "config_file=$PG_CONF"
    -c "hba_file=$PG_DATA/pg_hba.conf" -c "ident_file=$PG_DATA/pg_ident.conf"
    -c "listen_addresses=127.0.0.1" -p "$POSTGRES_PORT" -c "unix_socket_directories=$PG_SOCKET_DIR")
  if ((EUID == 0)); then
    cmd=(setpriv --reuid=postgres --regid=postgres --init-groups --reset-env -- "${cmd[@]}")
  fi
  start_daemon postgres "$PG_LOG" "${cmd[@]}"
  record_settings postgres "${POSTGRES_SETTINGS[@]}"
}

postgres_healthy() {
  "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -t 2
}

# psql as the superuser over our unix socket (peer auth).
pg_admin_psql() {
  as_pg_user "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$POSTGRES_PORT" -U postgres "$@"
}

# Role and database for the platform; the password is (re)applied from the
# credentials file on every up so the two can never drift apart.
postgres_ensure_role_db() {
  pg_admin_psql -d postgres -v role="$PG_ROLE" -v pw="$POSTGRES_PASSWORD" >>"$PG_LOG" 2>&1 <<'SQL' ||
SELECT format('CREATE ROLE %I LOGIN', :'role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN PASSWORD :'pw';
SQL
    die "postgres: could not create role $PG_ROLE (see $PG_LOG)"
  pg_admin_psql -d postgres -v db="$PG_DB" -v role="$PG_ROLE" >>"$PG_LOG" 2>&1 <<'SQL' ||
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
    die "postgres: could not create database $PG_DB (see $PG_LOG)"
}

postgres_wait() {
  wait_healthy postgres "$(postgres_marker)" "$PG_LOG" postgres_healthy
  postgres_ensure_role_db
  log "postgres: healthy (database $PG_DB, role $PG_ROLE)"
}

# SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for clients).
postgres_stop() {
  stop_component postgres "$(postgres_marker)" INT
  clear_settings postgres
}

postgres_status() {
  local pid state=down
  pid=$(running_pid postgres "$(postgres_marker)") || pid=-
  if [[ $pid != - ]] && postgres_healthy; then state=healthy; fi
  status_line postgres "$pid" "$POSTGRES_PORT" "$state"
}
