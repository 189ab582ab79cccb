"""The Python half of the liblocking benchmark suite (see bench/README.md).

Measures the Python locking libraries with their default settings, in the
same scenarios and with the same JSON output as bench/lockbench.c:

    pyworker.py uncontended DIR ROUNDS SLICE_MS SYSTEM...
    pyworker.py contended   DIR SYSTEM NPROC DURATION_MS
    pyworker.py threads     DIR SYSTEM NTHREADS DURATION_MS
    pyworker.py crash       DIR SYSTEM CAP_MS
    pyworker.py hold        DIR SYSTEM N
    pyworker.py dirsize     EMPTY_DIR BIG_DIR ROUNDS PAIRS SYSTEM...

Only the library a command needs is imported, so that the driver's
imports (matplotlib) never weigh on a measurement.
"""

import array
import json
import os
import select
import signal
import sys
import threading
import time

HOLD_S = 0.0005  # inside the lock
WORK_S = 0.0005  # outside the lock

SYSTEMS = ("filelock", "softfilelock", "fasteners", "portalocker")


def now_ns():
    return time.monotonic_ns()


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Handle:
    """One party's handle on one lock name, with the library's defaults."""

    def __init__(self, system, directory, name):
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name + ".lock")
        if system == "filelock":
            import filelock

            lk = filelock.FileLock(path)
        elif system == "softfilelock":
            import filelock

            lk = filelock.SoftFileLock(path)
        elif system == "fasteners":
            import fasteners

            lk = fasteners.InterProcessLock(path)
        elif system == "portalocker":
            import portalocker

            lk = portalocker.Lock(path)
        else:
            raise SystemExit(f"unknown system {system}")
        self.lock = lk.acquire
        self.unlock = lk.release
        self.obj = lk


def load(system, directory):
    """Imports a system's library (before fork, so children do not pay it)."""
    Handle(system, directory, "load")


def cycle_ns(h, n):
    lock, unlock = h.lock, h.unlock
    t0 = now_ns()
    for _ in range(n):
        lock()
        unlock()
    return (now_ns() - t0) / n


def cmd_uncontended(args):
    """Interleaved rounds of single, individually timed cycles, as in
    lockbench.c: the median of a system's cycles is its cost."""
    d, rounds_n, slice_ms, systems = args[0], int(args[1]), float(args[2]), args[3:]
    handles = [Handle(s, os.path.join(d, s), "one") for s in systems]
    k = []
    for h in handles:
        cycle_ns(h, 10)
        c = cycle_ns(h, 50)
        k.append(max(5, min(20000, int(slice_ms * 1e6 / c))))
    d_timer = sorted(-(now_ns() - now_ns()) for _ in range(10001))
    oh = d_timer[5000]
    n = len(handles)
    t = [[] for _ in range(n)]
    for r in range(rounds_n):
        for j in range(n):
            i = (j + r) % n
            h, v = handles[i], t[i]
            lock, unlock = h.lock, h.unlock
            for _ in range(k[i]):
                a = now_ns()
                lock()
                unlock()
                v.append(now_ns() - a - oh)
    for i, s in enumerate(systems):
        v = sorted(t[i])
        emit({"scenario": "uncontended", "system": s, "cycles": len(v), "timer_ns": oh,
              "median_ns": pct(v, 50), "p10_ns": pct(v, 10), "p90_ns": pct(v, 90),
              "mean_ns": round(sum(v) / len(v), 1)})


def cmd_dirsize(args):
    """Single cycles alternating between an empty and a big directory (as in
    lockbench.c): medians of single cycles."""
    empty, big, rounds_n, pairs, systems = args[0], args[1], int(args[2]), int(args[3]), args[4:]
    hs = {s: [Handle(s, d, "dirsize-" + s) for d in (empty, big)] for s in systems}
    t = {s: ([], []) for s in systems}
    for s in systems:
        for h in hs[s]:
            cycle_ns(h, 5)
    for r in range(rounds_n):
        for j in range(len(systems)):
            s = systems[(j + r) % len(systems)]
            for p in range(pairs):
                for q in range(2):
                    k = (p + q) % 2
                    h = hs[s][k]
                    a = now_ns()
                    h.lock()
                    h.unlock()
                    t[s][k].append(now_ns() - a)
    for s in systems:
        e, b = sorted(t[s][0]), sorted(t[s][1])
        emit({"scenario": "dirsize", "system": s, "cycles": len(e),
              "empty_ns": pct(e, 50), "big_ns": pct(b, 50),
              "empty_p90_ns": pct(e, 90), "big_p90_ns": pct(b, 90)})


