# The two commands (see README): `make demo` and `make test`.
.PHONY: demo test bench lint schema proto deb

demo:
	./scripts/bootstrap.sh
	.venv/bin/chenxing-gateway demo

test:
	./scripts/test.sh

# the Debian package: dist/chenxing-edge_VERSION_ARCH.deb (docs/packaging.md); the wheels come
# from the package index, or from WHEELHOUSE=DIR (scripts/build-wheelhouse.sh)
deb:
	./scripts/build-deb.sh $(if $(WHEELHOUSE),--wheelhouse $(WHEELHOUSE))

bench:
	./scripts/bootstrap.sh
	.venv/bin/python -m bench.pipeline

lint:
	.venv/bin/ruff check .

schema:
	.venv/bin/chenxing-gateway config schema -o config/gateway.schema.json

proto:
	.venv/bin/python -m pip install -q -c constraints.txt -e ".[proto]"
	.venv/bin/python -m grpc_tools.protoc -I gateway/northbound/sparkplug/proto \
	  --python_out=gateway/northbound/sparkplug --pyi_out=gateway/northbound/sparkplug \
	  gateway/northbound/sparkplug/proto/sparkplug_b.proto
