"""pyproject.toml as setuptools reads it: the licence is an SPDX expression (PEP 639).

A ``license = {text = ...}`` table makes setuptools >= 77 print a deprecation block on every
install (``./scripts/up``, ``./scripts/test``, the image build), and the string form needs
setuptools >= 77, so the build requirement must say so.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_string_and_the_build_needs_a_setuptools_that_reads_it() -> None:
    data = tomllib.loads(PYPROJECT.read_text())
    assert data["project"]["license"] == "MIT"
    requires = data["build-system"]["requires"]
    setuptools = next(r for r in requires if r.startswith("setuptools"))
    match = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert match is not None, setuptools
    assert int(match.group(1)) >= 77
    assert not any(c.startswith("License ::") for c in data["project"].get("classifiers", []))
