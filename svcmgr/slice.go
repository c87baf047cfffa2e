package svcmgr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
)

// Event is progress at one node.
type Event struct {
	Node string
	// What happened: "ticket", "up", "gone", "renewed", "failed".
	What string
	Err  error
}

// Options shape a slice operation.
type Options struct {
	// Parallel is how many nodes are worked on at once (default 64).
	Parallel int
	// Progress receives each node's events (nil: none), one call at a
	// time.
	Progress func(Event)
}

func (o Options) event(e Event) {
	if o.Progress != nil {
		o.Progress(e)
	}
}

// Result is the outcome of a slice operation: which nodes are done and
// which failed, and why.
type Result struct {
	Slice  string
	OK     []string
	Failed map[string]error
}

// Err is nil when every node succeeded, else an error naming how many
// failed and how to resume.
func (r Result) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d nodes failed; see plab slice status %s, and run plab slice sync %s to retry: %w",
		len(r.Failed), len(r.Failed)+len(r.OK), r.Slice, r.Slice, ErrPartial)
}

// ErrPartial marks an operation that succeeded on some nodes only.
var ErrPartial = errors.New("partial")

// CreateOptions are what Create needs.
type CreateOptions struct {
	Options
	Select    Selection
	Resources api.Resources
	// Lease asks each node for a lease this long (0: as long as it grants).
	Lease time.Duration
	// Description is the slice's at PLC when Create makes it there.
	Description string
}

// Create makes slice name exist on the selected nodes: the slice at PLC
// (made when missing), a ticket per node (saved), a lease per node (each
// redeemed in parallel and saved). Nodes that fail are in the result; a
// later Sync retries them from the saved state.
func (s *Session) Create(ctx context.Context, name string, o CreateOptions) (Result, error) {
	var sl api.Slice
	err := s.PLC.Do(ctx, "GET", "/v1/slices/"+name, nil, &sl)
	if errors.Is(err, errdefs.ErrNotFound) {
		desc := o.Description
		if desc == "" {
			desc = "created by plab slice create"
		}
		err = s.PLC.Do(ctx, "POST", "/v1/slices", api.Slice{Name: name, Description: desc}, &sl)
		if err == nil {
			// Its creator is its first member.
			var me api.Whoami
			if err = s.PLC.Do(ctx, "GET", "/v1/whoami", nil, &me); err == nil {
				err = s.PLC.Do(ctx, "PUT", "/v1/slices/"+name+"/members/"+me.Email, nil, nil)
			}
		}
	}
	if err != nil {
		return Result{}, fmt.Errorf("slice %s at PLC: %w", name, err)
	}
	hosts, err := s.Select(ctx, o.Select)
	if err != nil {
		return Result{}, err
	}
	st, err := loadState(s.Dir, name)
	if err != nil {
		return Result{}, err
	}
	if err := st.update(func() {
		st.Resources, st.Lease = o.Resources, o.Lease
		for _, h := range hosts {
			if st.Nodes[h] == nil {
				st.Nodes[h] = &NodeState{}
			}
		}
	}); err != nil {
		return Result{}, err
	}
	return s.converge(ctx, st, hosts, o.Options)
}

// Sync retries every node of the slice that has no running sliver: from
// its saved ticket, or a fresh one when that one is spent or expired.
func (s *Session) Sync(ctx context.Context, name string, o Options) (Result, error) {
	st, err := s.state(name)
	if err != nil {
		return Result{}, err
	}
	return s.converge(ctx, st, st.Hosts(), o)
}

// state loads a slice the user's side knows.
func (s *Session) state(name string) (*SliceState, error) {
	st, err := loadState(s.Dir, name)
	if err != nil {
		return nil, err
	}
	if len(st.Nodes) == 0 {
		return nil, fmt.Errorf("no nodes of slice %s are known here; create it first (plab slice create %s --nodes N): %w", name, name, errdefs.ErrNotFound)
	}
	return st, nil
}

