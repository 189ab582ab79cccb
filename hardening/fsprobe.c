/*
 * fsprobe: the C driver of the file system matrix (hardening/fs_matrix.sh)
 * and of the soak (hardening/soak.sh).
 *
 *   fsprobe stress  -m METHOD -d LOCKDIR [-D LOCKDIR2] [-f DATA] [-F DATA2]
 *                   [-p PROCS] [-t THREADS] [-s SECONDS]
 *       P processes x T threads, each with its own Locker on one name, lock
 *       and unlock in a loop for S seconds. Inside the critical section an
 *       owner word in shared memory is claimed and released (two parties
 *       inside at once is a violation), a counter in shared memory gets a
 *       deliberately non-atomic read-modify-write, and so does a counter in
 *       the file DATA on the file system under test (opened after locking,
 *       closed before unlocking). With -D, odd-numbered processes use
 *       LOCKDIR2 (and DATA2): two views of one directory.
 *
 *   fsprobe sigkill -m METHOD -d LOCKDIR [-D LOCKDIR2]
 *       A holder (on LOCKDIR) locks with expire disabled and is killed with
 *       SIGKILL; two waiters (on LOCKDIR2, else LOCKDIR), expire disabled,
 *       one with a 10 s timeout and one waiting forever, must both get the
 *       lock, the first within 5 s of the kill. Before the kill, a try-lock
 *       must fail (the lock is really held).
 *
 *   fsprobe latency -m METHOD -d LOCKDIR [-D LOCKDIR2] [-r ROUNDS]
 *       A holder on LOCKDIR releases while a waiter on LOCKDIR2 (else
 *       LOCKDIR) is blocked in locker_lock; prints the time from the
 *       release to the waiter's acquisition for each round.
 *
 *   fsprobe killstress -m METHOD -d LOCKDIR [-D LOCKDIR2] [-p PROCS]
 *                   [-t THREADS] [-s SECONDS]
 *       Like stress (expire disabled), while the supervisor kills a random
 *       worker process with SIGKILL every 10-60 ms and starts a new one:
 *       dead holders' locks are broken by waiters, often by several at
 *       once. A party killed inside the critical section leaves its mark
 *       in the owner word, which the next holder may take over; any other
 *       overlap is a violation; no acquisition for 5 s is a stall.
 *
 *   fsprobe olfd    -m METHOD -d DIR
 *       open_locked_fd exclusion on DIR/file reached by two paths, and a
 *       multiprocess counter kept in the locked file itself.
 *
 *   fsprobe soak    -d BASE [-s SECONDS] [-p PROCS] [-t THREADS] [-m M] [-K]
 *       Mixed load on every real method at once (Lockers with various
 *       timeouts, open_locked_fd, check/refresh) with random SIGKILLs;
 *       reports acquisitions, kills, violations and stalls (a lock nobody
 *       acquired for more than 5 s). -m METHOD uses that method in all
 *       three slots (-m fake: the checks must then fail); -K: no kills.
 *
 * Every command prints "RESULT ..." lines and ends with one line
 *   VERDICT works | VERDICT refused <code> <call>: <message>
 *   | VERDICT noexcl <what> | VERDICT failed <what>
 * and exits 0 (works), 10 (refused: a clear error code with a message),
 * 20 (noexcl: two parties held the lock at once, or a lost update) or
 * 30 (failed: a stall, a timeout, an error without a message, a crash).
 *
 * No check relies on a sleep being long enough: parties synchronise through
 * pipes and shared memory; times are only compared with generous bounds.
 */
#define _GNU_SOURCE 1
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>

/* The C test support library (c_tests/support.h, compiled with
 * -I c_tests): clocks, random numbers, names, /proc, processes, pipes and
 * the random-kill harness. Its helpers give up through die(). */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define T_SETUP_FAILED die
#include "support.h"

#define EXIT_WORKS 0
#define EXIT_REFUSED 10
#define EXIT_NOEXCL 20
#define EXIT_FAILED 30

/* Bounds (seconds). Generous: they only catch hangs and stalls. */
#define LOCK_TIMEOUT 20.0      /* a stress locker_lock that waits longer: stall */
#define RECOVERY_BOUND 5.0     /* SIGKILLed holder -> waiter has the lock */
#define PIPE_WAIT 30.0         /* any pipe handshake */
#define STALL_BOUND 5.0        /* soak: no acquisition of a method for this long */

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

/* One write(2) per line, so lines of concurrent processes never mix. */
static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(STDOUT_FILENO, buf, (size_t)n);
    (void)w;
}

static void die(const char *fmt, ...)
{
    char msg[2048];
    int e = errno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    out("VERDICT failed setup: %s (errno %d: %s)", msg, e, strerror(e));
    _exit(EXIT_FAILED);
}

/* Replace newlines so that a message stays on one line of the table. */
static void one_line(char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r' || *s == '|')
            *s = ' ';
}

/* Is process `pid` asleep in a system call (not running)? Reads
 * /proc/<pid>/syscall ("running" while on a CPU). Unknown -> true. */
static bool blocked_in_syscall(pid_t pid)
{
    char buf[128];
    if (t_proc_read(pid, "syscall", buf, sizeof buf) < 0)
        return true;
    return strncmp(buf, "running", 7) != 0;
}

/* ------------------------------------------------------------------ */
/* the shared record of one run                                         */

#define MSG_LEN 600

struct errinfo {
    atomic_int taken;
    int code, err;
    char call[48];
    char msg[MSG_LEN];
};

struct shared {
    atomic_uint_fast64_t owner;   /* who is inside the critical section */
    volatile long counter;        /* non-atomic read-modify-write */
    atomic_long increments;       /* completed critical sections */
    atomic_long acquisitions;
    atomic_long violations;
    atomic_long errors;
    atomic_long file_bad;         /* DATA file I/O failures */
    atomic_long lost;             /* LOCKING_E_LOCK_LOST from locker_unlock */
    atomic_int ready;
    atomic_int go;
    atomic_int stop;
    double end_at;                /* monotonic deadline of the run */
    char violation_desc[256];
    atomic_int violation_taken;
    struct errinfo err;
};

static struct shared *sh;

static void record_error(struct errinfo *ei, const char *call, int code)
{
    int e = errno;
    const char *le = locking_last_error();
    int expected = 0;
    if (atomic_compare_exchange_strong(&ei->taken, &expected, 1)) {
        ei->code = code;
        ei->err = e;
        snprintf(ei->call, sizeof ei->call, "%s", call);
        snprintf(ei->msg, sizeof ei->msg, "%s", le ? le : "");
        one_line(ei->msg);
        atomic_store(&ei->taken, 2);
    }
}

static void record_violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void record_violation(const char *fmt, ...)
{
    atomic_fetch_add(&sh->violations, 1);
    int expected = 0;
    if (atomic_compare_exchange_strong(&sh->violation_taken, &expected, 1)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sh->violation_desc, sizeof sh->violation_desc, fmt, ap);
        va_end(ap);
    }
}

/* Claim the owner word on entering the critical section. */
static void cs_enter(uint64_t me)
{
    uint64_t expected = 0;
    if (!atomic_compare_exchange_strong(&sh->owner, &expected, me))
        record_violation("party %llx entered while party %llx was inside",
                         (unsigned long long)me, (unsigned long long)expected);
}

static void cs_leave(uint64_t me)
{
    uint64_t expected = me;
    if (!atomic_compare_exchange_strong(&sh->owner, &expected, 0))
        record_violation("party %llx left, but party %llx had taken its place",
                         (unsigned long long)me, (unsigned long long)expected);
}

/* The counter kept in a file on the file system under test: opened after
 * locking, read, incremented, written back, closed before unlocking.
 * Returns false on an I/O failure. */
static bool file_increment(const char *path, uint64_t *rng)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return false;
    long v = 0;
    ssize_t n = pread(fd, &v, sizeof v, 0);
    if (n != 0 && n != (ssize_t)sizeof v) {
        close(fd);
        return false;
    }
    if ((t_rng_next(rng) & 3) == 0)
        sched_yield();
    v++;
    bool ok = pwrite(fd, &v, sizeof v, 0) == (ssize_t)sizeof v;
    return close(fd) == 0 && ok;
}

static long file_read_counter(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long v = 0;
    ssize_t n = pread(fd, &v, sizeof v, 0);
    close(fd);
    return n == (ssize_t)sizeof v ? v : (n == 0 ? 0 : -1);
}

