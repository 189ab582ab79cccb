/*
 * The postgres method (LOCKING_METHOD_POSTGRES) from C. Run by
 * tests/postgres.rs against a PostgreSQL server that the test starts; not
 * by tests/c_tests.rs, which has no server (hence no test_ prefix).
 *
 *   pg_client suite SCRATCH CONNINFO
 *       the C API checks, one "ok"/"FAIL" line each (common.h);
 *   pg_client new CONNINFO TIMEOUT
 *       locker_new only; prints "new <code> <locking_last_error()>";
 *   pg_client count CONNINFO NAME COUNTER FENCE N
 *       N times: lock NAME, check that nobody else is inside (a marker
 *       file COUNTER.inside made with O_EXCL), check that the fencing token
 *       is above the one in the file FENCE (a fenced store) and write it
 *       there, increment the number in COUNTER non-atomically, unlock;
 *   pg_client chaos CONNINFO NAME DIR EXPIRE
 *       a worker of the chaos run (tests/postgres_net.rs), until the file
 *       DIR/stop exists: lock NAME (waiting at most 2 s), draw the fencing
 *       token, name itself in DIR/holder, read the value of the fenced
 *       store in DIR, work 10-50 ms, write the value + 1 back (both with
 *       the token: see store_op), remove DIR/holder, unlock. A read or
 *       write that the store refuses must be followed by LOCK_LOST from
 *       the unlock (else "FAIL"). Prints "refused TOKEN" and "lost TOKEN"
 *       as they happen, and at the end one line "done got=.. ...";
 *   pg_client gate lib|raw CONNINFO NAME|KEY
 *       takes the lock NAME (lib: liblocking, namespace "waiters") or the
 *       advisory lock KEY (raw: pg_advisory_lock through libpq), prints
 *       "held", and at a line on stdin prints "released <CLOCK_MONOTONIC>"
 *       and unlocks;
 *   pg_client waiter lib|raw CONNINFO NAME|KEY COUNTER
 *       connects, prints "ready", waits for the lock for ever, checks that
 *       nobody else is inside (COUNTER.inside), increments COUNTER, draws
 *       the fencing token (lib), unlocks; prints "got <called> <granted>
 *       <token>" (CLOCK_MONOTONIC seconds; token 0 for raw).
 *   pg_client hold CONNINFO NAME EXPIRE
 *       a holder driven through stdin, one command a line, each answered
 *       with one line "<command> <code> [detail]":
 *         lock exclusive|shared TIMEOUT, check, refresh, unlock, token,
 *         holder, forkfree (a child frees the inherited Locker and exits),
 *         free, exit.
 */
#include "common.h"

#include <dlfcn.h>
#include <sys/file.h>

static const char *rc_name(int rc)
{
    return rc == LOCKING_E_UNAVAILABLE ? "LOCKING_E_UNAVAILABLE" : t_rc_name(rc);
}

#define PG LOCKING_METHOD_POSTGRES

/* ------------------------------------------------------------------ */
/* suite                                                               */

static const char *conninfo;

static Locker *pg_locker(const char *name, double timeout, double expire)
{
    return t_locker(name, conninfo, "c-suite", timeout, expire, PG);
}

static void exclusion_and_timeouts(void)
{
    Locker *a = pg_locker("excl", 0.0, LOCKING_NEVER_EXPIRE);
    Locker *b = pg_locker("excl", 0.0, LOCKING_NEVER_EXPIRE);
    CHECK_RC(locker_lock(a), LOCKING_OK);
    CHECK_RC(locker_lock(a), LOCKING_E_ALREADY_LOCKED);
    double t0 = t_now();
    CHECK_RC(locker_lock(b), LOCKING_E_LOCKER_FAILED);
    CHECK(t_now() - t0 < 1.0, "a try fails at once (%.3f s)", t_now() - t0);
    t0 = t_now();
    CHECK_RC(locker_acquire(b, LOCKING_EXCLUSIVE, 0.4), LOCKING_E_LOCKER_FAILED);
    double waited = t_now() - t0;
    CHECK(waited >= 0.35 && waited < 2.0, "a 0.4 s wait fails after about 0.4 s (%.3f s)",
          waited);
    CHECK_RC(locker_acquire(b, LOCKING_SHARED, 0.2), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_check(a), LOCKING_OK);
    CHECK_RC(locker_refresh(a), LOCKING_OK);
    CHECK_RC(locker_unlock(a), LOCKING_OK);
    CHECK_RC(locker_unlock(a), LOCKING_E_NOT_LOCKED);
    CHECK_RC(locker_check(a), LOCKING_E_NOT_LOCKED);
    uint64_t tok = 0;
    CHECK_RC(locker_fencing_token(a, &tok), LOCKING_E_NOT_LOCKED);
    CHECK_RC(locker_lock(b), LOCKING_OK);
    CHECK_RC(locker_unlock(b), LOCKING_OK);
    locker_free(a);
    locker_free(b);
}

