# make pyz | test | lint | bench | stress-test   (run from the repository root)
#
# stress-test: the suite 5 times in a row (stops at a failure) under two busy loops, .venv then .venv39
# (VENV=path/bin to use another interpreter's venv for the first five)
#
# pyz: dist/hermes.pyz, one file that runs with any CPython 3.9+ (tools/build_pyz.py; needs
# pip and the package index). Its .pyc files are for the CPython that builds it:
# `make pyz PYTHON=python3.12` builds for 3.12 hosts; other versions compile from source.

PYTHON ?= python3
VENV := .venv/bin

.PHONY: pyz test lint bench stress-test

pyz:
	$(PYTHON) tools/build_pyz.py --out dist/hermes.pyz

# Every module and data file of the package, subpackages included (cli/, telegram/, tools/).
dist/hermes.pyz: tools/build_pyz.py $(shell find hermes_min -name '*.py' -o -name '*.yaml')
	$(PYTHON) tools/build_pyz.py --out dist/hermes.pyz

test:
	$(VENV)/python -m pytest

lint:
	$(VENV)/ruff check .

bench: dist/hermes.pyz
	$(VENV)/python bench/run_all.py
	$(VENV)/python bench/pyz_startup.py
	$(VENV)/python bench/hostile.py

stress-test:
	@[ -x $(VENV)/python ] || { echo "stress-test: no $(VENV)/python (make one as .ci/run does)"; exit 1; }; \
	$(PYTHON) -c 'while True: pass' & one=$$!; \
	$(PYTHON) -c 'while True: pass' & two=$$!; \
	trap 'kill $$one $$two 2>/dev/null' EXIT; trap 'exit 130' HUP INT TERM; \
	for py in $(VENV)/python .venv39/bin/python; do \
		[ -x $$py ] || continue; \
		for run in 1 2 3 4 5; do \
			echo "--- $$($$py --version) under load, run $$run of 5"; \
			$$py -m pytest -x -p no:randomly || exit 1; \
		done; \
	done; \
	echo "--- all loaded runs passed"
