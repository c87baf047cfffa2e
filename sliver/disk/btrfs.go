//go:build linux

package disk

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The btrfs ioctls plab uses (include/uapi/linux/btrfs.h).
const (
	iocSubvolCreate = 0x5000940e // _IOW(0x94, 14, struct btrfs_ioctl_vol_args)
	iocSnapDestroy  = 0x5000940f // _IOW(0x94, 15, struct btrfs_ioctl_vol_args)
	iocInoLookup    = 0xd0009412 // _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)
	iocFSInfo       = 0x8400941f // _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args)
	iocQuotaCtl     = 0xc0109428 // _IOWR(0x94, 40, struct btrfs_ioctl_quota_ctl_args)
	iocQgroupCreate = 0x4010942a // _IOW(0x94, 42, struct btrfs_ioctl_qgroup_create_args)
	iocQgroupLimit  = 0x8030942b // _IOR(0x94, 43, struct btrfs_ioctl_qgroup_limit_args)

	quotaCtlEnable     = 1
	qgroupLimitMaxRfer = 1 << 0
	firstFreeObjectID  = 256
	topLevelSubvolume  = 5
)

type volArgs struct {
	fd   int64
	name [4088]byte
}

type inoLookupArgs struct {
	treeid   uint64
	objectid uint64
	name     [4080]byte
}

type fsInfoArgs struct {
	maxID          uint64
	numDevices     uint64
	fsid           [16]byte
	nodesize       uint32
	sectorsize     uint32
	cloneAlignment uint32
	csumType       uint16
	csumSize       uint16
	flags          uint64
	generation     uint64
	metadataUUID   [16]byte
	reserved       [944]byte
}

type quotaCtlArgs struct {
	cmd    uint64
	status uint64
}

type qgroupCreateArgs struct {
	create   uint64
	qgroupid uint64
}

type qgroupLimitArgs struct {
	qgroupid uint64
	flags    uint64
	maxRfer  uint64
	maxExcl  uint64
	rsvRfer  uint64
	rsvExcl  uint64
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

func nameArgs(name string) (*volArgs, error) {
	a := &volArgs{}
	if len(name) >= len(a.name) {
		return nil, fmt.Errorf("subvolume name too long")
	}
	copy(a.name[:], name)
	return a, nil
}

// subvolCreate creates subvolume name in the directory dirfd.
func subvolCreate(dirfd int, name string) error {
	a, err := nameArgs(name)
	if err != nil {
		return err
	}
	return ioctl(dirfd, iocSubvolCreate, unsafe.Pointer(a))
}

// subvolDestroy deletes subvolume name (with its contents) from dirfd.
func subvolDestroy(dirfd int, name string) error {
	a, err := nameArgs(name)
	if err != nil {
		return err
	}
	return ioctl(dirfd, iocSnapDestroy, unsafe.Pointer(a))
}

// subvolID returns the ID of the subvolume holding fd.
func subvolID(fd int) (uint64, error) {
	a := &inoLookupArgs{objectid: firstFreeObjectID}
	if err := ioctl(fd, iocInoLookup, unsafe.Pointer(a)); err != nil {
		return 0, err
	}
	return a.treeid, nil
}

// fsUUID returns the filesystem UUID of fd, as /sys/fs/btrfs names it.
func fsUUID(fd int) (string, error) {
	a := &fsInfoArgs{}
	if err := ioctl(fd, iocFSInfo, unsafe.Pointer(a)); err != nil {
		return "", err
	}
	u := a.fsid
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}

// quotaEnable turns on qgroup accounting (a no-op when it is on).
func quotaEnable(fd int) error {
	a := &quotaCtlArgs{cmd: quotaCtlEnable}
	return ioctl(fd, iocQuotaCtl, unsafe.Pointer(a))
}

// qgroupLimit caps the referenced bytes of the subvolume holding fd.
func qgroupLimit(fd int, maxBytes uint64) error {
	a := &qgroupLimitArgs{flags: qgroupLimitMaxRfer, maxRfer: maxBytes}
	return ioctl(fd, iocQgroupLimit, unsafe.Pointer(a))
}

// qgroupDestroy removes the level-0 qgroup of a deleted subvolume.
func qgroupDestroy(fd int, id uint64) error {
	a := &qgroupCreateArgs{create: 0, qgroupid: id}
	return ioctl(fd, iocQgroupCreate, unsafe.Pointer(a))
}
