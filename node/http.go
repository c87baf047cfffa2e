package node

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/plab/plab/api"
	"github.com/plab/plab/cred"
	"github.com/plab/plab/cred/httpsig"
	"github.com/plab/plab/errdefs"
)

// MaxBody bounds a request body of the node API.
const MaxBody = 64 << 10

// API serves the node API:
//
//	POST   /v1/leases                     redeem a ticket (newlease)
//	GET    /v1/slivers                    the caller's slivers
//	GET    /v1/slivers/{name}             a sliver's status
//	POST   /v1/slivers/{name}/renew       renew its lease (renewlease)
//	DELETE /v1/slivers/{name}             destroy it (deletelease)
//	GET    /v1/slivers/{name}/keys        its SSH keys (getsshkeys)
//	POST   /v1/slivers/{name}/keys        add a key (addkey)
//	DELETE /v1/slivers/{name}/keys/{fp}   remove a key (delkey)
//	GET    /v1/node                       the node's status (public)
//	GET    /v1/openapi.json               this list as OpenAPI 3.1 (public)
//	GET    /metrics                       Prometheus metrics (public)
//	GET    /                              a read-only status page (public)
//
// Requests under /v1 but /v1/node and /v1/openapi.json are signed with the
// user's SSH key (cred/httpsig); the signer's key travels in the
// api.KeyHeader so the node needs no registry of users. openapi.json
// describes the API in full.
type API struct {
	M       *Manager
	Sync    *Syncer      // may be nil
	Metrics http.Handler // may be nil
	// LastReport says when the monitor last reported to PLC (may be nil).
	LastReport func() time.Time
	Version    string
	Log        *slog.Logger
}

// Handler returns the API's handler.
func (a *API) Handler() http.Handler {
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
	v := &httpsig.Verifier{
		Key:         a.key,
		Once:        dbOnce{a.M.db},
		Authorities: a.M.cfg.Authorities,
		Now:         a.M.now,
		MaxBody:     MaxBody,
		Log:         a.Log,
		// The node knows only its slivers' keys.
		UnknownKeyHint: "send the public key in the " + api.KeyHeader + " header (an authorized_keys line)",
	}
	signed := http.NewServeMux()
	route := func(pattern string, h func(r *http.Request, signer cred.Fingerprint) (any, error)) {
		signed.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Verify reads the body and puts an equal one back on r.
			res, err := v.Verify(r)
			if err != nil {
				a.answer(w, r, nil, fmt.Errorf("%w: %w", errUnauthenticated, err))
				return
			}
			if pk, ok := r.Context().Value(presentedKey{}).(presentedKey); ok && pk.fp != res.Fingerprint {
				a.answer(w, r, nil, fmt.Errorf("the %s header holds key %s, but the request is signed by %s; send the key that signs: %w",
					api.KeyHeader, pk.fp, res.Fingerprint, errdefs.ErrInvalid))
				return
			}
			out, err := h(r, res.Fingerprint)
			a.answer(w, r, out, err)
		}))
	}
	route("POST /v1/leases", a.redeem)
	route("GET /v1/slivers", func(r *http.Request, s cred.Fingerprint) (any, error) {
		return api.List[api.Sliver]{Items: a.M.List(r.Context(), s)}, nil
	})
	route("GET /v1/slivers/{name}", func(r *http.Request, s cred.Fingerprint) (any, error) {
		return a.M.Status(r.Context(), r.PathValue("name"), s)
	})
	route("POST /v1/slivers/{name}/renew", func(r *http.Request, s cred.Fingerprint) (any, error) {
		var in api.LeaseRenewal
		if r.ContentLength != 0 {
			if err := api.DecodeJSON(r.Body, MaxBody, &in); err != nil {
				return nil, err
			}
		}
		return a.M.Renew(r.Context(), r.PathValue("name"), s, in.Ticket)
	})
	route("DELETE /v1/slivers/{name}", func(r *http.Request, s cred.Fingerprint) (any, error) {
		return nil, a.M.Delete(r.Context(), r.PathValue("name"), s)
	})
	route("GET /v1/slivers/{name}/keys", func(r *http.Request, s cred.Fingerprint) (any, error) {
		keys, err := a.M.Keys(r.PathValue("name"), s)
		return api.List[api.SSHKey]{Items: keys}, err
	})
	route("POST /v1/slivers/{name}/keys", func(r *http.Request, s cred.Fingerprint) (any, error) {
		var in api.SSHKey
		if err := api.DecodeJSON(r.Body, MaxBody, &in); err != nil {
			return nil, err
		}
		k, err := a.M.AddKey(r.Context(), r.PathValue("name"), s, in.Key)
		return api.Created{V: k}, err
	})
	route("DELETE /v1/slivers/{name}/keys/{fp}", func(r *http.Request, s cred.Fingerprint) (any, error) {
		fp, err := cred.ParseFingerprint(r.PathValue("fp"))
		if err != nil {
			return nil, err
		}
		return nil, a.M.DelKey(r.Context(), r.PathValue("name"), s, fp)
	})
	signed.Handle("/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.answer(w, r, nil, fmt.Errorf("no %s %s in the node API (see GET /v1/node): %w", r.Method, r.URL.Path, errdefs.ErrNotFound))
	}))

	mux := http.NewServeMux()
	mux.Handle("/v1/", a.withKey(signed))
	mux.HandleFunc("GET /v1/node", func(w http.ResponseWriter, r *http.Request) { a.answer(w, r, a.status(), nil) })
	mux.HandleFunc("GET /v1/openapi.json", serveOpenAPI)
	if a.Metrics != nil {
		mux.Handle("GET /metrics", a.Metrics)
	}
	mux.HandleFunc("GET /{$}", a.page)
	return mux
}

