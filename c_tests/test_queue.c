/*
 * The hand-over order (docs/PROTOCOL.md, "Hand-over order"; docs/FORMAT.md,
 * "Queue directory"): waiters of the lock-directory methods are served
 * first come, first served through tickets `q.<20 digits>.<token>` in
 * `<lockdir>/<entry>+q/`. Here ns "t", objname "x": entry `l-t=x`, queue
 * directory `l-t=x+q`. For every real method:
 *
 *  1. FIFO: this process (H) holds the lock exclusive; waiter processes
 *     (locker_lock, timeout 20 s) are started one at a time, each only once
 *     the ticket of the one before it is visible (the queue holds k `q.*`
 *     tickets). H releases; each waiter appends its letter to a log file
 *     (O_APPEND) when granted and releases at once. The log must read the
 *     order of starting. Rounds with different orders, and with 4 waiters.
 *  2. A returning holder does not barge: H releases and at once calls
 *     locker_lock again (timeout 20 s) while A (then A and B) wait: the log
 *     must read "AH" ("ABH").
 *  3. Shared and exclusive in order: behind H, R1 (shared), W (exclusive),
 *     R2 (shared) queue; the grants must come as "1W2" (R1 releases right
 *     after logging; W logs when granted, so R2 is never granted while W
 *     waits). Also X (excl), a, b (shared), Y (excl): "X", then a and b in
 *     either order, then "Y".
 *  4. A dead waiter is skipped at once: H holds, A and B queue, A is
 *     SIGKILLed (and reaped): within 5 s B removes A's ticket (1 ticket
 *     left, and B has not been granted while H holds); H releases and B is
 *     granted within 5 s (B's expire is 0: never). Also A, B, C with B
 *     killed: the log reads "AC".
 *  5. A stopped waiter: H holds, A (expire 0) and B (expire 1 s) queue, A is
 *     SIGSTOPped, H releases: B is granted, but not before A's ticket is
 *     1 s old (B's grant time, CLOCK_REALTIME, minus the ticket's mtime read
 *     while A is stopped); A is then SIGCONTed and still gets the lock (it
 *     queues again): log "BA", both exit 0. And a live waiter keeps its
 *     place whatever the expire of those behind: A (expire 0, head) and B
 *     (expire 1 s) wait 2.5 s behind H; the log must read "AB" (the length
 *     of that wait only decides whether the check means anything, never
 *     whether it passes).
 *  6. A timeout leaves the queue: H holds, A (timeout 0.3 s) queues (it
 *     draws a number from the counter `l-t=x+f`, whose size grows) and
 *     times out with LOCKING_E_LOCKER_FAILED; the queue directory is then
 *     gone. After H's release the lock directory holds nothing but `l-t=x`
 *     (kernel only), `l-t=x+f` and `~tmp` (mkdir only). Also a waiter timing
 *     out behind another (B, A) and ahead of another (A, B): one ticket is
 *     left, B is granted after H's release, and the queue is gone.
 *  7. At the end, no `+q` directory is left in any lock directory used.
 *
 * Built with -DFORCE_METHOD=LOCKING_METHOD_FAKE the loop runs FAKE, which
 * never excludes nor queues: the first waiter is granted while H holds the
 * lock, so every scenario fails (fast).
 *
 * Synchronisation is by polling the queue directory, the log file and
 * /proc, with generous bounds (20 s) that only detect hangs.
 */
#include "common.h"

#define NS "t"
#define OBJ "x"
#define ENTRY "l-t=x"
#define WAIT_S 20.0  /* the waiters' lock timeout */
#define BOUND_S 20.0 /* how long we wait for a state before giving up */
#define MAX_WAITERS 4
#define MAX_DIRS 256

static char *used_dirs[MAX_DIRS];
static int n_used;

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static char *new_lockdir(const char *tag)
{
    char *d = t_fresh_path(tag);
    if (n_used < MAX_DIRS)
        used_dirs[n_used++] = d;
    return d;
}

