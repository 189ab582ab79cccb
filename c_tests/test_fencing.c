/*
 * Fencing tokens (0.2: locker_fencing_token), for every real method (and
 * FAKE for the checks that need no exclusion):
 *
 *  1. Not held -> LOCKING_E_NOT_LOCKED and *out untouched (before the first
 *     acquisition and after an unlock); NULL Locker or NULL out ->
 *     LOCKING_E_INVALID_ARGUMENT. While held the token is >= 1 and the same
 *     on every call (also after locker_refresh).
 *  2. Strictly increasing over sequential acquisitions of one Locker (both
 *     modes, alternately), over two Lockers taking turns, and in grant order
 *     for shared holders that hold at the same time (each acquired while the
 *     earlier ones still hold), in one process and across processes.
 *  3. Across processes: 4 processes acquire 25 times each; every holder
 *     appends its token to a log file while holding exclusive. The log (the
 *     order the lock serialised them in) must be strictly increasing.
 *     The same with mixed modes: shared holders log their token while
 *     holding too; all tokens are distinct and every exclusive holder's
 *     token is greater than every token logged before it and smaller than
 *     every token logged after it (an exclusive holding interval never
 *     overlaps another, so the log orders it against every other line).
 *  4. Across a crash: a child acquires (exclusive, and shared), reports its
 *     token and is SIGKILLed while holding; the next holder's token is
 *     greater.
 *  5. Across an expire break: holder A (stopped) is broken by B (expire 1 s);
 *     B's token is greater than A's (A exclusive, and A shared).
 *
 * Built with -DFORCE_METHOD=LOCKING_METHOD_FAKE (common.h) the method loop
 * runs FAKE instead, and the grant-order check of 3 (each holder yields
 * between drawing its token and logging it) and the LOCK_LOST checks of 5
 * must fail.
 */
#include "common.h"

#define PROCS 4
#define PER_PROC 25
#define SENTINEL UINT64_C(0xDEADBEEFCAFEF00D)

/* The token of a held Locker (0 after a reported failure). */
#define TOKEN(l) token_at((l), __FILE__, __LINE__)
static uint64_t token_at(const Locker *l, const char *file, int line)
{
    uint64_t t = SENTINEL;
    int rc = locker_fencing_token(l, &t);
    if (rc != LOCKING_OK) {
        t_report(false, file, line, "locker_fencing_token: %s (last_error=\"%s\")",
                 t_rc_name(rc), locking_last_error());
        return 0;
    }
    if (t == 0 || t == SENTINEL) {
        t_report(false, file, line, "locker_fencing_token: OK but token %llu",
                 (unsigned long long)t);
        return 0;
    }
    return t;
}

/* Returns 0 on EOF/timeout. */
static uint64_t recv_u64(t_pipe *p, double timeout)
{
    uint64_t v;
    return t_recv_u64(p, timeout, &v) ? v : 0;
}

/* ------------------------------------------------------------------ */
/* 1. not held, NULL                                                    */

