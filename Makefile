# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
# Node 24 and pnpm come from the npm registry into .toolchain/ (ignored by git); a second run skips what is done.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NODE_VERSION := 24.21.0
PNPM_VERSION := 12.21.0
ARCH := $(shell uname -m | sed -e 's/x86_64/x64/' -e 's/aarch64/arm64/')
TOOLCHAIN := $(CURDIR)/.toolchain
NODE_DIR := $(TOOLCHAIN)/node/node_modules/node-linux-$(ARCH)/bin
PNPM_DIR := $(TOOLCHAIN)/pnpm/node_modules/.bin
export PATH := $(NODE_DIR):$(PNPM_DIR):$(PATH)
export TURBO_TELEMETRY_DISABLED := 1
export DO_NOT_TRACK := 1

NODE_STAMP := $(TOOLCHAIN)/.node-$(NODE_VERSION)
PNPM_STAMP := $(TOOLCHAIN)/.pnpm-$(PNPM_VERSION)
DEPS_STAMP := node_modules/.vyr-installed

.PHONY: help toolchain install build lint test demo demo-cycle demo-toolchain bench generate fixtures fixture-toolchain clean dist release sea

help:
	@echo "make test   - set up (Node 24, pnpm, dependencies), build, lint, check, run all tests"
	@echo "make demo   - set up, build, run the portability demo: one artifact on laptop, edge and cloud nodes, edge cut off"
	@echo "make demo-cycle - the single-node cycle, narrated: key, pack, sign, verify, tamper, run, state, trace"
	@echo "make bench  - benchmarks side by side (bench/results/<date>-<host>.json) and whitepaper/v0.1.md; QUICK=1 for CI"
	@echo "make dist   - install the vyr CLI as one self-contained directory (DIST_DIR, default dist/vyr)"
	@echo "make release - build dist/vyr-<version>.tgz, one npm package: npm install -g ./dist/vyr-<version>.tgz"
	@echo "make sea    - build dist/vyr-linux-<arch>, one executable file for machines without Node.js"

$(NODE_STAMP):
	@mkdir -p $(TOOLCHAIN)
	@echo "installing Node $(NODE_VERSION) into .toolchain/node"
	npm install --no-audit --no-fund --loglevel=error --prefix $(TOOLCHAIN)/node node-linux-$(ARCH)@$(NODE_VERSION)
	@touch $@

$(PNPM_STAMP): $(NODE_STAMP)
	@echo "installing pnpm $(PNPM_VERSION) into .toolchain/pnpm"
	npm install --no-audit --no-fund --loglevel=error --prefix $(TOOLCHAIN)/pnpm pnpm@$(PNPM_VERSION)
	@touch $@

toolchain: $(NODE_STAMP) $(PNPM_STAMP)

# C fixtures are committed; clang-19 + wasi-libc (Debian) only let the tests prove they rebuild byte for byte.
# Installed when missing and apt-get can run; otherwise that one test reports itself skipped.
FIXTURE_PACKAGES := clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc
fixture-toolchain:
	@if command -v clang-19 >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing $(FIXTURE_PACKAGES) with apt-get"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(FIXTURE_PACKAGES) >/dev/null) \
	    || echo "warning: could not install $(FIXTURE_PACKAGES); the fixture rebuild test will be skipped"; \
	else echo "note: clang-19 missing and apt-get unavailable; the fixture rebuild test will be skipped"; fi
	@# skopeo (Debian) round-trips artifacts through standard OCI tooling in the interop tests (docs/artifact.md).
	@if command -v skopeo >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo >/dev/null \
	    || echo "warning: could not install skopeo; the skopeo interop tests will be skipped"; \
	else echo "note: skopeo missing and apt-get unavailable; the skopeo interop tests will be skipped"; fi

$(DEPS_STAMP): $(NODE_STAMP) $(PNPM_STAMP) pnpm-lock.yaml package.json
	pnpm install --frozen-lockfile
	@touch $@

install: $(DEPS_STAMP)

build: install
	pnpm run build

lint: build
	pnpm exec biome check .
	pnpm exec tsc -p tsconfig.test.json
	node scripts/check-layers.mjs
	node scripts/check-generated.mjs

test: build lint fixture-toolchain demo-toolchain
	pnpm exec vitest run

# The portability demo puts the edge in its own network namespace when it runs as root with iproute2 (Debian
# package, installed here when missing); otherwise it stops and restarts the edge's upstream instead, and says so.
demo-toolchain:
	@if command -v ip >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing iproute2 with apt-get"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null) \
	    || echo "warning: could not install iproute2; the demo will stop and restart the upstream instead"; \
	fi

demo: build demo-toolchain
	node scripts/demo/portability.mjs $(DEMO_ARGS)

demo-cycle: build
	bash scripts/demo-cycle.sh

# QUICK=1: tiny inputs and few rounds (what CI runs); the full run writes bench/results/<date>-<host>.json and
# re-renders whitepaper/v0.1.md from it.
bench: build
	node bench/run.ts $(if $(QUICK),--quick)

# A self-contained installation of the `vyr` command: DIST_DIR/bin/vyr with its own Node.js (docs/cli.md "Install").
DIST_DIR ?= dist/vyr
dist: build
	bash apps/cli/scripts/dist.sh $(DIST_DIR)

# One npm package with every runtime dependency bundled (docs/cli.md "Install"): npm install -g ./dist/vyr-<version>.tgz
release: build
	node apps/cli/scripts/release.mjs dist

# One executable file (Node.js SEA) embedding the release package; postject comes from npm into .toolchain/.
POSTJECT_VERSION := 1.0.0-alpha.6
POSTJECT_STAMP := $(TOOLCHAIN)/.postject-$(POSTJECT_VERSION)
$(POSTJECT_STAMP): $(NODE_STAMP)
	npm install --no-audit --no-fund --loglevel=error --prefix $(TOOLCHAIN)/postject postject@$(POSTJECT_VERSION)
	@touch $@
sea: release $(POSTJECT_STAMP)
	node apps/cli/scripts/sea.mjs dist/vyr-$$(node -p 'require("./apps/cli/package.json").version').tgz

generate: install
	pnpm -F @vyr/proto run generate

fixtures: install fixture-toolchain
	bash packages/testing/fixtures/build.sh
	bash apps/node/test/fixtures/build.sh

clean:
	rm -rf node_modules packages/*/node_modules apps/*/node_modules packages/*/dist apps/*/dist proto/dist .turbo
