# shellcheck shell=bash
# Platform services: every services/<name>/ with a __main__.py runs as
# `.venv/bin/python -m services.<name>` with the stack env exported, under
# supervisord (supervisor.sh), which restarts it when it dies. Sourced by
# stack.sh.

# Local ports (docker-compose.yml publishes the same ones). SERVICE_PORT_BASE
# (lib.sh) moves them all, keeping this order, for a second stack beside a
# first. Every service gets all of them as MLOPS_<NAME>_PORT (and
# MLOPS_<NAME>_HOST), the variables its ServiceSettings(env_prefix=
# "MLOPS_<NAME>_") reads, so services can also find each other.
# The console (services/console) is no part of the loop: it has a port of its own,
# CONSOLE_PORT (lib.sh, default 8000), outside the range SERVICE_PORT_BASE moves.
declare -A SERVICE_PORTS=(
  [console]=8000
  [ingestion]=8001
  [validation]=8002
  [feature_store]=8003
  [training]=8004
  [registry]=8005
  [serving]=8006
  [monitoring]=8007
)

service_port() {
  if [[ $1 == console ]]; then
    echo "$CONSOLE_PORT"
  else
    echo $((SERVICE_PORTS[$1] - 8001 + SERVICE_PORT_BASE))
  fi
}

