//go:build linux

package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/internal/openapitest"
	"github.com/plab/plab/sliver"
)

// signed says whether op requires the signature, as the document says.
func signed(doc *openapitest.Doc, op *openapitest.Operation) bool {
	return len(doc.SecurityFor(op)) > 0
}

// docRoute is a line of the route list in API's doc comment.
type docRoute struct {
	key    string // "METHOD /path"
	public bool
}

// docRoutes reads the route list in the doc comment of API in http.go.
func docRoutes(t *testing.T) []docRoute {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "http.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var doc string
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE && len(g.Specs) == 1 && g.Specs[0].(*ast.TypeSpec).Name.Name == "API" {
			doc = g.Doc.Text()
		}
	}
	line := regexp.MustCompile(`(?m)^\t(GET|PUT|POST|PATCH|DELETE) +(/\S*) +(.+)$`)
	var out []docRoute
	for _, m := range line.FindAllStringSubmatch(doc, -1) {
		out = append(out, docRoute{key: m[1] + " " + m[2], public: strings.HasSuffix(m[3], "(public)")})
	}
	if len(out) == 0 {
		t.Fatalf("found no routes in API's doc comment in http.go:\n%s", doc)
	}
	return out
}

// auth names the security signed says.
func auth(signed bool) string {
	if signed {
		return "signed"
	}
	return "public"
}

// TestOpenAPIRoutes: the document has exactly the routes listed in API's doc
// comment, public where the list says so and signed otherwise; each with a
// summary, its path parameters, one success response and, under /v1, the
// shared error response; each signed one with the Plab-Key header and the
// errors a signature check can give.
func TestOpenAPIRoutes(t *testing.T) {
	doc := openapitest.Load(t, openAPIDoc)
	ops := doc.Operations(t)
	var listed []string
	for _, r := range docRoutes(t) {
		listed = append(listed, r.key)
		op := ops[r.key]
		if op != nil && signed(doc, op) == r.public {
			t.Errorf("%s is %s in openapi.json but %s in API's doc comment", r.key, auth(signed(doc, op)), auth(!r.public))
		}
	}
	slices.Sort(listed)
	if diff := cmp.Diff(listed, slices.Sorted(maps.Keys(ops))); diff != "" {
		t.Errorf("API's doc comment (-) and openapi.json operations (+) differ:\n%s", diff)
	}
	if doc.Components.SecuritySchemes["signature"] == nil {
		t.Errorf("no security scheme signature")
	}
	if diff := cmp.Diff([]map[string][]string{{"signature": {}}}, doc.Security); diff != "" {
		t.Errorf("top-level security (-want +got):\n%s", diff)
	}

	openapitest.CheckOperations(t, doc, ops)
	for key, op := range ops {
		isSigned := signed(doc, op)
		if has := doc.HasParameter(op, "header", api.KeyHeader); has != isSigned {
			t.Errorf("%s: signed %v, but has the %s header parameter %v; want both or neither", key, isSigned, api.KeyHeader, has)
		}
		_, path, _ := strings.Cut(key, " ")
		if !strings.HasPrefix(path, "/v1/") {
			continue // Go's mux answers errors outside /v1 in plain text
		}
		if d := op.Responses["default"]; d == nil || d.Ref != "#/components/responses/Error" {
			t.Errorf("%s: default response %+v, want the shared Error", key, d)
		}
		if isSigned {
			for _, code := range []string{"400", "401", "409", "410"} {
				if op.Responses[code] == nil {
					t.Errorf("%s is signed: no %s response; a signature check can answer it", key, code)
				}
			}
		}
	}
}

// errorKinds are the kinds of errdefs, which api.CodeOf and
// errdefs.HTTPStatus map to codes and statuses.
var errorKinds = []error{errdefs.ErrNotFound, errdefs.ErrConflict, errdefs.ErrInvalid, errdefs.ErrDenied,
	errdefs.ErrExpired, errdefs.ErrNoCapacity, errdefs.ErrUnavailable}

