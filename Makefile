# Two entry points: `make run` (serve this machine's BTF on ./run/btfd.sock)
# and `make test` (the whole suite). Both set up everything they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SOCKET ?= $(CURDIR)/run/btfd.sock
APT_PACKAGES := bpftool clang llvm libbpf-dev pahole systemd xz-utils
# The Go client (clients/go) builds offline against these, in GOPATH mode (clients/go/debian-go.sh).
GO_APT_PACKAGES := golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev \
	golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev golang-github-cilium-ebpf-dev \
	golang-golang-x-sys-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck proto proto-check sysdeps venv bench clean

$(STAMP): pyproject.toml $(wildcard clients/python/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	[ ! -f clients/python/pyproject.toml ] || $(BIN)/pip install -q -e clients/python
	touch $@

venv: $(STAMP)

# Debian packages the tests compare against (bpftool, clang, libbpf, pahole) -- installed only when missing.
sysdeps:
	@missing=""; \
	command -v bpftool >/dev/null 2>&1 || missing="$$missing bpftool"; \
	command -v clang >/dev/null 2>&1 || missing="$$missing clang"; \
	command -v llvm-objcopy >/dev/null 2>&1 || missing="$$missing llvm"; \
	[ -f /usr/include/bpf/btf.h ] || missing="$$missing libbpf-dev"; \
	command -v pahole >/dev/null 2>&1 || missing="$$missing pahole"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v xz >/dev/null 2>&1 || missing="$$missing xz-utils"; \
	for p in $(GO_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

run: $(STAMP)
	@mkdir -p $(dir $(SOCKET))
	$(BIN)/btfd --socket $(SOCKET)

test: $(STAMP) sysdeps
	$(BIN)/pytest -q
	$(MAKE) lint proto-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy btfd

proto: $(STAMP) sysdeps
	$(BIN)/python scripts/gen_proto.py

proto-check: $(STAMP) sysdeps
	$(BIN)/python scripts/gen_proto.py --check

bench: $(STAMP) sysdeps
	$(BIN)/python bench/bench_btf.py
	$(BIN)/python bench/bench_client.py
	$(BIN)/python bench/bench_server.py
	$(BIN)/python bench/bench_core.py
	$(BIN)/python bench/bench_specs.py
	$(BIN)/python bench/bench_load.py
	$(BIN)/python bench/bench_go.py

clean:
	rm -rf $(VENV) run .pytest_cache .mypy_cache .ruff_cache
