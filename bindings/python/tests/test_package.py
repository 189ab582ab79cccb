"""The installed package: it carries its own library, works with no
environment variable from any directory, and says its version."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import locking
from conftest import REPO

installed = pytest.mark.skipif(
    os.environ.get("LOCKING_TEST_INSTALLED") != "1",
    reason="runs against the pip-installed package (cargo test --test python)",
)


def test_versions_agree():
    cargo = (REPO / "Cargo.toml").read_text()
    crate = re.search(r'^version\s*=\s*"([^"]+)"', cargo, re.M).group(1)
    assert locking.__version__ == crate
    assert locking.version() == crate  # the library in use


def test_typed():
    assert (Path(locking.__file__).parent / "py.typed").is_file()
    hints = locking.Locker.acquire.__annotations__
    assert set(hints) >= {"timeout", "blocking", "shared", "return"}


@installed
def test_the_package_carries_its_library():
    package = Path(locking.__file__).resolve().parent
    assert REPO not in package.parents, "locking was imported from the repository"
    assert "LOCKING_LIBRARY" not in os.environ
    lib = Path(locking.library_path).resolve()
    assert lib.parent == package
    assert lib.name.startswith("_liblocking")


@installed
def test_import_from_anywhere_without_environment(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LOCKING_LIBRARY", "PYTHONPATH", "LD_LIBRARY_PATH")
    }
    code = "import locking; print(locking.library_path); print(locking.version())"
    for cwd in (tmp_path, Path("/")):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        path, version = done.stdout.split("\n")[:2]
        assert Path(path).parent == Path(locking.__file__).parent
        assert version == locking.__version__
