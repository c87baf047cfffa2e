package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/vnet"
)

// recover reconciles the lease database with the host after a start, clean
// or not:
//   - a pending lease was never acknowledged: its sliver (whatever exists
//     of it) is destroyed and the ticket may be presented again;
//   - an active lease gets a running sliver: started if stopped, made anew
//     if missing;
//   - a sliver without a lease is destroyed.
func (m *Manager) recover(ctx context.Context) error {
	infos, rerr := m.backend.Recover(ctx)
	if rerr != nil {
		m.log.Warn("sliver backend recovery", "err", rerr)
	}
	present := map[string]sliver.Info{}
	for _, in := range infos {
		present[in.Name] = in
	}
	rows, err := m.db.all(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rows {
		if r.State == statePending {
			m.log.Warn("rolling back an unacknowledged redemption", "sliver", r.Sliver, "ticket", r.TicketID)
			if err := m.rollback(ctx, r); err != nil {
				errs = append(errs, fmt.Errorf("roll back %s: %w", r.Sliver, err))
			}
			continue
		}
		ports, _ := vnet.ParsePorts(r.Resources.Ports)
		m.mu.Lock()
		m.leases[r.Sliver] = r
		m.adm.claims[r.Sliver] = claim{Slice: r.Slice, Res: r.Resources, Ports: ports} // held already: no admission
		m.mu.Unlock()
		end := time.Unix(r.Lease.NotAfter, 0)
		in, ok := present[r.Sliver]
		switch {
		case m.now().After(end.Add(time.Duration(m.cfg.Grace))):
			// Over while the node was down: the reaper's work, done now.
			if err := m.destroy(ctx, r, "lease expired"); err != nil {
				errs = append(errs, err)
			}
			delete(present, r.Sliver)
		case !m.now().Before(end):
			// Over, within the grace period: not started again; the
			// reaper destroys it when the grace ends.
		case !ok:
			m.log.Warn("leased sliver is missing; making it anew", "sliver", r.Sliver)
			if err := m.build(ctx, r); err != nil {
				errs = append(errs, fmt.Errorf("recreate %s: %w", r.Sliver, err))
				continue
			}
			m.startInitscript(r.Sliver, r.Attributes[AttrInitscript])
		case in.State != sliver.Running:
			m.log.Info("starting leased sliver", "sliver", r.Sliver, "state", in.State)
			if err := m.backend.Start(ctx, r.Sliver); err != nil {
				errs = append(errs, fmt.Errorf("start %s: %w", r.Sliver, err))
				continue
			}
			if err := m.connect(ctx, r); err != nil {
				errs = append(errs, fmt.Errorf("network of %s: %w", r.Sliver, err))
			}
			m.startInitscript(r.Sliver, r.Attributes[AttrInitscript])
		default:
			// Running through the restart: its network is there (or is
			// made again, if the node's was reset).
			if err := m.connect(ctx, r); err != nil {
				errs = append(errs, fmt.Errorf("network of %s: %w", r.Sliver, err))
			}
		}
	}
	var left []sliver.Info
	for _, in := range present {
		left = append(left, in)
	}
	m.sweep(ctx, left)
	return errors.Join(errs...)
}

// sweep destroys slivers that hold no lease: what a crash between a
// lease's end and its sliver's destruction leaves.
func (m *Manager) sweep(ctx context.Context, infos []sliver.Info) {
	for _, in := range infos {
		unlock, ok := m.locks.tryLock(in.Name)
		if !ok {
			continue // an operation on it is under way
		}
		m.mu.Lock()
		_, leased := m.leases[in.Name]
		m.mu.Unlock()
		if !leased {
			m.log.Warn("destroying a sliver that holds no lease", "sliver", in.Name)
			m.disconnect(in.Name)
			if err := m.backend.Destroy(ctx, in.Name); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				m.log.Warn("destroy unleased sliver", "sliver", in.Name, "err", err)
			}
		}
		unlock()
	}
}

// Reap makes one pass of the node's housekeeping: it destroys slivers whose
// lease ended more than Grace ago, renews delegated leases that near their
// end while their ticket allows, and destroys slivers without a lease.
// Run calls it every second; tests call it with an injected clock.
func (m *Manager) Reap(ctx context.Context) {
	now := m.now()
	m.mu.Lock()
	var expired, renew, stale []*leaseRow
	for _, r := range m.leases {
		if r.State != stateActive {
			if now.Sub(r.Created) > time.Minute {
				stale = append(stale, r) // a rollback that failed: try again
			}
			continue
		}
		end := time.Unix(r.Lease.NotAfter, 0)
		switch {
		case now.After(end.Add(time.Duration(m.cfg.Grace))):
			expired = append(expired, r)
		case r.Delegated && m.cfg.MaxLease > 0 && end.Sub(now) < time.Duration(m.cfg.MaxLease)/2 && r.TicketNotAfter.After(end):
			renew = append(renew, r)
		}
	}
	m.mu.Unlock()
	for _, r := range expired {
		m.withRow(r.Sliver, func(r *leaseRow) {
			if now.After(time.Unix(r.Lease.NotAfter, 0).Add(time.Duration(m.cfg.Grace))) {
				if err := m.destroy(ctx, r, "lease expired"); err != nil {
					m.log.Warn("destroy expired sliver", "sliver", r.Sliver, "err", err)
				}
			}
		})
	}
	for _, r := range stale {
		if unlock, ok := m.locks.tryLock(r.Sliver); ok {
			m.log.Warn("retrying the roll back of a failed redemption", "sliver", r.Sliver)
			if err := m.rollback(ctx, r); err != nil {
				m.log.Warn("roll back failed redemption", "sliver", r.Sliver, "err", err)
			}
			unlock()
		}
	}
	for _, r := range renew {
		m.withRow(r.Sliver, func(r *leaseRow) {
			if !r.Delegated {
				return
			}
			if _, err := m.renew(ctx, r, "", ""); err != nil {
				m.log.Warn("renew delegated lease", "sliver", r.Sliver, "err", err)
			}
		})
	}
}

// withRow runs fn with name's active lease, under name's lock.
func (m *Manager) withRow(name string, fn func(*leaseRow)) {
	unlock := m.locks.lock(name)
	defer unlock()
	if r, err := m.row(name, ""); err == nil {
		fn(r)
	}
}

// Run does the node's housekeeping until ctx ends: Reap every second, a
// sweep for unleased slivers and forgetting redeemed tickets and request
// nonces past their expiry every minute.
func (m *Manager) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.closing:
			return nil
		case <-tick.C:
		}
		m.Reap(ctx)
		if n%60 == 0 {
			if infos, err := m.backend.List(ctx); err == nil {
				m.sweep(ctx, infos)
			}
		}
		if n%60 == 0 {
			if err := m.db.purgeRedeemed(ctx, m.now().Add(-Skew)); err != nil {
				m.log.Warn("forget old tickets", "err", err)
			}
		}
	}
}