// converge brings each of hosts to a running sliver under a lease.
func (s *Session) converge(ctx context.Context, st *SliceState, hosts []string, o Options) (Result, error) {
	// Nodes whose sliver runs need nothing; the others need a ticket
	// that was never redeemed, or a fresh one.
	var fresh []string
	var freshMu sync.Mutex
	now := s.Now()
	t := newTally(st, o)
	s.each(ctx, hosts, o, func(h string) {
		ns := st.node(h)
		if ns.Lease != "" {
			n, err := s.Node(ctx, h)
			if err == nil {
				var sv api.Sliver
				err = s.NodeClient(n).Do(ctx, "GET", "/v1/slivers/"+st.Name, nil, &sv)
				if err == nil {
					t.leased(h, "up", sv.Lease)
					return
				}
			}
			if !errors.Is(err, errdefs.ErrNotFound) {
				t.fail(h, err)
				return
			}
			// The sliver is gone (expired, deleted): its ticket is spent.
			_ = st.update(func() { *st.Nodes[h] = NodeState{} })
			ns = NodeState{}
		}
		if ns.Ticket == "" || !ns.TicketNotAfter.After(now.Add(time.Minute)) {
			freshMu.Lock()
			fresh = append(fresh, h)
			freshMu.Unlock()
		}
	})
	if ctx.Err() != nil {
		return t.res, ctx.Err()
	}
	if len(fresh) > 0 {
		var tk api.Tickets
		err := s.PLC.Do(ctx, "POST", "/v1/slices/"+st.Name+"/tickets", api.TicketRequest{Nodes: fresh, Resources: st.Resources}, &tk)
		if err != nil {
			return t.res, fmt.Errorf("tickets for slice %s: %w", st.Name, err)
		}
		if err := st.update(func() {
			for _, t := range tk.Tickets {
				if ns := st.Nodes[t.Node]; ns != nil {
					ns.Ticket, ns.TicketID, ns.TicketNotAfter = t.Ticket, t.ID, t.NotAfter
				}
			}
		}); err != nil {
			return t.res, err
		}
		for _, it := range tk.Tickets {
			o.event(Event{Node: it.Node, What: "ticket"})
		}
	}
	var todo []string
	for _, h := range hosts {
		if ns := st.node(h); ns.Lease == "" && ns.Ticket != "" && !t.failed(h) {
			todo = append(todo, h)
		}
	}
	s.each(ctx, todo, o, func(h string) {
		l, err := s.redeem(ctx, st.Name, h, st.node(h).Ticket, st.Lease)
		if err != nil {
			if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrExpired) {
				// A spent or stale ticket: the next sync asks for a fresh one.
				_ = st.update(func() { st.Nodes[h].Ticket = "" })
			}
			t.fail(h, err)
			return
		}
		t.leased(h, "up", l)
	})
	return t.res, ctx.Err()
}

// redeem presents a ticket at host; a ticket the node redeemed already (an
// answer lost on the way) yields the lease it made.
func (s *Session) redeem(ctx context.Context, slice, host, tk string, term time.Duration) (api.Lease, error) {
	n, err := s.Node(ctx, host)
	if err != nil {
		return api.Lease{}, err
	}
	c := s.NodeClient(n)
	var l api.Lease
	err = c.Do(ctx, "POST", "/v1/leases", api.Redemption{Ticket: tk, LeaseSeconds: int64(term / time.Second)}, &l)
	if errors.Is(err, errdefs.ErrConflict) {
		var sv api.Sliver
		if gerr := c.Do(ctx, "GET", "/v1/slivers/"+slice, nil, &sv); gerr == nil && sv.Lease.Lease != "" {
			return sv.Lease, nil
		}
	}
	return l, err
}

// tally collects a slice operation's outcome across parallel nodes.
type tally struct {
	st  *SliceState
	o   Options
	mu  sync.Mutex
	res Result
}

func newTally(st *SliceState, o Options) *tally {
	return &tally{st: st, o: o, res: Result{Slice: st.Name, Failed: map[string]error{}}}
}

// ok records that host succeeded (what: "up", "renewed", "gone").
func (t *tally) ok(host, what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.res.OK = append(t.res.OK, host)
	t.o.event(Event{Node: host, What: what})
}

