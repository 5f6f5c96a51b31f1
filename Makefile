# The relay's build, test and benchmark entry points. CI runs `make test`.
GO        ?= go
BIN       ?= bin/relay
DATA_DIR  ?= ./data
FUZZTIME  ?= 10s
PKGS      := ./...

.PHONY: build run test test-unit test-race bench bench-e2e fuzz lint demo clean

build:
	$(GO) build -o $(BIN) ./cmd/relay

# Installs bin/relay, the systemd unit and /etc/relay/relay.env (kept if
# present) on a Debian server; run `make build` first, then this as root.
.PHONY: install
install:
	deploy/install.sh $(BIN)

run: build
	$(BIN) serve --data-dir $(DATA_DIR)

test: lint test-unit test-race

test-unit:
	$(GO) test -count=1 -timeout 15m $(PKGS)

# The race detector on the packages with shared mutable state.
test-race:
	$(GO) test -count=1 -race -timeout 15m ./pool/... ./engine/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m $(PKGS)

# Short coverage-guided runs of every fuzz target (seed corpora already run in `make test`).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin
