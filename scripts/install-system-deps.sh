#!/usr/bin/env bash
# Installs the system packages the test suite needs, from Debian packages, only when missing:
#   bubblewrap   (bwrap: sandboxing for the local executor)
#   busybox-static (a one-file /bin/sh root filesystem for the Kubernetes task runtime tests)
#   postgresql   (>= 15; scripts/services.sh runs a throwaway cluster of its own)
# Idempotent and quiet; when everything is present it only looks and exits (milliseconds).
# apt-get update runs only when something has to be installed. The distribution's own cluster
# (15/main) that the package creates is never started: a temporary policy-rc.d denies it.
set -euo pipefail

PG_MIN_MAJOR=15

have_bwrap() { command -v bwrap >/dev/null 2>&1; }

have_busybox() { dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; }

have_postgres() {
  local d major
  if [ -n "${OSMO_PG_BINDIR:-}" ] && [ -x "$OSMO_PG_BINDIR/initdb" ]; then return 0; fi
  for d in /usr/lib/postgresql/*/bin; do
    major=${d#/usr/lib/postgresql/}
    major=${major%%/*}
    if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -ge "$PG_MIN_MAJOR" ] && [ -x "$d/initdb" ] &&
      [ -x "$d/pg_ctl" ] && [ -x "$d/pg_isready" ] && [ -x "$d/psql" ]; then
      # As root the server runs as `postgres`, which the Debian package creates.
      if [ "$(id -u)" -ne 0 ] || id postgres >/dev/null 2>&1; then return 0; fi
    fi
  done
  return 1
}

missing=()
have_bwrap || missing+=(bubblewrap)
have_postgres || missing+=(postgresql)
have_busybox || missing+=(busybox-static)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-system-deps: installing ${missing[*]}" >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: no apt-get here; install ${missing[*]} (PostgreSQL >= $PG_MIN_MAJOR) yourself" >&2
  exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-system-deps: need root (or sudo) to install ${missing[*]}" >&2
    exit 1
  fi
fi

logfile=$(mktemp "${TMPDIR:-/tmp}/osmo-install-system-deps.XXXXXX")
policy=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
  if [ "$own_policy" -eq 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi
  rm -f "$logfile"
}
trap cleanup EXIT
# Without systemd, the postgresql package would start its default cluster on port 5432 through
# invoke-rc.d. Deny service starts for the duration of the install (unless a policy exists).
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 0755 "$policy"
  own_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq &&
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$logfile" 2>&1; then
  cat "$logfile" >&2
  echo "install-system-deps: apt-get failed installing ${missing[*]}" >&2
  exit 1
fi

if ! have_bwrap || ! have_postgres; then
  echo "install-system-deps: installed ${missing[*]}, but bwrap or PostgreSQL >= $PG_MIN_MAJOR is still missing" >&2
  exit 1
fi
echo "install-system-deps: done" >&2
