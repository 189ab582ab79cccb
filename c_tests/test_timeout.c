/*
 * Timeouts, for every real method, against a lock held by another process:
 *   - timeout 0 fails at once with LOCKING_E_LOCKER_FAILED;
 *   - timeout 0.3 fails with LOCKER_FAILED after >= 0.3 s and < 3 s, and
 *     does not busy-wait meanwhile;
 *   - LOCKING_WAIT_FOREVER gets the lock once the holder releases (with
 *     expire 0 and with expire > 0: different wait paths), never before;
 *   - a waiter with timeout 10 s is woken by the release and succeeds;
 *   - all of that while a signal handler (no SA_RESTART) interrupts the wait
 *     every 2 ms: no early return, no spurious error.
 */
#include "common.h"

#include <sys/time.h>

/* Fork a holder: it locks (dir, "t"), sends 'h', waits for 'r', then (after
 * `delay` seconds, to give the parent time to block in its wait -- the
 * test's outcome does not depend on it) creates `marker` and unlocks. */
static pid_t spawn_holder(int m, const char *dir, t_pipe *to_child,
                          t_pipe *to_parent, double delay, const char *marker)
{
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *l = t_locker("t", dir, NULL, 0.0, 0.0, m);
        CHECK_RC(locker_lock(l), LOCKING_OK);
        t_send(to_parent, 'h');
        t_expect(to_child, 'r', "release request");
        if (delay > 0)
            t_sleep(delay);
        if (marker != NULL)
            t_write_file(marker, "released\n");
        CHECK_RC(locker_unlock(l), LOCKING_OK);
        locker_free(l);
        t_child_exit();
    }
    t_expect(to_parent, 'h', "holder holds");
    return pid;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void timeouts(int m)
{
    char *dir = t_fresh_path("timeout");
    t_pipe to_child = t_pipe_new(), to_parent = t_pipe_new();
    pid_t pid = spawn_holder(m, dir, &to_child, &to_parent, 0, NULL);

    Locker *z = t_locker("t", dir, NULL, 0.0, 0.0, m);
    double t0 = t_now();
    CHECK_RC(locker_lock(z), LOCKING_E_LOCKER_FAILED);
    double el = t_now() - t0;
    CHECK(el < 1.0, "timeout 0 returned at once (%.3f s)", el);
    locker_free(z);

    double expires[] = { 0.0, 3600.0 };
    for (int i = 0; i < 2; i++) {
        Locker *w = t_locker("t", dir, NULL, 0.3, expires[i], m);
        t0 = t_now();
        double c0 = thread_cpu();
        CHECK_RC(locker_lock(w), LOCKING_E_LOCKER_FAILED);
        double cpu = thread_cpu() - c0;
        el = t_now() - t0;
        CHECK(el >= 0.3 && el < 3.0,
              "timeout 0.3 (expire %g) failed after %.3f s (want >= 0.3, < 3)",
              expires[i], el);
        CHECK(cpu < 0.5 * el,
              "waiting did not busy-loop: %.3f s CPU in %.3f s", cpu, el);
        locker_free(w);
    }

    t_send(&to_child, 'r');
    t_wait_child(pid, "holder");
    t_pipe_close(&to_child);
    t_pipe_close(&to_parent);
    free(dir);
}

/* The parent waits with `timeout` while the holder releases (after a short
 * delay); the lock must be acquired, and only after the release. */
