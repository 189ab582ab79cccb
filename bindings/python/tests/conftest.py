"""Shared fixtures of the Python binding tests.

Environment (set by tests/python.rs under `cargo test`; for a direct
`python3 -m pytest bindings/python/tests` the defaults look in target/):

- LOCKING_LIBRARY: path of liblocking.so
- LOCKING_INCLUDE: directory of locking.h (default: include/)
- LOCKRUN: path of the lockrun binary
"""

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "bindings" / "python"))


def _default(path_env, *candidates):
    if os.environ.get(path_env):
        return os.environ[path_env]
    for c in candidates:
        if c.exists():
            os.environ[path_env] = str(c)
            return str(c)
    return None


_default(
    "LOCKING_LIBRARY",
    REPO / "target" / "release" / "liblocking.so",
    REPO / "target" / "debug" / "liblocking.so",
)
_default(
    "LOCKRUN",
    REPO / "target" / "release" / "lockrun",
    REPO / "target" / "debug" / "lockrun",
)

import locking  # noqa: E402  (after LOCKING_LIBRARY is known)

#: The methods that really exclude.
REAL_METHODS = [locking.Method.MKDIR, locking.Method.OPENCREATE, locking.Method.KERNEL]

#: How long a test waits for a helper process before it counts as hung.
PATIENCE = 30.0


@pytest.fixture
def lockdir(tmp_path):
    return tmp_path / "locks"


class Party:
    """Another process that takes a lock, says "locked" and holds it until
    told to release (a line on its stdin)."""

    def __init__(self, argv, env=None):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            bufsize=0,  # no read-ahead: select() sees every line
        )

    def line(self, timeout=PATIENCE):
        """The next line of its output ("" at end of output)."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise AssertionError("%r printed nothing for %s s" % (self.argv, timeout))
        return self.proc.stdout.readline().decode("utf-8", "replace").strip()

    def expect(self, word):
        got = self.line()
        if got != word:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(
                "%r said %r, expected %r; stdout %r stderr %r"
                % (self.argv, got, word, out, err)
            )

    def release(self):
        """Tell it to release; return its exit status."""
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()
        return self.wait()

    def wait(self):
        try:
            return self.proc.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("%r did not finish" % (self.argv,))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def parties():
    """Start Party processes; any left running are killed after the test."""
    started = []

    def start(argv, env=None):
        p = Party([str(a) for a in argv], env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()
        for f in (p.proc.stdin, p.proc.stdout, p.proc.stderr):
            if f and not f.closed:
                f.close()


@pytest.fixture(scope="session")
def c_holder(tmp_path_factory):
    """The C helper (holder.c) compiled against the library under test."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        pytest.skip("no C compiler")
    lib = Path(locking.library_path).resolve()
    include = Path(os.environ.get("LOCKING_INCLUDE", REPO / "include"))
    work = tmp_path_factory.mktemp("c_holder")
    # the loader looks for the SONAME (liblocking.so.0), cargo makes only
    # liblocking.so: link both names to the library under test
    libdir = work / "lib"
    libdir.mkdir()
    for name in ("liblocking.so", "liblocking.so.0"):
        (libdir / name).symlink_to(lib)
    exe = work / "holder"
    cmd = [
        cc,
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-I",
        str(include),
        "-o",
        str(exe),
        str(Path(__file__).with_name("holder.c")),
        "-L",
        str(libdir),
        "-llocking",
        "-Wl,-rpath," + str(libdir),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, "%s\n%s%s" % (" ".join(cmd), done.stdout, done.stderr)
    return exe


@pytest.fixture(scope="session")
def lockrun():
    path = os.environ.get("LOCKRUN")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("lockrun not built (set LOCKRUN)")
    return path
