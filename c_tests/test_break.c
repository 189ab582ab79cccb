/*
 * Breaking a lock, issue 9: what a waiter may break, and when.
 *
 * Part 1 (scenario 8): coarse timestamps. On a file system with one-second
 * timestamps (ext4 made with 128-byte inodes, a loop image mounted in a
 * private mount namespace of a child process; root only, SKIP otherwise),
 * a holder that refreshes at least every expire/2 is never broken. For
 * every real method, in a few rounds each:
 *   a) expire 0.5 s: the test waits (reading CLOCK_REALTIME in a loop) until
 *      the sub-second part of the clock is in [0.6, 0.9), the holder
 *      refreshes, and at once a waiter (timeout 0, expire 0.5) tries once;
 *   b) expire 1.0 s: the holder refreshes when the sub-second part is in
 *      [0.75, 0.9), and the waiter (timeout 0, expire 1.0) tries once 0.3 s
 *      (CLOCK_MONOTONIC) later, i.e. before the holder's next refresh is due
 *      at expire/2.
 * The waiter must fail with LOCKING_E_LOCKER_FAILED and the holder's
 * locker_check must be LOCKING_OK. (A truncated mtime makes the lock look
 * 0.6 .. 1.0 s, resp. 1.05 .. 1.2 s old, older than expire.) A probe file
 * shows that the file system's timestamps really are whole seconds.
 *
 * Part 2 (scenario 9): kernel method, a dead holder whose child inherited
 * the lock descriptor. A holder process H locks (kernel method), forks a
 * child C that inherits the lock's descriptor (C only blocks reading a
 * pipe), and exits; the test reaps H. A waiter W (another child process)
 * with timeout LOCKING_WAIT_FOREVER and expire LOCKING_NEVER_EXPIRE must get
 * the lock (H is dead) while C still lives, as a waiter with a finite
 * timeout (10 s, the control, run first) does. The parent waits up to 20 s
 * for W's answer; none is a FAIL (a hang). W and C are killed at the end in
 * every case (the test is a child subreaper, so C, orphaned by H, becomes
 * its child and is reaped here).
 */
#include "common.h"
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>

/* ------------------------------------------------------------------ */
/* part 1: one-second timestamps                                       */

static double realtime_frac(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_nsec / 1e9;
}

/* Waits, reading the clock, until the sub-second part of CLOCK_REALTIME is
 * in [lo, hi). */
static void wait_frac(double lo, double hi)
{
    for (;;) {
        double f = realtime_frac();
        if (f >= lo && f < hi)
            return;
        t_sleep(0.001);
    }
}

/* A line starting with SKIP (the set-up cannot run here). */
static void skip(const char *why)
{
    printf("SKIP coarse timestamps: %s\n", why);
}

/* Runs a shell command; its output goes to `log`. true on exit status 0. */
static bool run_cmd(const char *cmd, const char *log)
{
    char *full = NULL;
    if (asprintf(&full, "%s >%s 2>&1", cmd, log) < 0)
        FATAL("asprintf");
    int st = system(full);
    free(full);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        t_note("  | %s", line);
    }
    fclose(f);
}

