//go:build linux

package oci

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/plab/plab/errdefs"
)

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n# comment\nuser:x:1000:1000:User:/home/user:/bin/sh\nbroken:line\nbad:x:abc:1::/:/bin/sh\nhigh:x:70000:70000::/:/bin/sh\n"
	testGroup  = "root:x:0:\nusers:x:100:user,other\nwheel:x:10:user\nuser:x:1000:\n"
)

// fakeRoot makes a directory tree that stands for a sliver's root.
func fakeRoot(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"etc", "root", "home/user"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestLookupUser(t *testing.T) {
	root := fakeRoot(t, testPasswd, testGroup)
	tests := []struct {
		spec string
		want execUser
	}{
		{"", execUser{Name: "root", Home: "/root", HomeFound: true}},
		{"root", execUser{Name: "root", Home: "/root", HomeFound: true}},
		{"user", execUser{Name: "user", UID: 1000, GID: 1000, Groups: []uint32{100, 10}, Home: "/home/user", HomeFound: true}},
		{"1000", execUser{Name: "user", UID: 1000, GID: 1000, Groups: []uint32{100, 10}, Home: "/home/user", HomeFound: true}},
		{"user:users", execUser{Name: "user", UID: 1000, GID: 100, Groups: []uint32{10}, Home: "/home/user", HomeFound: true}},
		{"4321", execUser{UID: 4321, Home: "/", HomeFound: true}},
		{"4321:55", execUser{UID: 4321, GID: 55, Home: "/", HomeFound: true}},
	}
	for _, tt := range tests {
		got, err := lookupUser(root, tt.spec)
		if err != nil {
			t.Errorf("lookupUser(%q): %v", tt.spec, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("lookupUser(%q) (-want +got):\n%s", tt.spec, diff)
		}
	}
	for _, spec := range []string{"nobody-here", "user:nogroup-here", "high", "70000", "1:70000", "-1"} {
		if _, err := lookupUser(root, spec); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("lookupUser(%q) = %v, want ErrInvalid", spec, err)
		}
	}
}

// TestLookupUserStaysInRoot: the sliver owns its /etc; symlinks there must
// resolve inside its root, never to the host's files.
func TestLookupUserStaysInRoot(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("pwned:x:42:42::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{filepath.Join(outside, "passwd"), "../../../../../.." + filepath.Join(outside, "passwd"), "/proc/self/root" + filepath.Join(outside, "passwd")} {
		root := fakeRoot(t, "", "")
		p := filepath.Join(root, "etc/passwd")
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		if u, err := lookupUser(root, "pwned"); err == nil {
			t.Errorf("with /etc/passwd -> %s, lookupUser(pwned) = %+v: the host's file was read", target, u)
		}
	}
	// A FIFO (or any special file) as /etc/passwd must not hang the host.
	root := fakeRoot(t, "", "")
	p := filepath.Join(root, "etc/passwd")
	os.Remove(p)
	if err := syscallMkfifo(p); err != nil {
		t.Fatal(err)
	}
	if _, err := lookupUser(root, "root"); err == nil {
		t.Error("lookupUser with a FIFO as /etc/passwd succeeded")
	}
}

func FuzzLookupUser(f *testing.F) {
	f.Add(testPasswd, testGroup, "user:users")
	f.Add("a:b:c:d:e:f:g\n::::::\n", "::::\n", "a")
	f.Add("x:x:4294967295:4294967295::/:\n", "", "x")
	f.Fuzz(func(t *testing.T, passwd, group, spec string) {
		u, err := parseUser([]byte(passwd), []byte(group), spec)
		if err != nil {
			return
		}
		if u.UID >= 65536 || u.GID >= 65536 {
			t.Errorf("parseUser(%q) = %+v: ids outside the sliver's range", spec, u)
		}
		for _, g := range u.Groups {
			if g >= 65536 {
				t.Errorf("parseUser(%q) = %+v: group outside the sliver's range", spec, u)
			}
		}
	})
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "HOME=/root"}, []string{"HOME=/tmp", "X=1", "EMPTY="})
	want := []string{"PATH=/bin", "HOME=/tmp", "X=1", "EMPTY="}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mergeEnv (-want +got):\n%s", diff)
	}
}
