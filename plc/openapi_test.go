package plc

import (
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/plab/plab/api"
	"github.com/plab/plab/internal/openapitest"
)

// TestOpenAPIRoutes: the document has exactly the operations of the route
// table, each with a summary, its path parameters, one success response
// and the shared error response, and the security its route's auth says.
func TestOpenAPIRoutes(t *testing.T) {
	doc := openapitest.Load(t, openAPIDoc)
	ops := doc.Operations(t)
	routes := Routes()
	slices.Sort(routes)
	if diff := cmp.Diff(routes, slices.Sorted(maps.Keys(ops))); diff != "" {
		t.Errorf("Routes() (-) and openapi.json operations (+) differ:\n%s", diff)
	}
	openapitest.CheckOperations(t, doc, ops)

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
	for key, op := range ops {
		if d := op.Responses["default"]; d == nil || d.Ref != "#/components/responses/Error" {
			t.Errorf("%s: default response %+v, want the shared Error", key, d)
		}
		if a, ok := auth[key]; ok {
			if diff := cmp.Diff(wantSecurity[a], doc.SecurityFor(op)); diff != "" {
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
// writes it: the same property names as the JSON tags, matching types, no
// other properties, and required only fields always written (the schemas
// are also request bodies, whose missing fields PLC fills in); and the enums
// list api's constants.
func TestOpenAPISchemas(t *testing.T) {
	doc := openapitest.Load(t, openAPIDoc)
	openapitest.CheckSchemas(t, doc, apiTypes, openapitest.SomeRequired)
	openapitest.CheckEnum(t, doc, "Error", "code", []string{api.CodeNotFound, api.CodeConflict, api.CodeInvalid, api.CodeDenied,
		api.CodeExpired, api.CodeNoCapacity, api.CodeUnavailable, api.CodeUnauthenticated, api.CodeInternal})
	openapitest.CheckEnum(t, doc, "BootState", "", []string{api.BootStateBoot, api.BootStateSafeboot, api.BootStateReinstall, api.BootStateDisabled})
	openapitest.CheckEnum(t, doc, "Slice", "instantiation", []string{api.InstantiationDirect, api.InstantiationDelegated})
}

// TestOpenAPIRefs: every $ref points at a component that exists, and
// every component is used.
func TestOpenAPIRefs(t *testing.T) { openapitest.CheckRefs(t, openAPIDoc) }

// TestOpenAPIServed: a real PLC serves the embedded document, byte for
// byte, to anyone, and api.Client reads it.
func TestOpenAPIServed(t *testing.T) {
	w := newWorld(t)
	hc := w.admin.HTTP
	openapitest.CheckServed(t, hc, w.url, openAPIDoc, &api.Client{BaseURL: w.url, HTTP: hc})
}
