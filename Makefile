# Two commands do all set-up on a fresh Debian machine:
#   make run    installs missing packages, builds, and starts `etna serve` on the test model
#   make test   installs missing packages, builds, and runs every test suite
BUILD ?= build
JOBS ?= $(shell nproc)
SHARED ?= $(abspath ../shared)
DEFAULT_MODEL := $(SHARED)/models/stories260K.gguf
MODEL ?= $(DEFAULT_MODEL)
PORT ?= 8080
# `make run` searches documents with BM25 alone unless EMBEDDING_MODEL names a real embedding
# model (README: "Models for make run"). ../shared's tiny-bert has random weights: never a default.
EMBEDDING_MODEL ?=

.PHONY: all deps build run test bench fuzz clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/CMakeCache.txt: | deps
	cmake --preset release -B $(BUILD)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# make run: chat, documents (upload, search, ask with citations) and the APIs on one address.
# Optional: EMBEDDING_MODEL=emb.gguf (hybrid search), ALLOW_INGEST="dir1 dir2" (server folders the
# web app may ingest), DATA=dir (default $$ETNA_DATA or ~/.local/share/etna).
run: build
	@$(if $(filter $(DEFAULT_MODEL),$(MODEL)),test -f "$(MODEL)" || { echo "etna: no model at $(MODEL): ../shared is missing; pass MODEL=/path/to/model.gguf or a name from etna list (README: Models for make run)"; exit 1; },true)
	@echo "etna: serving $(MODEL); open the web app at the address printed below"
	@$(if $(EMBEDDING_MODEL),echo "etna: hybrid search with $(EMBEDDING_MODEL)",echo "etna: document search is BM25 only; EMBEDDING_MODEL=emb.gguf adds vectors")
	$(BUILD)/etna serve -m $(MODEL) --port $(PORT) $(if $(EMBEDDING_MODEL),--embedding-model $(EMBEDDING_MODEL)) \
	  $(foreach d,$(ALLOW_INGEST),--allow-ingest $(d)) $(if $(DATA),--data $(DATA))

test: build
	@scripts/test-clients-setup
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(or $(FUZZ_SECONDS),30)

bench: build
	bench/run-all $(BUILD)

fuzz: deps
	cmake --preset fuzz -B build-fuzz
	cmake --build build-fuzz -j $(JOBS) --target fuzz_gguf fuzz_jinja fuzz_filter fuzz_http
	scripts/run-fuzz build-fuzz $(or $(FUZZ_SECONDS),300)

clean:
	rm -rf $(BUILD) build-fuzz
