// Package node is the node manager, the node's half of the VMM: it
// enrolls the node with PLC, turns tickets into leases and running slivers
// (admission control keeps guarantees from being oversubscribed), keeps a
// crash-safe lease database, destroys slivers whose lease ended, converges
// on the delegated slices PLC assigns, runs slice initscripts, and serves
// the node API (newlease, renewlease, deletelease, addkey, delkey,
// getsshkeys, status) with a status page and Prometheus metrics.
//
// A sliver's life on the node:
//
//	ticket ──Redeem──▶ lease (pending) ──sliver running──▶ lease (active) ──▶ answer
//	                                                         │  ▲
//	                                                  Renew ─┘  │
//	        lease end + Grace, Delete, PLC unassigns ──▶ lease gone ──▶ sliver destroyed
package node

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
	"github.com/plab/plab/vnet"
)

// Skew is how far PLC's clock may be off from the node's when a ticket is
// checked.
const Skew = time.Minute

// MaxKeys bounds the SSH keys of one sliver.
const MaxKeys = 64

// Manager is the node manager: it turns tickets into leases and running
// slivers, keeps them exactly as long as their leases say, and converges
// the node on the delegated slices PLC assigns it. Safe for concurrent use.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	backend sliver.Backend
	net     Network // nil: slivers without a network
	db      *leaseDB
	key     *cred.PrivateKey
	trust   *ticket.Trust
	changed func() // something worth a report happened

	locks keyedMutex

	mu     sync.Mutex
	leases map[string]*leaseRow // by sliver (= slice) name
	adm    *admission
	inits  map[string]string // initscript state by sliver

	closing chan struct{}
	wg      sync.WaitGroup
}

// Options are what a Manager is made of besides its Config.
type Options struct {
	// Dir is the node's state directory (the lease database lives there).
	Dir string
	// Backend runs the slivers.
	Backend sliver.Backend
	// Net joins slivers to the node's network (nil: loopback only).
	Net Network
	// Key is the node's key: it signs leases, and delegated tickets name it.
	Key *cred.PrivateKey
	// Trust holds the PLC keys that sign tickets.
	Trust *ticket.Trust
	// CPUs and Memory are the machine's; the host's reserve is taken off.
	CPUs   sliver.MilliCPU
	Memory int64
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Changed is called when slivers come or go (the monitor reports then).
	Changed func()
	// Log receives what the manager does (nil: discard).
	Log *slog.Logger
}