// codesByStatus returns the error codes each status carries, as the
// handler answers them.
func codesByStatus() map[string][]string {
	out := map[string][]string{
		"401": {api.CodeUnauthenticated}, // API.answer: a signature that did not verify
		"500": {api.CodeInternal},
	}
	for _, k := range errorKinds {
		s := fmt.Sprint(errdefs.HTTPStatus(k))
		out[s] = append(out[s], api.CodeOf(k))
	}
	for _, codes := range out {
		slices.Sort(codes)
	}
	return out
}

// TestOpenAPIErrors: every error response of an operation is the shared
// component for its status, the component lists exactly the codes the node
// answers with that status, and the operation's description names only
// those codes.
func TestOpenAPIErrors(t *testing.T) {
	doc := openapitest.Load(t, openAPIDoc)
	want := codesByStatus()
	codeRef := regexp.MustCompile(`\b([a-z_]+):`)
	all := map[string]bool{}
	for _, codes := range want {
		for _, c := range codes {
			all[c] = true
		}
	}
	byStatus := map[string]string{} // status → response component
	for key, op := range doc.Operations(t) {
		for status, r := range op.Responses {
			if status == "default" || status[0] == '2' {
				continue
			}
			name, ok := strings.CutPrefix(r.Ref, "#/components/responses/")
			if !ok {
				t.Errorf("%s %s: inline response; use a $ref to the component for %s", key, status, status)
				continue
			}
			if prev, ok := byStatus[status]; ok && prev != name {
				t.Errorf("%s %s: response %s, but other operations answer %s with %s", key, status, name, status, prev)
			}
			byStatus[status] = name
			if r.Description == "" {
				t.Errorf("%s %s: no description of when it answers %s", key, status, status)
			}
			var named []string
			for _, m := range codeRef.FindAllStringSubmatch(r.Description, -1) {
				if all[m[1]] {
					named = append(named, m[1])
				}
				if all[m[1]] && !slices.Contains(want[status], m[1]) {
					t.Errorf("%s %s: description names code %s, which the node answers with another status", key, status, m[1])
				}
			}
			if len(named) == 0 {
				t.Errorf("%s %s: description %q names no code (like %s: when …)", key, status, r.Description, want[status][0])
			}
		}
	}
	for status, name := range byStatus {
		r := doc.Components.Responses[name]
		if r == nil {
			continue // TestOpenAPIRefs reports it
		}
		s := r.Content["application/json"].Schema
		if s == nil || s.Ref != "#/components/schemas/Error" || s.Properties["code"] == nil {
			t.Errorf("response %s: schema %+v, want the Error schema with its code narrowed by an enum", name, s)
			continue
		}
		got := slices.Sorted(slices.Values(s.Properties["code"].Enum))
		if diff := cmp.Diff(want[status], got); diff != "" {
			t.Errorf("response %s for %s: codes (-handler +openapi.json):\n%s", name, status, diff)
		}
	}
}

// apiTypes maps the document's schemas to the Go types they describe.
var apiTypes = map[string]reflect.Type{
	"Error":        reflect.TypeFor[api.Error](),
	"Redemption":   reflect.TypeFor[api.Redemption](),
	"LeaseRenewal": reflect.TypeFor[api.LeaseRenewal](),
	"Lease":        reflect.TypeFor[api.Lease](),
	"Sliver":       reflect.TypeFor[api.Sliver](),
	"SSHKey":       reflect.TypeFor[api.SSHKey](),
	"NodeStatus":   reflect.TypeFor[api.NodeStatus](),
	"SyncStatus":   reflect.TypeFor[api.SyncStatus](),
	"Resources":    reflect.TypeFor[api.Resources](),
	"SliceUsage":   reflect.TypeFor[api.SliceUsage](),
	"SliverList":   reflect.TypeFor[api.List[api.Sliver]](),
	"SSHKeyList":   reflect.TypeFor[api.List[api.SSHKey]](),
}

