# One static library from harness/, models/ and datasets/, linked by the CLI and the tests.
# Quiet unless V=1.  `make BUILD=dir` builds elsewhere (the sanitizer build uses build-asan).

BUILD   ?= build
CC      ?= cc
OPT     ?= -O3 -march=x86-64-v2 -g
PKGS    := openblas hdf5-serial libcjson libcurl libutf8proc zlib stb
CPPFLAGS += -I. -I$(BUILD) -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) check 2>/dev/null)
CFLAGS  += -std=c11 $(OPT) -Wall -Wextra $(if $(WERROR),-Werror) -MMD -MP -fno-math-errno -fno-trapping-math \
           -Wno-psabi
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
TESTLIBS := $(shell pkg-config --libs check 2>/dev/null)

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRC := $(sort $(wildcard harness/*.c models/*.c models/*/*.c datasets/*.c))
CLI_SRC := $(sort $(wildcard harness/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)

# Commands are the files harness/cli/cmd_NAME.c, suites the files tests/test_NAME.c:
# their lists are generated, so adding one never touches a shared file.
CMDS   := $(patsubst harness/cli/cmd_%.c,%,$(filter harness/cli/cmd_%.c,$(CLI_SRC)))
SUITES := $(patsubst tests/test_%.c,%,$(filter tests/test_%.c,$(TEST_SRC)))

.PHONY: all test check-run asan clean deps bench demo demo-check
all: $(BUILD)/harness

$(BUILD)/libharness.a: $(LIB_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/harness: $(CLI_OBJ) $(BUILD)/libharness.a
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libharness.a $(LDLIBS)

$(BUILD)/run_tests: $(TEST_OBJ) $(BUILD)/libharness.a
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libharness.a $(TESTLIBS) $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/harness/cli/main.o: $(BUILD)/commands.inc
$(BUILD)/obj/tests/runner.o: $(BUILD)/suites.inc

$(BUILD)/commands.inc: $(CLI_SRC) Makefile
	@mkdir -p $(BUILD)
	$(Q)printf 'HX_COMMAND(%s)\n' $(CMDS) > $@.tmp && mv $@.tmp $@
$(BUILD)/suites.inc: $(TEST_SRC) Makefile
	@mkdir -p $(BUILD)
	$(Q)printf 'HX_SUITE(%s)\n' $(SUITES) > $@.tmp && mv $@.tmp $@

# `make test` installs what is missing, builds, and runs every suite;
# `make test SUITE=tokenizer` runs one.
test: deps
	$(Q)$(MAKE) --no-print-directory check-run

check-run: $(BUILD)/run_tests $(BUILD)/harness
	$(Q)HX_BUILD=$(BUILD) $(if $(SUITE),HX_ONLY=$(SUITE)) ./$(BUILD)/run_tests

# The tests under AddressSanitizer + UBSan, in their own build folder.
asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan \
	  OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" check-run

deps:
	$(Q)scripts/install-deps.sh --quiet

# The embedded default: the synthetic benchmark (generated once) and experiments/demo.json.
SYNTH_VAL := .cache/data/synth-val
demo: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/harness
	$(Q)test -f $(SYNTH_VAL)/split.txt || ./$(BUILD)/harness synth --out $(SYNTH_VAL) --split val --count 300
	$(Q)./$(BUILD)/harness run experiments/demo.json

# The demo as a regression check: every point's mIoU against experiments/expected/demo.json.
demo-check: demo
	$(Q)python3 scripts/check_regression.py results/demo/summary.json experiments/expected/demo.json

clean:
	rm -rf build build-asan

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
