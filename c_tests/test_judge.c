/*
 * Judging a holder (issue 9, "Never two holders"): a holder is dead only on
 * proof, and "same machine, same boot" needs neither /etc/machine-id nor a
 * stable host name. Every scenario uses expire = never, so the only way a
 * waiter may take a held lock is a (correct) verdict "dead".
 *
 *   s1  Waiter short of file descriptors (all methods): a live holder; the
 *       waiter fills its descriptor table (dup until EMFILE) and, with 0..8
 *       descriptors free, tries with timeout 0 (a warm Locker and a fresh
 *       one): never LOCKING_OK (LOCKER_FAILED or E_IO); the holder's
 *       locker_check stays OK. (Old code: /proc/PID/stat cannot be opened,
 *       taken as "no such process", the holder is broken.)
 *   s2  Holder whose main thread called pthread_exit() (all methods): a
 *       worker thread holds the lock, the thread-group leader is a zombie
 *       ("Z" in /proc/PID/stat); a waiter does not get it; once the holder
 *       process is SIGKILLed and reaped the lock is recovered at once.
 *   s3  /proc mounted with hidepid=2 (root; all methods): holder uid 65534,
 *       waiter uid 65533 in a mount namespace whose /proc has hidepid=2, in
 *       a 0777 lock directory: no lock while the (invisible) holder lives,
 *       recovered once it is killed.
 *   s4  Waiter in another time namespace (root; all methods): boottime and
 *       monotonic offsets of 100000 s; the waiter does not get the lock of
 *       a live holder outside (its /proc start times are shifted); once the
 *       holder is killed, the lock is recovered.
 *   s5  PID namespace whose /proc is the parent's (root; all methods):
 *       (a) a holder inside whose namespace PID has no /proc entry: a waiter
 *       in the same namespace does not get the lock; (b) a holder inside
 *       whose namespace PID names an unrelated process in /proc (PID 2,
 *       kthreadd, on a normal host) is SIGKILLed: the waiter recovers the
 *       lock (old code compared the unrelated process's start time: never).
 *   s15 (root; all methods) Empty /etc/machine-id (bind-mounted in a private
 *       mount namespace): a SIGKILLed holder is recovered by a new waiter;
 *       host name changed at run time (UTS namespace): the same.
 *
 * "Must not get it": timeout 0 and 0.2 s, expect LOCKING_E_LOCKER_FAILED.
 * "Must recover": timeout 10 s (an upper bound against a hang; the fixed
 * library recovers at once), expect LOCKING_OK.
 *
 * Namespace work happens in forked children; the test process itself is
 * not changed. Root-only scenarios print a line starting with SKIP when
 * not root or when the kernel lacks the feature. Synchronisation is by
 * pipes and by polling for states (a zombie leader), never by sleeping.
 */
#include "common.h"

#include <ftw.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/utsname.h>

#define NAME "judged"
#define NS "judge"
#define RECOVER_S 10.0
#define HOLDER_UID 65534
#define WAITER_UID 65533