/* ------------------------------------------------------------------ */
/* options                                                              */

struct opts {
    const char *cmd;
    int method;
    const char *dir, *dir2, *data, *data2;
    int procs, threads, rounds;
    double seconds;
    bool no_kills;      /* soak -K: no SIGKILLs (to see a stall reported) */
};

static struct opts o = {
    .method = -1, .procs = 3, .threads = 3, .rounds = 10, .seconds = 1.0,
};

static void usage(void)
{
    fprintf(stderr,
            "usage: fsprobe stress|killstress|sigkill|latency|olfd|soak -m METHOD -d DIR "
            "[-D DIR2] [-f DATA] [-F DATA2] [-p PROCS] [-t THREADS] "
            "[-s SECONDS] [-r ROUNDS]\n");
    exit(2);
}

/* ------------------------------------------------------------------ */
/* stress                                                              */

struct stress_arg {
    int proc, thread;
    const char *dir, *data;
};

static void *stress_thread(void *p)
{
    struct stress_arg *a = p;
    uint64_t me = ((uint64_t)(a->proc + 1) << 16) | (uint64_t)(a->thread + 1);
    uint64_t rng = t_rng_seed(me);
    Locker *l = NULL;
    int rc = locker_new("counter", a->dir, "fsmatrix", LOCK_TIMEOUT,
                        LOCKING_NEVER_EXPIRE, o.method, &l);
    if (rc != LOCKING_OK) {
        atomic_fetch_add(&sh->errors, 1);
        record_error(&sh->err, "locker_new", rc);
        atomic_fetch_add(&sh->ready, 1);
        return NULL;
    }
    atomic_fetch_add(&sh->ready, 1);
    while (!atomic_load(&sh->go))
        t_sleep(0.0005);
    long mine = 0;
    int io_errors = 0;
    while (t_now() < sh->end_at && !atomic_load(&sh->stop)) {
        rc = locker_lock(l);
        if (rc != LOCKING_OK) {
            atomic_fetch_add(&sh->errors, 1);
            record_error(&sh->err, "locker_lock", rc);
            /* an I/O error is reported, and the load goes on so that the
             * exclusion is still exercised; anything else ends the thread */
            if (rc == LOCKING_E_IO && ++io_errors < 1000)
                continue;
            break;
        }
        atomic_fetch_add(&sh->acquisitions, 1);
        cs_enter(me);
        long v = sh->counter;
        uint64_t r = t_rng_next(&rng);
        t_spin_for((double)(r % 50) * 1e-6);
        if ((r >> 20) % 4 == 0)
            sched_yield();
        sh->counter = v + 1;
        if (a->data != NULL && !file_increment(a->data, &rng))
            atomic_fetch_add(&sh->file_bad, 1);
        atomic_fetch_add(&sh->increments, 1);
        mine++;
        cs_leave(me);
        rc = locker_unlock(l);
        if (rc == LOCKING_E_LOCK_LOST) {
            /* expire is disabled and every holder is alive: nobody may
             * break this lock */
            atomic_fetch_add(&sh->lost, 1);
            continue;
        }
        if (rc != LOCKING_OK) {
            atomic_fetch_add(&sh->errors, 1);
            record_error(&sh->err, "locker_unlock", rc);
            break;
        }
    }
    locker_free(l);
    return NULL;
}

static void stress_proc(int proc)
{
    bool second = o.dir2 != NULL && (proc % 2) == 1;
    pthread_t th[64];
    struct stress_arg args[64];
    for (int t = 0; t < o.threads; t++) {
        args[t] = (struct stress_arg){
            proc, t, second ? o.dir2 : o.dir,
            second && o.data2 ? o.data2 : o.data,
        };
        if (pthread_create(&th[t], NULL, stress_thread, &args[t]) != 0)
            die("pthread_create");
    }
    for (int t = 0; t < o.threads; t++)
        pthread_join(th[t], NULL);
    _exit(0);
}

/* The verdict from the shared record; prints it and returns the exit code. */
static int verdict_from_shared(const char *what, long expected_counter,
                               long file_counter, bool check_file)
{
    long viol = atomic_load(&sh->violations);
    long lost = expected_counter - sh->counter;
    if (atomic_load(&sh->lost) > 0) {
        out("VERDICT noexcl %s: a live holder's lock was broken %ld times "
            "(locker_unlock returned LOCKING_E_LOCK_LOST with expire "
            "disabled); %ld violations seen", what, atomic_load(&sh->lost),
            viol);
        return EXIT_NOEXCL;
    }
    if (viol > 0 || lost != 0) {
        out("VERDICT noexcl %s: %ld violations (%s), shared counter %ld for "
            "%ld critical sections", what, viol,
            viol ? sh->violation_desc : "none seen", sh->counter,
            expected_counter);
        return EXIT_NOEXCL;
    }
    if (check_file && file_counter != expected_counter &&
        atomic_load(&sh->errors) == 0) {
        out("VERDICT noexcl %s: file counter %ld for %ld critical sections "
            "(lost updates in the data file)%s", what, file_counter,
            expected_counter,
            atomic_load(&sh->file_bad) ? " (and data file I/O errors)" : "");
        return EXIT_NOEXCL;
    }
    if (atomic_load(&sh->errors) > 0) {
        struct errinfo *e = &sh->err;
        if (e->code == LOCKING_E_LOCKER_FAILED ||
            e->code == LOCKING_E_CANNOT_GET_LOCK) {
            out("VERDICT failed %s: %s timed out (%s) after %.0f s: stall; "
                "last_error \"%s\"", what, e->call, t_rc_name(e->code),
                LOCK_TIMEOUT, e->msg);
            return EXIT_FAILED;
        }
        if (e->code >= 0 || e->msg[0] == '\0' || e->code == LOCKING_E_INTERNAL) {
            out("VERDICT failed %s: %s returned %s (%d) with last_error \"%s\"",
                what, e->call, t_rc_name(e->code), e->code, e->msg);
            return EXIT_FAILED;
        }
        out("VERDICT refused %s %s (%ld times in %ld acquisitions): %s",
            t_rc_name(e->code), e->call, atomic_load(&sh->errors),
            atomic_load(&sh->acquisitions), e->msg);
        return EXIT_REFUSED;
    }
    if (atomic_load(&sh->file_bad) > 0) {
        out("VERDICT failed %s: %ld I/O failures on the data file", what,
            atomic_load(&sh->file_bad));
        return EXIT_FAILED;
    }
    return -1;
}

static int cmd_stress(void)
{
    if (o.procs < 1 || o.threads < 1 || o.threads > 64)
        usage();
    sh = t_shared_alloc(sizeof *sh);
    if (o.data != NULL && unlink(o.data) != 0 && errno != ENOENT)
        die("unlink %s", o.data);
    pid_t *pids = calloc((size_t)o.procs, sizeof *pids);
    for (int p = 0; p < o.procs; p++) {
        pids[p] = t_fork_guarded();
        if (pids[p] == 0)
            stress_proc(p);
    }
    /* everybody has made its Locker (or failed to): start together */
    double t_ready = t_now() + PIPE_WAIT;
    while (atomic_load(&sh->ready) < o.procs * o.threads && t_now() < t_ready)
        t_sleep(0.001);
    double t0 = t_now();
    sh->end_at = t0 + o.seconds;
    atomic_store(&sh->go, 1);
    bool hung = false;
    double deadline = t0 + o.seconds + LOCK_TIMEOUT + 15.0;
    for (int p = 0; p < o.procs; p++) {
        int st = 0;
        if (t_wait_until(pids[p], deadline, &st) == 0) {
            hung = true;
            atomic_store(&sh->stop, 1);
            t_kill_reap(pids[p]);
        } else if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            atomic_fetch_add(&sh->errors, 1);
            if (!atomic_load(&sh->err.taken)) {
                sh->err.code = 1;
                snprintf(sh->err.call, sizeof sh->err.call, "worker process");
                snprintf(sh->err.msg, sizeof sh->err.msg,
                         "ended with status 0x%x", st);
                atomic_store(&sh->err.taken, 2);
            }
        }
    }
    double elapsed = t_now() - t0;
    long inc = atomic_load(&sh->increments);
    long fc = o.data ? file_read_counter(o.data) : -1;
    out("RESULT test=stress method=%s procs=%d threads=%d views=%d "
        "acquisitions=%ld increments=%ld shared_counter=%ld file_counter=%ld "
        "violations=%ld lock_lost=%ld errors=%ld seconds=%.2f rate=%.0f/s",
        t_method_name(o.method), o.procs, o.threads, o.dir2 ? 2 : 1,
        atomic_load(&sh->acquisitions), inc, sh->counter, fc,
        atomic_load(&sh->violations), atomic_load(&sh->lost),
        atomic_load(&sh->errors), elapsed,
        (double)inc / (elapsed > 0 ? elapsed : 1));
    if (hung) {
        out("VERDICT failed stress: a worker process hung (killed after %.0f s)",
            deadline - t0);
        return EXIT_FAILED;
    }
    int v = verdict_from_shared("stress", inc, fc, o.data != NULL);
    if (v >= 0)
        return v;
    if (inc < 20) {
        out("VERDICT failed stress: only %ld acquisitions in %.1f s", inc,
            elapsed);
        return EXIT_FAILED;
    }
    out("VERDICT works %ld acquisitions by %d processes x %d threads, no "
        "lost update", inc, o.procs, o.threads);
    return EXIT_WORKS;
}

