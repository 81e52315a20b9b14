# shellcheck shell=bash
# `stack.sh install`: Debian packages, Go toolchain check, Kafka jars, MinIO,
# Jaeger and kustomize binaries. Idempotent; a warm run only checks. Sourced by stack.sh.

as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

pkg_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# apt_ensure PKG...: install the missing ones; `apt-get update` only if needed.
apt_ensure() {
  local pkg missing=()
  for pkg in "$@"; do
    pkg_installed "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    log "apt: already installed: $*"
    return 0
  fi
  log "apt: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

java_major() {
  command -v java >/dev/null || { echo 0; return; }
  java -XshowSettings:properties -version 2>&1 |
    awk -F= '/java.specification.version/ {gsub(/ /, "", $2); print $2; exit}'
}

install_packages() {
  # librdkafka-dev, gcc, pkg-config: `mlops replay`'s native copier (shared/cli/native/).
  # haproxy: the load balancer in front of a service's replicas (haproxy.sh).
  local pkgs=(kcat postgresql curl librdkafka-dev gcc pkg-config haproxy)
  # Kafka 4 needs Java 17+; Maven fetches its jars. Reuse whatever is there.
  (($(java_major) >= 17)) || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || pkgs+=(maven)
  apt_ensure "${pkgs[@]}"
  (($(java_major) >= 17)) || die "java 17+ not found after install"
}

# --- Go toolchain ----------------------------------------------------------
# Uses `go` from PATH (or /usr/local/go) when it is recent enough; otherwise
# fetches the official toolchain module golang.org/toolchain from the Go
# module proxy into the cache.
GO_BIN=

go_minor() {
  "$1" env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p'
}

resolve_go() {
  [[ -n $GO_BIN ]] && return 0
  local candidate minor
  for candidate in "$(command -v go || true)" /usr/local/go/bin/go; do
    [[ -n $candidate && -x $candidate ]] || continue
    minor=$(go_minor "$candidate")
    if [[ -n $minor ]] && ((minor >= GO_MIN_MINOR)); then
      GO_BIN=$candidate
      return 0
    fi
  done
  bootstrap_go
}

bootstrap_go() {
  local v=v0.0.1-go$GO_BOOTSTRAP_VERSION.linux-amd64
  local root=$CACHE_DIR/go-toolchain/golang.org/toolchain@$v
  if [[ ! -x $root/bin/go ]]; then
    [[ $(uname -m) == x86_64 ]] || die "no Go >= 1.$GO_MIN_MINOR found; install Go for $(uname -m)"
    apt_ensure unzip
    local proxy=${GOPROXY:-https://proxy.golang.org}
    proxy=${proxy%%[,|]*}
    [[ $proxy == http* ]] || proxy=https://proxy.golang.org
    log "go: no Go >= 1.$GO_MIN_MINOR found, fetching golang.org/toolchain@$v from $proxy"
    local zip=$CACHE_DIR/go-toolchain/$v.zip
    mkdir -p "$CACHE_DIR/go-toolchain"
    curl -fsSL --retry 3 -o "$zip.tmp" "$proxy/golang.org/toolchain/@v/$v.zip"
    rm -rf "$root"
    unzip -q "$zip.tmp" -d "$CACHE_DIR/go-toolchain"
    rm -f "$zip.tmp"
    # Module zips do not keep file modes.
    chmod +x "$root"/bin/* "$root"/pkg/tool/*/*
  fi
  GO_BIN=$root/bin/go
}

# `go` as resolved above (GOTOOLCHAIN=auto may still switch up if a go.mod asks).
go_cmd() {
  resolve_go
  "$GO_BIN" "$@"
}

# `mlops replay`'s native copier (shared/cli/native/replay_copy.c), compiled into the cache.
replay_copier_install() {
  local py=$REPO_ROOT/.venv/bin/python built
  if [[ ! -x $py ]]; then
    log "replay copier: no .venv yet, it is built on first use"
    return 0
  fi
  built=$(cd "$REPO_ROOT" && MLOPS_CACHE_DIR=$CACHE_DIR "$py" -m shared.cli.native_copy) ||
    die "replay copier: build failed"
  log "replay copier: $built"
}

# Debian's Chromium and its ChromeDriver for the console's browser tests
# (tests/browser); nothing downloads a browser build.
cmd_install_browser() {
  apt_ensure chromium chromium-driver
  log "browser: $(/usr/bin/chromium --version 2>/dev/null), $(/usr/bin/chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
}

# kustomize, to render infra/k8s without a cluster: `go install` from the Go module proxy
# into the cache (a minute or two the first time). Prints the binary's path.
cmd_install_kustomize() {
  if [[ ! -x $KUSTOMIZE_BIN ]]; then
    log "kustomize $KUSTOMIZE_VERSION: go install $KUSTOMIZE_MODULE"
    local gobin=$CACHE_DIR/bin-tmp/kustomize
    rm -rf "$gobin"
    mkdir -p "$gobin" "$(dirname "$KUSTOMIZE_BIN")"
    GOBIN=$gobin go_cmd install "$KUSTOMIZE_MODULE@$KUSTOMIZE_VERSION" >&2
    mv "$gobin/kustomize" "$KUSTOMIZE_BIN"
    rm -rf "$gobin"
    rmdir "$CACHE_DIR/bin-tmp" 2>/dev/null || true
  fi
  echo "$KUSTOMIZE_BIN"
}

cmd_install() {
  local start=$SECONDS
  mkdir -p "$CACHE_DIR"
  install_packages
  replay_copier_install
  postgres_install
  kafka_install
  if [[ ! -x $MINIO_BIN || ! -x $JAEGER_BIN || ! -x $KUSTOMIZE_BIN ]]; then
    resolve_go
    log "go: using $GO_BIN ($("$GO_BIN" env GOVERSION))"
  fi
  minio_install
  jaeger_install
  log "kustomize: $(cmd_install_kustomize)"
  log "install done in $((SECONDS - start))s (cache: $CACHE_DIR)"
}
