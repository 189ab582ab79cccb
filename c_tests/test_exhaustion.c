/*
 * Running out of things. Each case must give its own clear code and
 * message (errno set for LOCKING_E_IO), leak no descriptor (counted in
 * /proc/self/fd before and after), and leave no half lock behind (no entry
 * but the kernel method's unlocked lock file, an empty `~tmp`), for every
 * real method:
 *
 *   - RLIMIT_NOFILE reached (a low soft limit, the table filled): lock ->
 *     LOCKING_E_IO, errno EMFILE; locker_new and open_locked_fd too; with
 *     one, two, ... descriptors free again, each attempt either works
 *     fully or fails with EMFILE; a waiter on a held lock times out or
 *     fails with EMFILE; once descriptors are free everything works;
 *   - a full file system (a 64 KiB tmpfs, as root in a private mount
 *     namespace; skipped with the reason when it cannot be mounted):
 *     LOCKING_E_IO, errno ENOSPC, no partial entry; works once space is free;
 *   - a read-only mount (the tmpfs remounted ro): LOCKING_E_IO, errno
 *     EROFS, for lock, locker_new (creating the lock directory) and
 *     open_locked_fd; a held mkdir lock whose unlock fails with EROFS is
 *     not left behind as a lock nobody can release;
 *   - the lock directory removed while a lock is held: check and unlock
 *     return a clear code (observed codes are printed as notes), no crash;
 *     a new Locker on that path recreates the directory and works;
 *   - a lock directory path longer than PATH_MAX, or with a component
 *     longer than NAME_MAX: LOCKING_E_IO, errno ENAMETOOLONG;
 *   - a signal handler installed without SA_RESTART firing every
 *     millisecond during a wait: the wait goes on and its timeout holds (a
 *     0.5 s timeout fails with LOCKER_FAILED after >= 0.5 s and < 3 s);
 *     waits that end with a release still succeed.
 *
 * Every scenario runs in a forked child under a watchdog.
 */
#include "harden.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/time.h>

#define LIMIT 30.0

static bool has_msg(void)
{
    return locking_last_error()[0] != '\0';
}

/* CHECK that `rc` is LOCKING_E_IO with errno `want` (read right after the
 * call: pass the saved errno) and a message. */
#define CHECK_IO(rc, err, want, ...)                                          \
    check_io_at((rc), (err), (want), __FILE__, __LINE__, __VA_ARGS__)
static bool check_io_at(int rc, int err, int want, const char *file, int line,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static bool check_io_at(int rc, int err, int want, const char *file, int line,
                        const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return t_report(rc == LOCKING_E_IO && err == want && has_msg(), file, line,
                    "%s -> %s, errno %d (%s) (want LOCKING_E_IO, errno %s), "
                    "last_error=\"%s\"",
                    what, t_rc_name(rc), err, strerror(err), strerrorname_np(want),
                    locking_last_error());
}

/* No half lock in `dir`: nothing but an empty `~tmp` (mkdir) and the
 * kernel method's lock file, which must not be locked. */
static void check_clean(const char *dir, int m, const char *what)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        CHECK(false, "%s: opendir %s: %s", what, dir, strerror(errno));
        return;
    }
    int bad = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = t_sub_path(dir, e->d_name);
        if (strcmp(e->d_name, "~tmp") == 0) {
            int n = t_count_entries(p);
            if (!CHECK(n == 0, "%s: ~tmp holds %d leftovers", what, n))
                bad++;
        } else if (strncmp(e->d_name, "l-", 2) == 0 && m == LOCKING_METHOD_KERNEL) {
            int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            struct flock fl = { 0 };
            fl.l_type = F_RDLCK; /* conflicts with a holder's write lock */
            fl.l_whence = SEEK_SET;
            fl.l_start = 0;
            fl.l_len = 1;
            bool locked = fd < 0 || fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type != F_UNLCK;
            if (fd >= 0)
                close(fd);
            if (!CHECK(!locked, "%s: the kernel lock file %s is not locked", what, e->d_name))
                bad++;
        } else if (strncmp(e->d_name, "l-", 2) == 0 || e->d_name[0] == '~' ||
                   strncmp(e->d_name, "h-", 2) == 0) {
            CHECK(false, "%s: a half lock left behind: %s", what, e->d_name);
            bad++;
        }
        free(p);
    }
    closedir(d);
    if (bad == 0)
        CHECK(true, "%s: no half lock left in the lock directory", what);
}

