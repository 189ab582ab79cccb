/*
 * Chaos: locks survive holders that are killed at any moment.
 *
 * For every real method a supervisor forks NWORKERS worker processes that
 * loop forever:
 *
 *     locker_lock (timeout 20 s, expire 3600 s) -> critical section ->
 *     locker_unlock
 *
 * and kills a random worker with SIGKILL again and again (KILLS times per
 * method), reaps it and starts a replacement (support.h's random-kill
 * harness, t_pool). Some kills are aimed at a
 * worker that is inside the critical section, some at a worker that is
 * releasing, the others at whatever a random worker is doing (mostly
 * waiting inside locker_lock). `expire` is 3600 s on purpose: expiry can
 * never be what frees a dead holder's lock during this test, only the
 * library's detection of dead holders (or, for KERNEL, the kernel) can.
 *
 * Exclusion is checked with an owner word in a MAP_SHARED page that no
 * kill can fool: on entering the critical section a worker CASes it from 0
 * to its own id (pid plus a spawn number, so that a reused pid is not taken
 * for the old process). If the word holds another id, that process must be
 * dead (gone, or a zombie not reaped yet): a live one means two holders at
 * once, a VIOLATION. (KERNEL only: the kernel drops a lock while its
 * holder exits, a moment before the process turns into a zombie, so a
 * holder the supervisor has already SIGKILLed is waited for until /proc
 * shows it dead.) A dead one was killed inside the critical section and
 * left its id behind; the worker CASes it over. Inside, the worker also
 * does a deliberately non-atomic read-modify-write of a shared counter and
 * spins a little; on leaving, it CASes the word back to 0.
 *
 * Checked per method: no violation; every locker_lock/locker_check/
 * locker_unlock returned LOCKING_OK; after every kill the workers as a
 * whole made progress again within a bound, and after the last kill every
 * worker made progress; no single locker_lock waited 10 s or more (far
 * below the 3600 s expire); the counter lost no update; afterwards the lock
 * is free. Printed: kills (by what the victim was doing), acquisitions,
 * median, p99 and max lock wait, and what is left in the lock directory.
 *
 * Negative control: built with -DFORCE_METHOD=LOCKING_METHOD_FAKE
 * (common.h), or run with LOCKING_CHAOS_METHODS=fake, the test runs with
 * FAKE, and the violation and counter checks must fail, which shows that
 * they can. LOCKING_CHAOS_METHODS takes a comma-separated list of mkdir,
 * opencreate, kernel and fake.
 * LOCKING_CHAOS_SEED fixes the supervisor's random choices;
 * LOCKING_CHAOS_KILLS changes the number of kills per method.
 */
#include "common.h"

#define NWORKERS 8
#define KILLS_DEFAULT 150
#define LOCK_TIMEOUT 20.0
#define LOCK_EXPIRE 3600.0
#define MAX_WAIT_OK 10.0          /* no single locker_lock may wait this long */
#define PACE 20                   /* acquisitions required between two kills */
#define PROGRESS_BOUND 10.0       /* seconds allowed for that progress */
#define FINAL_PER_WORKER 3        /* acquisitions per worker after the last kill */
#define MAX_SPAWNS 4096
#define WAIT_CAP (1u << 20)       /* recorded lock wait times per method */
#define MAX_DETAILS 8

enum phase {
    PH_START = 0,   /* forked, making its Locker */
    PH_LOCKING,     /* inside locker_lock */
    PH_CS,          /* lock held, in the critical section */
    PH_UNLOCKING,   /* left the critical section, inside locker_unlock */
    PH_OUTSIDE,     /* between two rounds */
    PH_NPHASES
};
static const char *phase_name[PH_NPHASES] = {
    "start", "locking", "critical-section", "unlocking", "outside"
};

struct slot {                     /* the worker's pid and spawn: `pool` */
    int phase;
    long acq;                     /* acquisitions of the current worker */
};