/* ------------------------------------------------------------------ */
/* sigkill                                                              */

struct killshared {
    atomic_int holder_doomed;
    double t_kill;
    double t_acq[2];
    int rc_try, rc_lock[2], rc_check[2], rc_unlock[2];
    char msg[2][MSG_LEN];
    char try_msg[MSG_LEN];
};

static int cmd_sigkill(void)
{
    sh = t_shared_alloc(sizeof *sh);
    struct killshared *ks = t_shared_alloc(sizeof *ks);
    /* "not run" until the try-lock happens: the holder may be refused
     * before it, and 0 would read as "the try-lock succeeded" */
    ks->rc_try = 1;
    const char *wdir = o.dir2 ? o.dir2 : o.dir;
    t_pipe held = t_pipe_new(), start = t_pipe_new(), waiting = t_pipe_new();
    bool hung = false;
    double first = 1e9, second = 0;

    pid_t holder = t_fork_guarded();
    if (holder == 0) {
        Locker *l = NULL;
        int rc = locker_new("victim", o.dir, "fsmatrix", 10.0,
                            LOCKING_NEVER_EXPIRE, o.method, &l);
        if (rc == LOCKING_OK)
            rc = locker_lock(l);
        if (rc != LOCKING_OK) {
            record_error(&sh->err, "holder locker_new/locker_lock", rc);
            t_send_byte(&held, 'E');
            _exit(0);
        }
        cs_enter(1);
        t_send_byte(&held, 'L');
        for (;;)
            pause();
    }
    int c = t_recv_timeout(&held, PIPE_WAIT);
    if (c != 'L') {
        t_kill_reap(holder);
        if (c == 'E')
            goto verdict;
        out("VERDICT failed sigkill: the holder did not report (%d)", c);
        return EXIT_FAILED;
    }

    /* the lock is held: a try-lock from the waiters' side must fail */
    {
        Locker *t = NULL;
        int rc = locker_new("victim", wdir, "fsmatrix", 0.0,
                            LOCKING_NEVER_EXPIRE, o.method, &t);
        if (rc == LOCKING_OK)
            rc = locker_lock(t);
        ks->rc_try = rc;
        snprintf(ks->try_msg, sizeof ks->try_msg, "%s",
                 rc == LOCKING_OK ? "" : locking_last_error());
        one_line(ks->try_msg);
        if (rc == LOCKING_OK)
            locker_unlock(t);
        locker_free(t);
    }

    pid_t waiter[2];
    for (int w = 0; w < 2; w++) {
        waiter[w] = t_fork_guarded();
        if (waiter[w] == 0) {
            Locker *l = NULL;
            double timeout = w == 0 ? 10.0 : LOCKING_WAIT_FOREVER;
            int rc = locker_new("victim", wdir, "fsmatrix", timeout,
                                LOCKING_NEVER_EXPIRE, o.method, &l);
            if (t_recv_timeout(&start, PIPE_WAIT) != 'S')
                _exit(1);
            t_send_byte(&waiting, 'W');
            if (rc == LOCKING_OK)
                rc = locker_lock(l);
            ks->t_acq[w] = t_now();
            ks->rc_lock[w] = rc;
            if (rc != LOCKING_OK) {
                snprintf(ks->msg[w], MSG_LEN, "%s", locking_last_error());
                one_line(ks->msg[w]);
                _exit(0);
            }
            /* the killed holder (party 1) may still own the word: it
             * was marked doomed just before the kill */
            uint64_t me = 2 + (uint64_t)w, cur = 1;
            if (!(atomic_load(&ks->holder_doomed) &&
                  atomic_compare_exchange_strong(&sh->owner, &cur, me)))
                cs_enter(me);
            t_spin_for(0.001);
            ks->rc_check[w] = locker_check(l);
            cs_leave(me);
            ks->rc_unlock[w] = locker_unlock(l);
            locker_free(l);
            _exit(0);
        }
    }
    for (int w = 0; w < 2; w++)
        t_send_byte(&start, 'S');
    for (int w = 0; w < 2; w++)
        if (t_recv_timeout(&waiting, PIPE_WAIT) != 'W') {
            t_kill_reap(holder);
            t_kill_reap(waiter[0]);
            t_kill_reap(waiter[1]);
            out("VERDICT failed sigkill: a waiter did not start");
            return EXIT_FAILED;
        }
    /* best effort: let both waiters get to sleep inside locker_lock */
    for (double until = t_now() + 2.0; t_now() < until;)
        if (blocked_in_syscall(waiter[0]) && blocked_in_syscall(waiter[1]))
            break;
        else
            t_sleep(0.002);
    /* the holder dies inside its critical section: the first waiter may
     * take the owner word over from it (and only from it, only now) */
    atomic_store(&ks->holder_doomed, 1);
    ks->t_kill = t_now();
    t_kill_reap(holder);

    for (int w = 0; w < 2; w++) {
        int st;
        if (t_wait_until(waiter[w], ks->t_kill + 15.0, &st) == 0) {
            hung = true;
            t_kill_reap(waiter[w]);
        }
    }
    for (int w = 0; w < 2; w++) {
        if (ks->rc_lock[w] == LOCKING_OK && ks->t_acq[w] > 0) {
            double d = ks->t_acq[w] - ks->t_kill;
            if (d < first)
                first = d;
            if (d > second)
                second = d;
        }
    }
    out("RESULT test=sigkill method=%s views=%d try_while_held=%s "
        "waiter_timeout10=%s waiter_forever=%s recovery_first=%.4f "
        "recovery_second=%.4f check=%s/%s unlock=%s/%s",
        t_method_name(o.method), o.dir2 ? 2 : 1, t_rc_name(ks->rc_try),
        t_rc_name(ks->rc_lock[0]), hung && ks->t_acq[1] == 0 ? "(hung)"
        : t_rc_name(ks->rc_lock[1]), first < 1e9 ? first : -1.0, second,
        t_rc_name(ks->rc_check[0]), t_rc_name(ks->rc_check[1]),
        t_rc_name(ks->rc_unlock[0]), t_rc_name(ks->rc_unlock[1]));

verdict:
    if (ks->rc_try == LOCKING_OK) {
        out("VERDICT noexcl sigkill: a try-lock succeeded while the holder "
            "held the lock");
        return EXIT_NOEXCL;
    }
    if (atomic_load(&sh->violations) > 0) {
        out("VERDICT noexcl sigkill: %s", sh->violation_desc);
        return EXIT_NOEXCL;
    }
    if (atomic_load(&sh->err.taken)) {
        struct errinfo *e = &sh->err;
        if (e->msg[0] == '\0') {
            out("VERDICT failed sigkill: %s returned %s without a message",
                e->call, t_rc_name(e->code));
            return EXIT_FAILED;
        }
        out("VERDICT refused %s %s: %s", t_rc_name(e->code), e->call, e->msg);
        return EXIT_REFUSED;
    }
    if (ks->rc_try != LOCKING_E_LOCKER_FAILED) {
        if (ks->rc_try < 0 && ks->try_msg[0] != '\0' &&
            ks->rc_try != LOCKING_E_INTERNAL) {
            out("VERDICT refused %s try-lock: %s", t_rc_name(ks->rc_try),
                ks->try_msg);
            return EXIT_REFUSED;
        }
        out("VERDICT failed sigkill: try-lock while held returned %s, "
            "message \"%s\"", t_rc_name(ks->rc_try), ks->try_msg);
        return EXIT_FAILED;
    }
    if (hung) {
        out("VERDICT failed sigkill: a waiter was still waiting 15 s after "
            "the holder was killed");
        return EXIT_FAILED;
    }
    for (int w = 0; w < 2; w++) {
        int rc = ks->rc_lock[w];
        if (rc != LOCKING_OK) {
            if (rc < 0 && rc != LOCKING_E_LOCKER_FAILED &&
                rc != LOCKING_E_INTERNAL && ks->msg[w][0] != '\0') {
                out("VERDICT refused %s waiter %d locker_lock: %s", t_rc_name(rc),
                    w, ks->msg[w]);
                return EXIT_REFUSED;
            }
            out("VERDICT failed sigkill: waiter %d: locker_lock returned %s: "
                "%s", w, t_rc_name(rc), ks->msg[w]);
            return EXIT_FAILED;
        }
        if (ks->rc_check[w] != LOCKING_OK || ks->rc_unlock[w] != LOCKING_OK) {
            out("VERDICT failed sigkill: waiter %d: locker_check %s, "
                "locker_unlock %s", w, t_rc_name(ks->rc_check[w]),
                t_rc_name(ks->rc_unlock[w]));
            return EXIT_FAILED;
        }
    }
    if (first > RECOVERY_BOUND) {
        out("VERDICT failed sigkill: the first waiter got the lock %.2f s "
            "after the kill (bound %.0f s)", first, RECOVERY_BOUND);
        return EXIT_FAILED;
    }
    out("VERDICT works recovered %.4f s after SIGKILL (expire disabled)",
        first);
    return EXIT_WORKS;
}

