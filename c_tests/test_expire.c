/*
 * Expiry and dead holders, for every real method:
 *   - a live holder stopped with SIGSTOP is broken by a waiter with
 *     expire 0.5 s (and not before the lock is 0.5 s old); when the holder
 *     continues, locker_check / locker_refresh / locker_unlock report
 *     LOCKING_E_LOCK_LOST, and its unlock does not disturb the new holder;
 *   - with expire <= 0, or an expire the lock has not reached, a stopped
 *     holder is never broken, and it still holds its lock afterwards;
 *   - a holder that keeps calling locker_refresh is never broken;
 *   - a holder killed with SIGKILL is recovered at once, whatever `expire`
 *     says (3600 s, LOCKING_NEVER_EXPIRE), also when it dies while somebody
 *     is already waiting;
 *   - "kill storm": 3 processes contend in a lock/unlock loop while the
 *     parent SIGKILLs one at a random moment (holding, acquiring, releasing,
 *     breaking...) and starts a replacement, 20 times: the survivors always
 *     make progress, no call fails, and nobody is ever inside the critical
 *     section together with a live holder.
 */
#include "common.h"

#include <sys/mman.h>

static void cont_child(pid_t pid)
{
    if (kill(pid, SIGCONT) != 0)
        FATAL("kill SIGCONT");
}

/* A stopped holder is broken after expire; it then learns it lost the lock. */
static void stopped_holder_broken(int m)
{
    char *dir = t_fresh_path("stopped-broken");
    t_pipe to_child = t_pipe_new(), to_parent = t_pipe_new();
    double t_fork0 = t_now();
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *h = t_locker("e", dir, NULL, 0.0, 0.0, m);
        CHECK_RC(locker_lock(h), LOCKING_OK);
        t_send(&to_parent, 'h');
        t_expect(&to_child, 'c', "continue");
        /* we were stopped for longer than the waiter's expire, and broken */
        CHECK_RC(locker_check(h), LOCKING_E_LOCK_LOST);
        CHECK_RC(locker_refresh(h), LOCKING_E_LOCK_LOST);
        CHECK_RC(locker_unlock(h), LOCKING_E_LOCK_LOST);
        t_send(&to_parent, 'd');
        t_expect(&to_child, 'x', "exit");
        locker_free(h);
        t_child_exit();
    }
    t_expect(&to_parent, 'h', "holder holds");
    t_stop_child(pid);

    Locker *w = t_locker("e", dir, NULL, 10.0, 0.5, m);
    int rc = locker_lock(w);
    double el = t_now() - t_fork0;
    CHECK(rc == LOCKING_OK,
          "waiter with expire 0.5 s broke the stopped holder's lock: %s after "
          "%.3f s (last_error=\"%s\")", t_rc_name(rc), el,
          rc ? locking_last_error() : "");
    CHECK(el >= 0.45, "the lock was not broken before it was 0.5 s old "
          "(%.3f s since the holder was forked)", el);
    CHECK(el < 10.0, "broken within the waiter's timeout (%.3f s)", el);

    /* the new holder is young and alive: nobody gets in */
    Locker *third = t_locker("e", dir, NULL, 0.0, 0.0, m);
    Locker *third_exp = t_locker("e", dir, NULL, 0.0, 0.5, m);
    CHECK_RC(locker_lock(third), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_lock(third_exp), LOCKING_E_LOCKER_FAILED);

    cont_child(pid);
    t_send(&to_child, 'c');
    t_expect(&to_parent, 'd', "old holder ran its unlock");

    /* the old holder's unlock left the new holder alone */
    CHECK_RC(locker_lock(third), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_check(w), LOCKING_OK);
    CHECK_RC(locker_refresh(w), LOCKING_OK);
    CHECK_RC(locker_unlock(w), LOCKING_OK);
    CHECK_RC(locker_lock(third), LOCKING_OK);
    CHECK_RC(locker_unlock(third), LOCKING_OK);
    t_send(&to_child, 'x');
    t_wait_child(pid, "broken holder");
    locker_free(w);
    locker_free(third);
    locker_free(third_exp);
    t_pipe_close(&to_child);
    t_pipe_close(&to_parent);
    free(dir);
}