static void shared_and_tokens(void)
{
    Locker *a = pg_locker("shared", 0.0, LOCKING_NEVER_EXPIRE);
    Locker *b = pg_locker("shared", 0.0, LOCKING_NEVER_EXPIRE);
    Locker *w = pg_locker("shared", 0.0, LOCKING_NEVER_EXPIRE);
    uint64_t ta = 0, tb = 0, tw = 0, again = 0;
    CHECK_RC(locker_acquire(a, LOCKING_SHARED, 0.0), LOCKING_OK);
    CHECK_RC(locker_acquire(b, LOCKING_SHARED, 1.0), LOCKING_OK);
    CHECK_RC(locker_fencing_token(a, &ta), LOCKING_OK);
    CHECK_RC(locker_fencing_token(b, &tb), LOCKING_OK);
    CHECK_RC(locker_fencing_token(b, &again), LOCKING_OK);
    CHECK(tb > ta && again == tb, "shared tokens %llu < %llu, stable (%llu)",
          (unsigned long long)ta, (unsigned long long)tb, (unsigned long long)again);
    CHECK_RC(locker_acquire(w, LOCKING_EXCLUSIVE, 0.0), LOCKING_E_LOCKER_FAILED);
    char buf[4096];
    int n = locker_holder(w, buf, sizeof buf);
    CHECK(n > 0 && strstr(buf, "mode=shared\n") && strstr(buf, "\n\nmode=shared\n"),
          "locker_holder lists two shared holders (%d): %s", n, n > 0 ? buf : "");
    CHECK_RC(locker_unlock(a), LOCKING_OK);
    CHECK_RC(locker_unlock(b), LOCKING_OK);
    CHECK_RC(locker_acquire(w, LOCKING_EXCLUSIVE, 1.0), LOCKING_OK);
    CHECK_RC(locker_fencing_token(w, &tw), LOCKING_OK);
    CHECK(tw > tb, "the writer's token %llu is above the readers' %llu",
          (unsigned long long)tw, (unsigned long long)tb);
    n = locker_holder(a, buf, sizeof buf);
    CHECK(n > 0 && strncmp(buf, "mode=exclusive\nmethod=postgres\n", 31) == 0 &&
              strstr(buf, "backend_pid=") && strstr(buf, "state=alive\n") &&
              strstr(buf, "age="),
          "locker_holder describes the writer: %s", n > 0 ? buf : "");
    char pidline[64];
    snprintf(pidline, sizeof pidline, "pid=%ld\n", (long)getpid());
    CHECK(n > 0 && strstr(buf, pidline), "the holder text names our pid (%s)", pidline);
    CHECK(locker_holder(a, NULL, 0) == n, "locker_holder(NULL, 0) gives the length");
    CHECK_RC(locker_unlock(w), LOCKING_OK);
    CHECK(locker_holder(a, buf, sizeof buf) == 0, "nobody holds it: 0");
    locker_free(a);
    locker_free(b);
    locker_free(w);
}

struct thread_arg {
    const char *counter;
    int rounds;
};

static void *thread_main(void *p)
{
    struct thread_arg *arg = p;
    Locker *l = pg_locker("threads", LOCKING_WAIT_FOREVER, LOCKING_NEVER_EXPIRE);
    for (int i = 0; i < arg->rounds; i++) {
        CHECK_RC_QUIET(locker_lock(l), LOCKING_OK);
        CHECK_QUIET(t_counter_incr(arg->counter), "increment");
        CHECK_RC_QUIET(locker_unlock(l), LOCKING_OK);
    }
    locker_free(l);
    return NULL;
}

