#!/bin/busybox sh
# plab-vm guest init (hack/vm/init.sh). hack/vm/run packs it as /init into the
# initramfs together with a static busybox and the modules listed in
# /modules/order. It runs twice, both times as PID 1:
#
#   stage 1 (/init, on the initramfs): load modules, build the root (the host's
#     / over 9p, read-only, under a tmpfs overlay), mount proc, sys, cgroup2,
#     dev, tmpfs scratch dirs and the read-write shares into it, then
#     switch_root into it running this script again as stage 2;
#   stage 2 (/run/plab-vm/init stage2, on the new root): run the command with
#     the host's environment and cwd, stream its output to the host over the
#     virtio port "plab.out", store its exit status in the ctl share, power off.
#
# Everything runs under busybox (static, no 9p reads): under TCG every exec of
# a dynamically linked binary costs about half a second.
# Configuration comes from the ctl share (written by hack/vm/run): config.sh,
# shares, env.sh and argv.sh.

export PATH=/bin
BB=/bin/busybox
up() { read -r __u __rest </proc/uptime; echo "$__u"; }
log() { echo "plab-vm: [$(up)] $*" >/dev/console; }
off() { sync; echo o >/proc/sysrq-trigger; $BB sleep 30; }
die() { log "stage1: $*"; off; }

if [ "${1:-}" = stage2 ]; then
	# ------------------------------------------------------------ stage 2
	BB=/run/plab-vm/busybox
	C=/run/plab-vm/ctl
	exec </dev/null >/dev/console 2>&1
	. $C/config.sh
	up >$C/t_stage2
	__out=
	for __p in /sys/class/virtio-ports/*; do
		read -r __n <"$__p/name" 2>/dev/null
		[ "$__n" = plab.out ] && __out=/dev/${__p##*/}
	done
	[ -n "$__out" ] || { log "stage2: no plab.out virtio port"; off; }
	if [ -n "$CGROUP" ]; then
		$BB mkdir -p "/sys/fs/cgroup/$CGROUP" && echo $$ >"/sys/fs/cgroup/$CGROUP/cgroup.procs" ||
			echo "plab-vm: could not join cgroup $CGROUP" >"$__out"
	fi
	cd "$CWD" 2>/dev/null || { echo "plab-vm: cwd $CWD does not exist in the VM; using /" >"$__out"; cd /; }
	unset PATH
	. $C/env.sh
	. $C/argv.sh
	[ -n "${PATH:-}" ] || export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	export TMPDIR=${TMPDIR:-/tmp} HOME=${HOME:-/root} PLAB_VM=1
	# Resolve the command ourselves: busybox sh would otherwise prefer its
	# own applets (mount, sh, ...) to the host's programs.
	__cmd=$1
	case $__cmd in
	*/*) ;;
	*)
		__save=$IFS IFS=:
		for __d in $PATH; do
			if [ -f "${__d:-.}/$1" ] && [ -x "${__d:-.}/$1" ]; then __cmd=${__d:-.}/$1; break; fi
		done
		IFS=$__save
		;;
	esac
	case $__cmd in
	*/*) ;;
	*) echo "plab-vm: $1: command not found" >"$__out"; echo 127 >$C/rc; off ;;
	esac
	shift
	up >$C/t_cmd
	: >$C/started
	# The command writes into a FIFO that busybox cat copies to the port: a
	# virtio port can be open only once, and commands reopen /dev/stdout.
	$BB cat /run/plab-vm/out >"$__out" &
	__cat=$!
	"$__cmd" "$@" </dev/null >/run/plab-vm/out 2>&1 &
	wait $!
	__rc=$?
	# Let cat drain the FIFO; stop it if leftover processes hold it open.
	__i=0
	while [ $__i -lt 40 ] && [ -d /proc/$__cat ]; do $BB usleep 50000; __i=$((__i + 1)); done
	kill $__cat 2>/dev/null
	echo $__rc >$C/rc
	off
fi

# -------------------------------------------------------------- stage 1
$BB mkdir -p /proc /sys /dev /mnt/host /mnt/ctl /mnt/rw /newroot
$BB mount -t proc proc /proc
$BB mount -t sysfs sysfs /sys
$BB mount -t devtmpfs devtmpfs /dev 2>/dev/null
T0=$(up)
while read -r m; do $BB insmod "/modules/$m" || die "insmod $m failed"; done </modules/order
log "stage1: modules loaded"

case " $(cat /proc/cmdline) " in
*" plab.probe "*) log "probe ok"; off ;;
esac

O9P=trans=virtio,version=9p2000.L,msize=512000
$BB mount -t 9p -o $O9P,cache=none plabctl /mnt/ctl || die "mount ctl share failed"
. /mnt/ctl/config.sh
echo "$T0" >/mnt/ctl/t_init
$BB mount -t 9p -o $O9P,ro,cache=loose hostroot /mnt/host || die "mount host root failed"
$BB mount -t tmpfs -o mode=0755 rootrw /mnt/rw
$BB mkdir -p /mnt/rw/upper /mnt/rw/work
$BB mount -t overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work hostroot /newroot ||
	die "mount overlay root failed"

