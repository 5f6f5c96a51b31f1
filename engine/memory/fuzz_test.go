package memory

import (
	"path"
	"strconv"
	"testing"
)

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"4GiB", "1.5G", "300MB", "0", "9223372036854775807", "8388608TiB", ".", "1e9", " 2 KiB", "MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseBytes(%q) = %d with error %v", s, n, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseBytes(%q) = %d, negative", s, n)
		}
		back, err := ParseBytes(strconv.FormatInt(n, 10))
		if err != nil || back != n {
			t.Fatalf("round trip of %d: %d, %v", n, back, err)
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	for _, s := range []string{
		"0::/\n",
		"0::/system.slice/relay.service\n",
		"9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n",
		"4:memory,blkio:/../a/./b\n",
		"garbage",
		"1:cpu:\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, p, err := parseProcCgroup(b)
		if err != nil || kind == cgroupNone {
			return
		}
		if p == "" || p[0] != '/' || path.Clean(p) != p {
			t.Fatalf("parseProcCgroup(%q) path %q is not clean and absolute", b, p)
		}
	})
}

func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"max\n", "4294967296\n", "9223372036854771712", "-1", "", "lots"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseLimit(b)
		if n < 0 || (err != nil && n != 0) {
			t.Fatalf("parseLimit(%q) = %d, %v", b, n, err)
		}
	})
}

func FuzzParseMemTotal(f *testing.F) {
	for _, s := range []string{"MemTotal:       24597440 kB\n", "MemTotal: 12\n", "", "MemTotal: 99999999999999999 kB"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseMemTotal(b)
		if (err == nil && n <= 0) || (err != nil && n != 0) {
			t.Fatalf("parseMemTotal(%q) = %d, %v", b, n, err)
		}
	})
}