static char *qdir_of(const char *dir)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s+q", dir, ENTRY) < 0)
        FATAL("asprintf");
    return p;
}

static bool queue_exists(const char *dir)
{
    char *q = qdir_of(dir);
    struct stat st;
    bool e = lstat(q, &st) == 0;
    free(q);
    return e;
}

/* Number of `q.*` tickets in the queue directory (0 if there is none).
 * If `oldest` is given, it receives the name of the smallest ticket. */
static int count_tickets(const char *dir, char *oldest, size_t oldest_size)
{
    char *q = qdir_of(dir);
    DIR *d = opendir(q);
    free(q);
    if (oldest && oldest_size)
        oldest[0] = '\0';
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "q.", 2) != 0)
            continue;
        n++;
        if (oldest && (oldest[0] == '\0' || strcmp(e->d_name, oldest) < 0))
            snprintf(oldest, oldest_size, "%s", e->d_name);
    }
    closedir(d);
    return n;
}

static void log_append(const char *log, char c)
{
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        FATAL("open %s", log);
    if (write(fd, &c, 1) != 1)
        FATAL("write %s", log);
    close(fd);
}

/* The log's content ("" if missing). */
static void log_read(const char *log, char *buf, size_t size)
{
    buf[0] = '\0';
    int fd = open(log, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
}

static double realtime_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Where a waiter writes the CLOCK_REALTIME of its grant. */
static char *grant_file(const char *log, char letter)
{
    char *p = NULL;
    if (asprintf(&p, "%s.%c", log, letter) < 0)
        FATAL("asprintf");
    return p;
}

static double read_grant_time(const char *log, char letter)
{
    char *p = grant_file(log, letter);
    char buf[64];
    log_read(p, buf, sizeof buf);
    free(p);
    return buf[0] ? strtod(buf, NULL) : -1.0;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

typedef struct {
    char letter;
    int mode;       /* LOCKING_EXCLUSIVE or LOCKING_SHARED */
    double timeout; /* seconds */
    double expire;  /* seconds, 0 = never */
    int want;       /* LOCKING_OK, or LOCKING_E_LOCKER_FAILED */
} waiter;

static waiter excl(char letter)
{
    waiter w = { letter, LOCKING_EXCLUSIVE, WAIT_S, LOCKING_NEVER_EXPIRE, LOCKING_OK };
    return w;
}

static waiter shrd(char letter)
{
    waiter w = { letter, LOCKING_SHARED, WAIT_S, LOCKING_NEVER_EXPIRE, LOCKING_OK };
    return w;
}

/* A new process that acquires (ns "t", objname "x") in `dir`; when granted
 * it writes its grant time, appends its letter to `log` and releases at
 * once. Exclusive waiters use locker_lock (the Locker's timeout). */
static pid_t start_waiter(const char *dir, int m, const waiter *w, const char *log)
{
    pid_t pid = t_fork();
    if (pid != 0)
        return pid;
    Locker *l = t_locker(OBJ, dir, NS, w->timeout, w->expire, m);
    double t0 = t_now();
    int rc = w->mode == LOCKING_EXCLUSIVE ? locker_lock(l)
                                          : locker_acquire(l, w->mode, w->timeout);
    double took = t_now() - t0;
    if (rc == LOCKING_OK) {
        char *g = grant_file(log, w->letter);
        char buf[64];
        snprintf(buf, sizeof buf, "%.6f\n", realtime_now());
        t_write_file(g, buf);
        free(g);
        log_append(log, w->letter);
        CHECK_RC_QUIET(locker_unlock(l), LOCKING_OK);
    }
    t_report_quiet(rc == w->want, __FILE__, __LINE__,
                   "waiter %c (%s, timeout %g, expire %g): %s after %.3f s, want %s; "
                   "last_error=\"%s\"",
                   w->letter, w->mode == LOCKING_SHARED ? "shared" : "exclusive",
                   w->timeout, w->expire, t_rc_name(rc), took, t_rc_name(w->want),
                   rc < 0 ? locking_last_error() : "");
    if (rc == LOCKING_E_LOCKER_FAILED)
        CHECK_QUIET(took >= w->timeout - 0.05 && took < w->timeout + 10.0,
                    "waiter %c timed out after %.3f s (timeout %g)", w->letter, took,
                    w->timeout);
    locker_free(l);
    t_child_exit();
    return 0;
}

/* Reap a child within `bound` seconds (else kill it): true if it exited 0. */
static bool reap(pid_t pid, const char *what, double bound)
{
    double deadline = t_now() + bound;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st))
                return CHECK_QUIET(WEXITSTATUS(st) == 0, "%s (pid %ld) exited with status %d",
                                   what, (long)pid, WEXITSTATUS(st));
            return CHECK(false, "%s (pid %ld) killed by signal %d", what, (long)pid,
                         WIFSIGNALED(st) ? WTERMSIG(st) : -1);
        }
        if (r < 0 && errno != EINTR)
            return CHECK(false, "waitpid(%s): %s", what, strerror(errno));
        if (t_now() >= deadline) {
            CHECK(false, "%s (pid %ld) still running after %g s: killed", what, (long)pid,
                  bound);
            t_kill_reap(pid);
            return false;
        }
        t_sleep(0.002);
    }
}

