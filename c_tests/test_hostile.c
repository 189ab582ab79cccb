/*
 * A hostile shared lock directory (mode 1777, or 0777 where the attack
 * needs to rename other parties' entries): whatever another user of the
 * directory plants there, the library must never create, truncate, follow
 * or delete anything outside the lock directory, must never hang past its
 * timeout or crash, and must never take a garbage owner record for a dead
 * holder. For every real method:
 *
 *   - a symlink at the lock entry (computed as docs/FORMAT.md, "Entry
 *     names", documents it) pointing at a file, a directory, or a missing
 *     path outside: locking fails with a clear code; the sentinels outside
 *     (content, mtime, ctime, existence, entry count) are untouched; also
 *     through open_locked_fd;
 *   - a symlink at `~tmp`, and symlinks inside `~tmp` where the waiters'
 *     sweep looks (`~tmp/t-<token>` -> a directory outside that holds a
 *     dead-looking `o.<token>`; `~tmp/t-<token>/o.<token>` -> a file
 *     outside; a FIFO there): nothing outside is touched, nothing hangs;
 *   - the entry replaced by a symlink while the lock is held: check,
 *     refresh and unlock report LOCKING_E_LOCK_LOST and do not act on the
 *     symlink's target;
 *   - a regular file where a directory is expected and vice versa, a FIFO
 *     at the entry or at the mkdir record: a clear error, or an unknown
 *     holder (LOCKING_E_LOCKER_FAILED after the timeout), never a hang;
 *   - garbage owner records (random bytes, empty, truncated, huge or
 *     negative PIDs, another host / machine / PID namespace, NUL bytes,
 *     bad UTF-8, oversized, bad token, NaN time, junk after `end`): the
 *     holder is unknown, so a waiter without expire times out (>= timeout,
 *     < 3 s) and leaves the entry as it was, and a waiter with expire
 *     breaks it once it is older than that. Controls: a record of a really
 *     dead holder IS broken at once, so the checks can see a break;
 *   - lock entries, the `~tmp` directory, created lock directories and
 *     files from open_locked_fd honour the umask (022 and 077), and the
 *     library never calls umask() (interposed here and counted; and the
 *     umask read from /proc/self/status is unchanged).
 *
 * Every scenario runs in a forked child under a watchdog, so a hang or a
 * crash is a failing check; each also checks that it leaked no descriptor.
 */
#include "harden.h"

#include <sys/sysmacros.h>

/* ------------------------------------------------------------------ */
/* the library must never call umask(): calls from liblocking.so bind to
 * this definition (symbol interposition) and are counted.             */

static atomic_int umask_calls;

mode_t umask(mode_t mask)
{
    atomic_fetch_add(&umask_calls, 1);
    return (mode_t)syscall(SYS_umask, (unsigned)mask);
}

/* ------------------------------------------------------------------ */
/* the world outside the lock directories                              */

#define TOKEN_HEX "0123456789abcdef0123456789abcdef"
#define TOKEN_HEX2 "fedcba9876543210fedcba9876543210"
#define SHORT_TIMEOUT 0.2
#define SLOW_LIMIT 3.0

static char *outside;      /* a directory nobody may touch */
static char *sent_file;    /* outside/sentinel.txt */
static char *sent_dir;     /* outside/sentdir/ (with keep.txt inside) */
static char *sent_keep;    /* outside/sentdir/keep.txt */
static char *sent_missing; /* outside/missing: must never be created */
static char *trap_dir;     /* outside/trap/ with o.<TOKEN_HEX>, a dead record */
static char *trap_rec;     /* outside/trap/o.<TOKEN_HEX> */
static h_identity me;

#define N_SNAPS 7
typedef struct {
    h_snap s[N_SNAPS];
} world;

static world snap_world(void)
{
    world w;
    const char *paths[N_SNAPS] = { outside,      sent_file, sent_dir, sent_keep,
                                   sent_missing, trap_dir,  trap_rec };
    for (int i = 0; i < N_SNAPS; i++)
        w.s[i] = h_snapshot(paths[i]);
    return w;
}

static void check_world(const world *w, const char *what)
{
    for (int i = 0; i < N_SNAPS; i++)
        H_UNTOUCHED(w->s[i], "%s", what);
}

static void write_bytes(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        FATAL("open %s", path);
    if (len > 0 && write(fd, data, len) != (ssize_t)len)
        FATAL("write %s", path);
    close(fd);
}

/* A record of a holder that is really dead (an earlier boot of this very
 * machine): the library breaks it at once. */
static char *dead_boot_record(const char *method)
{
    h_rec_fields f = { 0 };
    f.method = method;
    f.boot = "00000000-0000-0000-0000-000000000000";
    return h_record(&f);
}

/* (Re)creates outside/trap/o.<TOKEN_HEX>, an old file holding a dead
 * holder's record. */
static void restore_trap(void)
{
    char *rec = dead_boot_record("mkdir");
    unlink(trap_rec);
    t_write_file(trap_rec, rec);
    free(rec);
    h_age(trap_rec, 1000);
    h_age(trap_dir, 1000);
}

