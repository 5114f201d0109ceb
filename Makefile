# rollout — see README.md. Targets work on a fresh machine with Go installed.
GO ?= go
PKGS := ./...

.PHONY: all build test lint bench demo conformance fuzz clean

all: lint test

build:
	$(GO) build -o bin/rollout ./cmd/rollout

# The README's test command: formatting, vet, then every test (unit, emulator-backed, CLI scripts).
test: lint
	$(GO) test -count=1 -timeout 40m $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Benchmarks; figures go to BENCHMARKS.md with the command that produced them.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS)

# The official Node service SDK (npm azure-iothub, pinned in conformance/package-lock.json) against the
# emulator on 127.0.0.1:443 (the SDK always uses port 443; binding it needs root, as in CI).
conformance: build
	cd conformance && npm ci --no-audit --no-fund --loglevel=error
	./conformance/run.sh bin/rollout

clean:
	rm -rf bin
