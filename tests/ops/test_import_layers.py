"""The import-linter contracts are in the build and can fail: an upward import inside workers/ breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(script), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def copy_of_the_code(tmp_path: Path) -> Path:
    for package in ("contracts", "handlers", "workers"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_as_it_is_keeps_every_import_contract(tmp_path: Path) -> None:
    ran = lint_imports(copy_of_the_code(tmp_path))

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Inside workers, imports point down the roles" in ran.stdout


def test_a_store_module_importing_the_composition_root_breaks_the_layers_contract(tmp_path: Path) -> None:
    tree = copy_of_the_code(tmp_path)
    db = tree / "workers" / "store" / "db.py"
    db.write_text(db.read_text() + "\nfrom workers.fleet import Fleet  # an upward import, on purpose\n")

    ran = lint_imports(tree)

    assert ran.returncode != 0
    assert "workers.store.db -> workers.fleet" in ran.stdout
