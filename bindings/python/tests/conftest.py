"""Shared fixtures of the Python binding tests.

`cargo test --test python` (tests/python.rs) installs the package into a
fresh virtual environment and runs these tests with its python, outside the
repository, so `import locking` is the installed package. Environment:

- LOCKING_TEST_INSTALLED=1: the package must be the installed one, with its
  own library (no LOCKING_LIBRARY).
- LOCKING_C_LIBDIR: a directory with liblocking.so and liblocking.so.0 of
  the cargo build, for the C party (default: the package's own library).
- LOCKING_INCLUDE: directory of locking.h (default: include/).
- LOCKRUN: path of the lockrun binary (default: target/{release,debug}).

Run directly from a checkout without installing (`python3 -m pytest
bindings/python/tests`), the source package is used with the library in
target/release or target/debug (or LOCKING_LIBRARY).
"""

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent

try:
    import locking
except ImportError:
    if os.environ.get("LOCKING_TEST_INSTALLED") == "1":
        raise
    # a checkout: the source package and a library built by cargo
    for candidate in ("release", "debug"):
        lib = REPO / "target" / candidate / "liblocking.so"
        if not os.environ.get("LOCKING_LIBRARY") and lib.exists():
            os.environ["LOCKING_LIBRARY"] = str(lib)
    source = str(REPO / "bindings" / "python")
    sys.path.insert(0, source)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [source] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    import locking  # noqa: E402

if not os.environ.get("LOCKRUN"):
    for candidate in ("release", "debug"):
        exe = REPO / "target" / candidate / "lockrun"
        if exe.exists():
            os.environ["LOCKRUN"] = str(exe)
            break

#: The methods that really exclude.
REAL_METHODS = [locking.Method.MKDIR, locking.Method.OPENCREATE, locking.Method.KERNEL]

#: How long a test waits for something that must happen before it counts
#: as hung (never a wait that must be long enough for a test to pass).
PATIENCE = 30.0

#: The Python party (see pyparty.py).
PYPARTY = HERE / "pyparty.py"


def method_id(m):
    return m.name.lower()


def wait_until(predicate, what, patience=PATIENCE):
    """Poll `predicate` until it is true; fail after `patience` seconds."""
    deadline = time.monotonic() + patience
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting until %s" % what)
        time.sleep(0.001)


@pytest.fixture
def lockdir(tmp_path):
    return tmp_path / "locks"


class Party:
    """Another process that takes a lock, says "locked [TOKEN]" and holds it
    until told to release (a line on its stdin)."""

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
        """The next line must start with `word`; returns the rest."""
        got = self.line()
        first, _, rest = got.partition(" ")
        if first != word:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(
                "%r said %r, expected %r; stdout %r stderr %r"
                % (self.argv, got, word, out, err)
            )
        return rest

    def expect_locked(self):
        """Waits for "locked TOKEN"; returns the fencing token."""
        return int(self.expect("locked"))

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
    """The C party (holder.c) compiled with cc against locking.h and the
    cargo build's liblocking.so (LOCKING_C_LIBDIR), else the package's."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        if os.environ.get("LOCKING_TEST_INSTALLED") == "1":
            pytest.fail("no C compiler (cc)")
        pytest.skip("no C compiler")
    include = Path(os.environ.get("LOCKING_INCLUDE", REPO / "include"))
    work = tmp_path_factory.mktemp("c_holder")
    libdir = os.environ.get("LOCKING_C_LIBDIR")
    if libdir:
        libdir = Path(libdir)
    else:
        # the loader looks for the SONAME (liblocking.so.0): link both
        # names to the library the package uses
        lib = Path(locking.library_path).resolve()
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
        str(HERE / "holder.c"),
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
        if os.environ.get("LOCKING_TEST_INSTALLED") == "1":
            pytest.fail("lockrun not found (LOCKRUN)")
        pytest.skip("lockrun not built (set LOCKRUN)")
    return path


@pytest.fixture(scope="session")
def pyparty():
    """argv prefix of the Python party."""
    return [sys.executable, str(PYPARTY)]
