// Package testenv lets tests state what they need from the machine: root,
// binaries, kernel features. Outside CI a test whose needs are unmet is
// skipped with the reason; in CI (CI=true) it fails, so a missing
// prerequisite can never pass as green.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where nothing may skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unmet skips t (or fails it in CI) because a prerequisite is missing.
func Unmet(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing in CI: "+format, args...)
	}
	t.Skipf("prerequisite missing: "+format, args...)
}

// RequireRoot needs the test to run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unmet(t, "this test needs root; run it with sudo or as root (make test)")
	}
}

// RequireBinaries needs each named program in PATH.
func RequireBinaries(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Unmet(t, "%s not found in PATH; make test installs it (apt-get install the package providing %s)", n, n)
		}
	}
}

// StaticPlab builds the plab binary without cgo into a directory of t's
// and returns its path: the binary tests run as a separate process, and
// the one the SSH gateway runs inside slivers (whose images have no libc).
func StaticPlab(t testing.TB) string {
	t.Helper()
	RequireBinaries(t, "go")
	bin := filepath.Join(t.TempDir(), "plab")
	build := exec.Command("go", "build", "-o", bin, "github.com/plab/plab/cmd/plab")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