static void kill_all(pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        t_kill_reap(pids[i]);
        pids[i] = 0;
    }
}

/* Wait until the queue holds `n` tickets. Fails fast if the waiter just
 * started (`pid`, `letter`) was granted (its letter is in the log: it got
 * the lock while H holds it) or ended. */
static bool wait_tickets(const char *dir, int n, const char *log, pid_t pid, char letter)
{
    double t0 = t_now();
    for (;;) {
        int k = count_tickets(dir, NULL, 0);
        if (k >= n)
            return CHECK_QUIET(k == n, "%d tickets in the queue, want %d", k, n);
        char got[64];
        log_read(log, got, sizeof got);
        if (strchr(got, letter))
            return CHECK(false, "waiter %c was granted the lock while another holds it "
                         "(log \"%s\", %d tickets queued)", letter, got, k);
        char s = t_proc_state(pid);
        if (s == 'Z' || s == 0)
            return CHECK(false, "waiter %c (pid %ld) ended before its ticket appeared "
                         "(%d of %d tickets)", letter, (long)pid, k, n);
        if (t_now() - t0 > BOUND_S)
            return CHECK(false, "waiter %c: %d tickets after %g s, want %d", letter, k,
                         BOUND_S, n);
        t_sleep(0.001);
    }
}

/* Wait until the log holds at least `n` letters; returns the time waited,
 * or -1 after `bound` seconds. */
static double wait_log(const char *log, size_t n, double bound)
{
    double t0 = t_now();
    for (;;) {
        char got[64];
        log_read(log, got, sizeof got);
        if (strlen(got) >= n)
            return t_now() - t0;
        if (t_now() - t0 > bound)
            return -1.0;
        t_sleep(0.001);
    }
}

/* Start the waiters one at a time, each once the previous one's ticket is
 * visible. Returns the number started (all of them on success). */
static int queue_up(const char *dir, int m, const waiter *ws, int n, const char *log,
                    pid_t *pids, int already)
{
    for (int i = 0; i < n; i++) {
        pids[i] = start_waiter(dir, m, &ws[i], log);
        if (!wait_tickets(dir, already + i + 1, log, pids[i], ws[i].letter))
            return i + 1;
    }
    return n;
}

/* H: a Locker that holds (ns "t", objname "x") exclusive in this process. */
static Locker *hold(const char *dir, int m)
{
    Locker *h = t_locker(OBJ, dir, NS, WAIT_S, LOCKING_NEVER_EXPIRE, m);
    if (!CHECK_RC_QUIET(locker_lock(h), LOCKING_OK))
        FATAL("H cannot lock a fresh name");
    return h;
}