static void make_world(void)
{
    outside = t_fresh_dir("outside");
    sent_file = t_sub_path(outside, "sentinel.txt");
    t_write_file(sent_file, "precious content\n");
    sent_dir = t_sub_path(outside, "sentdir");
    if (mkdir(sent_dir, 0755) != 0)
        FATAL("mkdir %s", sent_dir);
    sent_keep = t_sub_path(outside, "sentdir/keep.txt");
    t_write_file(sent_keep, "keep me\n");
    sent_missing = t_sub_path(outside, "missing");
    trap_dir = t_sub_path(outside, "trap");
    if (mkdir(trap_dir, 0755) != 0)
        FATAL("mkdir %s", trap_dir);
    trap_rec = t_sub_path(outside, "trap/o." TOKEN_HEX);
    restore_trap();
    /* old times everywhere, so that any touch shows */
    h_age(sent_file, 1000);
    h_age(sent_keep, 1000);
    h_age(sent_dir, 1000);
    h_age(outside, 1000);
}

/* A fresh lock directory with `mode` (01777 or 0777), made here. */
static char *hostile_dir(mode_t mode)
{
    char *d = t_fresh_dir("lockdir");
    if (chmod(d, mode) != 0)
        FATAL("chmod %s", d);
    return d;
}

static char *entry_path(const char *dir, const char *ns, const char *obj)
{
    char name[256];
    h_entry_name(name, sizeof name, ns, obj);
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        FATAL("asprintf");
    return p;
}

static bool is_clear_error(int rc)
{
    return (rc == LOCKING_E_INVALID_ARGUMENT || rc == LOCKING_E_IO ||
            rc == LOCKING_E_LOCKER_FAILED || rc == LOCKING_E_CANNOT_GET_LOCK) &&
           locking_last_error()[0] != '\0';
}

/* Locks (dir, ns "h", "x") once; returns the code and frees the Locker
 * (unlocking first if it got the lock). */
static int lock_once(const char *dir, int m, double timeout, double expire,
                     double *elapsed)
{
    Locker *l = t_locker("x", dir, "h", timeout, expire, m);
    double t0 = t_now();
    int rc = locker_lock(l);
    if (elapsed)
        *elapsed = t_now() - t0;
    if (rc == LOCKING_OK)
        CHECK_RC(locker_unlock(l), LOCKING_OK);
    locker_free(l);
    return rc;
}

typedef struct {
    int method;
    int variant;
} sc_arg;

/* ------------------------------------------------------------------ */
/* 1. a symlink at the entry                                           */

static void sc_symlink_entry(void *p)
{
    sc_arg *a = p;
    int m = a->method;
    t_method_label = t_method_name(m);
    int fds0 = h_count_fds();
    const char *targets[] = { sent_file, sent_dir, sent_missing };
    const char *names[] = { "a file outside", "a directory outside", "a missing path outside" };
    for (int ti = 0; ti < 3; ti++) {
        for (int ex = 0; ex < 2; ex++) {
            world w = snap_world();
            char *dir = hostile_dir(01777);
            char *E = entry_path(dir, "h", "x");
            if (symlink(targets[ti], E) != 0)
                FATAL("symlink");
            double expire = 0.0;
            if (ex) {
                h_age(E, 100); /* "older than expire", if it were a lock */
                expire = 1.0;
            }
            int rc = lock_once(dir, m, SHORT_TIMEOUT, expire, NULL);
            CHECK(rc != LOCKING_OK && is_clear_error(rc),
                  "symlink at the entry to %s, expire %g: lock -> %s (want a clear "
                  "error), last_error=\"%s\"",
                  names[ti], expire, t_rc_name(rc), locking_last_error());
            char what[200];
            snprintf(what, sizeof what, "after locking with a symlink at the entry to %s, expire %g",
                     names[ti], expire);
            check_world(&w, what);
            free(E);
            free(dir);
        }
    }
    H_NO_FD_LEAK(fds0);
}

/* The same through open_locked_fd: the file's entry (ns "", objname =
 * "inode:<dev>:<ino>" on a local file system, see docs/FORMAT.md "Entry names")
 * in a hostile lock directory is a symlink. */
static void sc_symlink_open_locked(void *p)
{
    sc_arg *a = p;
    int m = a->method;
    t_method_label = t_method_name(m);
    char *fdir = t_fresh_dir("files");
    char *file = t_sub_path(fdir, "f");
    t_write_file(file, "data\n");
    struct stat fst;
    if (stat(file, &fst) != 0)
        FATAL("stat");
    char objname[64];
    snprintf(objname, sizeof objname, "inode:%llu:%llu", (unsigned long long)fst.st_dev,
             (unsigned long long)fst.st_ino);
    char probe[1024];
    snprintf(probe, sizeof probe, "l-=");
    h_enc(probe, sizeof probe, objname);
    int fds0 = h_count_fds();
    for (int ti = 0; ti < 2; ti++) {
        world w = snap_world();
        char *dir = hostile_dir(01777);
        char *E = t_sub_path(dir, probe);
        if (symlink(ti == 0 ? sent_file : sent_missing, E) != 0)
            FATAL("symlink");
        int fd = open_locked_fd(file, SHORT_TIMEOUT, dir, 0.0, m);
        CHECK(fd < 0 && is_clear_error(fd),
              "open_locked_fd with a symlink at its entry (to %s) -> %d %s, last_error=\"%s\"",
              ti == 0 ? "a file" : "a missing path", fd, fd < 0 ? t_rc_name(fd) : "(an fd)",
              locking_last_error());
        if (fd >= 0)
            close_locked_fd(fd);
        check_world(&w, "after open_locked_fd with a symlinked entry");
        free(E);
        free(dir);
    }
    H_NO_FD_LEAK(fds0);
    free(file);
    free(fdir);
}