static void skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void skip(const char *fmt, ...)
{
    char msg[1024], buf[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int n = snprintf(buf, sizeof buf, "SKIP [%s] %s [pid %ld]\n", t_method_label,
                     msg, (long)getpid());
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    ssize_t w = write(STDOUT_FILENO, buf, (size_t)n);
    (void)w;
}

/* ------------------------------------------------------------------ */
/* waiter checks                                                       */

/* A waiter (expire never) must not get a lock whose holder lives: timeout
 * 0 and 0.2 s, both LOCKING_E_LOCKER_FAILED. */
static void must_not_get(const char *dir, int m, const char *what)
{
    static const double timeouts[] = { 0.0, 0.2 };
    for (int i = 0; i < 2; i++) {
        Locker *l = t_locker(NAME, dir, NS, timeouts[i], LOCKING_NEVER_EXPIRE, m);
        int rc = locker_lock(l);
        CHECK(rc == LOCKING_E_LOCKER_FAILED,
              "%s: a waiter (timeout %g, expire never) must not get the lock "
              "of a live holder: expected LOCKING_E_LOCKER_FAILED, got %s%s%s%s",
              what, timeouts[i], t_rc_name(rc),
              rc == LOCKING_OK ? " -- TWO HOLDERS" : "",
              rc == LOCKING_OK ? "" : "; last_error=",
              rc == LOCKING_OK ? "" : locking_last_error());
        locker_free(l);
    }
}

/* A waiter (expire never, timeout RECOVER_S) recovers the lock of a holder
 * that is dead (killed and reaped). */
static void must_recover(const char *dir, int m, const char *what)
{
    Locker *l = t_locker(NAME, dir, NS, RECOVER_S, LOCKING_NEVER_EXPIRE, m);
    double t0 = t_now();
    int rc = locker_lock(l);
    double el = t_now() - t0;
    CHECK(rc == LOCKING_OK,
          "%s: a waiter (timeout %g, expire never) must recover the lock of a "
          "dead holder: got %s after %.3f s%s%s",
          what, RECOVER_S, t_rc_name(rc), el,
          rc == LOCKING_OK ? "" : "; last_error=",
          rc == LOCKING_OK ? "" : locking_last_error());
    if (rc == LOCKING_OK)
        CHECK_RC(locker_unlock(l), LOCKING_OK);
    locker_free(l);
}

/* ------------------------------------------------------------------ */
/* a holder process                                                    */

typedef struct {
    t_pipe up, down;
    pid_t pid;
} holder_t;

/* Locks NAME in dir (expire never), reports 'h' (or 'f'), then serves
 * commands: 'c' = locker_check must be OK, answered with 'd'; 'x' (or EOF,
 * or the pipe timeout) = release and exit. uid != 0: becomes that user
 * (and group), with umask 0, first. */
static void holder_body(holder_t *h, const char *dir, int m, uid_t uid)
{
    if (uid != 0) {
        umask(0);
        if (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid(uid) != 0) {
            CHECK(false, "holder: become uid %ld: %s", (long)uid, strerror(errno));
            t_send(&h->up, 'f');
            t_child_exit();
        }
    }
    Locker *l = NULL;
    int rc = locker_new(NAME, dir, NS, 0.0, LOCKING_NEVER_EXPIRE, m, &l);
    if (rc == LOCKING_OK)
        rc = locker_lock(l);
    if (!CHECK(rc == LOCKING_OK, "holder (uid %ld) locks a free lock: %s; last_error=%s",
               (long)getuid(), t_rc_name(rc), rc ? locking_last_error() : "")) {
        t_send(&h->up, 'f');
        t_child_exit();
    }
    t_send(&h->up, 'h');
    for (;;) {
        int c = t_recv_timeout(&h->down, T_PIPE_TIMEOUT_S);
        if (c != 'c')
            break;
        int crc = locker_check(l);
        CHECK(crc == LOCKING_OK,
              "the live holder still holds its lock (locker_check): %s%s",
              t_rc_name(crc), crc == LOCKING_E_LOCK_LOST ? " -- it was BROKEN" : "");
        t_send(&h->up, 'd');
    }
    locker_free(l);
    t_child_exit();
}

static void holder_start(holder_t *h, const char *dir, int m, uid_t uid)
{
    h->up = t_pipe_new();
    h->down = t_pipe_new();
    h->pid = t_fork();
    if (h->pid == 0)
        holder_body(h, dir, m, uid);
    int c = t_recv_timeout(&h->up, T_PIPE_TIMEOUT_S);
    if (c != 'h')
        FATAL("the holder did not lock (got %d)", c);
}

/* Ask the holder whether it still holds (its check prints the line). */
static void holder_ask(holder_t *h)
{
    t_send(&h->down, 'c');
    t_expect(&h->up, 'd', "holder checked its lock");
}

static void holder_end(holder_t *h, const char *what)
{
    t_send(&h->down, 'x');
    t_wait_child(h->pid, what);
    t_pipe_close(&h->up);
    t_pipe_close(&h->down);
}

static void holder_kill(holder_t *h)
{
    t_kill_reap(h->pid);
    t_pipe_close(&h->up);
    t_pipe_close(&h->down);
}

/* Waits for a child and exits with its verdict (for relay processes). */
static void relay_exit(pid_t pid)
{
    int st = 0;
    pid_t r;
    do {
        r = waitpid(pid, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r != pid)
        _exit(1);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

/* A private mount namespace for this process. */
static bool private_mounts(void)
{
    if (unshare(CLONE_NEWNS) != 0)
        return false;
    return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
}

/* ------------------------------------------------------------------ */
/* s1: waiter short of file descriptors                                */

static void s1_no_fds(int m)
{
    char *dir = t_fresh_path("s1");
    holder_t h;
    holder_start(&h, dir, m, 0);

    pid_t w = t_fork();
    if (w == 0) {
        /* warm up: the lock directory is open, the identity computed */
        Locker *lw = t_locker(NAME, dir, NS, 0.0, LOCKING_NEVER_EXPIRE, m);
        CHECK_RC(locker_lock(lw), LOCKING_E_LOCKER_FAILED);

        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
            FATAL("getrlimit");
        if (rl.rlim_cur > 512) {
            rl.rlim_cur = 512;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                FATAL("setrlimit");
        }
        size_t cap = (size_t)rl.rlim_cur + 16;
        int *fds = malloc(cap * sizeof *fds);
        int base = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fds == NULL || base < 0)
            FATAL("setup");
        size_t n = 0;
        bool broken = false;
        for (int k = 0; k <= 8 && !broken; k++) {
            /* fill the table */
            int fd;
            while (n < cap && (fd = fcntl(base, F_DUPFD_CLOEXEC, 0)) >= 0)
                fds[n++] = fd;
            if (errno != EMFILE)
                FATAL("filling the descriptor table did not end in EMFILE");
            /* k descriptors free */
            for (int i = 0; i < k && n > 0; i++)
                close(fds[--n]);

            int rc1 = locker_lock(lw);
            char le1[512];
            snprintf(le1, sizeof le1, "%s", rc1 ? locking_last_error() : "");
            Locker *lf = NULL;
            int rc2 = locker_new(NAME, dir, NS, 0.0, LOCKING_NEVER_EXPIRE, m, &lf);
            if (rc2 == LOCKING_OK)
                rc2 = locker_lock(lf);
            char le2[512];
            snprintf(le2, sizeof le2, "%s", rc2 ? locking_last_error() : "");
            CHECK(rc1 == LOCKING_E_LOCKER_FAILED || rc1 == LOCKING_E_IO,
                  "s1 (waiter out of descriptors, %d free): warm Locker, "
                  "timeout 0, live holder: expected LOCKER_FAILED or E_IO, got %s%s "
                  "(last_error=\"%s\")", k, t_rc_name(rc1),
                  rc1 == LOCKING_OK ? " -- TWO HOLDERS" : "", le1);
            CHECK(rc2 == LOCKING_E_LOCKER_FAILED || rc2 == LOCKING_E_IO,
                  "s1 (waiter out of descriptors, %d free): fresh Locker, "
                  "timeout 0, live holder: expected LOCKER_FAILED or E_IO, got %s%s "
                  "(last_error=\"%s\")", k, t_rc_name(rc2),
                  rc2 == LOCKING_OK ? " -- TWO HOLDERS" : "", le2);
            broken = rc1 == LOCKING_OK || rc2 == LOCKING_OK;
            if (broken) {
                /* give the descriptors back before releasing */
                while (n > 0)
                    close(fds[--n]);
                if (rc1 == LOCKING_OK)
                    locker_unlock(lw);
            }
            locker_free(lf);
        }
        while (n > 0)
            close(fds[--n]);
        close(base);
        free(fds);
        locker_free(lw);
        t_child_exit();
    }
    t_wait_child(w, "s1 waiter out of descriptors");
    holder_ask(&h);
    holder_end(&h, "s1 holder");
    free(dir);
}

/* ------------------------------------------------------------------ */
/* s2: holder whose main thread called pthread_exit()                  */

struct s2_arg {
    const char *dir;
    int m;
    t_pipe *up, *down;
};

static void *s2_worker(void *p)
{
    struct s2_arg *a = p;
    Locker *l = NULL;
    int rc = locker_new(NAME, a->dir, NS, 0.0, LOCKING_NEVER_EXPIRE, a->m, &l);
    if (rc == LOCKING_OK)
        rc = locker_lock(l);
    CHECK(rc == LOCKING_OK, "s2 worker thread locks: %s", t_rc_name(rc));
    t_send(a->up, rc == LOCKING_OK ? 'h' : 'f');
    /* hold until killed */
    t_recv_timeout(a->down, T_PIPE_TIMEOUT_S);
    _exit(0);
}


static void s2_zombie_leader(int m)
{
    char *dir = t_fresh_path("s2");
    t_pipe up = t_pipe_new(), down = t_pipe_new();
    pid_t hp = t_fork();
    if (hp == 0) {
        static struct s2_arg a;
        a.dir = dir;
        a.m = m;
        a.up = &up;
        a.down = &down;
        pthread_t th;
        if (pthread_create(&th, NULL, s2_worker, &a) != 0)
            FATAL("pthread_create");
        pthread_exit(NULL);
    }
    t_expect(&up, 'h', "the worker thread locked");
    /* poll until the thread-group leader is a zombie */
    double until = t_now() + 20.0;
    char st;
    while ((st = t_proc_state(hp)) != 'Z' && t_now() < until)
        t_sleep(0.001);
    CHECK(st == 'Z', "s2: the holder's main thread exited (leader state '%c' "
          "in /proc/%ld/stat), its worker thread holds the lock", st ? st : '?',
          (long)hp);
    must_not_get(dir, m, "s2 (holder's main thread called pthread_exit)");
    t_kill_reap(hp);
    must_recover(dir, m, "s2 (pthread_exit holder SIGKILLed and reaped)");
    t_pipe_close(&up);
    t_pipe_close(&down);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* s3: /proc with hidepid=2                                            */

static bool others_can_reach(const char *path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (;;) {
        struct stat sb;
        if (stat(p, &sb) != 0 || !(sb.st_mode & S_IXOTH))
            return false;
        char *slash = strrchr(p, '/');
        if (slash == NULL || slash == p)
            return true;
        *slash = '\0';
    }
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)f;
    if (flag == FTW_DP)
        rmdir(p);
    else
        unlink(p);
    return 0;
}

/* A lock directory both uids can use (mode 0777, not sticky), under the
 * scratch directory when others can reach it, else under /tmp (*tmp set to
 * what the caller removes afterwards). */
static char *shared_dir(const char *tag, char **tmp)
{
    *tmp = NULL;
    char *p;
    if (others_can_reach(t_base)) {
        p = t_fresh_path(tag);
    } else {
        char templ[] = "/tmp/locking-judge-XXXXXX";
        if (mkdtemp(templ) == NULL)
            FATAL("mkdtemp");
        if (chmod(templ, 0755) != 0)
            FATAL("chmod");
        *tmp = strdup(templ);
        if (asprintf(&p, "%s/%s", templ, tag) < 0)
            FATAL("asprintf");
    }
    if (mkdir(p, 0777) != 0 || chmod(p, 0777) != 0)
        FATAL("mkdir %s", p);
    return p;
}

static void s3_hidepid(int m)
{
    char *tmp;
    char *dir = shared_dir("s3", &tmp);
    holder_t h;
    holder_start(&h, dir, m, HOLDER_UID);
    t_pipe back = t_pipe_new(), go = t_pipe_new();
    pid_t w = t_fork();
    if (w == 0) {
        if (!private_mounts()) {
            skip("s3 hidepid: private mount namespace: %s", strerror(errno));
            t_send(&back, 's');
            t_child_exit();
        }
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "hidepid=2") != 0) {
            skip("s3 hidepid: mount proc with hidepid=2: %s", strerror(errno));
            t_send(&back, 's');
            t_child_exit();
        }
        umask(0);
        if (setgroups(0, NULL) != 0 || setgid(WAITER_UID) != 0 || setuid(WAITER_UID) != 0)
            FATAL("become uid %d", WAITER_UID);
        char p[64];
        snprintf(p, sizeof p, "/proc/%ld", (long)h.pid);
        CHECK(access(p, F_OK) != 0 && access("/proc/self/stat", R_OK) == 0,
              "s3: the holder (uid %d) is invisible to the waiter (uid %d) in "
              "/proc mounted with hidepid=2", HOLDER_UID, WAITER_UID);
        must_not_get(dir, m, "s3 (hidepid=2, holder of another user alive)");
        t_send(&back, '1');
        t_expect(&go, 'k', "holder killed");
        must_recover(dir, m, "s3 (hidepid=2, holder of another user SIGKILLed)");
        t_child_exit();
    }
    int c = t_recv_timeout(&back, T_PIPE_TIMEOUT_S);
    if (c == '1')
        holder_ask(&h);
    holder_kill(&h);
    t_send(&go, 'k');
    t_wait_child(w, "s3 waiter (hidepid=2, other uid)");
    t_pipe_close(&back);
    t_pipe_close(&go);
    if (tmp != NULL) {
        nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(tmp);
    }
    free(dir);
}

