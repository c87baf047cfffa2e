#!/usr/bin/env bash
# hack/vm/selftest.sh: prove the plab-vm guest has what plab's tests need.
#
# On the host:  hack/vm/selftest.sh [hack/vm/run options]
#   builds hack/vm/idmapcheck and reruns itself inside hack/vm/run.
# In the VM (PLAB_VM=1) it checks, printing PASS/FAIL per check:
#   1 pure cgroup v2 with cpu, memory, pids, io, cpuset delegated
#   2 runc runs a busybox container with memory/pids/cpu limits and seccomp
#   3 btrfs on a loop device
#   4 id-mapped mounts + overlayfs with an id-mapped lower (idmapcheck),
#     on tmpfs and on btrfs
#   5 user namespaces
# and exits non-zero if any failed.
set -uo pipefail

if [[ ${PLAB_VM:-} != 1 ]]; then
	set -e
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
	repo=$(cd "$here/../.." && pwd -P)
	bin=$(mktemp -d /tmp/plab-vm-selftest.XXXXXX)
	trap 'rm -rf "$bin"' EXIT
	(cd "$repo" && go build -o "$bin/idmapcheck" ./hack/vm/idmapcheck)
	set +e
	"$here/run" --share "$bin" --env "IDMAPCHECK=$bin/idmapcheck" "$@" -- "$here/selftest.sh"
	exit $?
fi

pass=0 fail=0
ok() { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
step() { echo; echo "=== $*"; }

step "1. cgroup v2"
echo "uname -r: $(uname -r)"
echo "/proc/self/cgroup: $(cat /proc/self/cgroup)"
echo "fs type of /sys/fs/cgroup: $(stat -fc %T /sys/fs/cgroup)"
echo "cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
echo "cgroup mounts:"; grep -E ' cgroup2? ' /proc/self/mounts | sed 's/^/  /'
[[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]] && ok "cgroup2 at /sys/fs/cgroup" || bad "/sys/fs/cgroup is not cgroup2"
grep -q ' cgroup ' /proc/self/mounts && bad "a cgroup v1 hierarchy is mounted" || ok "no cgroup v1 mounted"
missing=
for c in cpu memory pids io cpuset; do grep -qw $c /sys/fs/cgroup/cgroup.subtree_control || missing+=" $c"; done
[[ -z $missing ]] && ok "controllers delegated: cpu memory pids io cpuset" || bad "not in subtree_control:$missing"

step "2. runc"
b=/tmp/runc-bundle
rm -rf $b && mkdir -p $b/rootfs/bin $b/rootfs/proc $b/rootfs/sys $b/rootfs/dev $b/rootfs/tmp
cp /bin/busybox $b/rootfs/bin/busybox
for a in sh id cat mkdir echo ls sleep; do ln -s busybox $b/rootfs/bin/$a; done
(cd $b && runc spec)
jq '.process.terminal = false
  | .process.args = ["/bin/sh", "-c", "echo id: $(id); echo cgroup: $(cat /proc/self/cgroup); echo memory.max inside: $(cat /sys/fs/cgroup/memory.max); if mkdir /tmp/x 2>/dev/null; then echo mkdir allowed; else echo mkdir blocked by seccomp; fi"]
  | .root.readonly = false
  | .linux.cgroupsPath = "/plab-selftest/ctr1"
  | .linux.resources.memory = {"limit": 67108864}
  | .linux.resources.pids = {"limit": 32}
  | .linux.resources.cpu = {"quota": 50000, "period": 100000}
  | .linux.seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
      "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}' \
	$b/config.json >$b/config.new && mv $b/config.new $b/config.json
echo "runc: $(runc --version | head -n1)"
if runc create --bundle $b plab-selftest >/tmp/runc.out 2>&1; then
	cg=/sys/fs/cgroup/plab-selftest/ctr1
	echo "host view of $cg: memory.max=$(cat $cg/memory.max) pids.max=$(cat $cg/pids.max) cpu.max=$(cat $cg/cpu.max)"
	[[ $(cat $cg/memory.max) == 67108864 ]] && ok "runc wrote memory.max=67108864" || bad "memory.max is $(cat $cg/memory.max)"
	[[ $(cat $cg/pids.max) == 32 && $(cat $cg/cpu.max) == "50000 100000" ]] && ok "runc wrote pids.max and cpu.max" || bad "pids.max/cpu.max not as set"
	runc start plab-selftest
	for _ in $(seq 100); do [[ $(runc state plab-selftest 2>/dev/null | jq -r .status) == stopped ]] && break; sleep 0.1; done
	runc delete -f plab-selftest
	sed 's/^/  container: /' /tmp/runc.out
	grep -q 'id: uid=0' /tmp/runc.out && ok "container ran (id)" || bad "container output lacks id"
	grep -q 'cgroup: 0::/$' /tmp/runc.out && ok "container in its own cgroup namespace" || bad "container cgroup line unexpected"
	grep -q 'memory.max inside: 67108864' /tmp/runc.out && ok "memory limit visible inside" || bad "memory limit not visible inside"
	grep -q 'mkdir blocked by seccomp' /tmp/runc.out && ok "seccomp filter applied" || bad "seccomp filter not applied"
else
	sed 's/^/  /' /tmp/runc.out
	bad "runc create failed"
fi

step "3. btrfs on a loop device"
truncate -s 300M /tmp/btrfs.img
if mkfs.btrfs -q -f /tmp/btrfs.img && mkdir -p /mnt/btrfs && mount -o loop /tmp/btrfs.img /mnt/btrfs; then
	btrfs subvolume create /mnt/btrfs/sub >/dev/null && btrfs subvolume snapshot /mnt/btrfs/sub /mnt/btrfs/snap >/dev/null &&
		ok "btrfs loop mount, subvolume and snapshot" || bad "btrfs subvolume/snapshot failed"
	grep ' /mnt/btrfs ' /proc/self/mounts | sed 's/^/  /'
	losetup -a | sed 's/^/  /'
else
	bad "btrfs loop mount failed"
fi

step "4. id-mapped mounts and overlayfs over an id-mapped lower"
idm=${IDMAPCHECK:-/tmp/idmapcheck}
if [[ -x $idm ]]; then
	"$idm" /tmp/idmap-tmpfs && ok "idmapcheck on tmpfs" || bad "idmapcheck on tmpfs"
	if mountpoint -q /mnt/btrfs; then
		"$idm" /mnt/btrfs/idmap && ok "idmapcheck on btrfs" || bad "idmapcheck on btrfs"
	fi
else
	bad "no idmapcheck binary at $idm (go build -o /tmp/idmapcheck ./hack/vm/idmapcheck)"
fi
mountpoint -q /mnt/btrfs && umount /mnt/btrfs

step "5. user namespaces"
out=$(unshare --user --map-root-user sh -c 'id -u; cat /proc/self/uid_map' 2>&1)
echo "$out" | sed 's/^/  /'
[[ $(head -n1 <<<"$out") == 0 ]] && ok "unshare --user --map-root-user" || bad "user namespace"

echo
echo "selftest: $pass passed, $fail failed"
((fail == 0))
