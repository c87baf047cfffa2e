package plc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/ca"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/store"
)

// MaxBody bounds a request body.
const MaxBody = 1 << 20

// userKey finds a registered, enabled person's key for the verifier.
func (p *PLC) userKey(ctx context.Context, fp cred.Fingerprint) (ssh.PublicKey, error) {
	var k *store.Key
	var who *store.Person
	err := p.store.View(ctx, func(tx *store.Tx) error {
		var err error
		k, who, err = tx.KeyOwner(ctx, string(fp))
		return err
	})
	if err != nil {
		return nil, err
	}
	if !who.Enabled {
		return nil, fmt.Errorf("the account of key %s is disabled: %w", fp, errdefs.ErrDenied)
	}
	if h, ok := ctx.Value(keyWho).(*signer); ok {
		h.person = who // user() needs it too: one lookup per request
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("stored key %s unreadable: %w", fp, err)
	}
	return pub, nil
}

type ctxKey int

const (
	keyActor ctxKey = iota
	keyWho
	keySites
)

// signer carries the person userKey found out of the signature check.
type signer struct{ person *store.Person }

// caller is an authenticated user and the key they signed with.
type caller struct {
	person *store.Person
	fp     cred.Fingerprint
}

// handler is an API endpoint: it returns a value to send as JSON (status
// 200, or 201 for creations) or an error.
type handler func(w http.ResponseWriter, r *http.Request) (any, error)

// user wraps h with request-signature authentication.
func (p *PLC) user(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		found := &signer{}
		// Verify reads the body and puts an equal one back on the request
		// it was given: serve that one.
		r = r.WithContext(context.WithValue(r.Context(), keyWho, found))
		res, err := p.verifier.Verify(r)
		if err != nil {
			p.fail(w, r, fmt.Errorf("%w: %w", errUnauthenticated, err))
			return
		}
		who := found.person
		if who == nil {
			p.fail(w, r, fmt.Errorf("%w: no person behind key %s: %w", errUnauthenticated, res.Fingerprint, errdefs.ErrDenied))
			return
		}
		ctx := context.WithValue(r.Context(), keyActor, &caller{person: who, fp: res.Fingerprint})
		p.serve(w, r.WithContext(ctx), h)
	})
}

// node wraps h with node authentication: a client certificate from the
// testbed CA with role node.
func (p *PLC) node(h func(w http.ResponseWriter, r *http.Request, n *store.Node, peer ca.Peer) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, err := p.trust.ConnPeer(r.TLS)
		if err == nil && peer.Role != ca.RoleNode {
			err = fmt.Errorf("%s is not a node: %w", peer, errdefs.ErrDenied)
		}
		if err != nil {
			p.fail(w, r, fmt.Errorf("%w: %w", errUnauthenticated, err))
			return
		}
		var n *store.Node
		err = p.store.View(r.Context(), func(tx *store.Tx) error {
			var err error
			n, err = tx.Node(r.Context(), peer.Name)
			return err
		})
		if err != nil {
			p.fail(w, r, fmt.Errorf("%w: node %s is not registered: %w", errUnauthenticated, peer.Name, errdefs.ErrDenied))
			return
		}
		// The certificate must be the one this registration enrolled: a
		// node deleted and registered again enrolls again.
		if n.Key == "" || n.Key != string(peer.Key) {
			p.fail(w, r, fmt.Errorf("%w: this certificate is not the one node %s enrolled with; enroll it again: %w", errUnauthenticated, peer.Name, errdefs.ErrDenied))
			return
		}
		p.serve(w, r, func(w http.ResponseWriter, r *http.Request) (any, error) { return h(w, r, n, peer) })
	})
}

// public serves h without authentication.
func (p *PLC) public(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(w, r, h) })
}

func actorOf(r *http.Request) *caller {
	c, _ := r.Context().Value(keyActor).(*caller)
	return c
}

var (
	errUnauthenticated = errors.New("not authenticated")
	errMethod          = fmt.Errorf("method not allowed: %w", errdefs.ErrInvalid)
)

// created marks a value answered with 201.
type created struct{ v any }

