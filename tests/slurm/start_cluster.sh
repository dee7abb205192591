#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine, for the end-to-end Slurm test.
#
#   tests/slurm/start_cluster.sh STATE_DIR
#
# Installs Debian's slurm-wlm and munge if they are missing (needs root and apt), writes a
# slurm.conf for localhost with one GPU gres (so rules requesting `gpu` are scheduled), starts
# munged, slurmctld and slurmd, and records their PIDs in STATE_DIR/pids for stop_cluster.sh.
# Accounting is off, so Snakemake must query job status with squeue (MinJobAge is a day).
set -euo pipefail
state=$(realpath -m "${1:?usage: start_cluster.sh STATE_DIR}")
mkdir -p "$state/spool" "$state/ctld"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >"$state/apt.log" 2>&1 || {
        apt-get update -q >>"$state/apt.log" 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >>"$state/apt.log" 2>&1
    }
fi

cpus=$(nproc)
memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
mkdir -p /etc/slurm
# Jobs' srun finds the configuration at its default place only, so it is written there.
cat >/etc/slurm/slurm.conf <<CONF
ClusterName=basins_test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MpiDefault=none
ReturnToService=2
MinJobAge=86400
NodeName=localhost CPUs=$cpus RealMemory=$memory_mb Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
echo "Name=gpu File=/dev/null" >/etc/slurm/gres.conf

mkdir -p /run/munge
if ! munge -n >/dev/null 2>&1; then
    munged --force --pid-file="$state/munged.pid" 2>>"$state/munged.err"
fi
slurmctld -f /etc/slurm/slurm.conf
slurmd -f /etc/slurm/slurm.conf
for _ in $(seq 30); do
    if sinfo --noheader --format=%T 2>/dev/null | grep -qx idle; then
        break
    fi
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    sleep 1
done
sinfo --noheader --format=%T | grep -qx idle || { echo "the Slurm node did not come up; see $state/*.log" >&2; exit 1; }
cat "$state"/*.pid >"$state/pids"
echo "Slurm is up: $(sinfo --noheader --format='%P %D %T %G')"
