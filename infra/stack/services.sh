# shellcheck shell=bash
# Platform services: every services/<name>/ with a __main__.py runs as
# `.venv/bin/python -m services.<name>` with the stack env exported. Sourced
# by stack.sh.

# Fixed local ports. Every service gets all of them as MLOPS_<NAME>_PORT (and
# MLOPS_<NAME>_HOST), the variables its ServiceSettings(env_prefix=
# "MLOPS_<NAME>_") reads, so services can also find each other.
declare -A SERVICE_PORTS=(
  [ingestion]=8001
  [validation]=8002
  [feature_store]=8003
  [training]=8004
  [registry]=8005
  [serving]=8006
  [monitoring]=8007
)

# Services present in the tree that have a port, in port order.
service_names() {
  local name
  for name in ingestion validation feature_store training registry serving monitoring; do
    if [[ -f $REPO_ROOT/services/$name/__main__.py ]]; then echo "$name"; fi
  done
}

warn_unassigned_services() {
  local dir name extra=()
  for dir in "$REPO_ROOT"/services/*/; do
    name=$(basename "$dir")
    if [[ -f $dir/__main__.py && -z ${SERVICE_PORTS[$name]+x} ]]; then extra+=("$name"); fi
  done
  ((${#extra[@]} == 0)) || warn "services without a port assignment in infra/stack/services.sh, not started: ${extra[*]}"
}

export_service_addresses() {
  local svc prefix
  for svc in "${!SERVICE_PORTS[@]}"; do
    prefix=MLOPS_${svc^^}
    export "${prefix}_HOST=127.0.0.1" "${prefix}_PORT=${SERVICE_PORTS[$svc]}"
  done
}

service_marker() { echo "services.$1"; }

service_healthy() {
  http_ok "http://127.0.0.1:${SERVICE_PORTS[$1]}/live"
}

service_start() {
  local name=$1 port=${SERVICE_PORTS[$1]} pid
  if pid=$(running_pid "svc-$name" "$(service_marker "$name")"); then
    log "service $name: already running (pid $pid)"
    return 0
  fi
  [[ -x $VENV_PYTHON ]] || die "services: $VENV_PYTHON missing; create the venv (uv sync --frozen) first"
  require_free_port "service $name" "$port"
  log "service $name: starting on 127.0.0.1:$port"
  (
    set -a
    # shellcheck disable=SC1090
    source "$STACK_ENV_FILE"
    set +a
    export_service_addresses
    cd "$REPO_ROOT"
    start_daemon "svc-$name" "$LOG_DIR/svc-$name.log" "$VENV_PYTHON" -m "services.$name"
  ) || exit 1
}

services_start() {
  local name
  [[ -f $STACK_ENV_FILE ]] || die "services: $STACK_ENV_FILE missing; bring the infrastructure up first"
  warn_unassigned_services
  while read -r name; do
    if [[ -n $name ]]; then service_start "$name"; fi
  done < <(service_names)
}

services_wait() {
  local name count=0
  while read -r name; do
    [[ -n $name ]] || continue
    wait_healthy "svc-$name" "$(service_marker "$name")" "$LOG_DIR/svc-$name.log" service_healthy "$name"
    log "service $name: healthy"
    count=$((count + 1))
  done < <(service_names)
  ((count > 0)) || log "services: none found under services/ (nothing to start)"
}

# Stops every service that has a pid file, present in the tree or not.
services_stop() {
  local f name pids=() pid
  for f in "$RUN_DIR"/svc-*.pid; do
    [[ -f $f ]] || continue
    name=$(basename "$f" .pid)
    if pid=$(running_pid "$name" "services.${name#svc-}"); then
      log "stopping $name (pid $pid)"
      kill -s TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  ((${#pids[@]} == 0)) || wait_gone "${pids[@]}"
  rm -f "$RUN_DIR"/svc-*.pid
}

services_status() {
  local name pid state
  while read -r name; do
    [[ -n $name ]] || continue
    pid=$(running_pid "svc-$name" "$(service_marker "$name")") || pid=-
    if [[ $pid != - ]] && service_healthy "$name"; then state=healthy; else state=down; fi
    status_line "svc-$name" "$pid" "${SERVICE_PORTS[$name]}" "$state"
  done < <(service_names)
}
