/*
 * The C test support library: helpers shared by the C test programs
 * (c_tests/, through common.h), the file system matrix and soak driver
 * (hardening/fsprobe.c) and the benchmark (bench/lockbench.c). One copy of
 * each; nothing here prints a check or counts failures (that is common.h's
 * business), so programs with their own output protocol can use it too.
 *
 *   - clocks and sleeps;
 *   - a xorshift64* random number generator;
 *   - names of methods, modes and return codes;
 *   - /proc: one parser of /proc/PID/stat (state, start time), raw reads
 *     of /proc/PID/<file>, fields of /proc/self/status;
 *   - shared memory, children that die with their parent, kill-and-reap,
 *     waiting for a child with a deadline;
 *   - one-byte pipe signalling with a timeout;
 *   - the random-kill harness (t_pool): workers SIGKILLed at random and
 *     replaced, used by test_chaos.c, test_expire.c's kill storm and
 *     fsprobe's killstress and soak.
 *
 * Compile with -I c_tests (and -I include for locking.h).
 *
 * A helper that cannot do its setup (pipe, fork, mmap) gives up through
 * T_SETUP_FAILED(fmt, ...), which must not return. A program may define it
 * before including this file: common.h makes it a FATAL check failure,
 * fsprobe its "VERDICT failed setup" line. By default it prints the message
 * and errno on stderr and exits with status 2.
 */
#ifndef LOCKING_C_TESTS_SUPPORT_H
#define LOCKING_C_TESTS_SUPPORT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "locking.h"

#ifndef T_SETUP_FAILED
static inline void t_setup_failed(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static inline void t_setup_failed(const char *fmt, ...)
{
    int e = errno;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "setup failed: %s (errno %d: %s)\n", msg, e, strerror(e));
    _exit(2);
}
#define T_SETUP_FAILED(...) t_setup_failed(__VA_ARGS__)
#endif

/* ------------------------------------------------------------------ */
/* clocks                                                              */

/* CLOCK_MONOTONIC in nanoseconds. */
static inline int64_t t_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CLOCK_MONOTONIC in seconds. */
static inline double t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps that long (through signals); nothing for 0 or less. */
static inline void t_sleep(double seconds)
{
    if (seconds <= 0)
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Busy for that long, on the CPU (a critical section that takes time
 * without giving the CPU away, unlike a sleep). */
static inline void t_spin_for(double seconds)
{
    double until = t_now() + seconds;
    while (t_now() < until) {
    }
}

/* qsort comparison of doubles, ascending. */
static inline int t_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ */
/* random numbers                                                      */

/* xorshift64*: *s must not be 0 (t_rng_seed never gives 0). */
static inline uint64_t t_rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* A seed that differs between processes, calls and values of `extra`. */
static inline uint64_t t_rng_seed(uint64_t extra)
{
    uint64_t s = ((uint64_t)getpid() << 32) ^ (uint64_t)(t_now() * 1e9) ^
                 (extra * 0x9e3779b97f4a7c15ull);
    return s ? s : 1;
}

/* ------------------------------------------------------------------ */
/* names                                                               */

static inline const char *t_method_name(int m)
{
    switch (m) {
    case LOCKING_METHOD_MKDIR: return "mkdir";
    case LOCKING_METHOD_OPENCREATE: return "opencreate";
    case LOCKING_METHOD_FAKE: return "fake";
    case LOCKING_METHOD_KERNEL: return "kernel";
#ifdef LOCKING_METHOD_POSTGRES
    case LOCKING_METHOD_POSTGRES: return "postgres";
#endif
    default: return "?";
    }
}

/* The lock-directory and kernel methods and fake, by the name
 * t_method_name gives (the first `len` bytes of `s`); -1 if none. */
static inline int t_method_by_name(const char *s, size_t len)
{
    static const int all[] = { LOCKING_METHOD_MKDIR, LOCKING_METHOD_OPENCREATE,
                               LOCKING_METHOD_KERNEL, LOCKING_METHOD_FAKE };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *n = t_method_name(all[i]);
        if (strlen(n) == len && strncmp(n, s, len) == 0)
            return all[i];
    }
    return -1;
}