typedef struct {
    int method;
} sc_arg;

/* ------------------------------------------------------------------ */
/* RLIMIT_NOFILE                                                       */

#define MAX_FILL 4096

static int fill_fds(int *fds)
{
    int n = 0;
    for (;;) {
        if (n >= MAX_FILL)
            FATAL("could not exhaust the descriptor table");
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno != EMFILE)
                FATAL("open /dev/null");
            return n;
        }
        fds[n++] = fd;
    }
}

static void sc_emfile(void *p)
{
    sc_arg *a = p;
    int m = a->method;
    t_method_label = t_method_name(m);
    int fds0 = h_count_fds();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        FATAL("getrlimit");
    struct rlimit low = rl;
    low.rlim_cur = (rlim_t)fds0 + 32;
    if (low.rlim_cur > rl.rlim_max)
        low.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0)
        FATAL("setrlimit");
    char *dir = t_fresh_path("emfile");
    char *other_dir = t_fresh_path("emfile-new");
    char *file = t_path("emfile-data-%s", t_method_name(m));
    t_write_file(file, "data\n");
    /* created while descriptors are still free */
    Locker *l = t_locker("x", dir, "h", 0.0, 0.0, m);
    Locker *holder = t_locker("held", dir, "h", 0.0, 0.0, m);
    Locker *waiter = t_locker("held", dir, "h", 0.3, 0.0, m);
    CHECK_RC(locker_lock(holder), LOCKING_OK);

    int *fill = malloc(sizeof(int) * MAX_FILL);
    int n = fill_fds(fill);
    t_note("the descriptor table is full after %d more descriptors", n);

    int rc = locker_lock(l);
    int err = errno;
    CHECK_IO(rc, err, EMFILE, "locker_lock with no descriptor free");
    if (rc == LOCKING_OK)
        locker_unlock(l);

    Locker *out = (Locker *)(uintptr_t)0x5e5e;
    rc = locker_new("x", other_dir, "h", 0.0, 0.0, m, &out);
    err = errno;
    CHECK_IO(rc, err, EMFILE, "locker_new of a new lock directory with no descriptor free");
    CHECK(out == (Locker *)(uintptr_t)0x5e5e, "locker_new left *out alone");
    if (rc == LOCKING_OK)
        locker_free(out);

    rc = open_locked_fd(file, 0.0, dir, 0.0, m);
    err = errno;
    CHECK_IO(rc, err, EMFILE, "open_locked_fd with no descriptor free");
    if (rc >= 0)
        close_locked_fd(rc);

    double t0 = t_now();
    rc = locker_lock(waiter);
    err = errno;
    double el = t_now() - t0;
    CHECK((rc == LOCKING_E_LOCKER_FAILED && el >= 0.3 * 0.99 && el < 3.0) ||
              (rc == LOCKING_E_IO && err == EMFILE && has_msg()),
          "a waiter on a held lock with no descriptor free -> %s, errno %d, after %.3f s "
          "(want LOCKER_FAILED after the timeout, or E_IO with EMFILE)",
          t_rc_name(rc), err, el);
    if (rc == LOCKING_OK)
        locker_unlock(waiter);

    /* free one descriptor at a time: every attempt works fully or fails
     * with EMFILE, and leaves nothing behind */
    int worked_at = -1;
    for (int k = 1; k <= 6 && n > 0; k++) {
        close(fill[--n]);
        rc = locker_lock(l);
        err = errno;
        if (rc == LOCKING_OK) {
            int urc = locker_unlock(l);
            CHECK(urc == LOCKING_OK, "%d descriptor(s) free: lock worked, unlock -> %s (%s)", k,
                  t_rc_name(urc), urc == LOCKING_OK ? "" : locking_last_error());
            if (worked_at < 0)
                worked_at = k;
        } else {
            CHECK_IO(rc, err, EMFILE, "locker_lock with %d descriptor(s) free", k);
        }
        rc = open_locked_fd(file, 0.0, dir, 0.0, m);
        err = errno;
        if (rc >= 0) {
            CHECK_RC(close_locked_fd(rc), LOCKING_OK);
        } else {
            CHECK_IO(rc, err, EMFILE, "open_locked_fd with %d descriptor(s) free", k);
        }
    }
    t_note("locker_lock first worked with %d descriptor(s) free", worked_at);
    while (n > 0)
        close(fill[--n]);
    free(fill);
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        FATAL("setrlimit");

    CHECK_RC(locker_unlock(holder), LOCKING_OK);
    check_clean(dir, m, "after running out of descriptors");
    CHECK_RC(locker_lock(l), LOCKING_OK);
    CHECK_RC(locker_unlock(l), LOCKING_OK);
    CHECK_RC(locker_lock(waiter), LOCKING_OK);
    CHECK_RC(locker_unlock(waiter), LOCKING_OK);
    int fd = open_locked_fd(file, 0.0, dir, 0.0, m);
    CHECK(fd >= 0, "open_locked_fd works again -> %d", fd);
    if (fd >= 0)
        CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    locker_free(l);
    locker_free(holder);
    locker_free(waiter);
    check_clean(dir, m, "at the end");
    H_NO_FD_LEAK(fds0);
    free(file);
    free(other_dir);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* a private tmpfs                                                     */