static void threads(void)
{
    char *counter = t_path("counter-threads");
    t_counter_init(counter);
    enum { N = 4, ROUNDS = 25 };
    pthread_t th[N];
    struct thread_arg arg = { counter, ROUNDS };
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, thread_main, &arg);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    CHECK(t_counter_read(counter) == N * ROUNDS, "threads lost no update: %ld of %d",
          t_counter_read(counter), N * ROUNDS);
    free(counter);
}

static void fork_children(void)
{
    Locker *a = pg_locker("fork", 0.0, LOCKING_NEVER_EXPIRE);
    CHECK_RC(locker_lock(a), LOCKING_OK);
    pid_t pid = t_fork();
    if (pid == 0) {
        CHECK_RC(locker_check(a), LOCKING_E_NOT_LOCKED);
        CHECK_RC(locker_unlock(a), LOCKING_E_NOT_LOCKED);
        locker_free(a);
        Locker *c = pg_locker("fork", 0.0, LOCKING_NEVER_EXPIRE);
        CHECK_RC(locker_lock(c), LOCKING_E_LOCKER_FAILED);
        locker_free(c);
        t_child_exit();
    }
    t_wait_child(pid, "child that frees the inherited Locker");
    CHECK_RC(locker_check(a), LOCKING_OK);
    pid = t_fork();
    if (pid == 0)
        _exit(0); /* without touching it */
    t_wait_child(pid, "child that exits");
    pid = t_fork();
    if (pid == 0) {
        /* the inherited Locker may lock anew: a new acquisition of its own */
        CHECK_RC(locker_acquire(a, LOCKING_EXCLUSIVE, 0.0), LOCKING_E_LOCKER_FAILED);
        locker_free(a);
        t_child_exit();
    }
    t_wait_child(pid, "child that tries the inherited Locker");
    CHECK_RC(locker_check(a), LOCKING_OK);
    Locker *b = pg_locker("fork", 0.0, LOCKING_NEVER_EXPIRE);
    CHECK_RC(locker_lock(b), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_unlock(a), LOCKING_OK);
    CHECK_RC(locker_lock(b), LOCKING_OK);
    CHECK_RC(locker_unlock(b), LOCKING_OK);
    locker_free(a);
    locker_free(b);
}

static void open_locked(void)
{
    char *dir = t_fresh_dir("files");
    char *file = t_path("%s/f", dir + strlen(t_base) + 1);
    char *link = t_path("link-%ld", (long)getpid());
    if (symlink(dir, link) != 0)
        FATAL("symlink");
    char *via = NULL;
    if (asprintf(&via, "%s/../%s/f", dir, strrchr(link, '/') + 1) < 0)
        FATAL("asprintf");
    int fd = open_locked_fd(file, 1.0, conninfo, LOCKING_NEVER_EXPIRE, PG);
    CHECK(fd >= 0, "open_locked_fd with postgres: %d (%s)", fd, locking_last_error());
    int other = open_locked_fd(via, 0.0, conninfo, LOCKING_NEVER_EXPIRE, PG);
    CHECK(other == LOCKING_E_CANNOT_GET_LOCK,
          "another path to the file (%s) is excluded: %d (%s)", via, other,
          locking_last_error());
    if (other >= 0)
        close_locked_fd(other);
    CHECK_RC(open_locked_fd(file, 0.0, NULL, LOCKING_NEVER_EXPIRE, PG),
             LOCKING_E_INVALID_ARGUMENT);
    CHECK(strstr(locking_last_error(), "connection string") != NULL,
          "the message says a connection string is needed: %s", locking_last_error());
    if (fd >= 0) {
        CHECK(write(fd, "x", 1) == 1, "the descriptor is writable");
        CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    }
    fd = open_locked_fd(via, 0.0, conninfo, LOCKING_NEVER_EXPIRE, PG);
    CHECK(fd >= 0, "free again after close_locked_fd: %d", fd);
    if (fd >= 0)
        CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    unlink(link);
    free(via);
    free(link);
    free(file);
    free(dir);
}