/* The mtime of a probe file touched now has no sub-second part. */
static bool probe_coarse(const char *probe, long *nsec)
{
    int fd = open(probe, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        FATAL("open %s", probe);
    if (futimens(fd, NULL) != 0)
        FATAL("futimens %s", probe);
    struct stat st;
    if (fstat(fd, &st) != 0)
        FATAL("fstat %s", probe);
    close(fd);
    *nsec = st.st_mtim.tv_nsec;
    return st.st_mtim.tv_nsec == 0;
}

#define COARSE_ROUNDS 3

/* One round of form a (expire 0.5, waiter at once) or b (expire 1.0,
 * waiter 0.3 s after the refresh), all methods at once. */
static void coarse_round(const char *mp, int round, bool form_b)
{
    const double expire = form_b ? 1.0 : 0.5;
    const double lo = form_b ? 0.75 : 0.6, hi = 0.9;
    const char *form = form_b ? "b" : "a";
    Locker *h[T_N_REAL_METHODS];
    char *dirs[T_N_REAL_METHODS];
    FOR_EACH_REAL_METHOD(m) {
        if (asprintf(&dirs[t_mi_], "%s/coarse-%s-%s-%d", mp, form,
                     t_method_name(m), round) < 0)
            FATAL("asprintf");
        h[t_mi_] = t_locker("coarse", dirs[t_mi_], "ns", 0.0,
                            LOCKING_NEVER_EXPIRE, m);
        CHECK_RC_QUIET(locker_lock(h[t_mi_]), LOCKING_OK);
    }

    wait_frac(lo, hi);
    double f_ref = realtime_frac();
    double t_ref = t_now();
    FOR_EACH_REAL_METHOD(m) {
        (void)m;
        CHECK_RC_QUIET(locker_refresh(h[t_mi_]), LOCKING_OK);
    }
    char *probe = NULL;
    if (asprintf(&probe, "%s/probe", mp) < 0)
        FATAL("asprintf");
    long nsec = -1;
    bool coarse = probe_coarse(probe, &nsec);
    free(probe);
    if (form_b) {
        while (t_now() - t_ref < 0.3)
            t_sleep(0.001);
    }
    FOR_EACH_REAL_METHOD(m) {
        Locker *w = t_locker("coarse", dirs[t_mi_], "ns", 0.0, expire, m);
        double age = t_now() - t_ref;
        int rc = locker_lock(w);
        CHECK(rc == LOCKING_E_LOCKER_FAILED,
              "coarse timestamps, form %s round %d: the holder refreshed at "
              "sub-second %.3f, %.3f s ago; a waiter with expire %.1f s "
              "(timeout 0) must not break it: expected "
              "LOCKING_E_LOCKER_FAILED, got %s (last_error=\"%s\")",
              form, round, f_ref, age, expire, t_rc_name(rc),
              rc == LOCKING_OK ? "" : locking_last_error());
        int hc = locker_check(h[t_mi_]);
        CHECK(hc == LOCKING_OK,
              "coarse timestamps, form %s round %d: the holder still holds: "
              "locker_check = %s", form, round, t_rc_name(hc));
        locker_free(w);
        locker_free(h[t_mi_]);
        free(dirs[t_mi_]);
    }
    CHECK(coarse, "the file system's timestamps are whole seconds (probe "
          "file mtime nsec = %ld)", nsec);
}

/* In a child with its own mount namespace: make, mount and use a loop
 * ext4 with 128-byte inodes. */
static void coarse_child(void)
{
    if (unshare(CLONE_NEWNS) != 0) {
        skip("unshare(CLONE_NEWNS) failed");
        t_child_exit();
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        FATAL("making / private in the new mount namespace");
    char *img = t_path("coarse.img");
    char *mp = t_path("coarse-mnt");
    char *log = t_path("coarse-setup.log");
    char *cmd = NULL;
    if (mkdir(mp, 0755) != 0 && errno != EEXIST)
        FATAL("mkdir %s", mp);
    if (!run_cmd("command -v mkfs.ext4", log)) {
        skip("mkfs.ext4 not found (Debian package e2fsprogs)");
        t_child_exit();
    }
    int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ftruncate(fd, 32 << 20) != 0)
        FATAL("creating %s", img);
    close(fd);
    if (asprintf(&cmd, "mkfs.ext4 -q -F -I 128 '%s'", img) < 0)
        FATAL("asprintf");
    if (!run_cmd(cmd, log)) {
        print_file(log);
        FATAL("mkfs.ext4 -I 128 failed");
    }
    free(cmd);
    if (asprintf(&cmd, "mount -t ext4 -o loop '%s' '%s'", img, mp) < 0)
        FATAL("asprintf");
    if (!run_cmd(cmd, log)) {
        print_file(log);
        skip("cannot mount a loop ext4 image (no loop devices?)");
        t_child_exit();
    }
    free(cmd);
    t_note("ext4 with 128-byte inodes mounted at %s", mp);

    double t0 = t_now();
    for (int r = 0; r < COARSE_ROUNDS; r++)
        coarse_round(mp, r, false);
    for (int r = 0; r < COARSE_ROUNDS; r++)
        coarse_round(mp, r, true);
    t_note("coarse timestamp rounds took %.2f s", t_now() - t0);

    if (umount(mp) != 0)
        t_note("umount %s: %s (the namespace's end releases it)", mp, strerror(errno));
    unlink(img);
    free(img);
    free(mp);
    free(log);
    t_child_exit();
}

static void coarse_timestamps(void)
{
    t_method_label = "-";
    if (geteuid() != 0) {
        skip("not root (mounts a loop file system)");
        return;
    }
    pid_t c = t_fork();
    if (c == 0)
        coarse_child();
    t_wait_child(c, "coarse timestamps (private mount namespace)");
}

/* ------------------------------------------------------------------ */
/* part 2: kernel method, dead holder, its child keeps the descriptor   */

static bool still_running(pid_t pid)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    return r == 0;
}

