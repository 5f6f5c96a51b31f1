package deploy

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// How the dashboard test learns which metrics the relay exports: a source
// scan, not a running relay. Starting the relay in-process would need the
// wiring of cmd/relay/serve.go copied here, and still would not show the
// series created only under traffic (per-host counters, VictoriaMetrics
// histograms, which print nothing before their first observation). So:
//
//   - Packages: cmd/relay and every package of this module it imports,
//     transitively, honouring build constraints. A package the binary does
//     not link (say, one whose metrics nobody wires yet) exports nothing.
//   - Relay metrics: every Go string literal in those packages that starts
//     with relay_<name>; the name ends at the first character outside
//     [a-z0-9_] (so `relay_x_total{reason=%q}` gives relay_x_total). The set
//     may hold a few label values that look like names (relay_loop); none is
//     a plausible dashboard metric, so the check stays sharp in practice.
//   - Histograms: names passed as literals to NewHistogram/GetOrCreateHistogram
//     (VictoriaMetrics buckets, label vmrange) or the Prometheus-histogram
//     constructors (label le); name_bucket, name_sum and name_count are
//     then exported too.
//   - Process and Go runtime metrics: if some scanned file calls
//     metrics.WritePrometheus(_, true) or metrics.WriteProcessMetrics, the
//     names printed by metrics.WriteProcessMetrics in this test process.

// exportedSet is the result of the scan.
type exportedSet struct {
	names   map[string]bool   // metric family names as they appear on /metrics
	buckets map[string]string // histogram family → its bucket label: vmrange or le
	pkgs    []string          // module-relative package dirs scanned
	process bool              // the binary writes process/Go runtime metrics
}

var metricLiteralRE = regexp.MustCompile(`^relay_[a-z0-9_]*[a-z0-9]`)

// histogramCtors maps histogram constructors to their bucket label.
var histogramCtors = map[string]string{
	"NewHistogram":                      "vmrange",
	"GetOrCreateHistogram":              "vmrange",
	"NewPrometheusHistogram":            "le",
	"NewPrometheusHistogramExt":         "le",
	"GetOrCreatePrometheusHistogram":    "le",
	"GetOrCreatePrometheusHistogramExt": "le",
}

const vmMetricsPath = "github.com/VictoriaMetrics/metrics"

// moduleRoot returns the module root (the parent of deploy/) and its path.
func moduleRoot(t *testing.T) (root, modPath string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	mod := readFile(t, filepath.Join(root, "go.mod"))
	sc := bufio.NewScanner(bytes.NewReader(mod))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return root, strings.TrimSpace(p)
		}
	}
	t.Fatalf("%s/go.mod has no module line", root)
	return "", ""
}

// scanExported walks cmd/relay's import graph inside the module and
// collects the exported metric names.
func scanExported(t *testing.T) exportedSet {
	t.Helper()
	root, modPath := moduleRoot(t)
	ex := exportedSet{names: map[string]bool{}, buckets: map[string]string{}}
	seen := map[string]bool{}
	queue := []string{"cmd/relay"}
	fset := token.NewFileSet()
	for len(queue) > 0 {
		rel := queue[0]
		queue = queue[1:]
		if seen[rel] {
			continue
		}
		seen[rel] = true
		ex.pkgs = append(ex.pkgs, rel)
		dir := filepath.Join(root, filepath.FromSlash(rel))
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("package %s imported by the relay: %v", rel, err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			if ok, err := build.Default.MatchFile(dir, name); err != nil {
				t.Fatal(err)
			} else if !ok {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range scanFile(f, &ex) {
				if sub, ok := strings.CutPrefix(imp, modPath+"/"); ok {
					queue = append(queue, sub)
				}
			}
		}
	}
	sort.Strings(ex.pkgs)
	if ex.process {
		var buf bytes.Buffer
		metrics.WriteProcessMetrics(&buf)
		for _, line := range strings.Split(buf.String(), "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			name := line
			if i := strings.IndexAny(line, "{ "); i >= 0 {
				name = line[:i]
			}
			ex.names[name] = true
		}
	}
	return ex
}

// scanFile adds f's metric literals, histograms and process-metric calls
// to ex and returns f's import paths.
func scanFile(f *ast.File, ex *exportedSet) []string {
	var imports []string
	vmName := ""
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		imports = append(imports, p)
		if p == vmMetricsPath {
			vmName = "metrics"
			if imp.Name != nil {
				vmName = imp.Name.Name
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BasicLit:
			if n.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(n.Value); err == nil {
				if m := metricLiteralRE.FindString(s); m != "" {
					ex.names[m] = true
				}
			}
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if label, ok := histogramCtors[sel.Sel.Name]; ok && len(n.Args) > 0 {
				if lit, ok := n.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						name, _, _ := strings.Cut(s, "{")
						ex.buckets[name] = label
					}
				}
			}
			if x, ok := sel.X.(*ast.Ident); ok && vmName != "" && x.Name == vmName {
				switch sel.Sel.Name {
				case "WriteProcessMetrics":
					ex.process = true
				case "WritePrometheus":
					if len(n.Args) == 2 {
						if b, ok := n.Args[1].(*ast.Ident); ok && b.Name == "true" {
							ex.process = true
						}
					}
				}
			}
		}
		return true
	})
	return imports
}

// has reports whether name is exported, directly or as a histogram's
// _bucket, _sum or _count series.
func (ex exportedSet) has(name string) bool {
	if ex.names[name] {
		return true
	}
	_, ok := ex.histogramOf(name)
	return ok
}

// histogramOf returns the histogram family whose series name is, if any.
func (ex exportedSet) histogramOf(name string) (string, bool) {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if _, ok := ex.buckets[base]; ok {
				return base, true
			}
		}
	}
	return "", false
}

// TestRelayLinksNoTestHelpers: the test helpers shared through internal/
// stay out of the relay binary; only _test.go files may import them.
func TestRelayLinksNoTestHelpers(t *testing.T) {
	pkgs := scanExported(t).pkgs
	if !slices.Contains(pkgs, "engine/fanout") {
		t.Fatalf("the import walk missed engine/fanout: %v", pkgs)
	}
	for _, helper := range []string{"internal/streamtest", "internal/storetest", "internal/testutil",
		"internal/dagcbortest", "internal/fixtures"} {
		if slices.Contains(pkgs, helper) {
			t.Errorf("the relay binary links %s", helper)
		}
	}
}
