package httpjson

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestBytes pins what a client receives: these bytes were written by each
// endpoint's own writer before they shared this one.
func TestBytes(t *testing.T) {
	f := func(write func(w http.ResponseWriter) int, wantCode int, wantBody string) {
		t.Helper()
		rec := httptest.NewRecorder()
		if code := write(rec); code != wantCode || rec.Code != wantCode {
			t.Errorf("code %d, recorded %d, want %d", code, rec.Code, wantCode)
		}
		if got := rec.Body.String(); got != wantBody {
			t.Errorf("body %q, want %q", got, wantBody)
		}
		h := rec.Header()
		if ct := h.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		if cl := h.Get("Content-Length"); cl != strconv.Itoa(len(wantBody)) {
			t.Errorf("Content-Length %q, body %d bytes", cl, len(wantBody))
		}
	}
	f(func(w http.ResponseWriter) int { return Error(w, 400, "InvalidRequest", "bad <cursor> & \"x\"") }, 400,
		`{"error":"InvalidRequest","message":"bad \u003ccursor\u003e \u0026 \"x\""}`+"\n")
	f(func(w http.ResponseWriter) int { return Error(w, 502, "UpstreamFailure", "") }, 502,
		`{"error":"UpstreamFailure"}`+"\n")
	f(func(w http.ResponseWriter) int { return Write(w, 200, map[string]bool{"success": true}) }, 200,
		`{"success":true}`+"\n")
	f(func(w http.ResponseWriter) int { return Write(w, 200, func() {}) }, 500, encodingFailed+"\n")
}