/* Mounts a tmpfs of `size` at a fresh directory, in a mount namespace of
 * this (single-threaded, forked) process. NULL, with a note, if that
 * cannot be done here. */
static char *private_tmpfs(const char *size)
{
    if (unshare(CLONE_NEWNS) != 0) {
        t_note("SKIP: cannot make a private mount namespace (unshare: %s); "
               "this needs root (CAP_SYS_ADMIN)",
               strerror(errno));
        return NULL;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        t_note("SKIP: cannot make mounts private (%s)", strerror(errno));
        return NULL;
    }
    char *mnt = t_fresh_dir("mnt");
    char opts[64];
    snprintf(opts, sizeof opts, "size=%s,mode=0755", size);
    if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
        t_note("SKIP: cannot mount a tmpfs (%s)", strerror(errno));
        free(mnt);
        return NULL;
    }
    return mnt;
}

/* Fills the file system holding `path` with a file of that name; returns
 * the bytes written. */
static long fill_fs(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        FATAL("open %s", path);
    char buf[4096];
    memset(buf, 'z', sizeof buf);
    long total = 0;
    for (;;) {
        ssize_t w = write(fd, buf, sizeof buf);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == ENOSPC)
            break;
        if (w <= 0)
            FATAL("write %s", path);
        total += w;
        if (total > 64L * 1024 * 1024)
            FATAL("the file system does not fill up");
    }
    close(fd);
    return total;
}

