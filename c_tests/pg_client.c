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
 *       N times: lock NAME, check that the fencing token is above the one
 *       in the file FENCE (a fenced store) and write it there, increment
 *       the number in COUNTER non-atomically, unlock;
 *   pg_client hold CONNINFO NAME EXPIRE
 *       a holder driven through stdin, one command a line, each answered
 *       with one line "<command> <code> [detail]":
 *         lock exclusive|shared TIMEOUT, check, refresh, unlock, token,
 *         holder, forkfree (a child frees the inherited Locker and exits),
 *         free, exit.
 */
#include "common.h"

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
        if ((rc = locker_unlock(l)) != LOCKING_OK) {
            printf("unlock %d %s\n", rc, locking_last_error());
            return 2;
        }
    }
    locker_free(l);
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
    fprintf(stderr, "usage: see the comment at the top of pg_client.c\n");
    return 64;
}
