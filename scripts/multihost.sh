#!/usr/bin/env bash
# Several "hosts" on one machine: network namespaces joined by veth pairs on a bridge, with an
# optional bandwidth cap (tc tbf) on every link, for running MPI jobs whose ranks talk over a
# real network stack. Traffic stays inside the namespaces.
#
#   scripts/multihost.sh [--hosts N] [--rate RATE] [--quiet] -- COMMAND...
#
# COMMAND is run by sh inside host 0, so quote it to let it use the variables below:
#   scripts/multihost.sh --rate 100mbit -- 'mpirun --hostfile $KILN_HOSTFILE -np 2 kiln train ...'
#
# Host K is the namespace ${prefix}hK with address 10.77.0.(K+1)/24; a namespace ${prefix}sw
# holds the bridge. COMMAND runs inside host 0 with KILN_HOSTFILE (one slot per host) and the
# OMPI_MCA_* settings that make plain `mpirun --hostfile "$KILN_HOSTFILE" -np N ...` (or
# `kiln launch -n N --hostfile "$KILN_HOSTFILE" -- ...`) start its ranks on the hosts through
# scripts/netns_agent.sh instead of ssh, and send MPI traffic over TCP on 10.77.0.0/24 only.
# RATE is a tc rate ("100mbit"); each host's link is capped in both directions. Everything is
# removed on exit, however COMMAND ends. Exits 77 (ctest's "skipped") where namespaces cannot be
# created (no root, no CAP_NET_ADMIN, a sandbox without netns).
set -euo pipefail
hosts=2
rate=""
quiet=0
while (($#)); do
  case $1 in
    --hosts) hosts=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --quiet) quiet=1; shift ;;
    --) shift; break ;;
    *) echo "multihost: unknown option '$1'" >&2; exit 2 ;;
  esac
done
(($#)) || { echo "multihost: no command (usage: multihost.sh [--hosts N] [--rate RATE] -- COMMAND...)" >&2; exit 2; }
((hosts >= 1 && hosts <= 200)) || { echo "multihost: --hosts must be in [1, 200]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
prefix="kiln$$"
say() { ((quiet)) || echo "multihost: $*" >&2; }

cleanup() {
  for ((k = 0; k < hosts; k++)); do ip netns del "${prefix}h$k" 2>/dev/null || true; done
  ip netns del "${prefix}sw" 2>/dev/null || true
}
trap cleanup EXIT

if ! ip netns add "${prefix}sw" 2>/dev/null; then
  echo "multihost: SKIPPED: cannot create network namespaces here (needs root / CAP_NET_ADMIN and netns support)" >&2
  trap - EXIT
  exit 77
fi
ip -n "${prefix}sw" link add br0 type bridge
ip -n "${prefix}sw" link set br0 up
hostfile=$(mktemp)
trap 'cleanup; rm -f "$hostfile"' EXIT
for ((k = 0; k < hosts; k++)); do
  ns="${prefix}h$k"
  ip netns add "$ns"
  ip link add "${prefix}e$k" type veth peer name "${prefix}s$k"
  ip link set "${prefix}e$k" netns "$ns"
  ip link set "${prefix}s$k" netns "${prefix}sw"
  ip -n "$ns" link set "${prefix}e$k" name eth0
  ip -n "$ns" addr add "10.77.0.$((k + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "${prefix}sw" link set "${prefix}s$k" master br0
  ip -n "${prefix}sw" link set "${prefix}s$k" up
  if [[ -n $rate ]]; then
    # tbf on both ends: the host's egress and the switch port's egress towards the host.
    tc -n "$ns" qdisc add dev eth0 root tbf rate "$rate" burst 64kb latency 100ms
    tc -n "${prefix}sw" qdisc add dev "${prefix}s$k" root tbf rate "$rate" burst 64kb latency 100ms
  fi
  echo "10.77.0.$((k + 1)) slots=1" >> "$hostfile"
done
say "$hosts hosts on 10.77.0.0/24${rate:+, links capped at $rate}"

export KILN_HOSTFILE=$hostfile KILN_NETNS_PREFIX=$prefix
export OMPI_MCA_plm_rsh_agent="$here/netns_agent.sh"
export OMPI_MCA_plm_rsh_no_tree_spawn=1
export OMPI_MCA_oob_tcp_if_include=10.77.0.0/24
export OMPI_MCA_btl_tcp_if_include=10.77.0.0/24
export OMPI_MCA_btl=self,tcp
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
set +e
ip netns exec "${prefix}h0" unshare --uts sh -c "hostname ${prefix}h0; $*"
rc=$?
set -e
if ((!quiet)); then
  for ((k = 0; k < hosts; k++)); do
    say "host $k sent $(ip netns exec "${prefix}h$k" cat /sys/class/net/eth0/statistics/tx_bytes) bytes"
  done
fi
exit $rc
