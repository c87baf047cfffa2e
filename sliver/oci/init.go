//go:build linux

package oci

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"

	"github.com/plab/plab/errdefs"
)

// The sliver init is PID 1 of every sliver: it keeps the sliver alive and
// reaps orphans, and does nothing else, so an idle sliver costs one tiny
// process and no daemon on the host. It is a 196-byte static ELF program,
// written to the node's state directory and bind-mounted read-only into each
// sliver at initPath.
//
// What it does, in x86-64 assembly:
//
//	_start: push   0x10000            ; sigset {SIGCHLD} on the stack
//	        mov    rsi, rsp
//	        xor    edi, edi           ; SIG_BLOCK
//	        xor    edx, edx
//	        mov    r10d, 8
//	        mov    eax, 14            ; rt_sigprocmask(SIG_BLOCK, {SIGCHLD}, NULL, 8)
//	        syscall
//	wait:   mov    rdi, rsp
//	        xor    esi, esi
//	        xor    edx, edx
//	        mov    r10d, 8
//	        mov    eax, 128           ; rt_sigtimedwait({SIGCHLD}, NULL, NULL, 8)
//	        syscall
//	reap:   mov    rdi, -1
//	        xor    esi, esi
//	        mov    edx, 1             ; WNOHANG
//	        xor    r10d, r10d
//	        mov    eax, 61            ; wait4(-1, NULL, WNOHANG, NULL)
//	        syscall
//	        test   rax, rax
//	        jg     reap               ; reaped one: try for another
//	        jmp    wait
//
// SIGCHLD stays blocked, so it queues even though its default action is to
// ignore it. Signals sent from inside the sliver cannot kill PID 1 of a PID
// namespace; the host stops a sliver with SIGKILL, which takes every process
// of the namespace with it.
var initCodeAMD64 = []byte{
	0x68, 0x00, 0x00, 0x01, 0x00, // push 0x10000
	0x48, 0x89, 0xe6, // mov rsi, rsp
	0x31, 0xff, // xor edi, edi
	0x31, 0xd2, // xor edx, edx
	0x41, 0xba, 0x08, 0x00, 0x00, 0x00, // mov r10d, 8
	0xb8, 0x0e, 0x00, 0x00, 0x00, // mov eax, 14
	0x0f, 0x05, // syscall
	0x48, 0x89, 0xe7, // wait: mov rdi, rsp
	0x31, 0xf6, // xor esi, esi
	0x31, 0xd2, // xor edx, edx
	0x41, 0xba, 0x08, 0x00, 0x00, 0x00, // mov r10d, 8
	0xb8, 0x80, 0x00, 0x00, 0x00, // mov eax, 128
	0x0f, 0x05, // syscall
	0x48, 0xc7, 0xc7, 0xff, 0xff, 0xff, 0xff, // reap: mov rdi, -1
	0x31, 0xf6, // xor esi, esi
	0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1
	0x45, 0x31, 0xd2, // xor r10d, r10d
	0xb8, 0x3d, 0x00, 0x00, 0x00, // mov eax, 61
	0x0f, 0x05, // syscall
	0x48, 0x85, 0xc0, // test rax, rax
	0x7f, 0xe3, // jg reap
	0xeb, 0xcd, // jmp wait
}

// initPath is where the init appears inside a sliver: on the /dev tmpfs, so
// it costs the sliver's disk nothing and never collides with the image.
const initPath = "/dev/.plab-init"

// initName is the init's command name, as /proc/PID/stat shows it.
const initName = ".plab-init"

// initELF wraps code in a minimal static ELF64 executable: the ELF header,
// one PT_LOAD program header mapping the whole file read+execute at
// 0x400000, then the code.
func initELF(code []byte) []byte {
	const (
		base    = 0x400000
		ehsize  = 64
		phsize  = 56
		entry   = base + ehsize + phsize
		pfR     = 4
		pfX     = 1
		ptLoad  = 1
		etExec  = 2
		emX8664 = 62
	)
	size := uint64(ehsize + phsize + len(code))
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* LE */, 1 /* version */, 0 /* SysV */})
	b.Write(make([]byte, 8))
	binary.Write(&b, le, uint16(etExec))
	binary.Write(&b, le, uint16(emX8664))
	binary.Write(&b, le, uint32(1))
	binary.Write(&b, le, uint64(entry))
	binary.Write(&b, le, uint64(ehsize)) // program headers follow the ELF header
	binary.Write(&b, le, uint64(0))      // no section headers
	binary.Write(&b, le, uint32(0))      // flags
	binary.Write(&b, le, uint16(ehsize))
	binary.Write(&b, le, uint16(phsize))
	binary.Write(&b, le, uint16(1)) // one program header
	binary.Write(&b, le, uint16(0)) // section header size
	binary.Write(&b, le, uint16(0)) // section headers
	binary.Write(&b, le, uint16(0)) // section name table
	binary.Write(&b, le, uint32(ptLoad))
	binary.Write(&b, le, uint32(pfR|pfX))
	binary.Write(&b, le, uint64(0)) // file offset
	binary.Write(&b, le, uint64(base))
	binary.Write(&b, le, uint64(base))
	binary.Write(&b, le, size) // bytes in the file
	binary.Write(&b, le, size) // bytes in memory
	binary.Write(&b, le, uint64(0x1000))
	b.Write(code)
	return b.Bytes()
}

// writeInit writes the sliver init to path (mode 0555), replacing what is
// there only when it differs.
func writeInit(path string) error {
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("the sliver init exists for amd64 only, not %s: %w", runtime.GOARCH, errdefs.ErrUnavailable)
	}
	want := initELF(initCodeAMD64)
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
		return os.Chmod(path, 0o555)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, want, 0o555); err != nil {
		return fmt.Errorf("write sliver init: %w", err)
	}
	if err := os.Chmod(tmp, 0o555); err != nil {
		return fmt.Errorf("write sliver init: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write sliver init: %w", err)
	}
	return nil
}
