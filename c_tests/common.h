/*
 * Shared helpers for the liblocking C test programs.
 *
 * Every test program includes this file first. On top of support.h (the
 * helpers shared with hardening/ and bench/: clocks, names, /proc, pipes,
 * processes, the random-kill harness) it provides:
 *   - check macros that print one line per check ("ok" / "FAIL", file:line)
 *     and count failures (thread-safe; forked children report through their
 *     exit status, see t_child_exit / t_wait_child);
 *   - a per-run scratch directory (argv[1], else $LOCKING_TEST_DIR, else a
 *     fresh mkdtemp directory) and helpers to make fresh sub-directories;
 *   - waiting for a byte on a pipe (support.h) as a check, and an N-party
 *     barrier built from pipes (no test relies on a sleep being long enough);
 *   - a counter kept in a file whose increment is a deliberately
 *     non-atomic read-modify-write, so that a lost update is detectable;
 *   - the list of real lock methods to loop over.
 */
#ifndef LOCKING_C_TESTS_COMMON_H
#define LOCKING_C_TESTS_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "locking.h"

/* support.h's helpers give up the way FATAL does (t_fatal_at, below). */
static inline void t_fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
#define T_SETUP_FAILED(...) t_fatal_at(__FILE__, __LINE__, __VA_ARGS__)
#include "support.h"

/* How long any pipe wait may block before the test gives up (seconds). */
#define T_PIPE_TIMEOUT_S 60

static atomic_int t_failures;
static atomic_int t_checks;
static char t_base[PATH_MAX];
static const char *t_method_label = "-";
static atomic_uint t_dir_seq;

/* The real (excluding) methods every test loops over.
 * Negative control: built with -DFORCE_METHOD=LOCKING_METHOD_FAKE, the loop
 * runs FAKE instead, and a test's checks must then fail (tests/c_tests.rs
 * verifies that), which shows that they can. */
static const int t_real_methods[] = {
#ifdef FORCE_METHOD
    FORCE_METHOD,
#else
    LOCKING_METHOD_MKDIR,
    LOCKING_METHOD_OPENCREATE,
    LOCKING_METHOD_KERNEL,
#endif
};
#define T_N_REAL_METHODS ((int)(sizeof t_real_methods / sizeof t_real_methods[0]))

/* for (each real method) { ... }  -- also sets the label printed by checks */
#define FOR_EACH_REAL_METHOD(m)                                               \
    for (int t_mi_ = 0, m = 0;                                                \
         t_mi_ < T_N_REAL_METHODS                                             \
             ? ((m = t_real_methods[t_mi_]),                                  \
                (t_method_label = t_method_name(m)), 1)                       \
             : ((t_method_label = "-"), 0);                                   \
         t_mi_++)

/* ------------------------------------------------------------------ */
/* reporting                                                           */

static inline void t_vreport(bool ok, const char *file, int line,
                             const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    atomic_fetch_add(&t_checks, 1);
    if (!ok)
        atomic_fetch_add(&t_failures, 1);
    /* one write per line so that lines of concurrent processes don't mix */
    char buf[2400];
    int n = snprintf(buf, sizeof buf, "%s [%s] %s:%d: %s [pid %ld]\n",
                     ok ? "ok  " : "FAIL", t_method_label, file, line, msg,
                     (long)getpid());
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    ssize_t w = write(STDOUT_FILENO, buf, (size_t)n);
    (void)w;
}

