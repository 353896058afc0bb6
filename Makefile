# The two commands the README names: `make demo` (the main job, end to end) and `make test`.
# Both install what they need first (Debian and PyPI packages), so they work on a fresh machine.
PYTHON ?= python3
# Tests mostly wait (on the engine, the registry, timeouts they provoke): more workers than cores pays.
TEST_WORKERS ?= 4

.PHONY: install test demo bench

install:
	bash tests/localcloud/install.sh
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'

test: install
	$(PYTHON) -m mypy
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS)

demo: install
	$(PYTHON) -m tests.localcloud.demo

bench: install
	$(PYTHON) bench/hash_context.py
	$(PYTHON) bench/build_cache.py
