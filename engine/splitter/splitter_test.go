package splitter

import (
	"slices"
	"testing"
)

// TestResumeAfterRestarts kills the upstream while the splitter is copying
// it, brings it back, then restarts the splitter itself, and checks the
// splitter's log and its consumers (live, and one resuming with its
// cursor) hold exactly the upstream's frames: no gap, no duplicate, and
// nothing was even sent twice (the splitter always asked from its newest
// seq). A small hub ring makes the consumer from cursor 0 read from disk.
func TestResumeAfterRestarts(t *testing.T) {
	src := startSource(t, "")
	n := startNode(t, fastConfig(src.url()), 64<<10)
	live := dial(t, n.url(), 0)
	next := uint64(1)
	for range 3 {
		// Publish a burst and kill the upstream at once: its hub is still
		// writing the burst, so the splitter is cut off mid-stream.
		for range 40 {
			src.add(span(next, next+99)...)
			next += 100
		}
		src.stop()
		t.Logf("upstream killed at seq %d; the splitter had %d", next-1, n.st.NewestSeq())
		waitFor(t, "the splitter to notice", func() bool { return !n.sp.Status().Connected })
		src.restart()
		waitFor(t, "the splitter to reconnect", func() bool { return n.sp.Status().Connected })
	}
	src.add(span(next, next+99)...)
	next += 100
	n.waitSeq(next - 1)
	live.waitFrames(t, int(next-1))

	n.stop()
	src.add(span(next, next+99)...)
	next += 100
	n.start()
	n.waitSeq(next - 1)
	got := live.Frames()
	resumed := dial(t, n.url(), int64(seqOf(t, got[len(got)-1])))
	got = append(got, resumed.waitFrames(t, 100)...)

	wantSeqs, want := logged(t, src.st, 0)
	if !slices.Equal(wantSeqs, span(1, next-1)) {
		t.Fatalf("source log is not 1..%d", next-1)
	}
	sameStream(t, "consumer", got, wantSeqs, want)
	_, frames := logged(t, n.st, 0)
	sameStream(t, "splitter log", frames, wantSeqs, want)
	if d := counter(t, n.set, `relay_splitter_frames_dropped_total{reason="seq_not_above_newest"}`); d != 0 {
		t.Errorf("the upstream sent %d frames twice: a reconnect did not ask from the newest seq", d)
	}
	if r := counter(t, n.set, `relay_splitter_upstream_resets_total{signal="future_cursor"}`); r != 0 {
		t.Errorf("resets counted on a plain restart: %d", r)
	}
}

// TestConsumerSwitchesSplitters moves a consumer between two splitters of
// one upstream with its cursor, several times, while the upstream keeps
// producing: it sees every frame once, in order.
func TestConsumerSwitchesSplitters(t *testing.T) {
	src := startSource(t, "")
	a := startNode(t, fastConfig(src.url()), 64<<10)
	b := startNode(t, fastConfig(src.url()), 64<<10)
	nodes := []*node{a, b}
	var got [][]byte
	cursor := int64(0)
	for round := range 6 {
		from := uint64(round*100 + 1)
		src.add(span(from, from+99)...)
		c := dial(t, nodes[round%2].url(), cursor)
		frames := c.waitFrames(t, int(from+99)-int(cursor))
		c.Close()
		got = append(got, frames...)
		cursor = int64(seqOf(t, got[len(got)-1]))
	}
	wantSeqs, want := logged(t, src.st, 0)
	sameStream(t, "switching consumer", got, wantSeqs, want)
}

// TestSeqResetHolds replaces the upstream by one whose seqs restarted: the
// splitter counts the reset, keeps serving its log without a frame out of
// order, and follows the new upstream from the first seq above its newest.
func TestSeqResetHolds(t *testing.T) {
	src := startSource(t, "")
	src.add(span(1, 100)...)
	n := startNode(t, fastConfig(src.url()), 1<<20)
	c := dial(t, n.url(), 0)
	n.waitSeq(100)
	c.waitFrames(t, 100)
	addr := src.http.addr
	src.stop()

	reset := startSource(t, addr) // a fresh log on the same address
	reset.add(span(1, 50)...)
	waitFor(t, "the reset to be counted", func() bool {
		return counter(t, n.set, `relay_splitter_upstream_resets_total{signal="future_cursor"}`) == 1 && n.sp.Status().Behind
	})
	if h := n.sp.Health(); h != nil {
		t.Errorf("health while holding: %v", h)
	}
	reset.add(span(51, 130)...)
	n.waitSeq(130)
	if n.sp.Status().Behind {
		t.Error("still behind after the upstream passed our newest seq")
	}
	// Old 1..100, then the new log's 101..130: strictly increasing.
	got := c.waitFrames(t, 130)
	if seqs := seqsOf(t, got); !slices.Equal(seqs, span(1, 130)) {
		t.Fatalf("consumer seqs %v", seqs)
	}
	late := dial(t, n.url(), 0)
	wantSeqs, want := logged(t, n.st, 0)
	sameStream(t, "late consumer", late.waitFrames(t, 130), wantSeqs, want)
	sameStream(t, "live consumer", got, wantSeqs, want)
	if r := counter(t, n.set, `relay_splitter_upstream_resets_total{signal="future_cursor"}`); r != 1 {
		t.Errorf("one reset episode counted %d times", r)
	}
}

// TestForwardJump follows an upstream that skipped seqs: the jump is
// counted, served as is, and a cursor inside it replays from the next seq.
func TestForwardJump(t *testing.T) {
	src := startSource(t, "")
	src.add(span(1, 10)...)
	src.add(span(20, 30)...)
	n := startNode(t, fastConfig(src.url()), 1<<20)
	n.waitSeq(30)
	if j := counter(t, n.set, `relay_splitter_seq_jumps_total`); j != 1 {
		t.Errorf("jumps %d, want 1", j)
	}
	want := append(span(1, 10), span(20, 30)...)
	if seqs := seqsOf(t, dial(t, n.url(), 0).waitFrames(t, len(want))); !slices.Equal(seqs, want) {
		t.Errorf("from cursor 0: %v", seqs)
	}
	if seqs := seqsOf(t, dial(t, n.url(), 15).waitFrames(t, 11)); !slices.Equal(seqs, span(20, 30)) {
		t.Errorf("from cursor 15: %v", seqs)
	}
}