/* ------------------------------------------------------------------ */
/* 2. `~tmp` is a symlink                                              */

static void sc_tmp_symlink(void *p)
{
    sc_arg *a = p;
    int m = a->method;
    t_method_label = t_method_name(m);
    int fds0 = h_count_fds();
    const char *targets[] = { sent_dir, sent_missing, sent_file };
    const char *names[] = { "a directory outside", "a missing path outside",
                            "a file outside" };
    for (int ti = 0; ti < 3; ti++) {
        world w = snap_world();
        char *dir = hostile_dir(01777);
        char *tmp = t_sub_path(dir, "~tmp");
        if (symlink(targets[ti], tmp) != 0)
            FATAL("symlink");
        int rc = lock_once(dir, m, SHORT_TIMEOUT, 0.0, NULL);
        CHECK(rc == LOCKING_OK || is_clear_error(rc),
              "~tmp is a symlink to %s: lock -> %s (OK or a clear error), last_error=\"%s\"",
              names[ti], t_rc_name(rc), rc == LOCKING_OK ? "" : locking_last_error());
        char what[200];
        snprintf(what, sizeof what, "after locking with ~tmp a symlink to %s", names[ti]);
        check_world(&w, what);
        free(tmp);
        free(dir);
    }
    H_NO_FD_LEAK(fds0);
}

/* ------------------------------------------------------------------ */
/* 3. symlinks and FIFOs inside `~tmp`, where the waiters' sweep looks.
 * The sweep runs at most once a second per process, at the first wait:
 * each variant runs in a fresh child whose parent never waited.       */

enum { SWEEP_DIR_LINK, SWEEP_REC_LINK, SWEEP_REC_FIFO, N_SWEEP };

