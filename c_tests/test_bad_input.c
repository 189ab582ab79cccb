/*
 * Bad input gets a clear negative code and a message, never a crash:
 *   - locker_new: NULL objname / lockdir / out, empty objname, unknown
 *     method, NaN timeout or expire -> LOCKING_E_INVALID_ARGUMENT, *out
 *     untouched; a lockdir that is (or runs through) a regular file ->
 *     LOCKING_E_IO with errno ENOTDIR/EEXIST; an unwritable lockdir (as an
 *     unprivileged user) -> LOCKING_E_IO with errno EACCES;
 *   - NULL Locker to every function -> INVALID_ARGUMENT, locker_free(NULL)
 *     is a no-op;
 *   - open_locked_fd: NULL / empty filename, NaN timeout, unknown method ->
 *     INVALID_ARGUMENT; a directory -> a negative code;
 *   - locking_strerror: non-NULL, non-empty for every int tried, distinct
 *     for the defined codes;
 *   - huge and infinite timeouts / expires are accepted and behave (no
 *     overflow: infinity waits forever / never expires);
 *   - locking_last_error: "" in a fresh thread, non-empty after a failure,
 *     per thread; locking_version() is "0.2.0".
 * Every failing call must leave a non-empty locking_last_error().
 */
#include "common.h"

#include <float.h>
#include <grp.h>

static Locker *const SENTINEL = (Locker *)(uintptr_t)0x5e5e5e5e;

/* locker_new must fail with `want`, leave *out alone and set a message. */
#define CHECK_NEW_FAILS(want, obj, dir, ns, timeout, expire, method, what)    \
    do {                                                                      \
        Locker *out_ = SENTINEL;                                              \
        int rc_ = locker_new((obj), (dir), (ns), (timeout), (expire),         \
                             (method), &out_);                                \
        CHECK(rc_ == (want) && out_ == SENTINEL &&                            \
                  locking_last_error()[0] != '\0',                            \
              "locker_new with %s: %s (want %s), *out %s, last_error=\"%s\"", \
              (what), t_rc_name(rc_), t_rc_name(want),                        \
              out_ == SENTINEL ? "untouched" : "CHANGED",                     \
              locking_last_error());                                          \
        if (rc_ == LOCKING_OK && out_ != SENTINEL)                            \
            locker_free(out_);                                                \
    } while (0)

