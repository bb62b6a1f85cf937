# The two commands (see README): `make demo` and `make test`. Both install what they need.
.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/plait demo

test: setup
	bash scripts/test.sh

lint: setup
	bash scripts/lint.sh

bench: setup
	.venv/bin/python -m benchmarks.run
