package migrate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/relay/internal/testutil"
	"github.com/atrelay/relay/store"
)

// This file runs the migration against the real reference relay, built
// from the indigo module this repository already requires. The build uses
// only the local module cache (GOPROXY=off): a machine that never
// downloaded the reference's dependencies skips the test and says how to
// fetch them. The two binaries are kept in the user cache directory, keyed
// by indigo and Go versions, so only the first run pays for linking them.

const indigoModule = "github.com/bluesky-social/indigo"

// seederSource is a tiny program, built beside the reference relay in the
// same throw-away module, that runs the SQL on stdin against a SQLite
// database with the driver the reference itself uses.
const seederSource = `package main

import (
	"database/sql"
	"io"
	"log"
	"os"

	_ "github.com/mattn/go-sqlite3"
)

func main() {
	db, err := sql.Open("sqlite3", os.Args[1]+"?_busy_timeout=10000")
	if err != nil {
		log.Fatal(err)
	}
	q, err := io.ReadAll(os.Stdin)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(string(q)); err != nil {
		log.Fatal(err)
	}
}
`

// goCmd runs the go command with env added, returning its combined output.
func goCmd(dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
}

// buildReference returns the reference relay and the seeder, built now or
// by an earlier run, or skips the test.
func buildReference(t *testing.T) (relayBin, seederBin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the reference relay; skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build the reference relay with")
	}
	out, err := goCmd(".", nil, "list", "-m", "-json", indigoModule)
	if err != nil {
		t.Skipf("cannot locate %s: %v\n%s", indigoModule, err, out)
	}
	var mod struct{ Version, Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Skipf("%s is not in the module cache (run: go mod download %s): %s", indigoModule, indigoModule, out)
	}
	cacheDir := ""
	if c, err := os.UserCacheDir(); err == nil {
		cacheDir = filepath.Join(c, "atrelay-test", "reference-relay-"+mod.Version+"-"+runtime.Version())
		relayBin, seederBin = filepath.Join(cacheDir, "ref-relay"), filepath.Join(cacheDir, "ref-seeder")
		if fileExists(relayBin) && fileExists(seederBin) {
			return relayBin, seederBin
		}
	}
	gomod, err := goCmd(".", nil, "env", "GOMOD")
	if err != nil {
		t.Fatal(err)
	}
	ourSum, err := os.ReadFile(filepath.Join(filepath.Dir(strings.TrimSpace(string(gomod))), "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	refSum, err := os.ReadFile(filepath.Join(mod.Dir, "go.sum"))
	if err != nil {
		t.Skipf("reading the reference's go.sum: %v", err)
	}
	// A throw-away module requiring the same indigo version, with the
	// reference's own checksums plus ours for indigo itself.
	dir := t.TempDir()
	sum := append([]byte(nil), refSum...)
	for _, line := range strings.Split(string(ourSum), "\n") {
		if strings.HasPrefix(line, indigoModule+" "+mod.Version) {
			sum = append(sum, line+"\n"...)
		}
	}
	files := map[string]string{
		"go.mod":         "module refbuild\n\ngo 1.26\n\nrequire " + indigoModule + " " + mod.Version + "\n",
		"go.sum":         string(sum),
		"seeder/main.go": seederSource,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"GOFLAGS=-mod=mod -buildvcs=false", "GOPROXY=off", "GOSUMDB=off", "GOTOOLCHAIN=local", "CGO_ENABLED=1"}
	builtRelay, builtSeeder := filepath.Join(dir, "ref-relay"), filepath.Join(dir, "ref-seeder")
	if out, err := goCmd(dir, env, "build", "-o", builtRelay, indigoModule+"/cmd/relay"); err != nil {
		t.Skipf("cannot build the reference relay from the module cache (it needs cgo for SQLite and its "+
			"dependencies downloaded: in a scratch module requiring %s@%s, run go mod download): %v\n%s",
			indigoModule, mod.Version, err, tail(out))
	}
	if out, err := goCmd(dir, env, "build", "-o", builtSeeder, "./seeder"); err != nil {
		t.Skipf("cannot build the SQLite seeder: %v\n%s", err, tail(out))
	}
	if cacheDir == "" || os.MkdirAll(cacheDir, 0o755) != nil {
		return builtRelay, builtSeeder
	}
	// Renames within one file system are atomic, so a concurrent run sees
	// either no binary or a whole one; across file systems, use the fresh
	// ones.
	for _, f := range [][2]string{{builtRelay, relayBin}, {builtSeeder, seederBin}} {
		if os.Rename(f[0], f[1]) != nil {
			return builtRelay, builtSeeder
		}
	}
	return relayBin, seederBin
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// tail keeps the end of a long build log.
func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// refRelay is a running reference relay.
type refRelay struct {
	api, metrics string // base URLs
	db           string // SQLite file
	seeder       string
	log          *bytes.Buffer
}

// startReference runs the reference relay on loopback with a fresh SQLite
// database and waits until it answers /_health.
func startReference(t *testing.T, relayBin, seederBin string, passwords string, initialSeq int) *refRelay {
	t.Helper()
	dir := t.TempDir()
	api := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	metrics := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	r := &refRelay{api: "http://" + api, metrics: "http://" + metrics, db: filepath.Join(dir, "relay.sqlite"),
		seeder: seederBin, log: &bytes.Buffer{}}
	cmd := exec.Command(relayBin, "serve", "--db-url", "sqlite://"+r.db, "--bind", api, "--metrics-listen", metrics,
		"--persist-dir", filepath.Join(dir, "persist"), "--initial-seq-number", fmt.Sprint(initialSeq))
	cmd.Dir = dir // it loads a .env from its working directory: there is none here
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAY_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// A PLC that cannot answer: nothing here needs an identity, and the
	// test must not reach the internet.
	cmd.Env = append(cmd.Env, "RELAY_ADMIN_PASSWORD="+passwords, "RELAY_PLC_HOST=http://127.0.0.1:1")
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("reference relay log:\n%s", tail(r.log.Bytes()))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(r.api + "/_health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r
			}
		}
		select {
		case <-exited:
			t.Fatalf("the reference relay exited:\n%s", tail(r.log.Bytes()))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reference relay did not become healthy:\n%s", tail(r.log.Bytes()))
		}
	}
}