static void invalid_arguments(const char *dir)
{
    const int methods[] = { LOCKING_METHOD_MKDIR, LOCKING_METHOD_OPENCREATE,
                            LOCKING_METHOD_FAKE, LOCKING_METHOD_KERNEL };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int m = methods[i];
        t_method_label = t_method_name(m);
        CHECK_NEW_FAILS(LOCKING_E_INVALID_ARGUMENT, NULL, dir, "ns", 0.0, 0.0, m,
                        "NULL objname");
        CHECK_NEW_FAILS(LOCKING_E_INVALID_ARGUMENT, "x", NULL, "ns", 0.0, 0.0, m,
                        "NULL lockdir");
        CHECK_NEW_FAILS(LOCKING_E_INVALID_ARGUMENT, "", dir, "ns", 0.0, 0.0, m,
                        "empty objname");
        CHECK_NEW_FAILS(LOCKING_E_INVALID_ARGUMENT, "", dir, NULL, 0.0, 0.0, m,
                        "empty objname and NULL ns");
        CHECK_NEW_FAILS(LOCKING_E_INVALID_ARGUMENT, "x", dir, "ns", NAN, 0.0, m,
                        "NaN timeout");
        CHECK_NEW_FAILS(LOCKING_E_INVALID_ARGUMENT, "x", dir, "ns", 0.0, NAN, m,
                        "NaN expire");
        CHECK_NEW_FAILS(LOCKING_E_INVALID_ARGUMENT, "x", dir, "ns", -NAN, -NAN, m,
                        "-NaN timeout and expire");
        int rc = locker_new("x", dir, "ns", 0.0, 0.0, m, NULL);
        CHECK(rc == LOCKING_E_INVALID_ARGUMENT && locking_last_error()[0] != '\0',
              "locker_new with NULL out: %s", t_rc_name(rc));
        /* a valid call still works after all that */
        Locker *l = NULL;
        CHECK_RC(locker_new("x", dir, NULL, 0.0, 0.0, m, &l), LOCKING_OK);
        CHECK(l != NULL && l != SENTINEL, "*out set on success");
        locker_free(l);
    }
    t_method_label = "-";
    const int bad_methods[] = { 99, -1, 4, INT_MIN, INT_MAX };
    for (size_t i = 0; i < sizeof bad_methods / sizeof bad_methods[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "method %d", bad_methods[i]);
        CHECK_NEW_FAILS(LOCKING_E_INVALID_ARGUMENT, "x", dir, "ns", 0.0, 0.0,
                        bad_methods[i], what);
        char *target = t_path("bad-method-target-%zu", i);
        int fd = open_locked_fd(target, 0.0, dir, 0.0, bad_methods[i]);
        free(target);
        CHECK(fd == LOCKING_E_INVALID_ARGUMENT && locking_last_error()[0] != '\0',
              "open_locked_fd with %s: %s", what, t_rc_name(fd));
        if (fd >= 0)
            close_locked_fd(fd);
    }

    CHECK_RC(locker_lock(NULL), LOCKING_E_INVALID_ARGUMENT);
    CHECK_RC(locker_unlock(NULL), LOCKING_E_INVALID_ARGUMENT);
    CHECK_RC(locker_check(NULL), LOCKING_E_INVALID_ARGUMENT);
    CHECK_RC(locker_refresh(NULL), LOCKING_E_INVALID_ARGUMENT);
    locker_free(NULL);
    CHECK(1, "locker_free(NULL) is a no-op");

    char *file = t_path("%s", "open-target");
    CHECK_RC(open_locked_fd(NULL, 0.0, NULL, 0.0, LOCKING_METHOD_MKDIR),
             LOCKING_E_INVALID_ARGUMENT);
    CHECK_RC(open_locked_fd(NULL, 0.0, dir, 0.0, LOCKING_METHOD_KERNEL),
             LOCKING_E_INVALID_ARGUMENT);
    int fd = open_locked_fd("", 0.0, NULL, 0.0, LOCKING_METHOD_MKDIR);
    CHECK(fd < 0 && locking_last_error()[0] != '\0',
          "open_locked_fd(\"\") fails: %s", t_rc_name(fd));
    if (fd >= 0)
        close_locked_fd(fd);
    CHECK_RC(open_locked_fd(file, NAN, NULL, 0.0, LOCKING_METHOD_MKDIR),
             LOCKING_E_INVALID_ARGUMENT);
    CHECK_RC(open_locked_fd(file, 0.0, NULL, NAN, LOCKING_METHOD_OPENCREATE),
             LOCKING_E_INVALID_ARGUMENT);
    free(file);
}

static void open_directory(void)
{
    FOR_EACH_REAL_METHOD(m) {
        char *d = t_fresh_dir("a-directory");
        errno = 0;
        int fd = open_locked_fd(d, 0.0, NULL, 0.0, m);
        int e = errno;
        CHECK(fd < 0 && fd != LOCKING_E_INTERNAL && locking_last_error()[0] != '\0',
              "open_locked_fd on a directory: %s (errno %d %s), last_error=\"%s\"",
              t_rc_name(fd), e, strerror(e), locking_last_error());
        if (fd >= 0)
            close_locked_fd(fd);
        free(d);
    }
}

/* The first failing step of locker_new + locker_lock: its code and errno. */
static int new_and_lock(const char *obj, const char *dir, int m, int *err)
{
    Locker *l = NULL;
    errno = 0;
    int rc = locker_new(obj, dir, NULL, 0.0, 0.0, m, &l);
    *err = errno;
    if (rc != LOCKING_OK)
        return rc;
    errno = 0;
    rc = locker_lock(l);
    *err = errno;
    if (rc == LOCKING_OK)
        locker_unlock(l);
    locker_free(l);
    return rc;
}

static void lockdir_is_a_file(void)
{
    FOR_EACH_REAL_METHOD(m) {
        char *file = t_fresh_path("regular-file");
        t_write_file(file, "not a directory\n");
        int e = 0;
        int rc = new_and_lock("x", file, m, &e);
        CHECK(rc == LOCKING_E_IO && (e == ENOTDIR || e == EEXIST) &&
                  locking_last_error()[0] != '\0',
              "lockdir is a regular file: %s, errno %d (%s), last_error=\"%s\"",
              t_rc_name(rc), e, strerror(e), locking_last_error());
        char *below = NULL;
        if (asprintf(&below, "%s/sub", file) < 0)
            FATAL("asprintf");
        rc = new_and_lock("x", below, m, &e);
        CHECK(rc == LOCKING_E_IO && e == ENOTDIR && locking_last_error()[0] != '\0',
              "lockdir below a regular file: %s, errno %d (%s), last_error=\"%s\"",
              t_rc_name(rc), e, strerror(e), locking_last_error());
        free(below);
        free(file);
    }
}

