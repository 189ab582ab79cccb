/*
 * Threads, for every real method:
 *   - a Locker created and locked in one thread, which then exits, is still
 *     held (the process lives: it is not judged dead), and is unlocked and
 *     freed by another thread;
 *   - 8 threads, each with its own Locker on one name, increment a plain
 *     (non-atomic) in-memory counter under the lock 20,000 times in all;
 *     the total is exact and no two threads are ever inside together;
 *   - 4 threads appending to one file through open_locked_fd /
 *     close_locked_fd (read-modify-write) lose no line;
 *   - fork() while other threads are busy inside liblocking: every child
 *     can still lock and unlock (no library-internal lock inherited held).
 */
#include "common.h"

#define N_THREADS 8
#ifndef TOTAL_INCREMENTS
#define TOTAL_INCREMENTS 20000 /* per method, over all N_THREADS threads */
#endif

struct handoff {
    const char *dir;
    int method;
    Locker *locker;
    int rc_new, rc_lock, rc_unlock;
};

static void *create_and_lock(void *arg)
{
    struct handoff *h = arg;
    h->rc_new = locker_new("moved", h->dir, "threads", 0.0, 0.0, h->method,
                           &h->locker);
    if (h->rc_new == LOCKING_OK)
        h->rc_lock = locker_lock(h->locker);
    return NULL;
}

static void *unlock_and_free(void *arg)
{
    struct handoff *h = arg;
    h->rc_unlock = locker_unlock(h->locker);
    locker_free(h->locker);
    h->locker = NULL;
    return NULL;
}

static void moved_between_threads(int m)
{
    char *dir = t_fresh_path("moved");
    struct handoff h = { dir, m, NULL, -100, -100, -100 };
    pthread_t t1, t2;
    if (pthread_create(&t1, NULL, create_and_lock, &h) != 0)
        FATAL("pthread_create");
    pthread_join(t1, NULL);
    CHECK(h.rc_new == LOCKING_OK && h.rc_lock == LOCKING_OK,
          "thread 1 created and locked: %s, %s", t_rc_name(h.rc_new),
          t_rc_name(h.rc_lock));
    if (h.locker == NULL)
        FATAL("no locker");

    /* thread 1 has exited, but the process holds the lock: not dead */
    Locker *other = t_locker("moved", dir, "threads", 0.0, 0.0, m);
    CHECK_RC(locker_lock(other), LOCKING_E_LOCKER_FAILED);
    Locker *waiter = t_locker("moved", dir, "threads", 0.3, 0.0, m);
    CHECK_RC(locker_lock(waiter), LOCKING_E_LOCKER_FAILED);
    locker_free(waiter);
    CHECK_RC(locker_check(h.locker), LOCKING_OK);

    if (pthread_create(&t2, NULL, unlock_and_free, &h) != 0)
        FATAL("pthread_create");
    pthread_join(t2, NULL);
    CHECK(h.rc_unlock == LOCKING_OK, "thread 2 unlocked it: %s",
          t_rc_name(h.rc_unlock));
    CHECK_RC(locker_lock(other), LOCKING_OK);
    CHECK_RC(locker_unlock(other), LOCKING_OK);
    locker_free(other);
    free(dir);
}

struct worker {
    const char *dir;
    int method;
    int index;
    int increments;
    int failures;
};

static long shared_counter;      /* deliberately not atomic */
static atomic_int inside;        /* threads inside the critical section */
static atomic_int max_inside;

