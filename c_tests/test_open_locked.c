/*
 * open_locked_fd / close_locked_fd, for every real method:
 *   - the descriptor is O_RDWR (not O_APPEND), at offset 0, close-on-exec;
 *     a missing file is created with mode 0666 & ~umask; an existing file is
 *     neither truncated nor moved; close_locked_fd closes the descriptor;
 *   - two opens of one file exclude each other, also through different
 *     paths ("./f", "d/../f", "<symlinked dir>/f", the absolute path), with
 *     LOCKING_E_CANNOT_GET_LOCK after the timeout;
 *   - 4 processes appending by read-modify-write through those 4 paths lose
 *     no line;
 *   - close_locked_fd on a foreign fd or -1, or twice, is
 *     LOCKING_E_NOT_LOCKED and leaves a foreign fd open;
 *   - a plain close() keeps the lock (until the process dies, then it is
 *     recovered); a forked child's close_locked_fd keeps the parent's lock;
 *   - FAKE never excludes.
 */
#include "common.h"

#define APPENDERS 4
#define APPENDS_EACH 100

static char *g_x;      /* directory holding f: <scratch>/open-.../x   */
static char *g_link_f; /* <scratch>/open-.../y/link/f, link -> x      */
static char *g_abs_f;  /* <x>/f                                       */

static void setup(void)
{
    char *root = t_fresh_dir("open");
    char *y = NULL, *link = NULL, *d = NULL;
    if (asprintf(&g_x, "%s/x", root) < 0 || asprintf(&d, "%s/x/d", root) < 0 ||
        asprintf(&y, "%s/y", root) < 0 || asprintf(&link, "%s/y/link", root) < 0 ||
        asprintf(&g_link_f, "%s/f", link) < 0 || asprintf(&g_abs_f, "%s/f", g_x) < 0)
        FATAL("asprintf");
    if (mkdir(g_x, 0755) || mkdir(d, 0755) || mkdir(y, 0755) || symlink(g_x, link))
        FATAL("setup of %s", root);
    if (chdir(g_x) != 0)
        FATAL("chdir %s", g_x);
    free(root);
    free(y);
    free(link);
    free(d);
}

static void teardown(void)
{
    if (chdir("/") != 0)
        FATAL("chdir /");
    free(g_x);
    free(g_link_f);
    free(g_abs_f);
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

static void properties(int m)
{
    mode_t old = umask(022);
    int fd = open_locked_fd("./f", 0.0, NULL, 0.0, m);
    CHECK(fd >= 0, "open_locked_fd creates a missing file: %d (%s)", fd,
          fd < 0 ? locking_last_error() : "");
    if (fd < 0)
        FATAL("cannot go on");
    struct stat st;
    memset(&st, 0, sizeof st);
    int fst = fstat(fd, &st);
    CHECK(fst == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0644,
          "created as a regular file with mode 0644 under umask 022 (0%o)",
          (unsigned)(st.st_mode & 0777));
    int fl = fcntl(fd, F_GETFL);
    CHECK((fl & O_ACCMODE) == O_RDWR, "opened O_RDWR");
    CHECK((fl & O_APPEND) == 0, "not O_APPEND");
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "close-on-exec is set");
    CHECK(lseek(fd, 0, SEEK_CUR) == 0, "positioned at offset 0");
    CHECK(write(fd, "hello\n", 6) == 6, "writable");
    CHECK(lseek(fd, 0, SEEK_SET) == 0, "seekable");
    char buf[16] = { 0 };
    CHECK(read(fd, buf, sizeof buf - 1) == 6 && strcmp(buf, "hello\n") == 0,
          "readable, reads back what was written");
    CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    CHECK(!fd_is_open(fd) && errno == EBADF, "close_locked_fd closed the fd");

    fd = open_locked_fd(g_abs_f, 0.0, NULL, 0.0, m);
    CHECK(fd >= 0, "reopened an existing file");
    if (fd >= 0) {
        memset(buf, 0, sizeof buf);
        CHECK(lseek(fd, 0, SEEK_CUR) == 0, "existing file: offset 0");
        CHECK(read(fd, buf, sizeof buf - 1) == 6 && strcmp(buf, "hello\n") == 0,
              "existing file: content kept, not truncated");
        CHECK(ftruncate(fd, 0) == 0, "truncate for the next checks");
        CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    }

    umask(027);
    char *g = t_path("%s", "umask-027-file");
    unlink(g);
    fd = open_locked_fd(g, 0.0, NULL, 0.0, m);
    /* fstat before the check: its message reads st.st_mode, and a call's
     * arguments are evaluated in no fixed order */
    fst = fd >= 0 ? fstat(fd, &st) : -1;
    CHECK(fst == 0 && (st.st_mode & 0777) == 0640,
          "created with mode 0640 under umask 027 (0%o)",
          fst == 0 ? (unsigned)(st.st_mode & 0777) : 0u);
    if (fd >= 0)
        CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    unlink(g);
    free(g);
    umask(old);
}

