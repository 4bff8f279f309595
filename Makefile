# tb: backup tools for a Docker-hosted PostgreSQL + media service.
#
#   make demo     build, start a throwaway PostgreSQL with a sample database,
#                 dump it, verify it, restore it, show the records
#   make test     every test, against a real PostgreSQL (and Docker)
#   make lint     rustfmt and clippy, warnings are errors
#   make bench    tb side by side with the standard commands (minutes)
#   make install  binaries, job scripts, settings file, cron file (or
#                 SCHEDULE=systemd units), logrotate rule; PREFIX, DESTDIR
#
# `make test`, `make demo` and `make bench` install the PostgreSQL server
# when it is missing and they run as root (else they print the command).

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib/toybox-backup
DOCDIR ?= $(PREFIX)/share/doc/toybox-backup
SYSCONFDIR ?= /etc
SYSTEMDDIR ?= $(SYSCONFDIR)/systemd/system
SCHEDULE ?= cron
PROFILE ?= release
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
CARGO ?= cargo
TOOLS = tb-dump tb-voltar tb-incr tb-prune tb-restore tb-check
SUBST = -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

.PHONY: all build test lint demo bench install install-files deps clean

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
	 for b in dump volume incr restore; do \
	   echo "$(CARGO) run --release --locked -p tb-bench -- $$b"; \
	   $(CARGO) run --release --locked -p tb-bench -- $$b; rc=$$?; \
	   echo "tb-bench $$b: exit $$rc"; \
	   if [ $$rc -gt $$status ]; then status=$$rc; fi; \
	 done; \
	 exit $$status

install: build install-files

# Everything but the build, so tests can install debug binaries:
#   make install-files PROFILE=debug DESTDIR=/tmp/x
# SCHEDULE=cron (default): /etc/cron.d/toybox-backup; SCHEDULE=systemd:
# service and timer units; SCHEDULE=none: neither. The settings file is
# installed only when it is not there yet (it holds your settings).
install-files:
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/default $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	for t in $(TOOLS); do install -m 0755 $(TARGET_DIR)/$(PROFILE)/$$t $(DESTDIR)$(BINDIR)/$$t; done
	for f in common.sh backup-database backup-volumes backup-incremental backup-status backup-drill; do \
	  sed $(SUBST) scripts/$$f > $(DESTDIR)$(LIBDIR)/$$f.tmp && chmod 0755 $(DESTDIR)$(LIBDIR)/$$f.tmp && mv $(DESTDIR)$(LIBDIR)/$$f.tmp $(DESTDIR)$(LIBDIR)/$$f; done
	chmod 0644 $(DESTDIR)$(LIBDIR)/common.sh
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	if [ ! -e $(DESTDIR)$(SYSCONFDIR)/default/toybox-backup ]; then \
	  sed $(SUBST) scripts/toybox-backup.env > $(DESTDIR)$(SYSCONFDIR)/default/toybox-backup && chmod 0600 $(DESTDIR)$(SYSCONFDIR)/default/toybox-backup; \
	else echo "keeping your $(DESTDIR)$(SYSCONFDIR)/default/toybox-backup (the new defaults: scripts/toybox-backup.env)"; fi
	sed $(SUBST) scripts/toybox-backup.logrotate > $(DESTDIR)$(SYSCONFDIR)/logrotate.d/toybox-backup && chmod 0644 $(DESTDIR)$(SYSCONFDIR)/logrotate.d/toybox-backup
	case "$(SCHEDULE)" in \
	  cron) install -d $(DESTDIR)$(SYSCONFDIR)/cron.d; \
	        sed $(SUBST) scripts/toybox-backup.cron > $(DESTDIR)$(SYSCONFDIR)/cron.d/toybox-backup; \
	        chmod 0644 $(DESTDIR)$(SYSCONFDIR)/cron.d/toybox-backup ;; \
	  systemd) install -d $(DESTDIR)$(SYSTEMDDIR); \
	        for u in scripts/systemd/*.service scripts/systemd/*.timer; do \
	          sed $(SUBST) $$u > $(DESTDIR)$(SYSTEMDDIR)/$$(basename $$u); chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/$$(basename $$u); done; \
	        echo "enable the timers: systemctl daemon-reload && systemctl enable --now toybox-backup-{database,volumes,incremental,status,drill}.timer" ;; \
	  none) ;; \
	  *) echo "SCHEDULE must be cron, systemd or none" >&2; exit 2 ;; \
	esac

clean:
	$(CARGO) clean
