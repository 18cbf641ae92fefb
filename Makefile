# make pyz | test | lint | bench   (run from the repository root)
#
# pyz: dist/hermes.pyz, one file that runs with any CPython 3.9+ (tools/build_pyz.py; needs
# pip and the package index). Its .pyc files are for the CPython that builds it:
# `make pyz PYTHON=python3.12` builds for 3.12 hosts; other versions compile from source.

PYTHON ?= python3
VENV := .venv/bin

.PHONY: pyz test lint bench

pyz:
	$(PYTHON) tools/build_pyz.py --out dist/hermes.pyz

dist/hermes.pyz: tools/build_pyz.py $(wildcard hermes_min/*.py hermes_min/transports/*.py)
	$(PYTHON) tools/build_pyz.py --out dist/hermes.pyz

test:
	$(VENV)/python -m pytest

lint:
	$(VENV)/ruff check .

bench: dist/hermes.pyz
	$(VENV)/python bench/run_all.py
	$(VENV)/python bench/pyz_startup.py
