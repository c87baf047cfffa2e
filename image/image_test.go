//go:build linux

package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/errdefs"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		want error
	}{
		{"a", nil},
		{"0", nil},
		{"debian-12", nil},
		{"ubuntu_24.04", nil},
		{strings.Repeat("a", 64), nil},
		{"", errdefs.ErrInvalid},
		{strings.Repeat("a", 65), errdefs.ErrInvalid},
		{"Debian", errdefs.ErrInvalid},
		{"-a", errdefs.ErrInvalid},
		{".a", errdefs.ErrInvalid},
		{"_a", errdefs.ErrInvalid},
		{"..", errdefs.ErrInvalid},
		{"a/b", errdefs.ErrInvalid},
		{"a b", errdefs.ErrInvalid},
		{"é", errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateName(tt.name); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("ValidateName(%q) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
}

func TestImportGetList(t *testing.T) {
	s := newStore(t)
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	s.now = func() time.Time { return now }
	ctx := t.Context()
	data := tarBytes(t, dir("etc"), reg("etc/hostname", "node\n"), symlink("bin", "usr/bin"))
	for _, name := range []string{"b", "a", "c.1"} {
		if _, err := s.ImportTar(ctx, name, bytes.NewReader(data), "test:"+name); err != nil {
			t.Fatalf("ImportTar(%q) = %v", name, err)
		}
	}
	// Strangers in the store directory are not images.
	os.Mkdir(filepath.Join(s.Dir(), "Zed"), 0o755)
	os.WriteFile(filepath.Join(s.Dir(), "file"), nil, 0o644)

	got, err := s.Get("a")
	if err != nil {
		t.Fatalf("Get(a) = %v", err)
	}
	want := Image{Name: "a", Created: now, Source: "test:a", Bytes: 5, Files: 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get(a) mismatch (-want +got):\n%s", diff)
	}

	list, err := s.List()
	if err != nil {
		t.Fatalf("List() = %v", err)
	}
	var names []string
	for _, img := range list {
		names = append(names, img.Name)
	}
	if diff := cmp.Diff([]string{"a", "b", "c.1"}, names); diff != "" {
		t.Errorf("List() names mismatch (-want +got):\n%s", diff)
	}

	rootfs, err := s.RootFS("a")
	if err != nil {
		t.Fatalf("RootFS(a) = %v", err)
	}
	if want := filepath.Join(s.Dir(), "a", "rootfs"); rootfs != want || !filepath.IsAbs(rootfs) {
		t.Errorf("RootFS(a) = %q, want %q", rootfs, want)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc/hostname")); string(b) != "node\n" {
		t.Errorf("ReadFile(etc/hostname) = %q, %v, want %q", b, err, "node\n")
	}
	// Unprivileged uids must be able to traverse to the rootfs.
	for _, p := range []string{s.Dir(), filepath.Join(s.Dir(), "a")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o711 {
			t.Errorf("Stat(%s) mode = %v, %v, want 0711", p, fi.Mode().Perm(), err)
		}
	}
}

func TestNotFound(t *testing.T) {
	s := newStore(t)
	if _, err := s.Get("nope"); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "plab image import") {
		t.Errorf("Get(nope) = %v, want %v with a hint", err, errdefs.ErrNotFound)
	}
	if _, err := s.RootFS("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("RootFS(nope) = %v, want %v", err, errdefs.ErrNotFound)
	}
	if err := s.Remove("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Remove(nope) = %v, want %v", err, errdefs.ErrNotFound)
	}
	if _, err := s.Get("../x"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Get(../x) = %v, want %v", err, errdefs.ErrInvalid)
	}
	if _, err := s.Import(t.Context(), "x", filepath.Join(t.TempDir(), "missing.tar")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Import(missing.tar) = %v, want %v", err, errdefs.ErrNotFound)
	}
	if _, err := s.Import(t.Context(), "x", "/dev/null"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Import(/dev/null) = %v, want %v", err, errdefs.ErrInvalid)
	}
	if _, err := s.ImportTar(t.Context(), "Bad/Name", bytes.NewReader(nil), ""); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("ImportTar(Bad/Name) = %v, want %v", err, errdefs.ErrInvalid)
	}
	if got := dirNames(t, s.Dir()); len(got) != 0 {
		t.Errorf("store holds %q after failed imports, want nothing", got)
	}
}

func TestRemove(t *testing.T) {
	s := newStore(t)
	data := tarBytes(t, dir("ro"), reg("ro/f", "x"), entry{typ: '5', name: "ro", mode: 0o500})
	if _, err := s.ImportTar(t.Context(), "a", bytes.NewReader(data), ""); err != nil {
		t.Fatalf("ImportTar(a) = %v", err)
	}
	if err := s.Remove("a"); err != nil {
		t.Fatalf("Remove(a) = %v", err)
	}
	if _, err := s.Get("a"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get(a) after Remove = %v, want %v", err, errdefs.ErrNotFound)
	}
	if got := dirNames(t, s.Dir()); len(got) != 0 {
		t.Errorf("store holds %q after Remove, want nothing", got)
	}
	// The name is free again.
	if _, err := s.ImportTar(t.Context(), "a", bytes.NewReader(data), ""); err != nil {
		t.Errorf("ImportTar(a) after Remove = %v", err)
	}
}

