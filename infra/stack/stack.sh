#!/usr/bin/env bash
# Local infrastructure for the MLOps platform, without Docker:
# Kafka (KRaft), PostgreSQL, MinIO, Jaeger v2 and the platform services, all
# on 127.0.0.1.
#
#   infra/stack/stack.sh install            # packages, jars, binaries (idempotent)
#   infra/stack/stack.sh install-browser    # Debian's chromium + chromium-driver (browser tests)
#   infra/stack/stack.sh install-kustomize  # kustomize from its Go module (infra/k8s); prints its path
#   infra/stack/stack.sh up [component...]  # start + wait healthy, write .local/stack.env
#   infra/stack/stack.sh status             # exit status 1 if anything is down
#   infra/stack/stack.sh down [component...]
#   infra/stack/stack.sh clean              # down + delete the state dir (data, credentials)
#   infra/stack/stack.sh env                # print .local/stack.env
#
# Components: kafka postgres minio jaeger services. The services run under
# supervisord, which restarts them when they die (supervisor.sh); `status`
# shows their restarts. KAFKA_BROKERS=3 runs a three-node Kafka. See lib.sh
# for every environment knob.
set -euo pipefail

STACK_SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$STACK_SCRIPT_DIR/lib.sh"
# shellcheck source=install.sh
source "$STACK_SCRIPT_DIR/install.sh"
# shellcheck source=kafka.sh
source "$STACK_SCRIPT_DIR/kafka.sh"
# shellcheck source=postgres.sh
source "$STACK_SCRIPT_DIR/postgres.sh"
# shellcheck source=minio.sh
source "$STACK_SCRIPT_DIR/minio.sh"
# shellcheck source=jaeger.sh
source "$STACK_SCRIPT_DIR/jaeger.sh"
# shellcheck source=services.sh
source "$STACK_SCRIPT_DIR/services.sh"
# shellcheck source=supervisor.sh
source "$STACK_SCRIPT_DIR/supervisor.sh"
# shellcheck source=haproxy.sh
source "$STACK_SCRIPT_DIR/haproxy.sh"

INFRA_COMPONENTS=(kafka postgres minio jaeger)
ALL_COMPONENTS=("${INFRA_COMPONENTS[@]}" services)
# Stop order: clients first, Kafka last but one, PostgreSQL last.
STOP_ORDER=(services jaeger minio kafka postgres)

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

# Validate component names into SELECTED; no names means all components.
SELECTED=()
select_components() {
  local c
  if (($# == 0)); then
    SELECTED=("${ALL_COMPONENTS[@]}")
    return
  fi
  for c in "$@"; do
    contains "$c" "${ALL_COMPONENTS[@]}" || die "unknown component '$c' (known: ${ALL_COMPONENTS[*]})"
  done
  SELECTED=("$@")
}

contains() {
  local needle=$1
  shift
  [[ " $* " == *" $needle "* ]]
}

# Serialise up/down/clean: two concurrent runs would race on pid files.
take_lock() {
  ensure_state_dirs
  exec 9>"$RUN_DIR/.lock"
  flock -w 600 9 || die "another stack.sh is running (lock $RUN_DIR/.lock)"
}

# Components already running keep the settings they were started with:
# asking for different ones is an error, and the others are adopted so that
# stack.env describes what actually runs.
reconcile_settings() {
  local c
  for c in "${INFRA_COMPONENTS[@]}"; do
    "${c}_running" || continue
    if contains "$c" "$@"; then
      require_same_settings "$c"
    else
      load_settings "$c"
    fi
  done
}

write_stack_env() {
  (
    umask 077
    cat >"$STACK_ENV_FILE.tmp" <<EOF
MLOPS_KAFKA_BOOTSTRAP_SERVERS=$(kafka_bootstrap)
MLOPS_KAFKA_BROKERS=$KAFKA_BROKERS
MLOPS_DATABASE_URL=postgresql+psycopg://$PG_ROLE:$POSTGRES_PASSWORD@127.0.0.1:$POSTGRES_PORT/$PG_DB
MLOPS_S3_ENDPOINT=127.0.0.1:$MINIO_PORT
MLOPS_S3_ACCESS_KEY=$MINIO_ROOT_USER
MLOPS_S3_SECRET_KEY=$MINIO_ROOT_PASSWORD
MLOPS_OTLP_ENDPOINT=http://127.0.0.1:$OTLP_GRPC_PORT
MLOPS_JAEGER_QUERY_URL=http://127.0.0.1:$JAEGER_UI_PORT
MLOPS_REGISTRY_API_KEYS='{"admin":"$REGISTRY_ADMIN_KEY"}'
MLOPS_CONSOLE_SESSION_SECRET=$CONSOLE_SESSION_SECRET
EOF
    if [[ -n $STACK_NAMESPACE ]]; then echo "MLOPS_NAMESPACE=$STACK_NAMESPACE" >>"$STACK_ENV_FILE.tmp"; fi
    mv "$STACK_ENV_FILE.tmp" "$STACK_ENV_FILE"
  )
}

cmd_up() {
  select_components "$@"
  local -a comps=("${SELECTED[@]}")
  take_lock
  ensure_credentials
  reconcile_settings "${comps[@]}"
  local start=$SECONDS c
  # Start every infrastructure component first, then wait: they boot in parallel.
  for c in "${INFRA_COMPONENTS[@]}"; do
    if contains "$c" "${comps[@]}"; then "${c}_start"; fi
  done
  for c in "${INFRA_COMPONENTS[@]}"; do
    if contains "$c" "${comps[@]}"; then "${c}_wait"; fi
  done
  write_stack_env
  # Services on another namespace (STACK_NAMESPACE) need its topics even when Kafka runs already.
  if contains kafka "${comps[@]}" || contains services "${comps[@]}"; then kafka_ensure_topics; fi
  if contains services "${comps[@]}"; then
    services_start
    services_wait
  fi
  log "up in $((SECONDS - start))s; environment in $STACK_ENV_FILE"
}

cmd_down() {
  select_components "$@"
  local -a comps=("${SELECTED[@]}")
  take_lock
  local c
  for c in "${STOP_ORDER[@]}"; do
    if contains "$c" "${comps[@]}"; then "${c}_stop"; fi
  done
  log "down"
}

# One line per component; exits 1 if any of them is down.
cmd_status() {
  local c report
  report=$(
    for c in "${INFRA_COMPONENTS[@]}"; do
      (
        load_settings "$c"
        "${c}_status"
      )
    done
    services_status
  )
  printf '%s\n' "$report"
  ! grep -q ' down$' <<<"$report"
}

cmd_clean() {
  cmd_down
  case $STATE_DIR in
    "" | / | "$REPO_ROOT" | "$HOME") die "refusing to delete state dir '$STATE_DIR'" ;;
  esac
  log "deleting $STATE_DIR (data, logs, credentials)"
  rm -rf "$STATE_DIR"
}

cmd_env() {
  [[ -f $STACK_ENV_FILE ]] || die "$STACK_ENV_FILE does not exist yet: run 'stack.sh up'"
  cat "$STACK_ENV_FILE"
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    install) cmd_install "$@" ;;
    install-browser) cmd_install_browser "$@" ;;
    install-kustomize) cmd_install_kustomize "$@" ;;
    up) cmd_up "$@" ;;
    down | stop) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    clean) cmd_clean "$@" ;;
    env) cmd_env "$@" ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 >&2 ;;
  esac
}

main "$@"
