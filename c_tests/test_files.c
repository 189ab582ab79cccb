/*
 * Files, descriptors and directories under the lock (issue 9, scenarios 6,
 * 10, 11, 12, 13, 14, 16). Every real method unless said otherwise.
 *
 *  6. open_locked_fd names the FILE, not the path:
 *     (a) d/f and its hard link d/g (same directory): while the parent holds
 *         open_locked_fd("d/f"), a child's open_locked_fd("d/g", timeout 0)
 *         is LOCKING_E_CANNOT_GET_LOCK (lockdir NULL, then an explicit one);
 *     (b) with a common explicit lockdir, a hard link in another directory
 *         (d/f and e/h) is excluded too;
 *     (c) the holder opened "d1/f" (lockdir NULL); d1 is renamed to d2; a
 *         child's open_locked_fd("d2/f", timeout 0) is CANNOT_GET_LOCK.
 * 10. kernel: a hard link planted at the entry name (docs/FORMAT.md,
 *     "Entry names": `l-<enc(ns)>=<enc(objname)>`) to a file outside the
 *     lock directory: locker_lock refuses (negative, not
 *     LOCKING_E_INTERNAL) and the outside file's content is unchanged.
 * 11. fd1 = open_locked_fd("a"); plain close(fd1); open_locked_fd("b")
 *     gets the same number: writing to it works and lands in "b", and
 *     close_locked_fd of it is LOCKING_OK (the library must not close the
 *     number its table still remembers for "a").
 * 12. A holder H (a process) has open_locked_fd(path); a waiter W (another
 *     process, not H's child) blocks in open_locked_fd(path, 20 s) with the
 *     file open (seen by polling /proc/W/fd); H deletes the file,
 *     (variant 1) creates a new file at the path, and releases. W's
 *     descriptor is the file at the path when open_locked_fd returns
 *     (same inode as stat(path), st_nlink >= 1; variant 1: the new content).
 * 13. Huge timeouts and expires (1e19, +inf) mean forever / never: a free
 *     lock is had at once (locker_lock and open_locked_fd), nothing is
 *     printed on stderr (no Rust panic text), and a waiter with timeout 1e19
 *     (and +inf) on a busy lock gets it when the holder releases.
 * 14. The lock directory renamed away (D -> D.old) and recreated (mkdir D):
 *     a new Locker locks in D, and the old holder's locker_check,
 *     locker_refresh and locker_unlock (one per round) are
 *     LOCKING_E_LOCK_LOST.
 * 16. mkdir: 200 rounds of lock / unlock / rmdir lockdir/~tmp leak no
 *     descriptor (entries of /proc/self/fd grow by at most 2).
 *
 * Each scenario runs in a child process of its own (a broken descriptor
 * table cannot spill into the next one). Everything is synchronised with
 * pipes, child exit statuses and polling for a state; no sleep has to be
 * long enough.
 */
#include "common.h"

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static void mkdir_or_die(const char *p)
{
    if (mkdir(p, 0755) != 0)
        FATAL("mkdir %s", p);
}