/* ------------------------------------------------------------------ */
/* s4: waiter in another time namespace                                */

static void s4_timens(int m)
{
    char *dir = t_fresh_path("s4");
    holder_t h;
    holder_start(&h, dir, m, 0);
    t_pipe back = t_pipe_new(), go = t_pipe_new();
    pid_t c = t_fork();
    if (c == 0) {
        if (unshare(CLONE_NEWTIME) != 0) {
            skip("s4 time namespace: unshare(CLONE_NEWTIME): %s", strerror(errno));
            t_send(&back, 's');
            t_child_exit();
        }
        const char offs[] = "monotonic 100000 0\nboottime 100000 0\n";
        int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, offs, sizeof offs - 1) != (ssize_t)(sizeof offs - 1))
            FATAL("writing /proc/self/timens_offsets");
        close(fd);
        pid_t g = t_fork();
        if (g == 0) {
            /* in the new time namespace */
            struct timespec ts;
            clock_gettime(CLOCK_BOOTTIME, &ts);
            CHECK(ts.tv_sec >= 100000, "s4: the waiter runs in a time namespace "
                  "(CLOCK_BOOTTIME %lld s, offset 100000 s)", (long long)ts.tv_sec);
            must_not_get(dir, m, "s4 (waiter in another time namespace)");
            t_send(&back, '1');
            t_expect(&go, 'k', "holder killed");
            must_recover(dir, m, "s4 (waiter in another time namespace, holder SIGKILLed)");
            t_child_exit();
        }
        relay_exit(g);
    }
    int r = t_recv_timeout(&back, T_PIPE_TIMEOUT_S);
    if (r == '1')
        holder_ask(&h);
    holder_kill(&h);
    t_send(&go, 'k');
    t_wait_child(c, "s4 waiter in a time namespace");
    t_pipe_close(&back);
    t_pipe_close(&go);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* s5: PID namespace whose /proc is the parent's                       */