# Services present in the tree that have a port, in port order (only those STACK_SERVICES
# names, when set: a partial set beside a running stack, as the replica tests start).
service_names() {
  local name
  for name in ingestion validation feature_store training registry serving monitoring console; do
    [[ -z $STACK_SERVICES || " $STACK_SERVICES " == *" $name "* ]] || continue
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

# MLOPS_<NAME>_HOST=127.0.0.1 and MLOPS_<NAME>_PORT=... of every service, one per line.
service_addresses() {
  local svc prefix
  for svc in "${!SERVICE_PORTS[@]}"; do
    prefix=MLOPS_${svc^^}
    printf '%s_HOST=127.0.0.1\n%s_PORT=%s\n' "$prefix" "$prefix" "$(service_port "$svc")"
  done | sort
}

# replicas_of NAME: how many processes run the service (MLOPS_REPLICAS, default 1).
# The console holds browser sessions and is no part of the loop: always one.
replicas_of() {
  local name=$1 entry count=1
  for entry in $MLOPS_REPLICAS; do
    [[ $entry =~ ^([a-z_]+)=([0-9]+)$ ]] || die "MLOPS_REPLICAS: '$entry' is not <service>=<count>"
    if [[ ${BASH_REMATCH[1]} == "$name" ]]; then count=${BASH_REMATCH[2]}; fi
  done
  ((count >= 1 && count <= 9)) || die "MLOPS_REPLICAS: $name=$count, expected 1 to 9"
  if [[ $name == console ]] && ((count != 1)); then die "MLOPS_REPLICAS: the console runs once"; fi
  echo "$count"
}

check_replicas() {
  local entry name
  for entry in $MLOPS_REPLICAS; do
    name=${entry%%=*}
    [[ -n ${SERVICE_PORTS[$name]+x} ]] || die "MLOPS_REPLICAS: unknown service '$name' (known: ${!SERVICE_PORTS[*]})"
    replicas_of "$name" >/dev/null
  done
}

replicated() { (($(replicas_of "$1") > 1)); }

# replica_port NAME INDEX: the port of replica INDEX (1-based) of a replicated service.
replica_port() {
  echo $((REPLICA_PORT_BASE + 10 * (SERVICE_PORTS[$1] - 8000) + $2))
}

# "PROGRAM SERVICE PORT" per process supervisord runs: the service itself on its port,
# or <name>-1..N on their replica ports.
service_programs() {
  local name count i
  while read -r name; do
    [[ -n $name ]] || continue
    count=$(replicas_of "$name")
    if ((count == 1)); then
      echo "$name $name $(service_port "$name")"
    else
      for ((i = 1; i <= count; i++)); do echo "$name-$i $name $(replica_port "$name" "$i")"; done
    fi
  done < <(service_names)
}

service_marker() { echo "services.$1"; }

# service_healthy NAME [PORT]: /live answers on the service's port (or on PORT, a replica's).
service_healthy() {
  http_ok "http://127.0.0.1:${2:-$(service_port "$1")}/live"
}

# Service processes that run without supervisord: started by a checkout from
# before supervision, or left behind by a supervisord that was killed. Prints
# "name pid" lines; `up` keeps them, `down` stops them.
unsupervised_services() {
  local f name pid
  supervisor_running && return 0
  for f in "$RUN_DIR"/svc-*.pid; do
    [[ -f $f ]] || continue
    name=$(basename "$f" .pid)
    name=${name#svc-}
    if pid=$(running_pid "svc-$name" "$(service_marker "${name%-[0-9]}")"); then echo "$name $pid"; fi
  done
}

services_start() {
  local unsupervised
  [[ -f $STACK_ENV_FILE ]] || die "services: $STACK_ENV_FILE missing; bring the infrastructure up first"
  [[ -x $VENV_PYTHON && -x $SUPERVISORD ]] ||
    die "services: $VENV_PYTHON or $SUPERVISORD missing; create the venv (make venv) first"
  warn_unassigned_services
  check_replicas
  unsupervised=$(unsupervised_services)
  if [[ -n $unsupervised ]]; then
    warn "services running without a supervisor (started by an older checkout?), kept as they are: $(tr '\n' ' ' <<<"$unsupervised")"
    warn "nothing restarts them if they die; 'stack.sh down services && stack.sh up services' puts them under supervisord"
    return 0
  fi
  if supervisor_running; then
    require_same_settings services
    supervisor_update
  else
    supervisor_launch
  fi
}

services_wait() {
  local name count=0 pid program service port
  if supervisor_running; then
    while read -r program service port; do
      [[ -n $program ]] || continue
      supervised_wait_healthy "$program" "$port"
      pid=$(running_pid "svc-$program" "$(service_marker "$service")") || pid=-
      log "service $program: healthy on 127.0.0.1:$port (pid $pid)"
      count=$((count + 1))
    done < <(service_programs)
    while read -r name; do
      if [[ -n $name ]] && replicated "$name"; then
        supervised_wait_healthy haproxy "$(service_port "$name")" "$LOG_DIR/haproxy.log"
        log "service $name: $(replicas_of "$name") replicas behind haproxy on 127.0.0.1:$(service_port "$name")"
      fi
    done < <(service_names)
    ((count > 0)) || log "services: none found under services/ (nothing to start)"
    return 0
  fi
  while read -r name; do
    [[ -n $name ]] || continue
    wait_healthy "svc-$name" "$(service_marker "$name")" "$LOG_DIR/svc-$name.log" service_healthy "$name"
    pid=$(running_pid "svc-$name" "$(service_marker "$name")") || pid=-
    log "service $name: healthy on 127.0.0.1:$(service_port "$name") (pid $pid)"
    count=$((count + 1))
  done < <(service_names)
  ((count > 0)) || log "services: none found under services/ (nothing to start)"
}

# Stops the services and their supervisord, then any service process running
# without one (present in the tree or not).
services_stop() {
  local name pid pids=()
  supervisor_stop
  while read -r name pid; do
    [[ -n $name ]] || continue
    log "stopping svc-$name (pid $pid, unsupervised)"
    kill -s TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  done < <(unsupervised_services)
  ((${#pids[@]} == 0)) || wait_gone "${pids[@]}"
  rm -f "$RUN_DIR"/svc-*.pid
  clear_settings services
}

services_status() {
  (
    load_settings services
    if supervisor_running; then
      supervised_status
      exit 0
    fi
    local name pid state unsupervised
    unsupervised=$(unsupervised_services)
    if [[ -n $unsupervised ]]; then
      status_line supervisord - - "not running: services run unsupervised (nothing restarts them)"
    else
      status_line supervisord - - down
    fi
    while read -r name; do
      [[ -n $name ]] || continue
      pid=$(running_pid "svc-$name" "$(service_marker "$name")") || pid=-
      if [[ $pid != - ]] && service_healthy "$name"; then state=healthy; else state=down; fi
      status_line "svc-$name" "$pid" "$(service_port "$name")" "$state"
    done < <(service_names)
  )
}