// TestOpenAPISchemas: every schema describes its Go type as encoding/json
// writes it: the same property names as the JSON tags, matching types, no
// other properties, and required exactly the fields always written; and
// the enums list api's and sliver's constants.
func TestOpenAPISchemas(t *testing.T) {
	doc := openapitest.Load(t, openAPIDoc)
	openapitest.CheckSchemas(t, doc, apiTypes, openapitest.AllRequired)
	openapitest.CheckEnum(t, doc, "Error", "code", []string{api.CodeNotFound, api.CodeConflict, api.CodeInvalid, api.CodeDenied,
		api.CodeExpired, api.CodeNoCapacity, api.CodeUnavailable, api.CodeUnauthenticated, api.CodeInternal})
	// Manager.status: the backend's state, or missing.
	openapitest.CheckEnum(t, doc, "Sliver", "state", []string{string(sliver.Creating), string(sliver.Created), string(sliver.Running), string(sliver.Stopped), "missing"})
}

// TestOpenAPIRefs: every $ref points at a component that exists, and
// every component is used.
func TestOpenAPIRefs(t *testing.T) { openapitest.CheckRefs(t, openAPIDoc) }

// TestOpenAPIServed: a real node serves the embedded document, byte for
// byte, to anyone; and its handler routes what the document describes and
// nothing else under /v1: each documented operation, unsigned, answers
// 401 unauthenticated when the document says it is signed and its success
// response's media type when public, while every other method of a
// documented /v1 path answers 404 "no … in the node API".
func TestOpenAPIServed(t *testing.T) {
	w := newWorld(t, worldOpts{})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: w.plc.TLSConfigFor(w.node.host)}}
	get := func(t *testing.T, method, path string) (*http.Response, []byte) {
		t.Helper()
		return openapitest.Request(t, hc, method, w.node.url+path)
	}

	t.Run("document", func(t *testing.T) {
		openapitest.CheckServed(t, hc, w.node.url, openAPIDoc, &api.Client{BaseURL: w.node.url, HTTP: hc})
	})

	t.Run("routes", func(t *testing.T) {
		doc := openapitest.Load(t, openAPIDoc)
		ops := doc.Operations(t)
		sample := strings.NewReplacer("{name}", "ucb_none", "{fp}", "SHA256%2Fnone")
		for path := range doc.Paths {
			for _, method := range []string{"GET", "PUT", "POST", "PATCH", "DELETE"} {
				key := method + " " + path
				op := ops[key]
				if op == nil && !strings.HasPrefix(path, "/v1/") {
					continue // outside /v1 Go's mux answers: 405 in plain text
				}
				resp, body := get(t, method, sample.Replace(path))
				var e api.Error
				_ = json.Unmarshal(body, &e)
				switch {
				case op == nil:
					if resp.StatusCode != http.StatusNotFound || e.Code != api.CodeNotFound || !strings.Contains(e.Message, "in the node API") {
						t.Errorf("%s is not in openapi.json, but unsigned it answers %d %s; want 404 not_found, no %s in the node API", key, resp.StatusCode, body, key)
					}
				case signed(doc, op):
					if resp.StatusCode != http.StatusUnauthorized || e.Code != api.CodeUnauthenticated {
						t.Errorf("%s is signed in openapi.json, but unsigned it answers %d %s; want 401 unauthenticated", key, resp.StatusCode, body)
					}
				default:
					var want []string
					for code, r := range op.Responses {
						if code[0] == '2' {
							want = slices.Sorted(maps.Keys(r.Content))
						}
					}
					got, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
					if resp.StatusCode != http.StatusOK || !slices.Contains(want, got) {
						t.Errorf("%s is public in openapi.json, but unsigned it answers %d %s %.200s; want 200 %v", key, resp.StatusCode, got, body, want)
					}
				}
			}
		}
	})

	t.Run("node status", func(t *testing.T) {
		_, body := get(t, "GET", "/v1/node")
		var s api.NodeStatus
		if err := api.DecodeJSON(bytes.NewReader(body), MaxBody, &s); err != nil || s.Hostname != w.node.host {
			t.Errorf("GET /v1/node = %+v, %v; want the status of %s with no field NodeStatus lacks", s, err, w.node.host)
		}
	})
}
