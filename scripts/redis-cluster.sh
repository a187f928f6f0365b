#!/usr/bin/env bash
# Start (or stop) a 3-master Redis Cluster on loopback for trying the service by hand:
#   bash scripts/redis-cluster.sh [start|stop] [first-port, default 7001]
# then HELPSEEK_REDIS_URL=redis+cluster://127.0.0.1:7001 (docs/service.md, "Redis Cluster").
# Nodes keep their data in /tmp/helpseek-cluster-<port> (appendonly), no replicas.
set -euo pipefail
cmd="${1:-start}"
first="${2:-7001}"
ports=("$first" "$((first + 1))" "$((first + 2))")

if [[ "$cmd" == "stop" ]]; then
  for p in "${ports[@]}"; do redis-cli -p "$p" shutdown nosave 2>/dev/null || true; done
  echo "redis-cluster: stopped ${ports[*]}"; exit 0
fi

command -v redis-server >/dev/null 2>&1 || bash "$(dirname "$0")/ensure-redis.sh"
for p in "${ports[@]}"; do
  dir="/tmp/helpseek-cluster-$p"; mkdir -p "$dir"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$p" --dir "$dir" --save "" \
    --appendonly yes --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout 1000 --cluster-require-full-coverage no --logfile "$dir/redis.log"
done
for p in "${ports[@]}"; do
  for _ in $(seq 1 50); do redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
done
if ! redis-cli -p "$first" cluster info | grep -q "cluster_state:ok"; then
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
fi
for _ in $(seq 1 100); do
  redis-cli -p "$first" cluster info | grep -q "cluster_state:ok" && break; sleep 0.1
done
redis-cli -p "$first" cluster info | grep cluster_state
echo "redis-cluster: HELPSEEK_REDIS_URL=redis+cluster://127.0.0.1:$first"