static void bad_input(void)
{
    Locker *l = NULL;
    double t0 = t_now();
    CHECK_RC(locker_new("x", "host=127.0.0.1 port=1", NULL, 1.0, 0.0, PG, &l),
             LOCKING_E_UNAVAILABLE);
    CHECK(t_now() - t0 < 5.0, "a refused connection is reported in %.2f s", t_now() - t0);
    CHECK(l == NULL, "out is not written on failure");
    CHECK_RC(locker_new("x", "nosuchkeyword=1", NULL, 1.0, 0.0, PG, &l),
             LOCKING_E_INVALID_ARGUMENT);
    CHECK_RC(locker_new("", conninfo, NULL, 1.0, 0.0, PG, &l), LOCKING_E_INVALID_ARGUMENT);
    CHECK_RC(locker_new("x", NULL, NULL, 1.0, 0.0, PG, &l), LOCKING_E_INVALID_ARGUMENT);
    CHECK_RC(locker_new("x", conninfo, NULL, 1.0, 0.0, 5, &l), LOCKING_E_INVALID_ARGUMENT);
}

static int suite(char *scratch, const char *ci)
{
    /* t_init takes the scratch directory from argv[1] */
    char *targv[] = { (char *)"pg_client", scratch };
    t_init(2, targv);
    conninfo = ci;
    t_method_label = "postgres";
    exclusion_and_timeouts();
    shared_and_tokens();
    threads();
    fork_children();
    open_locked();
    bad_input();
    return t_done();
}

/* ------------------------------------------------------------------ */
/* count                                                               */

static long read_long(const char *path)
{
    long v = t_counter_read(path);
    return v < 0 ? 0 : v;
}

static int count(char **argv)
{
    const char *ci = argv[2], *name = argv[3], *counter = argv[4], *fence = argv[5];
    int n = atoi(argv[6]);
    char *inside = NULL;
    if (asprintf(&inside, "%s.inside", counter) < 0)
        return 2;
    Locker *l = NULL;
    int rc = locker_new(name, ci, "c-count", LOCKING_WAIT_FOREVER, 0.0, PG, &l);
    if (rc != LOCKING_OK) {
        printf("new %d %s\n", rc, locking_last_error());
        return 2;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if ((rc = locker_lock(l)) != LOCKING_OK) {
            printf("lock %d %s\n", rc, locking_last_error());
            return 2;
        }
        int in = open(inside, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (in < 0) {
            printf("FAIL overlap: %s exists (%s)\n", inside, strerror(errno));
            bad++;
        } else {
            close(in);
        }
        uint64_t tok = 0;
        if ((rc = locker_fencing_token(l, &tok)) != LOCKING_OK) {
            printf("token %d %s\n", rc, locking_last_error());
            return 2;
        }
        long seen = read_long(fence);
        if ((long)tok <= seen) {
            printf("FAIL token %llu not above %ld\n", (unsigned long long)tok, seen);
            bad++;
        }
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)tok);
        int fd = open(fence, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, buf, (size_t)len) != len)
            return 2;
        close(fd);
        if (!t_counter_incr(counter))
            return 2;
        if (in >= 0 && unlink(inside) != 0)
            return 2;
        if ((rc = locker_unlock(l)) != LOCKING_OK) {
            printf("unlock %d %s\n", rc, locking_last_error());
            return 2;
        }
    }
    locker_free(l);
    free(inside);
    printf("done %d\n", bad);
    return bad ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* hold                                                                */

static void answer(const char *cmd, int rc, const char *detail)
{
    printf("%s %d %s\n", cmd, rc, detail ? detail : "");
    fflush(stdout);
}

