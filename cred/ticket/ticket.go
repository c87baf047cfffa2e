// Package ticket holds plab's signed documents: tickets, which PLC signs to
// grant a principal a sliver of a slice on one node, and leases, which a
// node signs when it redeems a ticket and renews while the sliver lives.
//
// Both are JSON Web Tokens (RFC 7519) in compact JWS form (RFC 7515) signed
// with EdDSA over Ed25519 (RFC 8037), so jwt.io, step crypto jwt or any JOSE
// library can read and verify them. Parsing is strict: only EdDSA; a header
// of exactly alg, kid (the signer's SHA-256 fingerprint) and typ
// (plab-ticket+jwt or plab-lease+jwt, so one can never pass for the
// other); unpadded base64url with nothing around it; no duplicate, unknown
// or oddly cased fields; nothing after the JSON.
//
// The life of a ticket:
//
//	PLC: Sign ──ticket──▶ user ──ticket──▶ node: Verify(principal, node)
//	                                              │ OnceStore.Use(id)
//	                                              ▼
//	user ◀──lease── node: NewLease ── Renew (renewals+1, later expiry)
//
// Accessors of documents whose signature has not been checked are named
// Unverified…; inspecting is not trusting.
package ticket

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/plab/plab/cred"
	"github.com/plab/plab/errdefs"
)

// Document types, the JWS typ header.
const (
	TypeTicket = "plab-ticket+jwt"
	TypeLease  = "plab-lease+jwt"
)

// Role says what an issuer may sign.
type Role string

// The roles.
const (
	// RolePLC signs tickets.
	RolePLC Role = "plc"
	// RoleNode signs leases for the node it names.
	RoleNode Role = "node"
)

// Issuer is a trusted signer: its role, its name (PLC's name or the node's
// hostname, which must match the document's iss) and its key.
type Issuer struct {
	Role Role
	Name string
	Key  cred.PublicKey
}

// Trust is a set of trusted issuers, keyed by their keys' fingerprints.
// Keys are rotated by adding the new issuer key and, once every document
// it signed has expired, removing the old one. Safe for concurrent use.
type Trust struct {
	mu sync.RWMutex
	m  map[cred.Fingerprint]Issuer
}

