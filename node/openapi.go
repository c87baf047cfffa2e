package node

import (
	_ "embed"

	"github.com/plab/plab/api"
)

// openAPIDoc is the OpenAPI 3.1 description of the node API, written by
// hand next to API.Handler; openapi_test.go holds it to the handler, to the
// route list in API's doc comment and to the types of package api.
//
//go:embed openapi.json
var openAPIDoc []byte

// serveOpenAPI answers GET /v1/openapi.json with openAPIDoc as it is
// embedded.
var serveOpenAPI = api.Document(openAPIDoc)
