"""A Python party for the cross-process tests (run as a separate process).

    pyparty.py locker LOCKDIR NS NAME METHOD TIMEOUT [exclusive|shared]
        the same protocol as holder.c: takes the lock, prints "locked TOKEN",
        holds it until a line (or end of file) arrives on stdin, releases,
        prints "released", exits 0; or prints "failed CODE MESSAGE" and
        exits 10 - CODE.

    pyparty.py count LOCKDIR NAME METHOD COUNTER N
        N times: under the lock, checks that nobody else is inside (a marker
        file made with O_EXCL), reads COUNTER, writes COUNTER + 1. Prints
        "done" and exits 0, or "overlap" and exits 3.
"""

import os
import sys

import locking


def locker(lockdir, ns, name, method, timeout, mode="exclusive"):
    lk = locking.Locker(name, lockdir, ns=ns or None, method=int(method))
    try:
        lk.acquire(timeout=float(timeout), shared=(mode == "shared"))
    except locking.LockingError as e:
        print("failed %d %s" % (e.code, e.message), flush=True)
        return 10 - e.code
    print("locked %d" % lk.fencing_token, flush=True)
    sys.stdin.readline()
    lk.release()
    print("released", flush=True)
    return 0


def count(lockdir, name, method, counter, n):
    lk = locking.Locker(name, lockdir, method=int(method))
    marker = counter + ".inside"
    for _ in range(int(n)):
        with lk:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                print("overlap", flush=True)
                return 3
            os.close(fd)
            try:
                with open(counter) as f:
                    value = int(f.read() or "0")
            except FileNotFoundError:
                value = 0
            with open(counter + ".tmp", "w") as f:
                f.write("%d\n" % (value + 1))
            os.replace(counter + ".tmp", counter)
            os.unlink(marker)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    sys.exit({"locker": locker, "count": count}[what](*args))
