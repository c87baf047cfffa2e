package openapitest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps the errors a check reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// errorsOf returns the errors check reports, in its own goroutine so that
// a Fatal ends only the check.
func errorsOf(t *testing.T, check func(t testing.TB)) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r)
	}()
	<-done
	return r.errs
}

// wantErrors checks that errs are one each for the substrings want.
func wantErrors(t *testing.T, errs []string, want ...string) {
	t.Helper()
	if len(errs) != len(want) {
		t.Errorf("got %d errors, want %d (%q):\n%s", len(errs), len(want), want, strings.Join(errs, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, w) }) {
			t.Errorf("no error says %q; got:\n%s", w, strings.Join(errs, "\n"))
		}
	}
}

type item struct {
	Name    string            `json:"name"`
	Size    int64             `json:"size,omitempty"`
	When    time.Time         `json:"when,omitzero"`
	Tags    map[string]string `json:"tags"`
	Sub     *sub              `json:"sub,omitempty"`
	Ignored string            `json:"-"`
}

type sub struct {
	Ok bool `json:"ok"`
}

var types = map[string]reflect.Type{
	"Item": reflect.TypeFor[item](),
	"Sub":  reflect.TypeFor[sub](),
	"Kind": reflect.TypeFor[string](),
}

// doc returns a document with the given components' schemas.
func doc(schemas string) []byte {
	return []byte(`{"openapi": "3.1.0", "paths": {}, "components": {"schemas": {` + schemas + `}}}`)
}

const (
	goodSub  = `"Sub": {"type": "object", "additionalProperties": false, "required": ["ok"], "properties": {"ok": {"type": "boolean"}}}`
	goodKind = `"Kind": {"type": "string", "enum": ["a", "b"]}`
)

func TestCheckSchemas(t *testing.T) {
	for _, tc := range []struct {
		name    string
		item    string
		req     Required
		wantErr []string
	}{
		{"good", `{"type": "object", "additionalProperties": false, "required": ["name", "tags"], "properties": {
			"name": {"type": "string"}, "size": {"type": "integer", "format": "int64"},
			"when": {"type": "string", "format": "date-time"}, "tags": {"type": "object", "additionalProperties": {"type": "string"}},
			"sub": {"$ref": "#/components/schemas/Sub"}}}`, AllRequired, nil},
		{"some required", `{"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
			"name": {"type": "string"}, "size": {"type": "integer", "format": "int64"},
			"when": {"type": "string", "format": "date-time"}, "tags": {"type": "object", "additionalProperties": {"type": "string"}},
			"sub": {"$ref": "#/components/schemas/Sub"}}}`, SomeRequired, nil},
		{"all required wanted", `{"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
			"name": {"type": "string"}, "size": {"type": "integer", "format": "int64"},
			"when": {"type": "string", "format": "date-time"}, "tags": {"type": "object", "additionalProperties": {"type": "string"}},
			"sub": {"$ref": "#/components/schemas/Sub"}}}`, AllRequired, []string{`Item: required differs from the fields of openapitest.item without omitempty or omitzero: openapi.json lacks ["tags"]`}},
		{"wrong properties and required", `{"type": "object", "additionalProperties": false, "required": ["name", "size", "nope", "tags", "tags"], "properties": {
			"name": {"type": "string"}, "size": {"type": "integer", "format": "int64"}, "nope": {"type": "string"},
			"when": {"type": "string", "format": "date-time"}, "tags": {"type": "object", "additionalProperties": {"type": "string"}}}}`, SomeRequired, []string{
			`Item: properties differ from the JSON names of openapitest.item: openapi.json lacks ["sub"]; openapi.json has besides or twice ["nope"]`,
			`Item: required "size" is a field of openapitest.item with omitempty or omitzero`,
		}},
		{"wrong types", `{"type": "array", "required": ["name", "tags"], "properties": {
			"name": {"type": "integer"}, "size": {"type": "integer"},
			"when": {"type": "string"}, "tags": {"type": "object"},
			"sub": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}`, AllRequired, []string{
			`Item: type "array", want object`,
			`Item: additionalProperties , want false`,
			`Item.name: type "integer" format "", want "string" ""`,
			`Item.size: type "integer" format "", want "integer" "int64"`,
			`Item.when: type "string" format "", want "string" "date-time"`,
			`Item.tags: additionalProperties , want the schema of string`,
			`Item.sub: inline schema for openapitest.sub; use a $ref to its schema`,
		}},
		{"wrong refs", `{"type": "object", "additionalProperties": false, "required": ["name", "tags"], "properties": {
			"name": {"$ref": "#/components/schemas/Kind"}, "size": {"type": "integer", "format": "int64"},
			"when": {"type": "string", "format": "date-time"}, "tags": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Gone"}},
			"sub": {"$ref": "#/components/schemas/Item"}}}`, AllRequired, []string{
			`Item.tags{}: $ref #/components/schemas/Gone is not a schema`,
			`Item.sub: $ref #/components/schemas/Item describes openapitest.item, want openapitest.sub`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Load(t, doc(`"Item": `+tc.item+`, `+goodSub+`, `+goodKind))
			wantErrors(t, errorsOf(t, func(t testing.TB) { CheckSchemas(t, d, types, tc.req) }), tc.wantErr...)
		})
	}

	t.Run("schemas and types", func(t *testing.T) {
		d := Load(t, doc(goodSub+`, "Extra": {"type": "string"}`))
		wantErrors(t, errorsOf(t, func(t testing.TB) { CheckSchemas(t, d, types, AllRequired) }),
			"schema Extra has no Go type", "no schema Item for openapitest.item", "no schema Kind for string")
	})
}