static void dead_holder_child_keeps_fd(double w_timeout, bool subreaper)
{
    t_method_label = "kernel";
    const int m = LOCKING_METHOD_KERNEL;
    const char *tname = w_timeout < 0 ? "LOCKING_WAIT_FOREVER" : "10 s";
    char *dir = t_fresh_path("heir");
    t_pipe from_h = t_pipe_new(), c_pipe = t_pipe_new(), from_w = t_pipe_new();

    pid_t h = t_fork();
    if (h == 0) {
        /* holder H: locks, forks C (which inherits the lock's descriptor),
         * exits without unlocking */
        Locker *l = t_locker("heir", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        if (!CHECK_RC(locker_lock(l), LOCKING_OK))
            t_child_exit();
        pid_t c = fork();
        if (c < 0)
            FATAL("fork");
        if (c == 0) {
            /* C: does nothing but wait */
            close(c_pipe.w);
            char b;
            while (read(c_pipe.r, &b, 1) < 0 && errno == EINTR) {
            }
            _exit(0);
        }
        if (write(from_h.w, &c, sizeof c) != (ssize_t)sizeof c)
            FATAL("write");
        t_child_exit(); /* _exit: the Locker is neither unlocked nor freed */
    }
    pid_t c = -1;
    struct pollfd pfd = { from_h.r, POLLIN, 0 };
    if (poll(&pfd, 1, T_PIPE_TIMEOUT_S * 1000) != 1 ||
        read(from_h.r, &c, sizeof c) != (ssize_t)sizeof c) {
        t_kill_reap(h);
        FATAL("holder H did not report its child");
    }
    t_wait_child(h, "holder H (locked, forked C, exited)");
    CHECK(kill(c, 0) == 0, "H's child C (pid %ld) lives and keeps the lock's "
          "descriptor", (long)c);

    double t0 = t_now();
    pid_t w = t_fork();
    if (w == 0) {
        Locker *l = t_locker("heir", dir, "ns", w_timeout, LOCKING_NEVER_EXPIRE, m);
        int rc = locker_lock(l);
        char ans = rc == LOCKING_OK ? 'o' : 'f';
        CHECK(rc == LOCKING_OK, "waiter W (timeout %s, expire never): "
              "locker_lock = %s (last_error=\"%s\")", tname, t_rc_name(rc),
              rc == LOCKING_OK ? "" : locking_last_error());
        if (rc == LOCKING_OK)
            CHECK_RC(locker_check(l), LOCKING_OK);
        t_send(&from_w, ans);
        locker_free(l);
        t_child_exit();
    }
    int ans = t_recv_timeout(&from_w, 20.0);
    double el = t_now() - t0;
    bool c_alive = subreaper ? still_running(c) : kill(c, 0) == 0;
    CHECK(ans == 'o', "waiter W (timeout %s, expire never) gets the lock of "
          "the dead holder H while H's child C lives: %s after %.2f s", tname,
          ans == 'o' ? "got it" : ans == 'f' ? "failed"
                                             : "no answer within 20 s (hangs)",
          el);
    CHECK(c_alive, "C (keeping the dead holder's lock descriptor) was still "
          "alive when W's wait ended");
    if (ans == 'o' || ans == 'f')
        t_wait_child(w, "waiter W");
    else
        t_kill_reap(w);

    kill(c, SIGKILL);
    if (subreaper) {
        int st;
        while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
        }
    }
    t_pipe_close(&from_h);
    t_pipe_close(&c_pipe);
    t_pipe_close(&from_w);
    free(dir);
}

static void dead_holder_child(void)
{
    /* C, orphaned when H exits, becomes our child: we can tell whether it
     * still runs and reap it */
    bool subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0;
    if (!subreaper)
        t_note("PR_SET_CHILD_SUBREAPER: %s (C is checked with kill(0))",
               strerror(errno));
    dead_holder_child_keeps_fd(10.0, subreaper); /* control */
    dead_holder_child_keeps_fd(LOCKING_WAIT_FOREVER, subreaper);
    if (subreaper)
        prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    double t0 = t_now();
    coarse_timestamps();
    dead_holder_child();
    int rc = t_done();
    int checks = atomic_load(&t_checks), failed = atomic_load(&t_failures);
    printf("test_break: %d passed, %d failed (%.2f s)\n", checks - failed,
           failed, t_now() - t0);
    return rc;
}
