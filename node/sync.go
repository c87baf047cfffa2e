package node

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/vnet"
)

// Sync with PLC. The node holds a long poll open at PLC
// (GET /v1/node/sync?since=N&wait=S); PLC answers as soon as anything the
// node hosts changes, with the whole list of delegated slices the node must
// host. The node converges on it idempotently, so a lost answer or a
// restart costs nothing but one more poll. While PLC is unreachable the
// node keeps serving its slivers and polls again with backoff.
//
//	poll ──answer──▶ converge ──▶ poll (wait 30 s; 5 s while a slice failed) …
//	  └──error──▶ wait (1s, 2s, … 30s) ──▶ poll (at once)

// SyncWait is how long one long poll waits at PLC; RetryWait replaces it
// while a slice could not be hosted, so it is tried again soon.
const (
	SyncWait  = 30 * time.Second
	RetryWait = 5 * time.Second
)

// Syncer keeps a node converged on what PLC assigns it.
type Syncer struct {
	M      *Manager
	Client *api.Client
	// MinBackoff and MaxBackoff bound the wait after a failed poll
	// (default 1 s and 30 s).
	MinBackoff, MaxBackoff time.Duration

	mu     sync.Mutex
	status api.SyncStatus
}

// Status reports the state of the sync.
func (s *Syncer) Status() api.SyncStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Syncer) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.status.Error = err.Error()
	} else {
		s.status.Error = ""
	}
}

// Run polls and converges until ctx ends.
func (s *Syncer) Run(ctx context.Context) error {
	minB, maxB := s.MinBackoff, s.MaxBackoff
	if minB == 0 {
		minB = time.Second
	}
	if maxB == 0 {
		maxB = 30 * time.Second
	}
	s.mu.Lock()
	s.status.URL = s.Client.BaseURL
	s.mu.Unlock()
	v, _ := s.M.db.meta(ctx, "sync_change")
	since, _ := strconv.ParseInt(v, 10, 64)
	wait := time.Duration(0) // the first poll answers at once: converge after a restart
	backoff := minB
	for {
		var out api.Sync
		err := s.Client.Do(ctx, "GET", fmt.Sprintf("/v1/node/sync?since=%d&wait=%d", since, int(wait/time.Second)), nil, &out)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.setErr(err)
			s.M.log.Warn("sync with PLC", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxB)
			wait = 0
			continue
		}
		backoff = minB
		s.mu.Lock()
		s.status.LastSync, s.status.Change = s.M.now(), out.Change
		s.mu.Unlock()
		// A slice that cannot be hosted (the node is full, say) must not
		// hold up the others: its error is recorded and it is tried again
		// at the next answer, which comes at the latest after RetryWait.
		err = s.M.Converge(ctx, out)
		s.setErr(err)
		wait = SyncWait
		if err != nil {
			s.M.log.Warn("converge on PLC's slices", "err", err)
			wait = RetryWait
		}
		if out.Change != since {
			since = out.Change
			if err := s.M.db.setMeta(ctx, "sync_change", strconv.FormatInt(since, 10)); err != nil {
				s.M.log.Warn("record sync change", "err", err)
			}
		}
	}
}