/* As user 65534, a root-owned 0555 lockdir (and a missing one below it) must
 * give LOCKING_E_IO with errno EACCES. */
static void unwritable_lockdir(void)
{
    char *ro = t_fresh_dir("read-only");
    char *ro_missing = NULL, *ro_file = NULL;
    if (asprintf(&ro_missing, "%s/missing/lockdir", ro) < 0 ||
        asprintf(&ro_file, "%s/newfile", ro) < 0)
        FATAL("asprintf");
    if (chmod(ro, 0555) != 0)
        FATAL("chmod");
    pid_t pid = t_fork();
    if (pid == 0) {
        if (getuid() != 0) {
            t_note("SKIP unwritable lockdir: not running as root (uid %ld), "
                   "cannot switch to an unprivileged user", (long)getuid());
            t_child_exit();
        }
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
            t_note("SKIP unwritable lockdir: cannot become uid/gid 65534: %s",
                   strerror(errno));
            t_child_exit();
        }
        struct stat st;
        if (stat(ro, &st) != 0 || access(ro, W_OK) == 0) {
            t_note("SKIP unwritable lockdir: uid 65534 cannot reach %s or can "
                   "write to it (%s)", ro, strerror(errno));
            t_child_exit();
        }
        FOR_EACH_REAL_METHOD(m) {
            int e = 0;
            int rc = new_and_lock("x", ro, m, &e);
            CHECK(rc == LOCKING_E_IO && e == EACCES && locking_last_error()[0] != '\0',
                  "uid 65534, lockdir root-owned 0555: %s, errno %d (%s), "
                  "last_error=\"%s\"", t_rc_name(rc), e, strerror(e),
                  locking_last_error());
            rc = new_and_lock("x", ro_missing, m, &e);
            CHECK(rc == LOCKING_E_IO && e == EACCES && locking_last_error()[0] != '\0',
                  "uid 65534, lockdir to be created below a 0555 dir: %s, "
                  "errno %d (%s), last_error=\"%s\"", t_rc_name(rc), e,
                  strerror(e), locking_last_error());
            errno = 0;
            int fd = open_locked_fd(ro_file, 0.0, NULL, 0.0, m);
            e = errno;
            CHECK(fd == LOCKING_E_IO && e == EACCES && locking_last_error()[0] != '\0',
                  "uid 65534, open_locked_fd of a new file in a 0555 dir: %s, "
                  "errno %d (%s), last_error=\"%s\"", t_rc_name(fd), e,
                  strerror(e), locking_last_error());
            if (fd >= 0)
                close_locked_fd(fd);
        }
        t_child_exit();
    }
    t_wait_child(pid, "unprivileged user");
    chmod(ro, 0755); /* so that the scratch directory can be removed */
    free(ro_missing);
    free(ro_file);
    free(ro);
}

/* Infinite or huge values are not NaN: they must be accepted, and must not
 * overflow anywhere (a Rust Duration conversion panics on them). */
static void extreme_values(void)
{
    const double vals[] = { INFINITY, -INFINITY, 1e300, -1e300, DBL_MAX, 1e18 };
    FOR_EACH_REAL_METHOD(m) {
        char *dir = t_fresh_path("extreme");
        Locker *h = t_locker("x", dir, NULL, 0.0, 0.0, m);
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
            double v = vals[i];
            Locker *l = NULL;
            /* uncontended: timeout and expire both extreme */
            int rc = locker_new("x", dir, NULL, v, v, m, &l);
            CHECK(rc == LOCKING_OK, "locker_new(timeout=expire=%g): %s (%s)",
                  v, t_rc_name(rc), rc ? locking_last_error() : "");
            if (rc == LOCKING_OK) {
                CHECK(locker_lock(l) == LOCKING_OK && locker_unlock(l) == LOCKING_OK,
                      "timeout=expire=%g: uncontended lock and unlock (%s)", v,
                      locking_last_error());
                locker_free(l);
            }
            /* contended by a live holder: an extreme expire never breaks it */
            CHECK_RC_QUIET(locker_lock(h), LOCKING_OK);
            l = NULL;
            rc = locker_new("x", dir, NULL, 0.05, v, m, &l);
            if (rc == LOCKING_OK) {
                rc = locker_lock(l);
                CHECK(rc == LOCKING_E_LOCKER_FAILED,
                      "expire=%g against a fresh live holder: %s (%s)", v,
                      t_rc_name(rc), locking_last_error());
                if (rc == LOCKING_OK)
                    locker_unlock(l);
                locker_free(l);
            }
            CHECK_RC_QUIET(locker_unlock(h), LOCKING_OK);
            char *f = t_path("extreme-file-%zu-%d", i, m);
            int fd = open_locked_fd(f, v, NULL, v, m);
            CHECK(fd >= 0, "open_locked_fd(timeout=expire=%g): %s", v,
                  fd >= 0 ? "fd" : locking_last_error());
            if (fd >= 0)
                CHECK_RC_QUIET(close_locked_fd(fd), LOCKING_OK);
            free(f);
        }
        locker_free(h);
        free(dir);
    }
}