static inline const char *t_mode_name(int mode)
{
    return mode == LOCKING_SHARED ? "shared" : mode == LOCKING_EXCLUSIVE ? "exclusive" : "?";
}

static inline const char *t_rc_name(int rc)
{
    switch (rc) {
    case LOCKING_OK: return "LOCKING_OK";
    case LOCKING_E_LOCKER_FAILED: return "LOCKING_E_LOCKER_FAILED";
    case LOCKING_E_CANNOT_GET_LOCK: return "LOCKING_E_CANNOT_GET_LOCK";
    case LOCKING_E_INVALID_ARGUMENT: return "LOCKING_E_INVALID_ARGUMENT";
    case LOCKING_E_IO: return "LOCKING_E_IO";
    case LOCKING_E_ALREADY_LOCKED: return "LOCKING_E_ALREADY_LOCKED";
    case LOCKING_E_NOT_LOCKED: return "LOCKING_E_NOT_LOCKED";
    case LOCKING_E_LOCK_LOST: return "LOCKING_E_LOCK_LOST";
    case LOCKING_E_INTERNAL: return "LOCKING_E_INTERNAL";
#ifdef LOCKING_E_UNAVAILABLE
    case LOCKING_E_UNAVAILABLE: return "LOCKING_E_UNAVAILABLE";
#endif
    default: return rc >= 0 ? "(non-negative)" : "(unknown code)";
    }
}

/* ------------------------------------------------------------------ */
/* /proc                                                               */

/* Reads /proc/<pid>/<file> (up to cap - 1 bytes, NUL-terminated); the
 * number of bytes read, or -1 if it is gone or unreadable. */
static inline ssize_t t_proc_read(pid_t pid, const char *file, char *buf, size_t cap)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%ld/%s", (long)pid, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* The one parser of /proc/PID/stat here: the state letter (field 3: 'S',
 * 'R', 'Z', ...) and the start time (field 22, clock ticks after boot; 0
 * if missing). The command name (field 2) may hold spaces and ')', so the
 * fields are counted from the last ')'. false if the process is gone or
 * its stat unreadable. */
static inline bool t_proc_stat(pid_t pid, char *state, unsigned long long *start)
{
    char buf[2048];
    if (t_proc_read(pid, "stat", buf, sizeof buf) < 0)
        return false;
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ')
        return false;
    p += 2;
    *state = *p;
    /* from field 3 to field 22: skip 19 fields */
    for (int i = 0; i < 19 && p != NULL; i++) {
        p = strchr(p, ' ');
        if (p != NULL)
            p++;
    }
    *start = p != NULL ? strtoull(p, NULL, 10) : 0;
    return true;
}

/* The state letter of /proc/PID/stat; 0 if gone or unreadable. */
static inline char t_proc_state(pid_t pid)
{
    char st;
    unsigned long long start;
    return t_proc_stat(pid, &st, &start) ? st : 0;
}

/* Start time (clock ticks after boot, /proc/PID/stat field 22) of `pid`;
 * 0 if unknown. */
static inline unsigned long long t_start_time(pid_t pid)
{
    char st;
    unsigned long long start;
    return t_proc_stat(pid, &st, &start) ? start : 0;
}

/* The value of `key:` in /proc/self/status (blanks after the colon
 * skipped, the line end cut); false if there is no such line. */
static inline bool t_self_status(const char *key, char *val, size_t cap)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (f == NULL)
        return false;
    char line[512];
    size_t kl = strlen(key);
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, kl) != 0 || line[kl] != ':')
            continue;
        const char *v = line + kl + 1;
        v += strspn(v, " \t");
        snprintf(val, cap, "%.*s", (int)strcspn(v, "\n"), v);
        found = true;
    }
    fclose(f);
    return found;
}

/* ------------------------------------------------------------------ */
/* processes                                                           */

/* Anonymous memory shared with the children forked after this (zeroed). */
static inline void *t_shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        T_SETUP_FAILED("mmap %zu bytes", size);
    return p;
}

/* fork(), and the child is killed when its parent dies (a second guard
 * besides the timeouts that kill a whole process group). */
