package plc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/plab/plab/store"
)

// Serve answers HTTPS on ln until ctx ends, then shuts down gracefully
// (requests in flight get 10 s to finish).
func (p *PLC) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           p.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, p.TLSConfig())) }()
	p.log.Info("PLC serving", "addr", ln.Addr().String(), "name", p.settings.Name, "store", p.store.Kind())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-errc; e != nil && !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	return err
}

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Name}} — plab PLC</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}</style>
</head><body>
<h1>{{.Name}}</h1>
<p>plab PLC, store {{.Store}}, schema version {{.Schema}}. {{.Now}}</p>
<table><tr><th>sites</th><td>{{.Sites}}</td></tr><tr><th>people</th><td>{{.Persons}}</td></tr>
<tr><th>nodes</th><td>{{.Nodes}} ({{.Reporting}} reported in the last 5 minutes)</td></tr><tr><th>slices</th><td>{{.Slices}}</td></tr></table>
<h2>Nodes</h2>
<table><tr><th>node</th><th>boot state</th><th>last contact</th></tr>
{{range .NodeRows}}<tr><td>{{.Hostname}}</td><td>{{.BootState}}</td><td>{{if .LastContact.IsZero}}never{{else}}{{.LastContact.Format "2006-01-02 15:04:05"}}{{end}}</td></tr>
{{end}}</table>
<p>The API is under <a href="/v1/openapi.json">/v1</a>.</p>
</body></html>
`))

// status is the read-only HTML status page.
func (p *PLC) status(w http.ResponseWriter, r *http.Request) {
	type page struct {
		Name, Store, Now                                 string
		Schema, Sites, Persons, Nodes, Slices, Reporting int
		NodeRows                                         []store.Node
	}
	pg := page{Name: p.settings.Name, Store: p.store.Kind(), Now: p.now().UTC().Format(time.RFC3339)}
	var err error
	if pg.Schema, err = p.store.Version(r.Context()); err == nil {
		err = p.store.View(r.Context(), func(tx *store.Tx) error {
			count := func(list func(store.Page) (int, int64, error)) (int, error) {
				n := 0
				for after := int64(0); ; {
					k, last, err := list(store.Page{After: after, Limit: store.MaxLimit})
					if err != nil || k == 0 {
						return n, err
					}
					n, after = n+k, last
				}
			}
			var err error
			pg.Sites, err = count(func(p store.Page) (int, int64, error) {
				ss, err := tx.ListSites(r.Context(), p)
				if len(ss) == 0 {
					return 0, 0, err
				}
				return len(ss), ss[len(ss)-1].ID, err
			})
			if err != nil {
				return err
			}
			pg.Persons, err = count(func(p store.Page) (int, int64, error) {
				ps, err := tx.ListPersons(r.Context(), 0, p)
				if len(ps) == 0 {
					return 0, 0, err
				}
				return len(ps), ps[len(ps)-1].ID, err
			})
			if err != nil {
				return err
			}
			pg.Slices, err = count(func(p store.Page) (int, int64, error) {
				ss, err := tx.ListSlices(r.Context(), store.SliceFilter{}, p)
				if len(ss) == 0 {
					return 0, 0, err
				}
				return len(ss), ss[len(ss)-1].ID, err
			})
			if err != nil {
				return err
			}
			recent := p.now().Add(-5 * time.Minute)
			pg.Nodes, err = count(func(pp store.Page) (int, int64, error) {
				ns, err := tx.ListNodes(r.Context(), store.NodeFilter{}, pp)
				for _, n := range ns {
					if n.LastContact.After(recent) {
						pg.Reporting++
					}
					if len(pg.NodeRows) < 200 {
						pg.NodeRows = append(pg.NodeRows, n)
					}
				}
				if len(ns) == 0 {
					return 0, 0, err
				}
				return len(ns), ns[len(ns)-1].ID, err
			})
			return err
		})
	}
	if err != nil {
		p.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = statusPage.Execute(w, pg)
}