/* Whole content of a file (malloc'd, NUL-terminated), NULL if unreadable. */
static char *read_all(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        FATAL("malloc");
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (buf == NULL)
                FATAL("realloc");
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

/* Newlines and other control characters made visible, in place (one
 * report line per check). */
static char *one_line(char *s)
{
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = '|';
    return s;
}

/* Content read through a descriptor from offset 0 (malloc'd). */
static char *read_fd_all(int fd)
{
    char *buf = calloc(1, 4096);
    if (buf == NULL)
        FATAL("calloc");
    ssize_t n = pread(fd, buf, 4095, 0);
    if (n < 0)
        n = 0;
    buf[n] = '\0';
    return buf;
}

/* In a child: try open_locked_fd(path, timeout 0) and insist that the lock
 * is busy. Returns the child's pid; the caller reaps it with t_wait_child. */
static pid_t child_expect_busy(const char *path, const char *lockdir, int m,
                               const char *what)
{
    pid_t pid = t_fork();
    if (pid == 0) {
        int fd = open_locked_fd(path, 0.0, lockdir, LOCKING_NEVER_EXPIRE, m);
        CHECK(fd == LOCKING_E_CANNOT_GET_LOCK,
              "%s: open_locked_fd(\"%s\", timeout 0, lockdir %s) while the same "
              "file is held: want LOCKING_E_CANNOT_GET_LOCK, got %s (%d)%s",
              what, path, lockdir ? "explicit" : "NULL", t_rc_name(fd), fd,
              fd >= 0 ? " -- TWO HOLDERS of one file" : "");
        if (fd >= 0)
            close_locked_fd(fd);
        t_child_exit();
    }
    return pid;
}

/* ------------------------------------------------------------------ */
/* 6. hard links and a renamed directory                               */

static void hard_links(int m)
{
    char *root = t_fresh_dir("links");
    char *d = NULL, *e = NULL, *f = NULL, *g = NULL, *h = NULL, *ld = NULL;
    if (asprintf(&d, "%s/d", root) < 0 || asprintf(&e, "%s/e", root) < 0 ||
        asprintf(&f, "%s/d/f", root) < 0 || asprintf(&g, "%s/d/g", root) < 0 ||
        asprintf(&h, "%s/e/h", root) < 0 || asprintf(&ld, "%s/locks", root) < 0)
        FATAL("asprintf");
    mkdir_or_die(d);
    mkdir_or_die(e);
    t_write_file(f, "shared\n");
    if (link(f, g) != 0 || link(f, h) != 0)
        FATAL("link %s", f);

    /* (a) same directory, lockdir NULL and explicit */
    const char *lockdirs[] = { NULL, ld };
    for (int i = 0; i < 2; i++) {
        int fd = open_locked_fd(f, 0.0, lockdirs[i], LOCKING_NEVER_EXPIRE, m);
        CHECK(fd >= 0, "6a: holder open_locked_fd(d/f, lockdir %s) (%s)",
              lockdirs[i] ? "explicit" : "NULL", fd < 0 ? locking_last_error() : "");
        if (fd < 0)
            continue;
        pid_t c = child_expect_busy(g, lockdirs[i], m, "6a hard link d/g of d/f");
        t_wait_child(c, "6a: opener of the hard link d/g");
        CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    }

    /* (b) another directory, common explicit lockdir */
    int fd = open_locked_fd(f, 0.0, ld, LOCKING_NEVER_EXPIRE, m);
    CHECK(fd >= 0, "6b: holder open_locked_fd(d/f, explicit lockdir) (%s)",
          fd < 0 ? locking_last_error() : "");
    if (fd >= 0) {
        pid_t c = child_expect_busy(h, ld, m, "6b hard link e/h of d/f");
        t_wait_child(c, "6b: opener of the hard link e/h");
        CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    }

    free(root);
    free(d);
    free(e);
    free(f);
    free(g);
    free(h);
    free(ld);
}

static void renamed_dir(int m)
{
    char *root = t_fresh_dir("renamed");
    char *d1 = NULL, *d2 = NULL, *f1 = NULL, *f2 = NULL;
    if (asprintf(&d1, "%s/d1", root) < 0 || asprintf(&d2, "%s/d2", root) < 0 ||
        asprintf(&f1, "%s/d1/f", root) < 0 || asprintf(&f2, "%s/d2/f", root) < 0)
        FATAL("asprintf");
    mkdir_or_die(d1);
    t_write_file(f1, "moving\n");
    int fd = open_locked_fd(f1, 0.0, NULL, LOCKING_NEVER_EXPIRE, m);
    CHECK(fd >= 0, "6c: holder open_locked_fd(d1/f) (%s)",
          fd < 0 ? locking_last_error() : "");
    if (fd >= 0) {
        if (rename(d1, d2) != 0)
            FATAL("rename %s %s", d1, d2);
        pid_t c = child_expect_busy(f2, NULL, m, "6c after rename d1 -> d2, d2/f");
        t_wait_child(c, "6c: opener of d2/f");
        /* The lock lives in the file's own directory, which others find
         * through the file: renaming it loses nothing. */
        int rc = close_locked_fd(fd);
        CHECK(rc == LOCKING_OK, "6c: holder's close_locked_fd after the rename of its "
              "directory: want LOCKING_OK, got %s (%s)", t_rc_name(rc), locking_last_error());
    }
    free(root);
    free(d1);
    free(d2);
    free(f1);
    free(f2);
}

/* ------------------------------------------------------------------ */
/* 10. planted hard link at the kernel entry name                      */

static void planted_hard_link(void)
{
    int m = LOCKING_METHOD_KERNEL;
    t_method_label = t_method_name(m);
    char *dir = t_fresh_dir("planted");
    char *outside = t_path("planted-outside-%ld", (long)getpid());
    char *entry = NULL;
    /* (ns="ns", objname="planted") -> "l-ns=planted" (docs/FORMAT.md, "Entry names") */
    if (asprintf(&entry, "%s/l-ns=planted", dir) < 0)
        FATAL("asprintf");
    const char *precious = "precious content, not a lock record\n";
    t_write_file(outside, precious);
    if (link(outside, entry) != 0)
        FATAL("link %s %s", outside, entry);

    Locker *l = t_locker("planted", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    int rc = locker_lock(l);
    CHECK(rc < 0 && rc != LOCKING_E_INTERNAL,
          "10: locker_lock with a hard link to an outside file planted at the "
          "entry name is refused: got %s (%d) \"%s\"", t_rc_name(rc), rc,
          rc < 0 ? locking_last_error() : "");
    if (rc == LOCKING_OK)
        locker_unlock(l);
    locker_free(l);

    char *now = read_all(outside);
    CHECK(now != NULL && strcmp(now, precious) == 0,
          "10: the outside file is unchanged (now %zu bytes%s)",
          now ? strlen(now) : (size_t)0,
          now && strcmp(now, precious) != 0 ? ", OVERWRITTEN" : "");
    free(now);
    unlink(entry);
    unlink(outside);
    free(entry);
    free(outside);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 11. a plain close(), then another open_locked_fd gets the number    */

static void plain_close_reuse(int m)
{
    char *dir = t_fresh_dir("reuse");
    char *a = NULL;
    if (asprintf(&a, "%s/a", dir) < 0)
        FATAL("asprintf");
    int fd1 = open_locked_fd(a, 0.0, NULL, LOCKING_NEVER_EXPIRE, m);
    CHECK(fd1 >= 0, "11: open_locked_fd(a) (%s)", fd1 < 0 ? locking_last_error() : "");
    if (fd1 < 0)
        goto out;
    close(fd1); /* plain close(): the library's table still remembers fd1 */

    /* Open other files until the library hands out a number that was closed
     * with plain close() while still in its table (normally at once: the
     * file is the first thing open_locked_fd opens). Each miss is closed
     * with plain close() too, so it also counts. */
    int closed[16];
    int nclosed = 0;
    closed[nclosed++] = fd1;
    int fd2 = -1;
    char *b = NULL;
    for (int attempt = 0; attempt < 10; attempt++) {
        free(b);
        if (asprintf(&b, "%s/b%d", dir, attempt) < 0)
            FATAL("asprintf");
        int fd = open_locked_fd(b, 0.0, NULL, LOCKING_NEVER_EXPIRE, m);
        if (!CHECK(fd >= 0, "11: open_locked_fd(%s) (%s)", b,
                   fd < 0 ? locking_last_error() : ""))
            break;
        bool reused = false;
        for (int i = 0; i < nclosed; i++)
            reused |= closed[i] == fd;
        if (reused) {
            fd2 = fd;
            break;
        }
        t_note("11: open_locked_fd(b%d) got %d, not a plain-closed number; again",
               attempt, fd);
        close(fd);
        closed[nclosed++] = fd;
    }
    if (!CHECK(fd2 >= 0, "11: an open_locked_fd got a number closed with plain close()"))
        goto out_b;
    t_note("11: fd %d was closed with close(), open_locked_fd(%s) returned it again",
           fd1, b);
    const char *msg = "written to b\n";
    errno = 0;
    ssize_t w = write(fd2, msg, strlen(msg));
    CHECK(w == (ssize_t)strlen(msg), "11: write to the new locked fd %d succeeds "
          "(%zd, errno %d %s)", fd2, w, w < 0 ? errno : 0, w < 0 ? strerror(errno) : "");
    int rc = close_locked_fd(fd2);
    CHECK(rc == LOCKING_OK, "11: close_locked_fd(new fd %d): want LOCKING_OK, got %s (%d)",
          fd2, t_rc_name(rc), rc);
    if (rc != LOCKING_OK)
        close(fd2);
    char *content = read_all(b);
    CHECK(content != NULL && strcmp(content, msg) == 0,
          "11: the write landed in %s (it holds \"%s\")", b, content ? content : "(unreadable)");
    free(content);
out_b:
    free(b);
out:
    free(a);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 12. the file deleted or replaced while a waiter waits               */

/* Does one of pid's descriptors name `target` (an absolute canonical path)? */
static bool proc_has_open(pid_t pid, const char *target)
{
    char dpath[64];
    snprintf(dpath, sizeof dpath, "/proc/%ld/fd", (long)pid);
    DIR *dd = opendir(dpath);
    if (dd == NULL)
        return false;
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(dd)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char lpath[PATH_MAX], got[PATH_MAX];
        snprintf(lpath, sizeof lpath, "%s/%s", dpath, de->d_name);
        ssize_t n = readlink(lpath, got, sizeof got - 1);
        if (n <= 0)
            continue;
        got[n] = '\0';
        found = strcmp(got, target) == 0;
    }
    closedir(dd);
    return found;
}

static void deleted_while_waiting(int m, bool replace)
{
    const char *how = replace ? "replaced" : "deleted";
    char *dir = t_fresh_dir(replace ? "replaced" : "deleted");
    char *path = NULL;
    if (asprintf(&path, "%s/f", dir) < 0)
        FATAL("asprintf");
    t_write_file(path, "old content\n");
    char canon[PATH_MAX];
    if (realpath(path, canon) == NULL)
        FATAL("realpath %s", path);

    /* The holder H is a process of its own: W must not inherit H's
     * descriptor of the file (it would show in /proc/W/fd at once). */
    t_pipe to_h = t_pipe_new(), from_h = t_pipe_new();
    pid_t h = t_fork();
    if (h == 0) {
        int hfd = open_locked_fd(path, 0.0, NULL, LOCKING_NEVER_EXPIRE, m);
        CHECK(hfd >= 0, "12: holder open_locked_fd (%s)",
              hfd < 0 ? locking_last_error() : "");
        if (hfd < 0) {
            t_send(&from_h, 'e');
            t_child_exit();
        }
        t_send(&from_h, 'h');
        t_expect(&to_h, 'x', "delete and release");
        if (unlink(path) != 0)
            FATAL("unlink %s", path);
        if (replace)
            t_write_file(path, "new content\n");
        int rc = close_locked_fd(hfd);
        t_note("12 (%s): holder's close_locked_fd = %s", how, t_rc_name(rc));
        t_child_exit();
    }
    if (t_recv_timeout(&from_h, T_PIPE_TIMEOUT_S) != 'h') {
        t_wait_child(h, "12: holder");
        goto out;
    }

    pid_t w = t_fork();
    if (w == 0) {
        int fd = open_locked_fd(path, 20.0, NULL, LOCKING_NEVER_EXPIRE, m);
        CHECK(fd >= 0, "12 (%s): waiter's open_locked_fd (%s)", how,
              fd < 0 ? locking_last_error() : "");
        if (fd >= 0) {
            struct stat fs, ps;
            int r1 = fstat(fd, &fs), r2 = stat(path, &ps);
            CHECK(r1 == 0 && r2 == 0 && fs.st_ino == ps.st_ino &&
                      fs.st_dev == ps.st_dev && fs.st_nlink >= 1,
                  "12 (file %s while waiting): the descriptor is the file now "
                  "at the path: fd inode %lu nlink %lu, path %s inode %lu",
                  how, r1 == 0 ? (unsigned long)fs.st_ino : 0UL,
                  r1 == 0 ? (unsigned long)fs.st_nlink : 0UL,
                  r2 == 0 ? "exists," : "does not exist",
                  r2 == 0 ? (unsigned long)ps.st_ino : 0UL);
            char *c = read_fd_all(fd);
            bool is_new = strcmp(c, "new content\n") == 0;
            if (replace)
                CHECK(is_new, "12 (replaced): the descriptor reads the new content "
                      "(it reads \"%s\")", one_line(c));
            else
                CHECK(strcmp(c, "old content\n") != 0,
                      "12 (deleted): the descriptor is not the deleted file");
            free(c);
            CHECK_RC(close_locked_fd(fd), LOCKING_OK);
        }
        t_child_exit();
    }

    /* wait until W has the file open (it then waits for the lock) */
    double deadline = t_now() + 20.0;
    bool seen = false;
    while (!(seen = proc_has_open(w, canon)) && t_now() < deadline) {
        int st;
        if (waitpid(w, &st, WNOHANG) == w) {
            CHECK(false, "12 (%s): the waiter exited before it had the file open "
                  "(status 0x%x)", how, st);
            w = -1;
            break;
        }
        t_sleep(0.001);
    }
    CHECK(seen, "12 (%s): the waiter has the file open while it waits", how);
    t_send(&to_h, 'x');
    t_wait_child(h, "12: holder");
    if (w > 0)
        t_wait_child(w, replace ? "12: waiter, file replaced" : "12: waiter, file deleted");
out:
    t_pipe_close(&to_h);
    t_pipe_close(&from_h);
    free(path);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 13. huge timeouts and expires                                       */

static void huge_free(int m)
{
    char *dir = t_fresh_path("huge");
    char *errf = t_path("huge-stderr-%s-%ld", t_method_name(m), (long)getpid());
    pid_t c = t_fork();
    if (c == 0) {
        int efd = open(errf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (efd < 0 || dup2(efd, STDERR_FILENO) < 0)
            FATAL("redirect stderr");
        close(efd);
        const double vals[] = { 1e19, INFINITY };
        for (int i = 0; i < 2; i++) {
            double v = vals[i];
            Locker *l = NULL;
            int rc = locker_new("huge", dir, "ns", v, v, m, &l);
            CHECK(rc == LOCKING_OK, "13: locker_new(timeout=expire=%g) = %s", v,
                  t_rc_name(rc));
            if (rc != LOCKING_OK)
                continue;
            rc = locker_lock(l);
            CHECK(rc == LOCKING_OK, "13: locker_lock, free lock, timeout=expire=%g: "
                  "want LOCKING_OK, got %s (%d) \"%s\"", v, t_rc_name(rc), rc,
                  rc ? locking_last_error() : "");
            if (rc == LOCKING_OK)
                CHECK_RC(locker_unlock(l), LOCKING_OK);
            locker_free(l);

            char *f = NULL;
            if (asprintf(&f, "%s-file-%d", dir, i) < 0)
                FATAL("asprintf");
            int fd = open_locked_fd(f, v, NULL, v, m);
            CHECK(fd >= 0, "13: open_locked_fd, free file, timeout=expire=%g: "
                  "got %s (%d) \"%s\"", v, t_rc_name(fd), fd,
                  fd < 0 ? locking_last_error() : "");
            if (fd >= 0)
                CHECK_RC(close_locked_fd(fd), LOCKING_OK);
            free(f);
        }
        t_child_exit();
    }
    t_wait_child(c, "13: huge timeouts on a free lock");
    char *err = read_all(errf);
    bool quiet = err != NULL && strstr(err, "panic") == NULL;
    CHECK(quiet, "13: nothing panicked (stderr: \"%.300s\")", err ? one_line(err) : "(unreadable)");
    free(err);
    unlink(errf);
    free(errf);
    free(dir);
}


static void huge_busy(int m, double v)
{
    char *dir = t_fresh_path("huge-busy");
    Locker *h = t_locker("busy", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    CHECK_RC(locker_lock(h), LOCKING_OK);
    t_pipe p = t_pipe_new();
    pid_t w = t_fork();
    if (w == 0) {
        Locker *l = NULL;
        int rc = locker_new("busy", dir, "ns", v, LOCKING_NEVER_EXPIRE, m, &l);
        CHECK(rc == LOCKING_OK, "13: locker_new(timeout=%g) = %s", v, t_rc_name(rc));
        if (rc == LOCKING_OK) {
            t_send(&p, 'w'); /* about to lock */
            rc = locker_lock(l);
            CHECK(rc == LOCKING_OK, "13: waiter with timeout %g on a busy lock gets "
                  "it when the holder releases: %s (%d) \"%s\"", v, t_rc_name(rc), rc,
                  rc ? locking_last_error() : "");
            if (rc == LOCKING_OK)
                CHECK_RC(locker_unlock(l), LOCKING_OK);
            locker_free(l);
        } else {
            t_send(&p, 'w');
        }
        t_child_exit();
    }
    t_expect(&p, 'w', "waiter about to lock");
    /* preferably release while the waiter sleeps in its wait (not needed
     * for correctness: a release before it looks is fine too) */
    double until = t_now() + 2.0;
    while (t_proc_state(w) == 'R' && t_now() < until)
        t_sleep(0.001);
    CHECK_RC(locker_unlock(h), LOCKING_OK);
    t_wait_child(w, "13: waiter with a huge timeout");
    locker_free(h);
    t_pipe_close(&p);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 14. the lock directory renamed away and recreated                   */

static void dir_replaced(int m, int round)
{
    static const char *const what[] = { "locker_check", "locker_refresh", "locker_unlock" };
    char *dir = t_fresh_path("replaced-dir");
    char *old = NULL;
    if (asprintf(&old, "%s.old", dir) < 0)
        FATAL("asprintf");
    Locker *h = t_locker("N", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    CHECK_RC(locker_lock(h), LOCKING_OK);
    if (rename(dir, old) != 0)
        FATAL("rename %s %s", dir, old);
    mkdir_or_die(dir);
    Locker *n = t_locker("N", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    int nrc = locker_lock(n);
    CHECK(nrc == LOCKING_OK, "14: a new Locker locks N in the recreated directory: %s",
          t_rc_name(nrc));
    int rc;
    switch (round) {
    case 0: rc = locker_check(h); break;
    case 1: rc = locker_refresh(h); break;
    default: rc = locker_unlock(h); break;
    }
    CHECK(rc == LOCKING_E_LOCK_LOST,
          "14: lock directory renamed away and recreated, a new holder in it: "
          "the old holder's %s: want LOCKING_E_LOCK_LOST, got %s (%d)",
          what[round], t_rc_name(rc), rc);
    if (nrc == LOCKING_OK)
        CHECK_RC(locker_unlock(n), LOCKING_OK);
    locker_free(n);
    locker_free(h);
    free(old);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 16. descriptors                                                     */

static void tmp_removal_leak(void)
{
    int m = LOCKING_METHOD_MKDIR;
    t_method_label = t_method_name(m);
    char *dir = t_fresh_path("leak");
    char *tmp = NULL;
    if (asprintf(&tmp, "%s/~tmp", dir) < 0)
        FATAL("asprintf");
    Locker *l = t_locker("leak", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    int before = -1, bad = 0, rmdirs = 0;
    for (int i = -1; i < 200; i++) {
        if (i == 0)
            before = t_count_entries("/proc/self/fd");
        int rc = locker_lock(l);
        if (!CHECK_RC_QUIET(rc, LOCKING_OK) || !CHECK_RC_QUIET(locker_unlock(l), LOCKING_OK)) {
            bad++;
            break;
        }
        if (rmdir(tmp) == 0)
            rmdirs++;
        else
            CHECK_QUIET(errno == ENOENT, "16: rmdir %s: %s", tmp, strerror(errno));
    }
    int after = t_count_entries("/proc/self/fd");
    CHECK(bad == 0, "16: 201 rounds of lock/unlock");
    t_note("16: removed ~tmp %d times", rmdirs);
    CHECK(before >= 0 && after >= 0 && after <= before + 2,
          "16: 200 removals of ~tmp/ while a mkdir Locker lives: %d descriptors "
          "before, %d after", before, after);
    locker_free(l);
    free(tmp);
    free(dir);
}

/* Each scenario runs in its own child process, so that a failure (e.g. a
 * descriptor table left inconsistent by the library) cannot spill into the
 * next one. */
#define ISOLATED(what, call)                                                  \
    do {                                                                      \
        pid_t iso_ = t_fork();                                                \
        if (iso_ == 0) {                                                      \
            call;                                                             \
            t_child_exit();                                                   \
        }                                                                     \
        t_wait_child(iso_, what);                                             \
    } while (0)

int main(int argc, char **argv)
{
    t_init(argc, argv);
    double t0 = t_now();
    FOR_EACH_REAL_METHOD(m) {
        ISOLATED("scenario 6a/6b: hard links", hard_links(m));
        ISOLATED("scenario 6c: renamed directory", renamed_dir(m));
        ISOLATED("scenario 11: plain close, number reused", plain_close_reuse(m));
        ISOLATED("scenario 12: file replaced while waiting", deleted_while_waiting(m, true));
        ISOLATED("scenario 12: file deleted while waiting", deleted_while_waiting(m, false));
        ISOLATED("scenario 13: huge timeouts, free lock", huge_free(m));
        ISOLATED("scenario 13: timeout 1e19, busy lock", huge_busy(m, 1e19));
        ISOLATED("scenario 13: timeout +inf, busy lock", huge_busy(m, INFINITY));
        for (int round = 0; round < 3; round++)
            ISOLATED("scenario 14: lock directory replaced", dir_replaced(m, round));
    }
    ISOLATED("scenario 10: planted hard link", planted_hard_link());
    ISOLATED("scenario 16: descriptor leak", tmp_removal_leak());
    int rc = t_done();
    int checks = atomic_load(&t_checks), failed = atomic_load(&t_failures);
    printf("test_files: %d passed, %d failed (%.2f s)\n", checks - failed, failed,
           t_now() - t0);
    return rc;
}
