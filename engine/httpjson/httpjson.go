// Package httpjson writes the JSON answers of the relay's HTTP endpoints:
// a value with a status code, and the XRPC error shape
// {"error":"<Name>","message":"<text>"} every endpoint (public API, admin
// API, firehose and splitter) answers a failed request with.
//
// The bytes are part of what clients see, so they are fixed here once:
// compact JSON followed by one newline, Content-Type
// "application/json; charset=utf-8" and an exact Content-Length. The
// functions hold no state and are safe for concurrent use.
package httpjson

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// errorBody is the XRPC error shape. Message is left out when empty, which
// the lexicons allow; every caller in this repository sends one.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

// encodingFailed answers in place of a value that does not encode. Only the
// callers' own response structs reach Write, and they always encode.
const encodingFailed = `{"error":"InternalServerError","message":"encoding response"}`

// Error writes the XRPC error name with message msg and status code, and
// returns code (handlers that count answers by status return it).
func Error(w http.ResponseWriter, code int, name, msg string) int {
	return Write(w, code, errorBody{Error: name, Message: msg})
}

// Write writes v as the JSON body with status code, and returns the code
// written: 500 if v does not encode.
func Write(w http.ResponseWriter, code int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(encodingFailed)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
	return code
}