/* ------------------------------------------------------------------ */
/* latency                                                              */

struct latshared {
    double t_release, t_acquired;
    int rc;
    bool early;            /* the waiter got the lock while it was held */
    int spurious;          /* LOCKING_E_IO returned to a waiter, retried */
    char spur_msg[MSG_LEN];
};

static int cmd_latency(void)
{
    if (o.rounds < 1 || o.rounds > 1000)
        usage();
    sh = t_shared_alloc(sizeof *sh);
    struct latshared *ls = t_shared_alloc(sizeof *ls);
    const char *wdir = o.dir2 ? o.dir2 : o.dir;
    t_pipe to_h = t_pipe_new(), from_h = t_pipe_new();
    t_pipe to_w = t_pipe_new(), from_w = t_pipe_new();

    pid_t h = t_fork_guarded();
    if (h == 0) {
        Locker *l = NULL;
        int rc = locker_new("latency", o.dir, "fsmatrix", 10.0,
                            LOCKING_NEVER_EXPIRE, o.method, &l);
        for (;;) {
            int c = t_recv_timeout(&to_h, PIPE_WAIT);
            if (c == 'L') {
                if (rc == LOCKING_OK)
                    rc = locker_lock(l);
                if (rc != LOCKING_OK) {
                    record_error(&sh->err, "holder locker_lock", rc);
                    t_send_byte(&from_h, 'E');
                    _exit(0);
                }
                cs_enter(1);
                t_send_byte(&from_h, 'l');
            } else if (c == 'U') {
                cs_leave(1);
                ls->t_release = t_now();
                rc = locker_unlock(l);
                if (rc != LOCKING_OK) {
                    record_error(&sh->err, "holder locker_unlock", rc);
                    t_send_byte(&from_h, 'E');
                    _exit(0);
                }
                t_send_byte(&from_h, 'u');
            } else {
                locker_free(l);
                _exit(0);
            }
        }
    }
    pid_t w = t_fork_guarded();
    if (w == 0) {
        Locker *l = NULL;
        int rc = locker_new("latency", wdir, "fsmatrix", 10.0,
                            LOCKING_NEVER_EXPIRE, o.method, &l);
        for (;;) {
            int c = t_recv_timeout(&to_w, PIPE_WAIT);
            if (c != 'G') {
                locker_free(l);
                _exit(0);
            }
            t_send_byte(&from_w, 'w');
            if (rc == LOCKING_OK)
                rc = locker_lock(l);
            /* a LOCKING_E_IO in the middle of a wait is counted and the
             * wait resumed, so that the pickup latency can still be
             * measured; the verdict reports it */
            double give_up = t_now() + 10.0;
            while (rc == LOCKING_E_IO && t_now() < give_up) {
                if (ls->spurious++ == 0) {
                    snprintf(ls->spur_msg, MSG_LEN, "%s", locking_last_error());
                    one_line(ls->spur_msg);
                }
                t_sleep(0.001);
                rc = locker_lock(l);
            }
            ls->t_acquired = t_now();
            if (rc != LOCKING_OK) {
                record_error(&sh->err, "waiter locker_lock", rc);
                t_send_byte(&from_w, 'E');
                _exit(0);
            }
            cs_enter(2);
            /* the holder has not released yet: no exclusion */
            if (ls->t_release == 0)
                ls->early = true;
            cs_leave(2);
            rc = locker_unlock(l);
            if (rc != LOCKING_OK) {
                record_error(&sh->err, "waiter locker_unlock", rc);
                t_send_byte(&from_w, 'E');
                _exit(0);
            }
            t_send_byte(&from_w, 'a');
        }
    }

    uint64_t rng = t_rng_seed(7);
    double *lat = calloc((size_t)o.rounds, sizeof *lat);
    int done = 0;
    const char *fail = NULL;
    for (int r = 0; r < o.rounds && fail == NULL; r++) {
        ls->t_release = 0;
        ls->t_acquired = 0;
        t_send_byte(&to_h, 'L');
        if (t_recv_timeout(&from_h, PIPE_WAIT) != 'l') {
            fail = "the holder did not lock";
            break;
        }
        t_send_byte(&to_w, 'G');
        if (t_recv_timeout(&from_w, PIPE_WAIT) != 'w') {
            fail = "the waiter did not start";
            break;
        }
        /* let the waiter get to sleep in locker_lock (best effort), then
         * release at a random moment relative to its poll interval */
        for (double until = t_now() + 2.0; t_now() < until;) {
            if (blocked_in_syscall(w))
                break;
            t_sleep(0.001);
        }
        t_sleep((double)(t_rng_next(&rng) % 200) / 1000.0);
        if (ls->t_acquired != 0) {
            /* acquired while the holder held: say so and go on */
            ls->early = true;
        }
        t_send_byte(&to_h, 'U');
        if (t_recv_timeout(&from_h, PIPE_WAIT) != 'u') {
            fail = "the holder did not unlock";
            break;
        }
        int c = t_recv_timeout(&from_w, 15.0);
        if (c != 'a') {
            fail = c == 'E' ? "the waiter failed" : "the waiter did not get the lock within 15 s";
            break;
        }
        if (ls->early)
            break;
        lat[done++] = ls->t_acquired - ls->t_release;
    }
    t_send_byte(&to_h, 'Q');
    t_send_byte(&to_w, 'Q');
    int st;
    if (t_wait_until(h, t_now() + 10.0, &st) == 0)
        t_kill_reap(h);
    if (t_wait_until(w, t_now() + 10.0, &st) == 0)
        t_kill_reap(w);

    if (ls->early || atomic_load(&sh->violations) > 0) {
        out("RESULT test=latency method=%s views=%d rounds=%d",
            t_method_name(o.method), o.dir2 ? 2 : 1, done);
        out("VERDICT noexcl latency: the waiter got the lock while the holder "
            "held it");
        return EXIT_NOEXCL;
    }
    if (atomic_load(&sh->err.taken)) {
        struct errinfo *e = &sh->err;
        if (e->msg[0] == '\0' || e->code == LOCKING_E_LOCKER_FAILED) {
            out("VERDICT failed latency: %s returned %s: \"%s\"", e->call,
                t_rc_name(e->code), e->msg);
            return EXIT_FAILED;
        }
        out("VERDICT refused %s %s: %s", t_rc_name(e->code), e->call, e->msg);
        return EXIT_REFUSED;
    }
    if (fail != NULL) {
        out("VERDICT failed latency: %s", fail);
        return EXIT_FAILED;
    }
    qsort(lat, (size_t)done, sizeof *lat, t_cmp_double);
    double sum = 0;
    for (int i = 0; i < done; i++)
        sum += lat[i];
    out("RESULT test=latency method=%s views=%d rounds=%d min=%.4f "
        "median=%.4f mean=%.4f max=%.4f spurious_io_errors=%d",
        t_method_name(o.method), o.dir2 ? 2 : 1, done, lat[0], lat[done / 2],
        sum / done, lat[done - 1], ls->spurious);
    if (ls->spurious > 0) {
        out("VERDICT refused LOCKING_E_IO waiter locker_lock (%d times, "
            "retried): %s", ls->spurious, ls->spur_msg);
        return EXIT_REFUSED;
    }
    out("VERDICT works release picked up in median %.4f s, max %.4f s",
        lat[done / 2], lat[done - 1]);
    return EXIT_WORKS;
}