static void not_held(int m)
{
    char *dir = t_fresh_path("not-held");
    Locker *l = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    uint64_t out = SENTINEL;
    CHECK_RC(locker_fencing_token(l, &out), LOCKING_E_NOT_LOCKED);
    CHECK(out == SENTINEL, "not held (never locked): out untouched");
    CHECK_RC(locker_fencing_token(NULL, &out), LOCKING_E_INVALID_ARGUMENT);
    CHECK(out == SENTINEL, "NULL Locker: out untouched");
    CHECK_RC(locker_fencing_token(NULL, NULL), LOCKING_E_INVALID_ARGUMENT);
    int rc = locker_fencing_token(l, NULL);
    CHECK(rc == LOCKING_E_INVALID_ARGUMENT || rc == LOCKING_E_NOT_LOCKED,
          "not held, NULL out: %s (INVALID_ARGUMENT or NOT_LOCKED)", t_rc_name(rc));

    for (int mi = 0; mi < 2; mi++) {
        int mode = mi ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
        CHECK_RC(locker_acquire(l, mode, 0.0), LOCKING_OK);
        uint64_t t1 = TOKEN(l), t2 = TOKEN(l);
        CHECK(t1 >= 1 && t1 == t2, "%s: token %llu >= 1, the same on a second call "
              "(%llu)", t_mode_name(mode), (unsigned long long)t1, (unsigned long long)t2);
        CHECK_RC(locker_fencing_token(l, NULL), LOCKING_E_INVALID_ARGUMENT);
        CHECK_RC(locker_refresh(l), LOCKING_OK);
        uint64_t t3 = TOKEN(l);
        CHECK(t3 == t1, "%s: the same token after locker_refresh (%llu, %llu)",
              t_mode_name(mode), (unsigned long long)t1, (unsigned long long)t3);
        /* a failed acquisition does not change it */
        CHECK_RC(locker_acquire(l, mode, 0.0), LOCKING_E_ALREADY_LOCKED);
        CHECK(TOKEN(l) == t1, "%s: the same token after ALREADY_LOCKED",
              t_mode_name(mode));
        CHECK_RC(locker_unlock(l), LOCKING_OK);
        out = SENTINEL;
        CHECK_RC(locker_fencing_token(l, &out), LOCKING_E_NOT_LOCKED);
        CHECK(out == SENTINEL, "%s: not held after unlock: out untouched",
              t_mode_name(mode));
    }
    locker_free(l);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 2. in one process                                                    */

static void sequential(int m)
{
    char *dir = t_fresh_path("seq");
    Locker *a = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    Locker *b = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    uint64_t prev = 0;
    bool ok = true;
    for (int i = 0; i < 20; i++) {
        int mode = i % 2 ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
        if (!CHECK_RC_QUIET(locker_acquire(a, mode, 0.0), LOCKING_OK)) {
            ok = false;
            break;
        }
        uint64_t t = TOKEN(a);
        ok &= CHECK_QUIET(t > prev, "acquisition %d (%s) of one Locker: token %llu > "
                          "%llu", i, t_mode_name(mode), (unsigned long long)t,
                          (unsigned long long)prev);
        prev = t;
        CHECK_RC_QUIET(locker_unlock(a), LOCKING_OK);
    }
    CHECK(ok, "one Locker, 20 acquisitions (both modes): strictly increasing "
          "tokens (last %llu)", (unsigned long long)prev);

    ok = true;
    for (int i = 0; i < 20; i++) {
        Locker *l = i % 2 ? b : a;
        int mode = (i / 2) % 2 ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
        if (!CHECK_RC_QUIET(locker_acquire(l, mode, 0.0), LOCKING_OK)) {
            ok = false;
            break;
        }
        uint64_t t = TOKEN(l);
        ok &= CHECK_QUIET(t > prev, "acquisition %d (%s), Locker %c: token %llu > "
                          "%llu", i, t_mode_name(mode), i % 2 ? 'b' : 'a',
                          (unsigned long long)t, (unsigned long long)prev);
        prev = t;
        CHECK_RC_QUIET(locker_unlock(l), LOCKING_OK);
    }
    CHECK(ok, "two Lockers taking turns: strictly increasing tokens (last %llu)",
          (unsigned long long)prev);

    /* a Locker created after the others were freed goes on from there */
    locker_free(a);
    locker_free(b);
    a = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    CHECK_RC(locker_acquire(a, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    uint64_t t = TOKEN(a);
    CHECK(t > prev, "a new Locker: token %llu > %llu", (unsigned long long)t,
          (unsigned long long)prev);
    CHECK_RC(locker_unlock(a), LOCKING_OK);
    prev = t;

    /* another name has tokens of its own, and does not disturb these */
    Locker *o = t_locker("other", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    CHECK_RC(locker_acquire(o, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    CHECK(TOKEN(o) >= 1, "another name: a token >= 1");
    CHECK_RC(locker_unlock(o), LOCKING_OK);
    locker_free(o);
    CHECK_RC(locker_acquire(a, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    t = TOKEN(a);
    CHECK(t > prev, "after another name was locked: token %llu > %llu",
          (unsigned long long)t, (unsigned long long)prev);
    CHECK_RC(locker_unlock(a), LOCKING_OK);
    locker_free(a);
    free(dir);
}

/* Shared holders that hold at the same time: each acquired while the
 * earlier ones hold; tokens increase in grant order and are kept while the
 * others come and go. */
static void shared_grant_order(int m)
{
    char *dir = t_fresh_path("shared-order");
    enum { N = 4 };
    Locker *l[N];
    uint64_t t[N];
    for (int i = 0; i < N; i++) {
        l[i] = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        CHECK_RC(locker_acquire(l[i], LOCKING_SHARED, 0.0), LOCKING_OK);
        t[i] = TOKEN(l[i]);
        if (i > 0)
            CHECK(t[i] > t[i - 1], "shared holder %d (the others still hold): token "
                  "%llu > %llu", i, (unsigned long long)t[i],
                  (unsigned long long)t[i - 1]);
    }
    CHECK_RC(locker_unlock(l[1]), LOCKING_OK);
    CHECK(TOKEN(l[0]) == t[0] && TOKEN(l[2]) == t[2], "the others keep their "
          "tokens when one releases");
    CHECK_RC(locker_acquire(l[1], LOCKING_SHARED, 0.0), LOCKING_OK);
    uint64_t t1 = TOKEN(l[1]);
    CHECK(t1 > t[N - 1], "re-acquired shared: token %llu > %llu",
          (unsigned long long)t1, (unsigned long long)t[N - 1]);
    for (int i = 0; i < N; i++)
        CHECK_RC(locker_unlock(l[i]), LOCKING_OK);
    Locker *x = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    CHECK_RC(locker_acquire(x, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    uint64_t tx = TOKEN(x);
    CHECK(tx > t1, "exclusive after the shared holders: %llu > %llu",
          (unsigned long long)tx, (unsigned long long)t1);
    CHECK_RC(locker_unlock(x), LOCKING_OK);

    /* across processes: each child acquires shared while the earlier ones
     * hold, reports its token, and holds until told to go */
    t_pipe to = t_pipe_new(), from = t_pipe_new();
    pid_t pids[N];
    uint64_t prev = tx;
    for (int i = 0; i < N; i++) {
        pids[i] = t_fork();
        if (pids[i] == 0) {
            Locker *c = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
            int rc = locker_acquire(c, LOCKING_SHARED, 10.0);
            CHECK_RC(rc, LOCKING_OK);
            t_send_u64(&from, rc == LOCKING_OK ? TOKEN(c) : 0);
            t_expect(&to, 'x', "release");
            if (rc == LOCKING_OK)
                CHECK_RC(locker_unlock(c), LOCKING_OK);
            locker_free(c);
            t_child_exit();
        }
        uint64_t ti = recv_u64(&from, 30.0);
        CHECK(ti > prev, "shared holder process %d (the earlier ones still hold): "
              "token %llu > %llu", i, (unsigned long long)ti, (unsigned long long)prev);
        prev = ti;
    }
    for (int i = 0; i < N; i++)
        t_send(&to, 'x');
    for (int i = 0; i < N; i++)
        t_wait_child(pids[i], "shared holder");
    CHECK_RC(locker_acquire(x, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    tx = TOKEN(x);
    CHECK(tx > prev, "exclusive after the shared holder processes: %llu > %llu",
          (unsigned long long)tx, (unsigned long long)prev);
    CHECK_RC(locker_unlock(x), LOCKING_OK);
    locker_free(x);
    for (int i = 0; i < N; i++)
        locker_free(l[i]);
    t_pipe_close(&to);
    t_pipe_close(&from);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 3. across processes, in the order the lock serialised them           */

struct logline {
    char mode; /* 'E' or 'S' */
    uint64_t tok;
};

static int read_log(const char *path, struct logline *out, int max)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    int n = 0;
    char mode;
    unsigned long long tok;
    while (n < max && fscanf(f, " %c %llu", &mode, &tok) == 2) {
        out[n].mode = mode;
        out[n].tok = tok;
        n++;
    }
    fclose(f);
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* mixed: every third acquisition exclusive, the others shared; otherwise
 * all exclusive. */
static void across_processes(int m, bool mixed)
{
    char *dir = t_fresh_path(mixed ? "procs-mixed" : "procs");
    char *log = t_path("fencing-log-%s-%s-%ld", mixed ? "mixed" : "excl",
                       t_method_label, (long)getpid());
    int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (lfd < 0)
        FATAL("open %s", log);
    t_barrier start;
    t_barrier_init(&start, PROCS);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = t_fork();
        if (pids[p] == 0) {
            Locker *l = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
            t_barrier_arrive(&start);
            for (int k = 0; k < PER_PROC; k++) {
                bool excl = !mixed || (k + p) % 3 == 0;
                int rc = locker_acquire(l, excl ? LOCKING_EXCLUSIVE : LOCKING_SHARED, 20.0);
                if (!CHECK_RC_QUIET(rc, LOCKING_OK))
                    continue;
                uint64_t t = TOKEN(l);
                sched_yield(); /* widen the window between drawing and logging */
                char line[64];
                int n = snprintf(line, sizeof line, "%c %llu\n", excl ? 'E' : 'S',
                                 (unsigned long long)t);
                CHECK_QUIET(write(lfd, line, (size_t)n) == n, "log write");
                if (!excl)
                    sched_yield(); /* let other shared holders in meanwhile */
                CHECK_RC_QUIET(locker_unlock(l), LOCKING_OK);
            }
            locker_free(l);
            t_child_exit();
        }
    }
    t_barrier_release(&start);
    for (int p = 0; p < PROCS; p++)
        t_wait_child(pids[p], "token logger");
    close(lfd);

    enum { MAXL = PROCS * PER_PROC + 8 };
    struct logline lines[MAXL];
    int n = read_log(log, lines, MAXL);
    CHECK(n == PROCS * PER_PROC, "%d log lines (want %d)", n, PROCS * PER_PROC);
    if (n <= 0)
        goto out;

    /* all distinct */
    uint64_t sorted[MAXL];
    for (int i = 0; i < n; i++)
        sorted[i] = lines[i].tok;
    qsort(sorted, (size_t)n, sizeof sorted[0], cmp_u64);
    int dups = 0;
    for (int i = 1; i < n; i++)
        dups += sorted[i] == sorted[i - 1];
    CHECK(dups == 0 && sorted[0] >= 1, "%d tokens, all distinct and >= 1 (%d "
          "duplicates, smallest %llu)", n, dups, (unsigned long long)sorted[0]);

    if (!mixed) {
        int bad = -1;
        for (int i = 1; i < n && bad < 0; i++)
            if (lines[i].tok <= lines[i - 1].tok)
                bad = i;
        CHECK(bad < 0, "exclusive holders of 4 processes: tokens strictly increase "
              "in the order the lock granted them%s (line %d: %llu after %llu)",
              bad < 0 ? "" : ": NOT", bad, bad > 0 ? (unsigned long long)lines[bad].tok : 0ULL,
              bad > 0 ? (unsigned long long)lines[bad - 1].tok : 0ULL);
    } else {
        /* prefix maxima and suffix minima */
        uint64_t pre[MAXL], suf[MAXL];
        for (int i = 0; i < n; i++)
            pre[i] = i == 0 ? lines[i].tok : (lines[i].tok > pre[i - 1] ? lines[i].tok : pre[i - 1]);
        for (int i = n - 1; i >= 0; i--)
            suf[i] = i == n - 1 ? lines[i].tok : (lines[i].tok < suf[i + 1] ? lines[i].tok : suf[i + 1]);
        int bad = -1, nexcl = 0;
        for (int i = 0; i < n && bad < 0; i++) {
            if (lines[i].mode != 'E')
                continue;
            nexcl++;
            if ((i > 0 && pre[i - 1] >= lines[i].tok) || (i < n - 1 && suf[i + 1] <= lines[i].tok))
                bad = i;
        }
        CHECK(bad < 0, "mixed modes, 4 processes: every exclusive token is above "
              "every earlier logged token and below every later one%s (line %d, "
              "token %llu; %d exclusive lines checked)",
              bad < 0 ? "" : ": NOT", bad,
              bad >= 0 ? (unsigned long long)lines[bad].tok : 0ULL, nexcl);
        /* shared tokens increase within each run of shared lines only up to
         * reordering among overlapping holders: nothing more to check */
    }
out:
    t_barrier_destroy(&start);
    unlink(log);
    free(log);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 4. across a crash                                                    */

static void across_crash(int m)
{
    for (int mi = 0; mi < 2; mi++) {
        int mode = mi ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
        char *dir = t_fresh_path("crash");
        t_pipe from = t_pipe_new(), to = t_pipe_new();
        /* one acquisition first, so the child's token is not the first */
        Locker *w = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        CHECK_RC(locker_acquire(w, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
        uint64_t t0 = TOKEN(w);
        CHECK_RC(locker_unlock(w), LOCKING_OK);
        pid_t pid = t_fork();
        if (pid == 0) {
            Locker *l = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
            int rc = locker_acquire(l, mode, 10.0);
            CHECK_RC(rc, LOCKING_OK);
            t_send_u64(&from, rc == LOCKING_OK ? TOKEN(l) : 0);
            t_expect(&to, 'x', "never sent");
            t_child_exit();
        }
        uint64_t tc = recv_u64(&from, 30.0);
        CHECK(tc > t0, "the child's (%s) token %llu > the earlier %llu",
              t_mode_name(mode), (unsigned long long)tc, (unsigned long long)t0);
        kill(pid, SIGKILL);
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        CHECK(WIFSIGNALED(st), "the holder was killed while holding");
        int rc = locker_acquire(w, LOCKING_EXCLUSIVE, 5.0);
        CHECK(rc == LOCKING_OK, "the next holder recovers the lock of the %s holder "
              "killed while holding: %s%s%s", t_mode_name(mode), t_rc_name(rc),
              rc ? "; last_error=" : "", rc ? locking_last_error() : "");
        if (rc == LOCKING_OK) {
            uint64_t tw = TOKEN(w);
            CHECK(tw > tc, "after the crash of a %s holder: token %llu > the dead "
                  "holder's %llu", t_mode_name(mode), (unsigned long long)tw,
                  (unsigned long long)tc);
            CHECK_RC(locker_unlock(w), LOCKING_OK);
        }
        locker_free(w);
        t_pipe_close(&from);
        t_pipe_close(&to);
        free(dir);
    }
}

/* ------------------------------------------------------------------ */
/* 5. across an expire break                                            */

static void across_expire(int m)
{
    for (int mi = 0; mi < 2; mi++) {
        int mode = mi ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
        char *dir = t_fresh_path("expire");
        t_pipe from = t_pipe_new(), to = t_pipe_new();
        pid_t a = t_fork();
        if (a == 0) {
            Locker *l = t_locker("tok", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
            int rc = locker_acquire(l, mode, 10.0);
            CHECK_RC(rc, LOCKING_OK);
            t_send_u64(&from, rc == LOCKING_OK ? TOKEN(l) : 0);
            t_expect(&to, 'c', "continue");
            CHECK_RC(locker_check(l), LOCKING_E_LOCK_LOST);
            CHECK_RC(locker_unlock(l), LOCKING_E_LOCK_LOST);
            t_send(&from, 'd');
            t_expect(&to, 'x', "exit");
            locker_free(l);
            t_child_exit();
        }
        uint64_t ta = recv_u64(&from, 30.0);
        t_stop_child(a);
        Locker *b = t_locker("tok", dir, "ns", 10.0, 1.0, m);
        int rc = locker_acquire(b, LOCKING_EXCLUSIVE, 10.0);
        CHECK(rc == LOCKING_OK, "B (expire 1 s) broke the stopped %s holder A: %s%s%s",
              t_mode_name(mode), t_rc_name(rc), rc ? "; last_error=" : "",
              rc ? locking_last_error() : "");
        if (rc == LOCKING_OK) {
            uint64_t tb = TOKEN(b);
            CHECK(ta >= 1 && tb > ta, "after an expire break of a %s holder: B's token "
                  "%llu > A's %llu", t_mode_name(mode), (unsigned long long)tb,
                  (unsigned long long)ta);
        }
        kill(a, SIGCONT);
        t_send(&to, 'c');
        t_expect(&from, 'd', "A made its calls");
        t_send(&to, 'x');
        t_wait_child(a, "broken holder A");
        if (rc == LOCKING_OK)
            CHECK_RC(locker_unlock(b), LOCKING_OK);
        locker_free(b);
        t_pipe_close(&from);
        t_pipe_close(&to);
        free(dir);
    }
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    double t0 = t_now();
    FOR_EACH_REAL_METHOD(m) {
        double t1 = t_now();
        not_held(m);
        sequential(m);
        shared_grant_order(m);
        across_processes(m, false);
        across_processes(m, true);
        across_crash(m);
        across_expire(m);
        t_note("%.2f s", t_now() - t1);
    }
    /* FAKE excludes nothing, but its tokens follow the same rules where no
     * exclusion is involved: one process, one acquisition after another */
    t_method_label = "fake";
    not_held(LOCKING_METHOD_FAKE);
    sequential(LOCKING_METHOD_FAKE);
    t_method_label = "-";
    int rc = t_done();
    int checks = atomic_load(&t_checks), failed = atomic_load(&t_failures);
    printf("test_fencing: %d passed, %d failed (%.2f s)\n", checks - failed,
           failed, t_now() - t0);
    return rc;
}
