package svcmgr

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/plc/plctest"
)

// loginAs logs u into a fresh state directory at p.
func loginAs(t *testing.T, p *plctest.PLC, u *plctest.User) *Session {
	t.Helper()
	dir := t.TempDir()
	if _, err := Login(context.Background(), dir, LoginOptions{PLC: p.URL, Identity: u.KeyFile, CAFingerprint: p.CAFingerprint}); err != nil {
		t.Fatalf("Login: %v", err)
	}
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestSelect: the broker picks nodes from PLC's ads by count, site, tag,
// node group, free resources and spread over sites; nodes not in boot
// state never qualify; asking for too many says how many qualify.
func TestSelect(t *testing.T) {
	p := plctest.Start(t)
	for _, site := range []string{"ucb", "mit", "eth"} {
		p.Site(site)
	}
	big := api.Resources{MemoryBytes: 8 << 30, CPUReserve: 4000}
	small := api.Resources{MemoryBytes: 1 << 30, CPUReserve: 1000}
	nodes := []struct {
		host, site string
		tags       map[string]string
		cap        api.Resources
		boot       string
	}{
		{"a1.ucb.test", "ucb", map[string]string{"arch": "x86_64"}, big, api.BootStateBoot},
		{"a2.ucb.test", "ucb", map[string]string{"arch": "x86_64"}, small, api.BootStateBoot},
		{"a3.ucb.test", "ucb", map[string]string{"arch": "arm64"}, big, api.BootStateBoot},
		{"b1.mit.test", "mit", map[string]string{"arch": "x86_64"}, big, api.BootStateBoot},
		{"c1.eth.test", "eth", map[string]string{"arch": "arm64"}, small, api.BootStateBoot},
		{"c2.eth.test", "eth", map[string]string{"arch": "x86_64"}, big, api.BootStateSafeboot},
	}
	for _, n := range nodes {
		p.Do(p.Admin, "POST", "/v1/nodes", api.Node{Hostname: n.host, Site: n.site}, nil)
		capacity, boot := n.cap, n.boot
		p.Do(p.Admin, "PATCH", "/v1/nodes/"+n.host, api.NodeUpdate{Tags: n.tags, Capacity: &capacity, BootState: &boot}, nil)
	}
	p.Do(p.Admin, "POST", "/v1/nodegroups", api.NodeGroup{Name: "arm", Tag: "arch", Value: "arm64"}, nil)
	s := loginAs(t, p, p.Admin)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		sel  Selection
		want []string
	}{
		{"all in boot state", Selection{}, []string{"a1.ucb.test", "a2.ucb.test", "a3.ucb.test", "b1.mit.test", "c1.eth.test"}},
		{"one site", Selection{Sites: []string{"ucb"}}, []string{"a1.ucb.test", "a2.ucb.test", "a3.ucb.test"}},
		{"a tag", Selection{Where: map[string]string{"arch": "arm64"}}, []string{"a3.ucb.test", "c1.eth.test"}},
		{"a node group", Selection{NodeGroup: "arm"}, []string{"a3.ucb.test", "c1.eth.test"}},
		{"free memory", Selection{MinFree: api.Resources{MemoryBytes: 4 << 30}}, []string{"a1.ucb.test", "a3.ucb.test", "b1.mit.test"}},
		{"spread, three nodes", Selection{Count: 3, SpreadSites: true}, []string{"a1.ucb.test", "b1.mit.test", "c1.eth.test"}},
		{"by name", Selection{Nodes: []string{"b1.mit.test", "a2.ucb.test"}}, []string{"a2.ucb.test", "b1.mit.test"}},
	} {
		got, err := s.Select(ctx, tc.sel)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: Select = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if got, err := s.Select(ctx, Selection{Count: 2, SpreadSites: true, Sites: []string{"ucb", "mit"}}); err != nil || len(got) != 2 || !slices.Contains(got, "b1.mit.test") {
		t.Errorf("spread over ucb and mit, two nodes = %v, %v; want one of each", got, err)
	}
	if _, err := s.Select(ctx, Selection{Count: 6}); !errors.Is(err, errdefs.ErrNoCapacity) {
		t.Errorf("six nodes of five = %v, want ErrNoCapacity", err)
	}
	if _, err := s.Select(ctx, Selection{Nodes: []string{"c2.eth.test"}}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("a node in safeboot by name = %v, want ErrNotFound", err)
	}
	if _, err := s.Select(ctx, Selection{NodeGroup: "none"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("an unknown node group = %v, want ErrNotFound", err)
	}
}

// TestLogin: a wrong pin is refused and writes nothing; a key PLC does not
// know is refused with what to do; first use pins the CA PLC shows.
func TestLogin(t *testing.T) {
	p := plctest.Start(t)
	ctx := context.Background()
	dir := t.TempDir() + "/plab"
	stranger := plctest.NewUser(t, "nobody@x.test")
	if _, err := Login(ctx, dir, LoginOptions{PLC: p.URL, Identity: p.Admin.KeyFile, CAFingerprint: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}); !errors.Is(err, errdefs.ErrDenied) {
		t.Errorf("login with a wrong pin = %v, want ErrDenied", err)
	}
	if _, err := LoadConfig(dir); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("after a refused login, LoadConfig = %v; want nothing written", err)
	}
	if _, err := Login(ctx, dir, LoginOptions{PLC: p.URL, Identity: stranger.KeyFile, CAFingerprint: p.CAFingerprint}); err == nil {
		t.Error("login with a key PLC does not know succeeded")
	}
	res, err := Login(ctx, dir, LoginOptions{PLC: p.URL, Identity: p.Admin.KeyFile})
	if err != nil || !res.FirstUse || res.Config.CAFingerprint != p.CAFingerprint || res.Whoami.Email != p.Admin.Email {
		t.Fatalf("first-use login = %+v, %v", res, err)
	}
	cfg, err := LoadConfig(dir)
	if err != nil || cfg != res.Config {
		t.Errorf("LoadConfig = %+v, %v; want %+v", cfg, err, res.Config)
	}
	for _, bad := range []LoginOptions{{PLC: "http://x", Identity: p.Admin.KeyFile}, {PLC: p.URL}} {
		if _, err := Login(ctx, t.TempDir(), bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Login(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestRemoteCommand(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"uptime; df -h"}, "uptime; df -h"},
		{[]string{"sh", "-c", "echo $(hostname); exit 3"}, `'sh' '-c' 'echo $(hostname); exit 3'`},
		{[]string{"echo", "it's"}, `'echo' 'it'\''s'`},
	} {
		if got := remoteCommand(tc.in); got != tc.want {
			t.Errorf("remoteCommand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