/* expire <= 0 (or not yet reached) never breaks a live, stopped holder. */
static void stopped_holder_kept(int m)
{
    char *dir = t_fresh_path("stopped-kept");
    t_pipe to_child = t_pipe_new(), to_parent = t_pipe_new();
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *h = t_locker("e", dir, NULL, 0.0, 0.0, m);
        CHECK_RC(locker_lock(h), LOCKING_OK);
        t_send(&to_parent, 'h');
        t_expect(&to_child, 'c', "continue");
        CHECK_RC(locker_check(h), LOCKING_OK);
        CHECK_RC(locker_refresh(h), LOCKING_OK);
        CHECK_RC(locker_unlock(h), LOCKING_OK);
        locker_free(h);
        t_send(&to_parent, 'd');
        t_child_exit();
    }
    t_expect(&to_parent, 'h', "holder holds");
    t_stop_child(pid);

    const struct { double timeout, expire; } cases[] = {
        { 0.5, LOCKING_NEVER_EXPIRE },
        { 0.3, -1.0 },
        { 0.3, 3600.0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Locker *w = t_locker("e", dir, NULL, cases[i].timeout,
                             cases[i].expire, m);
        double t0 = t_now();
        int rc = locker_lock(w);
        double el = t_now() - t0;
        CHECK(rc == LOCKING_E_LOCKER_FAILED,
              "expire %g, timeout %g: a stopped live holder is not broken "
              "(got %s after %.3f s)", cases[i].expire, cases[i].timeout,
              t_rc_name(rc), el);
        CHECK(el >= cases[i].timeout, "waited the whole timeout (%.3f s)", el);
        if (rc == LOCKING_OK)
            locker_unlock(w);
        locker_free(w);
    }

    cont_child(pid);
    t_send(&to_child, 'c');
    t_expect(&to_parent, 'd', "holder released");
    t_wait_child(pid, "stopped, kept holder");
    Locker *after = t_locker("e", dir, NULL, 0.0, 0.0, m);
    CHECK_RC(locker_lock(after), LOCKING_OK);
    CHECK_RC(locker_unlock(after), LOCKING_OK);
    locker_free(after);
    t_pipe_close(&to_child);
    t_pipe_close(&to_parent);
    free(dir);
}

/* A holder that refreshes every 50 ms is never older than expire = 1 s. */
static void refreshed_holder(int m)
{
    char *dir = t_fresh_path("refresh");
    t_pipe to_child = t_pipe_new(), to_parent = t_pipe_new();
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *h = t_locker("e", dir, NULL, 0.0, 0.0, m);
        CHECK_RC(locker_lock(h), LOCKING_OK);
        t_send(&to_parent, 'h');
        int n = 0;
        for (;;) {
            int c = t_recv_timeout(&to_child, 0.05);
            if (c == 's')
                break;
            if (c != -1)
                FATAL("unexpected byte %d", c);
            CHECK_RC_QUIET(locker_refresh(h), LOCKING_OK);
            n++;
            if (n > 2000)
                FATAL("never told to stop");
        }
        CHECK_RC(locker_unlock(h), LOCKING_OK);
        locker_free(h);
        t_child_exit();
    }
    t_expect(&to_parent, 'h', "holder holds");
    Locker *w = t_locker("e", dir, NULL, 1.6, 1.0, m);
    CHECK_RC(locker_lock(w), LOCKING_E_LOCKER_FAILED);
    t_send(&to_child, 's');
    t_wait_child(pid, "refreshing holder");
    locker_free(w);
    t_pipe_close(&to_child);
    t_pipe_close(&to_parent);
    free(dir);
}

