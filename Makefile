# plab: make help lists the targets. Every target that needs Debian packages
# installs the missing ones first (as root, with apt-get).

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/plab
MODULE := github.com/plab/plab

# Debian packages the node and the tests use.
DEB_PACKAGES := runc busybox-static btrfs-progs iproute2 nftables openssh-client tmux postgresql rsync

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install the Debian packages plab needs (root)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		[ "$$(id -u)" = 0 ] || { echo "need root to install:$$missing (run as root, or apt-get install them)"; exit 1; }; \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v $(GO) >/dev/null || { echo "go not found; install Go 1.26 in /usr/local/go"; exit 1; }

.PHONY: build
build: ## Build bin/plab (static)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/plab

.PHONY: check
check: ## gofmt, go vet, staticcheck, package docs, import boundaries
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) test -count=1 -run 'TestPackageDocs|TestImportBoundaries' .

.PHONY: test
# The VM part runs beside the host's tests (its log is shown when it ends):
# emulation leaves one of two cores mostly idle otherwise. The fuzzers run
# alone afterwards, for a number of inputs rather than a time: Go 1.26's
# coordinator can fail a target with "context deadline exceeded" when its
# -fuzztime ends while a worker is busy (go.dev/issue/75804, fixed in 1.27).
test: deps check ## Every test with -race, on this kernel and on a cgroup v2 kernel (VM), then the fuzzers briefly (root)
	@mkdir -p bin; \
	$(MAKE) --no-print-directory test-cgroup2 > bin/test-cgroup2.log 2>&1 & vm=$$!; \
	$(GO) tool gotestsum --format testname --format-hide-empty-pkg -- -race -count=1 -timeout 30m ./...; host=$$?; \
	echo "== waiting for the cgroup v2 VM (log: bin/test-cgroup2.log)"; \
	wait $$vm; v2=$$?; cat bin/test-cgroup2.log; \
	if [ $$v2 != 0 ] && grep -q 'Kernel panic' bin/test-cgroup2.log; then \
		echo "== the VM's guest kernel panicked (a fault of the emulated machine, not a test's); running the cgroup v2 tests once more"; \
		$(MAKE) --no-print-directory test-cgroup2; v2=$$?; \
	fi; \
	$(MAKE) --no-print-directory fuzz FUZZTIME=20000x; fz=$$?; \
	res() { [ $$1 = 0 ] && echo passed || echo FAILED; }; \
	echo; echo "== summary: host tests $$(res $$host); cgroup v2 VM tests $$(res $$v2); fuzzers $$(res $$fz)"; \
	[ $$host = 0 ] && [ $$v2 = 0 ] && [ $$fz = 0 ]

# The packages whose behaviour depends on the cgroup version, run again in a
# VM whose kernel has only cgroup v2 (hack/vm; this host runs a v1 hybrid).
V2_PKGS := sliver/cgroups sliver/oci
V2_CYCLES ?= 20
.PHONY: test-cgroup2
test-cgroup2: deps ## The cgroup-dependent tests on a cgroup-v2-only kernel in a VM (root; ~10 min under emulation)
	@mkdir -p bin/v2
	@for p in $(V2_PKGS); do $(GO) test -c -race -o bin/v2/$$(basename $$p).test ./$$p || exit 1; done
	$(GO) tool gotestsum --format testname --raw-command -- hack/vm/run --timeout 1800 \
		--env CI=$${CI:-} --env PLAB_TEST_CYCLES=$(V2_CYCLES) -- sh -c '\
		status=0; for p in $(V2_PKGS); do \
			(cd $$p && go tool test2json -t -p $(MODULE)/$$p $(CURDIR)/bin/v2/$$(basename $$p).test -test.v=test2json -test.count=1 -test.timeout=25m) || status=1; \
		done; exit $$status'

FUZZTIME ?= 1m
.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 1m; 20000x means that many inputs)
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
			out=$$($(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$pkg 2>&1) || { echo "$$out"; exit 1; }; \
			echo "$$out" | tail -n 3; \
		done; \
	done

.PHONY: bench
bench: deps build ## Measure slivers (creation, exec, destroy, memory, disk), credentials (signing, verification, handshakes) the node (redemption, convergence), sliver networking (setup, rate accuracy) the SSH gateway (session setup, scp against OpenSSH's sshd) and the CLI (slice create, exec fan-out on 10, 50, 100 nodes) (root)
	$(BIN) bench slivers --count 1000
	$(GO) test -run='^$$' -bench=. -benchtime=2s -cpu 1 ./cred/...
	PLAB_BENCH_LEVELS=1,100,1000 $(GO) test -run='^$$' -bench=Redeem -benchtime=50x -timeout=30m ./node
	PLAB_BENCH_SLICES=100 $(GO) test -run='^$$' -bench=Converge -benchtime=1x ./node
	PLAB_BENCH_SLICES=1000 $(GO) test -run='^$$' -bench=Converge -benchtime=1x -timeout=30m ./node
	$(GO) test -run='^$$' -bench=. -benchtime=1x -timeout=30m ./vnet
	./hack/sshd-deps bin/deps/sshd
	$(GO) test -run='^$$' -bench='SessionSetup|SCPThroughput' -benchtime=30x -timeout=30m ./vsh
	PLAB_BENCH_NODES=10,50,100 $(GO) test -run='^$$' -bench=Slice -benchtime=3x -timeout=30m ./svcmgr

.PHONY: demo
demo: deps build ## Slivers on this machine: create, run commands in, list (root)
	@./hack/demo.sh $(BIN)

.PHONY: clean
clean: ## Remove build output
	rm -rf bin
