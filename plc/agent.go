package plc

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/cred/ticket"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
)

// Defaults of the agent.
const (
	// EnrollTokenLifetime is how long an enrollment token may be used.
	EnrollTokenLifetime = 24 * time.Hour
	// NodeCertValidity is the lifetime of a node certificate.
	NodeCertValidity = 90 * 24 * time.Hour
	// MaxSyncWait bounds a node's long poll.
	MaxSyncWait = 60 * time.Second
)

func toTicketResources(r api.Resources) ticket.Resources {
	return ticket.Resources{CPUShares: r.CPUShares, CPUReserve: r.CPUReserve, CPULimit: r.CPULimit, MemoryBytes: r.MemoryBytes,
		Pids: r.Pids, DiskBytes: r.DiskBytes, NetMinRate: r.NetMinRate, NetMaxRate: r.NetMaxRate, Ports: r.Ports}
}

func checkResources(r api.Resources) error {
	for _, v := range []int64{int64(r.CPUShares), r.CPUReserve, r.CPULimit, r.MemoryBytes, r.Pids, r.DiskBytes, r.NetMinRate, r.NetMaxRate} {
		if v < 0 {
			return fmt.Errorf("resources must not be negative: %w", errdefs.ErrInvalid)
		}
	}
	if r.CPUShares > 100 {
		return fmt.Errorf("cpu_shares %d: at most 100: %w", r.CPUShares, errdefs.ErrInvalid)
	}
	if r.NetMaxRate != 0 && r.NetMinRate > r.NetMaxRate {
		return fmt.Errorf("net_min_rate above net_max_rate: %w", errdefs.ErrInvalid)
	}
	if len(r.Ports) > 64 {
		return fmt.Errorf("at most 64 port reservations: %w", errdefs.ErrInvalid)
	}
	return nil
}

