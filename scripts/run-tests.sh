#!/usr/bin/env bash
# Runs the whole suite: installs missing system packages, starts the test services, runs pytest
# (all of tests/ through testpaths; extra arguments are passed through), and stops the services
# again, also when the tests fail or the run is interrupted.
# pytest's exit code 5 (no tests collected) counts as failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

bash scripts/install-system-deps.sh || exit 1
# Kubernetes test binaries (tests/k8s): built once from the Go module proxy into a cache outside
# the repository; a cold build takes ~13 minutes on 2 cores, later runs only check the cache.
bash scripts/k8s/build-test-binaries.sh >/dev/null || exit 1

PYTEST_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$PYTEST_PID" ] && kill -0 "$PYTEST_PID" 2>/dev/null; then
    kill -TERM "$PYTEST_PID" 2>/dev/null
    wait "$PYTEST_PID" 2>/dev/null
  fi
  # Stops the services unless another test run still holds them (see services.sh --holder).
  bash scripts/services.sh stop --holder $$ || rc=1
  exit "$rc"
}
# On Ctrl-C the terminal signals pytest too: give it a moment to report and tear down.
on_int() {
  local i
  for i in $(seq 50); do
    [ -n "$PYTEST_PID" ] && kill -0 "$PYTEST_PID" 2>/dev/null || break
    sleep 0.1
  done
  exit 130
}
trap cleanup EXIT
trap on_int INT
trap 'exit 143' TERM
trap 'exit 129' HUP

bash scripts/services.sh start --holder $$ || exit 1
env_lines=$(bash scripts/services.sh env) || exit 1
eval "$env_lines"

# pytest runs in the background so that the traps above fire at once; background jobs of a
# script ignore SIGINT, so restore it for pytest (Ctrl-C must still reach it).
(
  trap - INT QUIT
  exec "$PY" -m pytest -q -p no:cacheprovider "$@"
) &
PYTEST_PID=$!
wait "$PYTEST_PID"
rc=$?
PYTEST_PID=""
if [ "$rc" -eq 5 ]; then
  echo "run-tests: pytest collected no tests; failing" >&2
  rc=1
fi
exit "$rc"