static inline pid_t t_fork_guarded(void)
{
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        T_SETUP_FAILED("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(3); /* the parent is gone already: nobody waits for us */
    }
    return pid;
}

/* Kill (if still there) and reap a child, without judging its status;
 * returns the wait status, or -1 if it could not be reaped. */
static inline int t_kill_reap(pid_t pid)
{
    if (pid <= 0)
        return -1;
    kill(pid, SIGKILL);
    kill(pid, SIGCONT);
    int st;
    pid_t r;
    do {
        r = waitpid(pid, &st, 0);
    } while (r < 0 && errno == EINTR);
    return r == pid ? st : -1;
}

/* Waits for a child until `deadline` (t_now()'s clock): `pid` once it has
 * ended (*status set), 0 if it still runs at the deadline, -1 if it cannot
 * be waited for. */
static inline pid_t t_wait_until(pid_t pid, double deadline, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return pid;
        if (r < 0 && errno != EINTR)
            return -1;
        if (t_now() > deadline)
            return 0;
        t_sleep(0.002); /* polling a child with a deadline, not an event */
    }
}

/* ------------------------------------------------------------------ */
/* pipes                                                               */

typedef struct { int r, w; } t_pipe;

static inline t_pipe t_pipe_new(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        T_SETUP_FAILED("pipe2");
    t_pipe p = { fds[0], fds[1] };
    return p;
}

static inline void t_pipe_close(t_pipe *p)
{
    if (p->r >= 0)
        close(p->r);
    if (p->w >= 0)
        close(p->w);
    p->r = p->w = -1;
}

/* Writes one byte; false if it could not (the reader is gone). */
static inline bool t_send_byte(t_pipe *p, char c)
{
    ssize_t n;
    do {
        n = write(p->w, &c, 1);
    } while (n < 0 && errno == EINTR);
    return n == 1;
}

/* Writes one byte, or gives up (T_SETUP_FAILED). */
static inline void t_send(t_pipe *p, char c)
{
    if (!t_send_byte(p, c))
        T_SETUP_FAILED("pipe write");
}

/* Wait (up to timeout_s) for one byte; returns it, or -1 on EOF/timeout.
 * A stopped writer simply keeps us waiting until the timeout. */
static inline int t_recv_timeout(t_pipe *p, double timeout_s)
{
    double deadline = t_now() + timeout_s;
    for (;;) {
        double left = deadline - t_now();
        if (left <= 0)
            return -1;
        struct pollfd pfd = { p->r, POLLIN, 0 };
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            T_SETUP_FAILED("poll");
        if (r == 0)
            continue;
        char c;
        ssize_t n = read(p->r, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != 1)
            return -1;
        return (unsigned char)c;
    }
}

/* ------------------------------------------------------------------ */
/* the random-kill harness                                             */

/*
 * A supervisor keeps `nslots` worker processes running and kills them at
 * random with SIGKILL, each replaced at once by a new one (test_chaos.c,
 * test_expire.c's kill storm, fsprobe killstress and soak). Every worker
 * started is a new *spawn*, numbered 0, 1, 2, ... Before its SIGKILL the
 * victim's spawn is marked doomed in memory shared with the workers, so
 * that a worker finding a mark another spawn left in an owner word can
 * tell a party killed inside its critical section (whose mark may be taken
 * over) from a live one (two parties inside at once: a violation).
 *
 *   t_pool_init(&pool, nslots, max_spawns, run, ctx);
 *   for (slot...) t_pool_spawn(&pool, slot);   // run(&pool, slot, seq) in a child
 *   ... int v = t_pool_pick(&pool, &rng); t_pool_kill(&pool, v);
 *       t_pool_spawn(&pool, v); ...
 *   t_pool_destroy(&pool);
 *
 * Workers are forked with t_fork_guarded (they die with the supervisor).
 */
typedef struct t_pool t_pool;
struct t_pool {
    int nslots;
    unsigned max_spawns;
    unsigned next_seq;
    /* runs in the new worker process; returning from it exits with 0 */
    void (*run)(t_pool *pool, int slot, unsigned seq);
    void *ctx;
    pid_t *pid;              /* per slot: its current worker (supervisor's) */
    unsigned *seq;           /* per slot: that worker's spawn number */
    atomic_uchar *doomed;    /* per spawn, shared: SIGKILLed on purpose */
};