// sql runs statements against the reference's database.
func (r *refRelay) sql(t *testing.T, q string) {
	t.Helper()
	cmd := exec.Command(r.seeder, r.db)
	cmd.Stdin = strings.NewReader(q)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("seeding the reference's database: %v\n%s", err, out)
	}
}

// admin calls the reference's admin API with HTTP Basic.
func (r *refRelay) admin(t *testing.T, password, method, path, body string) string {
	t.Helper()
	req, err := http.NewRequest(method, r.api+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", password)
	req.Header.Set("Content-Type", "application/json")
	resp, b := testutil.Do(t, req)
	if resp.StatusCode != 200 {
		t.Fatalf("reference %s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return string(b)
}

// nextSeq reads the reference's disk_persister_current_seq.
func (r *refRelay) nextSeq(t *testing.T) uint64 {
	t.Helper()
	resp, err := http.Get(r.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var v float64
		if n, _ := fmt.Sscanf(sc.Text(), seqMetric+" %g", &v); n == 1 {
			return uint64(v)
		}
	}
	t.Fatal("no " + seqMetric + " in the reference's metrics")
	return 0
}

// TestMigrateFromReferenceRelay fills a real reference relay with hosts
// (seeded into its host table: its requestCrawl refuses loopback hosts),
// takedowns and domain bans, migrates it, and checks this relay's store.
func TestMigrateFromReferenceRelay(t *testing.T) {
	relayBin, seederBin := buildReference(t)
	ref := startReference(t, relayBin, seederBin, "pw-one,pw-two", 777_777)

	const (
		didA = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa" // taken down through the admin API
		didB = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb" // stays active
		didC = "did:plc:cccccccccccccccccccccccc" // taken down in the table
	)
	ref.sql(t, `
INSERT INTO host (id, created_at, updated_at, hostname, no_ssl, account_limit, trusted, status, last_seq, account_count) VALUES
  (1, datetime('now'), datetime('now'), 'pds1.trusted.example', 0, 10000, 1, 'active',    5551, 3),
  (2, datetime('now'), datetime('now'), 'pds.example.com',      0,   250, 0, 'active',      42, 2),
  (3, datetime('now'), datetime('now'), 'banned.example.com',   0,   100, 0, 'banned',      17, 0),
  (4, datetime('now'), datetime('now'), 'gone.example.com',     0,   100, 0, 'offline',    900, 1),
  (5, datetime('now'), datetime('now'), 'quiet.example.com',    0,   100, 0, 'idle',        -1, 0),
  (6, datetime('now'), datetime('now'), 'localhost:2999',       1,    50, 0, 'throttled',    3, 0);
INSERT INTO account (uid, did, host_id, status, upstream_status) VALUES
  (1, '`+didA+`', 2, 'active',    'active'),
  (2, '`+didB+`', 2, 'active',    'active'),
  (3, '`+didC+`', 1, 'takendown', 'active');
`)
	ref.admin(t, "pw-one", http.MethodPost, "/admin/repo/takeDown", `{"did":"`+didA+`"}`)
	ref.admin(t, "pw-two", http.MethodPost, "/admin/subs/banDomain", `{"Domain":"evil.example"}`)
	ref.admin(t, "pw-two", http.MethodPost, "/admin/subs/banDomain", `{"domain":"spam.example"}`)
	// The takedown emitted an #account event, so the reference's seq moved
	// past its initial one.
	refNext := ref.nextSeq(t)
	if refNext <= 777_777 {
		t.Fatalf("reference next seq %d: the takedown's #account event was not sequenced", refNext)
	}

	dir := filepath.Join(t.TempDir(), "data")
	args := []string{"--from", ref.api, "--from-metrics", ref.metrics, "--from-password", "pw-two",
		"--trusted-domains", "*.trusted.example", "--data-dir", dir}
	var out strings.Builder
	if err := RunCLI(append(args, "--dry-run"), &out); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "hosts:           6 to create") || !strings.Contains(out.String(), "takedowns:       2 to add") {
		t.Fatalf("dry run plan:\n%s", out.String())
	}
	out.Reset()
	if err := RunCLI(args, &out); err != nil {
		t.Fatalf("migration: %v\n%s", err, out.String())
	}
	t.Logf("migration output:\n%s", out.String())

	st := openTestStore(t, dir)
	defer st.Close()
	want := map[string]store.Host{
		"pds1.trusted.example": {Status: store.HostActive, Trusted: true, AccountLimit: 10000, Cursor: 5551},
		"pds.example.com":      {Status: store.HostActive, AccountLimit: 250, Cursor: 42},
		"banned.example.com":   {Status: store.HostBanned, AccountLimit: 100, Cursor: 17},
		"gone.example.com":     {Status: store.HostOffline, AccountLimit: 100, Cursor: 900},
		"quiet.example.com":    {Status: store.HostIdle, AccountLimit: 100},
		"localhost:2999":       {Status: store.HostThrottled, AccountLimit: 50, Cursor: 3},
	}
	if n := len(st.ListHosts(store.HostNone, 100)); n != len(want) {
		t.Fatalf("%d hosts migrated, want %d", n, len(want))
	}
	for name, w := range want {
		h, ok := st.HostByName(name)
		if !ok || h.Status != w.Status || h.Trusted != w.Trusted || h.AccountLimit != w.AccountLimit || h.Cursor != w.Cursor {
			t.Errorf("host %s = %+v, want %+v", name, h, w)
		}
	}
	if bans := st.Bans(); !slices.Equal(bans, []string{"evil.example", "spam.example"}) {
		t.Errorf("bans = %v", bans)
	}
	var a store.Account
	for did, down := range map[string]bool{didA: true, didC: true, didB: false} {
		ok, err := st.GetAccount([]byte(did), &a)
		if err != nil || ok != down || (down && a.LocalStatus != store.LocalTakendown) {
			t.Errorf("account %s: found %v, %+v, %v; want taken down %v", did, ok, a, err, down)
		}
	}
	if got, wantSeq := uint64(st.NewestSeq())+1, refNext+DefaultSeqMargin; got != wantSeq {
		t.Fatalf("this relay's next seq %d, want the reference's %d + %d", got, refNext, DefaultSeqMargin)
	}

	// The reference keeps running: a second migration, after it
	// sequenced one more event (a reversed takedown), moves this relay's
	// seq along and changes nothing else; it adds state, never lifts it.
	ref.admin(t, "pw-one", http.MethodPost, "/admin/repo/reverseTakedown", `{"did":"`+didA+`"}`)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	refNext2 := ref.nextSeq(t)
	out.Reset()
	if err := RunCLI(args, &out); err != nil {
		t.Fatalf("second migration: %v\n%s", err, out.String())
	}
	wantLine := fmt.Sprintf("next seq %d -> %d", refNext+DefaultSeqMargin, refNext2+DefaultSeqMargin)
	if refNext2 <= refNext || !strings.Contains(out.String(), "0 to create, 0 to update, 6 unchanged") ||
		!strings.Contains(out.String(), wantLine) || !strings.Contains(out.String(), "takedowns:       0 to add") {
		t.Fatalf("second migration (want %q):\n%s", wantLine, out.String())
	}
}
