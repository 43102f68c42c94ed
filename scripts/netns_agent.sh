#!/bin/sh
# mpirun launch agent for the one-machine multi-host harness (scripts/multihost.sh): Open MPI
# calls it as it would call ssh, "netns_agent.sh HOST COMMAND...", and it runs COMMAND inside the
# network namespace that plays HOST (10.77.0.K+1 is ${KILN_NETNS_PREFIX}hK), with a hostname of
# its own so each "host" looks like a separate node.
set -eu
host=$1
shift
case $host in
  10.77.0.*) k=$(( ${host##*.} - 1 )) ;;
  *) echo "netns_agent: unknown host '$host' (expected 10.77.0.N)" >&2; exit 1 ;;
esac
ns="${KILN_NETNS_PREFIX:?netns_agent: KILN_NETNS_PREFIX is not set}h$k"
exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"
