package svcmgr

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"slices"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
)

// Selection says which nodes a slice wants.
type Selection struct {
	// Nodes names nodes outright; the other fields then only filter.
	Nodes []string
	// Count is how many nodes (0: every node that qualifies).
	Count int
	// Sites keeps nodes of these sites only.
	Sites []string
	// Where keeps nodes whose tags have these values.
	Where map[string]string
	// NodeGroup keeps the nodes of a node group (its tag and value).
	NodeGroup string
	// SpreadSites takes nodes from as many sites as possible (one per site
	// in turn).
	SpreadSites bool
	// MinFree keeps nodes with at least this free (CPU reservation,
	// memory, disk, minimum bandwidth).
	MinFree api.Resources
}

// Select picks nodes from PLC's ads. Nodes not in boot state never qualify.
// Among those that do, the least loaded come first; the answer is sorted.
func (s *Session) Select(ctx context.Context, sel Selection) ([]string, error) {
	var ads []api.Ad
	for after := ""; ; {
		var page api.List[api.Ad]
		path := "/v1/ads"
		if after != "" {
			path += "?after=" + url.QueryEscape(after)
		}
		if err := s.PLC.Do(ctx, "GET", path, nil, &page); err != nil {
			return nil, fmt.Errorf("node ads: %w", err)
		}
		ads = append(ads, page.Items...)
		if after = page.Next; after == "" {
			break
		}
	}
	where := map[string]string{}
	for k, v := range sel.Where {
		where[k] = v
	}
	if sel.NodeGroup != "" {
		var page api.List[api.NodeGroup]
		if err := s.PLC.Do(ctx, "GET", "/v1/nodegroups", nil, &page); err != nil {
			return nil, fmt.Errorf("node groups: %w", err)
		}
		groups := page.Items
		i := slices.IndexFunc(groups, func(g api.NodeGroup) bool { return g.Name == sel.NodeGroup })
		if i < 0 {
			return nil, fmt.Errorf("no node group %s; see plab nodegroup list: %w", sel.NodeGroup, errdefs.ErrNotFound)
		}
		where[groups[i].Tag] = groups[i].Value
	}
	var ok []api.Ad
	for _, a := range ads {
		if a.BootState != api.BootStateBoot || !qualifies(a, sel, where) {
			continue
		}
		ok = append(ok, a)
	}
	if len(sel.Nodes) > 0 {
		var out []string
		for _, h := range sel.Nodes {
			if !slices.ContainsFunc(ok, func(a api.Ad) bool { return a.Node == h }) {
				return nil, fmt.Errorf("node %s is not available for this selection (unknown, not in boot state, or filtered out); see plab node list: %w", h, errdefs.ErrNotFound)
			}
			out = append(out, h)
		}
		slices.Sort(out)
		return slices.Compact(out), nil
	}
	slices.SortFunc(ok, func(a, b api.Ad) int {
		return cmp.Or(cmp.Compare(a.Slivers, b.Slivers), cmp.Compare(b.Free.MemoryBytes, a.Free.MemoryBytes), cmp.Compare(a.Node, b.Node))
	})
	n := sel.Count
	if n == 0 {
		n = len(ok)
	}
	if n > len(ok) {
		return nil, fmt.Errorf("%d nodes wanted, %d qualify; ask for fewer or loosen the selection: %w", n, len(ok), errdefs.ErrNoCapacity)
	}
	var out []string
	if sel.SpreadSites {
		bySite := map[string][]string{}
		var sites []string
		for _, a := range ok {
			if bySite[a.Site] == nil {
				sites = append(sites, a.Site)
			}
			bySite[a.Site] = append(bySite[a.Site], a.Node)
		}
		for len(out) < n {
			for _, site := range sites {
				if len(out) < n && len(bySite[site]) > 0 {
					out = append(out, bySite[site][0])
					bySite[site] = bySite[site][1:]
				}
			}
		}
	} else {
		for _, a := range ok[:n] {
			out = append(out, a.Node)
		}
	}
	slices.Sort(out)
	return out, nil
}

func qualifies(a api.Ad, sel Selection, where map[string]string) bool {
	if len(sel.Sites) > 0 && !slices.Contains(sel.Sites, a.Site) {
		return false
	}
	for k, v := range where {
		if a.Tags[k] != v {
			return false
		}
	}
	m, f := sel.MinFree, a.Free
	return f.CPUReserve >= m.CPUReserve && f.MemoryBytes >= m.MemoryBytes && f.DiskBytes >= m.DiskBytes && f.NetMinRate >= m.NetMinRate
}
