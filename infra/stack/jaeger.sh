# shellcheck shell=bash
# Jaeger v2 all-in-one (OTLP receivers, in-memory storage, query API/UI).
# Sourced by stack.sh.

JAEGER_CONFIG=$INFRA_DIR/jaeger/config.yaml
JAEGER_LOG=$LOG_DIR/jaeger.log
JAEGER_SETTINGS=(JAEGER_UI_PORT JAEGER_GRPC_PORT OTLP_GRPC_PORT OTLP_HTTP_PORT)

# `go install github.com/jaegertracing/jaeger/cmd/jaeger@VERSION` is refused
# because Jaeger's go.mod has replace directives. So we build the very same
# module (fetched through the Go module proxy) as the main module, where the
# replace directives apply.
jaeger_install() {
  if [[ -x $JAEGER_BIN ]]; then
    log "jaeger $JAEGER_VERSION: cached at $JAEGER_BIN"
    return 0
  fi
  log "jaeger $JAEGER_VERSION: building cmd/jaeger from the Go module (slow the first time: several minutes)"
  local moddir src=$CACHE_DIR/build/jaeger-$JAEGER_VERSION gobin=$CACHE_DIR/bin-tmp/jaeger
  mkdir -p "$CACHE_DIR"
  moddir=$(cd "$CACHE_DIR" && go_cmd mod download -json "$JAEGER_MODULE@$JAEGER_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [[ -n $moddir && -d $moddir ]] || die "jaeger: go mod download gave no module dir"
  rm -rf "$src" "$gobin"
  mkdir -p "$(dirname "$src")" "$gobin" "$(dirname "$JAEGER_BIN")"
  cp -a "$moddir" "$src"
  chmod -R u+w "$src"
  # The copy has no VCS metadata; do not let Go look for an enclosing repository.
  (cd "$src" && GOBIN=$gobin go_cmd install -buildvcs=false \
    -ldflags "-X $JAEGER_MODULE/internal/version.latestVersion=$JAEGER_V2_VERSION" ./cmd/jaeger)
  mv "$gobin/jaeger" "$JAEGER_BIN"
  rm -rf "$src" "$gobin"
  rmdir "$CACHE_DIR/bin-tmp" "$CACHE_DIR/build" 2>/dev/null || true
}

jaeger_marker() { echo "$JAEGER_CONFIG"; }
jaeger_running() { running_pid jaeger "$(jaeger_marker)" >/dev/null; }

jaeger_start() {
  [[ -x $JAEGER_BIN ]] || die "jaeger binary missing ($JAEGER_BIN): run 'stack.sh install' first"
  local pid port
  if pid=$(running_pid jaeger "$(jaeger_marker)"); then
    log "jaeger: already running (pid $pid)"
    return 0
  fi
  for port in "$JAEGER_UI_PORT" "$JAEGER_GRPC_PORT" "$OTLP_GRPC_PORT" "$OTLP_HTTP_PORT"; do
    require_free_port jaeger "$port"
  done
  log "jaeger: starting (UI/API 127.0.0.1:$JAEGER_UI_PORT, OTLP grpc :$OTLP_GRPC_PORT http :$OTLP_HTTP_PORT)"
  JAEGER_UI_PORT=$JAEGER_UI_PORT JAEGER_GRPC_PORT=$JAEGER_GRPC_PORT \
    OTLP_GRPC_PORT=$OTLP_GRPC_PORT OTLP_HTTP_PORT=$OTLP_HTTP_PORT \
    start_daemon jaeger "$JAEGER_LOG" "$JAEGER_BIN" --config "$JAEGER_CONFIG"
  record_settings jaeger "${JAEGER_SETTINGS[@]}"
}

jaeger_healthy() {
  http_ok "http://127.0.0.1:$JAEGER_UI_PORT/api/services"
}

jaeger_wait() {
  wait_healthy jaeger "$(jaeger_marker)" "$JAEGER_LOG" jaeger_healthy
  log "jaeger: healthy"
}

jaeger_stop() {
  stop_component jaeger "$(jaeger_marker)"
  clear_settings jaeger
}

jaeger_status() {
  local pid state=down
  pid=$(running_pid jaeger "$(jaeger_marker)") || pid=-
  if [[ $pid != - ]] && jaeger_healthy; then state=healthy; fi
  status_line jaeger "$pid" "$JAEGER_UI_PORT" "$state"
}