/* ------------------------------------------------------------------ */
/* olfd: open_locked_fd on the file system under test                    */

static int cmd_olfd(void)
{
    sh = t_shared_alloc(sizeof *sh);
    char file[PATH_MAX], sub[PATH_MAX], other[PATH_MAX];
    snprintf(file, sizeof file, "%s/olfd-file", o.dir);
    snprintf(sub, sizeof sub, "%s/olfd-sub", o.dir);
    snprintf(other, sizeof other, "%s/olfd-sub/../olfd-file", o.dir);
    if (mkdir(o.dir, 0777) != 0 && errno != EEXIST)
        die("mkdir %s", o.dir);
    if (mkdir(sub, 0777) != 0 && errno != EEXIST)
        die("mkdir %s", sub);
    unlink(file);

    /* 1. held through one path, a try through another path must fail */
    t_pipe held = t_pipe_new(), rel = t_pipe_new();
    pid_t h = t_fork_guarded();
    if (h == 0) {
        int fd = open_locked_fd(file, 10.0, NULL, LOCKING_NEVER_EXPIRE,
                                o.method);
        if (fd < 0) {
            record_error(&sh->err, "open_locked_fd", fd);
            t_send_byte(&held, 'E');
            _exit(0);
        }
        t_send_byte(&held, 'L');
        t_recv_timeout(&rel, PIPE_WAIT);
        int rc = close_locked_fd(fd);
        if (rc != LOCKING_OK)
            record_error(&sh->err, "close_locked_fd", rc);
        _exit(0);
    }
    int c = t_recv_timeout(&held, PIPE_WAIT);
    int try_rc = 0;
    char try_msg[MSG_LEN] = "";
    if (c == 'L') {
        int fd = open_locked_fd(other, 0.0, NULL, LOCKING_NEVER_EXPIRE,
                                o.method);
        try_rc = fd >= 0 ? 0 : fd;
        if (fd >= 0)
            close_locked_fd(fd);
        else
            snprintf(try_msg, sizeof try_msg, "%s", locking_last_error());
        one_line(try_msg);
    }
    t_send_byte(&rel, 'R');
    int st;
    if (t_wait_until(h, t_now() + PIPE_WAIT, &st) == 0)
        t_kill_reap(h);
    if (atomic_load(&sh->err.taken))
        goto verdict;
    if (c != 'L') {
        out("VERDICT failed olfd: the holder did not report");
        return EXIT_FAILED;
    }
    if (try_rc == 0) {
        out("VERDICT noexcl olfd: open_locked_fd(\"%s\") succeeded while "
            "\"%s\" was held", other, file);
        return EXIT_NOEXCL;
    }
    if (try_rc != LOCKING_E_CANNOT_GET_LOCK) {
        if (try_msg[0] != '\0' && try_rc != LOCKING_E_INTERNAL) {
            out("VERDICT refused %s open_locked_fd (try): %s", t_rc_name(try_rc),
                try_msg);
            return EXIT_REFUSED;
        }
        out("VERDICT failed olfd: try returned %s without a message",
            t_rc_name(try_rc));
        return EXIT_FAILED;
    }

    /* 2. a counter kept in the locked file itself, P processes */
    {
        int np = o.procs;
        pid_t *pids = calloc((size_t)np, sizeof *pids);
        sh->end_at = t_now() + o.seconds;
        for (int p = 0; p < np; p++) {
            pids[p] = t_fork_guarded();
            if (pids[p] == 0) {
                const char *path = (p % 2) ? other : file;
                uint64_t rng = t_rng_seed((uint64_t)p + 100);
                int io_errors = 0;
                while (t_now() < sh->end_at) {
                    int fd = open_locked_fd(path, LOCK_TIMEOUT, NULL,
                                            LOCKING_NEVER_EXPIRE, o.method);
                    if (fd < 0) {
                        atomic_fetch_add(&sh->errors, 1);
                        record_error(&sh->err, "open_locked_fd", fd);
                        if (fd == LOCKING_E_IO && ++io_errors < 1000)
                            continue;
                        break;
                    }
                    atomic_fetch_add(&sh->acquisitions, 1);
                    cs_enter((uint64_t)p + 1);
                    long v = 0;
                    ssize_t n = pread(fd, &v, sizeof v, 0);
                    if (n != 0 && n != (ssize_t)sizeof v)
                        atomic_fetch_add(&sh->file_bad, 1);
                    long sv = sh->counter;
                    if ((t_rng_next(&rng) & 3) == 0)
                        sched_yield();
                    sh->counter = sv + 1;
                    v++;
                    if (pwrite(fd, &v, sizeof v, 0) != (ssize_t)sizeof v)
                        atomic_fetch_add(&sh->file_bad, 1);
                    atomic_fetch_add(&sh->increments, 1);
                    cs_leave((uint64_t)p + 1);
                    int rc = close_locked_fd(fd);
                    if (rc != LOCKING_OK) {
                        atomic_fetch_add(&sh->errors, 1);
                        record_error(&sh->err, "close_locked_fd", rc);
                        break;
                    }
                }
                _exit(0);
            }
        }
        bool hung = false;
        for (int p = 0; p < np; p++)
            if (t_wait_until(pids[p], sh->end_at + LOCK_TIMEOUT + 10.0, &st) == 0) {
                hung = true;
                t_kill_reap(pids[p]);
            }
        long inc = atomic_load(&sh->increments);
        long fc = file_read_counter(file);
        out("RESULT test=olfd method=%s try_other_path=%s processes=%d "
            "increments=%ld file_counter=%ld violations=%ld errors=%ld",
            t_method_name(o.method), t_rc_name(try_rc), np, inc, fc,
            atomic_load(&sh->violations), atomic_load(&sh->errors));
        if (hung) {
            out("VERDICT failed olfd: a process hung");
            return EXIT_FAILED;
        }
        int v = verdict_from_shared("olfd", inc, fc, true);
        if (v >= 0)
            return v;
        if (inc < 20) {
            out("VERDICT failed olfd: only %ld acquisitions", inc);
            return EXIT_FAILED;
        }
        out("VERDICT works open_locked_fd excludes across paths; %ld "
            "increments, none lost", inc);
        return EXIT_WORKS;
    }

verdict:
    {
        struct errinfo *e = &sh->err;
        if (e->msg[0] == '\0' || e->code == LOCKING_E_INTERNAL) {
            out("VERDICT failed olfd: %s returned %s without a message",
                e->call, t_rc_name(e->code));
            return EXIT_FAILED;
        }
        out("VERDICT refused %s %s: %s", t_rc_name(e->code), e->call, e->msg);
        return EXIT_REFUSED;
    }
}

/* ------------------------------------------------------------------ */
/* killstress: stress while workers are killed with SIGKILL at random   */

#define KS_MAX_SPAWNS 65536

struct ksshared {
    _Atomic uint64_t owner;   /* t_pool_mark(spawn, thread) of the party inside, or 0 */
    atomic_long acquisitions, violations, takeovers, errors, lost;
    _Atomic double last_acq;
    atomic_int stop;
    char violation_desc[256];
    atomic_int violation_taken;
    struct errinfo err;
};

static struct ksshared *ks2;
/* the worker processes, killed at random and replaced (support.h) */
static t_pool ks_pool;

/* Keeps the first violation's description for the verdict line. */
static void describe_violation(atomic_int *taken, char *desc, size_t cap,
                               const char *where, uint64_t me, uint64_t other)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(taken, &expected, 1))
        snprintf(desc, cap, "%sspawn %u thread %u entered while spawn %u thread %u "
                 "was inside", where, t_pool_mark_spawn(me), (unsigned)(me & 255),
                 t_pool_mark_spawn(other), (unsigned)(other & 255));
}

