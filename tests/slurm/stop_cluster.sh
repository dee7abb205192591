#!/usr/bin/env bash
# Stop the daemons start_cluster.sh started, by the PIDs it recorded.
#
#   tests/slurm/stop_cluster.sh STATE_DIR
set -uo pipefail
state=${1:?usage: stop_cluster.sh STATE_DIR}
for pid in $(cat "$state/pids" 2>/dev/null); do
    kill "$pid" 2>/dev/null
done
for pid in $(cat "$state/pids" 2>/dev/null); do
    for _ in $(seq 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
done
rm -f "$state/pids"