// fail records host's failure, also in the saved state.
func (t *tally) fail(host string, err error) {
	_ = t.st.update(func() {
		if ns := t.st.Nodes[host]; ns != nil {
			ns.Error = err.Error()
		}
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	t.res.Failed[host] = err
	t.o.event(Event{Node: host, What: "failed", Err: err})
}

// failed says whether host failed.
func (t *tally) failed(host string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.res.Failed[host] != nil
}

// leased saves host's lease and records its success.
func (t *tally) leased(host, what string, l api.Lease) {
	_ = t.st.update(func() {
		ns := t.st.Nodes[host]
		if l.Lease != "" {
			ns.Lease = l.Lease
		}
		ns.LeaseNotAfter, ns.Error = l.NotAfter, ""
	})
	t.ok(host, what)
}

// each runs fn for every host, o.Parallel at a time.
func (s *Session) each(ctx context.Context, hosts []string, o Options, fn func(string)) {
	par := o.Parallel
	if par <= 0 {
		par = 64
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for _, h := range hosts {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(h)
		}()
	}
	wg.Wait()
}

// NodeStatus is a slice's sliver on one node as that node reports it.
type NodeStatus struct {
	Node    string    `json:"node"`
	State   string    `json:"state"`
	Expires time.Time `json:"lease_expires,omitzero"`
	Error   string    `json:"error,omitempty"`
}

// SliceStatus is a slice across its nodes.
type SliceStatus struct {
	Slice   string       `json:"slice"`
	Expires time.Time    `json:"expires,omitzero"`
	Nodes   []NodeStatus `json:"nodes"`
}

// Status asks every node of the slice for its sliver, in parallel.
func (s *Session) Status(ctx context.Context, name string, o Options) (SliceStatus, error) {
	st, err := s.state(name)
	if err != nil {
		return SliceStatus{}, err
	}
	out := SliceStatus{Slice: name}
	var sl api.Slice
	if err := s.PLC.Do(ctx, "GET", "/v1/slices/"+name, nil, &sl); err == nil {
		out.Expires = sl.Expires
	}
	hosts := st.Hosts()
	out.Nodes = make([]NodeStatus, len(hosts))
	idx := map[string]int{}
	for i, h := range hosts {
		idx[h] = i
	}
	s.each(ctx, hosts, o, func(h string) {
		ns := NodeStatus{Node: h}
		n, err := s.Node(ctx, h)
		var sv api.Sliver
		if err == nil {
			err = s.NodeClient(n).Do(ctx, "GET", "/v1/slivers/"+name, nil, &sv)
		}
		switch {
		case err == nil:
			ns.State, ns.Expires = sv.State, sv.Lease.NotAfter
		case errors.Is(err, errdefs.ErrNotFound):
			ns.State = "missing"
			if e := st.node(h).Error; e != "" {
				ns.Error = e
			}
		default:
			ns.State, ns.Error = "unknown", err.Error()
		}
		out.Nodes[idx[h]] = ns
	})
	return out, ctx.Err()
}

// Renew moves the slice's expiry at PLC to until, then renews each lease
// with a fresh ticket; the result's nodes have the expiry they granted in
// the saved state (LeaseExpiry).
func (s *Session) Renew(ctx context.Context, name string, until time.Time, o Options) (Result, error) {
	st, err := s.state(name)
	if err != nil {
		return Result{}, err
	}
	if err := s.PLC.Do(ctx, "POST", "/v1/slices/"+name+"/renew", api.Renewal{Expires: until}, nil); err != nil {
		return Result{}, fmt.Errorf("renew slice %s at PLC: %w", name, err)
	}
	hosts := st.Hosts()
	var tk api.Tickets
	if err := s.PLC.Do(ctx, "POST", "/v1/slices/"+name+"/tickets", api.TicketRequest{Nodes: hosts, Resources: st.Resources}, &tk); err != nil {
		return Result{}, fmt.Errorf("fresh tickets for slice %s: %w", name, err)
	}
	tickets := map[string]string{}
	for _, t := range tk.Tickets {
		tickets[t.Node] = t.Ticket
	}
	t := newTally(st, o)
	s.each(ctx, hosts, o, func(h string) {
		n, err := s.Node(ctx, h)
		var l api.Lease
		if err == nil {
			err = s.NodeClient(n).Do(ctx, "POST", "/v1/slivers/"+name+"/renew", api.LeaseRenewal{Ticket: tickets[h]}, &l)
		}
		if err != nil {
			t.fail(h, err)
			return
		}
		t.leased(h, "renewed", l)
	})
	return t.res, ctx.Err()
}

// LeaseExpiry returns the lease expiry saved for each node of the slice.
func (s *Session) LeaseExpiry(name string) (map[string]time.Time, error) {
	st, err := s.state(name)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, h := range st.Hosts() {
		out[h] = st.node(h).LeaseNotAfter
	}
	return out, nil
}

// Delete destroys the slice's slivers on every node, in parallel, and
// forgets the nodes where that worked (all of them: the saved state goes).
func (s *Session) Delete(ctx context.Context, name string, o Options) (Result, error) {
	st, err := s.state(name)
	if err != nil {
		return Result{}, err
	}
	t := newTally(st, o)
	s.each(ctx, st.Hosts(), o, func(h string) {
		n, err := s.Node(ctx, h)
		if err == nil {
			err = s.NodeClient(n).Do(ctx, "DELETE", "/v1/slivers/"+name, nil, nil)
		}
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			t.fail(h, err)
			return
		}
		_ = st.update(func() { delete(st.Nodes, h) })
		t.ok(h, "gone")
	})
	if len(t.res.Failed) == 0 && ctx.Err() == nil {
		return t.res, st.remove()
	}
	return t.res, ctx.Err()
}
