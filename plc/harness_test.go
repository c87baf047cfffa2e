package plc

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/cred/credtest"
	"github.com/plab/plab/cred/httpsig"
)

// world is a PLC served over TLS on loopback, with its admin.
type world struct {
	t     testing.TB
	dir   string
	plc   *PLC
	srv   *http.Server
	url   string
	admin *client
	now   time.Time
}

// user is someone with an SSH key file.
type user struct {
	email string
	id    cred.Identity
	pub   string // authorized_keys line
}

func newUser(t testing.TB, email string) *user {
	u := credtest.NewUser(t, email)
	return &user{email: u.Email, id: u.ID, pub: u.Pub}
}

func newWorld(t testing.TB) *world { return newWorldDSN(t, "") }

// newWorldDSN is newWorld on the store dsn ("" for SQLite).
func newWorldDSN(t testing.TB, dsn string) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), now: time.Now()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := newUser(t, "admin@plab.test")
	ctx := context.Background()
	if err := Init(ctx, w.dir, InitOptions{
		Settings:   Settings{Name: "plc.test", Hosts: []string{"127.0.0.1", ln.Addr().String()}},
		DSN:        dsn,
		AdminEmail: admin.email, AdminName: "Admin", AdminKey: admin.pub,
	}); err != nil {
		t.Fatal(err)
	}
	w.plc, err = Open(ctx, Config{Dir: w.dir, DSN: dsn, Now: func() time.Time { return w.now }, Authorities: []string{ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	w.srv = &http.Server{Handler: w.plc.Handler(), TLSConfig: w.plc.TLSConfig(), ErrorLog: log.New(io.Discard, "", 0)}
	w.url = "https://" + ln.Addr().String()
	go w.srv.ServeTLS(ln, "", "")
	t.Cleanup(func() {
		w.srv.Close()
		w.plc.Close()
	})
	w.admin = w.client(admin)
	return w
}

// trust is a client's view of the testbed CA.
func (w *world) trust() *ca.Trust {
	root, err := ca.Load(w.dir)
	if err != nil {
		w.t.Fatal(err)
	}
	tr, err := ca.NewTrust(func() time.Time { return w.now }, root.Certificate())
	if err != nil {
		w.t.Fatal(err)
	}
	return tr
}

// client returns an API client signing as u.
func (w *world) client(u *user) *client {
	cfg := ca.ClientConfig(w.trust(), nil, ca.RolePLC, "plc.test")
	return &client{u: u, Client: api.Client{
		BaseURL: w.url,
		HTTP:    &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}},
		Sign:    func(r *http.Request) error { return httpsig.Sign(r, u.id, w.now) },
	}}
}

// nodeClient returns a client presenting a node certificate.
func (w *world) nodeClient(cert *tls.Certificate) *api.Client {
	cfg := ca.ClientConfig(w.trust(), func() (*tls.Certificate, error) { return cert, nil }, ca.RolePLC, "plc.test")
	return &api.Client{BaseURL: w.url, HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}}
}

type client struct {
	api.Client
	u *user
}

func (c *client) do(t testing.TB, method, path string, in, out any) {
	t.Helper()
	if err := c.Do(context.Background(), method, path, in, out); err != nil {
		t.Fatalf("%s %s as %s: %v", method, path, c.u.email, err)
	}
}

// person registers u with roles at site (as admin) and returns u's client.
func (w *world) person(u *user, site string, roles ...string) *client {
	w.t.Helper()
	w.admin.do(w.t, "POST", "/v1/persons", api.Person{Email: u.email, Name: u.email, Site: site, Roles: roles, Enabled: true}, nil)
	w.admin.do(w.t, "POST", "/v1/persons/"+u.email+"/keys", api.Key{PublicKey: u.pub}, nil)
	return w.client(u)
}