static int hold(char **argv)
{
    const char *ci = argv[2], *name = argv[3];
    double expire = atof(argv[4]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    Locker *l = NULL;
    int rc = locker_new(name, ci, "rust", 0.0, expire, PG, &l);
    answer("new", rc, rc == 0 ? "" : locking_last_error());
    if (rc != LOCKING_OK)
        return 2;
    char line[256];
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char cmd[32] = "", arg[32] = "";
        double t = 0;
        sscanf(line, "%31s %31s %lf", cmd, arg, &t);
        if (strcmp(cmd, "lock") == 0) {
            int mode = strcmp(arg, "shared") == 0 ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
            rc = locker_acquire(l, mode, t);
            answer(cmd, rc, rc == 0 ? "" : locking_last_error());
        } else if (strcmp(cmd, "check") == 0) {
            rc = locker_check(l);
            answer(cmd, rc, rc == 0 ? "" : locking_last_error());
        } else if (strcmp(cmd, "refresh") == 0) {
            rc = locker_refresh(l);
            answer(cmd, rc, rc == 0 ? "" : locking_last_error());
        } else if (strcmp(cmd, "unlock") == 0) {
            rc = locker_unlock(l);
            answer(cmd, rc, rc == 0 ? "" : locking_last_error());
        } else if (strcmp(cmd, "token") == 0) {
            uint64_t tok = 0;
            rc = locker_fencing_token(l, &tok);
            char buf[32];
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)tok);
            answer(cmd, rc, rc == 0 ? buf : locking_last_error());
        } else if (strcmp(cmd, "holder") == 0) {
            char buf[2048];
            rc = locker_holder(l, buf, sizeof buf);
            for (char *p = buf; rc > 0 && *p; p++)
                if (*p == '\n')
                    *p = ' ';
            answer(cmd, rc, rc > 0 ? buf : "");
        } else if (strcmp(cmd, "forkfree") == 0) {
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                locker_free(l);
                _exit(0);
            }
            int st = 0;
            waitpid(pid, &st, 0);
            answer(cmd, WIFEXITED(st) ? WEXITSTATUS(st) : -100, "");
        } else if (strcmp(cmd, "free") == 0) {
            locker_free(l);
            l = NULL;
            answer(cmd, 0, "");
        } else if (strcmp(cmd, "exit") == 0) {
            answer(cmd, 0, "");
            _exit(0);
        } else {
            answer(cmd, -100, "unknown command");
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* chaos: a worker writing through a fenced store                      */

/*
 * The fenced store: a value kept in DIR/log, an append-only log of every
 * operation, one line each, written under an flock of DIR/lock (separate
 * from the lock under test):
 *
 *     <op> <token> <max> <last_write> <value> <pid>
 *
 * with the store's state after the operation: <max>, the highest token it
 * has seen (read or written); <last_write>, the token of the last accepted
 * write; <value>. op: 'r' a read, accepted when token >= max (it raises
 * max to token: an older holder cannot write after a newer one has read);
 * 'w' a write, accepted when token >= max and token > last_write; 'R' and
 * 'W' a refused read and write (state unchanged). A line is one write(2)
 * to an O_APPEND descriptor, so a worker killed at any moment leaves
 * whole lines only; the state is the last line.
 */
struct store_state {
    unsigned long long max, last_w;
    long value;
};

static bool store_last(int fd, struct store_state *st)
{
    memset(st, 0, sizeof *st);
    off_t end = lseek(fd, 0, SEEK_END);
    if (end <= 0)
        return end == 0;
    char buf[512];
    off_t from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t n = pread(fd, buf, (size_t)(end - from), from);
    if (n <= 0 || buf[n - 1] != '\n')
        return false;
    buf[n - 1] = '\0';
    char *line = strrchr(buf, '\n');
    line = line ? line + 1 : buf;
    char op;
    unsigned long long tok;
    return sscanf(line, "%c %llu %llu %llu %ld", &op, &tok, &st->max, &st->last_w,
                  &st->value) == 5;
}

/* 1 accepted, 0 refused, -1 error. A read stores the value in *value; a
 * write writes *value. */
static int store_op(const char *dir, char op, uint64_t tok, long *value)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/lock", dir);
    int lk = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lk < 0 || flock(lk, LOCK_EX) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/log", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct store_state st;
    if (fd < 0 || !store_last(fd, &st)) {
        close(lk);
        return -1;
    }
    bool ok;
    if (op == 'r') {
        ok = tok >= st.max;
        if (ok) {
            st.max = tok;
            *value = st.value;
        }
    } else {
        ok = tok >= st.max && tok > st.last_w;
        if (ok) {
            st.max = tok;
            st.last_w = tok;
            st.value = *value;
        }
    }
    char line[160];
    int len = snprintf(line, sizeof line, "%c %llu %llu %llu %ld %ld\n",
                       ok ? op : (op == 'r' ? 'R' : 'W'), (unsigned long long)tok, st.max,
                       st.last_w, st.value, (long)getpid());
    bool written = write(fd, line, (size_t)len) == len;
    close(fd);
    close(lk);
    return written ? ok : -1;
}

