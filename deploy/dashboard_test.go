package deploy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The dashboard must name only metrics the relay exports (exported_test.go
// says how that set is built), filter every selector by $instance, group
// VictoriaMetrics histogram buckets by vmrange (by le they would silently
// show nothing), and give every panel a query.

const dashboardFile = "grafana-dashboard.json"

// dashboard is the part of Grafana's dashboard model the checks read.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []templateVar `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []target    `json:"targets"`
	Panels     []panel     `json:"panels"` // a collapsed row's panels
	GridPos    *struct{}   `json:"gridPos"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	Expr       string      `json:"expr"`
	RefID      string      `json:"refId"`
	Datasource *datasource `json:"datasource"`
}

type templateVar struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *datasource     `json:"datasource"`
}

const (
	dsVar          = "DS_PROMETHEUS"
	dsRef          = "${" + dsVar + "}"
	instanceFilter = `instance=~"$instance"`
)

var labelValuesRE = regexp.MustCompile(`^label_values\(\s*(.+?)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$`)

// checkDashboard returns every problem of the dashboard JSON b against the
// exported set, and the metric names it uses.
func checkDashboard(b []byte, ex exportedSet) (problems []string, used map[string]bool) {
	used = map[string]bool{}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return []string{fmt.Sprintf("invalid JSON: %v", err)}, used
	}
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if d.Title == "" || d.UID == "" {
		bad("dashboard has no title or uid")
	}
	if d.SchemaVersion < 36 {
		bad("schemaVersion %d: want a current Grafana model (>= 36)", d.SchemaVersion)
	}

	checkExpr := func(where, expr string, needInstance bool) {
		info, err := parseExpr(expr)
		if err != nil {
			bad("%s: %q: %v", where, expr, err)
			return
		}
		if len(info.selectors) == 0 {
			bad("%s: %q names no metric", where, expr)
		}
		for _, s := range info.selectors {
			used[s.name] = true
			if !ex.has(s.name) {
				bad("%s: metric %s is not exported by the relay", where, s.name)
			}
			if needInstance && !strings.Contains(s.matchers, instanceFilter) {
				bad("%s: selector %s lacks %s", where, s.name, instanceFilter)
			}
			base, ok := ex.histogramOf(s.name)
			if !ok || !strings.HasSuffix(s.name, "_bucket") {
				continue
			}
			label := ex.buckets[base]
			if !slices.ContainsFunc(info.groupings, func(g []string) bool { return slices.Contains(g, label) }) {
				bad("%s: %s buckets must be grouped by (%s)", where, s.name, label)
			}
		}
	}

	vars := map[string]templateVar{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v, ok := vars[dsVar]; !ok || v.Type != "datasource" {
		bad("templating: no datasource variable %s", dsVar)
	}
	if v, ok := vars["instance"]; !ok || v.Type != "query" {
		bad("templating: no query variable instance")
	} else {
		if v.Datasource == nil || v.Datasource.UID != dsRef {
			bad("templating: instance does not query %s", dsRef)
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			// Older models store the query as a plain string.
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				bad("templating: instance query: %v", err)
			}
		}
		if m := labelValuesRE.FindStringSubmatch(q.Query); m == nil {
			bad("templating: instance query %q is not label_values(metric, label)", q.Query)
		} else {
			checkExpr("templating instance", m[1], false)
		}
	}

	ids := map[int]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if prev, dup := ids[p.ID]; dup {
				bad("%s: id already used by %q", where, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil {
				bad("%s: no gridPos", where)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != dsRef {
				bad("%s: datasource is not %s", where, dsRef)
			}
			if len(p.Targets) == 0 {
				bad("%s: no targets", where)
			}
			for _, tg := range p.Targets {
				w := where + " target " + tg.RefID
				if strings.TrimSpace(tg.Expr) == "" {
					bad("%s: empty expr", w)
					continue
				}
				if tg.Datasource != nil && tg.Datasource.UID != dsRef {
					bad("%s: datasource is not %s", w, dsRef)
				}
				checkExpr(w, tg.Expr, true)
			}
		}
	}
	walk(d.Panels)
	if len(ids) == 0 {
		bad("dashboard has no panels")
	}
	return problems, used
}

// rowTitles returns the titles of the dashboard's rows, in order.
func rowTitles(t *testing.T, b []byte) []string {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			out = append(out, p.Title)
		}
	}
	return out
}

func TestDashboardMetricsExist(t *testing.T) {
	ex := scanExported(t)
	t.Logf("source scan: %d packages linked into cmd/relay, %d metric names, %d histograms, process metrics %v",
		len(ex.pkgs), len(ex.names), len(ex.buckets), ex.process)
	// The scan itself must see the relay's core series, or it checks nothing.
	for _, want := range []string{"relay_frames_received_total", "relay_store_disk_bytes", "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes"} {
		if !ex.names[want] {
			t.Fatalf("source scan did not find %s; scanned %v", want, ex.pkgs)
		}
	}
	if ex.buckets["relay_validation_seconds"] == "" {
		t.Fatalf("source scan did not find the relay_validation_seconds histogram")
	}
	problems, used := checkDashboard(readFile(t, dashboardFile), ex)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%s uses %d metric names", dashboardFile, len(used))
}

// TestDashboardCoverage checks the dashboard shows what the product owner
// asked for, for every item the relay exports (the report lists the rest).
func TestDashboardCoverage(t *testing.T) {
	b := readFile(t, dashboardFile)
	rows := rowTitles(t, b)
	for _, want := range []string{"Ingest", "Validation", "Sequencer & storage", "Consumers", "Memory", "Pools"} {
		if !slices.Contains(rows, want) {
			t.Errorf("%s: no row %q (rows: %q)", dashboardFile, want, rows)
		}
	}
	_, used := checkDashboard(b, scanExported(t))
	for _, want := range []string{
		// ingest
		"relay_frames_received_total", "relay_bytes_received_total",
		"relay_host_frames_received_total", "relay_host_bytes_received_total",
		"relay_events_accepted_total", "relay_events_dropped_total",
		"relay_upstream_connections", "relay_upstream_hosts_by_status", "relay_upstream_errors_total", "relay_host_pauses_total",
		// validation
		"relay_validation_seconds_bucket", "relay_events_rejected_total", "relay_chain_breaks_total",
		"relay_resyncs_enqueued_total", "relay_resyncs_total", "relay_account_desynchronized_seconds_bucket",
		"relay_identity_cache_hits_total", "relay_identity_cache_misses_total",
		"relay_identity_cache_entries", "relay_identity_cache_bytes",
		// sequencer and storage
		"relay_sequencer_batch_events_bucket", "relay_sequencer_commit_seconds_bucket",
		"relay_store_disk_bytes", "relay_store_compactions_total", "relay_store_write_stalls_total",
		"relay_store_block_cache_hits_total", "relay_store_block_cache_misses_total",
		"relay_store_oldest_seq", "relay_store_newest_seq", "relay_healthy",
		// consumers
		"relay_firehose_consumers", "relay_firehose_frames_sent_total", "relay_firehose_bytes_sent_total",
		"relay_firehose_consumer_lag_max_events", "relay_firehose_disconnects_total",
		// memory
		"process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes",
		"go_memstats_heap_released_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_gc_cpu_fraction",
		"go_memlimit_bytes", "relay_memory_trim_runs_total", "relay_memory_trim_returned_bytes_total",
		"relay_memory_c_held_bytes", "relay_memory_c_inuse_bytes",
		// pools
		"relay_pool_buffer_hits_total", "relay_pool_buffer_misses_total", "relay_pool_buffer_held_bytes",
	} {
		if !used[want] {
			t.Errorf("%s does not show %s", dashboardFile, want)
		}
	}
}

var docMetricRE = regexp.MustCompile(`\b(?:relay|go|process)_[a-z0-9_]*[a-z0-9]\b`)

// TestRunbookMetricsExist checks every metric name RUNBOOK.md mentions is
// exported, so its alert rules and advice stay true.
func TestRunbookMetricsExist(t *testing.T) {
	ex := scanExported(t)
	names := map[string]bool{}
	for _, m := range docMetricRE.FindAllString(string(readFile(t, "RUNBOOK.md")), -1) {
		names[m] = true
	}
	if len(names) == 0 {
		t.Fatal("RUNBOOK.md mentions no metric")
	}
	for m := range names {
		if !ex.has(m) {
			t.Errorf("RUNBOOK.md mentions %s, which the relay does not export", m)
		}
	}
	t.Logf("RUNBOOK.md mentions %d metric names", len(names))
}

// TestMakeInstall checks the Makefile's install target runs install.sh.
func TestMakeInstall(t *testing.T) {
	mk := string(readFile(t, "../Makefile"))
	if !regexp.MustCompile(`(?m)^install:.*\n\tdeploy/install\.sh \$\(BIN\)$`).MatchString(mk) {
		t.Error("Makefile: no install target running deploy/install.sh $(BIN)")
	}
}

// TestCheckDashboardRejects shows each check fails when it should.
func TestCheckDashboardRejects(t *testing.T) {
	ex := exportedSet{
		names:   map[string]bool{"relay_a_total": true, "relay_h": true, "relay_p": true},
		buckets: map[string]string{"relay_h": "vmrange", "relay_p": "le"},
	}
	const tmpl = `{"uid":"u","title":"t","schemaVersion":39,
	  "templating":{"list":[{"name":"DS_PROMETHEUS","type":"datasource"},
	    {"name":"instance","type":"query","datasource":{"uid":"${DS_PROMETHEUS}"},"query":{"query":"label_values(relay_a_total, instance)"}}]},
	  "panels":[{"id":1,"type":"timeseries","title":"p","gridPos":{},"datasource":{"uid":"${DS_PROMETHEUS}"},
	    "targets":[{"refId":"A","expr":%q}]}]}`
	good := func(expr string) {
		t.Helper()
		if problems, _ := checkDashboard([]byte(fmt.Sprintf(tmpl, expr)), ex); len(problems) != 0 {
			t.Errorf("%q rejected: %v", expr, problems)
		}
	}
	bad := func(name, doc, want string) {
		t.Helper()
		problems, _ := checkDashboard([]byte(doc), ex)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("%s: problems %q lack %q", name, problems, want)
		}
	}
	good(`sum(rate(relay_a_total{instance=~"$instance"}[$__rate_interval]))`)
	good(`histogram_quantile(0.99, sum by (vmrange) (rate(relay_h_bucket{instance=~"$instance"}[5m])))`)
	good(`histogram_quantile(0.9, sum(rate(relay_p_bucket{instance=~"$instance"}[5m])) by (le))`)
	good(`rate(relay_h_sum{instance=~"$instance"}[5m]) / rate(relay_h_count{instance=~"$instance"}[5m])`)

	bad("invalid JSON", `{"panels": [`, "invalid JSON")
	bad("unknown metric", fmt.Sprintf(tmpl, `rate(relay_nonexistent_total{instance=~"$instance"}[5m])`), "relay_nonexistent_total is not exported")
	bad("suffix of a non-histogram", fmt.Sprintf(tmpl, `relay_a_total_count{instance=~"$instance"}`), "relay_a_total_count is not exported")
	bad("no instance filter", fmt.Sprintf(tmpl, `relay_a_total`), "lacks "+instanceFilter)
	bad("vmrange histogram by le", fmt.Sprintf(tmpl, `histogram_quantile(0.9, sum by (le) (rate(relay_h_bucket{instance=~"$instance"}[5m])))`), "grouped by (vmrange)")
	bad("le histogram by vmrange", fmt.Sprintf(tmpl, `histogram_quantile(0.9, sum by (vmrange) (rate(relay_p_bucket{instance=~"$instance"}[5m])))`), "grouped by (le)")
	bad("expression without a metric", fmt.Sprintf(tmpl, `vector(1)`), "names no metric")
	bad("unbalanced", fmt.Sprintf(tmpl, `sum(rate(relay_a_total{instance=~"$instance"}[5m])`), "unterminated grouping")
	bad("no targets", `{"uid":"u","title":"t","schemaVersion":39,"panels":[{"id":1,"type":"stat","title":"p","gridPos":{},"datasource":{"uid":"${DS_PROMETHEUS}"}}]}`, "no targets")
	bad("row hides a panel without targets", `{"uid":"u","title":"t","schemaVersion":39,"panels":[{"id":1,"type":"row","title":"r","gridPos":{},
	  "panels":[{"id":2,"type":"stat","title":"p","gridPos":{},"datasource":{"uid":"${DS_PROMETHEUS}"}}]}]}`, "panel 2 \"p\": no targets")
	bad("wrong datasource", strings.Replace(fmt.Sprintf(tmpl, `relay_a_total{instance=~"$instance"}`), `"datasource":{"uid":"${DS_PROMETHEUS}"},
	    "targets"`, `"datasource":{"uid":"prom"},
	    "targets"`, 1), "datasource is not")
	bad("no datasource variable", `{"uid":"u","title":"t","schemaVersion":39,"panels":[]}`, "no datasource variable")
	bad("no panels", `{"uid":"u","title":"t","schemaVersion":39,"panels":[]}`, "no panels")
	bad("old schema", `{"uid":"u","title":"t","schemaVersion":16,"panels":[]}`, "schemaVersion 16")
}

// TestParseExpr checks the lexer's idea of which identifiers are metrics.
func TestParseExpr(t *testing.T) {
	f := func(expr string, want ...string) {
		t.Helper()
		info, err := parseExpr(expr)
		if err != nil {
			t.Errorf("%q: %v", expr, err)
			return
		}
		var got []string
		for _, s := range info.selectors {
			got = append(got, s.name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q: names %q, want %q", expr, got, want)
		}
	}
	f(`rate(x_total[5m])`, "x_total")
	f(`histogram_quantile(0.99, sum(rate(x_bucket{a="b}"}[5m])) by (le))`, "x_bucket")
	f(`sum by (kind, host) (rate(a{instance=~"$instance"}[$__rate_interval])) / ignoring(kind) b`, "a", "b")
	f(`topk(10, sum without (le) (c)) > bool 1e-3 or d offset 5m`, "c", "d")
	f(`label_replace(e, "dst", "$1", "src", "(.*)")`, "e")
	f(`max(f{job='j\'s'}) and on (instance) g * -.5 + ${var} + [[old]]`, "f", "g")
	f(`count_values("v", h) - sum(i) by (x) + group_left_thing`, "h", "i", "group_left_thing")
	f(`{__name__="x"}`)
	for _, broken := range []string{`rate(x[5m]`, `x{a="b"`, `x[5m`, `"abc`, `x)`, `x}`, `x # y`} {
		if _, err := parseExpr(broken); err == nil {
			t.Errorf("%q: accepted", broken)
		}
	}
}
