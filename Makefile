# Entry points for developers and CI. `make test` is the one command the README and .ci/run use.
#
# Each target first runs scripts/setup-deps.sh at its level (build, demo, test): it installs
# what is missing and prints nothing when all is there. SKIP_SETUP_DEPS=1 skips it.
# Every target respects CARGO_TARGET_DIR from the environment; nothing here assumes ./target.

CARGO ?= cargo
BINLOG_SERVER_LISTEN_ADDR ?= 127.0.0.1:8080
BINLOG_SERVER_DATA_DIR ?= ./data
DIST ?= dist

# Reads one field of `cargo metadata` (target_directory, or the package version).
cargo_meta = $(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json, sys; m = json.load(sys.stdin); print($(1))'

.PHONY: run build test lint migrate-up demo release-assets

run:
	@scripts/setup-deps.sh build
	BINLOG_SERVER_LISTEN_ADDR=$(BINLOG_SERVER_LISTEN_ADDR) BINLOG_SERVER_DATA_DIR=$(BINLOG_SERVER_DATA_DIR) \
		$(CARGO) run -- serve

build:
	@scripts/setup-deps.sh build
	$(CARGO) build

# cargo-nextest runs test binaries in parallel processes when it is installed; doctests are not
# part of --all-targets either way, so both paths run the same tests.
test:
	@scripts/setup-deps.sh test
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --all-targets"; \
		$(CARGO) nextest run --all-targets; \
	else \
		echo "$(CARGO) test --all-targets"; \
		$(CARGO) test --all-targets; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

migrate-up:
	@test -n "$(META_DSN)" || { echo 'usage: make migrate-up META_DSN=mysql://user:pass@host:3306/db' >&2; exit 2; }
	$(CARGO) run --quiet -- migrate up --meta-dsn "$(META_DSN)"

demo:
	@scripts/setup-deps.sh demo
	scripts/demo.sh

# dist/binlog-server_<version>_linux_amd64.tar.gz plus dist/checksums.txt.
release-assets:
	@scripts/setup-deps.sh build
	$(CARGO) build --release --locked
	@set -eu; \
	version="$$($(call cargo_meta,m["packages"][0]["version"]))"; \
	target_dir="$$($(call cargo_meta,m["target_directory"]))"; \
	name="binlog-server_$${version}_linux_amd64"; \
	for f in README.md config.example.yaml; do \
		test -f "$$f" || { echo "release-assets: $$f is missing" >&2; exit 1; }; \
	done; \
	stage="$(DIST)/$$name"; \
	rm -rf "$$stage" "$(DIST)/$$name.tar.gz"; \
	mkdir -p "$$stage"; \
	cp "$$target_dir/release/binlog-server" README.md config.example.yaml "$$stage/"; \
	if [ -f LICENSE ]; then cp LICENSE "$$stage/"; fi; \
	tar -C "$(DIST)" -czf "$(DIST)/$$name.tar.gz" "$$name"; \
	rm -rf "$$stage"; \
	(cd "$(DIST)" && sha256sum "$$name.tar.gz" > checksums.txt); \
	echo "$(DIST)/$$name.tar.gz"; \
	cat "$(DIST)/checksums.txt"
