#!/usr/bin/env bash
# A local SLURM cluster on this one machine: munge, the controller and two node daemons (n1, n2),
# one partition over both. Run as root, with Debian's slurm-wlm and munge installed
# (apt-get install slurm-wlm munge). Everything it writes (munge key, slurm.conf, state, spool, logs)
# lives under one directory: $SIGMOIDF1_SLURM_DIR, by default $TMPDIR/sigmoidf1-slurm.
#
#   scripts/slurm_local.sh start    start what is not running (a running cluster is left as it is)
#   scripts/slurm_local.sh status   exit 0 when the controller answers and both nodes are up
#   scripts/slurm_local.sh stop     cancel the jobs, stop every daemon (nothing is left running)
#   scripts/slurm_local.sh env      print `export SLURM_CONF=...`: eval "$(scripts/slurm_local.sh env)"
#
# How one host holds two nodes: this slurm build allows several slurmd per host
# (`scontrol show config | grep MULTIPLE_SLURMD`), each started as `slurmd -N <node>` on its own port.
# The node names must resolve to this host (Lightning's SLURM environment connects the processes
# through the first node's name), so `start` adds "127.0.0.1 n1 n2" to /etc/hosts where they do
# not resolve, and `stop` removes that line. No cgroups (containers): processes are tracked by
# parent id (proctrack/linuxproc), tasks are not bound (task/none). Both nodes declare every core of
# the host (SlurmdParameters=config_overrides): they share them.
# The job state is kept between stop and start, so job ids keep increasing.
set -euo pipefail

DIR=${SIGMOIDF1_SLURM_DIR:-${TMPDIR:-/tmp}/sigmoidf1-slurm}
PORT=${SIGMOIDF1_SLURM_PORT:-16817}  # the controller's; the nodes listen on PORT+1 and PORT+2
NODES=(n1 n2)
CONF=$DIR/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket
HOSTS_MARK="# sigmoidf1 local slurm"
export SLURM_CONF=$CONF

say() { echo "slurm_local: $*"; }
die() { echo "slurm_local: error: $*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
  local cpus memory host
  # the CPUs this host has (nproc would count OMP_NUM_THREADS instead when it is set)
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  memory=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
  host=$(hostname)
  cat >"$CONF" <<EOF
# Written by scripts/slurm_local.sh: two nodes on one host, for testing.
ClusterName=sigmoidf1
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again this many seconds after it ended (default 120)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# schedule every few seconds (defaults 60 and 30 s): a requeued job starts again soon
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
# finished jobs stay visible to scontrol/squeue for this long (there is no accounting database)
MinJobAge=3600
KillWait=30
InactiveLimit=0
NodeName=${NODES[0]} NodeAddr=127.0.0.1 NodeHostname=$host Port=$((PORT + 1)) CPUs=$cpus RealMemory=$memory State=UNKNOWN
NodeName=${NODES[1]} NodeAddr=127.0.0.1 NodeHostname=$host Port=$((PORT + 2)) CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=${NODES[0]},${NODES[1]} Default=YES MaxTime=INFINITE State=UP
EOF
}

resolve_nodes() {
  local node missing=()
  for node in "${NODES[@]}"; do
    getent hosts "$node" >/dev/null || missing+=("$node")
  done
  [ ${#missing[@]} -eq 0 ] && return
  [ -w /etc/hosts ] || die "the node names ${missing[*]} do not resolve and /etc/hosts is not writable"
  echo "127.0.0.1 ${missing[*]} $HOSTS_MARK" >>/etc/hosts
  say "added to /etc/hosts: 127.0.0.1 ${missing[*]}"
}

unresolve_nodes() {
  if grep -q "$HOSTS_MARK" /etc/hosts 2>/dev/null; then
    # rewritten in place: /etc/hosts may be a mount point that cannot be replaced
    local kept
    kept=$(grep -v "$HOSTS_MARK" /etc/hosts)
    printf '%s\n' "$kept" >/etc/hosts
  fi
}

start_munge() {
  if pid_alive "$DIR/munge/munged.pid"; then return; fi
  mkdir -p "$DIR/munge"
  chmod 0700 "$DIR/munge"
  [ -f "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key"
  chmod 0600 "$DIR/munge/munge.key"
  munged --force --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed"
}

controller_answers() { scontrol ping 2>/dev/null | grep -q "is UP"; }

nodes_up() {
  # every node known and in a usable state (idle, allocated, mixed: not down, drained, unknown)
  local states
  states=$(sinfo --noheader --Node --format="%N %t" 2>/dev/null) || return 1
  [ "$(grep -cE ' (idle|alloc|mix|comp)$' <<<"$states")" -eq ${#NODES[@]} ]
}

start() {
  [ "$(id -u)" = 0 ] || die "run as root (the daemons run as root)"
  for tool in munged mungekey slurmctld slurmd scontrol sinfo; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install slurm-wlm munge"
  done
  mkdir -p "$DIR"/{state,run,log} "${NODES[@]/#/$DIR/spool/}"
  resolve_nodes
  pid_alive "$DIR/run/slurmctld.pid" || write_conf  # a running cluster keeps its configuration
  start_munge
  if ! pid_alive "$DIR/run/slurmctld.pid"; then
    slurmctld -f "$CONF"
  fi
  for node in "${NODES[@]}"; do
    if ! pid_alive "$DIR/run/slurmd-$node.pid"; then
      slurmd -f "$CONF" -N "$node"
    fi
  done
  local deadline=$((SECONDS + 60))
  until controller_answers && nodes_up; do
    if [ $SECONDS -ge $deadline ]; then
      sinfo --Node --long >&2 || true
      die "the cluster did not come up in 60 s; logs: $DIR/log"
    fi
    # nodes left down or drained by an earlier unclean stop come back here
    scontrol update nodename="$(IFS=,; echo "${NODES[*]}")" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  say "up: export SLURM_CONF=$CONF"
  sinfo
}

stop_daemon() {  # stop_daemon PIDFILE NAME
  pid_alive "$1" || return 0
  local pid
  pid=$(cat "$1")
  kill "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  say "$2 did not stop in 10 s: killed"
}

stop() {
  if controller_answers; then
    scancel --quiet --full --user="$(id -un)" 2>/dev/null || true
    local deadline=$((SECONDS + 60))
    while [ -n "$(squeue --noheader --states=RUNNING,COMPLETING 2>/dev/null)" ]; do
      [ $SECONDS -lt $deadline ] || { say "jobs still running after 60 s"; break; }
      sleep 1
    done
  fi
  for node in "${NODES[@]}"; do
    stop_daemon "$DIR/run/slurmd-$node.pid" "slurmd -N $node"
  done
  stop_daemon "$DIR/run/slurmctld.pid" slurmctld
  stop_daemon "$DIR/munge/munged.pid" munged
  unresolve_nodes
  say "stopped"
}

status() {
  if controller_answers && nodes_up; then
    sinfo
    return 0
  fi
  say "not running (SLURM_CONF=$CONF)"
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
