package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/plab/plab/errdefs"
)

// Created marks an answer given with 201 Created (Reply).
type Created struct{ V any }

// Reply writes a server's answer: v as JSON (200, or 201 when it is a
// Created, or 204 when nil).
func Reply(w http.ResponseWriter, v any) {
	status := http.StatusOK
	if c, ok := v.(Created); ok {
		status, v = http.StatusCreated, c.V
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, status, v)
}

// Fail writes err as an Error with the status of its kind (status, when
// not zero, overrides it; code, when not empty, too). An error of no known
// kind is logged with its cause and answered "internal error; the <who>
// log has the cause"; a refusal is logged at info level.
func Fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, who string, err error, status int, code string) {
	if status == 0 {
		status = errdefs.HTTPStatus(err)
	}
	if code == "" {
		code = CodeOf(err)
	}
	msg := err.Error()
	if code == CodeInternal {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error; the " + who + " log has the cause"
	} else {
		log.Info("request refused", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	writeJSON(w, status, Error{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Document serves doc (a JSON document such as an OpenAPI description) as
// it is, byte for byte.
func Document(doc []byte) http.HandlerFunc {
	length := strconv.Itoa(len(doc))
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", length)
		_, _ = w.Write(doc)
	}
}
