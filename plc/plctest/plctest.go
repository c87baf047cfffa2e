// Package plctest runs a real PLC for other packages' tests: initialized in
// a temporary directory on SQLite, served over TLS on loopback, with its
// admin, helpers to register people and nodes, and a clock the test moves.
// It can be stopped and started again on the same address, to test what
// nodes do while PLC is away.
package plctest

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/cred/credtest"
	"github.com/plab/plab/cred/httpsig"
	"github.com/plab/plab/plc"
)

// Name is the test PLC's name.
const Name = "plc.test"

// PLC is a running test PLC.
type PLC struct {
	t     testing.TB
	Dir   string
	Addr  string // host:port on loopback
	URL   string
	Admin *User
	// CAFingerprint pins the PLC's CA, as plab plc init prints it.
	CAFingerprint cred.Fingerprint

	mu  sync.Mutex
	off time.Duration // PLC's clock runs with the real one, Advance moves it ahead
	p   *plc.PLC
	srv *http.Server
}

// User is someone with an SSH key (credtest.User).
type User = credtest.User

// NewUser makes a user with a fresh ed25519 key in a key file.
func NewUser(t testing.TB, email string) *User { return credtest.NewUser(t, email) }

// Start initializes and serves a PLC; it stops when the test ends.
func Start(t testing.TB) *PLC {
	t.Helper()
	p := &PLC{t: t, Dir: t.TempDir()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Addr, p.URL = ln.Addr().String(), "https://"+ln.Addr().String()
	p.Admin = NewUser(t, "admin@plab.test")
	if err := plc.Init(context.Background(), p.Dir, plc.InitOptions{
		Settings:   plc.Settings{Name: Name, Hosts: []string{"127.0.0.1"}},
		AdminEmail: p.Admin.Email, AdminName: "Admin", AdminKey: p.Admin.Pub,
	}); err != nil {
		t.Fatal(err)
	}
	root, err := ca.Load(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cred.NewPublicKey(root.Certificate().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p.CAFingerprint = pub.Fingerprint()
	p.serve(ln)
	t.Cleanup(p.Stop)
	return p
}

func (p *PLC) serve(ln net.Listener) {
	pl, err := plc.Open(context.Background(), plc.Config{Dir: p.Dir, Now: p.Now, Authorities: []string{p.Addr}})
	if err != nil {
		ln.Close()
		p.t.Fatal(err)
	}
	srv := &http.Server{Handler: pl.Handler(), TLSConfig: pl.TLSConfig(), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.ServeTLS(ln, "", "")
	p.mu.Lock()
	p.p, p.srv = pl, srv
	p.mu.Unlock()
}

// Stop stops serving and closes the PLC (a no-op when stopped).
func (p *PLC) Stop() {
	p.mu.Lock()
	srv, pl := p.srv, p.p
	p.srv, p.p = nil, nil
	p.mu.Unlock()
	if srv != nil {
		srv.Close()
		pl.Close()
	}
}

// Restart serves the stopped PLC again on its address.
func (p *PLC) Restart() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", p.Addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // the old socket is closing
	}
	if err != nil {
		p.t.Fatalf("listen again on %s: %v", p.Addr, err)
	}
	p.serve(ln)
}

// Now is PLC's clock: the real one, moved ahead by Advance. It runs, so
// clients that sign with the real clock (the CLI) stay within PLC's skew
// however long a test takes.
func (p *PLC) Now() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Now().Add(p.off)
}

// Advance moves PLC's clock ahead.
func (p *PLC) Advance(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.off += d
}

// Trust is a client's view of the testbed CA.
func (p *PLC) Trust() *ca.Trust {
	p.t.Helper()
	root, err := ca.Load(p.Dir)
	if err != nil {
		p.t.Fatal(err)
	}
	tr, err := ca.NewTrust(time.Now, root.Certificate())
	if err != nil {
		p.t.Fatal(err)
	}
	return tr
}

// Client returns an API client of PLC signing as u.
func (p *PLC) Client(u *User) *api.Client {
	cfg := ca.ClientConfig(p.Trust(), nil, ca.RolePLC, Name)
	return &api.Client{
		BaseURL: p.URL,
		HTTP:    &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}},
		Sign:    func(r *http.Request) error { return httpsig.Sign(r, u.ID, p.Now()) },
	}
}

// Do calls PLC as u and fails the test on error.
func (p *PLC) Do(u *User, method, path string, in, out any) {
	p.t.Helper()
	if err := p.Client(u).Do(context.Background(), method, path, in, out); err != nil {
		p.t.Fatalf("%s %s as %s: %v", method, path, u.Email, err)
	}
}

// Site registers a site with room for many slices and slivers.
func (p *PLC) Site(login string) {
	p.t.Helper()
	p.Do(p.Admin, "POST", "/v1/sites", api.Site{LoginBase: login, Name: login, MaxSlices: 10000, MaxSlivers: 100000, Enabled: true}, nil)
}

// Person registers u with roles at site, with u's key.
func (p *PLC) Person(u *User, site string, roles ...string) {
	p.t.Helper()
	p.Do(p.Admin, "POST", "/v1/persons", api.Person{Email: u.Email, Name: u.Email, Site: site, Roles: roles, Enabled: true}, nil)
	p.Do(p.Admin, "POST", "/v1/persons/"+u.Email+"/keys", api.Key{PublicKey: u.Pub}, nil)
}

// Node registers a node at site and returns an enrollment token for it.
func (p *PLC) Node(host, site string) string {
	p.t.Helper()
	p.Do(p.Admin, "POST", "/v1/nodes", api.Node{Hostname: host, Site: site}, nil)
	var tok api.EnrollToken
	p.Do(p.Admin, "POST", "/v1/nodes/"+host+"/token", nil, &tok)
	return tok.Token
}

// Slice creates a slice (direct or delegated) with u as its member,
// expiring after d.
func (p *PLC) Slice(name, instantiation string, u *User, d time.Duration) {
	p.t.Helper()
	p.Do(p.Admin, "POST", "/v1/slices", api.Slice{Name: name, Instantiation: instantiation, MaxNodes: 100, Expires: p.Now().Add(d)}, nil)
	if u != nil {
		p.Do(p.Admin, "PUT", "/v1/slices/"+name+"/members/"+u.Email, nil, nil)
	}
}

// Tickets asks for tickets of slice on nodes as u.
func (p *PLC) Tickets(u *User, slice string, res api.Resources, nodes ...string) []api.IssuedTicket {
	p.t.Helper()
	var out api.Tickets
	p.Do(u, "POST", "/v1/slices/"+slice+"/tickets", api.TicketRequest{Nodes: nodes, Resources: res}, &out)
	return out.Tickets
}

// TLSConfigFor is a client TLS configuration that verifies a node's
// certificate against the testbed CA.
func (p *PLC) TLSConfigFor(host string) *tls.Config {
	return ca.ClientConfig(p.Trust(), nil, ca.RoleNode, host)
}

// IsStopped reports whether the PLC is stopped.
func (p *PLC) IsStopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.srv == nil
}
