# shellcheck shell=bash
# Shared helpers for infra/stack/*.sh. Sourced by stack.sh, never executed.

# --- Pinned versions -------------------------------------------------------
# Kafka's version is also pinned in infra/kafka/pom.xml; the cache is keyed by
# a hash of that pom, so editing it triggers a fresh copy.
KAFKA_VERSION=4.3.1
MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_VERSION=v1.76.0
# The Jaeger v2 release that Go module tag is (CHANGELOG: "v1.76.0 / v2.13.0").
JAEGER_V2_VERSION=v2.13.0
# Go toolchain fetched from the Go module proxy (golang.org/toolchain) only
# when no usable `go` is on the PATH.
GO_MIN_MINOR=24
GO_BOOTSTRAP_VERSION=1.26.8
# Renders infra/k8s offline (`make k8s-check`), built from its Go module.
KUSTOMIZE_MODULE=sigs.k8s.io/kustomize/kustomize/v5
KUSTOMIZE_VERSION=v5.8.1

# --- Paths -----------------------------------------------------------------
STACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
INFRA_DIR=$(dirname "$STACK_DIR")
REPO_ROOT=$(dirname "$INFRA_DIR")
CACHE_DIR=${MLOPS_CACHE_DIR:-$HOME/.cache/mlops-platform}
STATE_DIR=${MLOPS_HOME:-$REPO_ROOT/.local}
DATA_DIR=$STATE_DIR/data
LOG_DIR=$STATE_DIR/logs
RUN_DIR=$STATE_DIR/run
CREDENTIALS_FILE=$STATE_DIR/credentials.env
STACK_ENV_FILE=$STATE_DIR/stack.env
VENV_PYTHON=$REPO_ROOT/.venv/bin/python

KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
KAFKA_LIBS=$KAFKA_HOME/libs
MINIO_BIN=$CACHE_DIR/bin/minio-$MINIO_VERSION
JAEGER_BIN=$CACHE_DIR/bin/jaeger-$JAEGER_VERSION
KUSTOMIZE_BIN=$CACHE_DIR/bin/kustomize-$KUSTOMIZE_VERSION

# --- Ports and knobs (overridable from the environment) --------------------
KAFKA_BROKERS=${KAFKA_BROKERS:-1}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
MINIO_PORT=${MINIO_PORT:-9000}
MINIO_CONSOLE_PORT=${MINIO_CONSOLE_PORT:-9001}
JAEGER_UI_PORT=${JAEGER_UI_PORT:-16686}
JAEGER_GRPC_PORT=${JAEGER_GRPC_PORT:-16685}
OTLP_GRPC_PORT=${OTLP_GRPC_PORT:-4317}
OTLP_HTTP_PORT=${OTLP_HTTP_PORT:-4318}
# The platform services listen on SERVICE_PORT_BASE (ingestion) and the six
# ports after it, in services.sh's order: 8001-8007 by default.
SERVICE_PORT_BASE=${SERVICE_PORT_BASE:-8001}
# The console (web UI over the services, Kafka and Jaeger) listens on its own port.
CONSOLE_PORT=${CONSOLE_PORT:-8000}
# Replicas per service, e.g. MLOPS_REPLICAS="validation=2 serving=2" (services.sh):
# a service with more than one runs as programs <name>-1..N on ports of their own
# (REPLICA_PORT_BASE + 10 x its place in the port order + N) behind HAProxy, which
# keeps the service's port (haproxy.sh). Unnamed services run once.
MLOPS_REPLICAS=${MLOPS_REPLICAS:-}
REPLICA_PORT_BASE=${REPLICA_PORT_BASE:-$((SERVICE_PORT_BASE + 10000))}
# The Kafka topic namespace the services use (MLOPS_NAMESPACE); a second set of
# services beside the first on the same infrastructure takes another one.
STACK_NAMESPACE=${STACK_NAMESPACE:-}
# Only these services (space-separated names), e.g. beside a running stack; default all.
STACK_SERVICES=${STACK_SERVICES:-}
# supervisord's restart policy for the services (supervisor.sh): a service
# must stay up SERVICE_STARTSECS seconds to count as started; one that dies
# sooner is retried after 1, 2, 3... seconds, SERVICE_STARTRETRIES times,
# then left FATAL. One that dies later is restarted at once.
SERVICE_STARTSECS=${SERVICE_STARTSECS:-5}
SERVICE_STARTRETRIES=${SERVICE_STARTRETRIES:-30}
# Seconds to wait for a component to become healthy.
STACK_TIMEOUT=${STACK_TIMEOUT:-90}
# Seconds to wait after SIGTERM before SIGKILL.
STOP_TIMEOUT=${STOP_TIMEOUT:-30}
# A component's log is rotated (one .1 generation) past this size at start.
LOG_ROTATE_MB=${LOG_ROTATE_MB:-50}