func TestCheckEnum(t *testing.T) {
	d := Load(t, doc(goodSub+`, `+goodKind))
	wantErrors(t, errorsOf(t, func(t testing.TB) {
		CheckEnum(t, d, "Kind", "", []string{"a", "b"})
		CheckEnum(t, d, "Kind", "", []string{"b", "a"})
		CheckEnum(t, d, "Sub", "ok", []string{"true"})
		CheckEnum(t, d, "Sub", "gone", nil)
	}), `Kind : enum ["a" "b"] in openapi.json, want ["b" "a"]`, `Sub ok: enum [] in openapi.json, want ["true"]`, "no schema Sub gone")
}

func TestCheckOperations(t *testing.T) {
	raw := []byte(`{"openapi": "3.1.0", "components": {"parameters": {"Name": {"name": "name", "in": "path", "required": true}}}, "paths": {
		"/v1/things/{name}": {
			"parameters": [],
			"get": {"operationId": "getThing", "summary": "Get.", "parameters": [{"$ref": "#/components/parameters/Name"}], "responses": {"200": {}}},
			"put": {"operationId": "getThing", "parameters": [{"name": "name", "in": "path"}], "responses": {"200": {}, "204": {}}},
			"delete": {"operationId": "deleteThing", "summary": "Delete.", "parameters": [{"name": "x", "in": "query"}, {"name": "x", "in": "query"}], "responses": {"202": {}}}
		}}}`)
	d := Load(t, raw)
	var ops map[string]*Operation
	wantErrors(t, errorsOf(t, func(t testing.TB) { ops = d.Operations(t) }), `path /v1/things/{name}: key "parameters" is not an operation`)
	wantErrors(t, errorsOf(t, func(t testing.TB) { CheckOperations(t, d, ops) }),
		"PUT /v1/things/{name}: no summary",
		`operationId "getThing" is empty or also`,
		"PUT /v1/things/{name}: path parameter name not required",
		"PUT /v1/things/{name}: success responses",
		"DELETE /v1/things/{name}: parameter query x given twice",
		"DELETE /v1/things/{name}: path parameters [], want [name]",
		"DELETE /v1/things/{name}: success responses [202]",
	)
	if !d.HasParameter(ops["GET /v1/things/{name}"], "path", "name") || d.HasParameter(ops["GET /v1/things/{name}"], "query", "name") {
		t.Errorf("HasParameter does not see GET's path parameter name, given as a $ref, or sees it in the query")
	}
	if got := d.SecurityFor(ops["GET /v1/things/{name}"]); got != nil {
		t.Errorf("SecurityFor(GET) = %v with no security anywhere, want nil", got)
	}
}

func TestCheckRefs(t *testing.T) {
	raw := []byte(`{"openapi": "3.1.0", "components": {
		"schemas": {"A": {"type": "string"}, "B": {"$ref": "#/components/schemas/A"}, "C/D": {"type": "string"}, "Unused": {"type": "string"}},
		"responses": {"Error": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/C~1D"}}}}}},
		"paths": {"/x": {"get": {"responses": {
			"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/B"}}}},
			"default": {"$ref": "#/components/responses/Error"},
			"404": {"$ref": "#/components/responses/Gone"},
			"500": {"$ref": "#/definitions/Error"}}}}}}`)
	wantErrors(t, errorsOf(t, func(t testing.TB) { CheckRefs(t, raw) }),
		`/get/responses/404: $ref "#/components/responses/Gone": no Gone`,
		`$ref "#/definitions/Error": want #/components/KIND/NAME`,
		"#/components/schemas/Unused is never used",
	)
}

// clientFunc is a Client; the real one, api.Client, is checked by PLC's and
// the node's tests.
type clientFunc func(ctx context.Context, method, path string, in, out any) error

func (f clientFunc) Do(ctx context.Context, method, path string, in, out any) error {
	return f(ctx, method, path, in, out)
}

func TestCheckServed(t *testing.T) {
	raw := doc("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/good" + Path:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(raw)
		case "/other" + Path:
			_, _ = w.Write(append(raw, '\n'))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	reads := clientFunc(func(ctx context.Context, method, path string, in, out any) error {
		if method != "GET" || path != Path {
			return fmt.Errorf("%s %s, want GET %s", method, path, Path)
		}
		return json.Unmarshal(raw, out)
	})
	fails := clientFunc(func(ctx context.Context, method, path string, in, out any) error { return errors.New("refused") })

	wantErrors(t, errorsOf(t, func(t testing.TB) { CheckServed(t, srv.Client(), srv.URL+"/good", raw, reads) }))
	wantErrors(t, errorsOf(t, func(t testing.TB) { CheckServed(t, srv.Client(), srv.URL+"/other", raw, fails) }),
		`Content-Type = "text/plain; charset=utf-8", want application/json`,
		fmt.Sprintf("served document (%d bytes) differs from the embedded openapi.json (%d bytes)", len(raw)+1, len(raw)),
		"client GET /v1/openapi.json = {OpenAPI:}, refused; want openapi 3.1.0")
	wantErrors(t, errorsOf(t, func(t testing.TB) { CheckServed(t, srv.Client(), srv.URL+"/gone", raw, reads) }), "unsigned = 404")
}