static void strerror_all(void)
{
    const int codes[] = { LOCKING_OK, LOCKING_E_LOCKER_FAILED,
                          LOCKING_E_CANNOT_GET_LOCK, LOCKING_E_INVALID_ARGUMENT,
                          LOCKING_E_IO, LOCKING_E_ALREADY_LOCKED,
                          LOCKING_E_NOT_LOCKED, LOCKING_E_LOCK_LOST,
                          LOCKING_E_INTERNAL };
    const int n = (int)(sizeof codes / sizeof codes[0]);
    const char *s[sizeof codes / sizeof codes[0]];
    for (int i = 0; i < n; i++) {
        s[i] = locking_strerror(codes[i]);
        CHECK(s[i] != NULL && s[i][0] != '\0', "locking_strerror(%s) = \"%s\"",
              t_rc_name(codes[i]), s[i] ? s[i] : "(NULL)");
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (s[i] && s[j])
                CHECK_QUIET(strcmp(s[i], s[j]) != 0,
                            "locking_strerror(%d) and (%d) are both \"%s\"",
                            codes[i], codes[j], s[i]);
    const int odd[] = { 12345, INT_MIN, INT_MAX, 1, -9, -100 };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *x = locking_strerror(odd[i]);
        CHECK(x != NULL && x[0] != '\0', "locking_strerror(%d) = \"%s\"", odd[i],
              x ? x : "(NULL)");
    }
}

struct thread_result {
    char before[256];
    int before_null;
    char after[256];
    int rc;
};

static void *failing_thread(void *arg)
{
    struct thread_result *r = arg;
    const char *s = locking_last_error();
    r->before_null = s == NULL;
    snprintf(r->before, sizeof r->before, "%s", s ? s : "");
    r->rc = locker_lock(NULL);
    s = locking_last_error();
    snprintf(r->after, sizeof r->after, "%s", s ? s : "");
    return NULL;
}

static void last_error_per_thread(const char *dir)
{
    /* a failure in this thread with a recognisable message (NULL objname) */
    Locker *out = SENTINEL;
    locker_new(NULL, dir, "ns", 0.0, 0.0, LOCKING_METHOD_MKDIR, &out);
    char mine[1024];
    snprintf(mine, sizeof mine, "%s", locking_last_error());
    CHECK(mine[0] != '\0', "main thread: message after a failure: \"%s\"", mine);

    struct thread_result a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    pthread_t ta, tb;
    if (pthread_create(&ta, NULL, failing_thread, &a) != 0)
        FATAL("pthread_create");
    pthread_join(ta, NULL);
    CHECK(!a.before_null && a.before[0] == '\0',
          "fresh thread A: locking_last_error() is \"\" (got \"%s\")", a.before);
    CHECK(a.rc == LOCKING_E_INVALID_ARGUMENT && a.after[0] != '\0',
          "thread A: message after its own failure: \"%s\"", a.after);
    if (pthread_create(&tb, NULL, failing_thread, &b) != 0)
        FATAL("pthread_create");
    pthread_join(tb, NULL);
    CHECK(!b.before_null && b.before[0] == '\0',
          "fresh thread B does not see thread A's (or main's) failure (got \"%s\")",
          b.before);
    CHECK(strcmp(locking_last_error(), mine) == 0,
          "main thread's message unchanged by other threads' failures "
          "(\"%s\" vs \"%s\")", locking_last_error(), mine);
}

static void version(void)
{
    const char *v = locking_version();
    CHECK(v != NULL && strcmp(v, "0.2.0") == 0, "locking_version() = \"%s\"",
          v ? v : "(NULL)");
}

int main(int argc, char **argv)
{
    /* must come before any liblocking call in this thread: t_init prints the
     * version, which is a call but not a failure */
    const char *first = locking_last_error();
    CHECK(first != NULL && first[0] == '\0',
          "main thread before any failure: locking_last_error() is \"\"");
    t_init(argc, argv);
    char *dir = t_fresh_path("locks");
    invalid_arguments(dir);
    open_directory();
    lockdir_is_a_file();
    unwritable_lockdir();
    extreme_values();
    strerror_all();
    last_error_per_thread(dir);
    version();
    free(dir);
    return t_done();
}
