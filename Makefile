# Each target installs what it needs first (apt packages, cargo-pgrx, pgrx init) and skips
# what is already there.
.PHONY: demo test bench

demo:
	@bash scripts/demo.sh

test:
	@bash scripts/test.sh

bench:
	@bash scripts/bench.sh