static void *worker(void *arg)
{
    struct worker *w = arg;
    /* half wait forever, half with a (long) finite timeout */
    double timeout = (w->index % 2) ? LOCKING_WAIT_FOREVER : 60.0;
    Locker *l = NULL;
    if (locker_new("counter", w->dir, "threads", timeout, 0.0, w->method, &l) !=
        LOCKING_OK) {
        w->failures++;
        CHECK_QUIET(0, "worker %d: locker_new: %s", w->index, locking_last_error());
        return NULL;
    }
    for (int i = 0; i < w->increments; i++) {
        int rc = locker_lock(l);
        if (!CHECK_QUIET(rc == LOCKING_OK, "worker %d: locker_lock: %s (%s)",
                         w->index, t_rc_name(rc), locking_last_error())) {
            w->failures++;
            break;
        }
        int now_inside = atomic_fetch_add(&inside, 1) + 1;
        int mx = atomic_load(&max_inside);
        while (now_inside > mx &&
               !atomic_compare_exchange_weak(&max_inside, &mx, now_inside)) {
        }
        long v = *(volatile long *)&shared_counter;
        if (i % 64 == 0)
            sched_yield();
        *(volatile long *)&shared_counter = v + 1;
        atomic_fetch_sub(&inside, 1);
        rc = locker_unlock(l);
        if (!CHECK_QUIET(rc == LOCKING_OK, "worker %d: locker_unlock: %s (%s)",
                         w->index, t_rc_name(rc), locking_last_error())) {
            w->failures++;
            break;
        }
    }
    locker_free(l);
    return NULL;
}

static void counter(int m)
{
    char *dir = t_fresh_path("counter");
    shared_counter = 0;
    atomic_store(&inside, 0);
    atomic_store(&max_inside, 0);
    struct worker w[N_THREADS];
    pthread_t t[N_THREADS];
    double t0 = t_now();
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (struct worker){ dir, m, i, TOTAL_INCREMENTS / N_THREADS, 0 };
        if (pthread_create(&t[i], NULL, worker, &w[i]) != 0)
            FATAL("pthread_create");
    }
    int failures = 0;
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(t[i], NULL);
        failures += w[i].failures;
    }
    double el = t_now() - t0;
    CHECK(failures == 0, "no lock/unlock failed in the workers");
    CHECK(shared_counter == TOTAL_INCREMENTS,
          "%d threads x %d increments under the lock: counter %ld (want %d)",
          N_THREADS, TOTAL_INCREMENTS / N_THREADS, shared_counter,
          TOTAL_INCREMENTS);
    CHECK(atomic_load(&max_inside) == 1,
          "never more than one thread inside (max seen %d)",
          atomic_load(&max_inside));
    t_note("%d lock/unlock pairs in %.2f s", TOTAL_INCREMENTS, el);
    free(dir);
}

#define FILE_THREADS 4
#define FILE_APPENDS 150

struct appender {
    const char *path;
    int method, index, failures;
};

static void *append_thread(void *arg)
{
    struct appender *a = arg;
    char *buf = malloc(1 << 20);
    for (int j = 0; j < FILE_APPENDS; j++) {
        int fd = open_locked_fd(a->path, 60.0, NULL, 0.0, a->method);
        if (!CHECK_QUIET(fd >= 0, "thread %d: open_locked_fd: %s (%s)", a->index,
                         t_rc_name(fd), locking_last_error())) {
            a->failures++;
            break;
        }
        size_t len = 0;
        ssize_t n;
        while ((n = read(fd, buf + len, (1 << 20) - len - 1)) > 0)
            len += (size_t)n;
        char line[32];
        int ll = snprintf(line, sizeof line, "T%d %d\n", a->index, j);
        if (pwrite(fd, line, (size_t)ll, (off_t)len) != ll)
            a->failures++;
        int rc = close_locked_fd(fd);
        if (!CHECK_QUIET(rc == LOCKING_OK, "thread %d: close_locked_fd: %s",
                         a->index, t_rc_name(rc)))
            a->failures++;
    }
    free(buf);
    return NULL;
}

