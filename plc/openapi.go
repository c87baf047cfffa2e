package plc

import (
	_ "embed"
	"net/http"
	"strconv"
)

// openAPIDoc is the OpenAPI 3.1 description of the API, written by hand
// next to the route table; openapi_test.go holds it to table() and to the
// types of package api.
//
//go:embed openapi.json
var openAPIDoc []byte

// serveOpenAPI answers GET /v1/openapi.json with openAPIDoc as it is
// embedded. It is a plain handler, not a public(…) one: serve would
// re-encode the document.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(openAPIDoc)))
	_, _ = w.Write(openAPIDoc)
}