static inline void t_pool_init(t_pool *p, int nslots, unsigned max_spawns,
                               void (*run)(t_pool *, int, unsigned), void *ctx)
{
    memset(p, 0, sizeof *p);
    p->nslots = nslots;
    p->max_spawns = max_spawns;
    p->run = run;
    p->ctx = ctx;
    p->pid = calloc((size_t)nslots, sizeof *p->pid);
    p->seq = calloc((size_t)nslots, sizeof *p->seq);
    if (p->pid == NULL || p->seq == NULL)
        T_SETUP_FAILED("calloc");
    p->doomed = t_shared_alloc(max_spawns);
}

static inline void t_pool_destroy(t_pool *p)
{
    free(p->pid);
    free(p->seq);
    munmap((void *)p->doomed, p->max_spawns);
    memset(p, 0, sizeof *p);
}

/* Starts a new worker (the next spawn) in `slot`; false, and nothing
 * started, once max_spawns spawns were made. */
static inline bool t_pool_spawn(t_pool *p, int slot)
{
    if (p->next_seq >= p->max_spawns)
        return false;
    unsigned seq = p->next_seq++;
    p->seq[slot] = seq;
    pid_t pid = t_fork_guarded();
    if (pid == 0) {
        p->run(p, slot, seq);
        _exit(0);
    }
    p->pid[slot] = pid;
    return true;
}

/* Was spawn `seq` killed on purpose (or is about to be)? */
static inline bool t_pool_doomed(const t_pool *p, unsigned seq)
{
    return seq < p->max_spawns && atomic_load(&p->doomed[seq]);
}

/* A slot at random. */
static inline int t_pool_pick(const t_pool *p, uint64_t *rng)
{
    return (int)(t_rng_next(rng) % (uint64_t)p->nslots);
}

/* Marks the worker in `slot` doomed, SIGKILLs and reaps it; its wait
 * status, or -1 if it could not be reaped. The slot is empty until the
 * next t_pool_spawn for it. */
static inline int t_pool_kill(t_pool *p, int slot)
{
    atomic_store(&p->doomed[p->seq[slot]], 1);
    return t_kill_reap(p->pid[slot]);
}

/* An owner word's mark for thread `thread` (< 256) of spawn `seq`; never 0. */
static inline uint64_t t_pool_mark(unsigned seq, unsigned thread)
{
    return (((uint64_t)seq + 1) << 8) | (thread & 255u);
}

static inline unsigned t_pool_mark_spawn(uint64_t mark)
{
    return (unsigned)((mark >> 8) - 1);
}

enum { T_CLAIM_FREE, T_CLAIM_TAKEOVER, T_CLAIM_VIOLATION };

/* Enters the critical section witnessed by the owner word `word` (shared
 * memory): swaps it from 0 to `me`. A mark left there by a doomed spawn is
 * taken over (T_CLAIM_TAKEOVER); any other mark means another party is
 * inside (T_CLAIM_VIOLATION, its mark in *other; the word is then set to
 * `me` anyway so that the run goes on). */
static inline int t_pool_claim(const t_pool *p, _Atomic uint64_t *word, uint64_t me,
                               uint64_t *other)
{
    for (;;) {
        uint64_t cur = 0;
        if (atomic_compare_exchange_strong(word, &cur, me))
            return T_CLAIM_FREE;
        if (t_pool_doomed(p, t_pool_mark_spawn(cur))) {
            if (atomic_compare_exchange_strong(word, &cur, me))
                return T_CLAIM_TAKEOVER;
            continue; /* the word changed under us: look again */
        }
        *other = cur;
        atomic_store(word, me);
        return T_CLAIM_VIOLATION;
    }
}

/* Leaves that critical section: the word back to 0 if it still is `me`;
 * false if it is not (another party entered meanwhile). */
static inline bool t_pool_release(_Atomic uint64_t *word, uint64_t me)
{
    uint64_t cur = me;
    return atomic_compare_exchange_strong(word, &cur, 0);
}

#endif /* LOCKING_C_TESTS_SUPPORT_H */
