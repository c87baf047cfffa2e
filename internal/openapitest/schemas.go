package openapitest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Required says how much of a struct's fields its schema's required lists.
// Either way it lists only properties, and only fields encoding/json always
// writes: those without omitempty or omitzero.
type Required int

const (
	// AllRequired: required lists every field encoding/json always writes,
	// for a document whose schemas describe the types as encoding/json
	// writes them.
	AllRequired Required = iota
	// SomeRequired: required may leave out fields encoding/json always
	// writes, for a document whose schemas are also request bodies whose
	// missing fields the server fills in.
	SomeRequired
)

// CheckSchemas checks d's schemas against types, the Go type each schema
// describes by name: every schema has a type and every type a schema; a
// struct's schema is an object of exactly the struct's JSON names, with no
// additionalProperties, required as req says, and each property describes
// its field's type; any other type's schema describes it as encoding/json
// writes it. Within a schema, a struct is a $ref to its own schema.
func CheckSchemas(t testing.TB, d *Doc, types map[string]reflect.Type, req Required) {
	t.Helper()
	for name := range d.Components.Schemas {
		if types[name] == nil {
			t.Errorf("schema %s has no Go type", name)
		}
	}
	c := &checker{t: t, doc: d, types: types, req: req}
	for name, typ := range types {
		s := d.Components.Schemas[name]
		if s == nil {
			t.Errorf("no schema %s for %s", name, typ)
			continue
		}
		if typ.Kind() == reflect.Struct && typ != timeType {
			c.checkStruct(name, s, typ)
		} else {
			c.checkType(name, s, typ)
		}
	}
}

// CheckEnum checks that schema's property prop (or, when prop is "", the
// schema itself) has the enum want, in its order.
func CheckEnum(t testing.TB, d *Doc, schema, prop string, want []string) {
	t.Helper()
	s := d.Components.Schemas[schema]
	if s != nil && prop != "" {
		s = s.Properties[prop]
	}
	if s == nil {
		t.Errorf("no schema %s %s", schema, prop)
		return
	}
	if !slices.Equal(want, s.Enum) {
		t.Errorf("%s %s: enum %q in openapi.json, want %q as in Go", schema, prop, s.Enum, want)
	}
}

// checker holds what checkStruct and checkType need.
type checker struct {
	t     testing.TB
	doc   *Doc
	types map[string]reflect.Type
	req   Required
}

// jsonField is a struct field as encoding/json sees it.
type jsonField struct {
	typ      reflect.Type
	optional bool // omitempty or omitzero: left out when empty
}

// jsonFields returns the fields of struct type typ by JSON name.
func (c *checker) jsonFields(typ reflect.Type) map[string]jsonField {
	c.t.Helper()
	out := map[string]jsonField{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Anonymous {
			c.t.Fatalf("%s.%s: embedded fields are not supported here", typ, f.Name)
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
func (c *checker) checkStruct(where string, s *Schema, typ reflect.Type) {
	c.t.Helper()
	if s.Type != "object" {
		c.t.Errorf("%s: type %q, want object", where, s.Type)
	}
	if string(s.AdditionalProperties) != "false" {
		c.t.Errorf("%s: additionalProperties %s, want false (the server refuses unknown fields and sends none)", where, s.AdditionalProperties)
	}
	fields := c.jsonFields(typ)
	var names, always []string
	for name, f := range fields {
		names = append(names, name)
		if !f.optional {
			always = append(always, name)
		}
	}
	var props []string
	for name := range s.Properties {
		props = append(props, name)
	}
	if d := setDiff(names, props); d != "" {
		c.t.Errorf("%s: properties differ from the JSON names of %s: %s", where, typ, d)
	}
	for _, r := range s.Required {
		switch f, ok := fields[r]; {
		case s.Properties[r] == nil:
			c.t.Errorf("%s: required %q is not a property", where, r)
		case ok && f.optional:
			c.t.Errorf("%s: required %q is a field of %s with omitempty or omitzero, which encoding/json may leave out", where, r, typ)
		}
	}
	if c.req == AllRequired {
		if d := setDiff(always, s.Required); d != "" {
			c.t.Errorf("%s: required differs from the fields of %s without omitempty or omitzero: %s", where, typ, d)
		}
	}
	for name, f := range fields {
		if p := s.Properties[name]; p != nil {
			c.checkType(where+"."+name, p, f.typ)
		}
	}
}

// setDiff describes how the list got differs from the set want ("" when
// it does not): what it lacks, and what it has besides or twice.
func setDiff(want, got []string) string {
	var missing, extra []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g] || !slices.Contains(want, g) {
			extra = append(extra, g)
		}
		seen[g] = true
	}
	slices.Sort(missing)
	slices.Sort(extra)
	var out []string
	if len(missing) > 0 {
		out = append(out, fmt.Sprintf("openapi.json lacks %q", missing))
	}
	if len(extra) > 0 {
		out = append(out, fmt.Sprintf("openapi.json has besides or twice %q", extra))
	}
	return strings.Join(out, "; ")
}

// checkType checks that s describes values of Go type typ, other than a
// struct's object schema (a struct is a $ref to its own schema).
func (c *checker) checkType(where string, s *Schema, typ reflect.Type) {
	c.t.Helper()
	if s == nil {
		c.t.Errorf("%s: no schema for %s", where, typ)
		return
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	isStruct := typ.Kind() == reflect.Struct && typ != timeType
	if s.Ref != "" {
		name, _ := strings.CutPrefix(s.Ref, "#/components/schemas/")
		target := c.doc.Components.Schemas[name]
		switch {
		case target == nil:
			c.t.Errorf("%s: $ref %s is not a schema", where, s.Ref)
		case isStruct && c.types[name] != typ:
			c.t.Errorf("%s: $ref %s describes %v, want %s", where, s.Ref, c.types[name], typ)
		case !isStruct:
			c.checkType(where, target, typ)
		}
		return
	}
	if isStruct {
		c.t.Errorf("%s: inline schema for %s; use a $ref to its schema", where, typ)
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
		c.checkType(where+"[]", s.Items, typ.Elem())
	case k == reflect.Map && typ.Key().Kind() == reflect.String:
		wantType = "object"
		var elem *Schema
		if err := json.Unmarshal(s.AdditionalProperties, &elem); err != nil {
			c.t.Errorf("%s: additionalProperties %s, want the schema of %s", where, s.AdditionalProperties, typ.Elem())
		} else {
			c.checkType(where+"{}", elem, typ.Elem())
		}
	default:
		c.t.Errorf("%s: no rule for Go type %s; add one to checkType", where, typ)
		return
	}
	if s.Type != wantType || s.Format != wantFormat {
		c.t.Errorf("%s: type %q format %q, want %q %q for %s", where, s.Type, s.Format, wantType, wantFormat, typ)
	}
}
