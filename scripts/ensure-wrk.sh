#!/usr/bin/env bash
# Make sure the `wrk` HTTP load generator is on PATH for `make bench-service`: install Debian's
# package if it is missing. Best effort: if it cannot be installed, bench/service.py falls back
# to its httpx load generator, so this script never fails the bench.
set -uo pipefail

if command -v wrk >/dev/null 2>&1; then echo "wrk: $(command -v wrk)"; exit 0; fi

echo "wrk: missing, installing Debian's package"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if command -v apt-get >/dev/null 2>&1 \
  && $SUDO apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null; then
  echo "wrk: installed $(command -v wrk)"
else
  echo "wrk: could not install; bench/service.py will use its httpx load generator" >&2
fi
exit 0
