# rollout — see README.md. Targets work on a fresh machine with Go installed.
GO ?= go
PKGS := ./...

.PHONY: all build test lint bench demo conformance fuzz clean azurite

all: lint test

build:
	$(GO) build -o bin/rollout ./cmd/rollout

# The README's test command: formatting, vet, then every test (unit, emulator-backed, CLI scripts,
# the blob state backend against Azurite).
test: lint azurite
	$(GO) test -count=1 -timeout 40m $(PKGS)

# Azurite, the Azure Storage emulator the blob state tests run against, pinned in
# statestore/azblob/testdata/azurite/package-lock.json. Without npm the blob tests skip, unless
# ROLLOUT_REQUIRE_AZURITE is set (CI sets it), which makes them fail instead.
AZURITE := statestore/azblob/testdata/azurite
azurite:
	@if [ -x $(AZURITE)/node_modules/.bin/azurite-blob ]; then :; \
	  elif command -v npm >/dev/null; then cd $(AZURITE) && npm ci --no-audit --no-fund --loglevel=error; \
	  else echo "npm not found: the blob state tests will skip (Azurite is not installed)"; fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Benchmarks; figures go to BENCHMARKS.md with the command that produced them.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS)

# The official Node service SDK (npm azure-iothub, pinned in conformance/package-lock.json) against the
# emulator on 127.0.0.1:443 (the SDK always uses port 443; binding it needs root, as in CI), then the
# official device SDK (azure-iot-device and azure-iot-device-mqtt, pinned in
# emulator/testdata/device-sdk/package-lock.json) over MQTT and MQTT over WebSockets, with a SAS token
# renewal and module clients.
conformance: build
	cd conformance && npm ci --no-audit --no-fund --loglevel=error
	./conformance/run.sh bin/rollout
	cd emulator/testdata/device-sdk && npm ci --no-audit --no-fund --loglevel=error
	./conformance/run.sh bin/rollout emulator/testdata/device-sdk/fleet.yaml emulator/testdata/device-sdk/smoke.js

# The README's first command: a rollout on the embedded emulator showing a canary, a passing wave, a
# failing wave and its rollback. Exit 3 (rolled back) is the expected ending.
demo: build
	./bin/rollout apply --emulate testdata/fleets/demo.yaml plans/demo/demo.yaml --report bin/demo-report.html; \
	  code=$$?; if [ $$code -ne 3 ]; then echo "demo: expected exit 3 (rolled back), got $$code"; exit 1; fi; \
	  echo "demo: rolled back as expected; open bin/demo-report.html for the timeline and per-device outcomes"

clean:
	rm -rf bin