// Converge makes the node host exactly the delegated slices of st: it
// redeems the ticket of each new one, updates keys, limits and initscripts
// of the others, and destroys the delegated slivers PLC no longer assigns.
// Slivers users redeemed directly are left alone. Each slice is handled on
// its own; the errors are joined.
func (m *Manager) Converge(ctx context.Context, st api.Sync) error {
	want := map[string]api.NodeSlice{}
	for _, ns := range st.Slices {
		if ns.Enabled && ns.Ticket != "" && ns.Expires.After(m.now()) {
			want[ns.Name] = ns
		}
	}
	var errs []error
	m.mu.Lock()
	var gone []string
	for name, r := range m.leases {
		if _, ok := want[name]; r.Delegated && !ok {
			gone = append(gone, name)
		}
	}
	m.mu.Unlock()
	for _, name := range gone {
		m.withRow(name, func(r *leaseRow) {
			if r.Delegated {
				if err := m.destroy(ctx, r, "unassigned by PLC"); err != nil {
					errs = append(errs, err)
				}
			}
		})
	}
	// Slivers are made in parallel, a few at a time: the backend's
	// creation is mostly waiting on the kernel and runc.
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, ns := range want {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := m.converge(ctx, ns); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("slice %s: %w", ns.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// converge brings one delegated slice to what PLC says.
func (m *Manager) converge(ctx context.Context, ns api.NodeSlice) error {
	keys := map[string]string{}
	for _, k := range ns.Keys {
		pub, err := cred.ParseUserKey(k)
		if err != nil {
			m.log.Warn("skipping a member key PLC sent", "slice", ns.Name, "err", err)
			continue
		}
		keys[string(cred.FingerprintSSH(pub))] = k
	}
	attrs := ns.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	m.mu.Lock()
	r := m.leases[ns.Name]
	m.mu.Unlock()
	if r == nil {
		_, err := m.redeem(ctx, ns.Ticket, m.key.Fingerprint(), grant{delegated: true, keys: keys, attrs: attrs})
		return err
	}
	if !r.Delegated {
		// PLC owns slice names: a name it now delegates is no longer the
		// slice a user redeemed directly (that one was deleted, and its
		// tickets revoked), so its sliver goes.
		var err error
		m.withRow(ns.Name, func(r *leaseRow) {
			if !r.Delegated {
				err = m.destroy(ctx, r, "the name is a delegated slice at PLC now")
			}
		})
		if err != nil {
			return err
		}
		_, err = m.redeem(ctx, ns.Ticket, m.key.Fingerprint(), grant{delegated: true, keys: keys, attrs: attrs})
		return err
	}
	var err error
	m.withRow(ns.Name, func(r *leaseRow) {
		m.mu.Lock()
		sameKeys := maps.Equal(r.Keys, keys)
		oldAttrs := r.Attributes
		m.mu.Unlock()
		if !sameKeys {
			if err = m.setKeys(ctx, r, keys); err != nil {
				return
			}
		}
		if !maps.Equal(oldAttrs, attrs) {
			if err = m.updateAttributes(ctx, r, attrs); err != nil {
				return
			}
		}
		if t, _, terr := ticket.UnverifiedTicket(ns.Ticket); terr == nil && time.Unix(t.NotAfter, 0).After(r.TicketNotAfter) {
			_, err = m.renew(ctx, r, m.key.Fingerprint(), ns.Ticket)
		}
	})
	return err
}

// updateAttributes applies changed slice attributes to a delegated sliver:
// new limits (admitted first), and the initscript when it changed. A new
// image applies only to a sliver made anew.
func (m *Manager) updateAttributes(ctx context.Context, r *leaseRow, attrs map[string]string) error {
	res, err := withAttributes(ticket.Resources{}, attrs)
	if err != nil {
		return err
	}
	ports, err := vnet.ParsePorts(res.Ports)
	if err != nil {
		return err
	}
	c := claim{Slice: r.Slice, Res: res, Ports: ports}
	m.mu.Lock()
	old := m.adm.claims[r.Sliver]
	err = m.adm.admit(r.Sliver, c) // held from now on, so nothing else takes it meanwhile
	m.mu.Unlock()
	if err != nil {
		return err
	}
	next := *r
	next.Resources, next.Attributes = res, attrs
	err = m.backend.Update(ctx, r.Sliver, sliverResources(res))
	if err == nil {
		err = m.db.tx(ctx, func(tx *sql.Tx) error { return updateLease(tx, &next) })
	}
	if err != nil {
		m.mu.Lock()
		m.adm.claims[r.Sliver] = old
		m.mu.Unlock()
		return err
	}
	m.mu.Lock()
	oldScript := r.Attributes[AttrInitscript]
	*r = next
	m.mu.Unlock()
	if s := attrs[AttrInitscript]; s != oldScript {
		m.startInitscript(r.Sliver, s)
	}
	return nil
}
