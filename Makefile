# sluice — build, test, demo and benchmark entry points.
# `make demo` and `make test` install missing Debian packages first.

SHELL     := /bin/bash
PKGS      := openssl sqlite3 zlib libmicrohttpd rocksdb rdkafka libpq avro-c
CC        ?= cc
OPT       ?= -O2
CFLAGS    ?=
CFLAGS    += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra \
             -Werror -Wno-format-truncation $(OPT) -g -fPIC -pthread -Iinclude -Isrc \
             $(shell pkg-config --cflags $(PKGS))
LDLIBS    += $(shell pkg-config --libs $(PKGS)) -lpthread -lm
B         ?= build
SONAME    := libsluice.so.0

LIB_SRC   := $(sort $(wildcard src/core/*.c src/ops/*.c src/state/*.c \
               src/checkpoint/*.c src/io/*.c src/sql/*.c src/obs/*.c src/cluster/*.c))
CLI_SRC   := $(sort $(wildcard src/cli/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(B)/%.o)
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
# the decoders' scalar (non-SIMD) paths, tested on x86-64 too (issue 10)
UNIT_BIN  += $(B)/tests/test_decode_paths_scalar
UNIT_BIN  += $(B)/tests/test_csv_block_scalar


.PHONY: print-libs
.PHONY: all deps test unit integration demo bench bench-quick clean sanitize fault fuzz \
        tsan lint allocfail postgres
all: $(B)/libsluice.a $(B)/$(SONAME) $(B)/sluice

deps:
	@bash scripts/install-deps.sh

# The libraries a program linking libsluice.a needs (tests compile examples).
print-libs:
	@echo $(LDLIBS)

$(B)/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/libsluice.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/$(SONAME): $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(LDLIBS)
	ln -sf $(SONAME) $(B)/libsluice.so

$(B)/sluice: $(CLI_OBJ) $(B)/libsluice.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(B)/libsluice.a $(LDLIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libsluice.a $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-unused-parameter -o $@ $< $(B)/libsluice.a $(LDLIBS) -lcmocka

$(B)/tests/test_decode_paths_scalar: tests/unit/test_decode_paths.c src/io/csv.c src/io/jsonl.c src/io/binrec.c $(B)/libsluice.a tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DSL_NO_SIMD -Wno-unused-parameter -o $@ tests/unit/test_decode_paths.c src/io/csv.c src/io/jsonl.c src/io/binrec.c $(B)/libsluice.a $(LDLIBS) -lcmocka

$(B)/tests/test_csv_block_scalar: tests/unit/test_csv_block.c src/io/csv.c $(B)/libsluice.a tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DSL_NO_SIMD -Wno-unused-parameter -o $@ tests/unit/test_csv_block.c src/io/csv.c $(B)/libsluice.a $(LDLIBS) -lcmocka

unit: $(UNIT_BIN)
	@fail=0; for t in $(UNIT_BIN); do echo "== $$t"; $$t || fail=1; done; exit $$fail

integration: all
	python3 -m pytest -q tests/golden
	python3 -m pytest -q tests/integration
	python3 -m pytest -q tests/fault
	python3 -m pytest -q tests/package
	python3 -m pytest -q tests/kafka
	python3 -m pytest -q tests/postgres

# PostgreSQL tests (tests/postgres): a real server started on a temporary
# directory and a free port; the kill schedule's seed comes from the commit
# (SEED=N reruns it), PG_KILLS=N sets the kills (default 8).
postgres: all
	SLUICE_BIN=$(abspath $(B))/sluice SLUICE_SEED=$(SEED) PG_KILLS=$(PG_KILLS) \
	  python3 -m pytest -q -s tests/postgres

# Fault tests (tests/fault): kill -9 at random instants and at the checkpoint
# protocol's dangerous moments, corrupt checkpoints, a full or read-only
# checkpoint disk (root only, else skipped), savepoints. The kill schedule's
# seed comes from the commit and is printed; SEED=N reruns a schedule, KILLS=N
# sets the random kills under exactly-once (the other guarantees get N/4, at
# least 5). -s shows the schedules and the duplicate counts.
fault: all
	SLUICE_BIN=$(abspath $(B))/sluice SLUICE_SEED=$(SEED) KILLS=$(KILLS) \
	  python3 -m pytest -q -s tests/fault

# CI stage: unit and golden tests built with ASan + UBSan (any report fails).
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
sanitize:
	@$(MAKE) --no-print-directory B=build-asan OPT="-O1 $(SAN)" all unit
	SLUICE_BIN=$(CURDIR)/build-asan/sluice python3 -m pytest -q tests/golden
	SLUICE_BIN=$(CURDIR)/build-asan/sluice python3 -m pytest -q tests/integration
	SLUICE_BIN=$(CURDIR)/build-asan/sluice KILLS=8 python3 -m pytest -q tests/fault
	SLUICE_BIN=$(CURDIR)/build-asan/sluice python3 -m pytest -q tests/package/test_man.py
	SLUICE_BIN=$(CURDIR)/build-asan/sluice python3 -m pytest -q tests/kafka
	SLUICE_BIN=$(CURDIR)/build-asan/sluice PG_KILLS=4 python3 -m pytest -q tests/postgres

# CI stage: ThreadSanitizer (gcc). Every unit test (the runtime, window and
# lookup tests run worker, coordinator and sampler threads), the golden tests,
# the HTTP endpoint tests and the shutdown tests against a TSan build. Reports
# go to build-tsan/reports/ so a race in a process whose exit status a test
# does not check still fails the stage.
TSAN_OPT := -O1 -fsanitize=thread -fno-omit-frame-pointer
TSAN_ENV := TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 \
              suppressions=$(CURDIR)/tests/tsan.supp \
              log_path=$(CURDIR)/build-tsan/reports/tsan"
tsan:
	@$(MAKE) --no-print-directory B=build-tsan OPT="$(TSAN_OPT)" all \
	  $(UNIT_SRC:tests/unit/%.c=build-tsan/tests/%)
	@rm -rf build-tsan/reports && mkdir -p build-tsan/reports
	@fail=0; for t in $(UNIT_SRC:tests/unit/%.c=build-tsan/tests/%); do \
	  echo "== $$t"; $(TSAN_ENV) $$t > build-tsan/reports/$$(basename $$t).out 2>&1 \
	    || { cat build-tsan/reports/$$(basename $$t).out build-tsan/reports/tsan.* \
	         2>/dev/null; fail=1; }; \
	done; exit $$fail
	$(TSAN_ENV) SLUICE_BIN=$(CURDIR)/build-tsan/sluice python3 -m pytest -q \
	  tests/golden tests/integration
	$(TSAN_ENV) SLUICE_BIN=$(CURDIR)/build-tsan/sluice python3 -m pytest -q \
	  tests/fault/test_shutdown.py
	$(TSAN_ENV) SLUICE_BIN=$(CURDIR)/build-tsan/sluice python3 -m pytest -q \
	  tests/postgres/test_pg_refresh.py
	@if ls build-tsan/reports/tsan.* >/dev/null 2>&1; then \
	  cat build-tsan/reports/tsan.*; echo "tsan: races reported"; exit 1; fi
	@echo "tsan: no reports"

# CI stage: cppcheck and clang-tidy on src/ (scripts/lint.sh; the checks
# kept and the findings accepted are in .clang-tidy, .cppcheck-suppressions
# and .clang-tidy-baseline).
lint:
	bash scripts/lint.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

demo: deps
	@$(MAKE) --no-print-directory all
	bash examples/telecom/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	bash bench/run.sh full

bench-quick: deps
	@$(MAKE) --no-print-directory all
	bash bench/run.sh quick

# The side-by-side part alone at 5 M events per workload (bench/README.md).
bench-peers: deps
	@$(MAKE) --no-print-directory all
	bash bench/run.sh quick --peers-only --peers-profile quick

# Fuzzing (libFuzzer, clang-14): each tests/fuzz/fuzz_*.c target runs
# FUZZ_SECONDS (CI: 30) over its committed seed corpus plus what it finds.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
fuzz:
	@$(MAKE) --no-print-directory B=build-fuzz CC=clang-14 \
	  OPT="-O1 -Wno-unknown-warning-option -fsanitize=fuzzer-no-link $(FUZZ_SAN)" build-fuzz/libsluice.a
	@set -e; for t in $(FUZZ_TARGETS); do \
	  clang-14 -g -O1 -Iinclude -Isrc -fsanitize=fuzzer $(FUZZ_SAN) tests/fuzz/$$t.c \
	    build-fuzz/libsluice.a $(LDLIBS) -o build-fuzz/$$t; \
	  mkdir -p build-fuzz/corpus-$$t; \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  if ! build-fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      build-fuzz/corpus-$$t tests/fuzz/corpus/$$t > build-fuzz/$$t.log 2>&1; then \
	    tail -60 build-fuzz/$$t.log; exit 1; fi; \
	  grep -E 'stat::number_of_executed_units' build-fuzz/$$t.log; \
	done

# CI stage: allocation-failure sweep (tests/allocfail). A build where the
# N-th allocation fails (SLUICE_ALLOC_FAIL=N): every N through start-up and
# a sample through a short run must exit 3 with "out of memory" and leave
# checkpoints a normal run recovers from. ALLOCFAIL_SAMPLES sets the sample.
allocfail: all
	@$(MAKE) --no-print-directory B=build-allocfail OPT="-O1 -DSL_ALLOC_FAIL" all
	SLUICE_ALLOCFAIL_BIN=$(CURDIR)/build-allocfail/sluice python3 -m pytest -q -s \
	  tests/allocfail

clean:
	rm -rf build build-asan build-fuzz build-tsan build-allocfail out

# ---- install, pkg-config, man pages, Debian package (docs/install.md) ----
# The version lives in one place: SL_VERSION in include/sluice.h (also
# sl_version() and `sluice --version`); debian/changelog must agree
# (tests/package/test_install.py checks).
VERSION    := $(shell sed -n 's/^\#define SL_VERSION "\(.*\)"/\1/p' include/sluice.h)
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
DOCDIR     ?= $(DATADIR)/doc/sluice
INSTALL    ?= install
# Man page date: SOURCE_DATE_EPOCH (set by dpkg-buildpackage from
# debian/changelog), else the last commit's, so rebuilds are reproducible.
MAN_EPOCH  := $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null),0)
MAN_DATE   := $(shell date -u -d @$(MAN_EPOCH) +%Y-%m-%d)
MAN_PAGES  := $(B)/man/sluice.1 $(B)/man/sluice-sql.7
INSTALL_DOCS := README.md CHANGELOG.md LICENSE docs/install.md docs/operations.md \
                docs/sql.md docs/checkpoints.md docs/metrics.md docs/privacy.md \
                docs/canaries.md docs/licences.md

.PHONY: man install uninstall package package-test
man: $(MAN_PAGES)

# sluice(1) from the command table (src/cli/help.c) and the job key table
$(B)/man/sluice.1: $(B)/sluice
	@mkdir -p $(dir $@)
	$(B)/sluice --man $(MAN_DATE) > $@.tmp && mv $@.tmp $@

# sluice-sql(7) from docs/sql.md
$(B)/man/sluice-sql.7: docs/sql.md scripts/md2man.py include/sluice.h
	@mkdir -p $(dir $@)
	python3 scripts/md2man.py --name sluice-sql --section 7 --date $(MAN_DATE) \
	  --source "sluice $(VERSION)" docs/sql.md > $@.tmp && mv $@.tmp $@

# The shared library is installed as libsluice.so.VERSION with the SONAME
# link libsluice.so.0 and the development link libsluice.so. sluice.pc is
# written from packaging/sluice.pc.in with this install's directories and
# the PKGS modules as Requires.private.
install: all man
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
	  $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7 \
	  $(DESTDIR)$(DATADIR)/sluice/dashboard $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 755 $(B)/sluice $(DESTDIR)$(BINDIR)/sluice
	$(INSTALL) -m 644 $(B)/$(SONAME) $(DESTDIR)$(LIBDIR)/libsluice.so.$(VERSION)
	ln -sf libsluice.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libsluice.so
	$(INSTALL) -m 644 $(B)/libsluice.a $(DESTDIR)$(LIBDIR)/libsluice.a
	$(INSTALL) -m 644 include/sluice.h $(DESTDIR)$(INCLUDEDIR)/sluice.h
	sed -e 's|@prefix@|$(PREFIX)|' -e 's|@libdir@|$(LIBDIR)|' \
	    -e 's|@includedir@|$(INCLUDEDIR)|' -e 's|@version@|$(VERSION)|' \
	    -e 's|@requires@|$(PKGS)|' packaging/sluice.pc.in \
	    > $(DESTDIR)$(LIBDIR)/pkgconfig/sluice.pc
	chmod 644 $(DESTDIR)$(LIBDIR)/pkgconfig/sluice.pc
	$(INSTALL) -m 644 $(B)/man/sluice.1 $(DESTDIR)$(MANDIR)/man1/sluice.1
	$(INSTALL) -m 644 $(B)/man/sluice-sql.7 $(DESTDIR)$(MANDIR)/man7/sluice-sql.7
	$(INSTALL) -m 644 src/obs/dashboard/* $(DESTDIR)$(DATADIR)/sluice/dashboard/
	$(INSTALL) -d $(DESTDIR)$(DATADIR)/sluice/examples
	cp -R examples/. $(DESTDIR)$(DATADIR)/sluice/examples/
	find $(DESTDIR)$(DATADIR)/sluice/examples -name __pycache__ -prune -exec rm -rf {} +
	$(INSTALL) -m 644 $(INSTALL_DOCS) $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sluice $(DESTDIR)$(LIBDIR)/libsluice.so.$(VERSION) \
	  $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libsluice.so \
	  $(DESTDIR)$(LIBDIR)/libsluice.a $(DESTDIR)$(INCLUDEDIR)/sluice.h \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/sluice.pc $(DESTDIR)$(MANDIR)/man1/sluice.1 \
	  $(DESTDIR)$(MANDIR)/man7/sluice-sql.7
	rm -rf $(DESTDIR)$(DATADIR)/sluice $(DESTDIR)$(DOCDIR)

# Debian packages sluice and libsluice-dev into build/deb/ (debian/), built
# from a copy of the tree (the files git knows, or all but build output).
package:
	rm -rf $(B)/deb && mkdir -p $(B)/deb/src
	if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(B)/deb/src; \
	else tar -c --exclude='./build*' --exclude=./out --exclude=./data . | tar -x -C $(B)/deb/src; fi
	cd $(B)/deb/src && DEB_BUILD_OPTIONS="nocheck noddebs parallel=2" \
	  dpkg-buildpackage -us -uc -b
	ls -l $(B)/deb/*.deb

# CI stage: builds the .deb and checks it (tests/package/test_deb.py).
package-test:
	SLUICE_DEB_TEST=1 python3 -m pytest -q tests/package/test_deb.py