def bump(fd):
    """Read the counter, hold, write it back + 1: any overlap loses updates."""
    v = int(os.pread(fd, 32, 0) or b"0")
    time.sleep(HOLD_S)
    os.pwrite(fd, b"%d\n" % (v + 1), 0)


def work_loop(h, counter, t_end, waits):
    fd = os.open(counter, os.O_RDWR)
    errors = 0
    try:
        while now_ns() < t_end:
            t0 = now_ns()
            try:
                h.lock()
            except Exception:  # a library timeout (portalocker: 5 s)
                errors += 1
                continue
            waits.append(now_ns() - t0)
            bump(fd)
            h.unlock()
            time.sleep(WORK_S)
    finally:
        os.close(fd)
    return errors


def pct(v, p):
    if not v:
        return -1
    k = max(1, min(len(v), int(p / 100.0 * len(v) + 0.999999)))
    return v[k - 1]


def report(mode, system, nw, t_start, finish, waits, counter, errors, cpu_s):
    waits.sort()
    total = len(waits)
    elapsed = (finish - t_start) / 1e9
    with open(counter) as f:
        cval = int(f.read() or "0")
    emit(
        {
            "scenario": mode,
            "system": system,
            "workers": nw,
            "duration_s": round(elapsed, 3),
            "acquisitions": total,
            "counter": cval,
            "errors": errors,
            "throughput": round(total / elapsed, 1) if elapsed > 0 else 0,
            "cpu_us_per_acq": round(cpu_s * 1e6 / total, 1) if total else 0,
            "over_20ms": sum(1 for w in waits if w > 20e6),
            "p50_us": round(pct(waits, 50) / 1e3, 1),
            "p99_us": round(pct(waits, 99) / 1e3, 1),
            "max_us": round(pct(waits, 100) / 1e3, 1),
        }
    )


def prepare(d):
    lockdir = os.path.join(d, "locks")
    counter = os.path.join(d, "counter")
    os.makedirs(lockdir, exist_ok=True)
    with open(counter, "w") as f:
        f.write("0\n")
    return lockdir, counter


def cmd_contended(args):
    d, system, nw, dur_ms = args[0], args[1], int(args[2]), float(args[3])
    lockdir, counter = prepare(d)
    load(system, d)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    t_end_path = os.path.join(d, "t_end")
    pids = []
    for i in range(nw):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(ready_r)
                os.close(go_w)
                h = Handle(system, lockdir, "contended")
                os.write(ready_w, b"r")
                os.read(go_r, 1)  # EOF when the parent closes it
                with open(t_end_path) as f:
                    t_end = int(f.read())
                waits = []
                errors = work_loop(h, counter, t_end, waits)
                with open(os.path.join(d, f"res.{i}"), "wb") as f:
                    array.array("q", [errors, now_ns()] + waits).tofile(f)
            except BaseException as e:  # report, never return into the parent's code
                sys.stderr.write(f"worker {i}: {e!r}\n")
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(ready_w)
    os.close(go_r)
    for _ in range(nw):
        if os.read(ready_r, 1) != b"r":
            raise SystemExit("a worker died while setting up")
    t_start = now_ns()
    with open(t_end_path, "w") as f:
        f.write(str(t_start + int(dur_ms * 1e6)))
    os.close(go_w)
    bad = 0
    for p in pids:
        _, st = os.waitpid(p, 0)
        bad += st != 0
    if bad:
        raise SystemExit(f"{bad} workers failed")
    waits, errors, finish = [], 0, t_start
    for i in range(nw):
        a = array.array("q")
        with open(os.path.join(d, f"res.{i}"), "rb") as f:
            a.frombytes(f.read())
        errors += a[0]
        finish = max(finish, a[1])
        waits.extend(a[2:])
    ru = os.times()
    report("contended", system, nw, t_start, finish, waits, counter, errors,
           ru.children_user + ru.children_system)


