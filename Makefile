# sockbench: `make bench` runs the quick profile; `make test` is what CI runs.
GO            ?= go
BIN           := bin/sockbench
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.7.0
PROFILE       ?= quick
TEST_TIMEOUT  ?= 8m
PKGS          := ./...

.PHONY: all build test lint fmt-check vet staticcheck race bench clean pi release docker test-emulated test-emulated-arm64 test-emulated-armv6

all: build

# What a binary says it is (sockbench version; suite_version and commit in
# results): from git, or give VERSION= and COMMIT= where there is none.
# -buildvcs=auto lets Go stamp the revision and its time too, even where
# GOFLAGS holds -buildvcs=false (a flag on the command line wins); Go
# finds nothing to stamp in a git worktree or without .git, hence -X.
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT        ?= $(shell c=$$(git rev-parse --short=12 HEAD 2>/dev/null) && { git diff --quiet HEAD -- 2>/dev/null || c=$$c-dirty; } && echo $$c)
STAMP         := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build:
	$(GO) build -buildvcs=auto -ldflags '$(STAMP)' -o $(BIN) ./cmd/sockbench

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
# The Dockerfile builds with the same flags (cmd/sockbench's tests check).
LDFLAGS       := -s -w $(STAMP)
CROSS          = CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'

pi:
	@mkdir -p dist
	GOOS=linux GOARCH=arm64       $(CROSS) -o dist/sockbench-linux-arm64 ./cmd/sockbench
	GOOS=linux GOARCH=arm GOARM=6 $(CROSS) -o dist/sockbench-linux-armv6 ./cmd/sockbench
	GOOS=linux GOARCH=arm GOARM=7 $(CROSS) -o dist/sockbench-linux-armv7 ./cmd/sockbench

# Release archives: one tar.gz per OS/arch holding the binary, LICENSE and
# README.md, and SHA256SUMS over the archives and the bare binaries (make
# pi's, copied to a Pi as they are). Entries are sorted, owned by 0:0 and
# dated at the commit, so one commit gives the same archives (GNU tar).
RELEASE_TARGETS := linux-amd64 linux-arm64 linux-armv6 linux-armv7 darwin-amd64 darwin-arm64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

release: pi
	GOOS=linux  GOARCH=amd64 $(CROSS) -o dist/sockbench-linux-amd64  ./cmd/sockbench
	GOOS=darwin GOARCH=amd64 $(CROSS) -o dist/sockbench-darwin-amd64 ./cmd/sockbench
	GOOS=darwin GOARCH=arm64 $(CROSS) -o dist/sockbench-darwin-arm64 ./cmd/sockbench
	@rm -f dist/sockbench-*.tar.gz dist/SHA256SUMS
	@set -e; for t in $(RELEASE_TARGETS); do \
	  d=sockbench-$(VERSION)-$$t; rm -rf dist/$$d; mkdir dist/$$d; \
	  cp dist/sockbench-$$t dist/$$d/sockbench; cp LICENSE README.md dist/$$d/; \
	  tar -C dist --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$(SOURCE_DATE_EPOCH) -cf - $$d | gzip -9n > dist/$$d.tar.gz; \
	  rm -r dist/$$d; echo dist/$$d.tar.gz; \
	done
	cd dist && sha256sum sockbench-* > SHA256SUMS
	@echo "dist/SHA256SUMS (check: cd dist && sha256sum -c SHA256SUMS)"

# An image like fortio's: docker run --rm --network host sockbench load ...
# Exits 0 with one line, building nothing, where no Docker engine answers.
DOCKER        ?= docker
IMAGE         ?= sockbench
docker:
	@if ! command -v $(DOCKER) >/dev/null 2>&1; then \
	  echo "make docker: skipped: no $(DOCKER) command here; no image built"; exit 0; \
	elif ! $(DOCKER) info >/dev/null 2>&1; then \
	  echo "make docker: skipped: no Docker engine answers here ($(DOCKER) info failed); no image built"; exit 0; \
	else \
	  set -x; $(DOCKER) build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE):$(VERSION) -t $(IMAGE):latest .; \
	fi

# The conformance suite and the load generator's tests on Pi CPUs under
# qemu-user (slow: timeouts scale by SOCKBENCH_TEST_SCALE). Needs qemu-user.
# The suite runs through each model; its own self-tests run natively only.
# One package at a time (-p 1): an emulated process start costs tens of
# milliseconds, and four emulated packages sharing two cores stretched the
# per-connection tests past their waits.
EMU_PKGS      := ./protocol/ ./models/ ./models/threaded/ ./models/eventloop/ ./models/prefork/ ./models/bare/ ./loadgen/
# The two emulated runs side by side: most of their time is the suite's
# scaled waits, not CPU, so together they take little more than one (each
# package's tests still run one package at a time). Each run's output is
# printed whole when it ends.
test-emulated:
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-emulated-arm64 test-emulated-armv6

test-emulated-arm64:
	SOCKBENCH_EMULATED=1 SOCKBENCH_TEST_SCALE=$${SOCKBENCH_TEST_SCALE:-8} GOARCH=arm64 $(GO) test -p 1 -count=1 -timeout 20m -exec qemu-aarch64 $(EMU_PKGS)

test-emulated-armv6:
	SOCKBENCH_EMULATED=1 SOCKBENCH_TEST_SCALE=$${SOCKBENCH_TEST_SCALE:-8} GOARCH=arm GOARM=6 $(GO) test -p 1 -count=1 -timeout 20m -exec qemu-arm $(EMU_PKGS)

clean:
	rm -rf bin dist
