#!/usr/bin/env bash
# A single-node SLURM cluster on this host, to run `hydra/launcher=submitit_slurm` sweeps for real.
# Installs slurm-wlm and munge (Debian/Ubuntu, as root), writes a munge key and a minimal slurm.conf
# (one node = this host with its real CPUs and memory, one partition), starts munged, slurmctld and slurmd.
# Idempotent: a second run leaves running daemons alone and only resumes the node if it is down.
#   sudo scripts/slurm_local.sh              # partition "cnnlab"
#   SLURM_PARTITION=debug sudo scripts/slurm_local.sh
set -euo pipefail

PARTITION="${SLURM_PARTITION:-cnnlab}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
NODE="$(hostname -s)"

if [[ $EUID -ne 0 ]]; then
  echo "scripts/slurm_local.sh must run as root (it installs packages and starts daemons). Fix: sudo $0" >&2
  exit 2
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "== installing slurm-wlm and munge"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge
fi

# munge: one key shared by the node's daemons and clients.
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  echo "== creating /etc/munge/munge.key"
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "== starting munged"
  runuser -u munge -- /usr/sbin/munged
  sleep 1
fi

# slurm.conf: the node line comes from `slurmd -C` (real sockets, cores, threads, memory of this host).
mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
NODE_LINE="$(slurmd -C | head -1) State=UNKNOWN"
NEW_CONF="$(cat <<EOF
# Written by cnnlab scripts/slurm_local.sh: a single-node cluster on $NODE.
ClusterName=cnnlab-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# No cgroups: works inside containers and VMs without a delegated cgroup tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Allocate single cores, so several one-CPU jobs share the node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
KillWait=30
$NODE_LINE
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)"
CONF_CHANGED=0
if [[ ! -f "$CONF" ]] || [[ "$(cat "$CONF")" != "$NEW_CONF" ]]; then
  echo "== writing $CONF"
  echo "$NEW_CONF" > "$CONF"
  CONF_CHANGED=1
fi

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
if running /run/slurmctld.pid; then
  if [[ $CONF_CHANGED == 1 ]]; then scontrol reconfigure; fi
else
  echo "== starting slurmctld"
  slurmctld
fi
if ! running /run/slurmd.pid; then
  echo "== starting slurmd"
  slurmd
fi

# Wait until the controller answers and the node is usable.
for _ in $(seq 30); do
  state="$(sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1 || true)"
  case "$state" in
    idle*|mix*|alloc*) break ;;
    down*|drain*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 1
done
sinfo
case "$state" in
  idle*|mix*|alloc*) ;;
  *) echo "node $NODE is '$state', not idle; see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log" >&2; exit 1 ;;
esac

cat <<EOF

SLURM is up: partition '$PARTITION', node '$NODE' ($(sinfo -h -o '%c CPUs, %m MB' | head -1)).
  test it:  make test-slurm   (or: srun -p $PARTITION hostname)
  stop it:  scontrol shutdown && kill \$(cat /run/munge/munged.pid)
  logs:     $LOG_DIR/slurmctld.log, $LOG_DIR/slurmd.log
No accounting (no slurmdbd): sacct fails, so submitit warns "Bypassing sacct error" while it polls.
EOF
