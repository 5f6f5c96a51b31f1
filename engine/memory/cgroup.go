package memory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
)

// Errors from reading the cgroup and /proc files behind the budget default.
var (
	// ErrCgroupFormat: a cgroup or /proc file does not have the kernel's format.
	ErrCgroupFormat = errors.New("memory: malformed cgroup or /proc file")
	// ErrCgroupFileTooLarge: a cgroup or /proc file exceeds maxProcFileBytes.
	ErrCgroupFileTooLarge = errors.New("memory: cgroup or /proc file too large")
)

// maxProcFileBytes bounds every cgroup and /proc file read; the real ones are
// a few hundred bytes (a deep /proc/self/cgroup under cgroup v1 is the
// largest, well under 4 KiB).
const maxProcFileBytes = 64 << 10

// maxCgroupDepth bounds the walk from the process's cgroup to the root.
const maxCgroupDepth = 64

// unlimitedV1 is the smallest value treated as "no limit" in cgroup v1's
// memory.limit_in_bytes, which reports PAGE_COUNTER_MAX × page size
// (9223372036854771712 on 4 KiB pages) rather than a word.
const unlimitedV1 = 1 << 62

// host names the files Apply reads. root is prepended to every absolute
// path: "" in production, a temporary directory in tests. Static value.
type host struct {
	root string
}

// read returns the file at the absolute path name under h.root.
func (h host) read(name string) ([]byte, error) {
	f, err := os.Open(h.root + name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxProcFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxProcFileBytes {
		return nil, fmt.Errorf("%w: %s", ErrCgroupFileTooLarge, name)
	}
	return b, nil
}

// cgroupHierarchy says which cgroup version holds the memory controller.
type cgroupHierarchy uint8

const (
	cgroupNone cgroupHierarchy = iota
	cgroupV1
	cgroupV2
)

// parseProcCgroup finds the memory controller's cgroup in the contents of
// /proc/self/cgroup ("id:controllers:path" lines). A v1 hierarchy listing
// "memory" wins over the v2 line, because on hybrid hosts the v2 hierarchy
// exists but has no memory controller. The returned path is cleaned and
// absolute.
func parseProcCgroup(b []byte) (cgroupHierarchy, string, error) {
	kind, where := cgroupNone, ""
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		id, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return cgroupNone, "", fmt.Errorf("%w: /proc/self/cgroup line %q", ErrCgroupFormat, line)
		}
		controllers, p, ok := bytes.Cut(rest, []byte{':'})
		if !ok || len(p) == 0 || p[0] != '/' {
			return cgroupNone, "", fmt.Errorf("%w: /proc/self/cgroup line %q", ErrCgroupFormat, line)
		}
		switch {
		case string(id) == "0" && len(controllers) == 0:
			if kind == cgroupNone {
				kind, where = cgroupV2, path.Clean(string(p))
			}
		case hasController(controllers, "memory"):
			kind, where = cgroupV1, path.Clean(string(p))
		}
	}
	return kind, where, nil
}

// hasController reports whether the comma-separated list holds name.
func hasController(list []byte, name string) bool {
	for len(list) > 0 {
		var c []byte
		c, list, _ = bytes.Cut(list, []byte{','})
		if string(c) == name {
			return true
		}
	}
	return false
}

// parseLimit parses one cgroup limit file: a decimal byte count or "max".
// It returns 0 for no limit.
func parseLimit(b []byte) (int64, error) {
	b = bytes.TrimSpace(b)
	if string(b) == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: limit %q", ErrCgroupFormat, b)
	}
	if n >= unlimitedV1 {
		return 0, nil
	}
	return n, nil
}

// cgroupLimit returns the smallest memory limit on the path from the
// process's cgroup to the root, 0 when there is none or no cgroup at all.
// Levels whose directory is not visible (a container without its own cgroup
// namespace sees the host's path) are skipped, so the walk still reaches the
// container's root.
func (h host) cgroupLimit() (int64, error) {
	b, err := h.read("/proc/self/cgroup")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	kind, dir, err := parseProcCgroup(b)
	if err != nil || kind == cgroupNone {
		return 0, err
	}
	base, files := "/sys/fs/cgroup", []string{"/memory.max", "/memory.high"}
	if kind == cgroupV1 {
		base, files = "/sys/fs/cgroup/memory", []string{"/memory.limit_in_bytes"}
	}
	var limit int64
	for depth := 0; depth < maxCgroupDepth; depth++ {
		prefix := base + dir
		if dir == "/" {
			prefix = base
		}
		for _, name := range files {
			b, err := h.read(prefix + name)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return 0, err
			}
			n, err := parseLimit(b)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", prefix+name, err)
			}
			if n > 0 && (limit == 0 || n < limit) {
				limit = n
			}
		}
		if dir == "/" {
			break
		}
		dir = path.Dir(dir)
	}
	return limit, nil
}

// parseMemTotal returns MemTotal from the contents of /proc/meminfo, in bytes.
func parseMemTotal(b []byte) (int64, error) {
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		rest, ok := bytes.CutPrefix(line, []byte("MemTotal:"))
		if !ok {
			continue
		}
		rest = bytes.TrimSpace(rest)
		num, ok := bytes.CutSuffix(rest, []byte(" kB"))
		if !ok {
			return 0, fmt.Errorf("%w: MemTotal line %q", ErrCgroupFormat, line)
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(num)), 10, 64)
		if err != nil || n <= 0 || n > 1<<53 {
			return 0, fmt.Errorf("%w: MemTotal line %q", ErrCgroupFormat, line)
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("%w: no MemTotal in /proc/meminfo", ErrCgroupFormat)
}

// memTotal returns the machine's memory in bytes from /proc/meminfo.
func (h host) memTotal() (int64, error) {
	b, err := h.read("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return parseMemTotal(b)
}