struct shared {
    uint64_t owner;               /* 0, or (spawn seq << 32) | pid */
    volatile long counter;        /* non-atomic read-modify-write */
    long completed;               /* critical sections finished */
    long acquisitions;
    long violations;
    long takeovers;               /* owner word taken over from a dead holder */
    long dying_waits;             /* waits for a SIGKILLed holder to die */
    long errors;                  /* a library call returned non-OK */
    int stop;
    struct slot slot[NWORKERS];
    uint64_t start_of_seq[MAX_SPAWNS];   /* /proc starttime of each spawn */
    uint64_t max_wait_ns;
    uint32_t nwaits;
    int ndetails;
    char details[MAX_DETAILS][256];
    uint32_t wait_us[WAIT_CAP];
};

static struct shared *sh;
/* the workers, killed at random and replaced (support.h); a spawn is
 * marked doomed just before its SIGKILL */
static t_pool pool;

/* ------------------------------------------------------------------ */
/* /proc                                                               */

/* Does the worker with this owner id still run (zombies count as dead)? */
static bool id_alive(uint64_t id, char *state_out)
{
    int pid = (int)(id & 0xffffffffu);
    int seq = (int)(id >> 32);
    char st = '-';
    unsigned long long start = 0;
    bool exists = t_proc_stat(pid, &st, &start);
    *state_out = st;
    if (!exists || st == 'Z' || st == 'X')
        return false;
    if (seq < 0 || seq >= MAX_SPAWNS)
        return true; /* garbage in the word: treat as a live stranger */
    /* the pid was reused by a newer process */
    return start == __atomic_load_n(&sh->start_of_seq[seq], __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------ */
/* workers                                                             */

static void add_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void add_detail(const char *fmt, ...)
{
    int i = __atomic_fetch_add(&sh->ndetails, 1, __ATOMIC_SEQ_CST);
    if (i >= MAX_DETAILS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sh->details[i], sizeof sh->details[i], fmt, ap);
    va_end(ap);
}

static void worker_error(int slot, const char *call, int rc)
{
    __atomic_fetch_add(&sh->errors, 1, __ATOMIC_SEQ_CST);
    add_detail("worker %d (pid %d): %s returned %s (%d): %s", slot,
               (int)getpid(), call, t_rc_name(rc), rc, locking_last_error());
}

static void record_wait(double seconds)
{
    uint64_t ns = (uint64_t)(seconds * 1e9);
    uint64_t cur = __atomic_load_n(&sh->max_wait_ns, __ATOMIC_SEQ_CST);
    while (ns > cur &&
           !__atomic_compare_exchange_n(&sh->max_wait_ns, &cur, ns, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    uint32_t i = __atomic_fetch_add(&sh->nwaits, 1, __ATOMIC_SEQ_CST);
    if (i < WAIT_CAP) {
        double us = seconds * 1e6;
        sh->wait_us[i] = us > 4e9 ? 4000000000u : (uint32_t)us;
    }
}

/* Enter the critical section: claim the owner word. */
static void claim_owner(int slot, uint64_t me, int method)
{
    for (;;) {
        uint64_t seen = 0;
        if (__atomic_compare_exchange_n(&sh->owner, &seen, me, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return;
        /* `seen` holds another worker's id */
        char st;
        bool alive = id_alive(seen, &st);
        int seq = (int)(seen >> 32);
        if (alive && method == LOCKING_METHOD_KERNEL && seq >= 0 &&
            seq < MAX_SPAWNS &&
            t_pool_doomed(&pool, (unsigned)seq)) {
            /* KERNEL only: SIGKILL was sent, and the exiting process has
             * closed its files (which drops its kernel lock) but is not a
             * zombie yet: wait for it to finish dying, within a generous
             * bound. The other methods judge a holder dead exactly as we
             * do (gone or a zombie), so for them this is a violation. */
            __atomic_fetch_add(&sh->dying_waits, 1, __ATOMIC_SEQ_CST);
            double until = t_now() + 10.0;
            while (alive && t_now() < until) {
                t_sleep(0.0002);
                alive = id_alive(seen, &st);
            }
        }
        if (alive) {
            __atomic_fetch_add(&sh->violations, 1, __ATOMIC_SEQ_CST);
            add_detail("VIOLATION: worker %d (pid %d) got the lock while "
                       "pid %d (spawn %d, state %c) was inside the critical "
                       "section", slot, (int)getpid(),
                       (int)(seen & 0xffffffffu), seq, st);
            return; /* carry on without the word; leaving will notice */
        }
        /* a holder killed inside the critical section left its id behind */
        if (__atomic_compare_exchange_n(&sh->owner, &seen, me, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            __atomic_fetch_add(&sh->takeovers, 1, __ATOMIC_SEQ_CST);
            return;
        }
        /* the word changed under us: look again */
    }
}

static void release_owner(int slot, uint64_t me)
{
    uint64_t expect = me;
    if (!__atomic_compare_exchange_n(&sh->owner, &expect, 0, false,
                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        /* somebody else wrote the word while we were inside */
        __atomic_fetch_add(&sh->violations, 1, __ATOMIC_SEQ_CST);
        add_detail("VIOLATION: worker %d (pid %d) left the critical section "
                   "and found the owner word changed to pid %d",
                   slot, (int)getpid(), (int)(expect & 0xffffffffu));
    }
}

static void worker(int slot, int seq, const char *lockdir, int method)
{
    struct slot *me_slot = &sh->slot[slot];
    int pid = (int)getpid();
    char st;
    unsigned long long start = 0;
    if (!t_proc_stat(pid, &st, &start))
        FATAL("reading /proc/%d/stat", pid);
    __atomic_store_n(&sh->start_of_seq[seq], start, __ATOMIC_SEQ_CST);
    uint64_t me = ((uint64_t)seq << 32) | (uint32_t)pid;
    uint64_t rng = t_rng_seed(1);

    Locker *l = NULL;
    int rc = locker_new("chaos", lockdir, "chaos", LOCK_TIMEOUT, LOCK_EXPIRE,
                        method, &l);
    if (rc != LOCKING_OK) {
        worker_error(slot, "locker_new", rc);
        _exit(1);
    }
    while (!__atomic_load_n(&sh->stop, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&me_slot->phase, PH_LOCKING, __ATOMIC_SEQ_CST);
        double t0 = t_now();
        rc = locker_lock(l);
        double waited = t_now() - t0;
        if (rc != LOCKING_OK) {
            worker_error(slot, "locker_lock", rc);
            __atomic_store_n(&me_slot->phase, PH_OUTSIDE, __ATOMIC_SEQ_CST);
            t_sleep(0.01); /* do not flood: the test has failed anyway */
            continue;
        }
        record_wait(waited);
        __atomic_fetch_add(&sh->acquisitions, 1, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&me_slot->acq, 1, __ATOMIC_SEQ_CST);

        /* ---- critical section ---- */
        __atomic_store_n(&me_slot->phase, PH_CS, __ATOMIC_SEQ_CST);
        claim_owner(slot, me, method);
        long v = sh->counter;             /* non-atomic read ... */
        uint64_t r = t_rng_next(&rng);
        t_spin_for((double)(r % 200) * 1e-6); /* 0-200 us */
        if ((r >> 20) % 4 == 0)
            sched_yield();
        sh->counter = v + 1;              /* ... modify, write */
        rc = locker_check(l);
        if (rc != LOCKING_OK)
            worker_error(slot, "locker_check", rc);
        __atomic_fetch_add(&sh->completed, 1, __ATOMIC_SEQ_CST);
        release_owner(slot, me);
        /* ---- end of the critical section ---- */

        __atomic_store_n(&me_slot->phase, PH_UNLOCKING, __ATOMIC_SEQ_CST);
        rc = locker_unlock(l);
        if (rc != LOCKING_OK)
            worker_error(slot, "locker_unlock", rc);
        __atomic_store_n(&me_slot->phase, PH_OUTSIDE, __ATOMIC_SEQ_CST);
        if ((t_rng_next(&rng) % 8) == 0)
            sched_yield();
    }
    locker_free(l);
    _exit(0);
}

/* ------------------------------------------------------------------ */
/* supervisor                                                          */

/* What the workers of one run() lock (the pool's context). */
struct target {
    const char *lockdir;
    int method;
};

/* A new worker, in its own process (with t_fork_guarded: it dies with the
 * supervisor). */
static void run_worker(t_pool *p, int slot, unsigned seq)
{
    const struct target *t = p->ctx;
    worker(slot, (int)seq, t->lockdir, t->method);
}

static void spawn(int slot)
{
    struct slot *s = &sh->slot[slot];
    __atomic_store_n(&s->phase, PH_START, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s->acq, 0, __ATOMIC_SEQ_CST);
    if (!t_pool_spawn(&pool, slot))
        FATAL("too many spawns");
}

static int find_in_phase(int phase, uint64_t *rng)
{
    int off = (int)(t_rng_next(rng) % NWORKERS);
    for (int i = 0; i < NWORKERS; i++) {
        int k = (i + off) % NWORKERS;
        if (__atomic_load_n(&sh->slot[k].phase, __ATOMIC_SEQ_CST) == phase)
            return k;
    }
    return -1;
}

/* Wait (polling, up to `bound` s) for some worker to be in `phase`. */
static int wait_for_phase(int phase, double bound, uint64_t *rng)
{
    double until = t_now() + bound;
    for (;;) {
        int k = find_in_phase(phase, rng);
        if (k >= 0 || t_now() > until)
            return k;
        t_sleep(0.00002);
    }
}

static void dump_state(const char *lockdir)
{
    for (int i = 0; i < NWORKERS; i++)
        t_note("  worker %d: pid %d spawn %u phase %s acquisitions %ld", i,
               (int)pool.pid[i], pool.seq[i],
               phase_name[sh->slot[i].phase % PH_NPHASES], sh->slot[i].acq);
    t_note("  owner word: pid %d spawn %d",
           (int)(sh->owner & 0xffffffffu), (int)(sh->owner >> 32));
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "ls -la '%s' 1>&2", lockdir);
    if (system(cmd) != 0)
        t_note("  (could not list %s)", lockdir);
}

static void print_details(void)
{
    int n = sh->ndetails < MAX_DETAILS ? sh->ndetails : MAX_DETAILS;
    for (int i = 0; i < n; i++)
        t_note("  worker report: %s", sh->details[i]);
    if (sh->ndetails > MAX_DETAILS)
        t_note("  (%d more worker reports not kept)", sh->ndetails - MAX_DETAILS);
}

/* Entries of the lock directory whose name starts with "~t-" (the
 * private staging names of acquisitions in progress, see PROTOCOL.md). */
static int count_staging(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "~t-", 3) == 0)
            n++;
    closedir(d);
    return n;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void run(int method, int kills, uint64_t *rng)
{
    char *lockdir = t_fresh_path("chaos-locks");
    memset(sh, 0, sizeof *sh);
    struct target target = { lockdir, method };
    t_pool_init(&pool, NWORKERS, MAX_SPAWNS, run_worker, &target);
    double t0 = t_now();

    for (int i = 0; i < NWORKERS; i++)
        spawn(i);

    long kills_by_phase[PH_NPHASES] = { 0 };
    int done_kills = 0;
    double worst_recovery = 0;
    bool stuck = false;
    for (int k = 0; k < kills && !stuck; k++) {
        /* progress first: PACE acquisitions since the previous kill */
        long base = __atomic_load_n(&sh->acquisitions, __ATOMIC_SEQ_CST);
        double p0 = t_now();
        while (__atomic_load_n(&sh->acquisitions, __ATOMIC_SEQ_CST) < base + PACE &&
               t_now() - p0 < PROGRESS_BOUND)
            t_sleep(0.0002);
        double rec = t_now() - p0;
        if (rec > worst_recovery)
            worst_recovery = rec;
        long got = __atomic_load_n(&sh->acquisitions, __ATOMIC_SEQ_CST) - base;
        if (!CHECK_QUIET(got >= PACE, "after kill %d the workers made %ld "
                         "acquisitions in %.1f s (want %d): the lock is stuck",
                         k, got, PROGRESS_BOUND, PACE)) {
            dump_state(lockdir);
            stuck = true;
            break;
        }

        /* pick a victim: half inside the critical section, some in
         * locker_unlock, the rest at random (mostly in locker_lock) */
        int mode = (int)(t_rng_next(rng) % 4);
        int victim = -1;
        if (mode <= 1)
            victim = wait_for_phase(PH_CS, 2.0, rng);
        else if (mode == 2)
            victim = wait_for_phase(PH_UNLOCKING, 0.2, rng);
        if (victim < 0)
            victim = t_pool_pick(&pool, rng);
        struct slot *s = &sh->slot[victim];
        int pid = (int)pool.pid[victim];
        int st = t_pool_kill(&pool, victim);
        if (st == -1)
            FATAL("killing and reaping worker %d (pid %d)", victim, pid);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
            /* it exited on its own: that is a failure of the worker */
            CHECK(0, "worker %d (pid %d) ended before it was killed: status 0x%x",
                  victim, pid, st);
            print_details();
        }
        int ph = __atomic_load_n(&s->phase, __ATOMIC_SEQ_CST);
        kills_by_phase[ph % PH_NPHASES]++;
        done_kills++;
        spawn(victim);
    }

    /* after the last kill: every worker makes progress */
    bool all_progressed = !stuck;
    if (!stuck) {
        long snap[NWORKERS];
        for (int i = 0; i < NWORKERS; i++)
            snap[i] = __atomic_load_n(&sh->slot[i].acq, __ATOMIC_SEQ_CST);
        double p0 = t_now();
        for (;;) {
            int behind = 0;
            for (int i = 0; i < NWORKERS; i++)
                if (__atomic_load_n(&sh->slot[i].acq, __ATOMIC_SEQ_CST) <
                    snap[i] + FINAL_PER_WORKER)
                    behind++;
            if (behind == 0)
                break;
            if (t_now() - p0 > 15.0) {
                all_progressed = false;
                break;
            }
            t_sleep(0.001);
        }
        for (int i = 0; i < NWORKERS; i++) {
            long d = __atomic_load_n(&sh->slot[i].acq, __ATOMIC_SEQ_CST) - snap[i];
            CHECK_QUIET(d >= FINAL_PER_WORKER, "worker %d (pid %d) made %ld "
                        "acquisitions after the last kill (want >= %d)", i,
                        (int)pool.pid[i], d, FINAL_PER_WORKER);
        }
        if (!all_progressed)
            dump_state(lockdir);
    }
    CHECK(all_progressed, "after the last kill every one of the %d workers "
          "acquired the lock %d more times", NWORKERS, FINAL_PER_WORKER);

    /* stop: workers finish their round and exit 0 */
    __atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
    double s0 = t_now();
    for (int i = 0; i < NWORKERS; i++) {
        int pid = (int)pool.pid[i];
        int st = 0;
        pid_t r = t_wait_until(pid, s0 + LOCK_TIMEOUT + 10.0, &st);
        if (r == 0) {
            CHECK(0, "worker %d (pid %d) did not stop", i, pid);
            t_kill_reap(pid);
        }
        if (r == pid)
            CHECK_QUIET(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                        "worker %d (pid %d) ended with status 0x%x", i, pid, st);
    }
    double elapsed = t_now() - t0;

    /* the verdict */
    long acq = sh->acquisitions, completed = sh->completed;
    long counter = sh->counter;
    long in_cs = kills_by_phase[PH_CS];
    if (sh->ndetails > 0)
        print_details();
    CHECK(sh->violations == 0, "no two workers were ever inside the critical "
          "section together (%ld violations)", sh->violations);
    CHECK(sh->errors == 0, "every locker_lock/locker_check/locker_unlock of a "
          "worker returned LOCKING_OK (%ld did not)", sh->errors);
    CHECK(done_kills == kills, "%d of %d kills done", done_kills, kills);
    CHECK(acq >= 10L * done_kills && acq > 0, "acquisitions (%ld) well above "
          "the kill count (%d)", acq, done_kills);
    /* a worker killed between writing the counter and counting its
     * completion makes the counter one ahead; a lost update (two inside
     * at once) makes it fall behind */
    CHECK(counter >= completed && counter <= completed + in_cs,
          "shared counter %ld within [completed %ld, completed + kills inside "
          "%ld]: no lost update", counter, completed, completed + in_cs);
    CHECK(sh->takeovers <= in_cs, "owner word taken over from a dead holder "
          "%ld times, at most the %ld kills inside the critical section",
          sh->takeovers, in_cs);

    double max_wait = (double)sh->max_wait_ns / 1e9;
    uint32_t n = sh->nwaits < WAIT_CAP ? sh->nwaits : WAIT_CAP;
    double p99 = 0, p50 = 0;
    if (n > 0) {
        uint32_t *w = malloc(n * sizeof *w);
        if (w == NULL)
            FATAL("malloc");
        memcpy(w, sh->wait_us, n * sizeof *w);
        qsort(w, n, sizeof *w, cmp_u32);
        p99 = (double)w[(size_t)((n - 1) * 0.99)] / 1e6;
        p50 = (double)w[(n - 1) / 2] / 1e6;
        free(w);
    }
    CHECK(max_wait < MAX_WAIT_OK, "longest single locker_lock wait %.3f s < "
          "%.0f s (expire is %.0f s: recovery never came from expire)",
          max_wait, MAX_WAIT_OK, LOCK_EXPIRE);

    /* the lock is free now: nobody left a stale entry that blocks it */
    Locker *l = t_locker("chaos", lockdir, "chaos", 0.0, LOCKING_NEVER_EXPIRE,
                         method);
    CHECK_RC(locker_lock(l), LOCKING_OK);
    CHECK_RC(locker_unlock(l), LOCKING_OK);
    locker_free(l);

    t_note("%d kills (%ld inside the critical section, %ld in locker_lock, "
           "%ld in locker_unlock, %ld between rounds, %ld starting), "
           "%ld owner-word takeovers from dead holders (%ld of them found "
           "the holder killed but not yet a zombie)",
           done_kills, in_cs, kills_by_phase[PH_LOCKING],
           kills_by_phase[PH_UNLOCKING], kills_by_phase[PH_OUTSIDE],
           kills_by_phase[PH_START], sh->takeovers, sh->dying_waits);
    t_note("%ld acquisitions, counter %ld, wait: median %.6f s, p99 %.6f s, "
           "max %.6f s; slowest recovery after a kill %.3f s; %.2f s", acq,
           counter, p50, p99, max_wait, worst_recovery, elapsed);
    t_note("%d entries left in the lock directory, %d of them \"~t-*\" "
           "staging debris of killed acquirers", t_count_entries(lockdir),
           count_staging(lockdir));
    t_pool_destroy(&pool);
    free(lockdir);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    sh = t_shared_alloc(sizeof *sh);

    int kills = KILLS_DEFAULT;
    const char *ek = getenv("LOCKING_CHAOS_KILLS");
    if (ek != NULL && atoi(ek) > 0)
        kills = atoi(ek);
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    const char *es = getenv("LOCKING_CHAOS_SEED");
    if (es != NULL && es[0] != '\0')
        seed = strtoull(es, NULL, 0);
    if (seed == 0)
        seed = 1;
    t_note("seed %llu (LOCKING_CHAOS_SEED), %d kills per method, %d workers",
           (unsigned long long)seed, kills, NWORKERS);
    uint64_t rng = seed;

    int methods[8], nm = 0;
    const char *em = getenv("LOCKING_CHAOS_METHODS");
    if (em != NULL && em[0] != '\0') {
        const char *p = em;
        while (*p != '\0' && nm < 8) {
            size_t len = strcspn(p, ",");
            int m = t_method_by_name(p, len);
            if (m < 0)
                FATAL("LOCKING_CHAOS_METHODS: unknown method in \"%s\"", em);
            methods[nm++] = m;
            p += len;
            if (*p == ',')
                p++;
        }
    } else {
        for (int i = 0; i < T_N_REAL_METHODS; i++)
            methods[nm++] = t_real_methods[i];
    }

    for (int i = 0; i < nm; i++) {
        t_method_label = t_method_name(methods[i]);
        run(methods[i], kills, &rng);
    }
    int rc = t_done();
    int checks = atomic_load(&t_checks), failed = atomic_load(&t_failures);
    printf("test_chaos: %d passed, %d failed\n", checks - failed, failed);
    return rc;
}