// issueTickets signs one ticket per requested node for the caller's key,
// records them all, and only then answers: a ticket a client holds is
// always in the database.
func (p *PLC) issueTickets(w http.ResponseWriter, r *http.Request) (any, error) {
	var in api.TicketRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if len(in.Nodes) == 0 || len(in.Nodes) > 1000 {
		return nil, fmt.Errorf("ask for tickets on 1 to 1000 nodes (got %d): %w", len(in.Nodes), errdefs.ErrInvalid)
	}
	if err := checkResources(in.Resources); err != nil {
		return nil, err
	}
	c := actorOf(r)
	now := p.now()
	var out api.Tickets
	err := p.sliceOp(r, OpSliceTickets, r.PathValue("slice"), func(tx *store.Tx, s *store.Slice) error {
		out.Tickets = nil // the store may run this again after a conflict
		switch {
		case !s.Enabled:
			return fmt.Errorf("slice %s is disabled; ask its PI: %w", s.Name, errdefs.ErrDenied)
		case !s.Expires.After(now):
			return fmt.Errorf("slice %s expired at %s; renew it first: %w", s.Name, s.Expires.Format(time.RFC3339), errdefs.ErrExpired)
		case s.Instantiation != api.InstantiationDirect:
			return fmt.Errorf("slice %s is delegated: PLC binds it to nodes (PUT …/nodes/HOST) and they redeem its tickets: %w", s.Name, errdefs.ErrInvalid)
		}
		granted, err := tx.GrantedNodes(r.Context(), s.Name, now)
		if err != nil {
			return err
		}
		nodes := map[int64]bool{}
		for _, id := range granted {
			nodes[id] = true
		}
		// The site's sliver count is read and raised here: one ticket
		// request per site at a time.
		site, room, err := p.sliverRoom(r.Context(), tx, s.SiteID)
		if err != nil {
			return err
		}
		if !site.Enabled {
			return fmt.Errorf("site %s is disabled; its slices get no tickets: %w", site.LoginBase, errdefs.ErrDenied)
		}
		seen := map[string]bool{}
		for _, host := range in.Nodes {
			if seen[host] {
				return fmt.Errorf("node %s is listed twice: %w", host, errdefs.ErrInvalid)
			}
			seen[host] = true
			n, err := tx.Node(r.Context(), host)
			if err != nil {
				return err
			}
			if n.BootState != api.BootStateBoot {
				return fmt.Errorf("node %s is in boot state %s and takes no slivers; choose another (GET /v1/ads): %w", host, n.BootState, errdefs.ErrNoCapacity)
			}
			if !nodes[n.ID] {
				if room--; room < 0 {
					return errSliverLimit(site)
				}
			}
			nodes[n.ID] = true
			if len(nodes) > s.MaxNodes {
				return fmt.Errorf("slice %s may hold at most %d nodes: %w", s.Name, s.MaxNodes, errdefs.ErrNoCapacity)
			}
			doc, rec, err := p.signTicket(s, n, c.fp, in.Resources, now)
			if err != nil {
				return err
			}
			if err := tx.InsertTicket(r.Context(), rec); err != nil {
				return err
			}
			out.Tickets = append(out.Tickets, api.IssuedTicket{Node: host, ID: rec.ID, Ticket: doc, NotAfter: rec.NotAfter})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created{out}, nil
}

// signTicket makes the ticket for slice s on node n for principal; it is
// redeemable until the slice expires.
func (p *PLC) signTicket(s *store.Slice, n *store.Node, principal cred.Fingerprint, res api.Resources, now time.Time) (string, *store.TicketRecord, error) {
	t := ticket.Ticket{
		ID: ticket.NewID(), Principal: principal, Node: n.Hostname, Slice: s.Name, Resources: toTicketResources(res),
		IssuedAt: now.Unix(), NotBefore: now.Unix(), NotAfter: s.Expires.Unix(),
	}
	doc, err := ticket.Sign(t, p.settings.Name, p.ticketKey)
	if err != nil {
		return "", nil, err
	}
	return doc, &store.TicketRecord{ID: t.ID, Slice: s.Name, NodeID: n.ID, Principal: string(principal), Doc: doc,
		NotBefore: now.UTC().Truncate(time.Second), NotAfter: s.Expires, Created: now.UTC().Truncate(time.Second)}, nil
}

// ads lists nodes with what they have free, filtered.
func (p *PLC) ads(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	var mins [3]int64
	for i, k := range []string{"min_cpu", "min_memory", "min_bandwidth"} {
		if s := q.Get(k); s != "" {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("%s=%q: want a non-negative number (millicores, bytes, bits/s): %w", k, s, errdefs.ErrInvalid)
			}
			mins[i] = v
		}
	}
	if q.Get("boot_state") == "" {
		q.Set("boot_state", api.BootStateBoot)
		r.URL.RawQuery = q.Encode()
	}
	pg, err := page(r)
	if err != nil {
		return nil, err
	}
	out := api.List[api.Ad]{Items: []api.Ad{}}
	ctx := withSiteNames(r.Context())
	err = p.store.View(ctx, func(tx *store.Tx) error {
		ns, nxt, err := pageNodes(ctx, r, tx, pg)
		if err != nil {
			return err
		}
		out.Next = nxt
		for i := range ns {
			n, err := toNode(ctx, tx, &ns[i])
			if err != nil {
				return err
			}
			ad := api.Ad{Node: n.Hostname, Site: n.Site, BootState: n.BootState, Tags: n.Tags}
			if n.Capacity != nil {
				ad.Free = *n.Capacity
			}
			rep, err := tx.Report(ctx, ns[i].ID)
			switch {
			case err == nil:
				var body api.Report
				if json.Unmarshal(rep.Body, &body) == nil {
					ad.Free, ad.Slivers, ad.ReportedAt = body.Free, body.Slivers, rep.At
				}
			case !errors.Is(err, errdefs.ErrNotFound):
				return err
			}
			if ad.Free.CPUReserve < mins[0] || ad.Free.MemoryBytes < mins[1] || ad.Free.NetMaxRate < mins[2] {
				continue
			}
			out.Items = append(out.Items, ad)
		}
		return nil
	})
	return out, err
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// enrollToken makes a one-time token with which the node can enroll.
func (p *PLC) enrollToken(w http.ResponseWriter, r *http.Request) (any, error) {
	c := actorOf(r)
	host := r.PathValue("host")
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	exp := p.now().Add(EnrollTokenLifetime).UTC().Truncate(time.Second)
	err := p.write(r.Context(), c, OpNodeToken, host, func(tx *store.Tx) error {
		n, err := tx.Node(r.Context(), host)
		if err != nil {
			return err
		}
		if err := Allow(c.person, OpNodeToken, Target{SiteID: n.SiteID}); err != nil {
			return err
		}
		return tx.CreateEnrollToken(r.Context(), hashToken(tok), n.ID, exp)
	})
	if err != nil {
		return nil, err
	}
	return created{api.EnrollToken{Node: host, Token: tok, Expires: exp}}, nil
}

// enroll spends a token and certifies the node's key.
func (p *PLC) enroll(w http.ResponseWriter, r *http.Request) (any, error) {
	var in api.EnrollRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkHostname(in.Hostname); err != nil {
		return nil, err
	}
	if in.Token == "" || len(in.Token) > 100 {
		return nil, fmt.Errorf("enrollment needs the token an operator made with POST /v1/nodes/HOST/token: %w", errdefs.ErrInvalid)
	}
	var out api.Enrollment
	err := p.store.Update(r.Context(), func(tx *store.Tx) error {
		id, err := tx.UseEnrollToken(r.Context(), hashToken(in.Token), p.now())
		if err != nil {
			return err
		}
		n, err := tx.NodeByID(r.Context(), id)
		if err != nil {
			return err
		}
		if n.Hostname != in.Hostname {
			return fmt.Errorf("this token is for another node: %w", errdefs.ErrDenied)
		}
		cert, err := p.ca.IssueNode(in.CSR, in.Hostname, NodeCertValidity, p.now())
		if err != nil {
			return err
		}
		key, err := cred.NewPublicKey(cert.PublicKey)
		if err != nil {
			return err
		}
		n.Key = string(key.Fingerprint())
		if err := tx.UpdateNode(r.Context(), n); err != nil {
			return err
		}
		out.CertificatePEM = string(ca.MarshalCertificate(cert))
		out.CA = p.caInfo()
		return tx.Audit(r.Context(), store.Event{At: p.now(), Actor: "node " + in.Hostname, Action: "node.enroll", Object: in.Hostname, Result: "ok"})
	})
	if err != nil {
		return nil, err
	}
	return created{out}, nil
}

// report stores a node's resource report, the host key and port of its
// SSH gateway when the report has them (a new key or port is audited), and
// its API's port when the report has it.
func (p *PLC) report(w http.ResponseWriter, r *http.Request, n *store.Node, _ ca.Peer) (any, error) {
	var in api.Report
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	hostKey, err := checkSSH(in.SSHHostKey, in.SSHPort)
	if err != nil {
		return nil, err
	}
	in.SSHHostKey = hostKey
	if in.APIPort < 0 || in.APIPort > 65535 {
		return nil, fmt.Errorf("api_port %d: want the port the node API listens on, 1 to 65535: %w", in.APIPort, errdefs.ErrInvalid)
	}
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	now := p.now()
	return nil, p.store.Update(r.Context(), func(tx *store.Tx) error {
		if err := tx.PutReport(r.Context(), n.ID, now, body); err != nil {
			return err
		}
		if hostKey != "" && (hostKey != n.SSHHostKey || in.SSHPort != n.SSHPort) {
			if err := tx.SetNodeSSH(r.Context(), n.Hostname, hostKey, in.SSHPort); err != nil {
				return err
			}
			if err := tx.Audit(r.Context(), store.Event{At: now, Actor: "node " + n.Hostname, Action: "node.ssh_host_key", Object: n.Hostname, Result: "ok"}); err != nil {
				return err
			}
		}
		if in.APIPort != 0 && in.APIPort != n.APIPort {
			if err := tx.SetNodeAPIPort(r.Context(), n.Hostname, in.APIPort); err != nil {
				return err
			}
		}
		return tx.TouchNode(r.Context(), n.Hostname, now)
	})
}

// maxHostKey bounds a reported host key: an RSA key of 16,384 bits takes
// about 2,800 characters.
const maxHostKey = 8 << 10

// checkSSH checks the SSH gateway fields of a report and returns the host
// key as "TYPE BASE64", without a comment; "" when the report has neither
// field (a node older than them).
func checkSSH(hostKey string, port int) (string, error) {
	line := strings.TrimSpace(hostKey)
	if line == "" && port == 0 {
		return "", nil
	}
	if line == "" {
		return "", fmt.Errorf("ssh_host_key: missing; send the SSH gateway's public host key (\"ssh-ed25519 AAAA…\") with ssh_port, or neither: %w", errdefs.ErrInvalid)
	}
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("ssh_port %d: want the port the SSH gateway listens on, 1 to 65535, sent with ssh_host_key: %w", port, errdefs.ErrInvalid)
	}
	if len(line) > maxHostKey {
		return "", fmt.Errorf("ssh_host_key: over %d bytes; send the SSH gateway's public host key alone: %w", maxHostKey, errdefs.ErrInvalid)
	}
	pub, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return "", fmt.Errorf("ssh_host_key: not an SSH public key; send the gateway's public host key in authorized_keys form (\"ssh-ed25519 AAAA…\"): %w", errdefs.ErrInvalid)
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(comment)); err == nil || len(options) != 0 || len(rest) != 0 || strings.ContainsAny(line, "\r\n") {
		return "", fmt.Errorf("ssh_host_key: want exactly one public key, alone on one line, without authorized_keys options: %w", errdefs.ErrInvalid)
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return "", fmt.Errorf("ssh_host_key: a certificate; send the host key itself: %w", errdefs.ErrInvalid)
	}
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n"), nil
}

// sync answers what the node must host once the change number passes
// since=, waiting up to wait= seconds (long poll).
func (p *PLC) sync(w http.ResponseWriter, r *http.Request, n *store.Node, peer ca.Peer) (any, error) {
	q := r.URL.Query()
	var since int64
	wait := time.Duration(0)
	if s := q.Get("since"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("since=%q: want the change number of the last sync: %w", s, errdefs.ErrInvalid)
		}
		since = v
	}
	if s := q.Get("wait"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || time.Duration(v)*time.Second > MaxSyncWait {
			return nil, fmt.Errorf("wait=%q: want 0 to %d seconds: %w", s, int(MaxSyncWait/time.Second), errdefs.ErrInvalid)
		}
		wait = time.Duration(v) * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	// A change made by another PLC replica shows in the database only, so
	// the wait also looks there every second.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := p.changes()
		var latest int64
		if err := p.store.View(r.Context(), func(tx *store.Tx) error {
			var err error
			latest, err = tx.LatestChange(r.Context(), n.ID)
			return err
		}); err != nil {
			return nil, err
		}
		if latest > since || wait == 0 {
			return p.syncState(r.Context(), n, peer, latest)
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-ctx.Done():
			if r.Context().Err() != nil {
				return nil, r.Context().Err()
			}
			return p.syncState(r.Context(), n, peer, latest)
		}
	}
}

