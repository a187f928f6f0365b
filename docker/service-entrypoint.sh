#!/bin/sh
# Entrypoint of the service image: give prometheus_client a clean multiprocess directory
# (files left by a previous run would be summed into the new run's counters), then exec the
# command (default: python -m service) so it receives SIGTERM/SIGHUP directly.
set -eu
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
fi
exec "$@"
