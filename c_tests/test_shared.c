/*
 * Shared locks (0.2: locker_acquire with LOCKING_SHARED), for every real
 * method:
 *
 *  1. Many shared holders at once: 5 processes, and separately 6 threads
 *     (each with its own Locker), all hold the name shared at the same time
 *     (each reports "held" and waits for the go to release, so all hold
 *     together); meanwhile an exclusive try (timeout 0 and 0.2 s) fails, one
 *     more shared Locker gets it with timeout 0, and locker_holder lists
 *     every shared holder. Afterwards the exclusive try succeeds.
 *  2. Exclusive excludes shared and shared excludes exclusive, in one process
 *     and from other processes (timeout 0 -> LOCKING_E_LOCKER_FAILED).
 *  3. No lost update: 4 processes mix shared and exclusive acquisitions.
 *     Exclusive holders increment a counter file with a deliberately
 *     non-atomic read-yield-write; shared holders read it twice around a
 *     yield and must see no change. Counters in shared memory show that an
 *     exclusive holder is never inside with anybody, and a shared holder
 *     never with an exclusive one. The final count equals the number of
 *     exclusive acquisitions.
 *  4. A waiting writer is not starved: 3 reader processes overlap
 *     continuously (a reader releases only once a reader that acquired after
 *     it holds the lock too, so at every moment one reader holds it). A
 *     writer calls locker_acquire(EXCLUSIVE, 20 s). Once locker_holder shows
 *     the writer (mode=exclusive, its pid) while the readers hold, a reader
 *     arriving after it (a new process, timeout 0; this process, 0 and
 *     0.2 s) is refused, and none of the cycling readers that began an
 *     acquisition after that point is granted before the writer released.
 *     Then the readers that hold are allowed to finish without a successor;
 *     the writer must get the lock, be alone, and afterwards the readers go
 *     on.
 *  5. Dead shared holders are recovered at once: one shared holder is
 *     SIGKILLed (and reaped) while another lives: exclusive fails while the
 *     live one holds; once it released, exclusive (timeout 5 s) succeeds
 *     quickly. Also a lone dead shared holder.
 *  6. Expire applies to each shared holder on its own: a stopped (SIGSTOP)
 *     shared holder is broken by a writer with expire 1 s (timeout 10 s),
 *     not earlier; continued, the holder gets LOCKING_E_LOCK_LOST from
 *     locker_check, locker_refresh and locker_unlock. With a second shared
 *     holder that refreshes every 50 ms, the writer (expire 1 s, timeout
 *     2 s) times out, the stopped holder is broken all the same, and the
 *     refreshing one still holds.
 *  7. fork(): a child of a shared holder gets LOCKING_E_NOT_LOCKED from
 *     locker_unlock and locker_check, and its locker_free (or plain _exit)
 *     leaves the parent's lock held (another process's exclusive try fails,
 *     a shared try succeeds).
 *  8. A name held (shared or exclusive) with one method is refused to a
 *     Locker of another method, in either mode.
 *  9. FAKE: shared and exclusive always succeed.
 *
 * Built with -DFORCE_METHOD=LOCKING_METHOD_FAKE (common.h) the method loop
 * runs FAKE instead, and the exclusion checks must fail.
 *
 * No check depends on a sleep being long enough: everything is synchronised
 * through pipes, barriers, shared memory, or by polling for a state with a
 * generous bound. The timing checks are lower bounds on expire breaks
 * and loose upper bounds that detect a hang.
 */
#include "common.h"

#define N_SHARED_PROCS 5
#define N_SHARED_THREADS 6
#define RW_PROCS 4
#define RW_ITERS 30
#define N_READERS 3

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "holder (pid %ld) killed by "
          "SIGKILL and reaped", (long)pid);
}

/* In a new process: a fresh Locker acquires (dir, "ns", name) in `mode`
 * with `timeout`; the child exits 0 if the result is `want`. */
static void probe_child(const char *name, const char *dir, int m, int mode,
                        double timeout, int want, const char *what)
{
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *l = t_locker(name, dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        int rc = locker_acquire(l, mode, timeout);
        t_report(rc == want, __FILE__, __LINE__, "%s: another process, %s, "
                 "timeout %g: %s, want %s%s%s", what, t_mode_name(mode), timeout,
                 t_rc_name(rc), t_rc_name(want),
                 rc < 0 ? "; last_error=" : "", rc < 0 ? locking_last_error() : "");
        if (rc == LOCKING_OK)
            CHECK_RC(locker_unlock(l), LOCKING_OK);
        locker_free(l);
        t_child_exit();
    }
    t_wait_child(pid, what);
}

