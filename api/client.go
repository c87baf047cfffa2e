package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/plab/plab/errdefs"
)

// Client calls a plab API. Sign, when set, authenticates each request
// (cred/httpsig.Sign with the user's key); HTTP carries the TLS setup.
type Client struct {
	BaseURL string
	HTTP    *http.Client
	Sign    func(*http.Request) error
}

// ResponseError is an API error answer. It wraps the errdefs kind of its
// code, so errors.Is(err, errdefs.ErrNotFound) works on the client too.
type ResponseError struct {
	Status int
	Err    Error
}

func (e *ResponseError) Error() string { return e.Err.Message }

// Unwrap returns the kind of the error's code.
func (e *ResponseError) Unwrap() error {
	switch e.Err.Code {
	case CodeNotFound:
		return errdefs.ErrNotFound
	case CodeConflict:
		return errdefs.ErrConflict
	case CodeInvalid:
		return errdefs.ErrInvalid
	case CodeDenied, CodeUnauthenticated:
		return errdefs.ErrDenied
	case CodeExpired:
		return errdefs.ErrExpired
	case CodeNoCapacity:
		return errdefs.ErrNoCapacity
	case CodeUnavailable:
		return errdefs.ErrUnavailable
	}
	return nil
}

// FetchCA asks PLC at baseURL for its CA and ticket keys over TLS that is
// not verified: nothing in the answer may be trusted before its root is
// checked against a pin (ca.ParseRoot).
func FetchCA(ctx context.Context, baseURL string) (CA, error) {
	c := &Client{BaseURL: baseURL, HTTP: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}}} // #nosec: the caller checks the pin
	var info CA
	if err := c.Do(ctx, "GET", "/v1/ca", nil, &info); err != nil {
		return CA{}, fmt.Errorf("fetch PLC's CA from %s: %w", baseURL, err)
	}
	return info, nil
}

// Do sends in (JSON, when not nil) with method to path and decodes the
// answer into out (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Sign != nil {
		if err := c.Sign(req); err != nil {
			return err
		}
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w: %w", method, path, err, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		re := &ResponseError{Status: resp.StatusCode}
		if json.Unmarshal(data, &re.Err) != nil || re.Err.Code == "" {
			re.Err = Error{Code: CodeInternal, Message: fmt.Sprintf("%s %s: HTTP %d", method, path, resp.StatusCode)}
		}
		return re
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}
