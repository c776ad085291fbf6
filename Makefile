# mound: see README.md.
GO ?= go
BIN := bin
LISTEN ?= 127.0.0.1:8980
HTTP ?= 127.0.0.1:8981
DATA ?= .mound

.PHONY: build run test test-deps bench bench-inputs fuzz clean

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Starts the server on an embedded default store in ./.mound, with one
# local worker, and prints how to point Bazel at it.
run: build
	LISTEN=$(LISTEN) HTTP=$(HTTP) DATA=$(DATA) bash scripts/run.sh

# Installs what the tests need when missing (Bazel, fuse3), then runs every
# test, including the conformance suite against a real mound and a real
# Bazel build; then the FUSE file system and the worker again under -race
# (they serve many actions at once), and the conformance suite's execution
# cases once more on a worker with hardlinked inputs (the first run had
# FUSE inputs, auto's choice where FUSE works).
test: test-deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -race -count=1 -timeout 10m ./fuseinput/ ./workerd/
	$(GO) test -count=1 -timeout 10m -run TestExecute ./conformance/ -args -workerd-inputs=hardlink

test-deps:
	bash scripts/install-test-deps.sh

# Measures mound against a floor gRPC server of the benchmark's own; see
# BENCHMARKS.md.
bench: build
	bash scripts/bench.sh
	bash scripts/bench-inputs.sh

# Only the FUSE-against-hardlink input benchmarks (ROUNDS=3 by default).
bench-inputs:
	bash scripts/bench-inputs.sh

# Runs each fuzz target for a while (the seed corpus runs in make test).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./cas/digest -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./cas/resource -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./cas/service -run '^$$' -fuzz FuzzChunkCodec -fuzztime $(FUZZTIME)

clean:
	rm -rf $(BIN)

# Regenerates the worker protocol's Go code (checked in). Needs protoc
# (Debian protobuf-compiler) and the Go plugins, installed here when missing.
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
.PHONY: proto
proto:
	command -v protoc >/dev/null || (apt-get update && apt-get install -y protobuf-compiler)
	GOBIN=$(CURDIR)/bin/tools $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/bin/tools $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(CURDIR)/bin/tools:$$PATH protoc -I scheduler/workerpb -I /usr/include \
		--go_out=. --go_opt=module=github.com/mound-build/mound \
		--go-grpc_out=. --go-grpc_opt=module=github.com/mound-build/mound \
		scheduler/workerpb/worker.proto