static void exclusion_by_path(int m)
{
    const char *paths[] = { "./f", "d/../f", g_link_f, g_abs_f, "f" };
    const int np = (int)(sizeof paths / sizeof paths[0]);
    char *lockdir = t_fresh_path("open-locks");
    const char *lockdirs[] = { NULL, lockdir };
    for (int ld = 0; ld < 2; ld++) {
        for (int i = 0; i < np; i++) {
            int fd = open_locked_fd(paths[i], 0.0, lockdirs[ld], 0.0, m);
            CHECK(fd >= 0, "lockdir %s: open_locked_fd(\"%s\") (%s)",
                  lockdirs[ld] ? "explicit" : "NULL", paths[i],
                  fd < 0 ? locking_last_error() : "");
            if (fd < 0)
                continue;
            for (int j = 0; j < np; j++) {
                int fd2 = open_locked_fd(paths[j], 0.0, lockdirs[ld], 0.0, m);
                CHECK(fd2 == LOCKING_E_CANNOT_GET_LOCK,
                      "lockdir %s: held via \"%s\", then \"%s\" with timeout 0: "
                      "got %s (%d)", lockdirs[ld] ? "explicit" : "NULL",
                      paths[i], paths[j], t_rc_name(fd2), fd2);
                if (fd2 >= 0)
                    close_locked_fd(fd2);
            }
            if (i == 0) {
                double t0 = t_now();
                int fd3 = open_locked_fd(g_link_f, 0.3, lockdirs[ld], 0.0, m);
                double el = t_now() - t0;
                CHECK(fd3 == LOCKING_E_CANNOT_GET_LOCK && el >= 0.3 && el < 3.0,
                      "timeout 0.3: %s after %.3f s", t_rc_name(fd3), el);
                CHECK(locking_last_error()[0] != '\0', "with a message");
                if (fd3 >= 0)
                    close_locked_fd(fd3);
            }
            CHECK_RC_QUIET(close_locked_fd(fd), LOCKING_OK);
        }
    }
    free(lockdir);
}

static void appenders(int m)
{
    const char *paths[APPENDERS] = { "./f", "d/../f", g_link_f, g_abs_f };
    int fd = open_locked_fd(g_abs_f, 0.0, NULL, 0.0, m);
    if (fd < 0 || ftruncate(fd, 0) != 0)
        FATAL("cannot prepare %s", g_abs_f);
    CHECK_RC(close_locked_fd(fd), LOCKING_OK);

    t_barrier b;
    t_barrier_init(&b, APPENDERS);
    pid_t pids[APPENDERS];
    for (int p = 0; p < APPENDERS; p++) {
        pids[p] = t_fork();
        if (pids[p] != 0)
            continue;
        t_barrier_arrive(&b);
        char *buf = malloc(1 << 20);
        for (int j = 0; j < APPENDS_EACH; j++) {
            double timeout = (j % 2) ? LOCKING_WAIT_FOREVER : 30.0;
            int lfd = open_locked_fd(paths[p], timeout, NULL, 0.0, m);
            if (!CHECK_QUIET(lfd >= 0, "appender %d: open_locked_fd(%s) = %s (%s)",
                             p, paths[p], t_rc_name(lfd), locking_last_error()))
                break;
            /* read the whole file from offset 0, then write after it */
            size_t len = 0;
            ssize_t n;
            while ((n = read(lfd, buf + len, (1 << 20) - len - 1)) > 0)
                len += (size_t)n;
            CHECK_QUIET(n == 0, "read to EOF");
            CHECK_QUIET(len == 0 || buf[len - 1] == '\n', "no torn line");
            char line[64];
            int ll = snprintf(line, sizeof line, "P%d %d\n", p, j);
            CHECK_QUIET(pwrite(lfd, line, (size_t)ll, (off_t)len) == ll, "write");
            CHECK_RC_QUIET(close_locked_fd(lfd), LOCKING_OK);
        }
        free(buf);
        t_child_exit();
    }
    t_barrier_release(&b);
    for (int p = 0; p < APPENDERS; p++)
        t_wait_child(pids[p], paths[p]);
    t_barrier_destroy(&b);

    FILE *f = fopen(g_abs_f, "r");
    if (f == NULL)
        FATAL("fopen");
    static char seen[APPENDERS][APPENDS_EACH];
    memset(seen, 0, sizeof seen);
    int lines = 0, bad = 0, dup = 0;
    char line[256];
    while (fgets(line, sizeof line, f) != NULL) {
        int p, j;
        lines++;
        if (sscanf(line, "P%d %d", &p, &j) != 2 || p < 0 || p >= APPENDERS ||
            j < 0 || j >= APPENDS_EACH) {
            bad++;
            continue;
        }
        if (seen[p][j]++)
            dup++;
    }
    fclose(f);
    int missing = 0;
    for (int p = 0; p < APPENDERS; p++)
        for (int j = 0; j < APPENDS_EACH; j++)
            missing += !seen[p][j];
    CHECK(lines == APPENDERS * APPENDS_EACH && bad == 0 && dup == 0 && missing == 0,
          "%d processes x %d read-modify-write appends through different paths: "
          "%d lines (want %d), %d missing, %d duplicated, %d garbled",
          APPENDERS, APPENDS_EACH, lines, APPENDERS * APPENDS_EACH, missing, dup, bad);
}

