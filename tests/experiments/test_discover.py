"""Finding experiments: root resolution, discovery, import by file path."""

import shutil
import sys
from pathlib import Path

import pytest

import jaxspec
from jaxspec.experiments import discover, experiments_root, load_experiment

from .helpers import FIXTURES


def test_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXSPEC_EXPERIMENTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./experiments here: the repository's folder
    assert experiments_root() == Path(jaxspec.__file__).resolve().parents[1] / "experiments"
    (tmp_path / "experiments").mkdir()
    assert experiments_root() == tmp_path / "experiments"
    monkeypatch.setenv("JAXSPEC_EXPERIMENTS_DIR", str(FIXTURES))
    assert experiments_root() == FIXTURES
    assert experiments_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert list(discover()) == ["broken", "toy"]


def test_discover_needs_both_files_and_skips_private_folders(tmp_path):
    for name in ("a", "_private", "no_config"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "experiment.py").write_text("")
    (tmp_path / "a" / "config.toml").write_text("")
    (tmp_path / "_private" / "config.toml").write_text("")
    assert discover(tmp_path) == {"a": tmp_path / "a"}
    assert discover(tmp_path / "missing") == {}


def test_load_by_file_path_with_unique_module_names(tmp_path):
    copy = tmp_path / "toy"
    shutil.copytree(FIXTURES / "toy", copy)
    original, copied = load_experiment(FIXTURES / "toy"), load_experiment(copy)
    assert original.run.__module__ != copied.run.__module__  # same name, different roots
    assert sys.modules[copied.run.__module__].__file__ == str(copy / "experiment.py")
    assert load_experiment(FIXTURES / "toy") is original  # imported once per process
    renamed = tmp_path / "other"
    shutil.copytree(FIXTURES / "toy", renamed)
    with pytest.raises(ImportError, match="must equal its folder's name 'other'"):
        load_experiment(renamed)
