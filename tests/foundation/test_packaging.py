"""A real wheel (not the editable checkout) ships mappings/, sql/ and the bundled data, and its command works."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ._spec import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out)]
    if importlib.util.find_spec("hatchling"):
        cmd.insert(4, "--no-build-isolation")  # offline and fast when the build backend is installed
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    (path,) = out.glob("l059_omop-*.whl")
    return path


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("l059_omop/_shipped/mappings/code_systems.csv",
                     "l059_omop/data/omop/OMOP_CDMv5.4_Field_Level.csv",
                     "l059_omop/data/omop/OMOP_CDMv5.4_indices.csv",
                     "l059_omop/data/vocabulary/CONCEPT.csv",
                     "l059_omop/data/vocabulary/local/DRUG_STRENGTH.csv",
                     "l059_omop/cli.py"):
        assert required in names, f"{required} missing from {wheel.name}"
    shipped_sql = {n for n in names if n.startswith("l059_omop/_shipped/sql/")}
    in_repo = {f"l059_omop/_shipped/sql/{p.relative_to(REPO / 'sql').as_posix()}"
               for p in (REPO / "sql").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert in_repo <= shipped_sql
    in_repo_maps = {f"l059_omop/_shipped/mappings/{p.relative_to(REPO / 'mappings').as_posix()}"
                    for p in (REPO / "mappings").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert in_repo_maps <= names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert b"l059-omop = l059_omop.cli:main" in entry


def test_installed_wheel_runs(wheel, tmp_path):
    """Install the wheel (no dependencies: they come from this environment) into a folder that shadows the
    editable checkout, then run its own ``l059-omop`` script away from the source tree."""
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                          str(wheel)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("L059_OMOP_DB", None)
    work = tmp_path / "run"
    work.mkdir()
    probe = subprocess.run(
        [sys.executable, "-c", "import l059_omop, l059_omop.resources as r; "
         "print(l059_omop.__file__); print(r.mappings_path('code_systems.csv')); print(r.sql_path())"],
        capture_output=True, text=True, cwd=work, env=env, timeout=60)
    assert probe.returncode == 0, probe.stderr
    pkg_file, mappings, sql = probe.stdout.split()
    assert Path(pkg_file).is_relative_to(target), "the editable checkout was imported, not the wheel"
    assert Path(mappings).is_file() and Path(mappings).is_relative_to(target / "l059_omop" / "_shipped")
    assert Path(sql).is_dir() and Path(sql).is_relative_to(target / "l059_omop" / "_shipped")
    script = target / "bin" / "l059-omop"
    cmd = [sys.executable, str(script)] if script.is_file() else [sys.executable, "-m", "l059_omop.cli"]
    run = subprocess.run([*cmd, "--db", "duckdb:///w.duckdb", "init-db"], capture_output=True, text=True,
                         cwd=work, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "vocabulary (bundled)" in run.stdout
    assert (work / "w.duckdb").is_file()


@pytest.mark.slow
def test_wheel_in_a_fresh_venv(wheel, tmp_path):
    """``pip install`` of the wheel into a new virtual environment gives a working ``l059-omop`` script.

    The dependencies are borrowed from this environment through a .pth line (no network); the editable
    install's import hook lives in a .pth file of that folder, which a plain path line does not run.
    """
    import sysconfig
    import venv

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    res = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    work = tmp_path / "run"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("L059_OMOP_DB", "PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(py), "-c", "import l059_omop.resources as r; print(r.mappings_path())"],
                           capture_output=True, text=True, cwd=work, env=env, timeout=60)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(site / "l059_omop" / "_shipped")
    run = subprocess.run([str(env_dir / "bin" / "l059-omop"), "--db", "duckdb:///w.duckdb", "init-db"],
                         capture_output=True, text=True, cwd=work, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "vocabulary (bundled)" in run.stdout