/* A holder killed while holding: recovered at once whatever expire says. */
static void killed_holder(int m, double expire)
{
    char *dir = t_fresh_path("killed");
    t_pipe to_child = t_pipe_new(), to_parent = t_pipe_new();
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *h = t_locker("e", dir, NULL, 0.0, 0.0, m);
        CHECK_RC(locker_lock(h), LOCKING_OK);
        t_send(&to_parent, 'h');
        t_expect(&to_child, 'x', "never sent");
        t_child_exit();
    }
    t_expect(&to_parent, 'h', "holder holds");
    kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "holder killed");

    Locker *w = t_locker("e", dir, NULL, 10.0, expire, m);
    double t0 = t_now();
    int rc = locker_lock(w);
    double el = t_now() - t0;
    CHECK(rc == LOCKING_OK,
          "expire %g: the lock of a SIGKILLed holder was recovered: %s after "
          "%.3f s (last_error=\"%s\")", expire, t_rc_name(rc), el,
          rc ? locking_last_error() : "");
    t_note("dead holder recovered in %.3f s", el);
    CHECK_RC(locker_check(w), LOCKING_OK);
    Locker *other = t_locker("e", dir, NULL, 0.0, 0.0, m);
    CHECK_RC(locker_lock(other), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_unlock(w), LOCKING_OK);
    locker_free(other);
    locker_free(w);
    t_pipe_close(&to_child);
    t_pipe_close(&to_parent);
    free(dir);
}

/* The holder exits without unlocking while the waiter is already waiting. */
static void holder_dies_during_wait(int m)
{
    char *dir = t_fresh_path("dies");
    t_pipe to_child = t_pipe_new(), to_parent = t_pipe_new();
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *h = t_locker("e", dir, NULL, 0.0, 0.0, m);
        CHECK_RC(locker_lock(h), LOCKING_OK);
        t_send(&to_parent, 'h');
        t_expect(&to_child, 'g', "go");
        t_sleep(0.3); /* let the parent block in its wait (not required) */
        t_child_exit(); /* _exit while still holding */
    }
    t_expect(&to_parent, 'h', "holder holds");
    Locker *w = t_locker("e", dir, NULL, 10.0, LOCKING_NEVER_EXPIRE, m);
    t_send(&to_child, 'g');
    double t0 = t_now();
    int rc = locker_lock(w);
    double el = t_now() - t0;
    CHECK(rc == LOCKING_OK,
          "a waiter (expire never) got the lock when its holder died: %s "
          "after %.3f s (last_error=\"%s\")", t_rc_name(rc), el,
          rc ? locking_last_error() : "");
    t_note("holder exit to acquire: %.3f s (holder lived 0.3 s more)", el);
    t_wait_child(pid, "dying holder");
    CHECK_RC(locker_unlock(w), LOCKING_OK);
    locker_free(w);
    t_pipe_close(&to_child);
    t_pipe_close(&to_parent);
    free(dir);
}

#define STORM_PROCS 3
#define STORM_ROUNDS 20
#define STORM_MAX_SPAWNS (STORM_ROUNDS + STORM_PROCS + 4)

struct storm {
    _Atomic uint64_t holder; /* mark of the worker inside, or 0 */
    atomic_int overlaps; /* entries while a live process was inside */
    atomic_int errors;   /* failing liblocking calls */
    atomic_long progress;
};

/* The workers, killed at random and replaced (support.h's random-kill
 * harness): a mark left in `holder` by a worker killed inside may be
 * taken over, any other is an overlap. */
struct storm_run {
    struct storm *s;
    const char *dir;
    int m;
};