# --- Output ----------------------------------------------------------------
log()  { printf '[stack] %s\n' "$*" >&2; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# Print the last lines of a log file to stderr, indented.
log_tail() {
  local file=$1 lines=${2:-40}
  [[ -f $file ]] || return 0
  printf '[stack] ---- last %s lines of %s ----\n' "$lines" "$file" >&2
  tail -n "$lines" "$file" | sed 's/^/    /' >&2
  printf '[stack] ----\n' >&2
}

now() { date +%s; }

ensure_state_dirs() {
  mkdir -p "$DATA_DIR" "$LOG_DIR" "$RUN_DIR"
}

# Random lowercase hex string of N characters (N even). No pipes that could
# trip pipefail with SIGPIPE.
random_hex() {
  local n=${1:-32}
  od -An -tx1 -N $((n / 2)) /dev/urandom | tr -d ' \n'
}

# --- Credentials (generated once, kept in the state dir, never committed) --
ensure_credentials() {
  ensure_state_dirs
  if [[ ! -s $CREDENTIALS_FILE ]]; then
    log "generating credentials in $CREDENTIALS_FILE"
    (
      umask 077
      {
        echo "POSTGRES_PASSWORD=$(random_hex 32)"
        echo "MINIO_ROOT_USER=mlops-$(random_hex 12)"
        echo "MINIO_ROOT_PASSWORD=$(random_hex 40)"
      } >"$CREDENTIALS_FILE.tmp"
      mv "$CREDENTIALS_FILE.tmp" "$CREDENTIALS_FILE"
    )
  fi
  # Credentials added after a state dir was first made are appended, not regenerated.
  if ! grep -q '^REGISTRY_ADMIN_KEY=' "$CREDENTIALS_FILE"; then
    (umask 077 && echo "REGISTRY_ADMIN_KEY=$(random_hex 48)" >>"$CREDENTIALS_FILE")
  fi
  if ! grep -q '^CONSOLE_SESSION_SECRET=' "$CREDENTIALS_FILE"; then
    (umask 077 && echo "CONSOLE_SESSION_SECRET=$(random_hex 64)" >>"$CREDENTIALS_FILE")
  fi
  # shellcheck disable=SC1090
  source "$CREDENTIALS_FILE"
}

# --- Process management ----------------------------------------------------
pid_file() { echo "$RUN_DIR/$1.pid"; }

# Prints the pid recorded for a component if that process is alive, its
# command line contains the expected marker (guards against pid reuse) and it
# belongs to this stack: its command line names this state dir, or it runs in
# this checkout. Another checkout's stack on the same machine uses the same
# markers (`services.validation`, `kafka.Kafka`); its processes are never ours.
running_pid() {
  local name=$1 marker=$2 file pid cmdline cwd
  file=$(pid_file "$name")
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  [[ $cmdline == *"$marker"* ]] || return 1
  if [[ $cmdline != *"$STATE_DIR"* ]]; then
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
    [[ $cwd == "$(cd "$REPO_ROOT" && pwd -P)" ]] || return 1
  fi
  echo "$pid"
}

# Logs are appended across restarts; keep one previous generation once a log
# passes LOG_ROTATE_MB.
rotate_log() {
  local file=$1 size
  [[ -f $file ]] || return 0
  size=$(stat -c %s "$file")
  if ((size > LOG_ROTATE_MB * 1024 * 1024)); then
    mv -f "$file" "$file.1"
  fi
}

# start_daemon NAME LOGFILE CMD... : runs CMD in its own session, detached
# from the terminal, stdout+stderr appended to LOGFILE. The child writes its
# own pid before exec'ing CMD, so the pid file always names the daemon itself.
start_daemon() {
  local name=$1 logfile=$2 file
  shift 2
  file=$(pid_file "$name")
  rm -f "$file"
  rotate_log "$logfile"
  printf '\n===== %s starting %s =====\n' "$(date -Is)" "$name" >>"$logfile"
  # fd 9 is stack.sh's lock: the daemon must not keep holding it.
  # shellcheck disable=SC2016
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$file" "$@" \
    </dev/null >>"$logfile" 2>&1 9>&- &
  local deadline=$(($(now) + 5))
  while [[ ! -s $file ]]; do
    (($(now) < deadline)) || die "$name did not start (no pid file $file)"
    sleep 0.05
  done
}

# wait_gone PID... : wait up to STOP_TIMEOUT for the pids to exit, then
# SIGKILL the survivors.
wait_gone() {
  local deadline=$(($(now) + STOP_TIMEOUT)) pid alive
  while :; do
    alive=()
    for pid in "$@"; do
      if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
    done
    ((${#alive[@]} == 0)) && return 0
    if (($(now) >= deadline)); then
      warn "pid(s) ${alive[*]} still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -s KILL "${alive[@]}" 2>/dev/null || true
      sleep 0.5
      return 0
    fi
    sleep 0.2
  done
}

# stop_component NAME MARKER [SIGNAL]: signal, wait, clean up pid file.
stop_component() {
  local name=$1 marker=$2 sig=${3:-TERM} pid
  if pid=$(running_pid "$name" "$marker"); then
    log "stopping $name (pid $pid)"
    kill -s "$sig" "$pid" 2>/dev/null || true
    wait_gone "$pid"
  fi
  rm -f "$(pid_file "$name")"
}

# --- Settings a component was started with ----------------------------------
# Ports etc. come from the environment, so a later `up`/`status` may run with
# different values than the running processes. Each component records its
# settings when started; running components are then addressed with them.
settings_file() { echo "$RUN_DIR/$1.settings"; }

# record_settings COMPONENT VAR...: save the current values of VARs.
record_settings() {
  local comp=$1 var
  shift
  for var in "$@"; do
    printf '%s=%s\n' "$var" "${!var}"
  done >"$(settings_file "$comp")"
}

# load_settings COMPONENT: set the recorded values (no-op if none).
load_settings() {
  local file key value
  file=$(settings_file "$1")
  [[ -f $file ]] || return 0
  while IFS='=' read -r key value; do
    if [[ -n $key ]]; then printf -v "$key" '%s' "$value"; fi
  done <"$file"
}

# require_same_settings COMPONENT: die if the running component was started
# with values that differ from the ones requested now.
require_same_settings() {
  local comp=$1 file key value
  file=$(settings_file "$comp")
  [[ -f $file ]] || return 0
  while IFS='=' read -r key value; do
    [[ -n $key ]] || continue
    if [[ ${!key} != "$value" ]]; then
      die "$comp is running with $key=$value but $key=${!key} was requested; run 'stack.sh down $comp' first"
    fi
  done <"$file"
}

clear_settings() { rm -f "$(settings_file "$1")"; }

# --- Health probes ---------------------------------------------------------
port_open() {
  local port=$1 host=${2:-127.0.0.1}
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

http_ok() {
  curl -fsS -o /dev/null --max-time 3 "$1" 2>/dev/null
}

# wait_healthy NAME MARKER LOGFILE CHECK_FN [ARGS...]: poll CHECK_FN until it
# succeeds; fail fast with the log tail if the process dies, or after
# STACK_TIMEOUT seconds.
wait_healthy() {
  local name=$1 marker=$2 logfile=$3
  shift 3
  local deadline=$(($(now) + STACK_TIMEOUT))
  while :; do
    if "$@"; then
      return 0
    fi
    if ! running_pid "$name" "$marker" >/dev/null; then
      log_tail "$logfile"
      die "$name exited during startup (log: $logfile)"
    fi
    if (($(now) >= deadline)); then
      log_tail "$logfile"
      die "$name not healthy after ${STACK_TIMEOUT}s (log: $logfile)"
    fi
    sleep 0.5
  done
}

# Refuse to start on a port someone else already holds.
require_free_port() {
  local name=$1 port=$2
  if port_open "$port"; then
    die "$name: port $port on 127.0.0.1 is already in use by another process"
  fi
}

# status_line NAME PID PORT HEALTHY
status_line() {
  printf '%-18s pid=%-8s port=%-18s %s\n' "$1" "${2:--}" "$3" "$4"
}
