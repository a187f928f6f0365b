#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:${HELPSEEK_TEST_REDIS_PORT:-6379}: start one if none
# does, install Debian's redis-server first if it is missing. Used by `make test` and CI.
set -euo pipefail
port="${HELPSEEK_TEST_REDIS_PORT:-6379}"

ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG
  else
    # bash's /dev/tcp: send PING, expect +PONG
    exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || true
    exec 3>&-
    [[ "${reply:-}" == +PONG* ]]
  fi
}

if ping; then echo "redis: answering on 127.0.0.1:$port"; exit 0; fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis: redis-server missing, installing Debian's package"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

echo "redis: starting redis-server on 127.0.0.1:$port"
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir /tmp --logfile "/tmp/helpseek-redis-$port.log"
for _ in $(seq 1 50); do
  if ping; then echo "redis: up"; exit 0; fi
  sleep 0.1
done
echo "redis: failed to start on 127.0.0.1:$port (see /tmp/helpseek-redis-$port.log)" >&2
exit 1