static void file_threads(int m)
{
    char *path = t_fresh_path("appended");
    struct appender a[FILE_THREADS];
    pthread_t t[FILE_THREADS];
    for (int i = 0; i < FILE_THREADS; i++) {
        a[i] = (struct appender){ path, m, i, 0 };
        if (pthread_create(&t[i], NULL, append_thread, &a[i]) != 0)
            FATAL("pthread_create");
    }
    int failures = 0;
    for (int i = 0; i < FILE_THREADS; i++) {
        pthread_join(t[i], NULL);
        failures += a[i].failures;
    }
    FILE *f = fopen(path, "r");
    int lines = 0;
    char line[64];
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        lines++;
    if (f != NULL)
        fclose(f);
    CHECK(failures == 0 && lines == FILE_THREADS * FILE_APPENDS,
          "%d threads x %d locked appends: %d lines (want %d), %d failures",
          FILE_THREADS, FILE_APPENDS, lines, FILE_THREADS * FILE_APPENDS, failures);
    free(path);
}

static atomic_int busy_stop;

struct busy {
    const char *dir;
    char *file;
    int method, index;
};

static void *busy_thread(void *arg)
{
    struct busy *b = arg;
    char name[32];
    snprintf(name, sizeof name, "busy-%d", b->index);
    while (!atomic_load(&busy_stop)) {
        Locker *l = NULL;
        if (locker_new(name, b->dir, NULL, 1.0, 0.0, b->method, &l) == LOCKING_OK) {
            locker_lock(l);
            locker_check(l);
            locker_unlock(l);
            locker_free(l);
        }
        locker_lock(NULL); /* a failure: sets the thread's message */
        int fd = open_locked_fd(b->file, 1.0, NULL, 0.0, b->method);
        if (fd >= 0)
            close_locked_fd(fd);
    }
    return NULL;
}

/* Wait for a child for up to `limit` seconds; false if it had to be killed. */
static bool wait_bounded(pid_t pid, double limit, int *status)
{
    double deadline = t_now() + limit;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
        if (t_now() > deadline) {
            t_kill_reap(pid);
            return false;
        }
        t_sleep(0.001);
    }
}

static void fork_while_busy(int m)
{
    char *dir = t_fresh_path("busy");
    struct busy b[3];
    pthread_t t[3];
    atomic_store(&busy_stop, 0);
    for (int i = 0; i < 3; i++) {
        b[i] = (struct busy){ dir, t_path("busy-file-%d-%d", m, i), m, i };
        if (pthread_create(&t[i], NULL, busy_thread, &b[i]) != 0)
            FATAL("pthread_create");
    }
    int hung = 0, failed = 0, forked = 0;
    char *file = t_path("child-file-%d", m);
    for (int c = 0; c < 40 && hung == 0; c++) {
        pid_t pid = t_fork();
        forked++;
        if (pid == 0) {
            Locker *l = NULL;
            int rc = locker_new("child", dir, NULL, 5.0, 0.0, m, &l);
            if (rc == LOCKING_OK)
                rc = locker_lock(l);
            if (rc == LOCKING_OK)
                rc = locker_unlock(l);
            if (l != NULL)
                locker_free(l);
            if (rc == LOCKING_OK) {
                int fd = open_locked_fd(file, 5.0, NULL, 0.0, m);
                rc = fd >= 0 ? close_locked_fd(fd) : fd;
            }
            _exit(rc == LOCKING_OK ? 0 : 1);
        }
        int st = 0;
        if (!wait_bounded(pid, 3.0, &st))
            hung++;
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed++;
    }
    free(file);
    atomic_store(&busy_stop, 1);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        free(b[i].file);
    }
    CHECK(hung == 0 && failed == 0,
          "%d children forked while 3 threads were busy in liblocking: %d hung "
          "(killed after 3 s; stopped at the first), %d failed to lock/unlock",
          forked, hung, failed);
    free(dir);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    FOR_EACH_REAL_METHOD(m) {
        moved_between_threads(m);
        counter(m);
        file_threads(m);
        fork_while_busy(m);
    }
    return t_done();
}