static void ks_enter(uint64_t me)
{
    uint64_t other = 0;
    switch (t_pool_claim(&ks_pool, &ks2->owner, me, &other)) {
    case T_CLAIM_TAKEOVER: /* the mark of a killed party was left */
        atomic_fetch_add(&ks2->takeovers, 1);
        break;
    case T_CLAIM_VIOLATION:
        atomic_fetch_add(&ks2->violations, 1);
        describe_violation(&ks2->violation_taken, ks2->violation_desc,
                           sizeof ks2->violation_desc, "", me, other);
        break;
    }
}

struct ks_targ {
    unsigned seq;
    int thread;
    const char *dir;
};

static void *ks_thread(void *p)
{
    struct ks_targ *a = p;
    uint64_t me = t_pool_mark(a->seq, (unsigned)a->thread);
    uint64_t rng = t_rng_seed(me);
    Locker *l = NULL;
    int rc = locker_new("killstress", a->dir, "fsmatrix", LOCK_TIMEOUT,
                        LOCKING_NEVER_EXPIRE, o.method, &l);
    if (rc != LOCKING_OK) {
        atomic_fetch_add(&ks2->errors, 1);
        record_error(&ks2->err, "locker_new", rc);
        return NULL;
    }
    while (!atomic_load(&ks2->stop)) {
        rc = locker_lock(l);
        if (rc != LOCKING_OK) {
            atomic_fetch_add(&ks2->errors, 1);
            record_error(&ks2->err, "locker_lock", rc);
            if (rc == LOCKING_E_IO) {
                t_sleep(0.001);
                continue;
            }
            break;
        }
        atomic_fetch_add(&ks2->acquisitions, 1);
        atomic_store(&ks2->last_acq, t_now());
        ks_enter(me);
        t_spin_for((double)(t_rng_next(&rng) % 200) * 1e-6);
        t_pool_release(&ks2->owner, me);
        rc = locker_unlock(l);
        if (rc == LOCKING_E_LOCK_LOST)
            atomic_fetch_add(&ks2->lost, 1);   /* expire is disabled! */
        else if (rc != LOCKING_OK) {
            atomic_fetch_add(&ks2->errors, 1);
            record_error(&ks2->err, "locker_unlock", rc);
        }
    }
    locker_free(l);
    return NULL;
}

/* A worker process (t_pool run): o.threads threads; with -D, odd slots
 * use the second view. */
static void ks_worker(t_pool *pool, int slot, unsigned seq)
{
    (void)pool;
    const char *dir = (o.dir2 && slot % 2) ? o.dir2 : o.dir;
    pthread_t th[64];
    struct ks_targ args[64];
    for (int t = 0; t < o.threads; t++) {
        args[t] = (struct ks_targ){ seq, t, dir };
        if (pthread_create(&th[t], NULL, ks_thread, &args[t]) != 0)
            _exit(EXIT_FAILED);
    }
    for (int t = 0; t < o.threads; t++)
        pthread_join(th[t], NULL);
    _exit(0);
}

static int cmd_killstress(void)
{
    if (o.procs < 2 || o.procs > 32 || o.threads < 1 || o.threads > 64)
        usage();
    ks2 = t_shared_alloc(sizeof *ks2);
    t_pool_init(&ks_pool, o.procs, KS_MAX_SPAWNS, ks_worker, NULL);
    for (int p = 0; p < o.procs; p++)
        t_pool_spawn(&ks_pool, p);
    uint64_t rng = t_rng_seed(99);
    double t0 = t_now(), end = t0 + o.seconds;
    atomic_store(&ks2->last_acq, t0);
    long kills = 0;
    double longest_gap = 0;
    bool stalled = false;
    while (t_now() < end && !stalled) {
        t_sleep(0.01 + (double)(t_rng_next(&rng) % 50) / 1000.0);
        double gap = t_now() - atomic_load(&ks2->last_acq);
        if (gap > longest_gap)
            longest_gap = gap;
        if (gap > STALL_BOUND) {
            stalled = true;
            break;
        }
        int v = t_pool_pick(&ks_pool, &rng);
        /* half the time, the holder itself (inside its critical section):
         * then every other worker is a waiter that may break its lock */
        uint64_t holder = atomic_load(&ks2->owner);
        if (holder != 0 && (t_rng_next(&rng) & 1))
            for (int p = 0; p < o.procs; p++)
                if (ks_pool.seq[p] == t_pool_mark_spawn(holder))
                    v = p;
        t_pool_kill(&ks_pool, v);
        kills++;
        if (!t_pool_spawn(&ks_pool, v))
            break;
    }
    /* after the last kill, the lock must still be handed on */
    double last_kill = t_now();
    while (!stalled && t_now() - last_kill < 0.3) {
        t_sleep(0.01);
        if (t_now() - atomic_load(&ks2->last_acq) > STALL_BOUND)
            stalled = true;
    }
    atomic_store(&ks2->stop, 1);
    bool hung = false;
    for (int p = 0; p < o.procs; p++) {
        int st;
        if (t_wait_until(ks_pool.pid[p], t_now() + LOCK_TIMEOUT + 5.0, &st) == 0) {
            hung = true;
            t_kill_reap(ks_pool.pid[p]);
        }
    }
    long acq = atomic_load(&ks2->acquisitions);
    out("RESULT test=killstress method=%s procs=%d threads=%d views=%d "
        "acquisitions=%ld kills=%ld takeovers=%ld violations=%ld lock_lost=%ld "
        "errors=%ld longest_gap=%.3f", t_method_name(o.method), o.procs,
        o.threads, o.dir2 ? 2 : 1, acq, kills, atomic_load(&ks2->takeovers),
        atomic_load(&ks2->violations), atomic_load(&ks2->lost),
        atomic_load(&ks2->errors), longest_gap);
    if (atomic_load(&ks2->lost) > 0) {
        /* only dead holders' locks may be broken: a live holder that finds
         * its lock gone had it taken while it held it */
        out("VERDICT noexcl killstress: a live holder's lock was broken %ld "
            "times (locker_unlock returned LOCKING_E_LOCK_LOST with expire "
            "disabled); %ld violations seen; %ld kills",
            atomic_load(&ks2->lost), atomic_load(&ks2->violations), kills);
        return EXIT_NOEXCL;
    }
    if (atomic_load(&ks2->violations) > 0) {
        out("VERDICT noexcl killstress: %ld violations (%s) with %ld kills",
            atomic_load(&ks2->violations), ks2->violation_desc, kills);
        return EXIT_NOEXCL;
    }
    if (stalled || hung) {
        out("VERDICT failed killstress: no acquisition for more than %.0f s "
            "(stall)%s", STALL_BOUND, hung ? ", a worker hung" : "");
        return EXIT_FAILED;
    }
    if (atomic_load(&ks2->errors) > 0) {
        struct errinfo *e = &ks2->err;
        if (e->msg[0] == '\0' || e->code == LOCKING_E_INTERNAL ||
            e->code == LOCKING_E_LOCKER_FAILED) {
            out("VERDICT failed killstress: %s returned %s: \"%s\"", e->call,
                t_rc_name(e->code), e->msg);
            return EXIT_FAILED;
        }
        out("VERDICT refused %s %s (%ld times in %ld acquisitions): %s",
            t_rc_name(e->code), e->call, atomic_load(&ks2->errors), acq, e->msg);
        return EXIT_REFUSED;
    }
    out("VERDICT works %ld acquisitions, %ld SIGKILLs, no violation, longest "
        "gap %.3f s", acq, kills, longest_gap);
    return EXIT_WORKS;
}

/* ------------------------------------------------------------------ */
/* soak                                                                  */

#define SOAK_METHODS 3
#define SOAK_NAMES 3           /* Locker names per method */
#define SOAK_FILES 2           /* open_locked_fd files per method */
#define SOAK_RES (SOAK_NAMES + 2 * SOAK_FILES) /* names; (file, lockdir) pairs */
#define SOAK_MAX_PROCS 16
#define SOAK_MAX_SPAWNS (1u << 20)

/* -m METHOD replaces all three (e.g. -m fake, to see that the soak's
 * checks catch the absence of locking) */
static int soak_methods[SOAK_METHODS] = {
    LOCKING_METHOD_MKDIR, LOCKING_METHOD_OPENCREATE, LOCKING_METHOD_KERNEL,
};

struct soak_method_stats {
    atomic_long acquisitions, timeouts, errors, violations, takeovers;
    atomic_long kills, lost;
    _Atomic double last_acq[SOAK_RES];   /* per name / (file, lockdir) */
    long stalls;
    double longest_gap;
    struct errinfo err;
};

