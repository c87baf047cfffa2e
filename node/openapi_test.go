//go:build linux

package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/api"
	"github.com/plab/plab/errdefs"
	"github.com/plab/plab/sliver"
)

// The parts of an OpenAPI 3.1 document these tests read. (plc's
// openapi_test.go reads the same parts of PLC's document.)
type (
	oaDoc struct {
		OpenAPI    string                                `json:"openapi"`
		Security   []map[string][]string                 `json:"security"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			SecuritySchemes map[string]json.RawMessage `json:"securitySchemes"`
			Parameters      map[string]*oaParameter    `json:"parameters"`
			Responses       map[string]*oaResponse     `json:"responses"`
			Schemas         map[string]*oaSchema       `json:"schemas"`
		} `json:"components"`
	}
	oaOperation struct {
		OperationID string                 `json:"operationId"`
		Summary     string                 `json:"summary"`
		Parameters  []*oaParameter         `json:"parameters"`
		Responses   map[string]*oaResponse `json:"responses"`
		Security    *[]map[string][]string `json:"security"`
	}
	oaParameter struct {
		Ref      string `json:"$ref"`
		Name     string `json:"name"`
		In       string `json:"in"`
		Required bool   `json:"required"`
	}
	oaResponse struct {
		Ref         string `json:"$ref"`
		Description string `json:"description"`
		Content     map[string]struct {
			Schema *oaSchema `json:"schema"`
		} `json:"content"`
	}
	oaSchema struct {
		Ref                  string               `json:"$ref"`
		Type                 string               `json:"type"`
		Format               string               `json:"format"`
		Enum                 []string             `json:"enum"`
		Properties           map[string]*oaSchema `json:"properties"`
		Required             []string             `json:"required"`
		Items                *oaSchema            `json:"items"`
		AdditionalProperties json.RawMessage      `json:"additionalProperties"`
	}
)

func loadOpenAPI(t *testing.T) *oaDoc {
	t.Helper()
	var doc oaDoc
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	return &doc
}

var oaMethods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}

// operations returns the document's operations by "METHOD /path".
func (doc *oaDoc) operations(t *testing.T) map[string]*oaOperation {
	t.Helper()
	out := map[string]*oaOperation{}
	for path, item := range doc.Paths {
		for key, raw := range item {
			if !oaMethods[key] {
				t.Errorf("path %s: key %q is not an operation; give parameters on each operation", path, key)
				continue
			}
			var op oaOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", key, path, err)
			}
			out[strings.ToUpper(key)+" "+path] = &op
		}
	}
	return out
}

// parameter resolves p, a parameter or a $ref to one (nil when it does not
// resolve; TestOpenAPIRefs reports that).
func (doc *oaDoc) parameter(p *oaParameter) *oaParameter {
	if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
		return doc.Components.Parameters[name]
	}
	return p
}

// signed says whether op requires the signature, as the document says.
func (doc *oaDoc) signed(op *oaOperation) bool {
	sec := doc.Security
	if op.Security != nil {
		sec = *op.Security
	}
	return len(sec) > 0
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
	doc := loadOpenAPI(t)
	ops := doc.operations(t)
	var listed, documented []string
	for _, r := range docRoutes(t) {
		listed = append(listed, r.key)
		op := ops[r.key]
		if op != nil && doc.signed(op) == r.public {
			t.Errorf("%s is %s in openapi.json but %s in API's doc comment", r.key, auth(doc.signed(op)), auth(!r.public))
		}
	}
	for k := range ops {
		documented = append(documented, k)
	}
	slices.Sort(listed)
	slices.Sort(documented)
	if diff := cmp.Diff(listed, documented); diff != "" {
		t.Errorf("API's doc comment (-) and openapi.json operations (+) differ:\n%s", diff)
	}
	if doc.Components.SecuritySchemes["signature"] == nil {
		t.Errorf("no security scheme signature")
	}
	if diff := cmp.Diff([]map[string][]string{{"signature": {}}}, doc.Security); diff != "" {
		t.Errorf("top-level security (-want +got):\n%s", diff)
	}

	pathParam := regexp.MustCompile(`\{([^}]+)\}`)
	ids := map[string]string{}
	for key, op := range ops {
		if op.Summary == "" {
			t.Errorf("%s: no summary", key)
		}
		if prev, dup := ids[op.OperationID]; dup || op.OperationID == "" {
			t.Errorf("%s: operationId %q is empty or also %s's", key, op.OperationID, prev)
		}
		ids[op.OperationID] = key

		_, path, _ := strings.Cut(key, " ")
		var want, got []string
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			want = append(want, m[1])
		}
		seen := map[string]bool{}
		for _, p := range op.Parameters {
			if p = doc.parameter(p); p == nil {
				continue // TestOpenAPIRefs reports it
			}
			if seen[p.In+" "+p.Name] {
				t.Errorf("%s: parameter %s %s given twice", key, p.In, p.Name)
			}
			seen[p.In+" "+p.Name] = true
			if p.In == "path" {
				got = append(got, p.Name)
				if !p.Required {
					t.Errorf("%s: path parameter %s not required", key, p.Name)
				}
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(want, got) {
			t.Errorf("%s: path parameters %v, want %v", key, got, want)
		}
		if signed := doc.signed(op); seen["header "+api.KeyHeader] != signed {
			t.Errorf("%s: signed %v, but has the %s header parameter %v; want both or neither", key, signed, api.KeyHeader, !signed)
		}

		var success []string
		for code := range op.Responses {
			if strings.HasPrefix(code, "2") {
				success = append(success, code)
			}
		}
		if len(success) != 1 || !slices.Contains([]string{"200", "201", "204"}, success[0]) {
			t.Errorf("%s: success responses %v, want one of 200, 201, 204", key, success)
		}
		if !strings.HasPrefix(path, "/v1/") {
			continue // Go's mux answers errors outside /v1 in plain text
		}
		if d := op.Responses["default"]; d == nil || d.Ref != "#/components/responses/Error" {
			t.Errorf("%s: default response %+v, want the shared Error", key, d)
		}
		if doc.signed(op) {
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
	doc := loadOpenAPI(t)
	want := codesByStatus()
	codeRef := regexp.MustCompile(`\b([a-z_]+):`)
	all := map[string]bool{}
	for _, codes := range want {
		for _, c := range codes {
			all[c] = true
		}
	}
	byStatus := map[string]string{} // status → response component
	for key, op := range doc.operations(t) {
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
	doc := loadOpenAPI(t)
	for name := range doc.Components.Schemas {
		if apiTypes[name] == nil {
			t.Errorf("schema %s has no Go type in apiTypes", name)
		}
	}
	for name, typ := range apiTypes {
		s := doc.Components.Schemas[name]
		if s == nil {
			t.Errorf("no schema %s for %s", name, typ)
			continue
		}
		checkStruct(t, doc, name, s, typ)
	}

	for _, tc := range []struct {
		schema, prop string
		want         []string
	}{
		{"Error", "code", []string{api.CodeNotFound, api.CodeConflict, api.CodeInvalid, api.CodeDenied, api.CodeExpired,
			api.CodeNoCapacity, api.CodeUnavailable, api.CodeUnauthenticated, api.CodeInternal}},
		// Manager.status: the backend's state, or missing.
		{"Sliver", "state", []string{string(sliver.Creating), string(sliver.Created), string(sliver.Running), string(sliver.Stopped), "missing"}},
	} {
		s := doc.Components.Schemas[tc.schema]
		if s != nil {
			s = s.Properties[tc.prop]
		}
		if s == nil {
			t.Errorf("no schema %s %s", tc.schema, tc.prop)
			continue
		}
		if diff := cmp.Diff(tc.want, s.Enum); diff != "" {
			t.Errorf("%s %s enum (-Go +openapi.json):\n%s", tc.schema, tc.prop, diff)
		}
	}
}

// jsonField is a struct field as encoding/json sees it.
type jsonField struct {
	typ      reflect.Type
	optional bool // omitempty or omitzero: left out when empty
}

// jsonFields returns the fields of struct type typ by JSON name.
func jsonFields(t *testing.T, typ reflect.Type) map[string]jsonField {
	t.Helper()
	out := map[string]jsonField{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Anonymous {
			t.Fatalf("%s.%s: embedded fields are not supported here", typ, f.Name)
		}
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		optional := false
		for o := range strings.SplitSeq(opts, ",") {
			optional = optional || o == "omitempty" || o == "omitzero"
		}
		out[name] = jsonField{typ: f.Type, optional: optional}
	}
	return out
}

var timeType = reflect.TypeFor[time.Time]()

// checkStruct checks the object schema s of struct type typ.
func checkStruct(t *testing.T, doc *oaDoc, where string, s *oaSchema, typ reflect.Type) {
	t.Helper()
	if typ.Kind() != reflect.Struct {
		t.Errorf("%s: Go type %s is not a struct", where, typ)
		return
	}
	if s.Type != "object" {
		t.Errorf("%s: type %q, want object", where, s.Type)
	}
	if string(s.AdditionalProperties) != "false" {
		t.Errorf("%s: additionalProperties %s, want false (the node refuses unknown fields and sends none)", where, s.AdditionalProperties)
	}
	fields := jsonFields(t, typ)
	var want, got, wantRequired []string
	for name, f := range fields {
		want = append(want, name)
		if !f.optional {
			wantRequired = append(wantRequired, name)
		}
	}
	for name := range s.Properties {
		got = append(got, name)
	}
	slices.Sort(want)
	slices.Sort(got)
	slices.Sort(wantRequired)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: properties differ from the JSON names of %s (-Go +openapi.json):\n%s", where, typ, diff)
	}
	if diff := cmp.Diff(wantRequired, slices.Sorted(slices.Values(s.Required))); diff != "" {
		t.Errorf("%s: required differs from the fields of %s without omitempty or omitzero (-Go +openapi.json):\n%s", where, typ, diff)
	}
	for name, f := range fields {
		if p := s.Properties[name]; p != nil {
			checkType(t, doc, where+"."+name, p, f.typ)
		}
	}
}

// checkType checks that s describes values of Go type typ, other than a
// struct's object schema (a struct is a $ref to its own schema).
func checkType(t *testing.T, doc *oaDoc, where string, s *oaSchema, typ reflect.Type) {
	t.Helper()
	if s == nil {
		t.Errorf("%s: no schema for %s", where, typ)
		return
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	isStruct := typ.Kind() == reflect.Struct && typ != timeType
	if s.Ref != "" {
		name, _ := strings.CutPrefix(s.Ref, "#/components/schemas/")
		target := doc.Components.Schemas[name]
		switch {
		case target == nil:
			t.Errorf("%s: $ref %s is not a schema", where, s.Ref)
		case isStruct && apiTypes[name] != typ:
			t.Errorf("%s: $ref %s describes %v, want %s", where, s.Ref, apiTypes[name], typ)
		case !isStruct:
			checkType(t, doc, where, target, typ)
		}
		return
	}
	if isStruct {
		t.Errorf("%s: inline schema for %s; use a $ref to its schema", where, typ)
		return
	}
	var wantType, wantFormat string
	switch k := typ.Kind(); {
	case typ == timeType:
		wantType, wantFormat = "string", "date-time"
	case k == reflect.String:
		wantType, wantFormat = "string", s.Format // the document's to choose
	case k == reflect.Bool:
		wantType = "boolean"
	case k == reflect.Int64:
		wantType, wantFormat = "integer", "int64"
	case k == reflect.Int:
		wantType = "integer"
	case k == reflect.Slice:
		wantType = "array"
		checkType(t, doc, where+"[]", s.Items, typ.Elem())
	default:
		t.Errorf("%s: no rule for Go type %s; add one to checkType", where, typ)
		return
	}
	if s.Type != wantType || s.Format != wantFormat {
		t.Errorf("%s: type %q format %q, want %q %q for %s", where, s.Type, s.Format, wantType, wantFormat, typ)
	}
}

// TestOpenAPIRefs: every $ref points at a component that exists, and
// every component is used.
func TestOpenAPIRefs(t *testing.T) {
	var root any
	if err := json.Unmarshal(openAPIDoc, &root); err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"]; ok {
				s, _ := ref.(string)
				if err := resolve(root, s); err != nil {
					t.Errorf("%s: $ref %q: %v", where, s, err)
				}
				used[s] = true
			}
			for k, x := range v {
				walk(where+"/"+k, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s/%d", where, i), x)
			}
		}
	}
	walk("#", root)
	components, _ := root.(map[string]any)["components"].(map[string]any)
	for _, kind := range []string{"schemas", "parameters", "responses"} {
		m, _ := components[kind].(map[string]any)
		for name := range m {
			if ref := "#/components/" + kind + "/" + name; !used[ref] {
				t.Errorf("%s is never used", ref)
			}
		}
	}
}

// resolve checks that ref names a component: #/components/KIND/NAME.
func resolve(root any, ref string) error {
	rest, ok := strings.CutPrefix(ref, "#/components/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 2 {
		return fmt.Errorf("want #/components/KIND/NAME")
	}
	v := root.(map[string]any)["components"]
	for _, p := range parts {
		m, ok := v.(map[string]any)
		if !ok || m[p] == nil {
			return fmt.Errorf("no %s", p)
		}
		v = m[p]
	}
	return nil
}

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
		req, err := http.NewRequestWithContext(t.Context(), method, w.node.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	t.Run("document", func(t *testing.T) {
		resp, body := get(t, "GET", "/v1/openapi.json")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/openapi.json unsigned = %d %s, want 200", resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
		if !bytes.Equal(body, openAPIDoc) {
			t.Errorf("served document (%d bytes) differs from the embedded openapi.json (%d bytes)", len(body), len(openAPIDoc))
		}
		var doc struct {
			OpenAPI string `json:"openapi"`
		}
		public := &api.Client{BaseURL: w.node.url, HTTP: hc}
		if err := public.Do(t.Context(), "GET", "/v1/openapi.json", nil, &doc); err != nil || doc.OpenAPI != "3.1.0" {
			t.Errorf("api.Client GET /v1/openapi.json = %+v, %v; want openapi 3.1.0", doc, err)
		}
	})

	t.Run("routes", func(t *testing.T) {
		doc := loadOpenAPI(t)
		ops := doc.operations(t)
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
				case doc.signed(op):
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
