package xrpc

import (
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// numClasses is the number of status classes counted: 2xx, 3xx, 4xx and
// 5xx, the class label of relay_xrpc_requests_total.
const numClasses = 4

// otherEndpoint is the counter row for paths that match no endpoint.
const otherEndpoint = numEndpoints

// requestCounters holds relay_xrpc_requests_total{endpoint, class}, every
// combination created at zero by newRequestCounters so dashboards show 0,
// not "no data". Static after construction; the counters are atomic.
type requestCounters struct {
	c [numEndpoints + 1][numClasses]*metrics.Counter
}

func newRequestCounters(set *metrics.Set, eps *[numEndpoints]endpoint) *requestCounters {
	rc := &requestCounters{}
	for i := range rc.c {
		name := "other"
		if i < numEndpoints {
			name = eps[i].nsid
		}
		for j := range numClasses {
			class := strconv.Itoa(j+2) + "xx"
			rc.c[i][j] = set.NewCounter(`relay_xrpc_requests_total{endpoint="` + name + `",class="` + class + `"}`)
		}
	}
	return rc
}

// inc counts one answer with status code for endpoint idx.
func (rc *requestCounters) inc(idx, code int) {
	j := code/100 - 2
	if j < 0 {
		j = 0
	}
	if j >= numClasses {
		j = numClasses - 1
	}
	rc.c[idx][j].Inc()
}
