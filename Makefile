# The two commands the README names: `make demo` (the main job, end to end) and `make test`.
# Both install what they need first (Debian and PyPI packages), so they work on a fresh machine.
PYTHON ?= python3

.PHONY: install test demo bench

install:
	bash tests/localcloud/install.sh
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'

test: install
	$(PYTHON) -m mypy
	$(PYTHON) -m pytest -q

demo: install
	$(PYTHON) -m tests.localcloud.demo

bench: install
	$(PYTHON) bench/hash_context.py
