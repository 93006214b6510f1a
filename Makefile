# sockbench: `make bench` runs the quick profile; `make test` is what CI runs.
GO            ?= go
BIN           := bin/sockbench
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.7.0
PROFILE       ?= quick
TEST_TIMEOUT  ?= 8m
PKGS          := ./...

.PHONY: all build test lint fmt-check vet staticcheck race bench clean pi release test-emulated

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sockbench

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

lint: fmt-check vet staticcheck

race:
	$(GO) test -race -timeout $(TEST_TIMEOUT) $(PKGS)

test: lint race

bench: build
	$(BIN) bench --profile $(PROFILE)

# Cross-builds. CGO is off so one static binary copies straight onto a Pi.
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT        ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS       := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
CROSS          = CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'

pi:
	@mkdir -p dist
	GOOS=linux GOARCH=arm64       $(CROSS) -o dist/sockbench-linux-arm64 ./cmd/sockbench
	GOOS=linux GOARCH=arm GOARM=6 $(CROSS) -o dist/sockbench-linux-armv6 ./cmd/sockbench
	GOOS=linux GOARCH=arm GOARM=7 $(CROSS) -o dist/sockbench-linux-armv7 ./cmd/sockbench

release: pi
	GOOS=linux  GOARCH=amd64 $(CROSS) -o dist/sockbench-linux-amd64  ./cmd/sockbench
	GOOS=darwin GOARCH=amd64 $(CROSS) -o dist/sockbench-darwin-amd64 ./cmd/sockbench
	GOOS=darwin GOARCH=arm64 $(CROSS) -o dist/sockbench-darwin-arm64 ./cmd/sockbench
	cd dist && sha256sum sockbench-* > SHA256SUMS

# The conformance suite and the load generator's tests on Pi CPUs under
# qemu-user (slow: timeouts scale by SOCKBENCH_TEST_SCALE). Needs qemu-user.
# The suite runs through each model; its own self-tests run natively only.
# One package at a time (-p 1): an emulated process start costs tens of
# milliseconds, and four emulated packages sharing two cores stretched the
# per-connection tests past their waits.
EMU_PKGS      := ./protocol/ ./models/ ./models/threaded/ ./models/eventloop/ ./models/prefork/ ./models/bare/ ./loadgen/
test-emulated:
	SOCKBENCH_EMULATED=1 SOCKBENCH_TEST_SCALE=$${SOCKBENCH_TEST_SCALE:-8} GOARCH=arm64 $(GO) test -p 1 -count=1 -timeout 20m -exec qemu-aarch64 $(EMU_PKGS)
	SOCKBENCH_EMULATED=1 SOCKBENCH_TEST_SCALE=$${SOCKBENCH_TEST_SCALE:-8} GOARCH=arm GOARM=6 $(GO) test -p 1 -count=1 -timeout 20m -exec qemu-arm $(EMU_PKGS)

clean:
	rm -rf bin dist
