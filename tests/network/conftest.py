"""Shared network-study fixtures: one study package per test session (rendering every dialect takes a while)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def study_zip(tmp_path_factory):
    from l059_omop.network.package import make_package

    path = tmp_path_factory.mktemp("package") / "study.zip"
    make_package(path)
    return path


@pytest.fixture(scope="session")
def study_zip_nosupp(tmp_path_factory):
    """The same study with suppression off (min_cell_count 1)."""
    from l059_omop.network.package import make_package

    path = tmp_path_factory.mktemp("package") / "study_nosupp.zip"
    make_package(path, {"min_cell_count": 1})
    return path
