/*
 * A stolen lock is reported, never hidden. For every real method, twice
 * (holder stopped with SIGSTOP; holder alive and idle):
 *
 *   1. holder A (a child process) locks with expire 0 and tells the parent;
 *   2. the parent, as waiter B with expire 0.5 s and timeout 10 s, breaks
 *      A's lock once it is 0.5 s old (not earlier), although A is alive;
 *   3. A (continued, told through a pipe) calls locker_check,
 *      locker_refresh and locker_unlock: each returns LOCKING_E_LOCK_LOST;
 *      afterwards A does not hold anything (check/unlock: NOT_LOCKED) and
 *      cannot lock again while B holds (timeout 0: LOCKER_FAILED);
 *   4. a third Locker C with timeout 0 cannot get the lock (B holds it,
 *      A's unlock did not disturb it), not even with expire 30 s (B's lock
 *      is young); B's locker_check and locker_refresh are LOCKING_OK;
 *   5. B unlocks; C gets the lock.
 *
 * Built with -DFORCE_METHOD=LOCKING_METHOD_FAKE (common.h) the test runs
 * with FAKE instead, and its checks must fail (which shows that they can).
 *
 * Every step is synchronised through pipes; the only timing assertion is
 * that the lock was not broken before it was (about) 0.5 s old, and that
 * breaking it took less than the waiter's 10 s timeout.
 */
#include "common.h"

static void stolen(int m, bool stopped)
{
    const char *how = stopped ? "stopped" : "idle";
    char *dir = t_fresh_path(stopped ? "stolen-stopped" : "stolen-idle");
    t_pipe to_a = t_pipe_new(), from_a = t_pipe_new();
    t_note("holder A %s while B breaks its lock", how);

    double t_before_fork = t_now();
    pid_t a = t_fork();
    if (a == 0) {
        /* holder A: never breaks anything itself (expire 0) */
        Locker *la = t_locker("stolen", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        CHECK_RC(locker_lock(la), LOCKING_OK);
        CHECK_RC(locker_check(la), LOCKING_OK);
        t_send(&from_a, 'h');
        t_expect(&to_a, 'c', "go on after the break");
        /* B broke our lock meanwhile: every call says so */
        CHECK_RC(locker_check(la), LOCKING_E_LOCK_LOST);
        CHECK_RC(locker_refresh(la), LOCKING_E_LOCK_LOST);
        CHECK_RC(locker_unlock(la), LOCKING_E_LOCK_LOST);
        /* after the unlock that reported the loss, A holds nothing */
        CHECK_RC(locker_check(la), LOCKING_E_NOT_LOCKED);
        CHECK_RC(locker_unlock(la), LOCKING_E_NOT_LOCKED);
        /* and it cannot take the lock back while B holds it */
        CHECK_RC(locker_lock(la), LOCKING_E_LOCKER_FAILED);
        t_send(&from_a, 'd');
        t_expect(&to_a, 'x', "exit");
        locker_free(la);
        t_child_exit();
    }
    t_expect(&from_a, 'h', "A holds the lock");
    if (stopped)
        t_stop_child(a);

    /* waiter B: breaks a lock older than 0.5 s */
    Locker *lb = t_locker("stolen", dir, "ns", 10.0, 0.5, m);
    int rc = locker_lock(lb);
    double el = t_now() - t_before_fork;
    CHECK(rc == LOCKING_OK, "B (expire 0.5, timeout 10) broke %s A's lock: "
          "%s after %.3f s (last_error=\"%s\")", how, t_rc_name(rc), el,
          rc ? locking_last_error() : "");
    /* the lock was taken after the fork, so it was at most `el` old; file
     * time stamps are coarse (a few ms), hence the small margin */
    CHECK(el >= 0.45, "not broken before the lock was 0.5 s old (%.3f s "
          "since A was forked)", el);
    CHECK(el < 10.0, "broken within B's timeout (%.3f s)", el);
    CHECK_RC(locker_check(lb), LOCKING_OK);

    if (stopped && kill(a, SIGCONT) != 0)
        FATAL("kill SIGCONT");
    t_send(&to_a, 'c');
    t_expect(&from_a, 'd', "A made its calls");

    /* C: B holds the lock, whatever A did */
    Locker *lc = t_locker("stolen", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    /* even a Locker that breaks expired locks cannot: B's lock is young */
    Locker *lc_exp = t_locker("stolen", dir, "ns", 0.0, 30.0, m);
    CHECK_RC(locker_lock(lc), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_lock(lc_exp), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_check(lb), LOCKING_OK);
    CHECK_RC(locker_refresh(lb), LOCKING_OK);

    t_send(&to_a, 'x');
    t_wait_child(a, "holder A");
    /* A is gone (and freed its Locker): B still holds */
    CHECK_RC(locker_check(lb), LOCKING_OK);
    CHECK_RC(locker_lock(lc), LOCKING_E_LOCKER_FAILED);

    CHECK_RC(locker_unlock(lb), LOCKING_OK);
    CHECK_RC(locker_lock(lc), LOCKING_OK);
    CHECK_RC(locker_check(lc), LOCKING_OK);
    CHECK_RC(locker_lock(lc_exp), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_unlock(lc), LOCKING_OK);

    locker_free(lc_exp);
    locker_free(lc);
    locker_free(lb);
    t_pipe_close(&to_a);
    t_pipe_close(&from_a);
    free(dir);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    double t0 = t_now();
    FOR_EACH_REAL_METHOD(m) {
        stolen(m, true);
        stolen(m, false);
    }
    int rc = t_done();
    int checks = atomic_load(&t_checks), failed = atomic_load(&t_failures);
    printf("test_stolen: %d passed, %d failed (%.2f s)\n", checks - failed,
           failed, t_now() - t0);
    return rc;
}
