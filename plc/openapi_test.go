package plc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/api"
)

// The parts of an OpenAPI 3.1 document these tests read.
type (
	oaDoc struct {
		OpenAPI    string                                `json:"openapi"`
		Security   []map[string][]string                 `json:"security"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			SecuritySchemes map[string]json.RawMessage `json:"securitySchemes"`
			Parameters      map[string]*oaParameter    `json:"parameters"`
			Schemas         map[string]*oaSchema       `json:"schemas"`
		} `json:"components"`
	}
	oaOperation struct {
		OperationID string                     `json:"operationId"`
		Summary     string                     `json:"summary"`
		Parameters  []*oaParameter             `json:"parameters"`
		Responses   map[string]json.RawMessage `json:"responses"`
		Security    *[]map[string][]string     `json:"security"`
	}
	oaParameter struct {
		Ref      string `json:"$ref"`
		Name     string `json:"name"`
		In       string `json:"in"`
		Required bool   `json:"required"`
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

// TestOpenAPIRoutes: the document has exactly the operations of the route
// table, each with a summary, its path parameters, one success response
// and the shared error response, and the security its route's auth says.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	ops := doc.operations(t)
	routes := Routes()
	documented := make([]string, 0, len(ops))
	for k := range ops {
		documented = append(documented, k)
	}
	slices.Sort(routes)
	slices.Sort(documented)
	if diff := cmp.Diff(routes, documented); diff != "" {
		t.Errorf("Routes() (-) and openapi.json operations (+) differ:\n%s", diff)
	}

	auth := map[string]string{}
	for _, r := range (&PLC{}).table() {
		auth[r.method+" "+r.path] = r.auth
	}
	wantSecurity := map[string][]map[string][]string{
		"user":   {{"signature": {}}},
		"node":   {{"nodeCert": {}}},
		"public": {},
	}
	for _, name := range []string{"signature", "nodeCert"} {
		if doc.Components.SecuritySchemes[name] == nil {
			t.Errorf("no security scheme %q", name)
		}
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
			if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
				p = doc.Components.Parameters[name]
			}
			if p == nil {
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

		var success []string
		for code := range op.Responses {
			if strings.HasPrefix(code, "2") {
				success = append(success, code)
			}
		}
		if len(success) != 1 || !slices.Contains([]string{"200", "201", "204"}, success[0]) {
			t.Errorf("%s: success responses %v, want one of 200, 201, 204", key, success)
		}
		var def struct {
			Ref string `json:"$ref"`
		}
		if err := json.Unmarshal(op.Responses["default"], &def); err != nil || def.Ref != "#/components/responses/Error" {
			t.Errorf("%s: default response %s, want the shared Error", key, op.Responses["default"])
		}

		sec := doc.Security
		if op.Security != nil {
			sec = *op.Security
		}
		if a, ok := auth[key]; ok {
			if diff := cmp.Diff(wantSecurity[a], sec); diff != "" {
				t.Errorf("%s is %s: security (-want +got):\n%s", key, a, diff)
			}
		}
	}
}

// apiTypes maps the document's schemas to the Go types they describe.
var apiTypes = map[string]reflect.Type{
	"Error":         reflect.TypeFor[api.Error](),
	"BootState":     reflect.TypeFor[string](),
	"Site":          reflect.TypeFor[api.Site](),
	"Person":        reflect.TypeFor[api.Person](),
	"Key":           reflect.TypeFor[api.Key](),
	"Node":          reflect.TypeFor[api.Node](),
	"NodeGroup":     reflect.TypeFor[api.NodeGroup](),
	"Slice":         reflect.TypeFor[api.Slice](),
	"Attribute":     reflect.TypeFor[api.Attribute](),
	"Resources":     reflect.TypeFor[api.Resources](),
	"Renewal":       reflect.TypeFor[api.Renewal](),
	"Whoami":        reflect.TypeFor[api.Whoami](),
	"Event":         reflect.TypeFor[api.Event](),
	"CA":            reflect.TypeFor[api.CA](),
	"TicketRequest": reflect.TypeFor[api.TicketRequest](),
	"IssuedTicket":  reflect.TypeFor[api.IssuedTicket](),
	"Tickets":       reflect.TypeFor[api.Tickets](),
	"Ad":            reflect.TypeFor[api.Ad](),
	"EnrollToken":   reflect.TypeFor[api.EnrollToken](),
	"EnrollRequest": reflect.TypeFor[api.EnrollRequest](),
	"Enrollment":    reflect.TypeFor[api.Enrollment](),
	"Report":        reflect.TypeFor[api.Report](),
	"SliceUsage":    reflect.TypeFor[api.SliceUsage](),
	"Sync":          reflect.TypeFor[api.Sync](),
	"NodeSlice":     reflect.TypeFor[api.NodeSlice](),
	"SiteUpdate":    reflect.TypeFor[api.SiteUpdate](),
	"PersonUpdate":  reflect.TypeFor[api.PersonUpdate](),
	"NodeUpdate":    reflect.TypeFor[api.NodeUpdate](),
	"SliceUpdate":   reflect.TypeFor[api.SliceUpdate](),
	"SiteList":      reflect.TypeFor[api.List[api.Site]](),
	"PersonList":    reflect.TypeFor[api.List[api.Person]](),
	"NodeList":      reflect.TypeFor[api.List[api.Node]](),
	"NodeGroupList": reflect.TypeFor[api.List[api.NodeGroup]](),
	"SliceList":     reflect.TypeFor[api.List[api.Slice]](),
	"EventList":     reflect.TypeFor[api.List[api.Event]](),
	"AdList":        reflect.TypeFor[api.List[api.Ad]](),
	"KeyList":       reflect.TypeFor[api.List[api.Key]](),
	"AttributeList": reflect.TypeFor[api.List[api.Attribute]](),
}

// TestOpenAPISchemas: every schema describes its Go type as encoding/json
// writes it: the same property names as the JSON tags, matching types,
// and no other properties; and the enums list api's constants.
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
		if typ.Kind() == reflect.Struct {
			checkStruct(t, doc, name, s, typ)
		} else {
			checkType(t, doc, name, s, typ)
		}
	}

	for _, tc := range []struct {
		schema, prop string
		want         []string
	}{
		{"Error", "code", []string{api.CodeNotFound, api.CodeConflict, api.CodeInvalid, api.CodeDenied, api.CodeExpired,
			api.CodeNoCapacity, api.CodeUnavailable, api.CodeUnauthenticated, api.CodeInternal}},
		{"BootState", "", []string{api.BootStateBoot, api.BootStateSafeboot, api.BootStateReinstall, api.BootStateDisabled}},
		{"Slice", "instantiation", []string{api.InstantiationDirect, api.InstantiationDelegated}},
	} {
		s := doc.Components.Schemas[tc.schema]
		if s != nil && tc.prop != "" {
			s = s.Properties[tc.prop]
		}
		if s == nil {
			t.Errorf("no schema %s %s", tc.schema, tc.prop)
			continue
		}
		if diff := cmp.Diff(tc.want, s.Enum); diff != "" {
			t.Errorf("%s %s enum (-api +openapi.json):\n%s", tc.schema, tc.prop, diff)
		}
	}
}

// jsonFields returns the fields of struct type typ by JSON name.
func jsonFields(t *testing.T, typ reflect.Type) map[string]reflect.Type {
	t.Helper()
	out := map[string]reflect.Type{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Anonymous {
			t.Fatalf("%s.%s: embedded fields are not supported here", typ, f.Name)
		}
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

var timeType = reflect.TypeFor[time.Time]()

// checkStruct checks the object schema s of struct type typ.
func checkStruct(t *testing.T, doc *oaDoc, where string, s *oaSchema, typ reflect.Type) {
	t.Helper()
	if s.Type != "object" {
		t.Errorf("%s: type %q, want object", where, s.Type)
	}
	if string(s.AdditionalProperties) != "false" {
		t.Errorf("%s: additionalProperties %s, want false (the server refuses unknown fields and sends none)", where, s.AdditionalProperties)
	}
	fields := jsonFields(t, typ)
	var want, got []string
	for name := range fields {
		want = append(want, name)
	}
	for name := range s.Properties {
		got = append(got, name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: properties differ from the JSON names of %s (-Go +openapi.json):\n%s", where, typ, diff)
	}
	for name, ft := range fields {
		if p := s.Properties[name]; p != nil {
			checkType(t, doc, where+"."+name, p, ft)
		}
	}
	for _, r := range s.Required {
		if s.Properties[r] == nil {
			t.Errorf("%s: required %q is not a property", where, r)
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
	case k == reflect.Slice && typ.Elem().Kind() == reflect.Uint8:
		wantType, wantFormat = "string", "byte"
	case k == reflect.String:
		wantType, wantFormat = "string", s.Format // email, uri… are the document's to choose
	case k == reflect.Bool:
		wantType = "boolean"
	case k == reflect.Int64:
		wantType, wantFormat = "integer", "int64"
	case k == reflect.Int:
		wantType = "integer"
	case k == reflect.Float64:
		wantType, wantFormat = "number", "double"
	case k == reflect.Slice:
		wantType = "array"
		checkType(t, doc, where+"[]", s.Items, typ.Elem())
	case k == reflect.Map && typ.Key().Kind() == reflect.String:
		wantType = "object"
		var elem *oaSchema
		if err := json.Unmarshal(s.AdditionalProperties, &elem); err != nil {
			t.Errorf("%s: additionalProperties %s, want the schema of %s", where, s.AdditionalProperties, typ.Elem())
		} else {
			checkType(t, doc, where+"{}", elem, typ.Elem())
		}
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
		p = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok || m[p] == nil {
			return fmt.Errorf("no %s", p)
		}
		v = m[p]
	}
	return nil
}

// TestOpenAPIServed: a real PLC serves the embedded document, byte for
// byte, to anyone.
func TestOpenAPIServed(t *testing.T) {
	w := newWorld(t)
	public := &api.Client{BaseURL: w.url, HTTP: w.admin.HTTP}
	resp, err := public.HTTP.Get(public.BaseURL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
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
	if err := public.Do(t.Context(), "GET", "/v1/openapi.json", nil, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Errorf("api.Client GET /v1/openapi.json = %+v, %v; want openapi 3.1.0", doc, err)
	}
}
