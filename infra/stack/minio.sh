# shellcheck shell=bash
# MinIO (S3-compatible object store), single node, single drive. Sourced by
# stack.sh.

MINIO_DATA=$DATA_DIR/minio
MINIO_LOG=$LOG_DIR/minio.log
MINIO_SETTINGS=(MINIO_PORT MINIO_CONSOLE_PORT)

minio_install() {
  if [[ -x $MINIO_BIN ]]; then
    log "minio $MINIO_VERSION: cached at $MINIO_BIN"
    return 0
  fi
  log "minio $MINIO_VERSION: go install (slow the first time: several minutes)"
  local gobin=$CACHE_DIR/bin-tmp/minio
  rm -rf "$gobin"
  mkdir -p "$gobin" "$(dirname "$MINIO_BIN")"
  GOBIN=$gobin go_cmd install "$MINIO_MODULE@$MINIO_VERSION"
  mv "$gobin/minio" "$MINIO_BIN"
  rm -rf "$gobin"
  rmdir "$CACHE_DIR/bin-tmp" 2>/dev/null || true
}

minio_marker() { echo "$MINIO_DATA"; }
minio_running() { running_pid minio "$(minio_marker)" >/dev/null; }

minio_start() {
  [[ -x $MINIO_BIN ]] || die "minio binary missing ($MINIO_BIN): run 'stack.sh install' first"
  local pid
  if pid=$(running_pid minio "$(minio_marker)"); then
    log "minio: already running (pid $pid)"
    return 0
  fi
  require_free_port minio "$MINIO_PORT"
  require_free_port "minio console" "$MINIO_CONSOLE_PORT"
  mkdir -p "$MINIO_DATA"
  log "minio: starting on 127.0.0.1:$MINIO_PORT (console 127.0.0.1:$MINIO_CONSOLE_PORT)"
  MINIO_ROOT_USER=$MINIO_ROOT_USER MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD \
    MINIO_UPDATE=off MINIO_BROWSER_REDIRECT=off \
    start_daemon minio "$MINIO_LOG" "$MINIO_BIN" server --quiet --anonymous \
    --address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" \
    "$MINIO_DATA"
  record_settings minio "${MINIO_SETTINGS[@]}"
}

minio_healthy() {
  http_ok "http://127.0.0.1:$MINIO_PORT/minio/health/live"
}

minio_wait() {
  wait_healthy minio "$(minio_marker)" "$MINIO_LOG" minio_healthy
  log "minio: healthy"
}

minio_stop() {
  stop_component minio "$(minio_marker)"
  clear_settings minio
}

minio_status() {
  local pid state=down
  pid=$(running_pid minio "$(minio_marker)") || pid=-
  if [[ $pid != - ]] && minio_healthy; then state=healthy; fi
  status_line minio "$pid" "$MINIO_PORT" "$state"
}
