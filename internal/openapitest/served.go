package openapitest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
)

// Path is where plab's APIs serve their document.
const Path = "/v1/openapi.json"

// Client is the part of api.Client that CheckServed uses.
type Client interface {
	Do(ctx context.Context, method, path string, in, out any) error
}

// CheckServed checks that an unsigned GET of baseURL+Path through hc
// answers 200 with the document raw, byte for byte, as application/json;
// and that c, a client of the same server, reads it as OpenAPI 3.1.0.
func CheckServed(t testing.TB, hc *http.Client, baseURL string, raw []byte, c Client) {
	t.Helper()
	resp, body := Request(t, hc, "GET", baseURL+Path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s unsigned = %d %s, want 200", Path, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if !bytes.Equal(body, raw) {
		t.Errorf("served document (%d bytes) differs from the embedded openapi.json (%d bytes)", len(body), len(raw))
	}
	var d struct {
		OpenAPI string `json:"openapi"`
	}
	if err := c.Do(t.Context(), "GET", Path, nil, &d); err != nil || d.OpenAPI != "3.1.0" {
		t.Errorf("client GET %s = %+v, %v; want openapi 3.1.0", Path, d, err)
	}
}

// Request sends an unsigned request with no body through hc and returns
// the response with its body read.
func Request(t testing.TB, hc *http.Client, method, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
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
