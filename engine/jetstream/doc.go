// Package jetstream serves the relay's event stream in the JSON shape of
// Bluesky's Jetstream, protocol v1: GET /subscribe, with Jetstream's query
// parameters, messages and event objects, so that existing Jetstream
// clients connect to the relay unchanged.
//
// # Events
//
// Each relay event of the log becomes zero or more Jetstream events: a
// #commit one per op, an #identity or #account one each, a #sync, tooBig
// commit or unknown frame none (as in Jetstream). In Jetstream's field
// order:
//
//	{"did":D,"time_us":T,"kind":"commit","commit":{"rev":R,"operation":"create","collection":C,"rkey":K,"record":{…},"cid":"bafy…"}}
//	{"did":D,"time_us":T,"kind":"commit","commit":{"rev":R,"operation":"delete","collection":C,"rkey":K}}
//	{"did":D,"time_us":T,"kind":"identity","identity":{"did":D,"handle":H,"seq":S,"time":"…"}}
//	{"did":D,"time_us":T,"kind":"account","account":{"active":false,"did":D,"seq":S,"status":"deactivated","time":"…"}}
//
// S is the relay seq. A record is its block from the commit's CAR slice,
// checked against the op's CID and converted from DAG-CBOR to JSON by the
// atproto data model ($link, $bytes, blobs as their maps; keys in bytewise
// order as Jetstream writes them). An op whose record is missing, does not
// match its CID or has no JSON form is skipped and counted.
//
// # time_us
//
// Jetstream stamps each event with a microsecond clock that never repeats,
// and its cursor is such a stamp. Here the stamp is derived from the log, so
// a replay reproduces the stamps the live stream sent: the first Jetstream
// event of each second gets its commit millisecond × 1000; each later one
// max(its commit millisecond × 1000, previous stamp + 1), capped at the
// second's last microsecond. Stamps rise strictly with the stream (a cap
// can repeat one only past a million events in a second) and depend only
// on their own second, whose first event the store's time index finds.
// Worked example, stamps shown as the microseconds within their second: a
// commit with three ops committed at .004, an identity event at .004 and a
// one-op commit at .005 get .004000, .004001, .004002, then .004003, then
// .005000.
//
// A replay reproduces these stamps exactly, with two exceptions. In the
// oldest second of the window, when retention has cut into it, stamps
// start again from its oldest remaining event and come out lower; a time
// cursor falling there replays that second whole, so nothing is skipped.
// And an event hidden by a takedown after it was sent no longer counts, so
// the later events of its millisecond burst restamp one microsecond lower.
//
// # Cursors
//
//   - none: live, from the next event.
//   - below 1e15: a relay seq; every event with seq > cursor (0 means the
//     whole window).
//   - at or above 1e15: a time_us; every event stamped ≥ cursor
//     (inclusive, as Jetstream's store seek), found through the time
//     index. Before the window: from the oldest event. After now: live.
//
// # Filters
//
// wantedCollections (≤ 100; exact NSIDs or prefixes "app.bsky.feed.*")
// and wantedDids (≤ 10,000) select events before anything is encoded;
// identity and account events pass every collection filter, as in
// Jetstream, and the DID filter applies to all kinds. maxMessageSizeBytes
// skips events whose message (compressed if compressing) is larger. An
// options_update text message ({"type":"options_update","payload":
// {"wantedCollections":[…],"wantedDids":[…],"maxMessageSizeBytes":N}})
// replaces all three mid-stream; with requireHello=true nothing is sent
// before the first one. compress=true (or Socket-Encoding: zstd) sends each
// event as one zstd frame, made with the v1 dictionary (DictionaryV1), in a
// binary message; JSON goes in text messages.
//
// # Fan-out
//
// One pump goroutine follows the log (woken by Notify, polling as a safety
// net), stamps and decodes each event once, and for every live subscriber
// whose filter wants it queues a reference to the event's JSON — encoded
// once, when the first subscriber wants it — or to its zstd form,
// compressed once. The bytes live in reference-counted pool frames shared by
// all queues. Each queue is bounded in messages and bytes; the pump never
// blocks on a subscriber: one whose queue is full is disconnected as too
// slow (Jetstream's policy for live subscribers), and reconnects with its
// cursor. Since the queues share their messages, what slow subscribers
// hold back together is bounded once, not per queue: every message made
// gets a mark, the bytes made up to it, and a subscriber whose oldest
// unsent message is more than Config.BacklogBytes of messages behind the
// newest is cut too (checked as it gets a message, and by a sweep of all
// every BacklogBytes/16 made, for one whose filter no longer matches).
// Every message a live subscriber pins then ends within the newest
// BacklogBytes (and a sixteenth) made.
//
// A subscriber with a cursor first replays from the log in its own
// goroutine (at most Config.MaxReplays at once), stamping from the first
// event of the cursor's second and encoding for itself, written straight
// to its socket. When a pass reaches the end of the log at or beyond the
// pump's position, it joins the live set under the pump's lock, told to
// skip the seqs it already covered: no gap, no duplicate.
//
// # Admission
//
// Every connection holds a slot from before the upgrade until its writer
// ends: at most Config.MaxSubscribers in all (one more gets HTTP 503,
// counted in relay_jetstream_rejected_total) and Config.MaxSubscribersPerIP
// per client, an IPv4 address or IPv6 /64, named by X-Forwarded-For only
// behind Config.TrustedProxies (one more gets HTTP 429, counted in
// relay_jetstream_subscribers_rejected_total{reason="per_ip"}); the
// firehose's rules (clientip.Admission).
//
// # Goroutines
//
// The pump (New to Close); per subscriber, around its fanout.Conn (the
// write path it shares with the firehose), the HTTP handler goroutine
// (writer) and one reader goroutine that applies options_update, hands
// pings to the writer and notices a disconnect. Close stops and waits for
// all of them.
//
// Not served: Jetstream v2 (/xrpc/network.bsky.jetstream.subscribeEvents,
// its own dictionary and envelope cursor).
package jetstream