// syncState lists the node's delegated slices with their keys, attributes
// and a ticket for the node (issued and recorded when it has none valid).
func (p *PLC) syncState(ctx context.Context, n *store.Node, peer ca.Peer, change int64) (any, error) {
	out := api.Sync{Change: change, Slices: []api.NodeSlice{}}
	now := p.now()
	err := p.store.Update(ctx, func(tx *store.Tx) error {
		out.Slices = []api.NodeSlice{} // the store may run this again after a conflict
		ss, err := tx.NodeSlices(ctx, n.ID)
		if err != nil {
			return err
		}
		for i := range ss {
			s := &ss[i]
			ns := api.NodeSlice{Name: s.Name, Enabled: s.Enabled, Expires: s.Expires, Keys: []string{}}
			ms, err := tx.Members(ctx, s.ID)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if !m.Enabled {
					continue
				}
				ks, err := tx.Keys(ctx, m.ID)
				if err != nil {
					return err
				}
				for _, k := range ks {
					ns.Keys = append(ns.Keys, k.PublicKey)
				}
			}
			if ns.Attributes, err = tx.ResolveAttributes(ctx, s.ID, n); err != nil {
				return err
			}
			site, err := tx.SiteByID(ctx, s.SiteID)
			if err != nil {
				return err
			}
			if s.Enabled && site.Enabled && s.Expires.After(now) {
				if ns.Ticket, err = p.nodeTicket(ctx, tx, s, n, peer.Key, now); err != nil {
					return err
				}
			}
			out.Slices = append(out.Slices, ns)
		}
		return nil
	})
	return out, err
}

// nodeTicket returns a valid ticket of slice s for node n, issuing one
// when there is none that covers the slice's current expiry.
func (p *PLC) nodeTicket(ctx context.Context, tx *store.Tx, s *store.Slice, n *store.Node, key cred.Fingerprint, now time.Time) (string, error) {
	t, err := tx.FindTicket(ctx, s.Name, n.ID, string(key), s.Expires)
	if err == nil {
		return t.Doc, nil
	}
	if !errors.Is(err, errdefs.ErrNotFound) {
		return "", err
	}
	doc, rec, err := p.signTicket(s, n, key, api.Resources{}, now)
	if err != nil {
		return "", err
	}
	return doc, tx.InsertTicket(ctx, rec)
}
