# Entry points for developers and CI. `make test` is the one command the README and .ci/run use.
#
# Each target first runs scripts/setup-deps.sh at its level (build, demo, package, test): it
# installs what is missing and prints nothing when all is there. SKIP_SETUP_DEPS=1 skips it.
# Every target respects CARGO_TARGET_DIR from the environment; nothing here assumes ./target.

CARGO ?= cargo
BINLOG_SERVER_LISTEN_ADDR ?= 127.0.0.1:8080
BINLOG_SERVER_DATA_DIR ?= ./data
DIST ?= dist

.PHONY: run build test lint migrate-up demo deb release-assets

run:
	@scripts/setup-deps.sh build
	BINLOG_SERVER_LISTEN_ADDR=$(BINLOG_SERVER_LISTEN_ADDR) BINLOG_SERVER_DATA_DIR=$(BINLOG_SERVER_DATA_DIR) \
		$(CARGO) run -- serve

build:
	@scripts/setup-deps.sh build
	$(CARGO) build

# cargo-nextest runs test binaries in parallel processes when it is installed; doctests are not
# part of --all-targets either way, so both paths run the same tests. Then a short run of every
# fuzz target when cargo-fuzz is installed (fuzz/smoke.sh prints SKIPPED otherwise): 2,000 inputs
# each from a fixed seed, at most FUZZ_SMOKE_SECONDS (30) per target.
test:
	@scripts/setup-deps.sh test
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --all-targets"; \
		$(CARGO) nextest run --all-targets; \
	else \
		echo "$(CARGO) test --all-targets"; \
		$(CARGO) test --all-targets; \
	fi
	@fuzz/smoke.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

migrate-up:
	@test -n "$(META_DSN)" || { echo 'usage: make migrate-up META_DSN=mysql://user:pass@host:3306/db' >&2; exit 2; }
	$(CARGO) run --quiet -- migrate up --meta-dsn "$(META_DSN)"

demo:
	@scripts/setup-deps.sh demo
	scripts/demo.sh

# target/debian/binlog-server_<version>-1_amd64.deb and its -dbgsym .ddeb (docs/guide/package.md).
deb:
	@scripts/setup-deps.sh package
	$(CARGO) build --release --locked
	scripts/build-deb.sh --profile release

# dist/: the stripped tarball, its debug info, the .deb, the .ddeb and checksums.txt.
release-assets:
	@scripts/setup-deps.sh package
	$(CARGO) build --release --locked
	DIST=$(DIST) scripts/release-assets.sh
