// Unit tests of small pieces of the relay without a test file of their own.
package relay

import "testing"

func TestTracker(t *testing.T) {
	var tr tracker
	tr.reset(10)
	g := tr.register(11)
	tr.register(12)
	tr.register(15)
	if low, moved := tr.complete(g, 12); moved || low != 10 {
		t.Fatalf("completing 12 before 11 moved the mark to %d", low)
	}
	if low, _ := tr.complete(g, 11); low != 12 {
		t.Fatalf("low %d, want 12", low)
	}
	tr.reset(0)
	if low, moved := tr.complete(g, 15); moved || low != 0 {
		t.Fatal("a completion from an old generation moved the mark")
	}
	g2 := tr.register(1)
	if low, _ := tr.complete(g2, 1); low != 1 {
		t.Fatalf("low %d, want 1", low)
	}
	if tr.lastSeq() != 1 {
		t.Fatal("lastSeq")
	}
}

func TestNormalizeHostname(t *testing.T) {
	f := func(in string, insecure bool, want string) {
		t.Helper()
		got, err := NormalizeHostname(in, insecure)
		if want == "" {
			if err == nil {
				t.Errorf("%q accepted as %q", in, got)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	f("PDS.Example.com", false, "pds.example.com")
	f("https://pds.example.com/", false, "pds.example.com")
	f("http://pds.example.com", false, "")
	f("localhost:2583", false, "")
	f("localhost:2583", true, "localhost:2583")
	f("ws://localhost:2583", true, "localhost:2583")
	f("pds-1.localhost:2583", true, "pds-1.localhost:2583")
	f("wss://PDS-1.localhost:2583", true, "pds-1.localhost:2583")
	f("pds-1.localhost:2583", false, "")
	f("-x.localhost:2583", true, "")
	f("127.0.0.1", true, "")
	f("example", false, "")
	f("pds.example.com:443", false, "")
	f("a..b", false, "")
}

func TestBucket(t *testing.T) {
	var b bucket
	now := testEpoch
	b.init(2, now)
	for i := 0; i < 2; i++ {
		if _, ok := b.take(now); !ok {
			t.Fatal("burst refused")
		}
	}
	wait, ok := b.take(now)
	if ok || wait <= 0 {
		t.Fatalf("third event in the same instant: ok=%v wait=%v", ok, wait)
	}
}