/* In this process: a fresh Locker acquires and (if it got it) releases. */
static void probe_here(const char *name, const char *dir, int m, int mode,
                       double timeout, int want, const char *what)
{
    Locker *l = t_locker(name, dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    int rc = locker_acquire(l, mode, timeout);
    t_report(rc == want, __FILE__, __LINE__, "%s: a fresh Locker in this "
             "process, %s, timeout %g: %s, want %s%s%s", what, t_mode_name(mode),
             timeout, t_rc_name(rc), t_rc_name(want),
             rc < 0 ? "; last_error=" : "", rc < 0 ? locking_last_error() : "");
    if (rc == LOCKING_OK)
        CHECK_RC(locker_unlock(l), LOCKING_OK);
    locker_free(l);
}

/* Does `text` (several blocks of key=value lines separated by one empty
 * line) have a line exactly equal to `line` within one block that also has
 * the line `line2` (NULL: any block)? Returns the number of such blocks. */
static int count_blocks_with(const char *text, const char *line, const char *line2)
{
    int n = 0;
    const char *b = text;
    while (*b) {
        const char *end = strstr(b, "\n\n");
        size_t blen = end ? (size_t)(end - b) + 1 : strlen(b);
        bool has1 = false, has2 = line2 == NULL;
        const char *p = b;
        while (p < b + blen) {
            const char *nl = memchr(p, '\n', (size_t)(b + blen - p));
            size_t ll = nl ? (size_t)(nl - p) : (size_t)(b + blen - p);
            if (ll == strlen(line) && memcmp(p, line, ll) == 0)
                has1 = true;
            if (line2 && ll == strlen(line2) && memcmp(p, line2, ll) == 0)
                has2 = true;
            p += ll + 1;
        }
        if (has1 && has2)
            n++;
        if (!end)
            break;
        b = end + 2;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* 1. many shared holders at once                                      */

static void many_shared_procs(int m)
{
    char *dir = t_fresh_path("many-procs");
    t_pipe held = t_pipe_new(), release = t_pipe_new();
    pid_t pids[N_SHARED_PROCS];
    for (int i = 0; i < N_SHARED_PROCS; i++) {
        pids[i] = t_fork();
        if (pids[i] == 0) {
            Locker *l = t_locker("many", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
            int rc = locker_acquire(l, LOCKING_SHARED, 10.0);
            CHECK_RC(rc, LOCKING_OK);
            t_send(&held, rc == LOCKING_OK ? 'h' : 'f');
            t_expect(&release, 'r', "release");
            if (rc == LOCKING_OK) {
                CHECK_RC(locker_check(l), LOCKING_OK);
                CHECK_RC(locker_unlock(l), LOCKING_OK);
            }
            locker_free(l);
            t_child_exit();
        }
    }
    int nheld = 0;
    for (int i = 0; i < N_SHARED_PROCS; i++)
        if (t_recv_timeout(&held, 30.0) == 'h')
            nheld++;
    CHECK(nheld == N_SHARED_PROCS, "%d of %d processes hold the lock shared at "
          "the same time", nheld, N_SHARED_PROCS);

    /* all of them hold it now */
    Locker *ex = t_locker("many", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    CHECK_RC(locker_acquire(ex, LOCKING_EXCLUSIVE, 0.0), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_acquire(ex, LOCKING_EXCLUSIVE, 0.2), LOCKING_E_LOCKER_FAILED);
    probe_child("many", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_E_LOCKER_FAILED,
                "while 5 processes hold it shared");
    Locker *sh = t_locker("many", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    CHECK_RC(locker_acquire(sh, LOCKING_SHARED, 0.0), LOCKING_OK);
    char buf[16384];
    int n = locker_holder(sh, buf, sizeof buf);
    int nblocks = n > 0 && n < (int)sizeof buf ? count_blocks_with(buf, "mode=shared", NULL) : -1;
    CHECK(nblocks == N_SHARED_PROCS + 1, "locker_holder lists %d shared holders "
          "(want %d; returned %d)", nblocks, N_SHARED_PROCS + 1, n);
    CHECK_RC(locker_unlock(sh), LOCKING_OK);

    for (int i = 0; i < N_SHARED_PROCS; i++)
        t_send(&release, 'r');
    for (int i = 0; i < N_SHARED_PROCS; i++)
        t_wait_child(pids[i], "shared holder");
    CHECK_RC(locker_acquire(ex, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    CHECK_RC(locker_unlock(ex), LOCKING_OK);
    locker_free(sh);
    locker_free(ex);
    t_pipe_close(&held);
    t_pipe_close(&release);
    free(dir);
}

struct sh_thread {
    const char *dir;
    int method;
    pthread_barrier_t *all_hold, *may_release;
    int rc_acquire, rc_check, rc_unlock;
};

static void *shared_thread(void *arg)
{
    struct sh_thread *t = arg;
    Locker *l = t_locker("many", t->dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, t->method);
    t->rc_acquire = locker_acquire(l, LOCKING_SHARED, 10.0);
    pthread_barrier_wait(t->all_hold);
    pthread_barrier_wait(t->may_release);
    if (t->rc_acquire == LOCKING_OK) {
        t->rc_check = locker_check(l);
        t->rc_unlock = locker_unlock(l);
    }
    locker_free(l);
    return NULL;
}

static void many_shared_threads(int m)
{
    char *dir = t_fresh_path("many-threads");
    pthread_barrier_t all_hold, may_release;
    pthread_barrier_init(&all_hold, NULL, N_SHARED_THREADS + 1);
    pthread_barrier_init(&may_release, NULL, N_SHARED_THREADS + 1);
    struct sh_thread th[N_SHARED_THREADS];
    pthread_t tid[N_SHARED_THREADS];
    for (int i = 0; i < N_SHARED_THREADS; i++) {
        th[i] = (struct sh_thread){ dir, m, &all_hold, &may_release, -100, -100, -100 };
        if (pthread_create(&tid[i], NULL, shared_thread, &th[i]) != 0)
            FATAL("pthread_create");
    }
    pthread_barrier_wait(&all_hold);
    int nheld = 0;
    for (int i = 0; i < N_SHARED_THREADS; i++)
        nheld += th[i].rc_acquire == LOCKING_OK;
    CHECK(nheld == N_SHARED_THREADS, "%d of %d threads (own Lockers) hold the "
          "lock shared at the same time", nheld, N_SHARED_THREADS);
    probe_here("many", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_E_LOCKER_FAILED,
               "while 6 threads hold it shared");
    probe_child("many", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_E_LOCKER_FAILED,
                "while 6 threads hold it shared");
    probe_here("many", dir, m, LOCKING_SHARED, 0.0, LOCKING_OK,
               "while 6 threads hold it shared");
    probe_child("many", dir, m, LOCKING_SHARED, 0.0, LOCKING_OK,
                "while 6 threads hold it shared");
    pthread_barrier_wait(&may_release);
    for (int i = 0; i < N_SHARED_THREADS; i++) {
        pthread_join(tid[i], NULL);
        if (th[i].rc_acquire == LOCKING_OK)
            CHECK(th[i].rc_check == LOCKING_OK && th[i].rc_unlock == LOCKING_OK,
                  "thread %d: check %s, unlock %s", i, t_rc_name(th[i].rc_check),
                  t_rc_name(th[i].rc_unlock));
        else
            CHECK(false, "thread %d: acquire shared: %s", i, t_rc_name(th[i].rc_acquire));
    }
    probe_here("many", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_OK,
               "after the threads released");
    pthread_barrier_destroy(&all_hold);
    pthread_barrier_destroy(&may_release);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 2. exclusive excludes shared, shared excludes exclusive              */

static void exclusion_both_ways(int m)
{
    char *dir = t_fresh_path("both-ways");
    Locker *a = t_locker("x", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    Locker *b = t_locker("x", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);

    t_note("a holds exclusive");
    CHECK_RC(locker_acquire(a, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    CHECK_RC(locker_acquire(b, LOCKING_SHARED, 0.0), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_acquire(b, LOCKING_SHARED, 0.2), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_acquire(b, LOCKING_EXCLUSIVE, 0.0), LOCKING_E_LOCKER_FAILED);
    probe_child("x", dir, m, LOCKING_SHARED, 0.0, LOCKING_E_LOCKER_FAILED,
                "exclusive held");
    probe_child("x", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_E_LOCKER_FAILED,
                "exclusive held");
    CHECK_RC(locker_unlock(a), LOCKING_OK);

    t_note("b holds shared");
    CHECK_RC(locker_acquire(b, LOCKING_SHARED, 0.0), LOCKING_OK);
    CHECK_RC(locker_acquire(a, LOCKING_EXCLUSIVE, 0.0), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_acquire(a, LOCKING_EXCLUSIVE, 0.2), LOCKING_E_LOCKER_FAILED);
    probe_child("x", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_E_LOCKER_FAILED,
                "shared held");
    probe_child("x", dir, m, LOCKING_SHARED, 0.0, LOCKING_OK, "shared held");

    t_note("a and b hold shared");
    CHECK_RC(locker_acquire(a, LOCKING_SHARED, 0.0), LOCKING_OK);
    probe_child("x", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_E_LOCKER_FAILED,
                "two shared holders");
    CHECK_RC(locker_unlock(b), LOCKING_OK);
    CHECK_RC(locker_check(a), LOCKING_OK);
    probe_child("x", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_E_LOCKER_FAILED,
                "one shared holder left");
    CHECK_RC(locker_acquire(b, LOCKING_EXCLUSIVE, 0.0), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_unlock(a), LOCKING_OK);

    t_note("nobody holds");
    probe_child("x", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_OK, "free");
    probe_child("x", dir, m, LOCKING_SHARED, 0.0, LOCKING_OK, "free");
    CHECK_RC(locker_acquire(b, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    CHECK_RC(locker_unlock(b), LOCKING_OK);
    locker_free(a);
    locker_free(b);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 3. no lost update with mixed shared / exclusive holders             */

struct rw_state {
    atomic_int readers;    /* processes holding it shared, by their count */
    atomic_int writers;    /* processes holding it exclusive */
    atomic_int max_readers;
};

static void rw_worker(int idx, const char *dir, const char *counter, int m,
                      struct rw_state *st, t_barrier *start)
{
    Locker *l = t_locker("rw", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    t_barrier_arrive(start);
    for (int i = 0; i < RW_ITERS; i++) {
        bool excl = (i + idx) % 3 == 0;
        int rc = locker_acquire(l, excl ? LOCKING_EXCLUSIVE : LOCKING_SHARED, 20.0);
        if (!CHECK_RC_QUIET(rc, LOCKING_OK))
            continue;
        if (excl) {
            int w = atomic_fetch_add(&st->writers, 1) + 1;
            int r = atomic_load(&st->readers);
            CHECK_QUIET(w == 1 && r == 0, "an exclusive holder is alone (writers "
                        "%d, readers %d)", w, r);
            CHECK_QUIET(t_counter_incr(counter), "counter increment");
            w = atomic_load(&st->writers);
            r = atomic_load(&st->readers);
            CHECK_QUIET(w == 1 && r == 0, "an exclusive holder is alone, after "
                        "the increment (writers %d, readers %d)", w, r);
            atomic_fetch_sub(&st->writers, 1);
        } else {
            int r = atomic_fetch_add(&st->readers, 1) + 1;
            int mx = atomic_load(&st->max_readers);
            while (r > mx && !atomic_compare_exchange_weak(&st->max_readers, &mx, r)) {
            }
            CHECK_QUIET(atomic_load(&st->writers) == 0, "no exclusive holder "
                        "beside a shared one");
            long a = t_counter_read(counter);
            sched_yield();
            sched_yield();
            long b = t_counter_read(counter);
            CHECK_QUIET(a >= 0 && a == b, "the counter does not change while "
                        "held shared (read %ld, then %ld)", a, b);
            CHECK_QUIET(atomic_load(&st->writers) == 0, "no exclusive holder "
                        "beside a shared one, after the reads");
            atomic_fetch_sub(&st->readers, 1);
        }
        CHECK_RC_QUIET(locker_unlock(l), LOCKING_OK);
    }
    locker_free(l);
}

static void no_lost_update(int m)
{
    char *dir = t_fresh_path("rw");
    char *counter = t_path("rw-counter-%s-%ld", t_method_label, (long)getpid());
    t_counter_init(counter);
    struct rw_state *st = t_shared_alloc(sizeof *st);
    t_barrier start;
    t_barrier_init(&start, RW_PROCS);
    pid_t pids[RW_PROCS];
    long want = 0;
    for (int p = 0; p < RW_PROCS; p++) {
        for (int i = 0; i < RW_ITERS; i++)
            want += (i + p) % 3 == 0;
        pids[p] = t_fork();
        if (pids[p] == 0) {
            rw_worker(p, dir, counter, m, st, &start);
            t_child_exit();
        }
    }
    double t0 = t_now();
    t_barrier_release(&start);
    for (int p = 0; p < RW_PROCS; p++)
        t_wait_child(pids[p], "mixed shared/exclusive worker");
    long got = t_counter_read(counter);
    CHECK(got == want, "counter %ld == %ld exclusive acquisitions (%d processes "
          "x %d mixed acquisitions, %.2f s)", got, want, RW_PROCS, RW_ITERS,
          t_now() - t0);
    t_note("at most %d shared holders were inside at once", atomic_load(&st->max_readers));
    t_barrier_destroy(&start);
    munmap(st, sizeof *st);
    unlink(counter);
    free(counter);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 4. a waiting writer is not starved by overlapping readers            */

struct starve {
    atomic_int holding;         /* readers holding that have not yet decided to release */
    atomic_int inside;          /* readers holding */
    atomic_long seq;            /* reader acquisitions granted so far */
    atomic_int writer_inside;
    atomic_int detected;        /* the coordinator saw the writer waiting */
    atomic_int writer_released; /* set by the writer just before its unlock */
    atomic_int stop_overlap;    /* readers may release without a successor */
    atomic_int stop_all;
    atomic_int violations;
    atomic_int errors;
};

/* A reader: acquires shared, holds it until a reader that acquired later
 * holds it too (and at least one other reader stays counted), releases,
 * acquires again; so at every moment at least one reader holds the lock. */
static void starve_reader(struct starve *s, const char *dir, int m)
{
    Locker *l = t_locker("starve", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    bool reported = false; /* report each kind of violation once */
    while (!atomic_load(&s->stop_all)) {
        int det = atomic_load(&s->detected);
        int rc = locker_acquire(l, LOCKING_SHARED, 25.0);
        if (rc != LOCKING_OK) {
            if (!atomic_load(&s->stop_all)) {
                CHECK_RC(rc, LOCKING_OK);
                atomic_fetch_add(&s->errors, 1);
            }
            break;
        }
        if (det && !atomic_load(&s->writer_released)) {
            atomic_fetch_add(&s->violations, 1);
            if (!reported)
                CHECK(false, "a reader that began to acquire after the writer was "
                      "seen waiting got the lock before the writer released");
            reported = true;
        }
        if (atomic_load(&s->writer_inside) != 0) {
            atomic_fetch_add(&s->violations, 1);
            if (!reported)
                CHECK(false, "a reader was granted while the writer holds");
            reported = true;
        }
        atomic_fetch_add(&s->inside, 1);
        atomic_fetch_add(&s->holding, 1);
        long mine = atomic_fetch_add(&s->seq, 1);
        for (;;) {
            if (atomic_load(&s->stop_overlap) || atomic_load(&s->stop_all)) {
                atomic_fetch_sub(&s->holding, 1);
                break;
            }
            int h = atomic_load(&s->holding);
            if (h >= 2 && atomic_load(&s->seq) > mine + 1 &&
                atomic_compare_exchange_strong(&s->holding, &h, h - 1))
                break;
            t_sleep(0.001);
        }
        atomic_fetch_sub(&s->inside, 1);
        rc = locker_unlock(l);
        if (!CHECK_RC_QUIET(rc, LOCKING_OK))
            atomic_fetch_add(&s->errors, 1);
    }
    locker_free(l);
}

/* Poll until *v >= atleast, or `bound` seconds passed. */
static bool wait_for_long(atomic_long *v, long atleast, double bound)
{
    double deadline = t_now() + bound;
    while (atomic_load(v) < atleast) {
        if (t_now() > deadline)
            return false;
        t_sleep(0.002);
    }
    return true;
}

/* Poll locker_holder until one block shows `mode_line` and pid=`pid`;
 * give up after `bound` seconds, or once `answer` (the writer's pipe) is
 * readable and one more look does not show it either (the writer got the
 * lock or gave up: if it holds, it must show). */
static bool holder_shows(Locker *probe, pid_t pid, const char *mode_line,
                         double bound, int answer, char *last, size_t lastsz)
{
    char pidline[64];
    snprintf(pidline, sizeof pidline, "pid=%ld", (long)pid);
    double deadline = t_now() + bound;
    static char buf[65536];
    bool answered = false;
    last[0] = '\0';
    while (t_now() < deadline) {
        int n = locker_holder(probe, buf, sizeof buf);
        if (n > 0 && n < (int)sizeof buf) {
            size_t k = strnlen(buf, lastsz - 1);
            memcpy(last, buf, k);
            last[k] = '\0';
            if (count_blocks_with(buf, mode_line, pidline) > 0)
                return true;
        }
        if (answered)
            return false;
        struct pollfd pfd = { answer, POLLIN, 0 };
        answered = poll(&pfd, 1, 0) > 0;
        if (!answered)
            t_sleep(0.002);
    }
    return false;
}

static void writer_not_starved(int m)
{
    char *dir = t_fresh_path("starve");
    struct starve *s = t_shared_alloc(sizeof *s);
    pid_t readers[N_READERS];
    for (int i = 0; i < N_READERS; i++) {
        readers[i] = t_fork();
        if (readers[i] == 0) {
            starve_reader(s, dir, m);
            t_child_exit();
        }
    }
    /* the readers hand the lock over to each other for a while */
    bool ok = wait_for_long(&s->seq, 30, 20.0);
    CHECK(ok, "3 readers overlap continuously: %ld acquisitions, each handed over "
          "only once a later reader holds too", atomic_load(&s->seq));

    t_pipe to_w = t_pipe_new(), from_w = t_pipe_new();
    pid_t w = t_fork();
    if (w == 0) {
        Locker *l = t_locker("starve", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        double t0 = t_now();
        int rc = locker_acquire(l, LOCKING_EXCLUSIVE, 20.0);
        double el = t_now() - t0;
        if (rc == LOCKING_OK)
            atomic_store(&s->writer_inside, 1);
        CHECK(rc == LOCKING_OK, "the writer (timeout 20 s) got the lock despite "
              "continuously overlapping readers: %s after %.3f s%s%s", t_rc_name(rc),
              el, rc ? "; last_error=" : "", rc ? locking_last_error() : "");
        if (rc == LOCKING_OK)
            CHECK(atomic_load(&s->inside) == 0, "the writer is alone: %d readers "
                  "inside", atomic_load(&s->inside));
        t_send(&from_w, rc == LOCKING_OK ? 'g' : 'f');
        t_expect(&to_w, 'r', "writer may release");
        if (rc == LOCKING_OK) {
            CHECK_RC(locker_check(l), LOCKING_OK);
            CHECK(atomic_load(&s->inside) == 0, "the writer is still alone: %d "
                  "readers inside", atomic_load(&s->inside));
            atomic_store(&s->writer_inside, 0);
            atomic_store(&s->writer_released, 1);
            CHECK_RC(locker_unlock(l), LOCKING_OK);
        } else {
            atomic_store(&s->writer_released, 1);
        }
        locker_free(l);
        t_child_exit();
    }

    Locker *probe = t_locker("starve", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    char last[4096];
    bool seen = holder_shows(probe, w, "mode=exclusive", 20.0, from_w.r, last,
                             sizeof last);
    CHECK(seen, "locker_holder shows the writer (pid %ld) as mode=exclusive while "
          "it waits for the readers (last text: \"%s\")", (long)w, last);
    if (seen) {
        atomic_store(&s->detected, 1);
        long seq_at = atomic_load(&s->seq);
        int inside = atomic_load(&s->inside);
        t_note("writer seen waiting after %ld reader acquisitions; %d readers "
               "hold", seq_at, inside);
        /* newcomers wait behind the writer */
        probe_child("starve", dir, m, LOCKING_SHARED, 0.0, LOCKING_E_LOCKER_FAILED,
                    "a new reader while the writer waits");
        probe_here("starve", dir, m, LOCKING_SHARED, 0.0, LOCKING_E_LOCKER_FAILED,
                   "a new reader while the writer waits");
        probe_here("starve", dir, m, LOCKING_SHARED, 0.2, LOCKING_E_LOCKER_FAILED,
                   "a new reader while the writer waits");
    }
    /* the readers that hold it may now go without a successor */
    atomic_store(&s->stop_overlap, 1);
    int c = t_recv_timeout(&from_w, 30.0);
    CHECK(c == 'g', "the writer reports it holds the lock ('%c')", c > 0 ? c : '?');
    if (c == 'g') {
        probe_here("starve", dir, m, LOCKING_SHARED, 0.0, LOCKING_E_LOCKER_FAILED,
                   "while the writer holds");
        probe_child("starve", dir, m, LOCKING_SHARED, 0.0, LOCKING_E_LOCKER_FAILED,
                    "while the writer holds");
    }
    long seq_before = atomic_load(&s->seq);
    t_send(&to_w, 'r');
    t_wait_child(w, "writer");
    /* the readers go on */
    ok = wait_for_long(&s->seq, seq_before + 3, 20.0);
    CHECK(ok, "the readers go on after the writer released (%ld -> %ld "
          "acquisitions)", seq_before, atomic_load(&s->seq));
    atomic_store(&s->stop_all, 1);
    for (int i = 0; i < N_READERS; i++)
        t_wait_child(readers[i], "reader");
    CHECK(atomic_load(&s->violations) == 0 && atomic_load(&s->errors) == 0,
          "readers: %d granted ahead of the waiting writer or beside it, %d errors",
          atomic_load(&s->violations), atomic_load(&s->errors));
    probe_here("starve", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_OK, "at the end");
    locker_free(probe);
    t_pipe_close(&to_w);
    t_pipe_close(&from_w);
    munmap(s, sizeof *s);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 5. dead shared holders are recovered at once                         */

/* A child that holds the name shared until killed or told 'u'
 * (then unlocks and answers 'd') and 'x' (exits). */
static pid_t shared_holder_child(const char *name, const char *dir, int m,
                                 double expire, t_pipe *to, t_pipe *from)
{
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *l = t_locker(name, dir, "ns", 0.0, expire, m);
        int rc = locker_acquire(l, LOCKING_SHARED, 10.0);
        CHECK_RC(rc, LOCKING_OK);
        t_send(from, rc == LOCKING_OK ? 'h' : 'f');
        t_expect(to, 'u', "unlock");
        if (rc == LOCKING_OK)
            CHECK_RC(locker_unlock(l), LOCKING_OK);
        t_send(from, 'd');
        t_expect(to, 'x', "exit");
        locker_free(l);
        t_child_exit();
    }
    return pid;
}

static void dead_shared_holder(int m)
{
    char *dir = t_fresh_path("dead-shared");
    t_pipe to_a = t_pipe_new(), from_a = t_pipe_new();
    t_pipe to_b = t_pipe_new(), from_b = t_pipe_new();

    t_note("a lone shared holder dies");
    pid_t a = shared_holder_child("dead", dir, m, LOCKING_NEVER_EXPIRE, &to_a, &from_a);
    t_expect(&from_a, 'h', "A holds shared");
    kill_and_reap(a);
    Locker *w = t_locker("dead", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    double t0 = t_now();
    int rc = locker_acquire(w, LOCKING_EXCLUSIVE, 0.0);
    t_note("exclusive, timeout 0, after the only shared holder died: %s (%.3f s)",
           t_rc_name(rc), t_now() - t0);
    if (rc != LOCKING_OK) {
        t0 = t_now();
        rc = locker_acquire(w, LOCKING_EXCLUSIVE, 5.0);
    }
    double el = t_now() - t0;
    CHECK(rc == LOCKING_OK, "exclusive (timeout 5 s) recovers the lock of a dead "
          "shared holder: %s after %.3f s%s%s", t_rc_name(rc), el,
          rc ? "; last_error=" : "", rc ? locking_last_error() : "");
    CHECK(el < 4.0, "recovered at once, not by waiting (%.3f s)", el);
    probe_child("dead", dir, m, LOCKING_SHARED, 0.0, LOCKING_E_LOCKER_FAILED,
                "after the recovery");
    if (rc == LOCKING_OK)
        CHECK_RC(locker_unlock(w), LOCKING_OK);

    t_note("one of two shared holders dies");
    a = shared_holder_child("dead", dir, m, LOCKING_NEVER_EXPIRE, &to_a, &from_a);
    t_expect(&from_a, 'h', "A holds shared");
    pid_t b = shared_holder_child("dead", dir, m, LOCKING_NEVER_EXPIRE, &to_b, &from_b);
    t_expect(&from_b, 'h', "B holds shared");
    kill_and_reap(a);
    CHECK_RC(locker_acquire(w, LOCKING_EXCLUSIVE, 0.0), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_acquire(w, LOCKING_SHARED, 0.0), LOCKING_OK);
    CHECK_RC(locker_unlock(w), LOCKING_OK);
    t_send(&to_b, 'u');
    t_expect(&from_b, 'd', "B unlocked");
    t0 = t_now();
    rc = locker_acquire(w, LOCKING_EXCLUSIVE, 5.0);
    el = t_now() - t0;
    CHECK(rc == LOCKING_OK, "exclusive (timeout 5 s) after the live shared holder "
          "released and the other died: %s after %.3f s%s%s", t_rc_name(rc), el,
          rc ? "; last_error=" : "", rc ? locking_last_error() : "");
    CHECK(el < 4.0, "at once (%.3f s)", el);
    CHECK_RC(locker_check(w), LOCKING_OK);
    probe_child("dead", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_E_LOCKER_FAILED,
                "after the recovery");
    if (rc == LOCKING_OK)
        CHECK_RC(locker_unlock(w), LOCKING_OK);
    t_send(&to_b, 'x');
    t_wait_child(b, "shared holder B");

    locker_free(w);
    t_pipe_close(&to_a);
    t_pipe_close(&from_a);
    t_pipe_close(&to_b);
    t_pipe_close(&from_b);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 6. expire applies to each shared holder on its own                   */

/* A shared holder that is broken while stopped: after 'c' it checks that it
 * lost the lock, answers 'd', and exits on 'x'. */
static pid_t broken_shared_child(const char *dir, int m, t_pipe *to, t_pipe *from)
{
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *l = t_locker("exp", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        int rc = locker_acquire(l, LOCKING_SHARED, 10.0);
        CHECK_RC(rc, LOCKING_OK);
        t_send(from, rc == LOCKING_OK ? 'h' : 'f');
        t_expect(to, 'c', "go on after the break");
        CHECK_RC(locker_check(l), LOCKING_E_LOCK_LOST);
        CHECK_RC(locker_refresh(l), LOCKING_E_LOCK_LOST);
        CHECK_RC(locker_unlock(l), LOCKING_E_LOCK_LOST);
        CHECK_RC(locker_check(l), LOCKING_E_NOT_LOCKED);
        CHECK_RC(locker_unlock(l), LOCKING_E_NOT_LOCKED);
        t_send(from, 'd');
        t_expect(to, 'x', "exit");
        locker_free(l);
        t_child_exit();
    }
    return pid;
}

static void expire_shared(int m)
{
    char *dir = t_fresh_path("expire-shared");
    t_pipe to_a = t_pipe_new(), from_a = t_pipe_new();

    t_note("a stopped shared holder, a writer with expire 1 s");
    double t_fork_a = t_now();
    pid_t a = broken_shared_child(dir, m, &to_a, &from_a);
    t_expect(&from_a, 'h', "A holds shared");
    t_stop_child(a);
    Locker *w = t_locker("exp", dir, "ns", 10.0, 1.0, m);
    int rc = locker_acquire(w, LOCKING_EXCLUSIVE, 10.0);
    double el = t_now() - t_fork_a;
    CHECK(rc == LOCKING_OK, "the writer (expire 1 s, timeout 10 s) broke the "
          "stopped shared holder: %s after %.3f s%s%s", t_rc_name(rc), el,
          rc ? "; last_error=" : "", rc ? locking_last_error() : "");
    CHECK(el >= 0.9, "not before the shared lock was 1 s old (%.3f s since A "
          "was forked)", el);
    CHECK(el < 10.0, "within the writer's timeout (%.3f s)", el);
    kill(a, SIGCONT);
    t_send(&to_a, 'c');
    t_expect(&from_a, 'd', "A made its calls");
    CHECK_RC(locker_check(w), LOCKING_OK);
    probe_child("exp", dir, m, LOCKING_SHARED, 0.0, LOCKING_E_LOCKER_FAILED,
                "while the writer holds");
    t_send(&to_a, 'x');
    t_wait_child(a, "broken shared holder A");
    CHECK_RC(locker_check(w), LOCKING_OK);
    if (rc == LOCKING_OK)
        CHECK_RC(locker_unlock(w), LOCKING_OK);
    locker_free(w);

    t_note("a stopped shared holder and one that refreshes every 50 ms; a writer "
           "with expire 1 s");
    char *dir2 = t_fresh_path("expire-shared2");
    t_pipe to_b = t_pipe_new(), from_b = t_pipe_new();
    a = broken_shared_child(dir2, m, &to_a, &from_a);
    t_expect(&from_a, 'h', "A holds shared");
    pid_t b = t_fork();
    if (b == 0) {
        Locker *l = t_locker("exp", dir2, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        int rc2 = locker_acquire(l, LOCKING_SHARED, 10.0);
        CHECK_RC(rc2, LOCKING_OK);
        t_send(&from_b, rc2 == LOCKING_OK ? 'h' : 'f');
        /* refresh until told to stop */
        int n = 0;
        while (t_recv_timeout(&to_b, 0.05) < 0) {
            if (!CHECK_RC_QUIET(locker_refresh(l), LOCKING_OK))
                break;
            n++;
        }
        CHECK(n > 0, "B refreshed %d times", n);
        CHECK_RC(locker_check(l), LOCKING_OK);
        CHECK_RC(locker_unlock(l), LOCKING_OK);
        locker_free(l);
        t_child_exit();
    }
    t_expect(&from_b, 'h', "B holds shared");
    t_stop_child(a);
    w = t_locker("exp", dir2, "ns", 0.0, 1.0, m);
    double t0 = t_now();
    rc = locker_acquire(w, LOCKING_EXCLUSIVE, 2.0);
    el = t_now() - t0;
    CHECK(rc == LOCKING_E_LOCKER_FAILED, "the writer (expire 1 s, timeout 2 s) "
          "does not break a shared holder that refreshes: %s after %.3f s",
          t_rc_name(rc), el);
    if (rc == LOCKING_OK)
        locker_unlock(w);
    kill(a, SIGCONT);
    t_send(&to_a, 'c');
    t_expect(&from_a, 'd', "A made its calls (lost, although B kept its lock)");
    t_send(&to_a, 'x');
    t_wait_child(a, "broken shared holder A");
    t_send(&to_b, 's');
    t_wait_child(b, "refreshing shared holder B");
    rc = locker_acquire(w, LOCKING_EXCLUSIVE, 5.0);
    CHECK(rc == LOCKING_OK, "after B released, the writer gets it: %s", t_rc_name(rc));
    if (rc == LOCKING_OK)
        CHECK_RC(locker_unlock(w), LOCKING_OK);
    locker_free(w);
    t_pipe_close(&to_b);
    t_pipe_close(&from_b);
    t_pipe_close(&to_a);
    t_pipe_close(&from_a);
    free(dir2);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 7. fork                                                              */

static void fork_shared(int m)
{
    char *dir = t_fresh_path("fork-shared");
    Locker *l = t_locker("f", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    CHECK_RC(locker_acquire(l, LOCKING_SHARED, 0.0), LOCKING_OK);
    for (int a = 0; a < 3; a++) {
        static const char *what[] = { "child: unlock, check, free", "child: free only",
                                      "child: _exit" };
        t_note("%s", what[a]);
        pid_t pid = t_fork();
        if (pid == 0) {
            if (a == 0) {
                CHECK_RC(locker_unlock(l), LOCKING_E_NOT_LOCKED);
                CHECK_RC(locker_check(l), LOCKING_E_NOT_LOCKED);
                locker_free(l);
            } else if (a == 1) {
                locker_free(l);
            } else {
                _exit(0);
            }
            t_child_exit();
        }
        t_wait_child(pid, what[a]);
        CHECK_RC(locker_check(l), LOCKING_OK);
        probe_child("f", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_E_LOCKER_FAILED,
                    "the parent holds shared");
        probe_child("f", dir, m, LOCKING_SHARED, 0.0, LOCKING_OK,
                    "the parent holds shared");
    }
    CHECK_RC(locker_unlock(l), LOCKING_OK);
    probe_child("f", dir, m, LOCKING_EXCLUSIVE, 0.0, LOCKING_OK,
                "the parent released");
    locker_free(l);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 8. mixed methods                                                     */

static void mixed_methods(void)
{
    FOR_EACH_REAL_METHOD(holder_m) {
        for (int j = 0; j < T_N_REAL_METHODS; j++) {
            int other_m = t_real_methods[j];
            if (other_m == holder_m)
                continue;
            for (int hm = 0; hm < 2; hm++) {
                int hmode = hm ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
                char *dir = t_fresh_path("mixed");
                Locker *a = t_locker("x", dir, NULL, 0.0, 0.0, holder_m);
                Locker *b = t_locker("x", dir, NULL, 0.0, 0.0, other_m);
                CHECK_RC(locker_acquire(a, hmode, 0.0), LOCKING_OK);
                for (int om = 0; om < 2; om++) {
                    int omode = om ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
                    int rc = locker_acquire(b, omode, 0.0);
                    CHECK(rc < 0 && locking_last_error()[0] != '\0',
                          "held %s with %s, a %s Locker is refused %s: %s (\"%s\")",
                          t_mode_name(hmode), t_method_name(holder_m),
                          t_method_name(other_m), t_mode_name(omode), t_rc_name(rc),
                          rc < 0 ? locking_last_error() : "granted");
                    if (rc < 0 && rc != LOCKING_E_INVALID_ARGUMENT)
                        t_note("refused with %s rather than INVALID_ARGUMENT",
                               t_rc_name(rc));
                    if (rc == LOCKING_OK)
                        locker_unlock(b);
                }
                CHECK_RC(locker_check(a), LOCKING_OK);
                CHECK_RC(locker_unlock(a), LOCKING_OK);
                locker_free(a);
                locker_free(b);
                free(dir);
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* 9. FAKE                                                              */

static void fake(void)
{
    t_method_label = "fake";
    char *dir = t_fresh_path("fake");
    Locker *a = t_locker("x", dir, "ns", 0.0, 0.0, LOCKING_METHOD_FAKE);
    Locker *b = t_locker("x", dir, "ns", 0.0, 0.0, LOCKING_METHOD_FAKE);
    Locker *c = t_locker("x", dir, "ns", 0.0, 0.0, LOCKING_METHOD_FAKE);
    CHECK_RC(locker_acquire(a, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    CHECK_RC(locker_acquire(b, LOCKING_SHARED, 0.0), LOCKING_OK);
    CHECK_RC(locker_acquire(c, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    probe_child("x", dir, LOCKING_METHOD_FAKE, LOCKING_EXCLUSIVE, 0.0, LOCKING_OK,
                "fake");
    probe_child("x", dir, LOCKING_METHOD_FAKE, LOCKING_SHARED, 0.0, LOCKING_OK,
                "fake");
    CHECK_RC(locker_unlock(a), LOCKING_OK);
    CHECK_RC(locker_unlock(c), LOCKING_OK);
    CHECK_RC(locker_acquire(a, LOCKING_SHARED, 0.0), LOCKING_OK);
    CHECK_RC(locker_acquire(c, LOCKING_SHARED, 0.0), LOCKING_OK);
    CHECK_RC(locker_unlock(a), LOCKING_OK);
    CHECK_RC(locker_unlock(b), LOCKING_OK);
    CHECK_RC(locker_unlock(c), LOCKING_OK);
    locker_free(a);
    locker_free(b);
    locker_free(c);
    free(dir);
    t_method_label = "-";
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    double t0 = t_now();
    FOR_EACH_REAL_METHOD(m) {
        double t1 = t_now();
        many_shared_procs(m);
        many_shared_threads(m);
        exclusion_both_ways(m);
        no_lost_update(m);
        writer_not_starved(m);
        dead_shared_holder(m);
        expire_shared(m);
        fork_shared(m);
        t_note("%.2f s", t_now() - t1);
    }
    mixed_methods();
    fake();
    int rc = t_done();
    int checks = atomic_load(&t_checks), failed = atomic_load(&t_failures);
    printf("test_shared: %d passed, %d failed (%.2f s)\n", checks - failed,
           failed, t_now() - t0);
    return rc;
}
