# sockbench: `make bench` runs the quick profile; `make test` is what CI runs.
GO            ?= go
BIN           := bin/sockbench
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.7.0
PROFILE       ?= quick
TEST_TIMEOUT  ?= 8m
PKGS          := ./...

.PHONY: all build test lint fmt-check vet staticcheck race bench clean

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

clean:
	rm -rf bin dist
