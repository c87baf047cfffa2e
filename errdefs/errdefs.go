// Package errdefs defines the few kinds of error every plab package returns,
// and the one place where a kind maps to an HTTP status.
//
// Errors are wrapped with context (fmt.Errorf("create sliver %s: %w", name,
// errdefs.ErrConflict)) and tested with errors.Is; nothing matches error
// strings.
package errdefs

import (
	"errors"
	"net/http"
)

// The error kinds. Each wraps a short message for the log; the message the
// user sees is the wrapping error's text, which says what to do next.
var (
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the object exists already, or is in a state that forbids
	// the operation.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request itself is malformed or out of range.
	ErrInvalid = errors.New("invalid argument")
	// ErrDenied: the caller is not allowed to do this.
	ErrDenied = errors.New("permission denied")
	// ErrExpired: a ticket, lease or credential is outside its validity window.
	ErrExpired = errors.New("expired")
	// ErrNoCapacity: the node or site cannot admit more of a resource.
	ErrNoCapacity = errors.New("no capacity")
	// ErrUnavailable: a prerequisite is missing (a binary, a kernel feature,
	// root privileges) or a peer cannot be reached.
	ErrUnavailable = errors.New("unavailable")
)

// HTTPStatus maps an error to the HTTP status the APIs answer with.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrDenied):
		return http.StatusForbidden
	case errors.Is(err, ErrExpired):
		return http.StatusGone
	case errors.Is(err, ErrNoCapacity):
		// The state of the node or site, not the request, is at fault;
		// the body's code (no_capacity) tells it from other conflicts.
		return http.StatusConflict
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Kind returns the sentinel err wraps, or nil when it wraps none.
func Kind(err error) error {
	for _, k := range []error{ErrNotFound, ErrConflict, ErrInvalid, ErrDenied, ErrExpired, ErrNoCapacity, ErrUnavailable} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}
