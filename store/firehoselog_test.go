package store

import "testing"

// TestFirehoseLogNewestSeqWithoutEvents: a store whose seq was moved forward
// (a relay switch) but holds no event yet still reports that newest seq, so
// consumers' cursors from the previous relay are not FutureCursor.
func TestFirehoseLogNewestSeqWithoutEvents(t *testing.T) {
	st, err := Open(t.TempDir(), Options{BlockCacheBytes: 8 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, ok := (FirehoseLog{St: st}).NewestSeq(); ok || n != 0 {
		t.Errorf("fresh store: newest %d %v, want none", n, ok)
	}
	if _, err := st.AdvanceSeq(5000); err != nil {
		t.Fatal(err)
	}
	if n, ok := (FirehoseLog{St: st}).NewestSeq(); !ok || n != 4999 {
		t.Errorf("after AdvanceSeq(5000): newest %d %v, want 4999", n, ok)
	}
}
