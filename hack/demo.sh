#!/usr/bin/env bash
# The plab demo on one machine: three slivers of a slice, a command run in
# each, the node's view of them. Until the testbed in a box exists, this
# shows the node's VMM layer on its own.
set -euo pipefail
plab=${1:-bin/plab}
[ "$(id -u)" = 0 ] || { echo "make demo needs root (slivers use namespaces, cgroups and mounts)"; exit 1; }

say() { printf '\n\033[1m$'; printf ' %q' "$@"; printf '\033[0m\n'; }
run() { say "$*"; "$@"; }

slivers=(demo_alice demo_bob demo_carol)
for s in "${slivers[@]}"; do "$plab" sliver destroy "$s" >/dev/null 2>&1 || true; done

run "$plab" sliver create demo_alice --memory 128M --disk 256M
run "$plab" sliver create demo_bob --cpu-share 2
run "$plab" sliver create demo_carol --cpu-reserve 0.25 --pids 64
for s in "${slivers[@]}"; do
	run "$plab" sliver exec "$s" -- sh -c 'hostname; id; ps'
done
run "$plab" sliver exec demo_alice -- sh -c 'echo hello > /root/hello; ls -l /root'
run "$plab" sliver exec demo_bob -- ls /root
run "$plab" sliver list
run "$plab" sliver show demo_alice
cat <<MSG

The slivers keep running. Try:
  $plab sliver exec -t demo_alice -- sh          # a shell inside
  $plab sliver exec -u user demo_bob -- id       # as another user
  $plab sliver update demo_alice --memory 256M   # change limits live
  $plab sliver destroy ${slivers[*]}             # remove them
  $plab node cleanup                             # remove everything plab made
MSG