static inline bool t_report(bool ok, const char *file, int line,
                            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline bool t_report(bool ok, const char *file, int line,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    t_vreport(ok, file, line, fmt, ap);
    va_end(ap);
    return ok;
}

/* Like t_report, but prints nothing when ok (for checks inside hot loops). */
static inline bool t_report_quiet(bool ok, const char *file, int line,
                                  const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline bool t_report_quiet(bool ok, const char *file, int line,
                                  const char *fmt, ...)
{
    if (ok)
        return true;
    va_list ap;
    va_start(ap, fmt);
    t_vreport(ok, file, line, fmt, ap);
    va_end(ap);
    return false;
}

static inline void t_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void t_note(const char *fmt, ...)
{
    char msg[2048], buf[2200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int n = snprintf(buf, sizeof buf, "note [%s] %s\n", t_method_label, msg);
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    ssize_t w = write(STDOUT_FILENO, buf, (size_t)n);
    (void)w;
}

/* Setup failure: the test cannot go on. */
static inline void t_fatal_at(const char *file, int line, const char *fmt, ...)
{
    int e = errno;
    va_list ap;
    va_start(ap, fmt);
    t_vreport(false, file, line, fmt, ap);
    va_end(ap);
    t_report(false, file, line, "FATAL, giving up (errno %d: %s)", e, strerror(e));
    _exit(2);
}
#define FATAL(...) t_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

/* CHECK(cond, "what is being checked", ...) */
#define CHECK(cond, ...) t_report(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_QUIET(cond, ...) t_report_quiet(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

static inline bool t_check_rc(int got, int want, bool quiet, bool need_msg,
                              const char *expr, const char *file, int line)
{
    int saved_errno = errno;
    const char *le = locking_last_error();
    bool ok = got == want;
    if (ok && need_msg && got < 0 && (le == NULL || le[0] == '\0')) {
        return t_report(false, file, line,
                        "%s -> %s as expected, but locking_last_error() is %s",
                        expr, t_rc_name(got), le == NULL ? "NULL" : "empty");
    }
    if (ok && quiet)
        return true;
    if (ok)
        return t_report(true, file, line, "%s == %s", expr, t_rc_name(want));
    return t_report(false, file, line,
                    "%s: expected %s (%d), got %s (%d); errno=%d (%s); "
                    "last_error=\"%s\"",
                    expr, t_rc_name(want), want, t_rc_name(got), got,
                    saved_errno, strerror(saved_errno), le ? le : "(NULL)");
}

/* CHECK_RC(call, expected_code): the call returns exactly that code; a
 * failing code must come with a non-empty locking_last_error(). */
#define CHECK_RC(expr, want)                                                  \
    t_check_rc((expr), (want), false, true, #expr, __FILE__, __LINE__)
#define CHECK_RC_QUIET(expr, want)                                            \
    t_check_rc((expr), (want), true, true, #expr, __FILE__, __LINE__)

/* ------------------------------------------------------------------ */
/* scratch directories                                                 */

static inline void t_init(int argc, char **argv)
{
    /* line-oriented output; every report is one write(2) anyway */
    setvbuf(stdout, NULL, _IONBF, 0);
    setvbuf(stderr, NULL, _IONBF, 0);
    const char *b = argc > 1 ? argv[1] : getenv("LOCKING_TEST_DIR");
    if (b != NULL && b[0] != '\0') {
        if (snprintf(t_base, sizeof t_base, "%s", b) >= (int)sizeof t_base)
            FATAL("scratch path too long");
        if (mkdir(t_base, 0755) != 0 && errno != EEXIST)
            FATAL("mkdir %s", t_base);
        /* absolute, since some tests chdir() */
        char abs[PATH_MAX];
        if (realpath(t_base, abs) == NULL)
            FATAL("realpath %s", t_base);
        snprintf(t_base, sizeof t_base, "%s", abs);
    } else {
        snprintf(t_base, sizeof t_base, "/tmp/locking-ctest-XXXXXX");
        if (mkdtemp(t_base) == NULL)
            FATAL("mkdtemp");
    }
    /* children must never outlive a failed parent by waiting on a pipe */
    signal(SIGPIPE, SIG_IGN);
    t_note("scratch directory %s, liblocking %s", t_base, locking_version());
}

/* A path under the scratch directory; the result is malloc'd. */
static inline char *t_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *t_path(const char *fmt, ...)
{
    char rel[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    char *p = NULL;
    if (asprintf(&p, "%s/%s", t_base, rel) < 0)
        FATAL("asprintf");
    return p;
}

/* `dir`/`rel`, malloc'd. */
static inline char *t_sub_path(const char *dir, const char *rel)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, rel) < 0)
        FATAL("asprintf");
    return p;
}

/* A new, unique path under the scratch directory that does NOT exist yet
 * (lock directories must be created by the library). malloc'd. */
static inline char *t_fresh_path(const char *tag)
{
    unsigned n = atomic_fetch_add(&t_dir_seq, 1);
    return t_path("%s-%s-%ld-%u", tag, t_method_label, (long)getpid(), n);
}

/* A new, unique, existing directory under the scratch directory. */
static inline char *t_fresh_dir(const char *tag)
{
    char *p = t_fresh_path(tag);
    if (mkdir(p, 0755) != 0)
        FATAL("mkdir %s", p);
    return p;
}

/* Number of entries (besides . and ..) in a directory; -1 on error. */
static inline int t_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

static inline void t_write_file(const char *path, const char *content)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        FATAL("open %s", path);
    size_t len = strlen(content);
    if (write(fd, content, len) != (ssize_t)len)
        FATAL("write %s", path);
    close(fd);
}

/* ------------------------------------------------------------------ */
/* pipes and barriers                                                  */

/* Wait for one byte and insist it is `want`. */
static inline void t_expect(t_pipe *p, char want, const char *what)
{
    int c = t_recv_timeout(p, T_PIPE_TIMEOUT_S);
    if (c != (unsigned char)want)
        FATAL("waiting for '%c' (%s) on a pipe: got %d (EOF/timeout/other)",
              want, what, c);
}

/* An N-party barrier for processes (or threads), made of two pipes:
 * every party writes one byte to `arrive` and then blocks reading `go`;
 * the coordinator collects N arrivals and then writes N bytes to `go`. */
typedef struct {
    t_pipe arrive, go;
    int n;
} t_barrier;

static inline void t_barrier_init(t_barrier *b, int n)
{
    b->arrive = t_pipe_new();
    b->go = t_pipe_new();
    b->n = n;
}

/* A party: announce arrival, then wait for the release. */
static inline void t_barrier_arrive(t_barrier *b)
{
    t_send(&b->arrive, 'a');
    t_expect(&b->go, 'g', "barrier release");
}

/* The coordinator: wait for all N parties, then release them all. */
static inline void t_barrier_release(t_barrier *b)
{
    for (int i = 0; i < b->n; i++)
        t_expect(&b->arrive, 'a', "barrier arrival");
    for (int i = 0; i < b->n; i++)
        t_send(&b->go, 'g');
}

static inline void t_barrier_destroy(t_barrier *b)
{
    t_pipe_close(&b->arrive);
    t_pipe_close(&b->go);
}

/* ------------------------------------------------------------------ */
/* processes                                                           */

static inline pid_t t_fork(void)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        FATAL("fork");
    if (pid == 0) {
        /* the child reports its own checks only (see t_child_exit) */
        atomic_store(&t_failures, 0);
        atomic_store(&t_checks, 0);
    }
    return pid;
}

/* A forked child ends with this: its exit status tells the parent whether
 * any of its checks failed. */
static inline void t_child_exit(void)
{
    _exit(atomic_load(&t_failures) == 0 ? 0 : 1);
}

/* Reap a child and check that it exited with status 0. */
#define t_wait_child(pid, what) t_wait_child_at((pid), (what), __FILE__, __LINE__)
static inline bool t_wait_child_at(pid_t pid, const char *what,
                                   const char *file, int line)
{
    int st = 0;
    pid_t r;
    do {
        r = waitpid(pid, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r != pid)
        return t_report(false, file, line, "waitpid(%s): %s", what, strerror(errno));
    if (WIFEXITED(st))
        return t_report(WEXITSTATUS(st) == 0, file, line,
                        "child %s (pid %ld) exited with status %d", what,
                        (long)pid, WEXITSTATUS(st));
    return t_report(false, file, line, "child %s (pid %ld) killed by signal %d",
                    what, (long)pid, WIFSIGNALED(st) ? WTERMSIG(st) : -1);
}

/* Stops a child with SIGSTOP and waits until it is stopped. */
static inline void t_stop_child(pid_t pid)
{
    if (kill(pid, SIGSTOP) != 0)
        FATAL("kill SIGSTOP");
    int st;
    pid_t r;
    do {
        r = waitpid(pid, &st, WUNTRACED);
    } while (r < 0 && errno == EINTR);
    if (r != pid || !WIFSTOPPED(st))
        FATAL("child %ld did not stop", (long)pid);
}

/* Eight bytes through a pipe (a fencing token, say). */
static inline void t_send_u64(t_pipe *p, uint64_t v)
{
    if (write(p->w, &v, sizeof v) != (ssize_t)sizeof v)
        FATAL("pipe write");
}

/* Eight bytes from a pipe within `timeout` seconds; false on EOF/timeout. */
static inline bool t_recv_u64(t_pipe *p, double timeout, uint64_t *v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) {
        int c = t_recv_timeout(p, timeout);
        if (c < 0)
            return false;
        b[i] = (unsigned char)c;
    }
    memcpy(v, b, sizeof *v);
    return true;
}

/* ------------------------------------------------------------------ */
/* a counter in a file, incremented by a deliberately non-atomic
 * read-modify-write (read, yield, rewrite): two unsynchronised
 * incrementers can lose updates, which the final count then shows.    */

static inline long t_counter_read(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

static inline void t_counter_init(const char *path)
{
    t_write_file(path, "0\n");
}

/* Returns false if the counter file could not be read or written. */
static inline bool t_counter_incr(const char *path)
{
    long v = t_counter_read(path);
    if (v < 0)
        return false;
    sched_yield(); /* widen the window between read and write */
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%ld\n", v + 1);
    bool ok = write(fd, buf, (size_t)n) == n;
    close(fd);
    return ok;
}

/* ------------------------------------------------------------------ */

/* Convenience: a Locker or die (setup). */
static inline Locker *t_locker(const char *obj, const char *dir, const char *ns,
                               double timeout, double expire, int method)
{
    Locker *l = NULL;
    int rc = locker_new(obj, dir, ns, timeout, expire, method, &l);
    if (rc != LOCKING_OK || l == NULL)
        FATAL("locker_new(%s, %s, %s, %g, %g, %d) = %s, last_error=\"%s\"",
              obj, dir, ns ? ns : "(NULL)", timeout, expire, method,
              t_rc_name(rc), locking_last_error());
    return l;
}

/* Print the summary and return the process exit status. */
static inline int t_done(void)
{
    t_method_label = "-";
    int f = atomic_load(&t_failures);
    t_note("%d checks, %d failed", atomic_load(&t_checks), f);
    return f == 0 ? 0 : 1;
}

#endif /* LOCKING_C_TESTS_COMMON_H */