// errUnauthenticated marks a request whose signature did not verify.
var errUnauthenticated = errors.New("request not authenticated")

func (a *API) answer(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		var status int
		var code string
		if errors.Is(err, errUnauthenticated) && api.CodeOf(err) == api.CodeDenied {
			status, code = http.StatusUnauthorized, api.CodeUnauthenticated
		}
		api.Fail(w, r, a.Log, "node's", err, status, code)
		return
	}
	api.Reply(w, v)
}

func (a *API) redeem(r *http.Request, signer cred.Fingerprint) (any, error) {
	var in api.Redemption
	if err := api.DecodeJSON(r.Body, MaxBody, &in); err != nil {
		return nil, err
	}
	if in.Ticket == "" {
		return nil, fmt.Errorf("no ticket: send {\"ticket\": \"…\"} with a ticket from PLC (POST /v1/slices/NAME/tickets): %w", errdefs.ErrInvalid)
	}
	// The signer's key (the header's, which the route checked is the
	// signer's, or one the node knows) becomes the sliver's first key.
	pk, ok := r.Context().Value(presentedKey{}).(presentedKey)
	key := pk.line
	if !ok {
		key, _ = a.M.keyByFingerprint(signer)
	}
	if in.LeaseSeconds < 0 {
		return nil, fmt.Errorf("lease_seconds %d: want 0 (as long as allowed) or a positive number of seconds: %w", in.LeaseSeconds, errdefs.ErrInvalid)
	}
	l, err := a.M.Redeem(r.Context(), in.Ticket, signer, key, time.Duration(in.LeaseSeconds)*time.Second)
	return api.Created{V: l}, err
}

// presentedKey is a key a request carried in the api.KeyHeader.
type presentedKey struct {
	fp   cred.Fingerprint
	pub  ssh.PublicKey
	line string
}

// withKey reads the signer's key from the api.KeyHeader, when there is one.
func (a *API) withKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if line := r.Header.Get(api.KeyHeader); line != "" {
			pub, err := cred.ParseUserKey(line)
			if err != nil {
				a.answer(w, r, nil, fmt.Errorf("%s header: %w", api.KeyHeader, err))
				return
			}
			pk := presentedKey{fp: cred.FingerprintSSH(pub), pub: pub, line: line}
			r = r.WithContext(context.WithValue(r.Context(), presentedKey{}, pk))
		}
		next.ServeHTTP(w, r)
	})
}

// key finds the key a signature names: the one the request presented, or
// one of a sliver's keys.
func (a *API) key(ctx context.Context, fp cred.Fingerprint) (ssh.PublicKey, error) {
	if pk, ok := ctx.Value(presentedKey{}).(presentedKey); ok && pk.fp == fp {
		return pk.pub, nil
	}
	if line, ok := a.M.keyByFingerprint(fp); ok {
		if pub, err := cred.ParseUserKey(line); err == nil {
			return pub, nil
		}
	}
	return nil, fmt.Errorf("key %s is unknown here; send it in the %s header: %w", fp, api.KeyHeader, errdefs.ErrNotFound)
}

func (a *API) status() api.NodeStatus {
	s := api.NodeStatus{Hostname: a.M.cfg.Hostname, Version: a.Version, Capacity: a.M.Capacity(), Free: a.M.Free(), Slivers: a.M.Count()}
	if a.Sync != nil {
		s.PLC = a.Sync.Status()
	}
	if a.LastReport != nil {
		s.PLC.LastReport = a.LastReport()
	}
	return s
}

var pageTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>plab node {{.S.Hostname}}</title>
<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;text-align:left}</style></head>
<body><h1>plab node {{.S.Hostname}}</h1>
<p>{{.S.Slivers}} slivers. Unreserved CPU {{.S.Free.CPUReserve}}m of {{.S.Capacity.CPUReserve}}m; unpromised memory {{.S.Free.MemoryBytes}} of {{.S.Capacity.MemoryBytes}} bytes.</p>
<p>PLC {{.S.PLC.URL}}: change {{.S.PLC.Change}}, last sync {{ago .S.PLC.LastSync}}{{if .S.PLC.Error}}, error: {{.S.PLC.Error}}{{end}}.</p>
<table><tr><th>sliver</th><th>state</th><th>lease until</th><th>delegated</th><th>keys</th><th>memory</th></tr>
{{range .Slivers}}<tr><td>{{.Name}}</td><td>{{.State}}</td><td>{{.Lease.NotAfter.Format "2006-01-02 15:04:05Z"}}</td><td>{{.Delegated}}</td><td>{{.Keys}}</td><td>{{.Usage.MemoryBytes}}</td></tr>
{{end}}</table>
<p><a href="/metrics">metrics</a> · <a href="/v1/node">status as JSON</a></p></body></html>
`))

// page is the read-only status page.
func (a *API) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTmpl.Execute(w, struct {
		S       api.NodeStatus
		Slivers []api.Sliver
	}{a.status(), a.M.List(r.Context(), "")}); err != nil {
		a.Log.Warn("status page", "err", err)
	}
}
