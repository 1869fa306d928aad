# Makefile for the anomaly extension (PGXS).
#
#   make                 build anomaly.so
#   make install         install it into the server found by PG_CONFIG
#   make installcheck    pg_regress (sql/ + expected/) against a running server
#   make unit            build the engine unit tests, test/unit/test_*
#   make bench           build the benchmarks, bench/*.c -> bench/<name>
#   make test            every suite, on a throwaway cluster (test/run_all.sh)
#   make demo            the demo, on a throwaway cluster (demo/run.sh)
#
# WERROR=1 turns warnings into errors (CI sets it).  SANITIZE=1 builds the
# unit tests and benchmarks with AddressSanitizer and UBSan.

# The PostgreSQL to build for: pg_config on PATH unless given
# (make PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config); test/run_all.sh and
# test/cluster.sh choose Debian's 15 when it is installed.
PG_CONFIG ?= pg_config

MODULE_big = anomaly
EXTENSION = anomaly

# Every C file of the layers that go into the shared library; new files are
# picked up without editing this list.
# (src/rcf/gen_*.c are generators run at build time, not part of it.)
GEN_SRCS := $(wildcard src/rcf/gen_*.c)
SRCS := $(filter-out $(GEN_SRCS),$(sort $(wildcard src/*.c src/rcf/*.c src/hotspots/*.c src/detect/*.c src/alert/*.c)))
OBJS = $(SRCS:.c=.o)

# The SQL scripts are built from src/sql/ (src/sql/README.md):
#   src/sql/schema/*.sql   tables, indexes, types: run once, by the install
#   src/sql/*.sql          functions, views, aggregates, triggers, policies,
#                          comments, grants, written to be run again (CREATE
#                          OR REPLACE; DROP POLICY IF EXISTS, CREATE POLICY)
#   src/sql/updates/A--B.sql  what release B changed in release A's schema
# The install script anomaly--$(EXTVERSION).sql is schema/ and the parts
# together, in the order of their file names (schema/NAME.sql before
# NAME.sql).  The update script from each earlier release goes straight to
# this one: the deltas from that release on, then every part of src/sql/*.sql
# (as TimescaleDB builds its update scripts), so a function's body is
# written once.  Each release appends its delta to UPDATES.
EXTVERSION = 0.2.0
UPDATES = 0.1.0--0.2.0
SQL_SCHEMA := $(wildcard src/sql/schema/*.sql)
SQL_PARTS := $(sort $(wildcard src/sql/*.sql))
SQL_INSTALL := $(foreach n,$(sort $(notdir $(SQL_SCHEMA) $(SQL_PARTS))),$(filter %/$(n),$(SQL_SCHEMA) $(SQL_PARTS)))
UPDATE_SCRIPTS := $(foreach u,$(UPDATES),anomaly--$(firstword $(subst --, ,$(u)))--$(EXTVERSION).sql)
DATA_built = anomaly--$(EXTVERSION).sql $(UPDATE_SCRIPTS)


# pg_regress tests (sql/NAME.sql, expected/NAME.out) and isolation tests
# (specs/NAME.spec, expected/NAME.out).  ":=" matters: PGXS tests these with
# ifdef, which must see an empty value when there are no files.
# sql/include/*.sql are set-up files the tests read with \i (through
# PG_ABS_SRCDIR, which pg_regress sets), not tests.
REGRESS := $(sort $(basename $(notdir $(wildcard sql/*.sql))))
ISOLATION := $(sort $(basename $(notdir $(wildcard specs/*.spec))))

PG_CPPFLAGS += -I$(srcdir)/src -Ibuild/gen -DANOMALY_VERSION=\"$(EXTVERSION)\"
# Only what PostgreSQL looks up by name is exported (src/compat.h says
# what): everything else is hidden, so that no symbol of ours can take the
# place of another library's (PostgreSQL loads libraries RTLD_GLOBAL).
# PostgreSQL 16 and later mark PGDLLEXPORT so themselves; 15 leaves it empty.
PG_CFLAGS += -fvisibility=hidden
PG_CPPFLAGS += -DPGDLLEXPORT='__attribute__((visibility("default")))'
SHLIB_LINK += -lcurl -lm -pthread

# -Wextra finds real bugs in our code, but PostgreSQL's own headers and
# macros trip these three, so they are off everywhere.
WARN_FLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
PG_CFLAGS += $(WARN_FLAGS)
# No fused multiply-add contraction: GCC fuses a*b+c by default wherever the
# target has FMA (arm64, x86 with -march=native), which changes scores in the
# last bit (2,895 of 7,003 in the migration guide's example), so the same
# data would score differently per platform.  Off, every build agrees.
FP_FLAGS = -ffp-contract=off
PG_CFLAGS += $(FP_FLAGS)
override BITCODE_CFLAGS += $(FP_FLAGS)
# Header dependencies, so that a changed struct rebuilds every object using it.
PG_CFLAGS += -MMD -MP
ifeq ($(WERROR),1)
PG_CFLAGS += -Werror
endif

EXTRA_CLEAN = $(SRCS:.c=.bc) $(SRCS:.c=.d) build/ $(UNIT_BINS) $(BENCH_BINS) \
	output_iso/ tmp_check/ tmp_check_iso/ test/tmp_check/ results/ \
	regression.diffs regression.out log/

# PGXS needs pg_config and the server headers (postgresql-server-dev-15).  On
# a machine that has neither yet, only the targets that install them (test,
# demo, deps) and the standalone C targets work.
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
-include $(OBJS:.o=.d)
else
.DEFAULT_GOAL := no-pgxs
.PHONY: no-pgxs all install installcheck
no-pgxs all install installcheck:
	@echo "PGXS not found (PG_CONFIG=$(PG_CONFIG)): run 'make deps' (or 'make test') first" >&2
	@exit 1
clean:
	rm -rf $(OBJS) anomaly.so $(EXTRA_CLEAN)
endif

# Listed after the PGXS include, so that "all" stays the default goal.
anomaly--$(EXTVERSION).sql: $(SQL_INSTALL)
	cat $^ > $@

# The update from release FROM: the deltas from FROM on, in release order,
# then the parts.  A part must run again without error: a CREATE that is not
# CREATE OR REPLACE belongs in src/sql/schema/ (and the release's delta).
anomaly--%--$(EXTVERSION).sql: $(UPDATES:%=src/sql/updates/%.sql) $(SQL_PARTS)
	@if grep -n -E '^CREATE[[:space:]]+(UNIQUE[[:space:]]+)?(FUNCTION|PROCEDURE|VIEW|AGGREGATE|TRIGGER|TABLE|TYPE|INDEX|EVENT|DOMAIN|OPERATOR|CAST|SEQUENCE)[[:space:]]' $(SQL_PARTS); then \
		echo "src/sql/*.sql: the lines above cannot run twice; use CREATE OR REPLACE, or move them to src/sql/schema/ (src/sql/README.md)" >&2; \
		exit 1; \
	fi
	{ from=; for u in $(UPDATES); do \
		case $$u in $*--*) from=$$u ;; esac; \
		if [ -n "$$from" ]; then cat src/sql/updates/$$u.sql; fi; \
	done; cat $(SQL_PARTS); } > $@.tmp
	mv $@.tmp $@

# The CRC-32C tables of the model format (src/rcf/encode.c) are constants
# written by a generator built for the build machine.
build/gen/crc32c_table.h: src/rcf/gen_crc32c_table.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -o build/gen/gen_crc32c_table $<
	build/gen/gen_crc32c_table > $@.tmp
	mv $@.tmp $@
src/rcf/encode.o src/rcf/encode.bc build/pure/rcf/encode.o: build/gen/crc32c_table.h

# ---------------------------------------------------------------------------
# Standalone C programs: engine unit tests and benchmarks.
#
# They link the "pure" sources only, those with no PostgreSQL header: the
# engines (forest, hotspots), the hashing/signing code of the alert layer,
# the alert templates' parser, and the parsers of untrusted bytes (wire
# messages, SNS responses, AWS credential documents).
# Objects are built under build/pure/ with their own flags, apart from the
# shared library's.

PURE_SRCS := $(filter-out $(GEN_SRCS),$(sort $(wildcard src/rcf/*.c src/hotspots/*.c) \
	$(wildcard src/alert/sha256.c src/alert/sigv4.c src/alert/sns_parse.c src/alert/template.c \
		src/alert/cred_document.c src/detect/wire_read.c)))
PURE_OBJS := $(patsubst src/%.c,build/pure/%.o,$(PURE_SRCS))

STANDALONE_CFLAGS = -O2 -g -Wall -Wextra -Werror -Isrc -Ibuild/gen $(FP_FLAGS)
ifeq ($(SANITIZE),1)
STANDALONE_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

# The signer (sha256.c, sigv4.c) hashes with PostgreSQL's common/cryptohash.h
# and common/hmac.h, and the credential documents are read with its
# common/jsonapi.h: outside a server they are built as frontend code and linked
# with the frontend libpgcommon and libpgport of the PostgreSQL found by
# PG_CONFIG (postgresql-server-dev ships them in pkglibdir), and with
# libcrypto when that PostgreSQL hashes with OpenSSL.
PG_FE_CFLAGS = -DFRONTEND -I$(shell $(PG_CONFIG) --includedir-server 2>/dev/null) \
	-Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
PG_FE_LIBS = -L$(shell $(PG_CONFIG) --pkglibdir 2>/dev/null) -lpgcommon -lpgport \
	$(filter -lcrypto,$(shell $(PG_CONFIG) --libs 2>/dev/null))
PG_FE_OBJS := build/pure/alert/sha256.o build/pure/alert/sigv4.o build/pure/alert/cred_document.o
$(PG_FE_OBJS): STANDALONE_CFLAGS += $(PG_FE_CFLAGS)
STANDALONE_LIBS = $(PG_FE_LIBS) -lm

UNIT_SRCS := $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:.c=)
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:.c=)

build/pure/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(STANDALONE_CFLAGS) -MMD -MP -c -o $@ $<

-include $(PURE_OBJS:.o=.d)

# Keep the objects: make would delete them as intermediates of a pattern chain.
.SECONDARY: $(PURE_OBJS)

test/unit/test_%: test/unit/test_%.c $(wildcard test/unit/*.h) $(PURE_OBJS)
	$(CC) $(STANDALONE_CFLAGS) -o $@ $< $(PURE_OBJS) $(STANDALONE_LIBS)

# The signer's test and benchmark include PostgreSQL's headers, as the
# signer does.
test/unit/test_sigv4 bench/sigv4_sign: STANDALONE_CFLAGS += $(PG_FE_CFLAGS)

# Fuzzing with libFuzzer (clang): every target in turn, FUZZ_SECONDS each.
#   make fuzz [FUZZ_SECONDS=600] [FUZZ_TARGETS="wire sns"]
# The targets (test/fuzz/fuzz_NAME.c), each linked with the code it fuzzes
# and nothing of PostgreSQL but, for credentials, the JSON parser of the
# frontend libpgcommon:
#   decode       the model decoder (src/rcf), seeds written by make_seeds
#   wire         the detectors' wire format reader (src/detect/wire_read.c)
#   sns          SNS Publish responses (src/alert/sns_parse.c)
#   credentials  ECS / IMDS credential documents (src/alert/cred_document.c)
# Committed seeds are in test/fuzz/seeds/NAME/ (wire's from wire_seeds.sh);
# each target's corpus and any crash file go to test/fuzz/tmp/NAME/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= decode wire sns credentials
FUZZ_CC ?= clang
FUZZ_CFLAGS = -g -O1 -Isrc -Ibuild/gen -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_DIR = test/fuzz/tmp
ENGINE_SRCS := $(filter-out $(GEN_SRCS),$(sort $(wildcard src/rcf/*.c)))

test/fuzz/fuzz_decode: test/fuzz/fuzz_decode.c $(ENGINE_SRCS) build/gen/crc32c_table.h
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(ENGINE_SRCS) -lm

test/fuzz/fuzz_wire: test/fuzz/fuzz_wire.c src/detect/wire_read.c src/detect/wire_read.h
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< src/detect/wire_read.c

test/fuzz/fuzz_sns: test/fuzz/fuzz_sns.c test/fuzz/fuzz_span.h src/alert/sns_parse.c src/alert/sns_parse.h
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< src/alert/sns_parse.c

test/fuzz/fuzz_credentials: test/fuzz/fuzz_credentials.c src/alert/cred_document.c src/alert/cred_document.h
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(PG_FE_CFLAGS) -Wno-ignored-attributes -o $@ $< src/alert/cred_document.c $(PG_FE_LIBS)

test/fuzz/make_seeds: test/fuzz/make_seeds.c $(PURE_OBJS)
	$(CC) $(STANDALONE_CFLAGS) -o $@ $< $(PURE_OBJS) $(STANDALONE_LIBS)

# Longest input and seed directory per target.
FUZZ_MAX_LEN_decode = 65536
FUZZ_MAX_LEN_wire = 8192
FUZZ_MAX_LEN_sns = 4096
FUZZ_MAX_LEN_credentials = 4096
FUZZ_SEEDS_decode = $(FUZZ_DIR)/decode/seeds
FUZZ_SEEDS_wire = test/fuzz/seeds/wire
FUZZ_SEEDS_sns = test/fuzz/seeds/sns
FUZZ_SEEDS_credentials = test/fuzz/seeds/credentials

.PHONY: fuzz
fuzz: $(addprefix fuzz-run-,$(FUZZ_TARGETS))

$(FUZZ_DIR)/decode/seeds: test/fuzz/make_seeds
	@mkdir -p $@
	test/fuzz/make_seeds $@
	@# format version 1 models too (test/unit/fixtures), still read
	for f in test/unit/fixtures/v1_*.rcf; do \
		{ printf '\001'; cat $$f; } > $@/$$(basename $$f .rcf); done

fuzz-run-decode: $(FUZZ_DIR)/decode/seeds

# One target for FUZZ_SECONDS; a finding stops make with the crash file's name.
fuzz-run-%: test/fuzz/fuzz_%
	@mkdir -p $(FUZZ_DIR)/$*/corpus
	$< -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
		-max_len=$(FUZZ_MAX_LEN_$*) -artifact_prefix=$(FUZZ_DIR)/$*/ \
		$(FUZZ_DIR)/$*/corpus $(FUZZ_SEEDS_$*)

test/corpus/make_corpus: test/corpus/make_corpus.c $(PURE_OBJS)
	$(CC) $(STANDALONE_CFLAGS) -o $@ $< $(PURE_OBJS) $(STANDALONE_LIBS)

bench/%: bench/%.c bench/bench_util.h $(wildcard test/unit/*.h) $(PURE_OBJS)
	$(CC) $(STANDALONE_CFLAGS) -o $@ $< $(PURE_OBJS) $(STANDALONE_LIBS)

.PHONY: unit check-unit bench-build bench test demo deps

unit: $(UNIT_BINS)

# Run the unit tests alone, through prove (each binary prints TAP).
check-unit: unit
	@if [ -n "$(UNIT_BINS)" ]; then prove --exec '' $(UNIT_BINS); else echo "no unit tests"; fi

bench-build: $(BENCH_BINS)

# Builds the benchmarks; bench/run.sh, when it exists, runs them.
bench: bench-build
	@if [ -x bench/run.sh ]; then bench/run.sh; \
	else echo "built: $(BENCH_BINS)"; fi

# ---------------------------------------------------------------------------
# One-command entry points.  Each installs missing packages (as root or via
# sudo), builds, installs, and runs on its own throwaway cluster.

test:
	bash test/run_all.sh

demo:
	@if [ -f demo/run.sh ]; then bash demo/run.sh; \
	else echo "demo/run.sh does not exist yet" >&2; exit 1; fi

deps:
	bash test/deps.sh
