# tb: backup tools for a Docker-hosted PostgreSQL + media service.
#
#   make demo     build, start a throwaway PostgreSQL with a sample database,
#                 dump it, verify it, restore it, show the records
#   make test     every test, against a real PostgreSQL (and Docker)
#   make lint     rustfmt and clippy, warnings are errors
#   make bench    tb side by side with the standard commands (minutes)
#   make install  binaries into $(DESTDIR)$(PREFIX)/bin
#
# `make test`, `make demo` and `make bench` install the PostgreSQL server
# when it is missing and they run as root (else they print the command).

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
TOOLS = tb-dump tb-voltar tb-incr tb-restore tb-check

.PHONY: all build test lint demo bench install deps clean

all: build

build:
	$(CARGO) build --release --locked

deps:
	tests/ensure-deps
	@if tests/fetch-pg16 >/dev/null 2>&1; then echo "PostgreSQL 16 for the version tests: ready"; \
	 else echo "note: PostgreSQL 16 could not be fetched (pip, PyPI): its 2 tests will SKIP"; fi
	@if docker info >/dev/null 2>&1; then echo "Docker engine: available"; \
	 else echo "note: no Docker engine: the Docker tests will SKIP"; fi
	@if [ "$$(id -u)" != 0 ]; then echo "note: not root: the full-disk test will SKIP"; fi

test: deps
	$(CARGO) test --workspace --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

demo: deps build
	tests/demo

bench: deps build
	@status=0; \
	 for b in dump volume incr; do \
	   echo "$(CARGO) run --release --locked -p tb-bench -- $$b"; \
	   $(CARGO) run --release --locked -p tb-bench -- $$b; rc=$$?; \
	   echo "tb-bench $$b: exit $$rc"; \
	   if [ $$rc -gt $$status ]; then status=$$rc; fi; \
	 done; \
	 exit $$status

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	for t in $(TOOLS); do install -m 0755 target/release/$$t $(DESTDIR)$(PREFIX)/bin/$$t; done

clean:
	$(CARGO) clean
