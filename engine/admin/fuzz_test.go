package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAdminInput sends arbitrary bodies and query strings to every route
// with a valid token: nothing may panic, and every answer is JSON.
func FuzzAdminInput(f *testing.F) {
	for _, s := range [][2]string{
		{`{"host":"pds.example.com"}`, ""},
		{`{"did":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}`, ""},
		{`{"domain":"x"}`, "domain=y"},
		{`{"host":"a","repo_limit":5,"trusted":true,"per_second":1}`, ""},
		{``, "host=pds.example.com&block=true"},
		{``, "enabled=false"},
		{`{"enabled":"yes"}`, ""},
		{`{"repo_limit":-1}`, "cursor=-1&limit=99999"},
		{strings.Repeat("{", 5000), "%zz"},
	} {
		f.Add(s[0], s[1])
	}
	e := newEnv(f)
	e.mkHost(f, "pds.example.com")
	e.mkAccounts(f, 1, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")
	f.Fuzz(func(t *testing.T, body, query string) {
		for _, rt := range routeTable() {
			req := httptest.NewRequest(rt.method, rt.path, strings.NewReader(body))
			req.URL.RawQuery = query
			req.Header.Set("Authorization", "Bearer "+testToken)
			rec := httptest.NewRecorder()
			e.srv.ServeHTTP(rec, req)
			var v any
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatalf("%s %s: status %d, body not JSON: %q", rt.method, rt.path, rec.Code, rec.Body.String())
			}
			if rec.Code == http.StatusUnauthorized {
				t.Fatalf("%s: 401 with a valid token", rt.path)
			}
		}
	})
}
