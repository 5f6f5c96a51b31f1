package harness

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Errors of ParseMetrics and scraping.
var (
	// ErrMetricsTooLarge: a metrics page exceeds MaxMetricsBytes.
	ErrMetricsTooLarge = errors.New("harness: metrics page too large")
	// ErrMetricsLine: a sample line is not `name[{labels}] value [timestamp]`.
	ErrMetricsLine = errors.New("harness: malformed metrics line")
	// ErrMetricsTooMany: a page holds more than MaxMetricsSeries series.
	ErrMetricsTooMany = errors.New("harness: too many metric series")
	// ErrMetricsStatus: the metrics endpoint answered with a non-200 status.
	ErrMetricsStatus = errors.New("harness: metrics endpoint status")
)

// Limits on a scraped metrics page, so a broken endpoint cannot exhaust
// the harness's memory.
const (
	// MaxMetricsBytes bounds the size of one metrics page.
	MaxMetricsBytes = 32 << 20
	// MaxMetricsSeries bounds the number of series in one page.
	MaxMetricsSeries = 200_000
)

// Metrics is one parsed Prometheus text page: each series, keyed by its
// name and label set exactly as written (`name` or `name{a="b"}`), maps to
// its value. It is built once per scrape and read-only afterwards.
type Metrics map[string]float64

// ParseMetrics parses the Prometheus text exposition format (version
// 0.0.4) as VictoriaMetrics/metrics writes it: comment lines are skipped,
// each other line is a series, one space, a value and an optional
// timestamp. Labels are kept verbatim as part of the key.
func ParseMetrics(page []byte) (Metrics, error) {
	if len(page) > MaxMetricsBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrMetricsTooLarge, len(page))
	}
	m := Metrics{}
	for lineNo := 1; len(page) > 0; lineNo++ {
		line := page
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i], page[i+1:]
		} else {
			page = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, value, err := splitSeries(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d", err, lineNo)
		}
		if len(m) >= MaxMetricsSeries {
			return nil, ErrMetricsTooMany
		}
		m[string(name)] = value
	}
	return m, nil
}

// splitSeries splits one sample line into its series key and value.
func splitSeries(line []byte) ([]byte, float64, error) {
	end := 0
	for end < len(line) && line[end] != ' ' && line[end] != '{' {
		end++
	}
	if end == 0 {
		return nil, 0, ErrMetricsLine
	}
	if end < len(line) && line[end] == '{' {
		// Label values may hold spaces and escaped quotes; find the closing
		// brace outside a quoted string.
		quoted := false
		i := end + 1
		for ; i < len(line); i++ {
			c := line[i]
			if quoted && c == '\\' {
				i++
				continue
			}
			if c == '"' {
				quoted = !quoted
			} else if c == '}' && !quoted {
				break
			}
		}
		if i >= len(line) {
			return nil, 0, ErrMetricsLine
		}
		end = i + 1
	}
	name := line[:end]
	rest := bytes.TrimLeft(line[end:], " \t")
	if len(rest) == 0 {
		return nil, 0, ErrMetricsLine
	}
	if i := bytes.IndexAny(rest, " \t"); i >= 0 {
		rest = rest[:i] // drop the timestamp
	}
	v, err := strconv.ParseFloat(string(rest), 64)
	if err != nil {
		return nil, 0, ErrMetricsLine
	}
	return name, v, nil
}

// Get returns a series' value by its exact key and whether it exists.
func (m Metrics) Get(key string) (float64, bool) {
	v, ok := m[key]
	return v, ok
}

// Sum adds every series named name, whatever its labels, and reports
// whether there was any.
func (m Metrics) Sum(name string) (float64, bool) {
	var sum float64
	found := false
	for k, v := range m {
		if k == name || (strings.HasPrefix(k, name) && k[len(name)] == '{') {
			sum += v
			found = true
		}
	}
	return sum, found
}

// Drops returns every relay_* series whose name speaks of dropping or
// rejecting events: the relay's drop counters by reason.
func (m Metrics) Drops() map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		name, _, _ := strings.Cut(k, "{")
		if strings.HasPrefix(name, "relay_") && (strings.Contains(name, "drop") || strings.Contains(name, "reject")) {
			out[k] = v
		}
	}
	return out
}

// scrape fetches and parses one metrics page.
func scrape(ctx context.Context, client *http.Client, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s", ErrMetricsStatus, resp.Status)
	}
	page, err := io.ReadAll(io.LimitReader(resp.Body, MaxMetricsBytes+1))
	if err != nil {
		return nil, err
	}
	return ParseMetrics(page)
}

// vmrangeLabel opens the label VictoriaMetrics/metrics histograms give
// each bucket: name_bucket{vmrange="lo...hi"} holds the observations in
// (lo, hi].
const vmrangeLabel = `_bucket{vmrange="`

// vmBucket is one histogram bucket's range and the observations added
// to it between two scrapes.
type vmBucket struct {
	lo, hi float64
	n      float64
}

// HistogramSince summarises the observations a VictoriaMetrics/metrics
// histogram (seconds) gained between two scrapes, from earlier and m
// later (earlier nil: from the start), in milliseconds. Each quantile is the
// upper bound of the bucket it falls in (the buckets are about 12 %
// wide), the max that of the highest bucket reached, the mean exact from
// _sum and _count. ok is false when m has no such histogram or nothing
// was observed in between.
func (m Metrics) HistogramSince(earlier Metrics, name string) (r LatencyReport, ok bool) {
	prefix := name + vmrangeLabel
	var buckets []vmBucket
	var total float64
	for k, v := range m {
		rng, isBucket := strings.CutPrefix(k, prefix)
		rng, closed := strings.CutSuffix(rng, `"}`)
		loS, hiS, isRange := strings.Cut(rng, "...")
		if !isBucket || !closed || !isRange {
			continue
		}
		lo, err1 := strconv.ParseFloat(loS, 64)
		hi, err2 := strconv.ParseFloat(hiS, 64)
		n := v - earlier[k] // a key missing from earlier (or a nil earlier) reads as 0
		if err1 != nil || err2 != nil || n <= 0 {
			continue
		}
		buckets = append(buckets, vmBucket{lo: lo, hi: hi, n: n})
		total += n
	}
	if total == 0 {
		return r, false
	}
	slices.SortFunc(buckets, func(a, b vmBucket) int { return cmp.Compare(a.lo, b.lo) })
	quantile := func(q float64) float64 {
		var seen float64
		for _, b := range buckets {
			if seen += b.n; seen >= q*total {
				return b.hi * 1e3
			}
		}
		return buckets[len(buckets)-1].hi * 1e3
	}
	r = LatencyReport{Count: int64(total), P50Ms: quantile(0.50), P90Ms: quantile(0.90), P99Ms: quantile(0.99),
		MaxMs: buckets[len(buckets)-1].hi * 1e3}
	if n := m[name+"_count"] - earlier[name+"_count"]; n > 0 {
		r.MeanMs = (m[name+"_sum"] - earlier[name+"_sum"]) / n * 1e3
	}
	return r, true
}
