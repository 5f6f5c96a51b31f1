package harness

import (
	"hash/maphash"
	"time"

	"github.com/atrelay/relay/bench/capture"
)

// schedule knows when the replay sends each commit, relative to the gate
// release: the harness's answer to "when was (did, rev) sent?".
//
// bench/replay has no send hook, so rather than proxying every upstream
// frame (an extra hop and a frame parse inside the measured path), the
// schedule recomputes the replay's own pacing: a host releases frame i at
// max over k ≤ i of (recvTime[k] − base) / speed after Start, base being
// the earliest first frame of any host (replay.Replayer.Start and
// host.pace). As fast as possible releases everything at once, so the
// offset is zero and latency is measured from the gate release: it then
// includes the time the frame waited in the replay host and the relay.
//
// It is built once by newSchedule and read-only afterwards, so consumers
// share it without locks.
type schedule struct {
	seed   maphash.Seed
	sendAt map[uint64]time.Duration // hash(did, rev) of a #commit → release offset
	// cold holds the keys of commits that come less than coldWindow
	// after their account's first frame in the capture (at the replay's
	// pace): a relay meeting the account there resolves its DID document
	// before it can check the commit, and the account's next frames wait
	// for the same document, so their latency is the directory's as much
	// as the relay's (Report.LatencyKnown leaves them out).
	cold    map[uint64]struct{}
	commits int64         // commits served
	frames  int64         // frames served (what the replay hosts will send)
	last    time.Duration // release offset of the last frame
	// warmup is Config.LatencyWarmup: commits released before it are
	// not timed.
	warmup time.Duration
}

// coldWindow is how long after an account's first frame its commits count
// as cold (schedule.cold): the fake directory's slowest answers (400 ms),
// a hedged request (750 ms) and a retry fit in it.
const coldWindow = 2 * time.Second

// paced is a capture time difference at the replay's speed; as fast as
// possible (speed ≤ 0) keeps the capture's.
func paced(d int64, speed float64) time.Duration {
	if speed <= 0 {
		return time.Duration(d)
	}
	return time.Duration(float64(d) / speed)
}

// commitKey hashes a (did, rev) pair with the schedule's seed; h is the
// caller's scratch hash, so keying never allocates.
func commitKey(h *maphash.Hash, did, rev []byte) uint64 {
	h.Reset()
	h.Write(did)
	h.WriteByte(0)
	h.Write(rev)
	return h.Sum64()
}

// newSchedule reads every record of c once and mirrors the replay's
// choices: records without a seq, or with a seq not above their host's
// previous one, are not served.
func newSchedule(c *capture.Capture, speed float64) (*schedule, error) {
	s := &schedule{seed: maphash.MakeSeed(), sendAt: map[uint64]time.Duration{}, cold: map[uint64]struct{}{}}
	firstAt := map[uint64]int64{} // hash of every DID met so far → its first frame's receive time
	type hostState struct {
		lastSeq int64
		firstAt int64 // receive time of the first served frame
		maxRecv int64 // running max of receive times: the pacer never goes back
		seen    bool
	}
	hosts := make([]hostState, len(c.Header.Sources))
	// The base (earliest first frame over hosts) is known only after the
	// pass, so keep raw times and convert at the end.
	type pending struct {
		key  uint64
		recv int64
	}
	var commits []pending
	var h maphash.Hash
	h.SetSeed(s.seed)
	var fi frameInfo
	err := c.Each(func(rec capture.Record) error {
		hs := &hosts[rec.Source]
		if rec.Seq <= 0 || (hs.seen && rec.Seq <= hs.lastSeq) {
			return nil
		}
		if !hs.seen {
			hs.firstAt, hs.maxRecv = rec.RecvTime, rec.RecvTime
		}
		hs.seen, hs.lastSeq = true, rec.Seq
		hs.maxRecv = max(hs.maxRecv, rec.RecvTime)
		s.frames++
		if scanFrame(rec.Frame, &fi) != nil {
			return nil
		}
		since := time.Duration(0)
		if len(fi.did) > 0 {
			dk := commitKey(&h, fi.did, nil)
			if first, ok := firstAt[dk]; ok {
				since = paced(hs.maxRecv-first, speed)
			} else {
				firstAt[dk] = hs.maxRecv
			}
		}
		if !fi.isCommit() {
			return nil
		}
		s.commits++
		key := commitKey(&h, fi.did, fi.rev)
		commits = append(commits, pending{key: key, recv: hs.maxRecv})
		if since < coldWindow {
			s.cold[key] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	base, first := int64(0), true
	for _, hs := range hosts {
		if hs.seen && (first || hs.firstAt < base) {
			base, first = hs.firstAt, false
		}
	}
	offset := func(recv int64) time.Duration {
		if speed <= 0 {
			return 0
		}
		return time.Duration(float64(recv-base) / speed)
	}
	for _, p := range commits {
		s.sendAt[p.key] = offset(p.recv)
	}
	for _, hs := range hosts {
		if hs.seen {
			s.last = max(s.last, offset(hs.maxRecv))
		}
	}
	return s, nil
}