static int chaos(char **argv)
{
    const char *ci = argv[2], *name = argv[3], *dir = argv[4];
    double expire = atof(argv[5]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    char stop[PATH_MAX], holder[PATH_MAX], tmp[PATH_MAX];
    snprintf(stop, sizeof stop, "%s/stop", dir);
    snprintf(holder, sizeof holder, "%s/holder", dir);
    snprintf(tmp, sizeof tmp, "%s/holder.%ld", dir, (long)getpid());
    srand((unsigned)getpid());
    Locker *l = NULL;
    int got = 0, accepted = 0, refused = 0, lost = 0, unavailable = 0, timeouts = 0, bad = 0;
    while (access(stop, F_OK) != 0) {
        int rc;
        if (l == NULL) {
            rc = locker_new(name, ci, "chaos", 2.0, expire, PG, &l);
            if (rc != LOCKING_OK) {
                if (rc != LOCKING_E_UNAVAILABLE) {
                    printf("FAIL new %d %s\n", rc, locking_last_error());
                    return 2;
                }
                l = NULL;
                unavailable++;
                t_sleep(0.1);
                continue;
            }
        }
        rc = locker_acquire(l, LOCKING_EXCLUSIVE, 2.0);
        if (rc == LOCKING_E_LOCKER_FAILED) {
            timeouts++;
            continue;
        }
        if (rc == LOCKING_E_UNAVAILABLE) {
            unavailable++;
            t_sleep(0.1);
            continue;
        }
        if (rc != LOCKING_OK) {
            printf("FAIL acquire %d %s\n", rc, locking_last_error());
            return 2;
        }
        got++;
        uint64_t tok = 0;
        rc = locker_fencing_token(l, &tok);
        if (rc != LOCKING_OK) {
            if (rc != LOCKING_E_LOCK_LOST) {
                printf("FAIL token %d %s\n", rc, locking_last_error());
                return 2;
            }
            lost++;
            printf("lost %llu\n", (unsigned long long)tok);
            locker_unlock(l);
            continue;
        }
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, buf, (size_t)len) != len || close(fd) != 0 ||
            rename(tmp, holder) != 0) {
            printf("FAIL holder file: %s\n", strerror(errno));
            return 2;
        }
        long v = 0;
        int ok = store_op(dir, 'r', tok, &v);
        if (ok == 1) {
            t_sleep((10 + rand() % 40) / 1000.0); /* the work */
            long next = v + 1;
            ok = store_op(dir, 'w', tok, &next);
            accepted += ok == 1;
        }
        if (ok < 0) {
            printf("FAIL store: %s\n", strerror(errno));
            return 2;
        }
        if (ok == 0) {
            refused++;
            printf("refused %llu\n", (unsigned long long)tok);
        }
        unlink(holder);
        rc = locker_unlock(l);
        if (rc == LOCKING_E_LOCK_LOST) {
            lost++;
            printf("lost %llu\n", (unsigned long long)tok);
        } else if (rc != LOCKING_OK) {
            printf("FAIL unlock %d %s\n", rc, locking_last_error());
            return 2;
        } else if (ok == 0) {
            /* the store saw a newer token while our session still held the
             * lock: two holders at once */
            printf("FAIL token %llu refused by the store, yet the unlock succeeded\n",
                   (unsigned long long)tok);
            bad++;
        }
    }
    locker_free(l);
    printf("done got=%d accepted=%d refused=%d lost=%d unavailable=%d timeouts=%d bad=%d\n",
           got, accepted, refused, lost, unavailable, timeouts, bad);
    return bad ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* gate and waiter: 100 waiters at once, liblocking and raw libpq        */

/* The few libpq functions the raw modes use (pq_dl.h). */
#include "pq_dl.h"

static PGconn *raw_connect(const char *ci)
{
    const char *why = pq_load();
    if (why != NULL) {
        printf("FAIL %s\n", why);
        exit(2);
    }
    PGconn *c = pq.connectdb(ci);
    if (c == NULL || pq.status(c) != CONNECTION_OK) {
        printf("FAIL connect: %s\n", c ? pq.error_message(c) : "out of memory");
        exit(2);
    }
    return c;
}

static void raw_exec(PGconn *c, const char *sql)
{
    PGresult *r = pq.exec(c, sql);
    int st = r ? pq.result_status(r) : -1;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        printf("FAIL %s: %s\n", sql, pq.error_message(c));
        exit(2);
    }
    pq.clear(r);
}