def cmd_threads(args):
    d, system, nw, dur_ms = args[0], args[1], int(args[2]), float(args[3])
    lockdir, counter = prepare(d)
    barrier = threading.Barrier(nw + 1)
    box = {"t_end": 0}
    results = [None] * nw

    def run(i):
        h = Handle(system, lockdir, "contended")
        barrier.wait()
        barrier.wait()
        waits = []
        errors = work_loop(h, counter, box["t_end"], waits)
        results[i] = (errors, now_ns(), waits)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(nw)]
    for t in ts:
        t.start()
    barrier.wait()
    t_start = now_ns()
    box["t_end"] = t_start + int(dur_ms * 1e6)
    c0 = os.times()
    barrier.wait()
    for t in ts:
        t.join()
    c1 = os.times()
    waits = [w for r in results for w in r[2]]
    report("threads", system, nw, t_start, max(r[1] for r in results), waits, counter,
           sum(r[0] for r in results), (c1.user + c1.system) - (c0.user + c0.system))


def cmd_crash(args):
    d, system, cap_ms = args[0], args[1], float(args[2])
    lockdir = os.path.join(d, "locks")
    os.makedirs(lockdir, exist_ok=True)
    load(system, d)
    hr, hw = os.pipe()
    wr, ww = os.pipe()
    holder = os.fork()
    if holder == 0:
        try:
            h = Handle(system, lockdir, "crash")
            h.lock()
            os.write(hw, b"L")
            while True:
                time.sleep(1000)
        finally:
            os._exit(1)
    if os.read(hr, 1) != b"L":
        raise SystemExit("holder failed")
    waiter = os.fork()
    if waiter == 0:
        code = 1
        try:
            h = Handle(system, lockdir, "crash")
            os.write(ww, b"W")
            h.lock()
            os.write(ww, now_ns().to_bytes(8, "little"))
            h.unlock()
            code = 0
        finally:
            os._exit(code)
    if os.read(wr, 1) != b"W":
        raise SystemExit("waiter failed")
    time.sleep(0.1)  # the waiter is in its wait by now
    ready, _, _ = select.select([wr], [], [], 0)
    early = bool(ready)
    t_kill = now_ns()
    os.kill(holder, signal.SIGKILL)
    os.waitpid(holder, 0)
    ready, _, _ = select.select([wr], [], [], cap_ms / 1e3)
    rec = None
    if ready:
        b = os.read(wr, 8)
        if len(b) == 8:
            rec = (int.from_bytes(b, "little") - t_kill) / 1e6
    if rec is None:
        os.kill(waiter, signal.SIGKILL)
    os.waitpid(waiter, 0)
    emit({"scenario": "crash", "system": system, "cap_ms": cap_ms, "early": early,
          "recovery_ms": None if rec is None else round(rec, 3)})


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def cmd_hold(args):
    d, system, n = args[0], args[1], int(args[2])
    os.makedirs(d, exist_ok=True)
    Handle(system, os.path.join(d, "warmup"), "w")  # imports the library
    rss0, hwm0 = status_kb("VmRSS"), status_kb("VmHWM")
    fds0 = len(os.listdir("/proc/self/fd"))
    t0 = now_ns()
    hs = [Handle(system, d, "name%05d" % i) for i in range(n)]
    t1 = now_ns()
    lat = []
    for h in hs:
        a = now_ns()
        h.lock()
        lat.append(now_ns() - a)
    t2 = now_ns()
    hwm1, rss1 = status_kb("VmHWM"), status_kb("VmRSS")
    fds1 = len(os.listdir("/proc/self/fd"))
    t3 = now_ns()
    for h in hs:
        h.unlock()
    t4 = now_ns()
    k = min(100, n)
    emit({"scenario": "hold", "system": system, "n": n,
          "new_ms": round((t1 - t0) / 1e6, 3), "lock_all_ms": round((t2 - t1) / 1e6, 3),
          "unlock_all_ms": round((t4 - t3) / 1e6, 3),
          "first100_us": round(sum(lat[:k]) / k / 1e3, 2),
          "last100_us": round(sum(lat[-k:]) / k / 1e3, 2),
          "rss0_kb": rss0, "hwm0_kb": hwm0, "rss_kb": rss1, "hwm_kb": hwm1,
          "fds_held": fds1 - fds0})


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "list":
        print("\n".join(SYSTEMS))
        return
    fn = {
        "uncontended": cmd_uncontended,
        "contended": cmd_contended,
        "threads": cmd_threads,
        "crash": cmd_crash,
        "hold": cmd_hold,
        "dirsize": cmd_dirsize,
    }.get(cmd)
    if fn is None:
        raise SystemExit(f"unknown command {cmd}")
    fn(args)


if __name__ == "__main__":
    main()
