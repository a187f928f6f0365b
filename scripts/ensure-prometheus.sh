#!/usr/bin/env bash
# Make sure the tools of tests/deploy are installed: Debian's `prometheus` package (promtool
# and a real Prometheus server) and a compose client that can validate docker-compose.yml
# offline (the `docker compose` plugin, else Debian's `docker-compose`). Installs what is
# missing with apt-get; never starts anything. Used by `make test` and CI.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if ! { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }; then
  need+=(docker-compose)
fi

if [ ${#need[@]} -eq 0 ]; then
  echo "deploy tools: promtool, prometheus and a compose client are installed"
  exit 0
fi

echo "deploy tools: installing Debian's ${need[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
# --no-install-recommends: no node exporter / web UI assets; the package's postinst may try
# to start a service, which simply does not happen without systemd.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
promtool --version | head -1