static void sc_enospc(void *p)
{
    (void)p;
    char *mnt = private_tmpfs("64k");
    if (mnt == NULL)
        return;
    int fds0 = h_count_fds();
    FOR_EACH_REAL_METHOD(m) {
        char name[64];
        snprintf(name, sizeof name, "locks-%s", t_method_name(m));
        char *dir = t_sub_path(mnt, name);
        if (mkdir(dir, 0755) != 0)
            FATAL("mkdir %s", dir);
        char *filler = t_sub_path(mnt, "filler");
        char *data = t_sub_path(mnt, "data");
        t_write_file(data, "");
        long filled = fill_fs(filler);
        t_note("the 64 KiB tmpfs is full after %ld bytes", filled);
        Locker *l = t_locker("x", dir, "h", 0.0, 0.0, m);
        int rc = locker_lock(l);
        int err = errno;
        CHECK_IO(rc, err, ENOSPC, "locker_lock on a full file system");
        if (rc == LOCKING_OK)
            locker_unlock(l);
        check_clean(dir, m, "after a lock failed on a full file system");
        rc = open_locked_fd(data, 0.0, dir, 0.0, m);
        err = errno;
        CHECK_IO(rc, err, ENOSPC, "open_locked_fd on a full file system");
        if (rc >= 0)
            close_locked_fd(rc);
        check_clean(dir, m, "after open_locked_fd failed on a full file system");
        if (unlink(filler) != 0)
            FATAL("unlink filler");
        CHECK_RC(locker_lock(l), LOCKING_OK);
        CHECK_RC(locker_unlock(l), LOCKING_OK);
        int fd = open_locked_fd(data, 0.0, dir, 0.0, m);
        CHECK(fd >= 0, "open_locked_fd works once space is free -> %d", fd);
        if (fd >= 0)
            CHECK_RC(close_locked_fd(fd), LOCKING_OK);
        locker_free(l);
        check_clean(dir, m, "once space was free again");
        h_rm_rf(dir);
        unlink(data);
        free(data);
        free(filler);
        free(dir);
    }
    H_NO_FD_LEAK(fds0);
    umount2(mnt, MNT_DETACH);
    free(mnt);
}

static void sc_erofs(void *p)
{
    (void)p;
    char *mnt = private_tmpfs("1m");
    if (mnt == NULL)
        return;
    int fds0 = h_count_fds();
    char *dir = t_sub_path(mnt, "locks");
    char *data = t_sub_path(mnt, "data");
    char *missing = t_sub_path(mnt, "not/yet");
    char *newfile = t_sub_path(mnt, "new-file");
    if (mkdir(dir, 0755) != 0)
        FATAL("mkdir");
    t_write_file(data, "data\n");
    /* a mkdir lock held across the remount (it keeps no file open for
     * writing, so the remount is allowed) */
    Locker *held = t_locker("held", dir, "h", 0.0, 0.0, LOCKING_METHOD_MKDIR);
    CHECK_RC(locker_lock(held), LOCKING_OK);
    if (mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL) != 0) {
        t_note("SKIP: cannot remount the tmpfs read-only (%s)", strerror(errno));
        locker_free(held);
        return;
    }
    FOR_EACH_REAL_METHOD(m) {
        Locker *l = t_locker("x", dir, "h", 0.0, 0.0, m);
        int rc = locker_lock(l);
        int err = errno;
        CHECK_IO(rc, err, EROFS, "locker_lock on a read-only mount");
        if (rc == LOCKING_OK)
            locker_unlock(l);
        locker_free(l);
        Locker *out = NULL;
        rc = locker_new("x", missing, "h", 0.0, 0.0, m, &out);
        err = errno;
        CHECK_IO(rc, err, EROFS, "locker_new creating a lock directory on a read-only mount");
        if (rc == LOCKING_OK)
            locker_free(out);
        rc = open_locked_fd(data, 0.0, NULL, 0.0, m);
        err = errno;
        CHECK_IO(rc, err, EROFS, "open_locked_fd of an existing file on a read-only mount");
        if (rc >= 0)
            close_locked_fd(rc);
        rc = open_locked_fd(newfile, 0.0, NULL, 0.0, m);
        err = errno;
        CHECK_IO(rc, err, EROFS, "open_locked_fd of a new file on a read-only mount");
        if (rc >= 0)
            close_locked_fd(rc);
    }
    t_method_label = "mkdir";
    int rc = locker_unlock(held);
    int err = errno;
    CHECK_IO(rc, err, EROFS, "locker_unlock of a held mkdir lock on a now read-only mount");
    if (mount(NULL, mnt, NULL, MS_REMOUNT, NULL) != 0)
        FATAL("remount rw");
    /* The lock could not be removed: it must not be stranded. Either the
     * Locker still holds it (a second unlock, or locker_free, releases
     * it), or it is gone: then another Locker gets the name. */
    rc = locker_unlock(held);
    t_note("a second locker_unlock after the mount is writable again -> %s (%s)",
           t_rc_name(rc), rc == LOCKING_OK ? "" : locking_last_error());
    locker_free(held);
    Locker *again = t_locker("held", dir, "h", 0.0, 0.0, LOCKING_METHOD_MKDIR);
    rc = locker_lock(again);
    CHECK(rc == LOCKING_OK,
          "after an unlock that failed with EROFS (mount writable again, first Locker "
          "freed), another Locker gets the lock -> %s (want OK: no lock stranded), "
          "last_error=\"%s\"",
          t_rc_name(rc), rc == LOCKING_OK ? "" : locking_last_error());
    if (rc == LOCKING_OK)
        CHECK_RC(locker_unlock(again), LOCKING_OK);
    locker_free(again);
    H_NO_FD_LEAK(fds0);
    umount2(mnt, MNT_DETACH);
    free(newfile);
    free(missing);
    free(data);
    free(dir);
    free(mnt);
}