/* Does `log` match `pat`, where "[..]" is a group whose letters may come in
 * any order? */
static bool log_matches(const char *log, const char *pat)
{
    const char *l = log;
    for (const char *p = pat; *p; p++) {
        if (*p != '[') {
            if (*l++ != *p)
                return false;
            continue;
        }
        const char *end = strchr(p, ']');
        size_t k = (size_t)(end - p - 1);
        if (strlen(l) < k)
            return false;
        for (size_t i = 0; i < k; i++)
            if (memchr(p + 1, l[i], k) == NULL || memchr(l, p[1 + i], k) == NULL)
                return false;
        l += k;
        p = end;
    }
    return *l == '\0';
}

/* The lock directory holds nothing but the entry (kernel), `+f` and `~tmp`
 * (mkdir). */
static void check_clean(const char *dir, int m, const char *what)
{
    DIR *d = opendir(dir);
    if (!CHECK(d != NULL, "%s: open lock directory %s", what, dir))
        return;
    char extra[1024] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, ".."))
            continue;
        if (!strcmp(n, ENTRY "+f"))
            continue;
        if (!strcmp(n, ENTRY) && m == LOCKING_METHOD_KERNEL)
            continue;
        if (!strcmp(n, "~tmp") && m == LOCKING_METHOD_MKDIR)
            continue;
        size_t len = strlen(extra);
        snprintf(extra + len, sizeof extra - len, "%s%s", len ? ", " : "", n);
    }
    closedir(d);
    CHECK(extra[0] == '\0', "%s: nothing is left in the lock directory but the entry "
          "(kernel), +f and ~tmp (mkdir); extra: [%s]", what, extra);
}

/* ------------------------------------------------------------------ */
/* 1. FIFO                                                             */

static void fifo_round(int m, const char *order)
{
    char *dir = new_lockdir("fifo");
    char *log = t_fresh_path("fifo-log");
    int n = (int)strlen(order);
    waiter ws[MAX_WAITERS];
    pid_t pids[MAX_WAITERS] = { 0 };
    for (int i = 0; i < n; i++)
        ws[i] = excl(order[i]);
    Locker *h = hold(dir, m);
    int started = queue_up(dir, m, ws, n, log, pids, 0);
    if (started < n) {
        locker_unlock(h);
        kill_all(pids, started);
        goto out;
    }
    CHECK_RC_QUIET(locker_unlock(h), LOCKING_OK);
    wait_log(log, (size_t)n, BOUND_S);
    for (int i = 0; i < n; i++)
        reap(pids[i], "FIFO waiter", BOUND_S + 10);
    char got[64];
    log_read(log, got, sizeof got);
    CHECK(strcmp(got, order) == 0, "FIFO: waiters queued in the order %s were granted in "
          "the order \"%s\"", order, got);
    CHECK(!queue_exists(dir), "FIFO %s: the queue directory is gone once all have left",
          order);
out:
    locker_free(h);
    free(log);
}

static void fifo(int m)
{
    static const char *orders[] = { "ABC", "CBA", "BAC", "ACB", "CAB", "DBCA" };
    for (size_t i = 0; i < sizeof orders / sizeof orders[0]; i++)
        fifo_round(m, orders[i]);
}

/* ------------------------------------------------------------------ */
/* 2. a returning holder does not barge                                */

