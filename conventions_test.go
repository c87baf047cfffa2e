package plab

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type pkgInfo struct {
	ImportPath string
	Dir        string
	Name       string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

// listPackages runs go list over the module.
func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkgInfo
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages; expected the whole module", len(pkgs))
	}
	return pkgs
}

// TestPackageDocs: every package has exactly one package comment, in one of
// its files, starting "Package <name>" (or "Command <name>" for a main
// package).
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		var docs []string
		fset := token.NewFileSet()
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil {
				docs = append(docs, f)
				want := "Package " + p.Name + " "
				if p.Name == "main" {
					want = "Command " + filepath.Base(p.Dir) + " "
				}
				if !strings.HasPrefix(af.Doc.Text(), want) {
					t.Errorf("%s: package comment in %s starts %q, want %q", p.ImportPath, f, firstLine(af.Doc.Text()), want)
				}
			}
		}
		if len(docs) != 1 {
			t.Errorf("%s has %d package comments (%v), want exactly 1", p.ImportPath, len(docs), docs)
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

const module = "github.com/plab/plab"

// boundaries lists, for packages whose dependencies are restricted, the
// module packages they may depend on (directly or not). A prefix ending in
// "/" allows the subtree.
var boundaries = map[string][]string{
	// The wire types and client: shared with anything, so they stay free of
	// the daemons' internals.
	"api": {"errdefs"},
	// Leaves.
	"errdefs":              {},
	"internal/testenv":     {},
	"internal/atomicfile":  {},
	"internal/openapitest": {},
	// The sliver contract knows nothing of its implementations.
	"sliver":         {"errdefs"},
	"sliver/cgroups": {},
	"sliver/disk":    {"errdefs"},
	"image":          {"errdefs"},
	// Trust: keys and signed documents depend on nothing but each other.
	"cred":         {"errdefs"},
	"cred/ca":      {"errdefs", "cred"},
	"cred/ticket":  {"errdefs", "cred"},
	"cred/httpsig": {"errdefs", "cred"},
	// PLC's store knows nothing of PLC.
	"store":           {"errdefs"},
	"store/storetest": {"errdefs", "store"},
	// PLC serves the registry; it never touches a node's kernel.
	"plc": {"errdefs", "api", "cred", "cred/", "store"},
	// The resource monitor reads the node through its Source interface and
	// reports through a function: it never reaches into the node manager.
	"monitor": {"errdefs", "api", "sliver"},
	// The node manager drives slivers through the sliver contract; which
	// backend runs them is the command's choice. It never touches PLC's
	// store.
	"node": {"errdefs", "api", "cred", "cred/", "sliver", "monitor", "vnet", "vsh", "internal/atomicfile"},
	// Sliver networking knows nothing of leases, PLC or the sliver backend.
	"vnet": {"errdefs"},
	// The SSH gateway sees slivers through Exec and keys through a
	// function: it knows nothing of leases or PLC.
	"vsh": {"errdefs", "cred", "sliver"},
	// The user side talks to PLC and nodes through their APIs only.
	"svcmgr": {"errdefs", "api", "cred", "cred/", "internal/atomicfile"},
}

// TestImportBoundaries checks boundaries with go list -deps, and that no
// library imports a command or the test helpers.
func TestImportBoundaries(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		allowed, restricted := boundaries[rel]
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, module+"/") {
				continue
			}
			dr := strings.TrimPrefix(d, module+"/")
			if strings.HasPrefix(dr, "cmd/") {
				t.Errorf("%s depends on the command package %s", p.ImportPath, d)
			}
			if dr == "internal/testenv" && !strings.HasSuffix(rel, "test") {
				t.Errorf("%s depends on internal/testenv outside tests", p.ImportPath)
			}
			if restricted && !allowedDep(dr, allowed) {
				t.Errorf("%s may depend only on %v of plab, but depends on %s", p.ImportPath, allowed, d)
			}
		}
	}
}

func allowedDep(dep string, allowed []string) bool {
	for _, a := range allowed {
		if dep == a || (strings.HasSuffix(a, "/") && strings.HasPrefix(dep, a)) {
			return true
		}
	}
	return false
}