static int gate(char **argv)
{
    bool raw = strcmp(argv[2], "raw") == 0;
    const char *ci = argv[3], *name = argv[4];
    setvbuf(stdout, NULL, _IOLBF, 0);
    char sql[128];
    Locker *l = NULL;
    PGconn *c = NULL;
    if (raw) {
        c = raw_connect(ci);
        snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%s)", name);
        raw_exec(c, sql);
    } else {
        int rc = locker_new(name, ci, "waiters", LOCKING_WAIT_FOREVER, 0.0, PG, &l);
        if (rc == LOCKING_OK)
            rc = locker_lock(l);
        if (rc != LOCKING_OK) {
            printf("FAIL gate %d %s\n", rc, locking_last_error());
            return 2;
        }
    }
    printf("held\n");
    char line[64];
    if (fgets(line, sizeof line, stdin) == NULL)
        return 2;
    double t0 = t_now();
    if (raw) {
        snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%s)", name);
        raw_exec(c, sql);
        pq.finish(c);
    } else {
        int rc = locker_unlock(l);
        if (rc != LOCKING_OK) {
            printf("FAIL unlock %d %s\n", rc, locking_last_error());
            return 2;
        }
        locker_free(l);
    }
    printf("released %.6f\n", t0);
    return 0;
}

static int waiter(char **argv)
{
    bool raw = strcmp(argv[2], "raw") == 0;
    const char *ci = argv[3], *name = argv[4], *counter = argv[5];
    setvbuf(stdout, NULL, _IOLBF, 0);
    char inside[PATH_MAX], sql[128];
    snprintf(inside, sizeof inside, "%s.inside", counter);
    Locker *l = NULL;
    PGconn *c = NULL;
    if (raw) {
        c = raw_connect(ci);
    } else {
        int rc = locker_new(name, ci, "waiters", LOCKING_WAIT_FOREVER, 0.0, PG, &l);
        if (rc != LOCKING_OK) {
            printf("FAIL new %d %s\n", rc, locking_last_error());
            return 2;
        }
    }
    printf("ready\n");
    double called = t_now();
    if (raw) {
        snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%s)", name);
        raw_exec(c, sql);
    } else {
        int rc = locker_lock(l);
        if (rc != LOCKING_OK) {
            printf("FAIL lock %d %s\n", rc, locking_last_error());
            return 2;
        }
    }
    double granted = t_now();
    int bad = 0;
    int in = open(inside, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (in < 0) {
        printf("FAIL overlap: %s exists\n", inside);
        bad++;
    } else {
        close(in);
    }
    if (!t_counter_incr(counter)) {
        printf("FAIL counter\n");
        return 2;
    }
    uint64_t tok = 0;
    if (!raw) {
        int rc = locker_fencing_token(l, &tok);
        if (rc != LOCKING_OK) {
            printf("FAIL token %d %s\n", rc, locking_last_error());
            return 2;
        }
    }
    if (in >= 0)
        unlink(inside);
    if (raw) {
        snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%s)", name);
        raw_exec(c, sql);
        pq.finish(c);
    } else {
        int rc = locker_unlock(l);
        if (rc != LOCKING_OK) {
            printf("FAIL unlock %d %s\n", rc, locking_last_error());
            return 2;
        }
        locker_free(l);
    }
    printf("got %.6f %.6f %llu\n", called, granted, (unsigned long long)tok);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "suite") == 0)
        return suite(argv[2], argv[3]);
    if (argc >= 4 && strcmp(argv[1], "new") == 0) {
        Locker *l = NULL;
        double t0 = t_now();
        int rc = locker_new("probe", argv[2], NULL, atof(argv[3]), 0.0, PG, &l);
        printf("new %d %.3f %s %s\n", rc, t_now() - t0, rc_name(rc), locking_last_error());
        locker_free(l);
        return 0;
    }
    if (argc >= 7 && strcmp(argv[1], "count") == 0)
        return count(argv);
    if (argc >= 5 && strcmp(argv[1], "hold") == 0)
        return hold(argv);
    if (argc >= 6 && strcmp(argv[1], "chaos") == 0)
        return chaos(argv);
    if (argc >= 5 && strcmp(argv[1], "gate") == 0)
        return gate(argv);
    if (argc >= 6 && strcmp(argv[1], "waiter") == 0)
        return waiter(argv);
    fprintf(stderr, "usage: see the comment at the top of pg_client.c\n");
    return 64;
}
