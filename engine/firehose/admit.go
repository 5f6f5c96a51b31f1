package firehose

import "github.com/atrelay/relay/engine/clientip"

// The hub's refusals (clientip.Admission), counted in
// relay_firehose_refused_total{reason}.
const (
	refuseGlobal = clientip.RefuseGlobal // MaxConsumers connections already (HTTP 503)
	refusePerIP  = clientip.RefusePerIP  // MaxConsumersPerIP connections from this client (HTTP 429)
)