/* ------------------------------------------------------------------ */
/* the lock directory removed while a lock is held                     */

static void sc_dir_removed(void *p)
{
    sc_arg *a = p;
    int m = a->method;
    t_method_label = t_method_name(m);
    int fds0 = h_count_fds();
    char *dir = t_fresh_path("removed");
    Locker *l = t_locker("x", dir, "h", 0.0, 0.0, m);
    CHECK_RC(locker_lock(l), LOCKING_OK);
    h_rm_rf(dir);
    struct stat st;
    if (lstat(dir, &st) == 0)
        FATAL("could not remove %s", dir);
    int rc = locker_check(l);
    CHECK(rc == LOCKING_E_LOCK_LOST || (rc == LOCKING_E_IO && has_msg()),
          "locker_check after the lock directory was removed -> %s (want LOCK_LOST or "
          "E_IO), last_error=\"%s\"",
          t_rc_name(rc), locking_last_error());
    rc = locker_unlock(l);
    CHECK(rc == LOCKING_E_LOCK_LOST || (rc == LOCKING_E_IO && has_msg()),
          "locker_unlock after the lock directory was removed -> %s (want LOCK_LOST or "
          "E_IO), last_error=\"%s\"",
          t_rc_name(rc), locking_last_error());
    t_note("observed: unlock after the lock directory was removed -> %s: %s", t_rc_name(rc),
           locking_last_error());
    /* the same Locker locks again: its directory is gone */
    rc = locker_lock(l);
    int err = errno;
    CHECK(rc == LOCKING_OK || (rc == LOCKING_E_IO && has_msg()),
          "relock by the same Locker -> %s, errno %d (OK or E_IO), last_error=\"%s\"",
          t_rc_name(rc), err, rc == LOCKING_OK ? "" : locking_last_error());
    t_note("observed: relock by the same Locker -> %s%s%s", t_rc_name(rc),
           rc == LOCKING_OK ? "" : ": ", rc == LOCKING_OK ? "" : locking_last_error());
    bool old_holds = rc == LOCKING_OK;
    /* a new Locker on the same path recreates the directory */
    Locker *n = t_locker("x", dir, "h", 0.0, 0.0, m);
    rc = locker_lock(n);
    if (old_holds) {
        /* the old Locker recreated the directory and holds the lock there */
        CHECK(rc == LOCKING_E_LOCKER_FAILED,
              "a new Locker while the old one holds the relocked lock -> %s", t_rc_name(rc));
        CHECK_RC(locker_unlock(l), LOCKING_OK);
        rc = locker_lock(n);
    }
    CHECK(rc == LOCKING_OK, "a new Locker on the removed path locks -> %s (%s)",
          t_rc_name(rc), rc == LOCKING_OK ? "" : locking_last_error());
    CHECK(lstat(dir, &st) == 0 && S_ISDIR(st.st_mode), "the lock directory was recreated");
    if (rc == LOCKING_OK) {
        /* while the new one holds it, the old Locker must not get it */
        int orc = locker_lock(l);
        CHECK(orc != LOCKING_OK,
              "the old Locker (directory removed under it) while a new one holds the "
              "lock -> %s (anything but OK)",
              t_rc_name(orc));
        if (orc == LOCKING_OK)
            locker_unlock(l);
        CHECK_RC(locker_unlock(n), LOCKING_OK);
    }
    locker_free(n);
    locker_free(l);
    /* and removed while held, then freed without an unlock */
    Locker *f = t_locker("y", dir, "h", 0.0, 0.0, m);
    CHECK_RC(locker_lock(f), LOCKING_OK);
    h_rm_rf(dir);
    locker_free(f);
    CHECK(true, "locker_free of a held Locker whose directory was removed: no crash");
    H_NO_FD_LEAK(fds0);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* names longer than the system allows                                 */

static void sc_too_long(void *p)
{
    (void)p;
    int fds0 = h_count_fds();
    size_t len = PATH_MAX + 200;
    char *longpath = malloc(len + 1);
    int o = snprintf(longpath, len + 1, "%s/", t_base);
    while ((size_t)o + 2 < len) {
        longpath[o++] = 'd';
        longpath[o++] = '/';
    }
    longpath[o] = '\0';
    char comp[400];
    memset(comp, 'c', 300);
    comp[300] = '\0';
    char *longcomp = t_sub_path(t_base, comp);
    char *longfile = NULL;
    if (asprintf(&longfile, "%sf", longpath) < 0)
        FATAL("asprintf");
    char *shortfile = t_path("toolong-data");
    t_write_file(shortfile, "x\n");
    FOR_EACH_REAL_METHOD(m) {
        Locker *out = (Locker *)(uintptr_t)0x5e5e;
        int rc = locker_new("x", longpath, "h", 0.0, 0.0, m, &out);
        int err = errno;
        CHECK_IO(rc, err, ENAMETOOLONG, "locker_new with a lockdir of %zu bytes",
                 strlen(longpath));
        CHECK(out == (Locker *)(uintptr_t)0x5e5e, "*out left alone");
        if (rc == LOCKING_OK)
            locker_free(out);
        out = (Locker *)(uintptr_t)0x5e5e;
        rc = locker_new("x", longcomp, "h", 0.0, 0.0, m, &out);
        err = errno;
        CHECK_IO(rc, err, ENAMETOOLONG, "locker_new with a 300-byte path component");
        if (rc == LOCKING_OK)
            locker_free(out);
        rc = open_locked_fd(longfile, 0.0, NULL, 0.0, m);
        err = errno;
        CHECK_IO(rc, err, ENAMETOOLONG, "open_locked_fd of a %zu-byte path",
                 strlen(longfile));
        if (rc >= 0)
            close_locked_fd(rc);
        rc = open_locked_fd(shortfile, 0.0, longpath, 0.0, m);
        err = errno;
        CHECK_IO(rc, err, ENAMETOOLONG, "open_locked_fd with a %zu-byte lockdir",
                 strlen(longpath));
        if (rc >= 0)
            close_locked_fd(rc);
    }
    struct stat st;
    CHECK(lstat(longcomp, &st) != 0, "nothing was created for the 300-byte component");
    H_NO_FD_LEAK(fds0);
    free(shortfile);
    free(longfile);
    free(longcomp);
    free(longpath);
}

/* ------------------------------------------------------------------ */
/* signals interrupting a wait                                         */

static atomic_long signals_seen;

static void on_alarm(int sig)
{
    (void)sig;
    atomic_fetch_add(&signals_seen, 1);
}

static void start_signal_storm(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: every blocking call sees EINTR */
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        FATAL("sigaction");
    struct itimerval it = { { 0, 1000 }, { 0, 1000 } };
    if (setitimer(ITIMER_REAL, &it, NULL) != 0)
        FATAL("setitimer");
}

static void stop_signal_storm(void)
{
    struct itimerval it = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &it, NULL);
    signal(SIGALRM, SIG_IGN);
}

