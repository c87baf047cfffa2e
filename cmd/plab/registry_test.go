package main

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/api"
	"github.com/plab/plab/plc/plctest"
)

// TestListPages: a listing follows PLC's pages to the end, stops at a
// limit inside or across pages, and keeps its filters on every page.
func TestListPages(t *testing.T) {
	p := plctest.Start(t)
	want := []string{"pl"} // PLC's own site
	for i := range 7 {
		name := fmt.Sprintf("site%d", i)
		p.Site(name)
		want = append(want, name)
	}
	c := p.Client(p.Admin)
	names := func(limit, size int) []string {
		t.Helper()
		ss, err := listPages[api.Site](context.Background(), c, "/v1/sites", nil, limit, size)
		if err != nil {
			t.Fatalf("listPages(limit %d, size %d): %v", limit, size, err)
		}
		out := []string{}
		for _, s := range ss {
			out = append(out, s.LoginBase)
		}
		return out
	}
	for _, tc := range []struct{ limit, size, n int }{
		{0, 3, len(want)}, {0, 4, len(want)}, {0, 1000, len(want)},
		{2, 3, 2}, {5, 2, 5}, {8, 3, 8}, {20, 3, len(want)},
	} {
		if diff := cmp.Diff(want[:tc.n], names(tc.limit, tc.size)); diff != "" {
			t.Errorf("listPages(limit %d, size %d) (-want +got):\n%s", tc.limit, tc.size, diff)
		}
	}

	// A filter holds on every page.
	for i := range 3 {
		p.Do(p.Admin, "POST", "/v1/nodes", api.Node{Hostname: fmt.Sprintf("n%d.site1.test", i), Site: "site1"}, nil)
		p.Do(p.Admin, "POST", "/v1/nodes", api.Node{Hostname: fmt.Sprintf("n%d.site2.test", i), Site: "site2"}, nil)
	}
	ns, err := listPages[api.Node](context.Background(), c, "/v1/nodes", url.Values{"site": {"site2"}}, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range ns {
		got = append(got, n.Hostname)
	}
	if diff := cmp.Diff([]string{"n0.site2.test", "n1.site2.test", "n2.site2.test"}, got); diff != "" {
		t.Errorf("site2's nodes, two a page (-want +got):\n%s", diff)
	}
}