static void sc_sweep(void *p)
{
    sc_arg *a = p;
    int m = LOCKING_METHOD_MKDIR; /* the only method with a ~tmp */
    t_method_label = t_method_name(m);
    int fds0 = h_count_fds();
    world w = snap_world();
    char *dir = hostile_dir(01777);
    char *tmp = t_sub_path(dir, "~tmp");
    if (mkdir(tmp, 0777) != 0)
        FATAL("mkdir ~tmp");
    /* A genuine leftover of a dead party: the sweep removes it, which
     * shows that the sweep ran. */
    char *real_left = t_sub_path(dir, "~tmp/t-" TOKEN_HEX2);
    char *real_rec = t_sub_path(dir, "~tmp/t-" TOKEN_HEX2 "/o." TOKEN_HEX2);
    if (mkdir(real_left, 0777) != 0)
        FATAL("mkdir");
    char *rec = dead_boot_record("mkdir");
    t_write_file(real_rec, rec);
    free(rec);
    char *t = t_sub_path(dir, "~tmp/t-" TOKEN_HEX);
    const char *what = "?";
    switch (a->variant) {
    case SWEEP_DIR_LINK:
        /* ~tmp/t-<T> -> outside/trap, which holds a dead record o.<T> */
        what = "~tmp/t-<T> a symlink to a directory outside holding a dead o.<T>";
        if (symlink(trap_dir, t) != 0)
            FATAL("symlink");
        h_age(t, 1000);
        break;
    case SWEEP_REC_LINK: {
        what = "~tmp/t-<T>/o.<T> a symlink to a file outside (with a dead record)";
        if (mkdir(t, 0777) != 0)
            FATAL("mkdir");
        char *o = t_sub_path(t, "o." TOKEN_HEX);
        if (symlink(trap_rec, o) != 0)
            FATAL("symlink");
        h_age(t, 1000);
        free(o);
        break;
    }
    case SWEEP_REC_FIFO: {
        what = "~tmp/t-<T>/o.<T> a FIFO";
        if (mkdir(t, 0777) != 0)
            FATAL("mkdir");
        char *o = t_sub_path(t, "o." TOKEN_HEX);
        if (mkfifo(o, 0666) != 0)
            FATAL("mkfifo");
        h_age(t, 1000);
        free(o);
        break;
    }
    }
    /* a live holder (this process), and a waiter that has to wait */
    Locker *holder = t_locker("x", dir, "h", 0.0, 0.0, m);
    CHECK_RC(locker_lock(holder), LOCKING_OK);
    Locker *waiter = t_locker("x", dir, "h", SHORT_TIMEOUT, 0.0, m);
    double t0 = t_now();
    int rc = locker_lock(waiter);
    double el = t_now() - t0;
    CHECK(rc == LOCKING_E_LOCKER_FAILED && el >= SHORT_TIMEOUT * 0.99 && el < SLOW_LIMIT,
          "%s: a waiter on a held lock -> %s after %.3f s (want LOCKER_FAILED after "
          ">= %.1f s, < %.0f s)",
          what, t_rc_name(rc), el, SHORT_TIMEOUT, SLOW_LIMIT);
    struct stat st;
    CHECK(lstat(real_left, &st) != 0,
          "%s: the sweep ran (it removed a dead party's genuine leftover)", what);
    CHECK_RC(locker_unlock(holder), LOCKING_OK);
    locker_free(waiter);
    locker_free(holder);
    char w_what[200];
    snprintf(w_what, sizeof w_what, "after a sweep with %s", what);
    check_world(&w, w_what);
    H_NO_FD_LEAK(fds0);
    free(t);
    free(real_rec);
    free(real_left);
    free(tmp);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 4. the entry is replaced by a symlink while the lock is held (a 0777
 * directory: anybody may rename anybody's entries)                    */

static void sc_replaced_while_held(void *p)
{
    sc_arg *a = p;
    int m = a->method;
    t_method_label = t_method_name(m);
    int fds0 = h_count_fds();
    char *dir = hostile_dir(0777);
    char *E = entry_path(dir, "h", "x");
    char *away = t_sub_path(dir, "moved-away");
    /* a directory outside, made to look like the entry (mkdir looks for
     * o.<token> inside it) */
    char *decoy = t_fresh_dir("decoy");
    Locker *l = t_locker("x", dir, "h", 0.0, 0.0, m);
    CHECK_RC(locker_lock(l), LOCKING_OK);
    const char *target = sent_file;
    char *decoy_rec = NULL;
    if (m == LOCKING_METHOD_MKDIR) {
        DIR *d = opendir(E);
        if (d == NULL)
            FATAL("opendir %s", E);
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strncmp(e->d_name, "o.", 2) == 0)
                decoy_rec = t_sub_path(decoy, e->d_name);
        closedir(d);
        if (decoy_rec == NULL)
            FATAL("no o.<token> in %s", E);
        t_write_file(decoy_rec, "not a lock, the decoy's own file\n");
        h_age(decoy_rec, 1000);
        h_age(decoy, 1000);
        target = decoy;
    }
    world w = snap_world();
    h_snap sd = h_snapshot(decoy);
    h_snap sr = h_snapshot(decoy_rec ? decoy_rec : decoy);
    if (rename(E, away) != 0)
        FATAL("rename %s", E);
    if (symlink(target, E) != 0)
        FATAL("symlink");
    CHECK_RC(locker_check(l), LOCKING_E_LOCK_LOST);
    CHECK_RC(locker_refresh(l), LOCKING_E_LOCK_LOST);
    CHECK_RC(locker_unlock(l), LOCKING_E_LOCK_LOST);
    check_world(&w, "entry replaced by a symlink while held, then check/refresh/unlock");
    H_UNTOUCHED(sd, "the decoy directory after check/refresh/unlock through a symlinked entry");
    H_UNTOUCHED(sr, "the decoy's o.<token> after check/refresh/unlock through a symlinked entry");
    /* lock again with the same Locker (the kernel method keeps its file) */
    int rc = locker_lock(l);
    CHECK(rc != LOCKING_OK && is_clear_error(rc),
          "relock with a symlink at the entry -> %s (want a clear error)", t_rc_name(rc));
    if (rc == LOCKING_OK)
        locker_unlock(l);
    check_world(&w, "relock through a symlinked entry");
    H_UNTOUCHED(sr, "the decoy's o.<token> after relocking");
    locker_free(l);
    H_NO_FD_LEAK(fds0);
    free(decoy_rec);
    free(decoy);
    free(away);
    free(E);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 5. wrong file types and FIFOs                                       */

static void sc_wrong_types(void *p)
{
    sc_arg *a = p;
    int m = a->method;
    t_method_label = t_method_name(m);
    int fds0 = h_count_fds();
    world w = snap_world();
    double el;
    int rc;

    /* a FIFO at the entry: opening it must not block */
    {
        char *dir = hostile_dir(01777);
        char *E = entry_path(dir, "h", "x");
        if (mkfifo(E, 0666) != 0)
            FATAL("mkfifo");
        rc = lock_once(dir, m, SHORT_TIMEOUT, 0.0, &el);
        CHECK(rc != LOCKING_OK && is_clear_error(rc) && el < SLOW_LIMIT,
              "a FIFO at the entry: lock -> %s after %.3f s (want a clear error), "
              "last_error=\"%s\"",
              t_rc_name(rc), el, locking_last_error());
        rc = lock_once(dir, m, 0.0, 0.0, &el);
        CHECK(rc != LOCKING_OK && is_clear_error(rc) && el < SLOW_LIMIT,
              "a FIFO at the entry, timeout 0: lock -> %s after %.3f s", t_rc_name(rc), el);
        free(E);
        free(dir);
    }
    if (m == LOCKING_METHOD_MKDIR) {
        /* a regular file where the entry directory should be */
        char *dir = hostile_dir(01777);
        char *E = entry_path(dir, "h", "x");
        t_write_file(E, "I am not a directory\n");
        rc = lock_once(dir, m, SHORT_TIMEOUT, 0.0, &el);
        CHECK(rc != LOCKING_OK && is_clear_error(rc),
              "a regular file at the entry: lock -> %s, last_error=\"%s\"", t_rc_name(rc),
              locking_last_error());
        free(E);
        free(dir);

        /* a directory where the owner record should be: unknown holder */
        dir = hostile_dir(01777);
        E = entry_path(dir, "h", "x");
        if (mkdir(E, 0755) != 0)
            FATAL("mkdir");
        char *o2 = t_sub_path(E, "o." TOKEN_HEX);
        if (mkdir(o2, 0755) != 0)
            FATAL("mkdir");
        rc = lock_once(dir, m, SHORT_TIMEOUT, 0.0, &el);
        CHECK(rc == LOCKING_E_LOCKER_FAILED && el >= SHORT_TIMEOUT * 0.99 && el < SLOW_LIMIT,
              "a directory as the owner record: lock -> %s after %.3f s (want "
              "LOCKER_FAILED: unknown holder)",
              t_rc_name(rc), el);
        h_age(o2, 100);
        rc = lock_once(dir, m, SHORT_TIMEOUT, 30.0, &el);
        CHECK((rc == LOCKING_OK || is_clear_error(rc)) && el < SLOW_LIMIT,
              "a directory as the owner record, expired: lock -> %s after %.3f s "
              "(OK or a clear error), last_error=\"%s\"",
              t_rc_name(rc), el, rc == LOCKING_OK ? "" : locking_last_error());
        free(o2);

        /* the record is a symlink to a really dead record outside: the
         * library must not read through it (that would be a false dead) */
        char *o3 = t_sub_path(E, "o." TOKEN_HEX);
        rmdir(o3);
        if (symlink(trap_rec, o3) != 0)
            FATAL("symlink");
        rc = lock_once(dir, m, SHORT_TIMEOUT, 0.0, &el);
        CHECK(rc == LOCKING_E_LOCKER_FAILED && el >= SHORT_TIMEOUT * 0.99,
              "the owner record is a symlink to a dead record outside: lock -> %s after "
              "%.3f s (want LOCKER_FAILED: a record read through a symlink is no record)",
              t_rc_name(rc), el);
        free(o3);
        free(E);
        free(dir);

        /* a regular file where ~tmp should be */
        dir = hostile_dir(01777);
        char *tmp = t_sub_path(dir, "~tmp");
        t_write_file(tmp, "not a directory\n");
        rc = lock_once(dir, m, SHORT_TIMEOUT, 0.0, &el);
        CHECK(rc != LOCKING_OK && is_clear_error(rc),
              "a regular file at ~tmp: lock -> %s, last_error=\"%s\"", t_rc_name(rc),
              locking_last_error());
        free(tmp);
        free(dir);
    } else {
        /* a directory where the lock file should be */
        char *dir = hostile_dir(01777);
        char *E = entry_path(dir, "h", "x");
        if (mkdir(E, 0755) != 0)
            FATAL("mkdir");
        rc = lock_once(dir, m, SHORT_TIMEOUT, 0.0, &el);
        CHECK(rc != LOCKING_OK && is_clear_error(rc),
              "a directory at the entry: lock -> %s, last_error=\"%s\"", t_rc_name(rc),
              locking_last_error());
        /* an empty-looking directory with content, expired */
        char *junk = t_sub_path(E, "junk");
        t_write_file(junk, "x\n");
        h_age(E, 100);
        rc = lock_once(dir, m, SHORT_TIMEOUT, 1.0, &el);
        CHECK(rc != LOCKING_OK && is_clear_error(rc),
              "a directory at the entry, expire 1: lock -> %s", t_rc_name(rc));
        free(junk);
        free(E);
        free(dir);
    }
    check_world(&w, "after wrong file types at the entry");
    H_NO_FD_LEAK(fds0);
}

/* A FIFO where the mkdir owner record should be (E/o.<token>): an
 * unknown holder, not a hang in open(). Its own scenario, with a short
 * watchdog, so that a hang does not hide the other checks. */
static void sc_fifo_record(void *p)
{
    (void)p;
    int m = LOCKING_METHOD_MKDIR;
    t_method_label = t_method_name(m);
    int fds0 = h_count_fds();
    char *dir = hostile_dir(01777);
    char *E = entry_path(dir, "h", "x");
    if (mkdir(E, 0755) != 0)
        FATAL("mkdir");
    char *o = t_sub_path(E, "o." TOKEN_HEX);
    if (mkfifo(o, 0666) != 0)
        FATAL("mkfifo");
    double el;
    int rc = lock_once(dir, m, SHORT_TIMEOUT, 0.0, &el);
    CHECK(rc == LOCKING_E_LOCKER_FAILED && el >= SHORT_TIMEOUT * 0.99 && el < SLOW_LIMIT,
          "a FIFO as the owner record: lock -> %s after %.3f s (want LOCKER_FAILED "
          "after the timeout, no hang)",
          t_rc_name(rc), el);
    H_NO_FD_LEAK(fds0);
    free(o);
    free(E);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 6. garbage owner records                                            */

static uint32_t rng_state = 0x9e3779b9u;
static uint32_t rng(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

typedef struct {
    const char *what;
    char *data;
    size_t len;
    bool control; /* a really dead holder: must be broken at once */
} garbage;

static garbage str_garbage(const char *what, char *s, bool control)
{
    garbage g = { what, s, strlen(s), control };
    return g;
}

/* Every variant for `method`; *n receives the count. */
static garbage *make_garbage(const char *method, int *n)
{
    static garbage g[32];
    int k = 0;
    unsigned long long dstart = 0;
    pid_t dpid = h_dead_pid(&dstart);
    char dpid_s[32], dstart_s[32], pidns1[32];
    snprintf(dpid_s, sizeof dpid_s, "%ld", (long)dpid);
    snprintf(dstart_s, sizeof dstart_s, "%llu", dstart);
    snprintf(pidns1, sizeof pidns1, "%llu", me.pidns + 1);
    h_rec_fields dead = { 0 };
    dead.method = method;
    dead.pid = dpid_s;
    dead.start = dstart_s;

    /* controls */
    g[k++] = str_garbage("CONTROL: a record of an earlier boot of this machine",
                         dead_boot_record(method), true);
    g[k++] = str_garbage("CONTROL: a record of a dead process", h_record(&dead), true);

    /* random bytes */
    {
        size_t len = 300;
        char *r = malloc(len);
        for (size_t i = 0; i < len; i++)
            r[i] = (char)(rng() & 0xff);
        garbage x = { "300 random bytes", r, len, false };
        g[k++] = x;
    }
    {
        const char *magic = "liblocking-owner 1\n";
        size_t len = strlen(magic) + 200;
        char *r = malloc(len);
        memcpy(r, magic, strlen(magic));
        for (size_t i = strlen(magic); i < len; i++)
            r[i] = (char)(rng() & 0xff);
        garbage x = { "the magic line, then random bytes", r, len, false };
        g[k++] = x;
    }
    g[k++] = str_garbage("an empty record", strdup(""), false);
    /* a dead holder's record, truncated */
    {
        h_rec_fields f = dead;
        f.no_end = true;
        g[k++] = str_garbage("a dead holder's record without its end line", h_record(&f), false);
        char *full = h_record(&dead);
        full[strlen(full) / 2] = '\0';
        g[k++] = str_garbage("a dead holder's record cut in half", full, false);
    }
    /* PIDs no process can have */
    {
        h_rec_fields f = dead;
        f.pid = "4294967295";
        f.start = "0";
        g[k++] = str_garbage("pid=4294967295 (fits u32, no such process can exist)",
                             h_record(&f), false);
        f.pid = "2147483648";
        g[k++] = str_garbage("pid=2147483648 (above any pid_t)", h_record(&f), false);
        f.pid = "99999999";
        g[k++] = str_garbage("pid=99999999 (above PID_MAX_LIMIT)", h_record(&f), false);
        f.pid = "99999999999999999999";
        g[k++] = str_garbage("pid=99999999999999999999 (overflows)", h_record(&f), false);
        f.pid = "-1";
        g[k++] = str_garbage("pid=-1", h_record(&f), false);
        f.pid = "0";
        g[k++] = str_garbage("pid=0", h_record(&f), false);
    }
    /* a dead process, but judged from elsewhere. Another machine runs
     * another kernel, so it has another boot ID: the same boot ID alone
     * says "this kernel, this boot", whatever host name or machine ID. */
    {
        const char *other_boot = "0badb007-0000-4000-8000-000000000000";
        h_rec_fields f = dead;
        f.host = "some-other-host.invalid";
        f.boot = other_boot;
        g[k++] = str_garbage("a dead pid, but another host", h_record(&f), false);
        f = dead;
        f.machine = "ffffffffffffffffffffffffffffffff";
        f.boot = other_boot;
        g[k++] = str_garbage("a dead pid, but another machine ID", h_record(&f), false);
        f = dead;
        f.machine = "-";
        f.boot = other_boot;
        g[k++] = str_garbage("a dead pid, machine ID unknown, another boot", h_record(&f), false);
        f = dead;
        f.pidns = pidns1;
        g[k++] = str_garbage("a dead pid, but another PID namespace", h_record(&f), false);
        f = dead;
        f.boot = "-";
        g[k++] = str_garbage("a dead pid, boot ID unknown", h_record(&f), false);
    }
    /* malformed fields */
    {
        char *r = h_record(&dead);
        char *host = strstr(r, "host=");
        size_t len = strlen(r);
        host[5] = '\0'; /* a NUL inside the host line */
        garbage x = { "a dead holder's record with a NUL byte", r, len, false };
        g[k++] = x;
        h_rec_fields f = dead;
        f.host = "\xff\xfe";
        g[k++] = str_garbage("invalid UTF-8", h_record(&f), false);
        f = dead;
        f.token = "zz23456789abcdef0123456789abcdef";
        g[k++] = str_garbage("a token that is not hex", h_record(&f), false);
        f = dead;
        f.time = "nan";
        g[k++] = str_garbage("time=nan", h_record(&f), false);
        f = dead;
        char pad[5001];
        memset(pad, 'x', 5000);
        pad[5000] = '\0';
        memcpy(pad, "pad=", 4);
        f.extra_line = pad;
        g[k++] = str_garbage("a dead holder's record over 4096 bytes", h_record(&f), false);
        char *junk = NULL;
        char *base = h_record(&dead);
        if (asprintf(&junk, "%sjunk after end\n", base) < 0)
            FATAL("asprintf");
        free(base);
        g[k++] = str_garbage("junk after the end line", junk, false);
        f = dead;
        f.extra_line = "pid=12abc"; /* a later pid line that is not a number */
        g[k++] = str_garbage("a second, malformed pid line", h_record(&f), false);
    }
    if (k > (int)(sizeof g / sizeof g[0]))
        FATAL("too many garbage variants");
    *n = k;
    return g;
}

/* Plants `g` as the owner record of (dir, "h", "x") for method m, with its
 * mtime `age` seconds ago. The kernel method's lock is held through
 * *hold_fd (an open file description of the test's own). Returns the path
 * of the file holding the record. */
static char *plant(int m, const char *dir, const garbage *g, double age, int *hold_fd)
{
    char *E = entry_path(dir, "h", "x");
    char *rec_path;
    *hold_fd = -1;
    if (m == LOCKING_METHOD_MKDIR) {
        if (mkdir(E, 0755) != 0)
            FATAL("mkdir %s", E);
        rec_path = t_sub_path(E, "o." TOKEN_HEX);
        free(E);
    } else {
        rec_path = E;
    }
    write_bytes(rec_path, g->data, g->len);
    if (age > 0)
        h_age(rec_path, age);
    if (m == LOCKING_METHOD_KERNEL) {
        int fd = open(rec_path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            FATAL("open %s", rec_path);
        struct flock fl = { 0 };
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = 0;
        fl.l_len = 1;
        if (fcntl(fd, F_OFD_SETLK, &fl) != 0)
            FATAL("F_OFD_SETLK");
        *hold_fd = fd;
    }
    return rec_path;
}

static bool same_content(const char *path, const garbage *g)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    char *buf = malloc(g->len + 2);
    ssize_t n = read(fd, buf, g->len + 1);
    close(fd);
    bool same = n == (ssize_t)g->len && memcmp(buf, g->data, g->len) == 0;
    free(buf);
    return same;
}

static void sc_garbage(void *p)
{
    sc_arg *a = p;
    int m = a->method;
    t_method_label = t_method_name(m);
    int fds0 = h_count_fds();
    int n = 0;
    garbage *gs = make_garbage(t_method_name(m), &n);
    for (int i = 0; i < n; i++) {
        const garbage *g = &gs[i];
        if (g->control && !me.have_machine) {
            t_note("SKIP control \"%s\": no /etc/machine-id, so no holder can be "
                   "judged dead here", g->what);
            continue;
        }
        /* (a) no expire: only a really dead holder is broken */
        char *dir = hostile_dir(01777);
        int hold = -1;
        char *rp = plant(m, dir, g, 0, &hold);
        double el;
        int rc = lock_once(dir, m, SHORT_TIMEOUT, 0.0, &el);
        if (g->control) {
            CHECK(rc == LOCKING_OK && el < SLOW_LIMIT,
                  "%s: lock -> %s after %.3f s (want OK at once: the holder is dead)",
                  g->what, t_rc_name(rc), el);
        } else {
            CHECK(rc == LOCKING_E_LOCKER_FAILED && el >= SHORT_TIMEOUT * 0.99 &&
                      el < SLOW_LIMIT,
                  "%s: lock without expire -> %s after %.3f s (want LOCKER_FAILED after "
                  ">= %.1f s: an unknown holder, never a dead one)",
                  g->what, t_rc_name(rc), el, SHORT_TIMEOUT);
            CHECK(same_content(rp, g), "%s: the entry is left as it was", g->what);
        }
        if (hold >= 0)
            close(hold);
        h_rm_rf(dir);
        free(rp);
        free(dir);

        /* (b) with expire, an old lock is broken whoever holds it */
        if (!g->control) {
            dir = hostile_dir(01777);
            rp = plant(m, dir, g, 100, &hold);
            rc = lock_once(dir, m, SHORT_TIMEOUT, 30.0, &el);
            CHECK(rc == LOCKING_OK && el < SLOW_LIMIT,
                  "%s, 100 s old: lock with expire 30 -> %s after %.3f s (want OK: "
                  "expired), last_error=\"%s\"",
                  g->what, t_rc_name(rc), el, rc == LOCKING_OK ? "" : locking_last_error());
            if (hold >= 0)
                close(hold);
            h_rm_rf(dir);
            free(rp);
            free(dir);
        }
    }
    for (int i = 0; i < n; i++)
        free(gs[i].data);
    H_NO_FD_LEAK(fds0);
}

/* ------------------------------------------------------------------ */
/* 7. the umask                                                        */

static void check_mode(const char *path, mode_t want, const char *what)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        CHECK(false, "%s: %s: %s", what, path, strerror(errno));
        return;
    }
    CHECK((st.st_mode & 07777) == want, "%s %s: mode %04o (want %04o)", what, path,
          (unsigned)(st.st_mode & 07777), (unsigned)want);
}

static void sc_umask(void *p)
{
    sc_arg *a = p;
    mode_t um = (mode_t)a->variant;
    h_set_umask(um);
    int fds0 = h_count_fds();
    FOR_EACH_REAL_METHOD(m) {
        char *parent = t_fresh_path("umask");
        char *dir = t_sub_path(parent, "a/b");
        Locker *l = t_locker("x", dir, "h", 0.0, 0.0, m);
        check_mode(parent, 0777 & ~um, "a lock directory's parent created by the library");
        check_mode(dir, 0777 & ~um, "a lock directory created by the library");
        CHECK_RC(locker_lock(l), LOCKING_OK);
        char *E = entry_path(dir, "h", "x");
        if (m == LOCKING_METHOD_MKDIR) {
            check_mode(E, 0777 & ~um, "the mkdir entry");
            DIR *d = opendir(E);
            struct dirent *e;
            while (d != NULL && (e = readdir(d)) != NULL) {
                if (strncmp(e->d_name, "o.", 2) == 0) {
                    char *o = t_sub_path(E, e->d_name);
                    check_mode(o, 0666 & ~um, "the mkdir owner record");
                    free(o);
                }
            }
            if (d != NULL)
                closedir(d);
            char *tmp = t_sub_path(dir, "~tmp");
            check_mode(tmp, 0777 & ~um, "~tmp");
            free(tmp);
        } else {
            check_mode(E, 0666 & ~um, "the lock file");
        }
        CHECK_RC(locker_unlock(l), LOCKING_OK);
        locker_free(l);
        /* open_locked_fd: the file, and its lock entry next to it */
        char *f = t_sub_path(dir, "data");
        int fd = open_locked_fd(f, 0.0, NULL, 0.0, m);
        CHECK(fd >= 0, "open_locked_fd -> %d (%s)", fd, locking_last_error());
        check_mode(f, 0666 & ~um, "a file created by open_locked_fd");
        if (fd >= 0)
            CHECK_RC(close_locked_fd(fd), LOCKING_OK);
        free(f);
        free(E);
        free(dir);
        free(parent);
    }
    CHECK(atomic_load(&umask_calls) == 0, "the library called umask() %d times (want 0)",
          atomic_load(&umask_calls));
    CHECK(h_umask_now() == (int)um, "the umask is still %04o after the calls (now %04o)",
          (unsigned)um, (unsigned)h_umask_now());
    H_NO_FD_LEAK(fds0);
}

/* ------------------------------------------------------------------ */

/* Watchdogs: a scenario takes a few seconds (the garbage records about
 * 5 s); one that blocks forever is killed after this long. */
#define LIMIT 20.0
#define SHORT_LIMIT 10.0

int main(int argc, char **argv)
{
    t_init(argc, argv);
    me = h_me();
    if (!me.have_machine)
        t_note("no /etc/machine-id: no holder can be judged dead here; the controls "
               "that need one are skipped");
    make_world();

    /* The garbage records take longest: one child per method, at once. */
    pid_t gpid[T_N_REAL_METHODS];
    sc_arg gargs[T_N_REAL_METHODS];
    int gi = 0;
    FOR_EACH_REAL_METHOD(m) {
        gargs[gi].method = m;
        gargs[gi].variant = 0;
        gpid[gi] = t_fork();
        if (gpid[gi] == 0) {
            sc_garbage(&gargs[gi]);
            t_child_exit();
        }
        gi++;
    }

    sc_arg arg = { 0, 0 };
    FOR_EACH_REAL_METHOD(m) {
        arg.method = m;
        h_run_bounded("symlink at the entry", sc_symlink_entry, &arg, LIMIT);
        h_run_bounded("symlink at open_locked_fd's entry", sc_symlink_open_locked, &arg, LIMIT);
        h_run_bounded("~tmp a symlink", sc_tmp_symlink, &arg, LIMIT);
        h_run_bounded("entry replaced by a symlink while held", sc_replaced_while_held, &arg,
                      LIMIT);
        h_run_bounded("wrong file types", sc_wrong_types, &arg, LIMIT);
    }
    h_run_bounded("a FIFO as the mkdir owner record", sc_fifo_record, &arg, SHORT_LIMIT);
    for (int v = 0; v < N_SWEEP; v++) {
        arg.variant = v;
        restore_trap();
        h_run_bounded("the sweep of ~tmp", sc_sweep, &arg, SHORT_LIMIT);
    }
    arg.variant = 022;
    h_run_bounded("umask 022", sc_umask, &arg, LIMIT);
    arg.variant = 077;
    h_run_bounded("umask 077", sc_umask, &arg, LIMIT);

    /* collect the garbage-record children, under the same watchdog */
    for (int i = 0; i < gi; i++) {
        t_method_label = t_method_name(gargs[i].method);
        double deadline = t_now() + 2 * LIMIT;
        int st = 0;
        pid_t r;
        while ((r = waitpid(gpid[i], &st, WNOHANG)) == 0 && t_now() < deadline)
            t_sleep(0.01);
        if (r != gpid[i]) {
            t_kill_reap(gpid[i]);
            CHECK(false, "garbage records: still running after %.0f s: a hang", 2 * LIMIT);
        } else if (WIFSIGNALED(st)) {
            CHECK(false, "garbage records: crashed (signal %d)", WTERMSIG(st));
        } else {
            CHECK(WEXITSTATUS(st) == 0, "garbage records: checks %s",
                  WEXITSTATUS(st) == 0 ? "passed" : "FAILED (see above)");
        }
    }
    t_method_label = "-";
    CHECK(atomic_load(&umask_calls) == 0, "no umask() call in the parent either");
    return t_done();
}
