package plc

import (
	_ "embed"

	"github.com/plab/plab/api"
)

// openAPIDoc is the OpenAPI 3.1 description of the API, written by hand
// next to the route table; openapi_test.go holds it to table() and to the
// types of package api.
//
//go:embed openapi.json
var openAPIDoc []byte

// serveOpenAPI answers GET /v1/openapi.json with openAPIDoc as it is
// embedded.
var serveOpenAPI = api.Document(openAPIDoc)
