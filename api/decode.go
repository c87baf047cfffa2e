package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/plab/plab/errdefs"
)

// DecodeJSON reads one JSON object from body into v strictly: at most max
// bytes, no unknown fields, nothing after it. Its errors say what is wrong
// with the body and wrap errdefs.ErrInvalid.
func DecodeJSON(body io.Reader, max int64, v any) error {
	data, err := io.ReadAll(io.LimitReader(body, max+1))
	if err != nil {
		return fmt.Errorf("read request body: %w: %w", err, errdefs.ErrInvalid)
	}
	if int64(len(data)) > max {
		return fmt.Errorf("request body over %d bytes: %w", max, errdefs.ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %s: %w", jsonProblem(err), errdefs.ErrInvalid)
	}
	if dec.More() {
		return fmt.Errorf("request body: data after the JSON object: %w", errdefs.ErrInvalid)
	}
	return nil
}

func jsonProblem(err error) string {
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &ute):
		return fmt.Sprintf("field %q should be a %s", ute.Field, ute.Type)
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.EOF):
		return "empty; send a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: it ends too early"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "not the expected JSON object"
}
