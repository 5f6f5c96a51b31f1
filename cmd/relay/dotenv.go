package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxDotenvBytes bounds the .env file serve reads: settings, not data.
const maxDotenvBytes = 1 << 20

// readDotenv parses a .env file as the reference relay reads one (KEY=VALUE
// lines, an optional "export " prefix, # comments, values optionally in
// single or double quotes). A missing file is no error and yields nothing.
func readDotenv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDotenvBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDotenvBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxDotenvBytes)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE", path, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		} else if i := strings.Index(v, " #"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		out[k] = v
	}
	return out, sc.Err()
}

// withDotenv returns a lookup that asks env first and falls back to the
// .env values, so the real environment always wins.
func withDotenv(env func(string) (string, bool), dot map[string]string) func(string) (string, bool) {
	if len(dot) == 0 {
		return env
	}
	return func(k string) (string, bool) {
		if v, ok := env(k); ok {
			return v, true
		}
		v, ok := dot[k]
		return v, ok
	}
}