R=/newroot
log "stage1: root mounted"
# /run first: it holds the ctl share, stage 2 and the output FIFO.
$BB mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs $R/run
$BB mkdir -p $R/run/plab-vm/ctl $R/run/lock $R/run/user
$BB chmod 1777 $R/run/lock
$BB mount --move /mnt/ctl $R/run/plab-vm/ctl
$BB cp /bin/busybox /init $R/run/plab-vm/
$BB mkfifo $R/run/plab-vm/out

# Kernel modules at the standard place: modprobe and the kernel's on-demand
# loading (request_module -> /sbin/modprobe, the host's kmod) use them.
# Bound from the read-only 9p view of the host, so read-only too.
if [ -d "/mnt/host$MODDIR" ]; then
	$BB mkdir -p $R/lib/modules/$KVER
	$BB mount --bind "/mnt/host$MODDIR" $R/lib/modules/$KVER || log "stage1: binding modules failed"
else
	log "stage1: no modules at $MODDIR"
fi

$BB mount -t proc -o nosuid,nodev,noexec proc $R/proc
$BB mount -t sysfs -o nosuid,nodev,noexec sysfs $R/sys
# cgroup v2 only (the kernel runs with cgroup_no_v1=all).
$BB mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 $R/sys/fs/cgroup ||
	$BB mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || die "mount cgroup2 failed"
for c in $(cat $R/sys/fs/cgroup/cgroup.controllers); do
	case $c in cpu | cpuset | memory | pids | io | hugetlb | rdma | misc)
		echo "+$c" >$R/sys/fs/cgroup/cgroup.subtree_control || log "stage1: cannot enable $c" ;;
	esac
done
$BB mount -t bpf -o nosuid,nodev,noexec bpf $R/sys/fs/bpf 2>/dev/null
$BB mount -t securityfs -o nosuid,nodev,noexec securityfs $R/sys/kernel/security 2>/dev/null
$BB mount -t debugfs -o nosuid,nodev,noexec debugfs $R/sys/kernel/debug 2>/dev/null

$BB mount --move /dev $R/dev
D=$R/dev
# Nodes of on-demand modules (loop-control, btrfs-control, fuse, ...): opening
# one loads its module, as kmod's static-nodes does on a normal host.
if [ -r "/mnt/host$MODDIR/modules.devname" ]; then
	while read -r mod name devno; do
		case $mod in '#'*) continue ;; esac
		[ -e "$D/$name" ] && continue
		t=${devno%%[0-9]*} mm=${devno#?}
		case $name in */*) $BB mkdir -p "$D/${name%/*}" ;; esac
		$BB mknod "$D/$name" "$t" "${mm%%:*}" "${mm#*:}" 2>/dev/null
	done <"/mnt/host$MODDIR/modules.devname"
fi
$BB mkdir -p $D/pts $D/shm $D/mqueue
$BB mount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts $D/pts
$BB mount -t tmpfs -o nosuid,nodev,mode=1777 shm $D/shm
$BB mount -t mqueue -o nosuid,nodev,noexec mqueue $D/mqueue
$BB ln -sfn /proc/self/fd $D/fd
$BB ln -sfn /proc/self/fd/0 $D/stdin
$BB ln -sfn /proc/self/fd/1 $D/stdout
$BB ln -sfn /proc/self/fd/2 $D/stderr
$BB ln -sfn /proc/kcore $D/core

# Fresh scratch space: real tmpfs (not overlay), so it can be an overlayfs
# upper dir or the source of an id-mapped mount.
for d in /tmp /var/tmp /var/lib /mnt; do
	m=0755
	case $d in /tmp | /var/tmp) m=1777 ;; esac
	$BB mount -t tmpfs -o nosuid,nodev,mode=$m tmpfs $R$d
done

# Read-write shares, at the host's paths.
while read -r tag path; do
	[ -n "$tag" ] || continue
	$BB mkdir -p "$R$path" && $BB mount -t 9p -o $O9P,cache=loose "$tag" "$R$path" ||
		log "stage1: mounting share $path failed"
done <$R/run/plab-vm/ctl/shares

# Commands that live right in a masked dir (/tmp/x): copied in.
while read -r src path; do
	[ -n "$src" ] || continue
	$BB cp -p "$R/run/plab-vm/ctl/$src" "$R$path" || log "stage1: copying $path failed"
done <$R/run/plab-vm/ctl/copies

echo plab-vm >/proc/sys/kernel/hostname
$BB ip link set lo up
ulimit -n 1048576 2>/dev/null

log "stage1: done"
$BB umount /proc /sys 2>/dev/null
exec $BB switch_root /newroot /run/plab-vm/busybox sh /run/plab-vm/init stage2