static void no_barging_round(int m, const char *order)
{
    char *dir = new_lockdir("barge");
    char *log = t_fresh_path("barge-log");
    int n = (int)strlen(order);
    waiter ws[MAX_WAITERS];
    pid_t pids[MAX_WAITERS] = { 0 };
    for (int i = 0; i < n; i++)
        ws[i] = excl(order[i]);
    Locker *h = hold(dir, m);
    int started = queue_up(dir, m, ws, n, log, pids, 0);
    if (started < n) {
        locker_unlock(h);
        kill_all(pids, started);
        goto out;
    }
    CHECK_RC_QUIET(locker_unlock(h), LOCKING_OK);
    int rc = locker_lock(h);
    if (rc == LOCKING_OK) {
        log_append(log, 'H');
        CHECK_RC_QUIET(locker_unlock(h), LOCKING_OK);
    }
    CHECK(rc == LOCKING_OK, "H locks again at once after its release: %s", t_rc_name(rc));
    wait_log(log, (size_t)n + 1, BOUND_S);
    for (int i = 0; i < n; i++)
        reap(pids[i], "waiter", BOUND_S + 10);
    char got[64], want[64];
    log_read(log, got, sizeof got);
    snprintf(want, sizeof want, "%sH", order);
    CHECK(strcmp(got, want) == 0, "no barging: H released and locked again at once while "
          "%s waited: grants \"%s\", want \"%s\"", order, got, want);
    CHECK(!queue_exists(dir), "no barging %s: the queue directory is gone", order);
out:
    locker_free(h);
    free(log);
}

static void no_barging(int m)
{
    no_barging_round(m, "A");
    no_barging_round(m, "AB");
    no_barging_round(m, "A");
}

/* ------------------------------------------------------------------ */
/* 3. shared and exclusive in order                                    */

static void mixed_round(int m, const waiter *ws, int n, const char *pattern)
{
    char *dir = new_lockdir("mixed");
    char *log = t_fresh_path("mixed-log");
    pid_t pids[MAX_WAITERS] = { 0 };
    char order[MAX_WAITERS + 1] = "";
    for (int i = 0; i < n; i++) {
        order[i] = ws[i].letter;
        order[i + 1] = '\0';
    }
    Locker *h = hold(dir, m);
    int started = queue_up(dir, m, ws, n, log, pids, 0);
    if (started < n) {
        locker_unlock(h);
        kill_all(pids, started);
        goto out;
    }
    CHECK_RC_QUIET(locker_unlock(h), LOCKING_OK);
    wait_log(log, (size_t)n, BOUND_S);
    for (int i = 0; i < n; i++)
        reap(pids[i], "waiter", BOUND_S + 10);
    char got[64];
    log_read(log, got, sizeof got);
    char modes[MAX_WAITERS * 3 + 1] = "";
    for (int i = 0; i < n; i++) {
        size_t len = strlen(modes);
        snprintf(modes + len, sizeof modes - len, "%c%s ", ws[i].letter,
                 ws[i].mode == LOCKING_SHARED ? "=s" : "=x");
    }
    CHECK(log_matches(got, pattern), "shared/exclusive in order: queued %s(in this order): "
          "grants \"%s\", want \"%s\"", modes, got, pattern);
    CHECK(!queue_exists(dir), "shared/exclusive %s: the queue directory is gone", order);
out:
    locker_free(h);
    free(log);
}

static void mixed(int m)
{
    waiter a[] = { shrd('1'), excl('W'), shrd('2') };
    mixed_round(m, a, 3, "1W2");
    waiter b[] = { excl('X'), shrd('a'), shrd('b'), excl('Y') };
    mixed_round(m, b, 4, "X[ab]Y");
    mixed_round(m, a, 3, "1W2");
}

/* ------------------------------------------------------------------ */
/* 4. a dead waiter is skipped at once                                 */