struct soakshared {
    /* t_pool_mark(spawn, thread) of the party inside, or 0 */
    _Atomic uint64_t owner[SOAK_METHODS][SOAK_RES];
    struct soak_method_stats m[SOAK_METHODS];
    atomic_int stop;
    char violation_desc[256];
    atomic_int violation_taken;
};

static struct soakshared *ss;
/* the worker processes, SOAK_METHODS x o.procs slots (slot = mi * o.procs
 * + s), killed at random and replaced (support.h) */
static t_pool soak_pool;

static void soak_cs_enter(int mi, int res, uint64_t me)
{
    uint64_t other = 0;
    switch (t_pool_claim(&soak_pool, &ss->owner[mi][res], me, &other)) {
    case T_CLAIM_TAKEOVER: /* the mark of a killed party was left */
        atomic_fetch_add(&ss->m[mi].takeovers, 1);
        break;
    case T_CLAIM_VIOLATION: {
        atomic_fetch_add(&ss->m[mi].violations, 1);
        char where[64];
        snprintf(where, sizeof where, "%s resource %d: ",
                 t_method_name(soak_methods[mi]), res);
        describe_violation(&ss->violation_taken, ss->violation_desc,
                           sizeof ss->violation_desc, where, me, other);
        break;
    }
    }
}

struct soak_targ {
    int mi;
    unsigned seq;
    const char *base;
    int thread;
};

static void soak_error(int mi, const char *call, int rc)
{
    atomic_fetch_add(&ss->m[mi].errors, 1);
    record_error(&ss->m[mi].err, call, rc);
}

static void soak_acquired(int mi, int res)
{
    atomic_fetch_add(&ss->m[mi].acquisitions, 1);
    atomic_store(&ss->m[mi].last_acq[res], t_now());
}

static void *soak_thread(void *p)
{
    struct soak_targ *a = p;
    int mi = a->mi, method = soak_methods[mi];
    uint64_t me = t_pool_mark(a->seq, (unsigned)a->thread);
    uint64_t rng = t_rng_seed((uint64_t)(a->seq + 1) * 131 + (uint64_t)a->thread);
    char lockdir[PATH_MAX], files[SOAK_FILES][PATH_MAX], olockdir[PATH_MAX];
    snprintf(lockdir, sizeof lockdir, "%s/%d-%s/locks", a->base, mi,
             t_method_name(method));
    snprintf(olockdir, sizeof olockdir, "%s/%d-%s/olocks", a->base, mi,
             t_method_name(method));
    for (int f = 0; f < SOAK_FILES; f++)
        snprintf(files[f], sizeof files[f], "%s/%d-%s/file-%d", a->base, mi,
                 t_method_name(method), f);
    /* a mix of Lockers: wait forever, a short timeout, try once */
    static const double timeouts[] = { LOCKING_WAIT_FOREVER, 0.05, 0.0, 2.0 };
    Locker *l[SOAK_NAMES];
    for (int n = 0; n < SOAK_NAMES; n++) {
        char name[16];
        snprintf(name, sizeof name, "name-%d", n);
        double to = timeouts[t_rng_next(&rng) % 4];
        int rc = locker_new(name, lockdir, "soak", to, LOCKING_NEVER_EXPIRE,
                            method, &l[n]);
        if (rc != LOCKING_OK) {
            soak_error(mi, "locker_new", rc);
            l[n] = NULL;
        }
    }
    while (!atomic_load(&ss->stop)) {
        uint64_t r = t_rng_next(&rng);
        int op = (int)(r % 4);
        if (op < 3) {
            int n = (int)((r >> 8) % SOAK_NAMES);
            if (l[n] == NULL)
                break;
            int rc = locker_lock(l[n]);
            if (rc == LOCKING_E_LOCKER_FAILED) {
                atomic_fetch_add(&ss->m[mi].timeouts, 1);
                continue;
            }
            if (rc != LOCKING_OK) {
                soak_error(mi, "locker_lock", rc);
                t_sleep(0.01);
                continue;
            }
            soak_acquired(mi, n);
            soak_cs_enter(mi, n, me);
            t_spin_for((double)((r >> 16) % 100) * 1e-6);
            if ((r >> 24) % 8 == 0) {
                rc = (r >> 28) & 1 ? locker_refresh(l[n]) : locker_check(l[n]);
                if (rc != LOCKING_OK)
                    soak_error(mi, "locker_refresh/locker_check", rc);
            }
            t_pool_release(&ss->owner[mi][n], me);
            rc = locker_unlock(l[n]);
            if (rc == LOCKING_E_LOCK_LOST)
                atomic_fetch_add(&ss->m[mi].lost, 1);
            if (rc != LOCKING_OK)
                soak_error(mi, "locker_unlock", rc);
        } else {
            int f = (int)((r >> 8) % SOAK_FILES);
            double to = timeouts[(r >> 12) % 4];
            const char *ld = (r >> 14) & 1 ? olockdir : NULL;
            int fd = open_locked_fd(files[f], to, ld, LOCKING_NEVER_EXPIRE,
                                    method);
            if (fd == LOCKING_E_CANNOT_GET_LOCK) {
                atomic_fetch_add(&ss->m[mi].timeouts, 1);
                continue;
            }
            if (fd < 0) {
                /* both lock directories are used for the same file: one
                 * resource = (file, lockdir) */
                soak_error(mi, "open_locked_fd", fd);
                t_sleep(0.01);
                continue;
            }
            /* the same file locked in its own directory and in olocks/
             * are two different locks: two resources */
            int res = SOAK_NAMES + 2 * f + (ld != NULL);
            soak_acquired(mi, res);
            soak_cs_enter(mi, res, me);
            long v = 0;
            ssize_t n = pread(fd, &v, sizeof v, 0);
            (void)n;
            v++;
            if (pwrite(fd, &v, sizeof v, 0) != (ssize_t)sizeof v)
                soak_error(mi, "pwrite", LOCKING_E_IO);
            t_spin_for((double)((r >> 16) % 100) * 1e-6);
            t_pool_release(&ss->owner[mi][res], me);
            int rc = close_locked_fd(fd);
            if (rc != LOCKING_OK)
                soak_error(mi, "close_locked_fd", rc);
        }
    }
    for (int n = 0; n < SOAK_NAMES; n++)
        locker_free(l[n]);
    return NULL;
}

/* A worker process (t_pool run): o.threads threads on method slot / o.procs. */
static void soak_worker(t_pool *pool, int slot, unsigned seq)
{
    (void)pool;
    int mi = slot / o.procs;
    pthread_t th[64];
    struct soak_targ args[64];
    int nt = o.threads;
    for (int t = 0; t < nt; t++) {
        args[t] = (struct soak_targ){ mi, seq, o.dir, t };
        if (pthread_create(&th[t], NULL, soak_thread, &args[t]) != 0)
            _exit(EXIT_FAILED);
    }
    for (int t = 0; t < nt; t++)
        pthread_join(th[t], NULL);
    _exit(0);
}

static void soak_spawn(int mi, int s)
{
    if (!t_pool_spawn(&soak_pool, mi * o.procs + s))
        die("too many spawns");
}