static void wait_for_release(int m, double timeout, double expire)
{
    char *dir = t_fresh_path("wait");
    char *marker = t_path("%s.released", strrchr(dir, '/') + 1);
    t_pipe to_child = t_pipe_new(), to_parent = t_pipe_new();
    pid_t pid = spawn_holder(m, dir, &to_child, &to_parent, 0.2, marker);

    Locker *w = t_locker("t", dir, NULL, timeout, expire, m);
    t_send(&to_child, 'r');
    double t0 = t_now();
    int rc = locker_lock(w);
    double el = t_now() - t0;
    CHECK(rc == LOCKING_OK,
          "timeout %g, expire %g: waiter got the lock after the holder "
          "released (%s after %.3f s, last_error=\"%s\")",
          timeout, expire, t_rc_name(rc), el, rc ? locking_last_error() : "");
    CHECK(access(marker, F_OK) == 0,
          "the lock was granted only after the holder released it");
    if (timeout > 0)
        CHECK(el < timeout, "woken by the release within the timeout "
              "(%.3f s < %g s)", el, timeout);
    t_note("release-to-acquire: waited %.3f s in all (holder delay 0.2 s)", el);
    t_wait_child(pid, "holder");
    CHECK_RC(locker_unlock(w), LOCKING_OK);
    locker_free(w);
    t_pipe_close(&to_child);
    t_pipe_close(&to_parent);
    free(marker);
    free(dir);
}

static volatile sig_atomic_t ticks;

static void on_alarm(int sig)
{
    (void)sig;
    ticks++;
}

/* Timeouts and waiting with EINTR raining on the waiter. */
static void with_signals(int m)
{
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: blocking calls fail with EINTR */
    if (sigaction(SIGALRM, &sa, &old_sa) != 0)
        FATAL("sigaction");
    char *dir = t_fresh_path("signals");
    char *marker = t_path("%s.released", strrchr(dir, '/') + 1);
    t_pipe to_child = t_pipe_new(), to_parent = t_pipe_new();
    pid_t pid = spawn_holder(m, dir, &to_child, &to_parent, 0.2, marker);

    struct itimerval it = { { 0, 2000 }, { 0, 2000 } };
    if (setitimer(ITIMER_REAL, &it, NULL) != 0)
        FATAL("setitimer");
    double expires[] = { LOCKING_NEVER_EXPIRE, 3600.0 };
    for (int i = 0; i < 2; i++) {
        Locker *w = t_locker("t", dir, NULL, 0.3, expires[i], m);
        ticks = 0;
        double t0 = t_now();
        int rc = locker_lock(w);
        double el = t_now() - t0;
        CHECK(rc == LOCKING_E_LOCKER_FAILED && el >= 0.3 && el < 3.0 &&
                  ticks > 10,
              "interrupted every 2 ms (%d signals), timeout 0.3, expire %g: "
              "%s after %.3f s (last_error=\"%s\")", (int)ticks, expires[i],
              t_rc_name(rc), el, locking_last_error());
        locker_free(w);
    }
    Locker *w = t_locker("t", dir, NULL, LOCKING_WAIT_FOREVER,
                         LOCKING_NEVER_EXPIRE, m);
    t_send(&to_child, 'r');
    ticks = 0;
    int rc = locker_lock(w);
    CHECK(rc == LOCKING_OK && access(marker, F_OK) == 0,
          "interrupted (%d signals), waiting forever: %s once released "
          "(last_error=\"%s\")", (int)ticks, t_rc_name(rc),
          rc ? locking_last_error() : "");
    struct itimerval off;
    memset(&off, 0, sizeof off);
    setitimer(ITIMER_REAL, &off, NULL);
    sigaction(SIGALRM, &old_sa, NULL);
    t_wait_child(pid, "holder");
    if (rc == LOCKING_OK)
        CHECK_RC(locker_unlock(w), LOCKING_OK);
    locker_free(w);
    t_pipe_close(&to_child);
    t_pipe_close(&to_parent);
    free(marker);
    free(dir);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    FOR_EACH_REAL_METHOD(m) {
        timeouts(m);
        wait_for_release(m, LOCKING_WAIT_FOREVER, LOCKING_NEVER_EXPIRE);
        wait_for_release(m, LOCKING_WAIT_FOREVER, 3600.0);
        wait_for_release(m, 10.0, LOCKING_NEVER_EXPIRE);
        wait_for_release(m, 10.0, 3600.0);
        with_signals(m);
    }
    return t_done();
}
