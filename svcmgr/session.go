package svcmgr

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/cred/httpsig"
	"github.com/plab/plab/errdefs"
)

// DefaultNodePort is a node API's port when PLC does not know it.
const DefaultNodePort = 8140

// Session is a logged-in user: PLC's client, the user's identity, and
// clients for nodes.
type Session struct {
	Dir    string
	Config Config
	ID     cred.Identity
	PLC    *api.Client
	// Now is the clock (default time.Now).
	Now func() time.Time

	trust   *ca.Trust
	closeID func()
	mu      sync.Mutex
	nodes   map[string]api.Node
}

// Open opens the session of the user whose state is in dir.
func Open(dir string, passphrase func() ([]byte, error)) (*Session, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	pemData, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		return nil, fmt.Errorf("PLC's CA: %w; run plab login again", err)
	}
	id, closeID, err := loadIdentity(cfg.Identity, cfg.Key, passphrase)
	if err != nil {
		return nil, err
	}
	if cfg.Key != "" && id.Fingerprint() != cfg.Key {
		closeID()
		return nil, fmt.Errorf("identity %s is key %s, not %s you logged in with; run plab login again: %w", cfg.Identity, id.Fingerprint(), cfg.Key, errdefs.ErrInvalid)
	}
	s, err := newSession(dir, cfg, pemData, id)
	if err != nil {
		closeID()
		return nil, err
	}
	s.closeID = closeID
	return s, nil
}

func newSession(dir string, cfg Config, caPEM []byte, id cred.Identity) (*Session, error) {
	root, _, err := ca.ParseRoot(caPEM, cfg.CAFingerprint)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; run plab login again", filepath.Join(dir, caFile), err)
	}
	s := &Session{Dir: dir, Config: cfg, ID: id, Now: time.Now, closeID: func() {}, nodes: map[string]api.Node{}}
	if s.trust, err = ca.NewTrust(func() time.Time { return s.Now() }, root); err != nil {
		return nil, err
	}
	s.PLC = &api.Client{BaseURL: cfg.PLC, Sign: s.sign, HTTP: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: ca.ClientConfig(s.trust, nil, ca.RolePLC, cfg.PLCName), MaxIdleConnsPerHost: 64}}}
	return s, nil
}

// Close releases the identity (an agent connection).
func (s *Session) Close() { s.closeID() }

// sign signs a request as the user, naming the key that signs.
func (s *Session) sign(r *http.Request) error {
	r.Header.Set(api.KeyHeader, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.ID.PublicKey()))))
	return httpsig.Sign(r, s.ID, s.Now())
}

// Node returns PLC's record of host (cached for the session).
func (s *Session) Node(ctx context.Context, host string) (api.Node, error) {
	s.mu.Lock()
	n, ok := s.nodes[host]
	s.mu.Unlock()
	if ok {
		return n, nil
	}
	if err := s.PLC.Do(ctx, "GET", "/v1/nodes/"+host, nil, &n); err != nil {
		return api.Node{}, fmt.Errorf("node %s: %w", host, err)
	}
	s.mu.Lock()
	s.nodes[host] = n
	s.mu.Unlock()
	return n, nil
}

// NodeClient is a client of a node's API, checking the node's certificate
// against PLC's CA and its name, signing as the user.
func (s *Session) NodeClient(n api.Node) *api.Client {
	return &api.Client{BaseURL: "https://" + NodeAPIAddr(n), Sign: s.sign, HTTP: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: ca.ClientConfig(s.trust, nil, ca.RoleNode, n.Hostname)}}}
}

// NodeAPIAddr is where node n's API listens: its first address (or its
// name) and the port it reported.
func NodeAPIAddr(n api.Node) string {
	port := n.APIPort
	if port == 0 {
		port = DefaultNodePort
	}
	return net.JoinHostPort(nodeHost(n), strconv.Itoa(port))
}

// NodeSSHAddr is where node n's SSH gateway listens.
func NodeSSHAddr(n api.Node) (string, int) {
	port := n.SSHPort
	if port == 0 {
		port = 22
	}
	return nodeHost(n), port
}

func nodeHost(n api.Node) string {
	if len(n.Addresses) > 0 {
		return n.Addresses[0]
	}
	return n.Hostname
}