static void foreign_and_double_close(int m)
{
    int plain = open(g_abs_f, O_RDONLY | O_CLOEXEC);
    if (plain < 0)
        FATAL("open");
    CHECK_RC(close_locked_fd(plain), LOCKING_E_NOT_LOCKED);
    CHECK(fd_is_open(plain), "a foreign fd is left open");
    close(plain);
    CHECK_RC(close_locked_fd(-1), LOCKING_E_NOT_LOCKED);
    CHECK_RC(close_locked_fd(INT_MAX), LOCKING_E_NOT_LOCKED);

    int fd = open_locked_fd(g_abs_f, 0.0, NULL, 0.0, m);
    CHECK(fd >= 0, "open_locked_fd");
    if (fd >= 0) {
        CHECK_RC(close_locked_fd(fd), LOCKING_OK);
        CHECK_RC(close_locked_fd(fd), LOCKING_E_NOT_LOCKED);
    }
}

/* A plain close() keeps the lock while the process lives; its death frees it. */
static void plain_close_keeps_lock(int m)
{
    char *g = t_path("plain-close-%s", t_method_name(m));
    t_pipe to_child = t_pipe_new(), to_parent = t_pipe_new();
    pid_t pid = t_fork();
    if (pid == 0) {
        int fd = open_locked_fd(g, 0.0, NULL, 0.0, m);
        CHECK(fd >= 0, "child: open_locked_fd");
        close(fd);
        CHECK_RC(open_locked_fd(g, 0.0, NULL, 0.0, m), LOCKING_E_CANNOT_GET_LOCK);
        t_send(&to_parent, 'h');
        t_expect(&to_child, 'x', "exit");
        t_child_exit();
    }
    t_expect(&to_parent, 'h', "child closed its fd with close()");
    CHECK_RC(open_locked_fd(g, 0.0, NULL, 0.0, m), LOCKING_E_CANNOT_GET_LOCK);
    t_send(&to_child, 'x');
    t_wait_child(pid, "plain close() holder");
    int fd = open_locked_fd(g, 10.0, NULL, 0.0, m);
    CHECK(fd >= 0, "after the holder exited the lock is recovered (%s)",
          fd < 0 ? t_rc_name(fd) : "fd");
    if (fd >= 0)
        CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    t_pipe_close(&to_child);
    t_pipe_close(&to_parent);
    free(g);
}

/* A forked child closing an inherited locked fd keeps the parent's lock. */
static void fork_inherit(int m)
{
    int fd = open_locked_fd(g_abs_f, 0.0, NULL, 0.0, m);
    CHECK(fd >= 0, "open_locked_fd");
    if (fd < 0)
        return;
    pid_t pid = t_fork();
    if (pid == 0) {
        int rc = close_locked_fd(fd);
        t_note("child: close_locked_fd(inherited fd) = %s", t_rc_name(rc));
        CHECK_RC(open_locked_fd(g_abs_f, 0.0, NULL, 0.0, m),
                 LOCKING_E_CANNOT_GET_LOCK);
        t_child_exit();
    }
    t_wait_child(pid, "child closing an inherited locked fd");
    CHECK(fd_is_open(fd), "the parent's fd is still open");
    CHECK_RC(open_locked_fd(g_abs_f, 0.0, NULL, 0.0, m), LOCKING_E_CANNOT_GET_LOCK);
    CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    fd = open_locked_fd(g_abs_f, 0.0, NULL, 0.0, m);
    CHECK(fd >= 0, "free again after the parent's close_locked_fd");
    if (fd >= 0)
        CHECK_RC(close_locked_fd(fd), LOCKING_OK);
}

static void fake(void)
{
    t_method_label = "fake";
    int a = open_locked_fd(g_abs_f, 0.0, NULL, 0.0, LOCKING_METHOD_FAKE);
    int b = open_locked_fd("./f", 0.0, NULL, 0.0, LOCKING_METHOD_FAKE);
    CHECK(a >= 0 && b >= 0, "FAKE: two opens of one file both succeed");
    if (a >= 0)
        CHECK_RC(close_locked_fd(a), LOCKING_OK);
    if (b >= 0)
        CHECK_RC(close_locked_fd(b), LOCKING_OK);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    FOR_EACH_REAL_METHOD(m) {
        setup();
        properties(m);
        exclusion_by_path(m);
        appenders(m);
        foreign_and_double_close(m);
        plain_close_keeps_lock(m);
        fork_inherit(m);
        teardown();
    }
    setup();
    fake();
    teardown();
    return t_done();
}