// Open opens the lease database and reconciles it with the slivers on the
// host (see Recover).
func Open(ctx context.Context, cfg Config, o Options) (*Manager, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Backend == nil || o.Key == nil || o.Trust == nil {
		return nil, fmt.Errorf("node manager needs a sliver backend, the node's key and PLC's ticket keys: %w", errdefs.ErrInvalid)
	}
	hostPorts := cfg.hostPorts()
	bandwidth := cfg.BandwidthCap
	if o.Net != nil {
		// What HTB promises the node and each sliver's floor comes off
		// the cap before any guarantee.
		bandwidth = vnet.GuaranteeRoom(cfg.BandwidthCap, cfg.MaxSlivers)
		// Outbound NAT's ports are never reserved, so NAT never borrows one.
		lo, hi := vnet.DefaultNATPorts[0], vnet.DefaultNATPorts[1]
		hostPorts = append(hostPorts, vnet.PortRange{Proto: "tcp", Lo: lo, High: hi}, vnet.PortRange{Proto: "udp", Lo: lo, High: hi})
	}
	m := &Manager{
		cfg: cfg, log: o.Log, now: o.Now, backend: o.Backend, net: o.Net, key: o.Key, trust: o.Trust, changed: o.Changed,
		leases: map[string]*leaseRow{}, inits: map[string]string{}, closing: make(chan struct{}),
		adm: newAdmission(capacity{
			CPU: o.CPUs - cfg.HostReserve.CPU, Memory: o.Memory - cfg.HostReserve.Memory, Bandwidth: bandwidth,
			MaxSlivers: cfg.MaxSlivers, MaxPerSite: cfg.MaxSliversPerSite, HostPorts: hostPorts,
		}),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.changed == nil {
		m.changed = func() {}
	}
	if m.adm.cap.CPU <= 0 || m.adm.cap.Memory <= 0 {
		return nil, fmt.Errorf("node config: host_reserve (%s, %s) leaves no CPU or memory for slivers; lower it: %w",
			cfg.HostReserve.CPU, sliver.FormatBytes(cfg.HostReserve.Memory), errdefs.ErrInvalid)
	}
	db, err := openLeaseDB(o.Dir + "/" + leaseDBFile)
	if err != nil {
		return nil, err
	}
	m.db = db
	if err := m.recover(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return m, nil
}

// Close stops the manager's background work and closes the lease
// database. The slivers keep running.
func (m *Manager) Close() error {
	close(m.closing)
	m.wg.Wait()
	return m.db.Close()
}

// Hostname is the node's name.
func (m *Manager) Hostname() string { return m.cfg.Hostname }

// checks are the ticket checks for principal.
func (m *Manager) checks(principal cred.Fingerprint) ticket.Checks {
	return ticket.Checks{Now: m.now(), Skew: Skew, Node: m.cfg.Hostname, Principal: principal}
}

// leaseEnd is when a lease granted now under a ticket valid until limit
// ends.
func (m *Manager) leaseEnd(now, limit time.Time) time.Time {
	if m.cfg.MaxLease > 0 {
		if end := now.Add(time.Duration(m.cfg.MaxLease)); end.Before(limit) {
			return end
		}
	}
	return limit
}

// grant is what a redemption asks for beyond the ticket.
type grant struct {
	delegated bool
	keys      map[string]string // fingerprint → authorized_keys line
	attrs     map[string]string
	term      time.Duration // a shorter lease asked for (0: none)
}

// Redeem redeems a ticket presented by the user signer (whose public key
// is signerKey, an authorized_keys line): it checks the ticket, admits its
// resources, records the lease, creates and starts the sliver, and only
// then answers with the lease (newlease).
// A positive term asks for a shorter lease than the node would grant.
func (m *Manager) Redeem(ctx context.Context, doc string, signer cred.Fingerprint, signerKey string, term time.Duration) (api.Lease, error) {
	g := grant{keys: map[string]string{}, term: term}
	if signerKey != "" {
		pub, err := cred.ParseUserKey(signerKey)
		if err != nil {
			return api.Lease{}, err
		}
		if fp := cred.FingerprintSSH(pub); fp != signer {
			return api.Lease{}, fmt.Errorf("the key offered (%s) is not the key that signed (%s): %w", fp, signer, errdefs.ErrInvalid)
		}
		g.keys[string(signer)] = signerKey
	}
	return m.redeem(ctx, doc, signer, g)
}

func (m *Manager) redeem(ctx context.Context, doc string, principal cred.Fingerprint, g grant) (api.Lease, error) {
	t, err := ticket.Verify(doc, m.trust, m.checks(principal))
	if err != nil {
		return api.Lease{}, fmt.Errorf("redeem ticket: %w", err)
	}
	name := t.Slice
	if err := sliver.ValidateName(name); err != nil {
		return api.Lease{}, fmt.Errorf("redeem ticket: slice name: %w", err)
	}
	unlock := m.locks.lock(name)
	defer unlock()

	res, err := withAttributes(t.Resources, g.attrs)
	if err != nil {
		return api.Lease{}, err
	}
	ports, err := vnet.ParsePorts(res.Ports)
	if err != nil {
		return api.Lease{}, err
	}
	if err := sliverResources(res).Validate(m.adm.cap.CPU); err != nil {
		return api.Lease{}, fmt.Errorf("redeem ticket for %s: %w", name, err)
	}
	now := m.now()
	end := m.leaseEnd(now, time.Unix(t.NotAfter, 0))
	if g.term > 0 && now.Add(g.term).Before(end) {
		end = now.Add(g.term)
	}
	if !end.After(now) {
		return api.Lease{}, fmt.Errorf("redeem ticket for %s: the ticket ended at %s; ask PLC for a new one (renew the slice first if it expired): %w",
			name, end.UTC().Format(time.RFC3339), errdefs.ErrExpired)
	}
	leaseDoc, lease, err := ticket.NewLease(t, name, m.cfg.Hostname, now, end, m.key)
	if err != nil {
		return api.Lease{}, err
	}
	row := &leaseRow{
		Sliver: name, Slice: t.Slice, State: statePending, Principal: string(t.Principal), Delegated: g.delegated,
		TicketID: t.ID, TicketNotAfter: time.Unix(t.NotAfter, 0), Lease: *lease, Doc: leaseDoc,
		Resources: res, Attributes: g.attrs, Created: now, Keys: g.keys,
	}

	m.mu.Lock()
	if old := m.leases[name]; old != nil {
		m.mu.Unlock()
		if old.TicketID == t.ID {
			return api.Lease{}, fmt.Errorf("ticket %s was redeemed already: sliver %s holds its lease until %s (GET /v1/slivers/%s): %w",
				t.ID, name, time.Unix(old.Lease.NotAfter, 0).UTC().Format(time.RFC3339), name, errdefs.ErrConflict)
		}
		return api.Lease{}, fmt.Errorf("slice %s already has a sliver on this node, leased until %s; renew or delete it: %w",
			name, time.Unix(old.Lease.NotAfter, 0).UTC().Format(time.RFC3339), errdefs.ErrConflict)
	}
	if err := m.adm.admit(name, claim{Slice: t.Slice, Res: res, Ports: ports}); err != nil {
		m.mu.Unlock()
		return api.Lease{}, fmt.Errorf("redeem ticket for %s: %w", name, err)
	}
	m.leases[name] = row
	m.mu.Unlock()

	err = m.db.tx(ctx, func(tx *sql.Tx) error {
		// The ticket was verified above: only its redemption is recorded
		// here, with the lease, until it can no longer pass the window.
		if err := useOnce(tx, ticket.OnceID(t.ID), time.Unix(t.NotAfter, 0).Add(Skew)); err != nil {
			return err
		}
		return insertLease(tx, row)
	})
	if err != nil {
		m.forget(name)
		if errors.Is(err, errdefs.ErrConflict) {
			return api.Lease{}, fmt.Errorf("redeem ticket: ticket %s was redeemed before; ask PLC for a new one: %w", t.ID, errdefs.ErrConflict)
		}
		return api.Lease{}, fmt.Errorf("redeem ticket for %s: %w", name, err)
	}
	if err := m.build(ctx, row); err != nil {
		m.log.Warn("sliver creation failed; rolling back", "sliver", name, "err", err)
		if rerr := m.rollback(ctx, row); rerr != nil {
			m.log.Error("roll back failed redemption", "sliver", name, "err", rerr)
		}
		return api.Lease{}, fmt.Errorf("redeem ticket for %s: %w", name, err)
	}
	active := *row
	active.State = stateActive
	if err := m.db.tx(ctx, func(tx *sql.Tx) error { return updateLease(tx, &active) }); err != nil {
		if rerr := m.rollback(ctx, row); rerr != nil {
			m.log.Error("roll back failed redemption", "sliver", name, "err", rerr)
		}
		return api.Lease{}, fmt.Errorf("redeem ticket for %s: %w", name, err)
	}
	m.mu.Lock()
	row.State = stateActive
	m.mu.Unlock()
	m.log.Info("lease granted", "sliver", name, "principal", row.Principal, "ticket", t.ID, "until", time.Unix(lease.NotAfter, 0).UTC(), "delegated", g.delegated)
	m.startInitscript(name, g.attrs[AttrInitscript])
	m.changed()
	return leaseOf(row), nil
}

// build creates and starts row's sliver and joins it to the network.
func (m *Manager) build(ctx context.Context, row *leaseRow) error {
	ctx = context.WithoutCancel(ctx) // half a sliver helps no one
	if _, err := m.backend.Create(ctx, sliver.Spec{Name: row.Sliver, Image: row.Attributes[AttrImage], Resources: sliverResources(row.Resources)}); err != nil {
		return err
	}
	if err := m.backend.Start(ctx, row.Sliver); err != nil {
		return err
	}
	return m.connect(ctx, row)
}

// Network is what the node manager needs of sliver networking (vnet.Net).
type Network interface {
	Attach(s vnet.Sliver) (vnet.Attachment, error)
	Detach(name string) error
	Counters(name string) (vnet.Counters, error)
}

// connect joins row's running sliver to the node's network, with its
// reserved ports and rates, and points it at the node's resolvers. Joining
// a sliver already joined changes nothing.
func (m *Manager) connect(ctx context.Context, row *leaseRow) error {
	if m.net == nil {
		return nil
	}
	info, err := m.backend.State(ctx, row.Sliver)
	if err != nil {
		return err
	}
	ports, err := vnet.ParsePorts(row.Resources.Ports)
	if err != nil {
		return err
	}
	if _, err := m.net.Attach(vnet.Sliver{Name: row.Sliver, Pid: info.Pid, Ports: ports, MinRate: row.Resources.NetMinRate, MaxRate: row.Resources.NetMaxRate}); err != nil {
		return err
	}
	if len(m.cfg.Resolvers) > 0 {
		var conf strings.Builder
		for _, r := range m.cfg.Resolvers {
			fmt.Fprintf(&conf, "nameserver %s\n", r)
		}
		if code, err := m.backend.Exec(ctx, row.Sliver, sliver.ExecSpec{Args: []string{"/bin/sh", "-c", "cat > /etc/resolv.conf"}, Stdin: strings.NewReader(conf.String())}); err != nil || code != 0 {
			m.log.Warn("write the sliver's resolv.conf", "sliver", row.Sliver, "exit", code, "err", err)
		}
	}
	return nil
}

// disconnect removes a sliver's networking.
func (m *Manager) disconnect(name string) {
	if m.net == nil {
		return
	}
	if err := m.net.Detach(name); err != nil {
		m.log.Warn("detach sliver network", "sliver", name, "err", err)
	}
}

// rollback undoes a redemption that was never acknowledged: the sliver,
// the lease and the ticket's redemption (so the ticket may be presented
// again).
func (m *Manager) rollback(ctx context.Context, row *leaseRow) error {
	ctx = context.WithoutCancel(ctx)
	m.disconnect(row.Sliver)
	if err := m.backend.Destroy(ctx, row.Sliver); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	err := m.db.tx(ctx, func(tx *sql.Tx) error {
		if err := deleteLease(tx, row.Sliver); err != nil {
			return err
		}
		return forgetTicket(tx, row.TicketID)
	})
	if err != nil {
		return err
	}
	m.forget(row.Sliver)
	return nil
}

// forget drops a sliver from memory.
func (m *Manager) forget(name string) {
	m.mu.Lock()
	delete(m.leases, name)
	delete(m.inits, name)
	m.adm.release(name)
	m.mu.Unlock()
}

// row returns the active lease of name, refused unless signer may act on
// it (its principal or one of its keys; "" skips the check).
func (m *Manager) row(name string, signer cred.Fingerprint) (*leaseRow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.leases[name]
	if r == nil {
		return nil, fmt.Errorf("no sliver %s on this node: %w", name, errdefs.ErrNotFound)
	}
	if signer != "" && r.Principal != string(signer) {
		if _, ok := r.Keys[string(signer)]; !ok {
			return nil, fmt.Errorf("key %s may not act on sliver %s: it is neither the lease's principal nor one of the sliver's keys: %w", signer, name, errdefs.ErrDenied)
		}
	}
	if r.State != stateActive {
		return nil, fmt.Errorf("sliver %s is being created; try again in a moment: %w", name, errdefs.ErrConflict)
	}
	return r, nil
}

// ended reports whether r's lease is over (the sliver may live on for the
// grace period, but nobody acts on it any more). Called with m.mu held or
// under r's lock.
func (m *Manager) ended(r *leaseRow) bool {
	return !m.now().Before(time.Unix(r.Lease.NotAfter, 0))
}

// live is row, refused once the lease ended.
func (m *Manager) live(name string, signer cred.Fingerprint) (*leaseRow, error) {
	r, err := m.row(name, signer)
	if err != nil {
		return nil, err
	}
	if m.ended(r) {
		return nil, fmt.Errorf("the lease of sliver %s ended at %s; redeem a new ticket: %w",
			name, time.Unix(r.Lease.NotAfter, 0).UTC().Format(time.RFC3339), errdefs.ErrExpired)
	}
	return r, nil
}

// Delete destroys a sliver and ends its lease (deletelease).
func (m *Manager) Delete(ctx context.Context, name string, signer cred.Fingerprint) error {
	unlock := m.locks.lock(name)
	defer unlock()
	r, err := m.row(name, signer)
	if err != nil {
		return err
	}
	if r.Delegated && signer != "" {
		return fmt.Errorf("sliver %s belongs to a delegated slice: unbind the node at PLC (DELETE /v1/slices/%s/nodes/%s): %w", name, name, m.cfg.Hostname, errdefs.ErrDenied)
	}
	return m.destroy(ctx, r, "deleted")
}

// destroy ends r's lease and destroys its sliver. The lease goes first: a
// crash in between leaves a sliver without a lease, which recovery (and the
// reaper) destroy; the other order could bring a deleted sliver back.
func (m *Manager) destroy(ctx context.Context, r *leaseRow, why string) error {
	ctx = context.WithoutCancel(ctx)
	if err := m.db.tx(ctx, func(tx *sql.Tx) error { return deleteLease(tx, r.Sliver) }); err != nil {
		return err
	}
	m.forget(r.Sliver)
	m.changed()
	m.disconnect(r.Sliver)
	if err := m.backend.Destroy(ctx, r.Sliver); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		m.log.Warn("destroy sliver failed; the reaper retries", "sliver", r.Sliver, "err", err)
	}
	m.log.Info("lease ended", "sliver", r.Sliver, "why", why)
	return nil
}

// Renew extends a sliver's lease (renewlease), up to MaxLease from now and
// never past its ticket's end. A fresh ticket of the slice, presented by its
// principal, moves that end.
func (m *Manager) Renew(ctx context.Context, name string, signer cred.Fingerprint, doc string) (api.Lease, error) {
	unlock := m.locks.lock(name)
	defer unlock()
	r, err := m.live(name, signer)
	if err != nil {
		return api.Lease{}, err
	}
	if r.Delegated {
		return api.Lease{}, fmt.Errorf("sliver %s belongs to a delegated slice: the node renews its lease while PLC's ticket allows; renew the slice at PLC: %w", name, errdefs.ErrDenied)
	}
	return m.renew(ctx, r, signer, doc)
}

func (m *Manager) renew(ctx context.Context, r *leaseRow, signer cred.Fingerprint, doc string) (api.Lease, error) {
	if m.ended(r) {
		return api.Lease{}, fmt.Errorf("renew %s: the lease ended at %s; redeem a new ticket: %w",
			r.Sliver, time.Unix(r.Lease.NotAfter, 0).UTC().Format(time.RFC3339), errdefs.ErrExpired)
	}
	next := *r
	if doc != "" {
		t, err := ticket.Verify(doc, m.trust, m.checks(signer))
		if err != nil {
			return api.Lease{}, fmt.Errorf("renew %s: %w", r.Sliver, err)
		}
		if t.Slice != r.Slice {
			return api.Lease{}, fmt.Errorf("renew %s: the ticket is for slice %s: %w", r.Sliver, t.Slice, errdefs.ErrInvalid)
		}
		if end := time.Unix(t.NotAfter, 0); end.After(next.TicketNotAfter) {
			next.TicketID, next.TicketNotAfter = t.ID, end
		}
	}
	now := m.now()
	end := m.leaseEnd(now, next.TicketNotAfter)
	if !end.After(time.Unix(r.Lease.NotAfter, 0)) && next.TicketID == r.TicketID {
		return leaseOf(r), nil // nothing to extend: the lease already runs as long as it may
	}
	ldoc, l, err := ticket.Renew(r.Lease, now, end, m.key)
	if err != nil {
		return api.Lease{}, fmt.Errorf("renew %s: %w; redeem a new ticket: %w", r.Sliver, err, errdefs.ErrExpired)
	}
	next.Lease, next.Doc = *l, ldoc
	err = m.db.tx(ctx, func(tx *sql.Tx) error {
		if next.TicketID != r.TicketID {
			if err := useOnce(tx, ticket.OnceID(next.TicketID), next.TicketNotAfter.Add(Skew)); err != nil {
				return fmt.Errorf("renew %s: %w", r.Sliver, err)
			}
		}
		return updateLease(tx, &next)
	})
	if err != nil {
		return api.Lease{}, err
	}
	m.mu.Lock()
	*r = next
	m.mu.Unlock()
	m.log.Info("lease renewed", "sliver", r.Sliver, "until", time.Unix(l.NotAfter, 0).UTC(), "renewals", l.Renewals)
	return leaseOf(r), nil
}

// leaseOf is row's lease on the wire.
func leaseOf(r *leaseRow) api.Lease {
	return api.Lease{Sliver: r.Sliver, Slice: r.Slice, ID: r.Lease.ID, TicketID: r.TicketID, Lease: r.Doc,
		NotAfter: time.Unix(r.Lease.NotAfter, 0).UTC(), Renewals: r.Lease.Renewals, Delegated: r.Delegated}
}

// Keys lists the SSH keys that may log into a sliver (getsshkeys).
func (m *Manager) Keys(name string, signer cred.Fingerprint) ([]api.SSHKey, error) {
	r, err := m.live(name, signer)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return keyList(r.Keys), nil
}

func keyList(keys map[string]string) []api.SSHKey {
	out := make([]api.SSHKey, 0, len(keys))
	for _, fp := range slices.Sorted(maps.Keys(keys)) {
		out = append(out, api.SSHKey{Key: keys[fp], Fingerprint: fp})
	}
	return out
}

// AuthorizedKeys returns the keys that may log into sliver name now (for
// the SSH gateway), and whether the sliver exists.
func (m *Manager) AuthorizedKeys(name string) ([]string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.leases[name]
	if r == nil || r.State != stateActive || m.ended(r) {
		return nil, false
	}
	return slices.Sorted(maps.Values(r.Keys)), true
}

// AddKey lets another SSH key log into a sliver (addkey).
func (m *Manager) AddKey(ctx context.Context, name string, signer cred.Fingerprint, key string) (api.SSHKey, error) {
	pub, err := cred.ParseUserKey(key)
	if err != nil {
		return api.SSHKey{}, err
	}
	fp := cred.FingerprintSSH(pub)
	return api.SSHKey{Key: key, Fingerprint: string(fp)}, m.editKeys(ctx, name, signer, func(keys map[string]string) error {
		if _, ok := keys[string(fp)]; !ok && len(keys) >= MaxKeys {
			return fmt.Errorf("sliver %s has %d keys, the most it may; remove one first: %w", name, MaxKeys, errdefs.ErrNoCapacity)
		}
		keys[string(fp)] = key
		return nil
	})
}

// DelKey stops a key from logging into a sliver (delkey).
func (m *Manager) DelKey(ctx context.Context, name string, signer cred.Fingerprint, fp cred.Fingerprint) error {
	return m.editKeys(ctx, name, signer, func(keys map[string]string) error {
		if _, ok := keys[string(fp)]; !ok {
			return fmt.Errorf("sliver %s has no key %s (GET /v1/slivers/%s/keys lists them): %w", name, fp, name, errdefs.ErrNotFound)
		}
		delete(keys, string(fp))
		return nil
	})
}

func (m *Manager) editKeys(ctx context.Context, name string, signer cred.Fingerprint, edit func(map[string]string) error) error {
	unlock := m.locks.lock(name)
	defer unlock()
	r, err := m.live(name, signer)
	if err != nil {
		return err
	}
	if r.Delegated {
		return fmt.Errorf("sliver %s belongs to a delegated slice: its keys are its members' keys at PLC; change them there: %w", name, errdefs.ErrDenied)
	}
	m.mu.Lock()
	keys := maps.Clone(r.Keys)
	m.mu.Unlock()
	if err := edit(keys); err != nil {
		return err
	}
	return m.setKeys(ctx, r, keys)
}

func (m *Manager) setKeys(ctx context.Context, r *leaseRow, keys map[string]string) error {
	if err := m.db.tx(ctx, func(tx *sql.Tx) error { return setKeys(tx, r.Sliver, keys) }); err != nil {
		return err
	}
	m.mu.Lock()
	r.Keys = keys
	m.mu.Unlock()
	return nil
}

// Status reports a sliver.
func (m *Manager) Status(ctx context.Context, name string, signer cred.Fingerprint) (api.Sliver, error) {
	r, err := m.row(name, signer)
	if err != nil {
		return api.Sliver{}, err
	}
	return m.status(ctx, r), nil
}

func (m *Manager) status(ctx context.Context, r *leaseRow) api.Sliver {
	m.mu.Lock()
	s := api.Sliver{Name: r.Sliver, Slice: r.Slice, Principal: r.Principal, Delegated: r.Delegated, Lease: leaseOf(r),
		Resources: apiResources(r.Resources), Keys: len(r.Keys), Initscript: m.inits[r.Sliver]}
	m.mu.Unlock()
	if info, err := m.backend.State(ctx, r.Sliver); err == nil {
		s.State = string(info.State)
	} else {
		s.State = "missing"
	}
	if st, err := m.backend.Stats(ctx, r.Sliver); err == nil {
		s.Usage = api.SliceUsage{CPUMillis: st.CPUTime.Milliseconds(), MemoryBytes: st.MemoryBytes, DiskBytes: st.DiskBytes}
	}
	return s
}

// List reports the slivers signer may act on ("": all).
func (m *Manager) List(ctx context.Context, signer cred.Fingerprint) []api.Sliver {
	m.mu.Lock()
	var rows []*leaseRow
	for _, r := range m.leases {
		_, member := r.Keys[string(signer)]
		if r.State == stateActive && (signer == "" || r.Principal == string(signer) || member) {
			rows = append(rows, r)
		}
	}
	m.mu.Unlock()
	sort.Slice(rows, func(i, j int) bool { return rows[i].Sliver < rows[j].Sliver })
	out := make([]api.Sliver, 0, len(rows))
	for _, r := range rows {
		out = append(out, m.status(ctx, r))
	}
	return out
}

// Capacity is what slivers may be promised in total.
func (m *Manager) Capacity() api.Resources {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.adm.capacity()
}

// Free is what is left to promise.
func (m *Manager) Free() api.Resources {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.adm.free()
}

// Count is the number of leases (slivers) on the node.
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.leases)
}

// keyedMutex is a mutex per name: one operation per sliver at a time.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(name string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[name]
	if e == nil {
		e = &keyedEntry{}
		k.locks[name] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, name)
		}
		k.mu.Unlock()
	}
}

// tryLock is lock when nobody holds name, else ok is false.
func (k *keyedMutex) tryLock(name string) (unlock func(), ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, busy := k.locks[name]; busy {
		return nil, false
	}
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := &keyedEntry{refs: 1}
	e.mu.Lock() // uncontended: nobody else knows e yet
	k.locks[name] = e
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, name)
		}
		k.mu.Unlock()
	}, true
}

// keyByFingerprint finds a sliver key by its fingerprint.
func (m *Manager) keyByFingerprint(fp cred.Fingerprint) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.leases {
		if k, ok := r.Keys[string(fp)]; ok {
			return k, true
		}
	}
	return "", false
}

// Listen is the configured address of the node API.
func (m *Manager) Listen() string { return m.cfg.Listen }

// SSHListen is the SSH gateway's configured address.
func (m *Manager) SSHListen() string { return m.cfg.SSHListen }
