package syntax

import "testing"

func benchCheck(b *testing.B, fn func([]byte) error, in string) {
	buf := []byte(in)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := fn(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckDIDPLC(b *testing.B) {
	benchCheck(b, CheckDID, "did:plc:7iza6de2dwap2sbkpav7c6c6")
}

func BenchmarkCheckBlessedDIDPLC(b *testing.B) {
	benchCheck(b, CheckBlessedDID, "did:plc:7iza6de2dwap2sbkpav7c6c6")
}

func BenchmarkCheckHandle(b *testing.B) { benchCheck(b, CheckHandle, "alice.bsky.social") }

func BenchmarkCheckRepoPath(b *testing.B) {
	benchCheck(b, CheckRepoPath, "app.bsky.feed.post/3lmxrbvasth2t")
}

func BenchmarkCheckTID(b *testing.B) { benchCheck(b, CheckTID, "3lmxrbvasth2t") }

func BenchmarkParseDatetime(b *testing.B) {
	benchCheck(b, func(p []byte) error { _, err := ParseDatetime(p); return err }, "2025-04-16T23:40:33.895Z")
}

func BenchmarkTIDClockAppendNext(b *testing.B) {
	c := NewTIDClock(1, nil)
	buf := make([]byte, 0, TIDLen)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.AppendNext(buf[:0])
	}
}
