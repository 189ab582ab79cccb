/*
 * Stress, for every real method: 4 forked processes x 4 threads, each thread
 * with its own Locker on the same name, increment a counter file with a
 * deliberately non-atomic read-modify-write under the lock. The final count
 * must be exact (no lost update), and a marker file created with O_EXCL
 * inside the critical section proves that nobody was ever inside together.
 * Timeouts alternate between LOCKING_WAIT_FOREVER and a long finite one, and
 * expire between never and a long one, to exercise the different wait paths.
 *
 * FAKE runs the same workload with timeout 0: every lock must succeed at
 * once (it never blocks or fails). Lost updates are likely then but not
 * certain, so they are only reported, not asserted.
 */
#include "common.h"

#define PROCS 4
#define THREADS 4
#ifndef PER_THREAD
#define PER_THREAD 100
#endif
#define TOTAL (PROCS * THREADS * PER_THREAD)

struct ctx {
    const char *lockdir;
    const char *counter;
    const char *inside;
    int method;
    bool lenient; /* the FAKE demonstration run: nothing is asserted */
    int proc, thread;
    int failures;
    int overlaps;
    int torn;
};

static void *thread_main(void *arg)
{
    struct ctx *c = arg;
    bool fake = c->lenient;
    double timeout = fake ? 0.0 : ((c->thread % 2) ? LOCKING_WAIT_FOREVER : 60.0);
    double expire = (c->proc % 2) ? 600.0 : LOCKING_NEVER_EXPIRE;
    Locker *l = NULL;
    int rc = locker_new("stress", c->lockdir, "stress", timeout, expire,
                        c->method, &l);
    if (!CHECK_QUIET(rc == LOCKING_OK, "locker_new: %s", locking_last_error())) {
        c->failures++;
        return NULL;
    }
    for (int i = 0; i < PER_THREAD; i++) {
        rc = locker_lock(l);
        if (!CHECK_QUIET(rc == LOCKING_OK, "p%d t%d: locker_lock #%d: %s (%s)",
                         c->proc, c->thread, i, t_rc_name(rc),
                         locking_last_error())) {
            c->failures++;
            break;
        }
        if (!fake) {
            int fd = open(c->inside, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (fd < 0) {
                c->overlaps++;
                CHECK_QUIET(errno != EEXIST,
                            "p%d t%d: somebody else is inside the critical "
                            "section", c->proc, c->thread);
            } else {
                close(fd);
            }
        }
        /* without locking (FAKE) a reader may catch the file truncated by
         * another writer: only a real lock makes the increment reliable */
        if (!t_counter_incr(c->counter)) {
            if (fake)
                c->torn++;
            else if (!CHECK_QUIET(0, "counter increment failed (%s): the file "
                                  "was caught mid-rewrite or is unusable",
                                  strerror(errno)))
                c->failures++;
        }
        if (!fake && unlink(c->inside) != 0) {
            c->overlaps++;
            CHECK_QUIET(0, "p%d t%d: the inside marker vanished: %s", c->proc,
                        c->thread, strerror(errno));
        }
        rc = locker_unlock(l);
        if (!CHECK_QUIET(rc == LOCKING_OK, "p%d t%d: locker_unlock #%d: %s (%s)",
                         c->proc, c->thread, i, t_rc_name(rc),
                         locking_last_error())) {
            c->failures++;
            break;
        }
    }
    locker_free(l);
    return NULL;
}

/* lenient: the FAKE demonstration, where lost updates are expected and
 * only "every lock succeeds at once" is asserted. With -DFORCE_METHOD the
 * method loop runs FAKE strictly, and must fail. */
static void run(int m, bool lenient)
{
    char *lockdir = t_fresh_path("stress-locks");
    char *counter = t_fresh_path("stress-counter");
    char *inside = t_fresh_path("stress-inside");
    t_counter_init(counter);

    t_barrier b;
    t_barrier_init(&b, PROCS);
    pid_t pids[PROCS];
    double t0 = t_now();
    for (int p = 0; p < PROCS; p++) {
        pids[p] = t_fork();
        if (pids[p] != 0)
            continue;
        struct ctx c[THREADS];
        pthread_t t[THREADS];
        t_barrier_arrive(&b);
        for (int i = 0; i < THREADS; i++) {
            c[i] = (struct ctx){ lockdir, counter, inside, m, lenient, p, i, 0, 0, 0 };
            if (pthread_create(&t[i], NULL, thread_main, &c[i]) != 0)
                FATAL("pthread_create");
        }
        int failures = 0, overlaps = 0, torn = 0;
        for (int i = 0; i < THREADS; i++) {
            pthread_join(t[i], NULL);
            failures += c[i].failures;
            overlaps += c[i].overlaps;
            torn += c[i].torn;
        }
        if (lenient)
            t_note("process %d: %d increments found the file mid-rewrite", p,
                   torn);
        CHECK(failures == 0, "process %d: no call failed", p);
        if (!lenient)
            CHECK(overlaps == 0, "process %d: never two inside at once "
                  "(%d overlaps)", p, overlaps);
        t_child_exit();
    }
    t_barrier_release(&b);
    for (int p = 0; p < PROCS; p++)
        t_wait_child(pids[p], "stress worker process");
    t_barrier_destroy(&b);
    double el = t_now() - t0;

    long got = t_counter_read(counter);
    if (lenient) {
        CHECK(got > 0 && got <= TOTAL, "FAKE: counter %ld within (0, %d]", got,
              TOTAL);
        t_note("FAKE (no locking): %ld of %d increments survived, %ld lost, "
               "in %.2f s", got, TOTAL, TOTAL - got, el);
    } else {
        CHECK(got == TOTAL,
              "%d processes x %d threads x %d increments: counter %ld (want %d)",
              PROCS, THREADS, PER_THREAD, got, TOTAL);
        t_note("%d lock/unlock pairs in %.2f s", TOTAL, el);
    }
    free(lockdir);
    free(counter);
    free(inside);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    FOR_EACH_REAL_METHOD(m) {
        run(m, false);
    }
    t_method_label = "fake";
    run(LOCKING_METHOD_FAKE, true);
    return t_done();
}
