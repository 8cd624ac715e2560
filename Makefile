# Two entry points: `make run` (serve this machine's BTF on ./run/btfd.sock, runtime
# dependencies only) and `make test` (the whole suite). Both set up everything they need first.
# Install routes: `make wheel` (dist/*.whl), `make install PREFIX=/usr/local [DESTDIR=...]`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP  := $(VENV)/.installed
SOCKET ?= $(CURDIR)/run/btfd.sock
METRICS ?= 127.0.0.1:9464
PREFIX ?= /usr/local
DESTDIR ?=
# The interpreter the installed commands run on (the one the installed wheels were built for).
INSTALL_PYTHON ?= $(shell $(PYTHON) -c 'import os, sys; print(os.path.realpath(sys.executable))')
APT_PACKAGES := bpftool clang llvm libbpf-dev pahole systemd xz-utils zsh groff-base
# The Go client (clients/go) builds offline against these, in GOPATH mode (clients/go/debian-go.sh).
GO_APT_PACKAGES := golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev \
	golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev golang-github-cilium-ebpf-dev \
	golang-golang-x-sys-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck proto proto-check sysdeps venv bench clean wheel install

# Runtime dependencies only (what `make run` needs): both distributions, editable.
$(RUNTIME): pyproject.toml clients/python/pyproject.toml clients/python/hatch_build.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e './clients/python[grpc]' -e .
	touch $@

# The dev toolchain on top (tests, linters, proto compiler).
$(STAMP): $(RUNTIME)
	$(BIN)/pip install -q -e './clients/python[grpc]' -e '.[dev]'
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
	command -v zsh >/dev/null 2>&1 || missing="$$missing zsh"; \
	command -v groff >/dev/null 2>&1 || missing="$$missing groff-base"; \
	for p in $(GO_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

run: $(RUNTIME)
	@mkdir -p $(dir $(SOCKET))
	@echo "btfd: serving this machine's BTF on $(SOCKET) (Ctrl-C stops it). In another shell:"
	@echo "  .venv/bin/btfctl lookup task_struct       # btfctl finds this socket by itself"
	@echo "  export PATH=\"$(CURDIR)/.venv/bin:\$$PATH\"   # then plain btfctl works too"
	@[ "$(SOCKET)" = "$(CURDIR)/run/btfd.sock" ] || echo "  export BTFD_SOCKET=$(SOCKET)"
	$(BIN)/btfd --socket $(SOCKET) --metrics-address $(METRICS)

# Both wheels (btfd-client, then btfd which depends on it) into $(DIST).
DIST ?= dist
wheel: $(RUNTIME)
	rm -rf $(DIST)
	$(BIN)/pip wheel -q --no-deps -w $(DIST) ./clients/python .

# A system install: the packages and their dependencies in $(PREFIX)/lib/btfd/python (private:
# no pip into the system's Python), btfd and btfctl in $(PREFIX)/bin, the units (ExecStart set
# to $(PREFIX)/bin/btfd), sysusers, docs, man pages and shell completion in their FHS places.
install: $(RUNTIME)
	rm -rf $(DESTDIR)$(PREFIX)/lib/btfd/python
	$(BIN)/pip install -q --no-compile --target $(DESTDIR)$(PREFIX)/lib/btfd/python './clients/python[grpc]' .
	rm -rf $(DESTDIR)$(PREFIX)/lib/btfd/python/bin
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/systemd/system \
	  $(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/share/doc/btfd/examples \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man8 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions
	$(BIN)/python -m btfd.cli._gen wrapper btfd.server.main $(INSTALL_PYTHON) > $(DESTDIR)$(PREFIX)/bin/btfd
	$(BIN)/python -m btfd.cli._gen wrapper btfd.cli $(INSTALL_PYTHON) > $(DESTDIR)$(PREFIX)/bin/btfctl
	chmod 755 $(DESTDIR)$(PREFIX)/bin/btfd $(DESTDIR)$(PREFIX)/bin/btfctl
	for f in systemd/btfd.service systemd/btfd-fd.socket; do \
	  sed -e 's|/usr/local/bin/btfd|$(PREFIX)/bin/btfd|g' -e 's|/usr/share/doc/btfd|$(PREFIX)/share/doc/btfd|g' \
	    $$f > $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$f); done
	for f in systemd/btfd.service.d/*.example; do \
	  sed -e 's|/usr/local/bin/btfd|$(PREFIX)/bin/btfd|g' $$f > $(DESTDIR)$(PREFIX)/share/doc/btfd/examples/$$(basename $$f); done
	install -m644 systemd/btfd.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/btfd.conf
	install -m644 README.md docs/OPERATIONS.md docs/PROTOCOL.md docs/JSON.md $(DESTDIR)$(PREFIX)/share/doc/btfd/
	$(BIN)/python -m btfd.cli._gen man btfctl > $(DESTDIR)$(PREFIX)/share/man/man1/btfctl.1
	$(BIN)/python -m btfd.cli._gen man btfd > $(DESTDIR)$(PREFIX)/share/man/man8/btfd.8
	for p in btfctl btfd; do \
	  $(BIN)/python -m btfd.cli._gen bash $$p > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$p; \
	  $(BIN)/python -m btfd.cli._gen zsh $$p > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_$$p; done
	@echo "installed under $(DESTDIR)$(PREFIX); next: systemd-sysusers && systemctl daemon-reload && systemctl enable --now btfd-fd.socket btfd.service"

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
	$(BIN)/python bench/bench_json.py
	$(BIN)/python bench/bench_node.py
	$(BIN)/python bench/bench_btfctl.py
	$(BIN)/python bench/bench_results.py
	$(BIN)/python bench/bench_attacks.py

clean:
	rm -rf $(VENV) run dist .pytest_cache .mypy_cache .ruff_cache
