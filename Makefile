# terraform-provider-artifortress developer entry points. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

REPO := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
DEV_ENV := $(REPO)/scripts/dev-env
FEATURES := --features acceptance-tests/acceptance
QUICKSTART := $(REPO)/examples/quickstart
TF_AUTOMATION := CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0

.PHONY: help install-deps env-up env-down env-status build demo demo-down test lint install release bench docs fuzz-smoke

help:
	@echo "make demo        install deps, start the dev env with 3 deploy hosts, walk examples/quickstart (D1-D6, upgrade, rollback, drift)"
	@echo "make demo-down   destroy the quickstart (if it has state), stop the dev env"
	@echo "make test        deps, dev env, fmt, clippy, fuzz smoke, nextest (acceptance); env stopped after"
	@echo "make lint        cargo fmt --check, clippy -D warnings, shellcheck"
	@echo "make install     release build, install into ~/.terraform.d/plugins (filesystem mirror)"
	@echo "make release     VERSION=x.y.z (default: the crate's): zips, SHA256SUMS + GPG signature, registry"
	@echo "                 manifest, filesystem and network mirrors in dist/<version>/ (scripts/release)"
	@echo "make env-up      scripts/dev-env up (exports saved in .dev/env.sh)"
	@echo "make env-down    scripts/dev-env down"
	@echo "make bench       bench/run: plan_overhead, migrations, migrate_apply, backup, drill (1 GiB, 1 and 8 tables),"
	@echo "                 drift (3 SSH deploy hosts), release (10 SSH deploy hosts; root), then one table"
	@echo "                 of ratios vs floors and goals"
	@echo "                 (BENCHES=\"migrations drift\" a subset; RUNS, BENCH_SIZE_MB, ... passed through)"
	@echo "make docs        regenerate docs/ from the schemas and examples/"
	@echo "make fuzz-smoke  a bounded run of the msgpack decoder fuzzer (FUZZ_SECONDS, default 60)"

install-deps:
	@$(REPO)/scripts/install-deps

env-up:
	@$(DEV_ENV) up >/dev/null

env-down:
	@$(DEV_ENV) down

env-status:
	@$(DEV_ENV) status

build:
	cargo build -p acceptance-tests -p terraform-provider-artifortress --bins

# dev_overrides in .dev/terraformrc point Terraform at the debug provider: no `terraform init`.
# scripts/demo walks the quickstart: v1 (D1-D6), v2, broken (rolled back), drift, repair.
demo: install-deps
	@$(DEV_ENV) up --hosts 3 >/dev/null
	@$(REPO)/scripts/demo

demo-down:
	@rc=0; \
	if [[ -f $(REPO)/.dev/env.sh ]]; then \
	  $(DEV_ENV) up --hosts 3 >/dev/null && $(REPO)/scripts/demo down || rc=$$?; \
	fi; \
	$(DEV_ENV) down || { [[ $$rc -ne 0 ]] || rc=1; }; \
	exit $$rc

# The last line printed is nextest's summary; the dev env is stopped even on failure.
test:
	@MAKE="$(MAKE)" $(REPO)/scripts/lib/make-test.sh

# A bounded run of the msgpack decoder fuzzer. It uses the stable toolchain (RUSTC_BOOTSTRAP lets
# cargo-fuzz pass its unstable flags) and no sanitizer, so it needs no nightly toolchain; the
# decoder has no unsafe code. For long runs with AddressSanitizer:
#   cd provider && cargo +nightly fuzz run msgpack_decode fuzz/corpus/msgpack_decode fuzz/seeds/msgpack_decode
FUZZ_SECONDS ?= 60
fuzz-smoke:
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	@mkdir -p $(REPO)/provider/fuzz/corpus/msgpack_decode
	cd $(REPO)/provider && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none msgpack_decode \
	  fuzz/corpus/msgpack_decode fuzz/seeds/msgpack_decode -- \
	  -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 2>&1 | \
	  grep --line-buffered -v -E '^#[0-9]+[[:space:]]'

# docs/ is generated from the schemas and examples/; the docs test fails when it is stale.
docs:
	UPDATE_DOCS=1 cargo test -p terraform-provider-artifortress --test docs

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets $(FEATURES) -- -D warnings
	@if command -v shellcheck >/dev/null 2>&1; then \
	  shellcheck -x $(REPO)/scripts/dev-env $(REPO)/scripts/demo $(REPO)/scripts/release $(REPO)/scripts/install-deps $(REPO)/scripts/lib/*.sh $(REPO)/.ci/run \
	    $(REPO)/bench/run $(REPO)/bench/*.sh; \
	else \
	  echo "shellcheck not installed (apt-get install shellcheck); skipped" >&2; \
	fi

# Installs into the implied local filesystem mirror, so `terraform init` finds the provider without
# dev_overrides (source = "artifortress/artifortress", version = the crate's version). The copy is
# stripped like the released zips (scripts/release, af_release_strip); target/release keeps its
# symbols and line tables for profiles (callgrind_annotate, perf).
install:
	cargo build --release -p terraform-provider-artifortress
	@source $(REPO)/scripts/lib/common.sh; \
	version=$$(af_cargo_pkg_version terraform-provider-artifortress); \
	case $$(uname -m) in x86_64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; *) arch=$$(uname -m) ;; esac; \
	dest=$${HOME}/.terraform.d/plugins/registry.terraform.io/artifortress/artifortress/$$version/linux_$$arch; \
	install -D -m 0755 "$$(af_target_dir)/release/terraform-provider-artifortress" \
	  "$$dest/terraform-provider-artifortress_v$$version"; \
	af_release_strip "$$dest/terraform-provider-artifortress_v$$version"; \
	echo "installed $$dest/terraform-provider-artifortress_v$$version (stripped, as scripts/release packages it)"

# Release artifacts in dist/<version>/ (scripts/release says what, and which environment variables
# supply the signing key; without one it signs with a throwaway key and says so).
VERSION ?=
release:
	@$(REPO)/scripts/release $(VERSION) >/dev/null

# bench/run starts (or reuses) the dev environment itself; bench/README.md explains every row.
bench:
	@$(REPO)/bench/run