static void dead_round(int m, const char *order, int victim)
{
    char *dir = new_lockdir("dead");
    char *log = t_fresh_path("dead-log");
    int n = (int)strlen(order);
    waiter ws[MAX_WAITERS];
    pid_t pids[MAX_WAITERS] = { 0 };
    for (int i = 0; i < n; i++)
        ws[i] = excl(order[i]);
    Locker *h = hold(dir, m);
    int started = queue_up(dir, m, ws, n, log, pids, 0);
    if (started < n) {
        locker_unlock(h);
        kill_all(pids, started);
        goto out;
    }
    kill(pids[victim], SIGKILL);
    int st = 0;
    while (waitpid(pids[victim], &st, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "waiter %c SIGKILLed and reaped",
          order[victim]);
    pids[victim] = 0;
    /* the one behind it removes its ticket at once */
    double t0 = t_now();
    int k = n;
    while ((k = count_tickets(dir, NULL, 0)) > n - 1 && t_now() - t0 < 5.0)
        t_sleep(0.001);
    CHECK(k == n - 1, "the dead waiter's ticket is removed while H holds: %d tickets "
          "after %.3f s, want %d", k, t_now() - t0, n - 1);
    char got[64];
    log_read(log, got, sizeof got);
    CHECK(got[0] == '\0', "nobody granted while H holds (log \"%s\")", got);
    CHECK_RC_QUIET(locker_unlock(h), LOCKING_OK);
    double waited = wait_log(log, (size_t)n - 1, 5.0);
    CHECK(waited >= 0, "after H's release the live waiters are granted within 5 s "
          "(waited %.3f s; expire 0 everywhere)", waited);
    for (int i = 0; i < n; i++)
        if (pids[i])
            reap(pids[i], "waiter", BOUND_S + 10);
    char want[MAX_WAITERS + 1];
    int j = 0;
    for (int i = 0; i < n; i++)
        if (i != victim)
            want[j++] = order[i];
    want[j] = '\0';
    log_read(log, got, sizeof got);
    CHECK(strcmp(got, want) == 0, "dead waiter %c of %s skipped: grants \"%s\", want \"%s\"",
          order[victim], order, got, want);
    CHECK(!queue_exists(dir), "dead waiter: the queue directory is gone at the end");
out:
    locker_free(h);
    free(log);
}

static void dead_waiter(int m)
{
    dead_round(m, "AB", 0);
    dead_round(m, "ABC", 1);
    dead_round(m, "ABC", 0);
}

/* ------------------------------------------------------------------ */
/* 5. a stopped waiter                                                 */

static void stopped_waiter(int m)
{
    char *dir = new_lockdir("stopped");
    char *log = t_fresh_path("stopped-log");
    waiter ws[2] = { excl('A'), excl('B') };
    ws[1].expire = 1.0;
    pid_t pids[2] = { 0, 0 };
    Locker *h = hold(dir, m);
    int started = queue_up(dir, m, ws, 2, log, pids, 0);
    if (started < 2) {
        locker_unlock(h);
        kill_all(pids, started);
        goto out;
    }
    if (kill(pids[0], SIGSTOP) != 0)
        FATAL("SIGSTOP");
    int st = 0;
    pid_t r;
    do {
        r = waitpid(pids[0], &st, WUNTRACED);
    } while (r < 0 && errno == EINTR);
    if (r != pids[0] || !WIFSTOPPED(st))
        FATAL("waiter A did not stop");
    double t_stop = t_now();
    /* A's ticket (the smaller number) and its age, now that A cannot
     * refresh it */
    char oldest[256], path[PATH_MAX + 300];
    count_tickets(dir, oldest, sizeof oldest);
    char *q = qdir_of(dir);
    snprintf(path, sizeof path, "%s/%s", q, oldest);
    free(q);
    struct stat tst;
    bool have_mtime = oldest[0] && stat(path, &tst) == 0;
    CHECK(have_mtime, "A's ticket %s is there while A is stopped", oldest);
    double mtime = have_mtime ? (double)tst.st_mtim.tv_sec + (double)tst.st_mtim.tv_nsec / 1e9
                              : 0.0;
    CHECK_RC(locker_unlock(h), LOCKING_OK);
    double waited = wait_log(log, 1, BOUND_S);
    char got[64];
    log_read(log, got, sizeof got);
    double granted = read_grant_time(log, 'B');
    CHECK(strcmp(got, "B") == 0 && waited >= 0, "B (expire 1 s) is granted while A is "
          "stopped: log \"%s\", %.3f s after the SIGSTOP", got, t_now() - t_stop);
    if (have_mtime && granted > 0)
        CHECK(granted - mtime >= 0.99, "B passed A only once A's ticket was 1 s old: "
              "granted %.3f s after the ticket's mtime", granted - mtime);
    CHECK(count_tickets(dir, NULL, 0) == 0, "A's ticket was removed (no ticket left)");
    kill(pids[0], SIGCONT);
    waited = wait_log(log, 2, BOUND_S);
    log_read(log, got, sizeof got);
    CHECK(strcmp(got, "BA") == 0, "continued, A queues again and is granted: log \"%s\", "
          "want \"BA\"", got);
    reap(pids[0], "stopped waiter A", BOUND_S + 10);
    reap(pids[1], "waiter B", BOUND_S + 10);
    CHECK(!queue_exists(dir), "stopped waiter: the queue directory is gone at the end");
out:
    locker_free(h);
    free(log);
}

/* A live waiter keeps its place even when it waits longer than the expire
 * of the one behind it (it refreshes its ticket). */
static void live_waiter_keeps_place(int m)
{
    char *dir = new_lockdir("live");
    char *log = t_fresh_path("live-log");
    waiter ws[2] = { excl('A'), excl('B') };
    ws[1].expire = 1.0;
    pid_t pids[2] = { 0, 0 };
    Locker *h = hold(dir, m);
    int started = queue_up(dir, m, ws, 2, log, pids, 0);
    if (started < 2) {
        locker_unlock(h);
        kill_all(pids, started);
        goto out;
    }
    /* Only A (expire 0) judges H; B (expire 1 s) judges A's ticket. The
     * length of this wait decides whether the check means anything, not
     * whether it passes. */
    t_sleep(2.5);
    char got[64];
    log_read(log, got, sizeof got);
    int k = count_tickets(dir, NULL, 0);
    CHECK(got[0] == '\0' && k == 2, "2.5 s behind H: nobody granted (log \"%s\"), "
          "both tickets there (%d)", got, k);
    CHECK_RC(locker_unlock(h), LOCKING_OK);
    wait_log(log, 2, BOUND_S);
    reap(pids[0], "waiter A", BOUND_S + 10);
    reap(pids[1], "waiter B", BOUND_S + 10);
    log_read(log, got, sizeof got);
    CHECK(strcmp(got, "AB") == 0, "a live waiter keeps its place behind a 2.5 s holder "
          "although B's expire is 1 s: log \"%s\", want \"AB\"", got);
    CHECK(!queue_exists(dir), "live waiter: the queue directory is gone at the end");
out:
    locker_free(h);
    free(log);
}

/* ------------------------------------------------------------------ */
/* 6. a timeout leaves the queue                                       */

static void timeout_alone(int m)
{
    char *dir = new_lockdir("timeout");
    char *log = t_fresh_path("timeout-log");
    char *counter = NULL;
    if (asprintf(&counter, "%s/%s+f", dir, ENTRY) < 0)
        FATAL("asprintf");
    Locker *h = hold(dir, m);
    off_t before = file_size(counter);
    waiter w = excl('A');
    w.timeout = 0.3;
    w.want = LOCKING_E_LOCKER_FAILED;
    pid_t pid = start_waiter(dir, m, &w, log);
    int seen = 0;
    while (t_proc_state(pid) != 'Z' && t_proc_state(pid) != 0) {
        int k = count_tickets(dir, NULL, 0);
        if (k > seen)
            seen = k;
        t_sleep(0.001);
    }
    bool ok = reap(pid, "waiter A (timeout 0.3 s)", BOUND_S);
    CHECK(ok, "A (timeout 0.3 s) times out with LOCKING_E_LOCKER_FAILED while H holds");
    t_note("A's ticket was %sseen while it waited", seen ? "" : "not ");
    off_t after = file_size(counter);
    CHECK(after > before, "A queued: it drew a ticket number (%s grew from %lld to %lld "
          "bytes)", ENTRY "+f", (long long)before, (long long)after);
    CHECK(!queue_exists(dir), "A timed out alone: the queue directory is gone (H still "
          "holds)");
    CHECK_RC_QUIET(locker_unlock(h), LOCKING_OK);
    check_clean(dir, m, "after the timeout and H's release");
    locker_free(h);
    free(counter);
    free(log);
}

/* `order` has two letters; the one at `quitter` times out (0.5 s), the
 * other waits (20 s) and is granted after H's release. */
static void timeout_with_other(int m, const char *order, int quitter)
{
    char *dir = new_lockdir("timeout2");
    char *log = t_fresh_path("timeout2-log");
    waiter ws[2] = { excl(order[0]), excl(order[1]) };
    ws[quitter].timeout = 0.5;
    ws[quitter].want = LOCKING_E_LOCKER_FAILED;
    pid_t pids[2] = { 0, 0 };
    Locker *h = hold(dir, m);
    int started = queue_up(dir, m, ws, 2, log, pids, 0);
    if (started < 2) {
        locker_unlock(h);
        kill_all(pids, started);
        goto out;
    }
    bool ok = reap(pids[quitter], "waiter that times out", BOUND_S);
    pids[quitter] = 0;
    CHECK(ok, "%c (timeout 0.5 s, %s of %s) times out", order[quitter],
          quitter ? "behind the other" : "ahead", order);
    int k = count_tickets(dir, NULL, 0);
    CHECK(k == 1, "%c's ticket is gone, the other's stays: %d tickets, want 1",
          order[quitter], k);
    CHECK_RC_QUIET(locker_unlock(h), LOCKING_OK);
    wait_log(log, 1, BOUND_S);
    reap(pids[1 - quitter], "waiter", BOUND_S + 10);
    char got[64], want[2] = { order[1 - quitter], '\0' };
    log_read(log, got, sizeof got);
    CHECK(strcmp(got, want) == 0, "the remaining waiter is granted: log \"%s\", want "
          "\"%s\"", got, want);
    CHECK(!queue_exists(dir), "the queue directory is gone at the end");
    check_clean(dir, m, "after one timed out and the other was served");
out:
    locker_free(h);
    free(log);
}

static void timeouts(int m)
{
    timeout_alone(m);
    timeout_with_other(m, "BA", 1);
    timeout_with_other(m, "AB", 0);
}

/* ------------------------------------------------------------------ */
/* 7. nothing left                                                     */

static void nothing_left(void)
{
    int bad = 0;
    for (int i = 0; i < n_used; i++) {
        DIR *d = opendir(used_dirs[i]);
        if (d == NULL)
            continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t len = strlen(e->d_name);
            if (len >= 2 && strcmp(e->d_name + len - 2, "+q") == 0) {
                bad++;
                CHECK(false, "left over: %s/%s", used_dirs[i], e->d_name);
            }
        }
        closedir(d);
    }
    CHECK(bad == 0, "no +q directory left in the %d lock directories used", n_used);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    double t0 = t_now();
    FOR_EACH_REAL_METHOD(m) {
        double t1 = t_now();
        fifo(m);
        no_barging(m);
        mixed(m);
        dead_waiter(m);
        stopped_waiter(m);
        live_waiter_keeps_place(m);
        timeouts(m);
        t_note("%.2f s", t_now() - t1);
    }
    nothing_left();
    for (int i = 0; i < n_used; i++)
        free(used_dirs[i]);
    int rc = t_done();
    int checks = atomic_load(&t_checks), failed = atomic_load(&t_failures);
    printf("test_queue: %d passed, %d failed (%.2f s)\n", checks - failed, failed,
           t_now() - t0);
    return rc;
}
