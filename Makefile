# The two commands (see README): `make demo` and `make test`.
.PHONY: demo test bench lint schema

demo:
	./scripts/bootstrap.sh
	.venv/bin/chenxing-gateway demo

test:
	./scripts/test.sh

bench:
	./scripts/bootstrap.sh
	.venv/bin/python -m bench.pipeline

lint:
	.venv/bin/ruff check .

schema:
	.venv/bin/chenxing-gateway config schema -o config/gateway.schema.json