static int cmd_soak(void)
{
    if (o.procs < 1 || o.procs > SOAK_MAX_PROCS || o.threads < 1 ||
        o.threads > 64)
        usage();
    ss = t_shared_alloc(sizeof *ss);
    t_pool_init(&soak_pool, SOAK_METHODS * o.procs, SOAK_MAX_SPAWNS, soak_worker, NULL);
    if (o.method >= 0)
        for (int mi = 0; mi < SOAK_METHODS; mi++)
            soak_methods[mi] = o.method;
    char d[PATH_MAX];
    for (int mi = 0; mi < SOAK_METHODS; mi++) {
        snprintf(d, sizeof d, "%s/%d-%s", o.dir, mi,
                 t_method_name(soak_methods[mi]));
        if (mkdir(d, 0777) != 0 && errno != EEXIST)
            die("mkdir %s", d);
    }
    double t0 = t_now();
    for (int mi = 0; mi < SOAK_METHODS; mi++) {
        for (int r = 0; r < SOAK_RES; r++)
            atomic_store(&ss->m[mi].last_acq[r], t0);
        for (int s = 0; s < o.procs; s++)
            soak_spawn(mi, s);
    }
    uint64_t rng = t_rng_seed(42);
    double end = t0 + o.seconds, next_report = t0 + 10.0;
    double next_kill = t0 + 0.05;
    bool in_stall[SOAK_METHODS][SOAK_RES] = { { false } };
    long kills = 0;
    while (t_now() < end) {
        double tn = t_now();
        /* stalls: a lock (name, or file in a lock directory) that nobody
         * acquired for more than STALL_BOUND: dozens of threads keep
         * trying every one of them */
        for (int mi = 0; mi < SOAK_METHODS; mi++)
            for (int r = 0; r < SOAK_RES; r++) {
                double gap = tn - atomic_load(&ss->m[mi].last_acq[r]);
                if (gap > ss->m[mi].longest_gap)
                    ss->m[mi].longest_gap = gap;
                if (gap > STALL_BOUND && !in_stall[mi][r]) {
                    in_stall[mi][r] = true;
                    ss->m[mi].stalls++;
                    out("STALL %s: lock %d not acquired for %.1f s (at %.0f s)",
                        t_method_name(soak_methods[mi]), r, gap, tn - t0);
                } else if (gap <= STALL_BOUND) {
                    in_stall[mi][r] = false;
                }
            }
        if (tn >= next_kill && !o.no_kills) {
            int v = t_pool_pick(&soak_pool, &rng), mi = v / o.procs;
            t_pool_kill(&soak_pool, v);
            atomic_fetch_add(&ss->m[mi].kills, 1);
            kills++;
            soak_spawn(mi, v % o.procs);
            /* every 10-200 ms */
            next_kill = t_now() + 0.01 + (double)(t_rng_next(&rng) % 190) / 1000.0;
        }
        if (tn >= next_report) {
            out("PROGRESS %.0f s: acquisitions %s %ld %s %ld %s %ld, kills %ld, "
                "violations %ld", tn - t0, t_method_name(soak_methods[0]),
                atomic_load(&ss->m[0].acquisitions),
                t_method_name(soak_methods[1]),
                atomic_load(&ss->m[1].acquisitions),
                t_method_name(soak_methods[2]),
                atomic_load(&ss->m[2].acquisitions), kills,
                atomic_load(&ss->m[0].violations) +
                    atomic_load(&ss->m[1].violations) +
                    atomic_load(&ss->m[2].violations));
            next_report += 10.0;
        }
        t_sleep(0.005);
    }
    /* stop: workers finish their round and exit; one that takes longer
     * than STALL_BOUND waited that long for a lock nobody handed on */
    atomic_store(&ss->stop, 1);
    double t_stop = t_now();
    bool hung = false;
    int left = SOAK_METHODS * o.procs;
    bool gone[SOAK_METHODS][SOAK_MAX_PROCS] = { { false } };
    while (left > 0) {
        for (int mi = 0; mi < SOAK_METHODS; mi++)
            for (int s = 0; s < o.procs; s++) {
                if (gone[mi][s])
                    continue;
                pid_t pid = soak_pool.pid[mi * o.procs + s];
                int st = 0;
                pid_t r = waitpid(pid, &st, WNOHANG);
                double took = t_now() - t_stop;
                if (r == 0 && took < 30.0)
                    continue;
                gone[mi][s] = true;
                left--;
                if (r == 0) {
                    hung = true;
                    out("STALL %s: worker %d did not stop within 30 s",
                        t_method_name(soak_methods[mi]), (int)pid);
                    ss->m[mi].stalls++;
                    t_kill_reap(pid);
                    continue;
                }
                if (took > STALL_BOUND) {
                    out("STALL %s: worker %d took %.1f s to finish its round",
                        t_method_name(soak_methods[mi]), (int)pid, took);
                    ss->m[mi].stalls++;
                }
                if (r == pid && (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) {
                    out("ERROR %s: worker %d ended with status 0x%x",
                        t_method_name(soak_methods[mi]), (int)pid, st);
                    atomic_fetch_add(&ss->m[mi].errors, 1);
                }
            }
        if (left > 0)
            t_sleep(0.005);
    }
    out("NOTE all workers stopped %.2f s after the stop flag", t_now() - t_stop);
    /* nothing stale is left: every name can be locked at once */
    for (int mi = 0; mi < SOAK_METHODS; mi++) {
        int method = soak_methods[mi];
        snprintf(d, sizeof d, "%s/%d-%s/locks", o.dir, mi, t_method_name(method));
        for (int n = 0; n < SOAK_NAMES; n++) {
            char name[16];
            snprintf(name, sizeof name, "name-%d", n);
            Locker *l = NULL;
            int rc = locker_new(name, d, "soak", 5.0, LOCKING_NEVER_EXPIRE,
                                method, &l);
            double tl = t_now();
            if (rc == LOCKING_OK)
                rc = locker_lock(l);
            if (t_now() - tl > 0.5)
                out("NOTE %s %s: the final lock took %.2f s",
                    t_method_name(method), name, t_now() - tl);
            if (rc == LOCKING_OK)
                rc = locker_unlock(l);
            if (rc != LOCKING_OK) {
                out("STALL %s: %s still not lockable after the run: %s %s",
                    t_method_name(method), name, t_rc_name(rc),
                    locking_last_error());
                ss->m[mi].stalls++;
            }
            locker_free(l);
        }
    }
    double elapsed = t_now() - t0;
    long tot_acq = 0, tot_viol = 0, tot_stall = 0, tot_err = 0;
    for (int mi = 0; mi < SOAK_METHODS; mi++) {
        struct soak_method_stats *m = &ss->m[mi];
        out("RESULT test=soak method=%s acquisitions=%ld kills=%ld "
            "violations=%ld stalls=%ld errors=%ld timeouts=%ld "
            "takeovers_from_killed=%ld lock_lost=%ld longest_gap=%.3f",
            t_method_name(soak_methods[mi]), atomic_load(&m->acquisitions),
            atomic_load(&m->kills), atomic_load(&m->violations), m->stalls,
            atomic_load(&m->errors), atomic_load(&m->timeouts),
            atomic_load(&m->takeovers), atomic_load(&m->lost),
            m->longest_gap);
        if (atomic_load(&m->err.taken))
            out("ERROR %s: first error: %s returned %s: %s",
                t_method_name(soak_methods[mi]), m->err.call,
                t_rc_name(m->err.code), m->err.msg);
        tot_acq += atomic_load(&m->acquisitions);
        tot_viol += atomic_load(&m->violations);
        tot_stall += m->stalls;
        tot_err += atomic_load(&m->errors);
    }
    if (tot_viol)
        out("VIOLATION %s", ss->violation_desc);
    out("RESULT test=soak total acquisitions=%ld kills=%ld violations=%ld "
        "stalls=%ld errors=%ld seconds=%.1f", tot_acq, kills, tot_viol,
        tot_stall, tot_err, elapsed);
    if (tot_viol) {
        out("VERDICT noexcl soak: %ld violations", tot_viol);
        return EXIT_NOEXCL;
    }
    if (tot_stall || tot_err || hung) {
        out("VERDICT failed soak: %ld stalls, %ld errors", tot_stall, tot_err);
        return EXIT_FAILED;
    }
    out("VERDICT works soak: %ld acquisitions, %ld kills, no violation, no "
        "stall", tot_acq, kills);
    return EXIT_WORKS;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2)
        usage();
    o.cmd = argv[1];
    int c;
    optind = 2;
    while ((c = getopt(argc, argv, "m:d:D:f:F:p:t:s:r:K")) != -1) {
        switch (c) {
        case 'm': o.method = t_method_by_name(optarg, strlen(optarg)); break;
        case 'd': o.dir = optarg; break;
        case 'D': o.dir2 = optarg; break;
        case 'f': o.data = optarg; break;
        case 'F': o.data2 = optarg; break;
        case 'p': o.procs = atoi(optarg); break;
        case 't': o.threads = atoi(optarg); break;
        case 's': o.seconds = atof(optarg); break;
        case 'r': o.rounds = atoi(optarg); break;
        case 'K': o.no_kills = true; break;
        default: usage();
        }
    }
    if (o.dir == NULL)
        usage();
    if (strcmp(o.cmd, "soak") == 0)
        return cmd_soak();
    if (o.method < 0)
        usage();
    if (strcmp(o.cmd, "stress") == 0)
        return cmd_stress();
    if (strcmp(o.cmd, "sigkill") == 0)
        return cmd_sigkill();
    if (strcmp(o.cmd, "latency") == 0)
        return cmd_latency();
    if (strcmp(o.cmd, "olfd") == 0)
        return cmd_olfd();
    if (strcmp(o.cmd, "killstress") == 0)
        return cmd_killstress();
    usage();
}