func TestImportConflict(t *testing.T) {
	s := newStore(t)
	data := tarBytes(t, reg("f", "x"))
	if _, err := s.ImportTar(t.Context(), "a", bytes.NewReader(data), ""); err != nil {
		t.Fatalf("ImportTar(a) = %v", err)
	}
	_, err := s.ImportTar(t.Context(), "a", bytes.NewReader(data), "")
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "plab image rm a") {
		t.Errorf("second ImportTar(a) = %v, want %v with a hint", err, errdefs.ErrConflict)
	}
}

func TestImportConcurrent(t *testing.T) {
	s := newStore(t)
	data := tarBytes(t, dir("d"), reg("d/f", strings.Repeat("x", 100<<10)))
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.ImportTar(t.Context(), "a", bytes.NewReader(data), "")
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, errdefs.ErrConflict):
			t.Errorf("ImportTar(a) = %v, want nil or %v", err, errdefs.ErrConflict)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d concurrent imports won, want 1", won, n)
	}
	if diff := cmp.Diff([]string{"a"}, dirNames(t, s.Dir())); diff != "" {
		t.Errorf("store contents mismatch (-want +got):\n%s", diff)
	}
}

// cancelReader cancels a context once more than after bytes were read.
type cancelReader struct {
	r      io.Reader
	after  int
	read   int
	cancel func()
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.read += n; c.read > c.after {
		c.cancel()
	}
	return n, err
}

// errReader fails after its reader is exhausted.
type errReader struct{ r io.Reader }

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		err = errors.New("connection reset")
	}
	return n, err
}

func TestImportInterrupted(t *testing.T) {
	var entries []entry
	for i := range 200 {
		entries = append(entries, reg(fmt.Sprintf("f%03d", i), strings.Repeat("z", 1000)))
	}
	data := tarBytes(t, entries...)

	t.Run("cancel", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r := &cancelReader{r: bytes.NewReader(data), after: len(data) / 2, cancel: cancel}
		if _, err := s.ImportTar(ctx, "a", r, ""); !errors.Is(err, context.Canceled) {
			t.Errorf("ImportTar(a) = %v, want %v", err, context.Canceled)
		}
		if got := dirNames(t, s.Dir()); len(got) != 0 {
			t.Errorf("store holds %q after a cancelled import, want nothing", got)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		s := newStore(t)
		r := errReader{bytes.NewReader(data[:len(data)/2])}
		if _, err := s.ImportTar(t.Context(), "a", r, ""); err == nil {
			t.Errorf("ImportTar(a) of a truncated stream = nil, want an error")
		}
		if got := dirNames(t, s.Dir()); len(got) != 0 {
			t.Errorf("store holds %q after a failed import, want nothing", got)
		}
	})
	t.Run("cancel directory", func(t *testing.T) {
		s := newStore(t)
		src := t.TempDir()
		for i := range 50 {
			os.WriteFile(filepath.Join(src, strings.Repeat("f", i+1)), []byte("x"), 0o644)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.Import(ctx, "a", src); !errors.Is(err, context.Canceled) {
			t.Errorf("Import(%q) = %v, want %v", src, err, context.Canceled)
		}
		if got := dirNames(t, s.Dir()); len(got) != 0 {
			t.Errorf("store holds %q after a cancelled import, want nothing", got)
		}
	})
}

func TestOpenRemovesLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	s, err := Open(dir, testLogger(t))
	if err != nil {
		t.Fatalf("Open(%q) = %v", dir, err)
	}
	if _, err := s.ImportTar(t.Context(), "keep", bytes.NewReader(tarBytes(t, reg("f", "x"))), ""); err != nil {
		t.Fatalf("ImportTar(keep) = %v", err)
	}
	for _, p := range []string{".tmp-a-123/rootfs/ro/deep", ".trash-b-456/rootfs/x"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(dir, ".tmp-a-123/rootfs/ro"), 0o500)
	if _, err := Open(dir, testLogger(t)); err != nil {
		t.Fatalf("Open(%q) again = %v", dir, err)
	}
	if diff := cmp.Diff([]string{"keep"}, dirNames(t, dir)); diff != "" {
		t.Errorf("store contents after Open mismatch (-want +got):\n%s", diff)
	}
	if err := s.Remove("keep"); err != nil {
		t.Errorf("Remove(keep) = %v", err)
	}
}