// NewTrust returns a Trust holding issuers.
func NewTrust(issuers ...Issuer) (*Trust, error) {
	t := &Trust{m: make(map[cred.Fingerprint]Issuer)}
	for _, iss := range issuers {
		if err := t.Add(iss); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Add trusts iss.
func (t *Trust) Add(iss Issuer) error {
	if iss.Role != RolePLC && iss.Role != RoleNode {
		return fmt.Errorf("trust issuer %q: role %q, want plc or node: %w", iss.Name, iss.Role, errdefs.ErrInvalid)
	}
	if iss.Name == "" || iss.Key.IsZero() {
		return fmt.Errorf("trust issuer: a name and a key are required: %w", errdefs.ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[iss.Key.Fingerprint()] = iss
	return nil
}

// Remove stops trusting the key fp.
func (t *Trust) Remove(fp cred.Fingerprint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, fp)
}

// Issuers lists the trusted issuers, sorted by role and name.
func (t *Trust) Issuers() []Issuer {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Issuer, 0, len(t.m))
	for _, iss := range t.m {
		out = append(out, iss)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role < out[j].Role
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func (t *Trust) lookup(fp cred.Fingerprint) (Issuer, bool) {
	if t == nil {
		return Issuer{}, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	iss, ok := t.m[fp]
	return iss, ok
}

// Resources are what a ticket grants and a lease holds. Zero means "the
// node's default" for shares and limits and "none" for guarantees. CPU is
// in millicores, memory and disk in bytes, rates in bits per second; ports
// are "tcp/80" or "udp/9000-9010".
type Resources struct {
	CPUShares   int      `json:"cpu_shares,omitempty"`
	CPUReserve  int64    `json:"cpu_reserve,omitempty"`
	CPULimit    int64    `json:"cpu_limit,omitempty"`
	MemoryBytes int64    `json:"memory_bytes,omitempty"`
	Pids        int64    `json:"pids,omitempty"`
	DiskBytes   int64    `json:"disk_bytes,omitempty"`
	NetMinRate  int64    `json:"net_min_rate,omitempty"`
	NetMaxRate  int64    `json:"net_max_rate,omitempty"`
	Ports       []string `json:"ports,omitempty"`
}

// check validates r and gives "no ports" one form (nil), so a document
// decodes to the same value it re-encodes from.
func (r *Resources) check() error {
	if len(r.Ports) == 0 {
		r.Ports = nil
	}
	for _, v := range []int64{int64(r.CPUShares), r.CPUReserve, r.CPULimit, r.MemoryBytes, r.Pids, r.DiskBytes, r.NetMinRate, r.NetMaxRate} {
		if v < 0 {
			return fmt.Errorf("negative resource amount: %w", errdefs.ErrInvalid)
		}
	}
	if len(r.Ports) > 64 {
		return fmt.Errorf("%d port reservations, at most 64: %w", len(r.Ports), errdefs.ErrInvalid)
	}
	return nil
}

// Ticket grants Principal one sliver of Slice on Node with Resources,
// redeemable once between NotBefore and NotAfter.
type Ticket struct {
	ID        string           `json:"jti"`
	Issuer    string           `json:"iss"`
	Principal cred.Fingerprint `json:"sub"`
	Node      string           `json:"aud"`
	Slice     string           `json:"slice"`
	Resources Resources        `json:"res"`
	IssuedAt  int64            `json:"iat"`
	NotBefore int64            `json:"nbf"`
	NotAfter  int64            `json:"exp"`
}

// Lease is a node's promise to keep Sliver of Slice for Principal until
// NotAfter: the terms of the ticket TicketID it redeemed, signed by the
// node, renewed Renewals times.
type Lease struct {
	ID        string           `json:"jti"`
	Issuer    string           `json:"iss"`
	Principal cred.Fingerprint `json:"sub"`
	Slice     string           `json:"slice"`
	Sliver    string           `json:"sliver"`
	TicketID  string           `json:"tid"`
	Resources Resources        `json:"res"`
	Renewals  int              `json:"renewals"`
	IssuedAt  int64            `json:"iat"`
	NotBefore int64            `json:"nbf"`
	NotAfter  int64            `json:"exp"`
}

// Window returns the validity window as times.
func (t *Ticket) Window() (time.Time, time.Time) {
	return time.Unix(t.NotBefore, 0).UTC(), time.Unix(t.NotAfter, 0).UTC()
}

// Window returns the validity window as times.
func (l *Lease) Window() (time.Time, time.Time) {
	return time.Unix(l.NotBefore, 0).UTC(), time.Unix(l.NotAfter, 0).UTC()
}

// NewID returns a fresh random document id (128 bits, base64url).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("cred/ticket: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Sign fills t.Issuer with issuer (and t.ID when empty) and returns the
// ticket signed by key.
func Sign(t Ticket, issuer string, key *cred.PrivateKey) (string, error) {
	t.Issuer = issuer
	if t.ID == "" {
		t.ID = NewID()
	}
	if err := t.check(); err != nil {
		return "", fmt.Errorf("sign ticket: %w", err)
	}
	return sign(TypeTicket, t, key)
}

func (t *Ticket) check() error {
	switch {
	case t.ID == "" || len(t.ID) > 64:
		return fmt.Errorf("ticket id must have 1 to 64 characters: %w", errdefs.ErrInvalid)
	case t.Issuer == "":
		return fmt.Errorf("ticket without an issuer: %w", errdefs.ErrInvalid)
	case t.Node == "":
		return fmt.Errorf("ticket without a node: %w", errdefs.ErrInvalid)
	case t.Slice == "":
		return fmt.Errorf("ticket without a slice: %w", errdefs.ErrInvalid)
	case t.NotAfter <= t.NotBefore:
		return fmt.Errorf("ticket expires (exp %d) before it becomes valid (nbf %d): %w", t.NotAfter, t.NotBefore, errdefs.ErrInvalid)
	}
	if _, err := cred.ParseFingerprint(string(t.Principal)); err != nil {
		return fmt.Errorf("ticket principal: %w", err)
	}
	return t.Resources.check()
}

func (l *Lease) check() error {
	switch {
	case l.ID == "" || len(l.ID) > 64:
		return fmt.Errorf("lease id must have 1 to 64 characters: %w", errdefs.ErrInvalid)
	case l.Issuer == "":
		return fmt.Errorf("lease without an issuer: %w", errdefs.ErrInvalid)
	case l.Slice == "" || l.Sliver == "" || l.TicketID == "":
		return fmt.Errorf("lease without a slice, sliver or ticket id: %w", errdefs.ErrInvalid)
	case l.Renewals < 0:
		return fmt.Errorf("negative renewal count: %w", errdefs.ErrInvalid)
	case l.NotAfter <= l.NotBefore:
		return fmt.Errorf("lease expires (exp %d) before it becomes valid (nbf %d): %w", l.NotAfter, l.NotBefore, errdefs.ErrInvalid)
	}
	if _, err := cred.ParseFingerprint(string(l.Principal)); err != nil {
		return fmt.Errorf("lease principal: %w", err)
	}
	return l.Resources.check()
}

// Checks are what a verifier requires of a document beyond its signature.
type Checks struct {
	// Now is the verifier's clock reading.
	Now time.Time
	// Skew is how far the signer's clock may be off: a document is valid
	// from NotBefore-Skew until NotAfter+Skew.
	Skew time.Duration
	// Node, when set, must be the ticket's node (the redeeming node's
	// hostname) or the lease's issuer.
	Node string
	// Principal, when set, must be the document's principal (the key that
	// authenticated the request presenting it).
	Principal cred.Fingerprint
}

func (c Checks) window(kind string, nbf, exp int64) error {
	if c.Now.IsZero() {
		return fmt.Errorf("verify %s: no clock reading given: %w", kind, errdefs.ErrInvalid)
	}
	if c.Now.Add(c.Skew).Before(time.Unix(nbf, 0)) {
		return fmt.Errorf("%s not valid before %s (now %s): %w", kind, time.Unix(nbf, 0).UTC().Format(time.RFC3339), c.Now.UTC().Format(time.RFC3339), errdefs.ErrExpired)
	}
	if !c.Now.Add(-c.Skew).Before(time.Unix(exp, 0)) {
		return fmt.Errorf("%s expired at %s (now %s): %w", kind, time.Unix(exp, 0).UTC().Format(time.RFC3339), c.Now.UTC().Format(time.RFC3339), errdefs.ErrExpired)
	}
	return nil
}

// UnverifiedTicket decodes a ticket strictly without checking its
// signature or validity: for display only.
func UnverifiedTicket(doc string) (*Ticket, cred.Fingerprint, error) {
	p, err := split(doc, TypeTicket)
	if err != nil {
		return nil, "", fmt.Errorf("decode ticket: %w", err)
	}
	var t Ticket
	if err := strictJSON(p.payload, &t); err != nil {
		return nil, "", fmt.Errorf("decode ticket: %w", err)
	}
	if err := t.check(); err != nil {
		return nil, "", fmt.Errorf("decode ticket: %w", err)
	}
	return &t, cred.Fingerprint(p.header.Kid), nil
}

// Verify decodes doc, checks it was signed by a PLC issuer in trust whose
// name is the ticket's issuer, and applies c.
func Verify(doc string, trust *Trust, c Checks) (*Ticket, error) {
	p, err := split(doc, TypeTicket)
	if err != nil {
		return nil, fmt.Errorf("verify ticket: %w", err)
	}
	if _, err := verify(doc, p, trust); err != nil {
		return nil, fmt.Errorf("verify ticket: %w", err)
	}
	t, _, err := checkTicket(p, trust, c)
	return t, err
}

// checkTicket decodes the claims of a split ticket and checks everything
// but the signature.
func checkTicket(p *parsed, trust *Trust, c Checks) (*Ticket, Issuer, error) {
	iss, ok := trust.lookup(cred.Fingerprint(p.header.Kid))
	if !ok {
		return nil, Issuer{}, fmt.Errorf("verify ticket: signed by %s, which is not among the trusted keys: %w", p.header.Kid, errdefs.ErrDenied)
	}
	var t Ticket
	if err := strictJSON(p.payload, &t); err != nil {
		return nil, Issuer{}, fmt.Errorf("verify ticket: %w", err)
	}
	if err := t.check(); err != nil {
		return nil, Issuer{}, fmt.Errorf("verify ticket: %w", err)
	}
	if iss.Role != RolePLC || iss.Name != t.Issuer {
		return nil, Issuer{}, fmt.Errorf("verify ticket: issued by %q but signed by %s %q; only PLC signs tickets: %w", clip(t.Issuer), iss.Role, iss.Name, errdefs.ErrDenied)
	}
	if c.Node != "" && t.Node != c.Node {
		return nil, Issuer{}, fmt.Errorf("verify ticket: ticket is for node %q, not this node %q: %w", clip(t.Node), c.Node, errdefs.ErrDenied)
	}
	if c.Principal != "" && t.Principal != c.Principal {
		return nil, Issuer{}, fmt.Errorf("verify ticket: ticket names principal %s, but %s presented it: %w", t.Principal, c.Principal, errdefs.ErrDenied)
	}
	if err := c.window("ticket", t.NotBefore, t.NotAfter); err != nil {
		return nil, Issuer{}, fmt.Errorf("verify ticket: %w", err)
	}
	return &t, iss, nil
}

// OnceID is the id under which Redeem records ticket id in its once store
// (ticket ids and request nonces may share a store).
func OnceID(id string) string { return "ticket:" + id }

// Redeem verifies doc as Verify does and then records its id in once so it
// can never be redeemed again. c.Node and c.Principal are required.
func Redeem(ctx context.Context, doc string, trust *Trust, c Checks, once cred.OnceStore) (*Ticket, error) {
	if c.Node == "" || c.Principal == "" {
		return nil, fmt.Errorf("redeem ticket: the redeeming node and the presenting principal are required: %w", errdefs.ErrInvalid)
	}
	t, err := Verify(doc, trust, c)
	if err != nil {
		return nil, err
	}
	// Remember the id until the ticket can no longer pass the window check.
	until := time.Unix(t.NotAfter, 0).Add(c.Skew)
	if err := once.Use(ctx, OnceID(t.ID), until); err != nil {
		if errors.Is(err, errdefs.ErrConflict) {
			return nil, fmt.Errorf("redeem ticket %s: redeemed before; ask PLC for a new ticket: %w", t.ID, err)
		}
		return nil, fmt.Errorf("redeem ticket %s: record its redemption: %w", t.ID, err)
	}
	return t, nil
}

// NewLease returns the lease a node named node grants for the redeemed
// ticket t on sliver, valid from now until notAfter, signed by key.
func NewLease(t *Ticket, sliver, node string, now, notAfter time.Time, key *cred.PrivateKey) (string, *Lease, error) {
	l := Lease{
		ID:        NewID(),
		Issuer:    node,
		Principal: t.Principal,
		Slice:     t.Slice,
		Sliver:    sliver,
		TicketID:  t.ID,
		Resources: t.Resources,
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		NotAfter:  notAfter.Unix(),
	}
	doc, err := SignLease(l, key)
	if err != nil {
		return "", nil, err
	}
	return doc, &l, nil
}

// Renew returns l extended to notAfter with its renewal count raised,
// signed anew by key.
func Renew(l Lease, now, notAfter time.Time, key *cred.PrivateKey) (string, *Lease, error) {
	if !now.Before(time.Unix(l.NotAfter, 0)) {
		return "", nil, fmt.Errorf("renew lease %s: it expired at %s; its sliver is gone, redeem a new ticket: %w", l.ID, time.Unix(l.NotAfter, 0).UTC().Format(time.RFC3339), errdefs.ErrExpired)
	}
	if !notAfter.After(now) {
		return "", nil, fmt.Errorf("renew lease %s: new expiry %s is in the past: %w", l.ID, notAfter.UTC().Format(time.RFC3339), errdefs.ErrInvalid)
	}
	if !notAfter.After(time.Unix(l.NotAfter, 0)) {
		return "", nil, fmt.Errorf("renew lease %s: new expiry %s is not later than %s: %w", l.ID, notAfter.UTC().Format(time.RFC3339), time.Unix(l.NotAfter, 0).UTC().Format(time.RFC3339), errdefs.ErrInvalid)
	}
	l.Renewals++
	l.IssuedAt = now.Unix()
	l.NotAfter = notAfter.Unix()
	doc, err := SignLease(l, key)
	if err != nil {
		return "", nil, err
	}
	return doc, &l, nil
}

// SignLease returns l signed by key.
func SignLease(l Lease, key *cred.PrivateKey) (string, error) {
	if err := l.check(); err != nil {
		return "", fmt.Errorf("sign lease: %w", err)
	}
	return sign(TypeLease, l, key)
}

// UnverifiedLease decodes a lease strictly without checking its signature
// or validity: for display only.
func UnverifiedLease(doc string) (*Lease, cred.Fingerprint, error) {
	p, err := split(doc, TypeLease)
	if err != nil {
		return nil, "", fmt.Errorf("decode lease: %w", err)
	}
	var l Lease
	if err := strictJSON(p.payload, &l); err != nil {
		return nil, "", fmt.Errorf("decode lease: %w", err)
	}
	if err := l.check(); err != nil {
		return nil, "", fmt.Errorf("decode lease: %w", err)
	}
	return &l, cred.Fingerprint(p.header.Kid), nil
}

// VerifyLease decodes doc, checks it was signed by the node issuer in
// trust that it names, and applies c.
func VerifyLease(doc string, trust *Trust, c Checks) (*Lease, error) {
	p, err := split(doc, TypeLease)
	if err != nil {
		return nil, fmt.Errorf("verify lease: %w", err)
	}
	iss, err := verify(doc, p, trust)
	if err != nil {
		return nil, fmt.Errorf("verify lease: %w", err)
	}
	var l Lease
	if err := strictJSON(p.payload, &l); err != nil {
		return nil, fmt.Errorf("verify lease: %w", err)
	}
	if err := l.check(); err != nil {
		return nil, fmt.Errorf("verify lease: %w", err)
	}
	if iss.Role != RoleNode || iss.Name != l.Issuer {
		return nil, fmt.Errorf("verify lease: issued by %q but signed by %s %q; a lease is signed by the node that holds it: %w", clip(l.Issuer), iss.Role, iss.Name, errdefs.ErrDenied)
	}
	if c.Node != "" && l.Issuer != c.Node {
		return nil, fmt.Errorf("verify lease: lease is from node %q, not %q: %w", clip(l.Issuer), c.Node, errdefs.ErrDenied)
	}
	if c.Principal != "" && l.Principal != c.Principal {
		return nil, fmt.Errorf("verify lease: lease names principal %s, not %s: %w", l.Principal, c.Principal, errdefs.ErrDenied)
	}
	if err := c.window("lease", l.NotBefore, l.NotAfter); err != nil {
		return nil, fmt.Errorf("verify lease: %w", err)
	}
	return &l, nil
}