static void storm_worker(t_pool *pool, int slot, unsigned seq)
{
    (void)slot;
    const struct storm_run *run = pool->ctx;
    struct storm *s = run->s;
    uint64_t me = t_pool_mark(seq, 0);
    double expire = (seq % 2) ? 30.0 : LOCKING_NEVER_EXPIRE;
    Locker *l = t_locker("storm", run->dir, NULL, LOCKING_WAIT_FOREVER, expire, run->m);
    for (;;) {
        int rc = locker_lock(l);
        if (rc != LOCKING_OK) {
            atomic_fetch_add(&s->errors, 1);
            CHECK_QUIET(0, "storm: locker_lock: %s (%s)", t_rc_name(rc),
                        locking_last_error());
            t_sleep(0.01);
            continue;
        }
        uint64_t other = 0;
        if (t_pool_claim(pool, &s->holder, me, &other) == T_CLAIM_VIOLATION) {
            atomic_fetch_add(&s->overlaps, 1);
            CHECK_QUIET(0, "storm: entered while live spawn %u was inside",
                        t_pool_mark_spawn(other));
        }
        atomic_fetch_add(&s->progress, 1);
        sched_yield();
        if (!t_pool_release(&s->holder, me)) {
            atomic_fetch_add(&s->overlaps, 1);
            CHECK_QUIET(0, "storm: another worker entered while we were inside");
        }
        rc = locker_unlock(l);
        if (rc != LOCKING_OK) {
            atomic_fetch_add(&s->errors, 1);
            CHECK_QUIET(0, "storm: locker_unlock: %s (%s)", t_rc_name(rc),
                        locking_last_error());
        }
    }
}

/* Wait (up to 10 s) until the lock changed hands `n` more times. */
static bool storm_progress(struct storm *s, long n)
{
    long start = atomic_load(&s->progress);
    double deadline = t_now() + 10.0;
    while (atomic_load(&s->progress) < start + n) {
        if (t_now() > deadline)
            return false;
        t_sleep(0.0005);
    }
    return true;
}

static void kill_storm(int m)
{
    char *dir = t_fresh_path("storm");
    struct storm *s = t_shared_alloc(sizeof *s);
    struct storm_run run = { s, dir, m };
    t_pool pool;
    t_pool_init(&pool, STORM_PROCS, STORM_MAX_SPAWNS, storm_worker, &run);
    uint64_t rng = 12345u + (unsigned)m;
    for (int i = 0; i < STORM_PROCS; i++)
        t_pool_spawn(&pool, i);
    bool stuck = false;
    for (int round = 0; round < STORM_ROUNDS && !stuck; round++) {
        if (!storm_progress(s, 3)) {
            stuck = true;
            break;
        }
        /* let it run for a random 0-2 ms, then kill a random one */
        t_sleep((double)(t_rng_next(&rng) % 2000) / 1e6);
        int victim = t_pool_pick(&pool, &rng);
        t_pool_kill(&pool, victim);
        if (!t_pool_spawn(&pool, victim))
            FATAL("too many spawns");
    }
    if (!stuck && !storm_progress(s, 3))
        stuck = true;
    CHECK(!stuck, "the lock kept changing hands after every kill "
          "(%ld acquisitions in all)", atomic_load(&s->progress));
    for (int i = 0; i < STORM_PROCS; i++)
        t_pool_kill(&pool, i);
    t_pool_destroy(&pool);
    CHECK(atomic_load(&s->overlaps) == 0,
          "%d kills: never inside together with a live holder (%d overlaps)",
          STORM_ROUNDS, atomic_load(&s->overlaps));
    CHECK(atomic_load(&s->errors) == 0,
          "no lock/unlock call failed in the storm (%d failures)",
          atomic_load(&s->errors));

    /* whatever the victims left behind, the lock can be had */
    Locker *w = t_locker("storm", dir, NULL, 10.0, LOCKING_NEVER_EXPIRE, m);
    double t0 = t_now();
    int rc = locker_lock(w);
    CHECK(rc == LOCKING_OK, "after the storm the lock is recovered: %s after "
          "%.3f s (last_error=\"%s\")", t_rc_name(rc), t_now() - t0,
          rc ? locking_last_error() : "");
    CHECK_RC(locker_unlock(w), LOCKING_OK);
    locker_free(w);
    t_note("kill storm: %ld acquisitions, %d entries left in the lockdir",
           atomic_load(&s->progress), t_count_entries(dir));
    munmap(s, sizeof *s);
    free(dir);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    FOR_EACH_REAL_METHOD(m) {
        stopped_holder_broken(m);
        stopped_holder_kept(m);
        refreshed_holder(m);
        killed_holder(m, 3600.0);
        killed_holder(m, LOCKING_NEVER_EXPIRE);
        holder_dies_during_wait(m);
        kill_storm(m);
    }
    return t_done();
}