static bool proc_has(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%ld", (long)pid);
    return access(p, F_OK) == 0;
}

static void proc_comm(pid_t pid, char *out, size_t len)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%ld/comm", (long)pid);
    snprintf(out, len, "?");
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, len - 1);
    close(fd);
    if (n > 0) {
        out[n] = '\0';
        out[strcspn(out, "\n")] = '\0';
    }
}

/* Runs as PID 1 of a new PID namespace that sees the parent's /proc.
 * reverse = false: (a), true: (b). `outside` is the test process's PID,
 * alive all along: for (b) the holder is given that PID in the namespace
 * when ns_last_pid can be set (else the first PID that is in /proc). */
static void s5_inside(const char *dir, int m, bool reverse, pid_t outside)
{
    CHECK(getpid() == 1, "s5: PID 1 of a new PID namespace (host /proc)");
    t_pipe up = t_pipe_new(), down = t_pipe_new();
    if (reverse) {
        /* the sysctl acts on the writer's PID namespace: the next fork here
         * gets PID `outside` */
        int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%ld", (long)outside - 1);
        if (fd < 0 || write(fd, buf, (size_t)len) != len)
            t_note("s5b: cannot set ns_last_pid (%s): taking the first PID "
                   "found in /proc", strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    /* fork candidates (PIDs 2, 3, ... in this namespace) until one has the
     * wanted property as seen in this /proc */
    pid_t x = -1;
    for (int i = 0; i < 5000; i++) {
        pid_t c = t_fork();
        if (c == 0) {
            int cmd = t_recv_timeout(&down, T_PIPE_TIMEOUT_S);
            if (cmd != 'h')
                _exit(0);
            holder_t h = { up, down, 0 };
            holder_body(&h, dir, m, 0);
        }
        bool exists = proc_has(c);
        if (exists == reverse) {
            x = c;
            break;
        }
        t_send(&down, 'n');
        int st;
        while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
        }
    }
    if (x < 0) {
        skip("s5%s: no PID with%s a /proc entry found", reverse ? "b" : "a",
             reverse ? "" : "out");
        return;
    }
    t_send(&down, 'h');
    t_expect(&up, 'h', "s5 holder locked");
    if (!reverse) {
        CHECK(!proc_has(x), "s5a: the holder's PID %ld in the namespace has no "
              "/proc entry (the /proc is the parent namespace's)", (long)x);
        must_not_get(dir, m, "s5a (PID namespace with the parent's /proc, "
                     "holder's PID not in /proc)");
        t_send(&down, 'c');
        t_expect(&up, 'd', "holder checked its lock");
        t_kill_reap(x);
        must_recover(dir, m, "s5a (holder in the PID namespace SIGKILLed)");
    } else {
        char comm[64];
        proc_comm(x, comm, sizeof comm);
        t_note("s5b: the holder has PID %ld in the namespace; /proc/%ld is the "
               "unrelated process \"%s\"", (long)x, (long)x, comm);
        must_not_get(dir, m, "s5b (PID namespace with the parent's /proc, "
                     "holder alive)");
        t_kill_reap(x);
        proc_comm(x, comm, sizeof comm);
        t_note("s5b: holder killed and reaped; /proc/%ld is %s", (long)x,
               proc_has(x) ? comm : "gone");
        must_recover(dir, m, "s5b (PID namespace with the parent's /proc, holder "
                     "whose PID names an unrelated process SIGKILLed)");
    }
    t_pipe_close(&up);
    t_pipe_close(&down);
}

static void s5_pidns(int m, bool reverse)
{
    char *dir = t_fresh_path(reverse ? "s5b" : "s5a");
    pid_t outside = getpid();
    pid_t c = t_fork();
    if (c == 0) {
        if (unshare(CLONE_NEWPID) != 0) {
            skip("s5 PID namespace: unshare(CLONE_NEWPID): %s", strerror(errno));
            t_child_exit();
        }
        pid_t g = t_fork();
        if (g == 0) {
            s5_inside(dir, m, reverse, outside);
            t_child_exit();
        }
        relay_exit(g);
    }
    t_wait_child(c, reverse ? "s5b PID namespace" : "s5a PID namespace");
    free(dir);
}

/* ------------------------------------------------------------------ */
/* s15: empty /etc/machine-id; host name changed at run time           */

/* In the calling (namespaced) process: a holder locks and is SIGKILLed
 * (after `between` ran, if any); a new waiter process must recover. */
static void kill_then_recover(const char *dir, int m, const char *what,
                              void (*between)(void))
{
    holder_t h;
    holder_start(&h, dir, m, 0);
    if (between != NULL)
        between();
    holder_kill(&h);
    pid_t w = t_fork();
    if (w == 0) {
        must_recover(dir, m, what);
        t_child_exit();
    }
    t_wait_child(w, what);
}

static void s15_machine_id(int m)
{
    char *dir = t_fresh_path("s15m");
    char *empty = t_fresh_path("empty-machine-id");
    t_write_file(empty, "");
    pid_t c = t_fork();
    if (c == 0) {
        if (!private_mounts()) {
            skip("s15 empty machine-id: private mount namespace: %s", strerror(errno));
            t_child_exit();
        }
        if (access("/etc/machine-id", F_OK) == 0) {
            if (mount(empty, "/etc/machine-id", NULL, MS_BIND, NULL) != 0)
                FATAL("bind-mount an empty file on /etc/machine-id");
        } else {
            t_note("s15: /etc/machine-id is missing already");
        }
        struct stat sb;
        CHECK(stat("/etc/machine-id", &sb) != 0 || sb.st_size == 0,
              "s15: /etc/machine-id is empty (or missing) in this mount namespace");
        kill_then_recover(dir, m, "s15 (empty /etc/machine-id, holder SIGKILLed)",
                          NULL);
        t_child_exit();
    }
    t_wait_child(c, "s15 empty machine-id");
    unlink(empty);
    free(empty);
    free(dir);
}

static void rename_host(void)
{
    static const char name[] = "changed-name";
    if (sethostname(name, sizeof name - 1) != 0)
        FATAL("sethostname");
}

static void s15_hostname(int m)
{
    char *dir = t_fresh_path("s15h");
    pid_t c = t_fork();
    if (c == 0) {
        if (unshare(CLONE_NEWUTS) != 0) {
            skip("s15 host name: unshare(CLONE_NEWUTS): %s", strerror(errno));
            t_child_exit();
        }
        char before[256] = "";
        gethostname(before, sizeof before - 1);
        if (strcmp(before, "changed-name") == 0)
            FATAL("the host name is \"changed-name\" already");
        kill_then_recover(dir, m, "s15 (host name changed while the holder "
                          "held the lock, holder SIGKILLed)", rename_host);
        t_child_exit();
    }
    t_wait_child(c, "s15 host name changed");
    free(dir);
}

/* ------------------------------------------------------------------ */

static bool kernel_at_least(int major, int minor)
{
    struct utsname u;
    int a = 0, b = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &a, &b) != 2)
        return false;
    return a > major || (a == major && b >= minor);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    double t0 = t_now();
    bool root = geteuid() == 0;
    bool timens = access("/proc/self/ns/time", F_OK) == 0;
    /* Before Linux 5.8 proc's hidepid is per PID namespace, not per mount:
     * the test's private mount would hide processes for the whole system. */
    bool hidepid_per_mount = kernel_at_least(5, 8);
    if (!root)
        skip("s3 s4 s5 s15: not root (uid %ld): namespaces and mounts need root",
             (long)geteuid());
    if (root && !timens)
        skip("s4: this kernel has no time namespaces (/proc/self/ns/time missing)");
    if (root && !hidepid_per_mount)
        skip("s3: kernel older than 5.8: a hidepid=2 proc mount would change "
             "/proc for the whole system");

    FOR_EACH_REAL_METHOD(m) {
        s1_no_fds(m);
        s2_zombie_leader(m);
        if (root) {
            if (hidepid_per_mount)
                s3_hidepid(m);
            if (timens)
                s4_timens(m);
            s5_pidns(m, false);
            s5_pidns(m, true);
            s15_machine_id(m);
            s15_hostname(m);
        }
    }
    int rc = t_done();
    int checks = atomic_load(&t_checks), failed = atomic_load(&t_failures);
    printf("test_judge: %d passed, %d failed (%.2f s)\n", checks - failed,
           failed, t_now() - t0);
    return rc;
}
