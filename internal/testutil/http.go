package testutil

import (
	"io"
	"net/http"
	"testing"
)

// Do sends req with http.DefaultClient and reads the whole answer. It
// returns the response, whose body is already read and closed, and that
// body. A transport or read error fails the test.
func Do(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
	}
	return resp, body
}
