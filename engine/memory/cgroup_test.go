package memory

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fakeHost builds a host whose files are the given map (absolute path →
// contents) under a temporary root.
func fakeHost(t *testing.T, files map[string]string) host {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return host{root: root}
}

func TestCgroupLimit(t *testing.T) {
	f := func(name string, files map[string]string, want int64, wantErr error) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			got, err := fakeHost(t, files).cgroupLimit()
			if !errors.Is(err, wantErr) || got != want {
				t.Fatalf("cgroupLimit() = %d, %v; want %d, %v", got, err, want, wantErr)
			}
		})
	}
	f("no proc file", nil, 0, nil)
	f("v2 namespaced root", map[string]string{
		"/proc/self/cgroup":         "0::/\n",
		"/sys/fs/cgroup/memory.max": "4294967296\n",
	}, 4<<30, nil)
	f("v2 unlimited", map[string]string{
		"/proc/self/cgroup":         "0::/\n",
		"/sys/fs/cgroup/memory.max": "max\n",
	}, 0, nil)
	f("v2 systemd service, high below max, parent tighter", map[string]string{
		"/proc/self/cgroup": "0::/system.slice/relay.service\n",
		"/sys/fs/cgroup/system.slice/relay.service/memory.max":  "4831838208\n",
		"/sys/fs/cgroup/system.slice/relay.service/memory.high": "4294967296\n",
		"/sys/fs/cgroup/system.slice/memory.max":                "2147483648\n",
		"/sys/fs/cgroup/system.slice/memory.high":               "max\n",
	}, 2<<30, nil)
	f("v2 host path not visible", map[string]string{
		"/proc/self/cgroup":         "0::/kubepods/pod1/ctr\n",
		"/sys/fs/cgroup/memory.max": "1073741824\n",
	}, 1<<30, nil)
	f("v1 hybrid host", map[string]string{
		"/proc/self/cgroup": "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n",
		"/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "3221225472\n",
		"/sys/fs/cgroup/memory/memory.limit_in_bytes":                 "9223372036854771712\n",
		"/sys/fs/cgroup/memory.max":                                   "1\n",
	}, 3<<30, nil)
	f("v1 unlimited", map[string]string{
		"/proc/self/cgroup":                             "4:memory,blkio:/a\n",
		"/sys/fs/cgroup/memory/a/memory.limit_in_bytes": "9223372036854771712\n",
	}, 0, nil)
	f("escape attempt stays under the cgroup root", map[string]string{
		"/proc/self/cgroup":         "0::/../../etc\n",
		"/sys/fs/cgroup/memory.max": "1073741824\n",
	}, 1<<30, nil)
	f("malformed proc line", map[string]string{
		"/proc/self/cgroup": "garbage\n",
	}, 0, ErrCgroupFormat)
	f("malformed limit", map[string]string{
		"/proc/self/cgroup":         "0::/\n",
		"/sys/fs/cgroup/memory.max": "lots\n",
	}, 0, ErrCgroupFormat)
}

func TestCgroupLimitThisMachine(t *testing.T) {
	// The real files must parse, whatever the limit is.
	limit, err := host{}.cgroupLimit()
	if err != nil {
		t.Fatalf("cgroupLimit on this machine: %v", err)
	}
	t.Logf("cgroup memory limit here: %d (0 = none)", limit)
	total, err := host{}.memTotal()
	if err != nil || total <= 0 {
		t.Fatalf("memTotal on this machine = %d, %v", total, err)
	}
}

func TestParseMemTotal(t *testing.T) {
	f := func(in string, want int64, wantErr error) {
		t.Helper()
		got, err := parseMemTotal([]byte(in))
		if !errors.Is(err, wantErr) || got != want {
			t.Errorf("parseMemTotal(%q) = %d, %v; want %d, %v", in, got, err, want, wantErr)
		}
	}
	f("MemTotal:       24597440 kB\nMemFree: 1 kB\n", 24597440<<10, nil)
	f("MemFree: 1 kB\n", 0, ErrCgroupFormat)
	f("MemTotal: 12\n", 0, ErrCgroupFormat)
	f("MemTotal: -4 kB\n", 0, ErrCgroupFormat)
	f("MemTotal: 99999999999999999 kB\n", 0, ErrCgroupFormat)
}

func TestReadTooLarge(t *testing.T) {
	h := fakeHost(t, map[string]string{"/proc/meminfo": string(make([]byte, maxProcFileBytes+1))})
	if _, err := h.memTotal(); !errors.Is(err, ErrCgroupFileTooLarge) {
		t.Fatalf("memTotal on oversized file: %v", err)
	}
}
