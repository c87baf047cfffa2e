// Package openapitest checks a hand-written OpenAPI 3.1 document against
// the code it describes. It holds the parts of the document plab's tests
// read (Doc and the types under it) and the checks that PLC's and the
// node's API tests share: every operation well formed (CheckOperations),
// every schema matching the Go type as encoding/json writes it
// (CheckSchemas, CheckEnum), every $ref resolved and every component used
// (CheckRefs), and the document served as embedded (CheckServed). Which
// routes a document must have is left to each API's own test.
package openapitest

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The parts of an OpenAPI 3.1 document the checks read.
type (
	// Doc is an OpenAPI document.
	Doc struct {
		OpenAPI    string                                `json:"openapi"`
		Security   []map[string][]string                 `json:"security"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			SecuritySchemes map[string]json.RawMessage `json:"securitySchemes"`
			Parameters      map[string]*Parameter      `json:"parameters"`
			Responses       map[string]*Response       `json:"responses"`
			Schemas         map[string]*Schema         `json:"schemas"`
		} `json:"components"`
	}
	// Operation is a method of a path.
	Operation struct {
		OperationID string                 `json:"operationId"`
		Summary     string                 `json:"summary"`
		Parameters  []*Parameter           `json:"parameters"`
		Responses   map[string]*Response   `json:"responses"`
		Security    *[]map[string][]string `json:"security"`
	}
	// Parameter is an operation's parameter, or a $ref to one.
	Parameter struct {
		Ref      string `json:"$ref"`
		Name     string `json:"name"`
		In       string `json:"in"`
		Required bool   `json:"required"`
	}
	// Response is an operation's response, or a $ref to one.
	Response struct {
		Ref         string `json:"$ref"`
		Description string `json:"description"`
		Content     map[string]struct {
			Schema *Schema `json:"schema"`
		} `json:"content"`
	}
	// Schema is a JSON schema, or a $ref to one.
	Schema struct {
		Ref                  string             `json:"$ref"`
		Type                 string             `json:"type"`
		Format               string             `json:"format"`
		Enum                 []string           `json:"enum"`
		Properties           map[string]*Schema `json:"properties"`
		Required             []string           `json:"required"`
		Items                *Schema            `json:"items"`
		AdditionalProperties json.RawMessage    `json:"additionalProperties"`
	}
)

// Load decodes the document raw, which must be OpenAPI 3.1.0.
func Load(t testing.TB, raw []byte) *Doc {
	t.Helper()
	var d Doc
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if d.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", d.OpenAPI)
	}
	return &d
}

var methods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}

// Operations returns d's operations by "METHOD /path". A path's key other
// than a method is an error: parameters go on each operation.
func (d *Doc) Operations(t testing.TB) map[string]*Operation {
	t.Helper()
	out := map[string]*Operation{}
	for path, item := range d.Paths {
		for key, raw := range item {
			if !methods[key] {
				t.Errorf("path %s: key %q is not an operation; give parameters on each operation", path, key)
				continue
			}
			var op Operation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", key, path, err)
			}
			out[strings.ToUpper(key)+" "+path] = &op
		}
	}
	return out
}

// SecurityFor returns the security requirements of op: its own, or else the
// document's.
func (d *Doc) SecurityFor(op *Operation) []map[string][]string {
	if op.Security != nil {
		return *op.Security
	}
	return d.Security
}

// HasParameter reports whether op has the parameter name in in ("path",
// "query", "header"), given inline or as a $ref.
func (d *Doc) HasParameter(op *Operation, in, name string) bool {
	return slices.ContainsFunc(op.Parameters, func(p *Parameter) bool {
		p = d.parameter(p)
		return p != nil && p.In == in && p.Name == name
	})
}

// parameter resolves p, a parameter or a $ref to one (nil when it does not
// resolve; CheckRefs reports that).
func (d *Doc) parameter(p *Parameter) *Parameter {
	if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
		return d.Components.Parameters[name]
	}
	return p
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

// CheckOperations checks what every operation of ops (as Operations
// returns them) must have: a summary; an operationId no other operation
// has; exactly the path parameters its path names, each required, and no
// parameter given twice; and one success response, 200, 201 or 204.
func CheckOperations(t testing.TB, d *Doc, ops map[string]*Operation) {
	t.Helper()
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
			if p = d.parameter(p); p == nil {
				continue // CheckRefs reports it
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
	}
}