typedef struct {
    Locker *holder;
    double delay;
    int rc;
} releaser;

static void *release_later(void *p)
{
    releaser *r = p;
    t_sleep(r->delay); /* the waiter's result does not depend on it */
    r->rc = locker_unlock(r->holder);
    return NULL;
}

static void sc_signals(void *p)
{
    sc_arg *a = p;
    int m = a->method;
    t_method_label = t_method_name(m);
    int fds0 = h_count_fds();
    char *dir = t_fresh_path("signals");
    Locker *holder = t_locker("x", dir, "h", 0.0, 0.0, m);
    CHECK_RC(locker_lock(holder), LOCKING_OK);
    start_signal_storm();

    /* a timed wait: the timeout holds */
    Locker *w = t_locker("x", dir, "h", 0.5, 0.0, m);
    long s0 = atomic_load(&signals_seen);
    double t0 = t_now();
    int rc = locker_lock(w);
    double el = t_now() - t0;
    long sigs = atomic_load(&signals_seen) - s0;
    CHECK(rc == LOCKING_E_LOCKER_FAILED && el >= 0.5 && el < 3.0,
          "a 0.5 s wait under %ld signals -> %s after %.3f s (want LOCKER_FAILED after "
          ">= 0.5 s and < 3 s)",
          sigs, t_rc_name(rc), el);
    CHECK(sigs >= 20, "the signals did interrupt the wait (%ld handled)", sigs);
    locker_free(w);

    /* waits that end with a release: forever (the kernel method blocks in
     * F_OFD_SETLKW), forever with expire (a polling wait), and a long
     * timeout */
    struct {
        double timeout, expire;
        const char *what;
    } waits[] = {
        { LOCKING_WAIT_FOREVER, 0.0, "waiting forever" },
        { LOCKING_WAIT_FOREVER, 3600.0, "waiting forever, expire 3600" },
        { 10.0, 0.0, "timeout 10 s" },
    };
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        if (i > 0)
            CHECK_RC(locker_lock(holder), LOCKING_OK);
        Locker *wl = t_locker("x", dir, "h", waits[i].timeout, waits[i].expire, m);
        releaser r = { holder, 0.3, -99 };
        /* the releasing thread must not take the signals */
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGALRM);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        pthread_t th;
        if (pthread_create(&th, NULL, release_later, &r) != 0)
            FATAL("pthread_create");
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        s0 = atomic_load(&signals_seen);
        t0 = t_now();
        rc = locker_lock(wl);
        el = t_now() - t0;
        sigs = atomic_load(&signals_seen) - s0;
        pthread_join(th, NULL);
        CHECK(rc == LOCKING_OK && el < 5.0,
              "%s under %ld signals, released after ~0.3 s -> %s after %.3f s (want OK)",
              waits[i].what, sigs, t_rc_name(rc), el);
        CHECK(r.rc == LOCKING_OK, "the holder's unlock from another thread -> %s",
              t_rc_name(r.rc));
        if (rc == LOCKING_OK)
            CHECK_RC(locker_unlock(wl), LOCKING_OK);
        locker_free(wl);
    }
    stop_signal_storm();
    locker_free(holder);
    H_NO_FD_LEAK(fds0);
    free(dir);
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    t_init(argc, argv);
    sc_arg arg = { 0 };
    FOR_EACH_REAL_METHOD(m) {
        arg.method = m;
        h_run_bounded("RLIMIT_NOFILE reached", sc_emfile, &arg, LIMIT);
        h_run_bounded("the lock directory removed while held", sc_dir_removed, &arg, LIMIT);
        h_run_bounded("signals during a wait", sc_signals, &arg, LIMIT);
    }
    h_run_bounded("a full file system", sc_enospc, &arg, LIMIT);
    h_run_bounded("a read-only mount", sc_erofs, &arg, LIMIT);
    h_run_bounded("names longer than allowed", sc_too_long, &arg, LIMIT);
    return t_done();
}
