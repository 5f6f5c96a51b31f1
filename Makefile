# The relay's build, test and benchmark entry points. CI runs `make test`.
GO        ?= go
BIN       ?= bin/relay
DATA_DIR  ?= ./data
FUZZTIME  ?= 10s
PKGS      := ./...

.PHONY: build run test test-unit test-race bench bench-e2e bench-attack bench-fanout fuzz lint demo clean install

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

# A relay command line for local runs against the bench tools: development hosts
# (localhost:PORT over ws://) are allowed and trusted, the PLC is the fake one,
# which answers at once, so the relay's pace toward the real directory
# (--plc-max-rate, 1,000 requests/s by default) is lifted.
DEV_RELAY = $(abspath $(BIN)) serve --allow-insecure-hosts --new-hosts-per-day 100000 \
	--trusted-domains localhost:* --plc-host {plc} --plc-max-rate 1000000 --seed-hosts-url= --log-level warn \
	--api-listen 127.0.0.1:2570 --admin-listen 127.0.0.1:2571
DEV_URLS  = --relay-api http://127.0.0.1:2570 --relay-metrics http://127.0.0.1:2571/metrics
E2E_CAP   ?= bench-data/e2e-1000h.cap
DEMO_CAP  ?= internal/testdata/captures/realpds-2

# The standard end-to-end scenario: 1,000 hosts, 10 consumers, full validation,
# as fast as the relay goes. The capture is generated once (signed ahead of time).
# Hosts are Zipf-skewed: the busiest carries about a quarter of all frames, so at
# full speed it alone would exceed the 5,000 events/s a trusted host may send
# (spec 14.4) and the run would measure that limit, not the relay; this run
# raises it.
bench-e2e: build
	@mkdir -p bench-data
	@test -f $(E2E_CAP) || $(BIN) generate --out $(E2E_CAP) --hosts 1000 --accounts 10 --actions 200000 --rate 2000
	rm -rf bench-data/relay-e2e
	$(BIN) bench --capture $(E2E_CAP) --consumers 10 --speed max --timeout 10m \
		--relay-cmd "$(DEV_RELAY) --data-dir bench-data/relay-e2e --trusted-events-per-second 1000000" $(DEV_URLS) \
		--json bench-data/e2e.json --png bench-data/e2e.png

# The reliability bench (PERF.md, Reliability): 100 normal hosts stream at
# real speed while every bench/attack attacker runs at once, against a relay
# with a 256 MiB memory budget. Pass: every event to every consumer, peak
# RSS within the budget, latency figures in the summary.
ATTACK_CAP ?= bench-data/attack-100h.cap
bench-attack: build
	@mkdir -p bench-data
	@test -f $(ATTACK_CAP) || $(BIN) generate --out $(ATTACK_CAP) --hosts 100 --accounts 10 --actions 45000 --rate 500
	rm -rf bench-data/relay-attack
	$(BIN) bench --capture $(ATTACK_CAP) --consumers 4 --speed 1 --latency-warmup 10s --timeout 10m --attack \
		--relay-cmd "$(DEV_RELAY) --data-dir bench-data/relay-attack --memory-budget 256MiB" $(DEV_URLS) \
		--json bench-data/attack.json --png bench-data/attack.png

# Fan-out (PERF.md, Fan-out): a relay and one splitter in front of it
# (bench/fanout-relay.sh), 500 checking consumers on the splitter, the
# bench-attack capture at real speed (~565 events/s).
bench-fanout: build
	@mkdir -p bench-data
	@test -f $(ATTACK_CAP) || $(BIN) generate --out $(ATTACK_CAP) --hosts 100 --accounts 10 --actions 45000 --rate 500
	$(BIN) bench --capture $(ATTACK_CAP) --consumers 500 --speed 1 --latency-warmup 10s --timeout 10m \
		--relay-cmd "bench/fanout-relay.sh $(abspath $(BIN)) {plc} bench-data/fanout" \
		--relay-api http://127.0.0.1:2570 --relay-metrics http://127.0.0.1:2571/metrics --json bench-data/fanout.json

# The relay against the recorded reference-PDS capture replayed at real speed by two
# local fake PDS hosts and a fake PLC, with a consumer printing live figures: no
# internet needed.
demo: build
	rm -rf bench-data/relay-demo
	@mkdir -p bench-data
	$(BIN) bench --capture $(DEMO_CAP) --consumers 1 --speed 1 --timeout 10m \
		--relay-cmd "$(DEV_RELAY) --data-dir bench-data/relay-demo" $(DEV_URLS)

clean:
	rm -rf bin