func (p *PLC) serve(w http.ResponseWriter, r *http.Request, h handler) {
	v, err := h(w, r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if c, ok := v.(created); ok {
		v = api.Created{V: c.v}
	}
	api.Reply(w, v)
}

// fail answers an error as an api.Error. Unknown kinds are logged with
// their cause and answered with a generic message.
func (p *PLC) fail(w http.ResponseWriter, r *http.Request, err error) {
	var status int
	var code string
	if errors.Is(err, errUnauthenticated) {
		status, code = http.StatusUnauthorized, api.CodeUnauthenticated
	}
	if errors.Is(err, errMethod) {
		status = http.StatusMethodNotAllowed
	}
	api.Fail(w, r, p.log, "PLC", err, status, code)
}

// decode reads the request's JSON body into v strictly (api.DecodeJSON).
func decode(r *http.Request, v any) error { return api.DecodeJSON(r.Body, MaxBody, v) }

// page reads ?after= and ?limit=.
func page(r *http.Request) (store.Page, error) {
	var pg store.Page
	var err error
	if s := r.URL.Query().Get("after"); s != "" {
		if pg.After, err = strconv.ParseInt(s, 10, 64); err != nil || pg.After < 0 {
			return pg, fmt.Errorf("after=%q: want the next value of the previous page: %w", s, errdefs.ErrInvalid)
		}
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		if pg.Limit, err = strconv.Atoi(s); err != nil || pg.Limit < 1 || pg.Limit > store.MaxLimit {
			return pg, fmt.Errorf("limit=%q: want 1 to %d: %w", s, store.MaxLimit, errdefs.ErrInvalid)
		}
	}
	return pg, nil
}

func next(n int, pg store.Page, lastID int64) string {
	limit := pg.Limit
	if limit == 0 {
		limit = store.DefaultLimit
	}
	if n < limit {
		return ""
	}
	return strconv.FormatInt(lastID, 10)
}

var (
	loginBaseRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,19}$`)
	sliceNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,19}_[a-z][a-z0-9_]{0,30}$`)
	hostnameRE  = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	tagRE       = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,31}$`)
)

func checkLoginBase(s string) error {
	if !loginBaseRE.MatchString(s) {
		return fmt.Errorf("login base %q: want 2 to 20 lowercase letters and digits, starting with a letter: %w", s, errdefs.ErrInvalid)
	}
	return nil
}

func checkSliceName(s string) error {
	if !sliceNameRE.MatchString(s) || len(s) > 32 {
		return fmt.Errorf("slice name %q: want <loginbase>_<name>, lowercase, at most 32 characters (like princeton_codeen): %w", s, errdefs.ErrInvalid)
	}
	return nil
}

func checkHostname(s string) error {
	if len(s) > 253 || !hostnameRE.MatchString(s) {
		return fmt.Errorf("hostname %q: want a lowercase DNS name like node1.example.org: %w", s, errdefs.ErrInvalid)
	}
	return nil
}

func checkEmail(s string) error {
	at := strings.IndexByte(s, '@')
	if len(s) > 254 || at < 1 || at == len(s)-1 || strings.ContainsAny(s, " \t\r\n<>\"") || strings.Count(s, "@") != 1 {
		return fmt.Errorf("email %q: want an address like alice@example.org: %w", s, errdefs.ErrInvalid)
	}
	return nil
}

func checkText(field, s string, max int) error {
	if len(s) > max || strings.ContainsAny(s, "\x00") {
		return fmt.Errorf("%s: at most %d characters, no NUL: %w", field, max, errdefs.ErrInvalid)
	}
	return nil
}

func checkTag(s string) error {
	if !tagRE.MatchString(s) {
		return fmt.Errorf("tag %q: want lowercase letters, digits, _ . -, starting with a letter, at most 32: %w", s, errdefs.ErrInvalid)
	}
	return nil
}

func checkBootState(s string) error {
	switch s {
	case api.BootStateBoot, api.BootStateSafeboot, api.BootStateReinstall, api.BootStateDisabled:
		return nil
	}
	return fmt.Errorf("boot state %q: want boot, safeboot, reinstall or disabled: %w", s, errdefs.ErrInvalid)
}

func checkRoles(rs []string) ([]store.Role, error) {
	var out []store.Role
	seen := map[string]bool{}
	for _, r := range rs {
		switch store.Role(r) {
		case store.RoleAdmin, store.RolePI, store.RoleTech, store.RoleUser:
		default:
			return nil, fmt.Errorf("role %q: want admin, pi, tech or user: %w", r, errdefs.ErrInvalid)
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, store.Role(r))
		}
	}
	return out, nil
}
