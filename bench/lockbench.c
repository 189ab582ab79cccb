/*
 * lockbench: the C half of the liblocking benchmark suite (bench/run.sh).
 *
 * It measures liblocking through its C API, the raw system calls that are
 * the physical floor, and liblockfile, in every scenario of bench/README.md.
 * Each subcommand prints one JSON object per line on stdout; bench/bench.py
 * runs them, and bench/pyworker.py does the same for the Python libraries.
 *
 *   lockbench list
 *   lockbench uncontended DIR ROUNDS SLICE_MS SYSTEM...
 *   lockbench contended   DIR SYSTEM NPROC DURATION_MS [GRACE_MS]
 *   lockbench fairness    DIR SYSTEM NPROC DURATION_MS HOLD_US WORK_US
 *   lockbench threads     DIR SYSTEM NTHREADS DURATION_MS
 *   lockbench crash       DIR SYSTEM CAP_MS
 *   lockbench hold        DIR SYSTEM N
 *   lockbench dirsize     EMPTY_DIR BIG_DIR ROUNDS PAIRS SYSTEM...
 *   lockbench populate    DIR N
 *   lockbench cycles      DIR SYSTEM N   (no output: for strace -c)
 *   lockbench readers     DIR NPROC ROUNDS SLICE_MS BASE_SYSTEM SYSTEM...
 *   lockbench mixed       DIR READERS ROUNDS SLICE_MS BASE_SYSTEM SYSTEM...
 *   lockbench fencing     DIR ROUNDS SLICE_MS BASE_SYSTEM SYSTEM...
 *
 * readers, mixed and fencing (shared locks and fencing tokens, 0.2) report
 * every system against BASE_SYSTEM, a raw kernel lock measured in the same
 * run (interleaved rounds): the machine is shared and noisy, so only
 * same-run ratios compare.
 *
 * Build with -DHAVE_LOCKFILE -llockfile to include liblockfile.
 * LOCKBENCH_DUMP=FILE makes contended/threads write every wait to FILE;
 * LOCKBENCH_SEQ=FILE makes contended/threads/fairness write the hand-over
 * sequence (worker, others waiting, call and acquisition times in ns from
 * the start) to FILE.
 */
#define _GNU_SOURCE
#include <locking.h>

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>

/* The C test support library (c_tests/support.h, compiled with
 * -I c_tests): clocks, shared memory, processes. Its helpers give up
 * through die(). */
static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
#define T_SETUP_FAILED die
#include "support.h"

#ifdef HAVE_LOCKFILE
#include <lockfile.h>
#endif

/* ---------------------------------------------------------------- utils */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lockbench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void mkdirs(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        die("bad directory %s", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) == -1 && errno != EEXIST)
                die("mkdir %s: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
}

static void join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        die("path too long: %s/%s", a, b);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array */
static int64_t pct(const int64_t *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

/* one JSON string value (names here are plain ASCII) */
static void jstr(const char *key, const char *val, int comma)
{
    printf("\"%s\":\"%s\"%s", key, val, comma ? "," : "");
}

/* ------------------------------------------------------------- systems */

enum kind { K_LL, K_RAW_MKDIR, K_RAW_OPEN, K_RAW_OFD, K_RAW_FLOCK, K_LOCKFILE };

/* sysdesc.flags */
#define SF_SHARED 1 /* acquire shared: LOCKING_SHARED, F_RDLCK, LOCK_SH */
#define SF_TOKEN 2  /* liblocking: ask for the fencing token after each acquisition */
#define SF_APPEND 4 /* raw-ofd: append one byte to a counter file while locked */

struct sysdesc {
    const char *name;
    enum kind kind;
    int method;     /* liblocking method */
    double timeout; /* liblocking timeout */
    int lfflags;    /* liblockfile flags */
    int flags;      /* SF_* */
};

static const struct sysdesc SYSTEMS[] = {
    {"liblocking-mkdir", K_LL, LOCKING_METHOD_MKDIR, LOCKING_WAIT_FOREVER, 0, 0},
    {"liblocking-opencreate", K_LL, LOCKING_METHOD_OPENCREATE, LOCKING_WAIT_FOREVER, 0, 0},
    {"liblocking-kernel", K_LL, LOCKING_METHOD_KERNEL, LOCKING_WAIT_FOREVER, 0, 0},
    {"liblocking-kernel-t60", K_LL, LOCKING_METHOD_KERNEL, 60.0, 0, 0},
    {"raw-mkdir", K_RAW_MKDIR, 0, 0, 0, 0},
    {"raw-open", K_RAW_OPEN, 0, 0, 0, 0},
    {"raw-ofd", K_RAW_OFD, 0, 0, 0, 0},
    {"raw-flock", K_RAW_FLOCK, 0, 0, 0, 0},
#ifdef HAVE_LOCKFILE
    {"liblockfile", K_LOCKFILE, 0, 0, 0, 0},
    {"liblockfile-pid", K_LOCKFILE, 0, 0, L_PID, 0},
#endif
    /* 0.2: shared acquisitions and fencing tokens (readers, mixed, fencing) */
    {"liblocking-mkdir-shared", K_LL, LOCKING_METHOD_MKDIR, LOCKING_WAIT_FOREVER, 0, SF_SHARED},
    {"liblocking-opencreate-shared", K_LL, LOCKING_METHOD_OPENCREATE, LOCKING_WAIT_FOREVER, 0,
     SF_SHARED},
    {"liblocking-kernel-shared", K_LL, LOCKING_METHOD_KERNEL, LOCKING_WAIT_FOREVER, 0, SF_SHARED},
    {"liblocking-mkdir-token", K_LL, LOCKING_METHOD_MKDIR, LOCKING_WAIT_FOREVER, 0, SF_TOKEN},
    {"liblocking-opencreate-token", K_LL, LOCKING_METHOD_OPENCREATE, LOCKING_WAIT_FOREVER, 0,
     SF_TOKEN},
    {"liblocking-kernel-token", K_LL, LOCKING_METHOD_KERNEL, LOCKING_WAIT_FOREVER, 0, SF_TOKEN},
    {"raw-ofd-shared", K_RAW_OFD, 0, 0, 0, SF_SHARED},
    {"raw-flock-shared", K_RAW_FLOCK, 0, 0, 0, SF_SHARED},
    {"raw-ofd-append", K_RAW_OFD, 0, 0, 0, SF_APPEND},
};
#define NSYSTEMS (sizeof SYSTEMS / sizeof SYSTEMS[0])

static const struct sysdesc *find_system(const char *name)
{
    for (size_t i = 0; i < NSYSTEMS; i++)
        if (strcmp(SYSTEMS[i].name, name) == 0)
            return &SYSTEMS[i];
    die("unknown system %s (see `lockbench list`)", name);
}

/* One party's handle on one lock name. */
struct inst {
    const struct sysdesc *d;
    Locker *lk;
    int dirfd;          /* raw-mkdir, raw-open: the lock directory */
    int fd;             /* raw-ofd, raw-flock: the lock file */
    char name[64];      /* entry name in the directory */
    char *path;         /* full path of the lock file (raw-ofd, raw-flock, liblockfile) */
    int blocking;       /* wait for the lock (else: try once, must succeed) */
    int shared;         /* acquire shared (from SF_SHARED; `mixed` sets it per role) */
    int appendfd;       /* raw-ofd-append: the counter file, O_APPEND */
    uint64_t token;     /* SF_TOKEN, SF_APPEND: the last token seen */
};

/*
 * The lock directory's descriptor for raw-mkdir and raw-open, opened once
 * per directory and process (as liblocking does), so that 1,000 handles do
 * not cost 1,000 descriptors.
 */
static int dir_fd(const char *dir)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static struct {
        pid_t pid;
        char *path;
        int fd;
    } cache[16];
    pthread_mutex_lock(&mu);
    int fd = -1;
    for (int i = 0; i < 16 && fd < 0; i++)
        if (cache[i].path && cache[i].pid == getpid() && strcmp(cache[i].path, dir) == 0)
            fd = cache[i].fd;
    if (fd < 0) {
        mkdirs(dir);
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            die("open %s: %s", dir, strerror(errno));
        for (int i = 0; i < 16; i++)
            if (!cache[i].path || cache[i].pid != getpid()) {
                free(cache[i].path);
                cache[i].pid = getpid();
                cache[i].path = strdup(dir);
                cache[i].fd = fd;
                break;
            }
    }
    pthread_mutex_unlock(&mu);
    return fd;
}

/*
 * Opens a handle on lock `name` in directory `dir` (created if missing).
 * `blocking`: lock() waits (raw-ofd: F_OFD_SETLKW, raw-flock: LOCK_EX,
 * liblockfile: its own retries, raw-mkdir/raw-open: retry every 1 ms).
 */
static void inst_open(struct inst *in, const struct sysdesc *d, const char *dir,
                      const char *name, int blocking, double expire)
{
    memset(in, 0, sizeof *in);
    in->d = d;
    in->dirfd = -1;
    in->fd = -1;
    in->appendfd = -1;
    in->blocking = blocking;
    in->shared = (d->flags & SF_SHARED) != 0;
    snprintf(in->name, sizeof in->name, "%s", name);
    char path[PATH_MAX];
    join(path, sizeof path - 8, dir, name);
    switch (d->kind) {
    case K_LL: {
        int rc = locker_new(name, dir, "bench", d->timeout, expire, d->method, &in->lk);
        if (rc != LOCKING_OK)
            die("locker_new(%s): %s", dir, locking_last_error());
        break;
    }
    case K_RAW_MKDIR:
    case K_RAW_OPEN:
        in->dirfd = dir_fd(dir);
        break;
    case K_RAW_OFD:
    case K_RAW_FLOCK:
        mkdirs(dir);
        in->path = strdup(path);
        in->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (in->fd < 0)
            die("open %s: %s", path, strerror(errno));
        if (d->flags & SF_APPEND) {
            /* what a fencing-token draw costs at the least: one appended
               byte, the token being the offset after it */
            strcat(path, "+f");
            in->appendfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
            if (in->appendfd < 0)
                die("open %s: %s", path, strerror(errno));
        }
        break;
    case K_LOCKFILE:
        mkdirs(dir);
        /* liblockfile locks "<file>.lock" by convention */
        strcat(path, ".lock");
        in->path = strdup(path);
        break;
    }
}

static int ofd(int fd, int cmd, short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    return fcntl(fd, cmd, &fl);
}

/* Acquires; dies on failure (a non-blocking handle must get it at once). */
static void inst_lock(struct inst *in)
{
    switch (in->d->kind) {
    case K_LL: {
        int rc = in->shared ? locker_acquire(in->lk, LOCKING_SHARED, in->d->timeout)
                            : locker_lock(in->lk);
        if (rc != LOCKING_OK)
            die("%s(%s): %s (%s)", in->shared ? "locker_acquire" : "locker_lock", in->d->name,
                locking_strerror(rc), locking_last_error());
        if (in->d->flags & SF_TOKEN) {
            uint64_t t = 0;
            rc = locker_fencing_token(in->lk, &t);
            if (rc != LOCKING_OK)
                die("locker_fencing_token(%s): %s (%s)", in->d->name, locking_strerror(rc),
                    locking_last_error());
            if (t <= in->token) /* one Locker, one after another: must grow */
                die("%s: fencing token %llu after %llu", in->d->name, (unsigned long long)t,
                    (unsigned long long)in->token);
            in->token = t;
        }
        return;
    }
    case K_RAW_MKDIR:
        while (mkdirat(in->dirfd, in->name, 0777) == -1) {
            if (errno != EEXIST || !in->blocking)
                die("mkdir %s: %s", in->name, strerror(errno));
            t_sleep(0.001);
        }
        return;
    case K_RAW_OPEN:
        for (;;) {
            int fd = openat(in->dirfd, in->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd >= 0) {
                close(fd);
                return;
            }
            if (errno != EEXIST || !in->blocking)
                die("open(O_EXCL) %s: %s", in->name, strerror(errno));
            t_sleep(0.001);
        }
    case K_RAW_OFD:
        while (ofd(in->fd, in->blocking ? F_OFD_SETLKW : F_OFD_SETLK, in->shared ? F_RDLCK : F_WRLCK) == -1)
            if (errno != EINTR)
                die("fcntl(F_OFD_SETLK%s): %s", in->blocking ? "W" : "", strerror(errno));
        if (in->appendfd >= 0) {
            off_t t;
            if (write(in->appendfd, "", 1) != 1 || (t = lseek(in->appendfd, 0, SEEK_CUR)) < 0)
                die("append: %s", strerror(errno));
            in->token = (uint64_t)t;
        }
        return;
    case K_RAW_FLOCK:
        while (flock(in->fd, (in->shared ? LOCK_SH : LOCK_EX) | (in->blocking ? 0 : LOCK_NB)) == -1)
            if (errno != EINTR)
                die("flock: %s", strerror(errno));
        return;
    case K_LOCKFILE:
#ifdef HAVE_LOCKFILE
    {
        int rc = lockfile_create(in->path, in->blocking ? 100000 : 0, in->d->lfflags);
        if (rc != L_SUCCESS)
            die("lockfile_create(%s) = %d: %s", in->path, rc, strerror(errno));
        return;
    }
#else
        die("built without liblockfile");
#endif
    }
}

static void inst_unlock(struct inst *in)
{
    switch (in->d->kind) {
    case K_LL: {
        int rc = locker_unlock(in->lk);
        if (rc != LOCKING_OK)
            die("locker_unlock(%s): %s (%s)", in->d->name, locking_strerror(rc), locking_last_error());
        return;
    }
    case K_RAW_MKDIR:
        if (unlinkat(in->dirfd, in->name, AT_REMOVEDIR) == -1)
            die("rmdir %s: %s", in->name, strerror(errno));
        return;
    case K_RAW_OPEN:
        if (unlinkat(in->dirfd, in->name, 0) == -1)
            die("unlink %s: %s", in->name, strerror(errno));
        return;
    case K_RAW_OFD:
        if (ofd(in->fd, F_OFD_SETLK, F_UNLCK) == -1)
            die("fcntl(F_UNLCK): %s", strerror(errno));
        return;
    case K_RAW_FLOCK:
        if (flock(in->fd, LOCK_UN) == -1)
            die("flock(LOCK_UN): %s", strerror(errno));
        return;
    case K_LOCKFILE:
#ifdef HAVE_LOCKFILE
        if (lockfile_remove(in->path) != 0)
            die("lockfile_remove(%s): %s", in->path, strerror(errno));
#endif
        return;
    }
}

static void inst_close(struct inst *in)
{
    if (in->lk)
        locker_free(in->lk);
    if (in->fd >= 0)
        close(in->fd);
    if (in->appendfd >= 0)
        close(in->appendfd);
    free(in->path);
    in->path = NULL;
    in->lk = NULL;
    in->dirfd = in->fd = in->appendfd = -1;
}

/* -------------------------------------------------- uncontended cycles */

/* ns per lock+unlock cycle over `n` cycles */
static double cycle_ns(struct inst *in, long n)
{
    int64_t t0 = t_now_ns();
    for (long i = 0; i < n; i++) {
        inst_lock(in);
        inst_unlock(in);
    }
    return (double)(t_now_ns() - t0) / (double)n;
}

/* the cost of one t_now_ns() reading, subtracted from single-cycle times */
static int64_t timer_overhead(void)
{
    enum { N = 10001 };
    static int64_t d[N];
    for (int i = 0; i < N; i++) {
        int64_t a = t_now_ns();
        d[i] = t_now_ns() - a;
    }
    qsort(d, N, sizeof d[0], cmp_i64);
    return d[N / 2];
}

/*
 * Interleaved rounds: in every round each system (in a rotating order) runs
 * a slice of single, individually timed cycles, about `slice_ms` long. The
 * median of a system's single cycles is its cost: robust to the stalls
 * (other sessions' CPU and disk load, journal commits) that would land in
 * some batches and not others, and taken at the same moments for every
 * system, so that ratios between them compare like with like.
 */
struct rounds {
    int nsys, rounds;
    long *k;     /* cycles per slice, per system */
    int64_t **t; /* per system: rounds * k single-cycle times, round by round */
    int64_t oh;  /* timer overhead, already subtracted */
};

static void rounds_collect(struct rounds *R, struct inst *insts, int nsys, int rounds, double slice_ms)
{
    R->nsys = nsys;
    R->rounds = rounds;
    R->k = calloc((size_t)nsys, sizeof *R->k);
    R->t = calloc((size_t)nsys, sizeof *R->t);
    long *k = R->k;
    int64_t **t = R->t;
    for (int i = 0; i < nsys; i++) {
        double c = cycle_ns(&insts[i], 50); /* warm up, and a first estimate */
        c = cycle_ns(&insts[i], (long)(2e6 / c) + 10);
        k[i] = (long)(slice_ms * 1e6 / c);
        if (k[i] < 10)
            k[i] = 10;
        if (k[i] > 20000)
            k[i] = 20000;
        t[i] = calloc((size_t)(k[i] * rounds), sizeof **t);
    }
    int64_t oh = R->oh = timer_overhead();
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < nsys; j++) {
            int i = (j + r) % nsys;
            int64_t *v = t[i] + (size_t)r * (size_t)k[i];
            for (long c = 0; c < k[i]; c++) {
                int64_t a = t_now_ns();
                inst_lock(&insts[i]);
                inst_unlock(&insts[i]);
                v[c] = t_now_ns() - a - oh;
            }
        }
}

static void rounds_free(struct rounds *R)
{
    for (int i = 0; i < R->nsys; i++)
        free(R->t[i]);
    free(R->t);
    free(R->k);
}

static void rounds_json(struct inst *insts, int nsys, int rounds, double slice_ms)
{
    struct rounds R;
    rounds_collect(&R, insts, nsys, rounds, slice_ms);
    for (int i = 0; i < nsys; i++) {
        size_t n = (size_t)(R.k[i] * rounds);
        double sum = 0;
        for (size_t c = 0; c < n; c++)
            sum += (double)R.t[i][c];
        double mean = sum / (double)n;
        qsort(R.t[i], n, sizeof **R.t, cmp_i64);
        printf("{");
        jstr("scenario", "uncontended", 1);
        jstr("system", insts[i].d->name, 1);
        printf("\"cycles\":%zu,\"timer_ns\":%lld,\"median_ns\":%lld,\"p10_ns\":%lld,"
               "\"p90_ns\":%lld,\"mean_ns\":%.1f}\n",
               n, (long long)R.oh, (long long)pct(R.t[i], n, 50), (long long)pct(R.t[i], n, 10),
               (long long)pct(R.t[i], n, 90), mean);
    }
    fflush(stdout);
    rounds_free(&R);
}

static int cmd_uncontended(int argc, char **argv)
{
    if (argc < 4)
        die("usage: uncontended DIR ROUNDS SLICE_MS SYSTEM...");
    const char *dir = argv[0];
    int rounds = atoi(argv[1]);
    double slice_ms = atof(argv[2]);
    int nsys = argc - 3;
    struct inst *insts = calloc((size_t)nsys, sizeof *insts);
    for (int k = 0; k < nsys; k++) {
        const struct sysdesc *d = find_system(argv[3 + k]);
        char sub[PATH_MAX];
        join(sub, sizeof sub, dir, d->name);
        inst_open(&insts[k], d, sub, "one", 0, LOCKING_NEVER_EXPIRE);
    }
    rounds_json(insts, nsys, rounds, slice_ms);
    for (int k = 0; k < nsys; k++)
        inst_close(&insts[k]);
    free(insts);
    return 0;
}

/*
 * Lock+unlock in an empty directory against one with many entries: single
 * cycles, alternating between the two directories (and between systems
 * every round), so both see the same machine; the medians of the single
 * cycles are robust to the stalls (journal commits, preemption) that hit
 * whole batches on a shared disk.
 */
static int cmd_dirsize(int argc, char **argv)
{
    if (argc < 5)
        die("usage: dirsize EMPTY_DIR BIG_DIR ROUNDS PAIRS_PER_ROUND SYSTEM...");
    int rounds = atoi(argv[2]);
    int pairs = atoi(argv[3]);
    int nsys = argc - 4;
    size_t per = (size_t)rounds * (size_t)pairs;
    struct inst *insts = calloc((size_t)nsys * 2, sizeof *insts);
    int64_t *t = calloc((size_t)nsys * 2 * per, sizeof *t);
    for (int k = 0; k < nsys; k++)
        for (int s = 0; s < 2; s++) {
            const struct sysdesc *d = find_system(argv[4 + k]);
            char name[64];
            snprintf(name, sizeof name, "dirsize-%s", d->name);
            inst_open(&insts[k * 2 + s], d, argv[s], name, 0, LOCKING_NEVER_EXPIRE);
            cycle_ns(&insts[k * 2 + s], 20); /* warm up */
        }
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < nsys; j++) {
            int k = (j + r) % nsys;
            for (int p = 0; p < pairs; p++)
                for (int q = 0; q < 2; q++) {
                    int s = (p + q) % 2; /* alternate which goes first */
                    int64_t a = t_now_ns();
                    inst_lock(&insts[k * 2 + s]);
                    inst_unlock(&insts[k * 2 + s]);
                    t[((size_t)k * 2 + (size_t)s) * per + (size_t)r * (size_t)pairs + (size_t)p] =
                        t_now_ns() - a;
                }
        }
    for (int k = 0; k < nsys; k++) {
        double med[2], p90[2];
        for (int s = 0; s < 2; s++) {
            int64_t *v = t + ((size_t)k * 2 + (size_t)s) * per;
            qsort(v, per, sizeof *v, cmp_i64);
            med[s] = (double)pct(v, per, 50);
            p90[s] = (double)pct(v, per, 90);
        }
        printf("{");
        jstr("scenario", "dirsize", 1);
        jstr("system", insts[k * 2].d->name, 1);
        printf("\"cycles\":%zu,\"empty_ns\":%.1f,\"big_ns\":%.1f,\"empty_p90_ns\":%.1f,"
               "\"big_p90_ns\":%.1f}\n",
               per, med[0], med[1], p90[0], p90[1]);
    }
    fflush(stdout);
    for (int i = 0; i < nsys * 2; i++)
        inst_close(&insts[i]);
    free(insts);
    free(t);
    return 0;
}

/* ---------------------------------------------- contended and threads */

#define HOLD_NS 500000 /* inside the lock (contended, threads) */
#define WORK_NS 500000 /* outside the lock (contended, threads): the mean */
/*
 * The work outside the lock lasts WORK_NS * [1 - WORK_JITTER, 1 + WORK_JITTER],
 * uniformly at random. With the same fixed sleep inside and outside, the
 * kernel's locks phase-lock: the process back from its work arrives just as
 * the holder releases, before the waiters woken by that release run, so two
 * processes alternate without waiting while the others starve (raw
 * F_OFD_SETLKW at 4 processes: p50 0.5 us, p99 16-25 ms on this machine in
 * November 2026, against 1.2 ms and 2.3 ms in the 0.1 results). Independent
 * processes do not keep such a phase. LOCKBENCH_WORK_JITTER overrides it
 * (0: the fixed work of the 0.1 results).
 */
#define WORK_JITTER 0.5

/*
 * One acquisition, appended by its holder (so in the order of the
 * acquisitions) to the hand-over sequence: who, since when it waited, when
 * it got the lock, and how many of the other workers were in a lock call
 * at that moment (their "waiting" marks, set before the call and cleared
 * after it returns).
 */
struct acq {
    int32_t who;
    int32_t others_waiting;
    int64_t t_wait; /* the lock call began */
    int64_t t_acq;  /* the lock call returned */
};

struct shared {
    volatile int64_t t_start;
    volatile int64_t t_end;
    int nworkers;
    long maxw;
    int64_t hold_ns, work_ns;
    double work_jitter; /* work uniform in work_ns * [1 - j, 1 + j] */
    struct acq *seq; /* shared mapping of maxseq entries */
    long maxseq;
    long nseq;       /* entries claimed (atomic) */
    /* per worker: count, finish time; then maxw waits each */
    struct slot {
        volatile long count;           /* completed lock+unlock cycles */
        volatile int64_t finish;
        volatile int64_t waiting_since; /* in a lock call since then, or 0 */
    } slots[64];
    int64_t waits[]; /* nworkers * maxw */
};

struct run {
    struct shared *sh;
    const struct sysdesc *d;
    const char *lockdir;
    const char *counter;
    int index;
    pthread_barrier_t *barrier; /* threads */
    int ready_w, go_r;          /* processes */
};

/* read the counter, hold, write it back + 1: any overlap loses updates */
static void bump(int fd, int64_t hold_ns)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    long v = strtol(buf, NULL, 10);
    if (hold_ns > 0)
        t_sleep((double)hold_ns / 1e9);
    int len = snprintf(buf, sizeof buf, "%ld\n", v + 1);
    if (pwrite(fd, buf, (size_t)len, 0) != len)
        die("pwrite counter: %s", strerror(errno));
}

static void *worker(void *arg)
{
    struct run *r = arg;
    struct shared *sh = r->sh;
    struct inst in;
    inst_open(&in, r->d, r->lockdir, "contended", 1, LOCKING_NEVER_EXPIRE);
    int cfd = open(r->counter, O_RDWR | O_CLOEXEC);
    if (cfd < 0)
        die("open %s: %s", r->counter, strerror(errno));
    if (r->barrier) {
        pthread_barrier_wait(r->barrier);
        pthread_barrier_wait(r->barrier);
    } else {
        char c = 'r';
        if (write(r->ready_w, &c, 1) != 1)
            die("ready pipe");
        if (read(r->go_r, &c, 1) < 0) /* EOF when the parent closes it */
            die("go pipe");
    }
    int64_t *waits = sh->waits + (size_t)r->index * (size_t)sh->maxw;
    struct slot *me = &sh->slots[r->index];
    long n = 0;
    uint64_t rng = t_rng_seed((uint64_t)r->index + 1);
    while (t_now_ns() < sh->t_end && n < sh->maxw) {
        int64_t t0 = t_now_ns();
        __atomic_store_n(&me->waiting_since, t0, __ATOMIC_SEQ_CST);
        inst_lock(&in);
        int64_t t1 = t_now_ns();
        __atomic_store_n(&me->waiting_since, 0, __ATOMIC_SEQ_CST);
        /* the hand-over sequence: who else is waiting as we get it */
        int others = 0;
        for (int i = 0; i < sh->nworkers; i++)
            if (i != r->index && __atomic_load_n(&sh->slots[i].waiting_since, __ATOMIC_SEQ_CST))
                others++;
        long k = __atomic_fetch_add(&sh->nseq, 1, __ATOMIC_SEQ_CST);
        if (k < sh->maxseq)
            sh->seq[k] = (struct acq){r->index, others, t0, t1};
        waits[n] = t1 - t0;
        bump(cfd, sh->hold_ns);
        inst_unlock(&in);
        me->count = ++n;
        me->finish = t_now_ns();
        if (sh->work_ns > 0) {
            double u = (double)(t_rng_next(&rng) >> 11) / 9007199254740992.0; /* [0, 1) */
            t_sleep((double)sh->work_ns / 1e9 * (1 + sh->work_jitter * (2 * u - 1)));
        }
    }
    me->finish = t_now_ns();
    close(cfd);
    inst_close(&in);
    return NULL;
}

static long read_counter(const char *path)
{
    char buf[32] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("open %s: %s", path, strerror(errno));
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        die("read counter");
    return strtol(buf, NULL, 10);
}

/*
 * Fairness, from the hand-over sequence (in the order of the acquisitions):
 * the longest run of consecutive acquisitions by one worker in which every
 * acquisition after the first was made while another worker was waiting;
 * how many acquisitions extended such a run; the most acquisitions by
 * others during one wait (a first-come-first-served lock lets each of the
 * other N-1 workers in at most once); and the overtakes: acquisitions by a
 * worker whose lock call began after that of one still waiting, and by how
 * much later at most (a FIFO queue orders by its ticket draw, inside the
 * call, so a draw delayed after the call began shows here).
 *
 * Waits that began in the first FAIR_WARMUP_NS of the run are left out of
 * all of these: every worker calls lock at the same moment then, each for
 * the first time in its life (set-up inside the library, 8 processes on the
 * CPUs at once), so the order of their arrivals is not that of their calls.
 */
#define FAIR_WARMUP_NS 20000000LL

struct fair {
    long n;           /* acquisitions in the sequence */
    long counted;     /* of which after the warm-up */
    long longest_run; /* 1 when nobody ever took it twice while others waited */
    long repeats;     /* acquisitions that extended a run */
    long max_bypass;  /* the most acquisitions by others during one wait */
    double p99_bypass;
    long over_bypass; /* waits during which more than nw - 1 others got it */
    long overtakes;   /* acquisitions by a process whose call began after that
                         of one still waiting */
    int64_t max_lead; /* the most by which such a call began later (ns) */
};

static void fairness_of(const struct acq *seq, long n, int nw, int64_t t_warm, struct fair *f)
{
    memset(f, 0, sizeof *f);
    f->n = n;
    f->longest_run = n > 0;
    if (n == 0)
        return;
    int64_t *byp = calloc((size_t)n, sizeof *byp);
    long run = 1;
    for (long k = 0; k < n; k++) {
        int counted = seq[k].t_wait >= t_warm;
        if (k > 0) {
            if (counted && seq[k].who == seq[k - 1].who && seq[k].others_waiting > 0) {
                run++;
                f->repeats++;
            } else {
                run = 1;
            }
            if (run > f->longest_run)
                f->longest_run = run;
        }
        if (!counted)
            continue;
        /* acquisitions before k that came after this wait began: the
           first index j with t_acq > t_wait (t_acq grows with k) */
        long lo = 0, hi = k;
        while (lo < hi) {
            long mid = lo + (hi - lo) / 2;
            if (seq[mid].t_acq > seq[k].t_wait)
                hi = mid;
            else
                lo = mid + 1;
        }
        long b = k - lo;
        byp[f->counted++] = b;
        /* served before us although their call began after ours */
        for (long j = lo; j < k; j++)
            if (seq[j].t_wait > seq[k].t_wait) {
                f->overtakes++;
                if (seq[j].t_wait - seq[k].t_wait > f->max_lead)
                    f->max_lead = seq[j].t_wait - seq[k].t_wait;
            }
        if (b > nw - 1)
            f->over_bypass++;
        if (b > f->max_bypass)
            f->max_bypass = b;
    }
    qsort(byp, (size_t)f->counted, sizeof *byp, cmp_i64);
    f->p99_bypass = f->counted ? (double)pct(byp, (size_t)f->counted, 99) : 0;
    free(byp);
}

static int contend(const char *mode, int argc, char **argv)
{
    int fairness = strcmp(mode, "fairness") == 0;
    if (fairness && argc != 6)
        die("usage: fairness DIR SYSTEM N DURATION_MS HOLD_US WORK_US");
    if (!fairness && argc != 4 && argc != 5)
        die("usage: %s DIR SYSTEM N DURATION_MS [GRACE_MS]", mode);
    /* processes still in a lock call GRACE_MS after the end are killed */
    double grace_ms = argc == 5 ? atof(argv[4]) : -1;
    const char *dir = argv[0];
    const struct sysdesc *d = find_system(argv[1]);
    int nw = atoi(argv[2]);
    double dur_ms = atof(argv[3]);
    int64_t hold_ns = fairness ? (int64_t)(atof(argv[4]) * 1e3) : HOLD_NS;
    int64_t work_ns = fairness ? (int64_t)(atof(argv[5]) * 1e3) : WORK_NS;
    int threads = strcmp(mode, "threads") == 0;
    if (nw < 1 || nw > 64)
        die("1..64 workers");
    if (hold_ns < 0 || work_ns < 0)
        die("hold and work times must not be negative");
    long stuck = 0;       /* workers killed while still waiting */
    int64_t killed_at = 0;
    int64_t stuck_waits[64]; /* counted as waits: they lasted at least that long */
    int64_t stuck_ns = 0; /* the longest of their waits so far */
    char lockdir[PATH_MAX], counter[PATH_MAX];
    join(lockdir, sizeof lockdir, dir, "locks");
    join(counter, sizeof counter, dir, "counter");
    mkdirs(lockdir);
    int cfd = open(counter, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (cfd < 0 || write(cfd, "0\n", 2) != 2)
        die("counter %s: %s", counter, strerror(errno));
    close(cfd);

    /* one worker holds for hold_ns at least per acquisition, so it cannot
       make more than this many */
    int64_t cycle_floor = hold_ns > 20000 ? hold_ns : 20000;
    long maxw = (long)(dur_ms * 1e6 / (double)cycle_floor * 1.1) + 1000;
    size_t size = sizeof(struct shared) + (size_t)nw * (size_t)maxw * sizeof(int64_t);
    struct shared *sh = t_shared_alloc(size);
    sh->nworkers = nw;
    sh->maxw = maxw;
    sh->hold_ns = hold_ns;
    sh->work_ns = work_ns;
    sh->work_jitter = fairness ? 0 : WORK_JITTER;
    if (getenv("LOCKBENCH_WORK_JITTER"))
        sh->work_jitter = atof(getenv("LOCKBENCH_WORK_JITTER"));
    if (sh->work_jitter < 0 || sh->work_jitter > 1)
        die("LOCKBENCH_WORK_JITTER must be in [0, 1]");
    sh->maxseq = (long)nw * maxw;
    size_t seqsize = (size_t)sh->maxseq * sizeof(struct acq);
    sh->seq = t_shared_alloc(seqsize);
    sh->t_end = INT64_MAX;

    struct run *runs = calloc((size_t)nw, sizeof *runs);
    for (int i = 0; i < nw; i++)
        runs[i] = (struct run){sh, d, lockdir, counter, i, NULL, -1, -1};

    if (threads) {
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, (unsigned)nw + 1);
        pthread_t *tids = calloc((size_t)nw, sizeof *tids);
        for (int i = 0; i < nw; i++) {
            runs[i].barrier = &barrier;
            if (pthread_create(&tids[i], NULL, worker, &runs[i]) != 0)
                die("pthread_create");
        }
        pthread_barrier_wait(&barrier); /* all set up */
        sh->t_start = t_now_ns();
        sh->t_end = sh->t_start + (int64_t)(dur_ms * 1e6);
        pthread_barrier_wait(&barrier); /* go */
        for (int i = 0; i < nw; i++)
            pthread_join(tids[i], NULL);
        free(tids);
        pthread_barrier_destroy(&barrier);
    } else {
        int ready[2], go[2];
        if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC))
            die("pipe");
        pid_t *pids = calloc((size_t)nw, sizeof *pids);
        fflush(stdout);
        for (int i = 0; i < nw; i++) {
            pid_t p = fork();
            if (p < 0)
                die("fork: %s", strerror(errno));
            if (p == 0) {
                close(ready[0]);
                close(go[1]);
                runs[i].ready_w = ready[1];
                runs[i].go_r = go[0];
                worker(&runs[i]);
                _exit(0);
            }
            pids[i] = p;
        }
        close(ready[1]);
        close(go[0]);
        for (int i = 0; i < nw; i++) {
            char c;
            if (read(ready[0], &c, 1) != 1)
                die("a worker died while setting up");
        }
        sh->t_start = t_now_ns();
        sh->t_end = sh->t_start + (int64_t)(dur_ms * 1e6);
        close(go[1]); /* go */
        int bad = 0, left = nw;
        int64_t kill_at = grace_ms < 0 ? INT64_MAX : sh->t_end + (int64_t)(grace_ms * 1e6);
        while (left > 0) {
            for (int i = 0; i < nw; i++) {
                int st;
                if (pids[i] <= 0 || waitpid(pids[i], &st, WNOHANG) != pids[i])
                    continue;
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                    bad++;
                pids[i] = 0;
                left--;
            }
            if (left > 0 && t_now_ns() >= kill_at) {
                killed_at = t_now_ns();
                for (int i = 0; i < nw; i++)
                    if (pids[i] > 0) {
                        int64_t since = sh->slots[i].waiting_since;
                        if (since) {
                            stuck_waits[stuck++] = t_now_ns() - since;
                            if (t_now_ns() - since > stuck_ns)
                                stuck_ns = t_now_ns() - since;
                        } else {
                            bad++;
                        }
                        t_kill_reap(pids[i]);
                        pids[i] = 0;
                        left--;
                    }
            }
            if (left > 0)
                t_sleep(0.001);
        }
        close(ready[0]);
        free(pids);
        if (bad)
            die("%d workers failed", bad);
    }

    struct rusage ru;
    getrusage(threads ? RUSAGE_SELF : RUSAGE_CHILDREN, &ru);
    double cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    long total = 0;
    int64_t finish = killed_at > sh->t_start ? killed_at : sh->t_start;
    for (int i = 0; i < nw; i++) {
        total += sh->slots[i].count;
        if (sh->slots[i].finish > finish)
            finish = sh->slots[i].finish;
    }
    int64_t *all = malloc((size_t)(total + stuck + 1) * sizeof *all);
    long k = 0;
    for (int i = 0; i < nw; i++)
        for (long j = 0; j < sh->slots[i].count; j++)
            all[k++] = sh->waits[(size_t)i * (size_t)maxw + (size_t)j];
    long acquisitions = total;
    for (long i = 0; i < stuck; i++)
        all[k++] = stuck_waits[i];
    total = k;
    qsort(all, (size_t)total, sizeof *all, cmp_i64);
    const char *dump = getenv("LOCKBENCH_DUMP");
    if (dump) {
        FILE *f = fopen(dump, "w");
        for (int i = 0; f && i < nw; i++)
            for (long j = 0; j < sh->slots[i].count; j++)
                fprintf(f, "%d %ld %lld\n", i, j, (long long)sh->waits[(size_t)i * (size_t)maxw + (size_t)j]);
        if (f)
            fclose(f);
    }
    const char *seqdump = getenv("LOCKBENCH_SEQ");
    if (seqdump) {
        FILE *f = fopen(seqdump, "w");
        long ns = sh->nseq < sh->maxseq ? sh->nseq : sh->maxseq;
        for (long k = 0; f && k < ns; k++)
            fprintf(f, "%d %d %lld %lld\n", sh->seq[k].who, sh->seq[k].others_waiting,
                    (long long)(sh->seq[k].t_wait - sh->t_start),
                    (long long)(sh->seq[k].t_acq - sh->t_start));
        if (f)
            fclose(f);
    }
    long counter_value = read_counter(counter);
    long over20 = 0;
    for (long i = 0; i < total; i++)
        over20 += all[i] > 20000000;
    double elapsed = (double)(finish - sh->t_start) / 1e9;
    /* shares: each worker's acquisitions against the fair share total/nw */
    long nseq = sh->nseq < sh->maxseq ? sh->nseq : sh->maxseq;
    struct fair fa;
    fairness_of(sh->seq, nseq, nw, sh->t_start + FAIR_WARMUP_NS, &fa);
    double smin = 0, smax = 0, sum = 0, sum2 = 0;
    for (int i = 0; i < nw; i++) {
        double c = (double)sh->slots[i].count;
        double s = acquisitions > 0 ? c * nw / (double)acquisitions : 0;
        if (i == 0 || s < smin)
            smin = s;
        if (i == 0 || s > smax)
            smax = s;
        sum += c;
        sum2 += c * c;
    }
    printf("{");
    jstr("scenario", mode, 1);
    jstr("system", d->name, 1);
    printf("\"workers\":%d,\"duration_s\":%.3f,\"acquisitions\":%ld,\"counter\":%ld,"
           "\"throughput\":%.1f,\"cpu_us_per_acq\":%.1f,\"over_20ms\":%ld,"
           "\"stuck\":%ld,\"stuck_wait_us\":%.1f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,",
           nw, elapsed, acquisitions, counter_value,
           elapsed > 0 ? (double)acquisitions / elapsed : 0.0,
           acquisitions ? cpu_s * 1e6 / (double)acquisitions : 0.0, over20, stuck, (double)stuck_ns / 1e3,
           (double)pct(all, (size_t)total, 50) / 1e3, (double)pct(all, (size_t)total, 99) / 1e3,
           (double)pct(all, (size_t)total, 100) / 1e3);
    printf("\"hold_us\":%.1f,\"work_us\":%.1f,\"work_jitter\":%.2f,\"counts\":[",
           (double)hold_ns / 1e3, (double)work_ns / 1e3, sh->work_jitter);
    for (int i = 0; i < nw; i++)
        printf("%s%ld", i ? "," : "", sh->slots[i].count);
    printf("],\"share_min\":%.4f,\"share_max\":%.4f,\"jain\":%.5f,\"sequence\":%ld,"
           "\"sequence_lost\":%ld,\"longest_run\":%ld,\"repeats\":%ld,\"max_bypass\":%ld,"
           "\"p99_bypass\":%.0f,\"over_bypass\":%ld,\"overtakes\":%ld,\"max_lead_us\":%.1f,"
           "\"fair_counted\":%ld,\"fair_warmup_ms\":%.0f}\n",
           smin, smax, sum2 > 0 ? sum * sum / ((double)nw * sum2) : 0.0, fa.n,
           sh->nseq - nseq, fa.longest_run, fa.repeats, fa.max_bypass, fa.p99_bypass, fa.over_bypass,
           fa.overtakes, (double)fa.max_lead / 1e3, fa.counted, FAIR_WARMUP_NS / 1e6);
    fflush(stdout);
    free(all);
    free(runs);
    munmap(sh->seq, seqsize);
    munmap(sh, size);
    return 0;
}

/* ---------------------------- shared locks and fencing tokens (0.2) */

#define MIX_HOLD_NS 100000             /* mixed: every holder holds 100 us */
#define MIX_WRITER_GAP_NS 1000000      /* mixed: the writer works 1 ms between acquisitions */
#define RW_WATCHDOG_NS 20000000000LL   /* a round still running 20 s after its end hangs */

struct rw_shared {
    volatile int64_t t_start;
    volatile int64_t t_end;
    long maxw;        /* wait slots per process (mixed; 0 for readers) */
    int readers_in;   /* readers between acquisition and release (atomic) */
    int writer_in;    /* the writer between acquisition and release (atomic) */
    int max_overlap;  /* the most readers seen holding at once (atomic) */
    long violations;  /* a holder seen beside the writer (atomic) */
    struct rw_slot {
        volatile long count;     /* acquisitions */
        volatile int64_t finish; /* when it stopped */
        volatile long cut;       /* waits still in progress at the end of the round */
    } slots[65];
    int64_t waits[]; /* mixed: nproc * maxw */
};

struct rw_role {
    struct rw_shared *sh;
    const struct sysdesc *d;
    const char *lockdir;
    int index;
    int writer; /* exclusive: mixed's writer */
    int mixed;  /* hold, record the waits, check the exclusion */
};

static void atomic_max(int *p, int v)
{
    int cur = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (v > cur && !__atomic_compare_exchange_n(p, &cur, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
}

static void rw_worker(const struct rw_role *ro, int ready_w, int go_r)
{
    struct rw_shared *sh = ro->sh;
    struct inst in;
    inst_open(&in, ro->d, ro->lockdir, "shared", 1, LOCKING_NEVER_EXPIRE);
    in.shared = !ro->writer;
    char c = 'r';
    if (write(ready_w, &c, 1) != 1)
        die("ready pipe");
    if (read(go_r, &c, 1) < 0) /* EOF when the parent closes it */
        die("go pipe");
    struct rw_slot *me = &sh->slots[ro->index];
    int64_t t_end = sh->t_end;
    long n = 0;
    if (!ro->mixed) {
        while (t_now_ns() < t_end) {
            inst_lock(&in);
            inst_unlock(&in);
            me->count = ++n;
        }
    } else {
        int64_t *waits = sh->waits + (size_t)ro->index * (size_t)sh->maxw;
        while (t_now_ns() < t_end && n < sh->maxw) {
            int64_t t0 = t_now_ns();
            inst_lock(&in);
            int64_t t1 = t_now_ns();
            waits[n] = t1 - t0;
            if (t1 > t_end)
                me->cut++;
            /* Dekker-style: of two holders that overlap, at least one sees
               the other */
            if (ro->writer) {
                __atomic_store_n(&sh->writer_in, 1, __ATOMIC_SEQ_CST);
                if (__atomic_load_n(&sh->readers_in, __ATOMIC_SEQ_CST) != 0)
                    __atomic_add_fetch(&sh->violations, 1, __ATOMIC_SEQ_CST);
            } else {
                atomic_max(&sh->max_overlap, __atomic_add_fetch(&sh->readers_in, 1, __ATOMIC_SEQ_CST));
                if (__atomic_load_n(&sh->writer_in, __ATOMIC_SEQ_CST) != 0)
                    __atomic_add_fetch(&sh->violations, 1, __ATOMIC_SEQ_CST);
            }
            t_sleep(MIX_HOLD_NS / 1e9);
            if (ro->writer)
                __atomic_store_n(&sh->writer_in, 0, __ATOMIC_SEQ_CST);
            else
                __atomic_sub_fetch(&sh->readers_in, 1, __ATOMIC_SEQ_CST);
            inst_unlock(&in);
            me->count = ++n;
            if (ro->writer && t_now_ns() < t_end)
                t_sleep(MIX_WRITER_GAP_NS / 1e9);
        }
    }
    me->finish = t_now_ns();
    inst_close(&in);
}

/*
 * One round of `nproc` processes on the lock "shared" in `lockdir`, all
 * started at once and stopping `slice_ms` later; with `mixed`, the last
 * one is the writer. Returns the time from the start to the last stop.
 */
static int64_t rw_round(struct rw_shared *sh, size_t shsize, long maxw, const struct sysdesc *d,
                        const char *lockdir, int nproc, int mixed, double slice_ms)
{
    memset(sh, 0, shsize);
    sh->maxw = maxw;
    sh->t_end = INT64_MAX;
    int ready[2], go[2];
    if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC))
        die("pipe");
    pid_t pids[65];
    fflush(stdout);
    for (int i = 0; i < nproc; i++) {
        pid_t p = fork();
        if (p < 0)
            die("fork: %s", strerror(errno));
        if (p == 0) {
            close(ready[0]);
            close(go[1]);
            struct rw_role ro = {sh, d, lockdir, i, mixed && i == nproc - 1, mixed};
            rw_worker(&ro, ready[1], go[0]);
            _exit(0);
        }
        pids[i] = p;
    }
    close(ready[1]);
    close(go[0]);
    for (int i = 0; i < nproc; i++) {
        char c;
        if (read(ready[0], &c, 1) != 1)
            die("%s: a worker died while setting up", d->name);
    }
    close(ready[0]);
    sh->t_start = t_now_ns();
    sh->t_end = sh->t_start + (int64_t)(slice_ms * 1e6);
    close(go[1]); /* go */
    int bad = 0, left = nproc;
    while (left > 0) {
        for (int i = 0; i < nproc; i++) {
            int st;
            if (pids[i] <= 0 || waitpid(pids[i], &st, WNOHANG) != pids[i])
                continue;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                bad++;
            pids[i] = 0;
            left--;
        }
        if (left > 0 && t_now_ns() > sh->t_end + RW_WATCHDOG_NS) {
            for (int i = 0; i < nproc; i++)
                if (pids[i] > 0) {
                    t_kill_reap(pids[i]);
                }
            die("%s: %d of %d processes still running 20 s after the end (hung)", d->name, left, nproc);
        }
        if (left > 0)
            t_sleep(0.001);
    }
    if (bad)
        die("%s: %d workers failed", d->name, bad);
    int64_t finish = sh->t_start;
    for (int i = 0; i < nproc; i++)
        if (sh->slots[i].finish > finish)
            finish = sh->slots[i].finish;
    return finish - sh->t_start;
}

/* median of n doubles (sorts them) */
static double median_d(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, t_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

/*
 * Readers only: NPROC processes each acquiring shared and releasing at
 * once, for SLICE_MS; total acquisitions per second. ROUNDS interleaved
 * rounds (every system once per round, in a rotating order); the ratio to
 * the first SYSTEM is the median of the per-round ratios.
 */
static int cmd_readers(int argc, char **argv)
{
    if (argc < 5)
        die("usage: readers DIR NPROC ROUNDS SLICE_MS BASE_SYSTEM SYSTEM...");
    const char *dir = argv[0];
    int nproc = atoi(argv[1]);
    int rounds = atoi(argv[2]);
    double slice_ms = atof(argv[3]);
    int nsys = argc - 4;
    if (nproc < 1 || nproc > 64 || rounds < 1 || slice_ms <= 0)
        die("readers: 1..64 processes, at least one round, a positive slice");
    const struct sysdesc **ds = calloc((size_t)nsys, sizeof *ds);
    char (*dirs)[PATH_MAX] = calloc((size_t)nsys, sizeof *dirs);
    for (int i = 0; i < nsys; i++) {
        ds[i] = find_system(argv[4 + i]);
        if (!(ds[i]->flags & SF_SHARED))
            die("readers: %s is not a shared system (see `lockbench list`)", ds[i]->name);
        join(dirs[i], sizeof dirs[i], dir, ds[i]->name);
        mkdirs(dirs[i]);
    }
    size_t shsize = sizeof(struct rw_shared);
    struct rw_shared *sh = t_shared_alloc(shsize);
    double *tp = calloc((size_t)nsys * (size_t)rounds, sizeof *tp);
    long *acq = calloc((size_t)nsys, sizeof *acq);
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < nsys; j++) {
            int i = (j + r) % nsys;
            int64_t el = rw_round(sh, shsize, 0, ds[i], dirs[i], nproc, 0, slice_ms);
            long total = 0;
            for (int p = 0; p < nproc; p++)
                total += sh->slots[p].count;
            acq[i] += total;
            tp[(size_t)i * (size_t)rounds + (size_t)r] = el > 0 ? (double)total * 1e9 / (double)el : 0;
        }
    double *v = calloc((size_t)rounds, sizeof *v);
    for (int i = 0; i < nsys; i++) {
        double *mine = tp + (size_t)i * (size_t)rounds;
        for (int r = 0; r < rounds; r++)
            v[r] = ratio(mine[r], tp[r]);
        double x = median_d(v, (size_t)rounds);
        memcpy(v, mine, (size_t)rounds * sizeof *v);
        double med = median_d(v, (size_t)rounds);
        printf("{");
        jstr("scenario", "readers", 1);
        jstr("system", ds[i]->name, 1);
        jstr("base", ds[0]->name, 1);
        printf("\"rounds_acq_per_s\":[");
        for (int r = 0; r < rounds; r++)
            printf("%s%.0f", r ? "," : "", mine[r]);
        printf("],\"procs\":%d,\"rounds\":%d,\"slice_ms\":%.0f,\"acquisitions\":%ld,"
               "\"acq_per_s\":%.0f,\"acq_per_s_min\":%.0f,\"acq_per_s_max\":%.0f,"
               "\"us_per_acq_per_proc\":%.2f,\"vs_base\":%.4f}\n",
               nproc, rounds, slice_ms, acq[i], med, v[0], v[rounds - 1],
               med > 0 ? (double)nproc * 1e6 / med : 0.0, x);
    }
    fflush(stdout);
    free(v);
    free(acq);
    free(tp);
    free(dirs);
    free(ds);
    munmap(sh, shsize);
    return 0;
}

struct mix_acc {
    int64_t *w, *rd; /* the writer's and the readers' waits, all rounds */
    size_t nw, nr;
    long wcut, rcut, violations;
    int max_overlap;
    double elapsed_s;
    double wwait_s; /* the writer's waits, summed */
};

/*
 * Mixed: READERS processes acquire shared, hold 100 us, release, again at
 * once (so that they overlap all the time); one writer acquires exclusive,
 * holds 100 us, releases, works 1 ms. ROUNDS interleaved rounds of SLICE_MS
 * per system; the waits of all rounds are pooled. Ratios are to the first
 * SYSTEM. A wait that ended only after the round's end (the readers had
 * stopped) is "cut": a starved writer's waits all end so; a served
 * writer's wait sometimes just straddles the end.
 */
static int cmd_mixed(int argc, char **argv)
{
    if (argc < 5)
        die("usage: mixed DIR READERS ROUNDS SLICE_MS BASE_SYSTEM SYSTEM...");
    const char *dir = argv[0];
    int nread = atoi(argv[1]);
    int rounds = atoi(argv[2]);
    double slice_ms = atof(argv[3]);
    int nsys = argc - 4;
    int nproc = nread + 1;
    if (nread < 1 || nread > 63 || rounds < 1 || slice_ms <= 0)
        die("mixed: 1..63 readers, at least one round, a positive slice");
    const struct sysdesc **ds = calloc((size_t)nsys, sizeof *ds);
    char (*dirs)[PATH_MAX] = calloc((size_t)nsys, sizeof *dirs);
    for (int i = 0; i < nsys; i++) {
        ds[i] = find_system(argv[4 + i]);
        if (ds[i]->kind != K_LL && ds[i]->kind != K_RAW_OFD && ds[i]->kind != K_RAW_FLOCK)
            die("mixed: %s has no shared mode", ds[i]->name);
        join(dirs[i], sizeof dirs[i], dir, ds[i]->name);
        mkdirs(dirs[i]);
    }
    long maxw = (long)(slice_ms * 1e6 / MIX_HOLD_NS) + 100; /* each holds >= 100 us */
    size_t shsize = sizeof(struct rw_shared) + (size_t)nproc * (size_t)maxw * sizeof(int64_t);
    struct rw_shared *sh = t_shared_alloc(shsize);
    struct mix_acc *acc = calloc((size_t)nsys, sizeof *acc);
    for (int i = 0; i < nsys; i++) {
        acc[i].w = calloc((size_t)rounds * (size_t)maxw, sizeof(int64_t));
        acc[i].rd = calloc((size_t)rounds * (size_t)maxw * (size_t)nread, sizeof(int64_t));
    }
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < nsys; j++) {
            int i = (j + r) % nsys;
            struct mix_acc *a = &acc[i];
            int64_t el = rw_round(sh, shsize, maxw, ds[i], dirs[i], nproc, 1, slice_ms);
            a->elapsed_s += (double)el / 1e9;
            for (int p = 0; p < nproc; p++) {
                const int64_t *src = sh->waits + (size_t)p * (size_t)maxw;
                long n = sh->slots[p].count;
                if (p == nproc - 1) {
                    for (long q = 0; q < n; q++)
                        a->wwait_s += (double)src[q] / 1e9;
                    memcpy(a->w + a->nw, src, (size_t)n * sizeof *src);
                    a->nw += (size_t)n;
                    a->wcut += sh->slots[p].cut;
                } else {
                    memcpy(a->rd + a->nr, src, (size_t)n * sizeof *src);
                    a->nr += (size_t)n;
                    a->rcut += sh->slots[p].cut;
                }
            }
            a->violations += sh->violations;
            if (sh->max_overlap > a->max_overlap)
                a->max_overlap = sh->max_overlap;
        }
    double base[4] = {0, 0, 0, 0};
    for (int i = 0; i < nsys; i++) {
        struct mix_acc *a = &acc[i];
        qsort(a->w, a->nw, sizeof *a->w, cmp_i64);
        qsort(a->rd, a->nr, sizeof *a->rd, cmp_i64);
        double w50 = (double)pct(a->w, a->nw, 50) / 1e3, w99 = (double)pct(a->w, a->nw, 99) / 1e3,
               wmax = (double)pct(a->w, a->nw, 100) / 1e3;
        double r50 = (double)pct(a->rd, a->nr, 50) / 1e3, r99 = (double)pct(a->rd, a->nr, 99) / 1e3,
               rmax = (double)pct(a->rd, a->nr, 100) / 1e3;
        if (i == 0) {
            base[0] = w50;
            base[1] = w99;
            base[2] = wmax;
            base[3] = r99;
        }
        printf("{");
        jstr("scenario", "mixed", 1);
        jstr("system", ds[i]->name, 1);
        jstr("base", ds[0]->name, 1);
        printf("\"readers\":%d,\"rounds\":%d,\"slice_ms\":%.0f,\"duration_s\":%.3f,"
               "\"writer_acquisitions\":%zu,\"writer_cut\":%ld,\"reader_acquisitions\":%zu,"
               "\"reader_cut\":%ld,\"writer_waiting_pct\":%.1f,\"reader_acq_per_s\":%.0f,\"max_overlap\":%d,\"violations\":%ld,"
               "\"writer_p50_us\":%.1f,\"writer_p99_us\":%.1f,\"writer_max_us\":%.1f,"
               "\"reader_p50_us\":%.1f,\"reader_p99_us\":%.1f,\"reader_max_us\":%.1f,"
               "\"writer_p50_x\":%.4f,\"writer_p99_x\":%.4f,\"writer_max_x\":%.4f,"
               "\"reader_p99_x\":%.4f}\n",
               nread, rounds, slice_ms, a->elapsed_s, a->nw, a->wcut, a->nr, a->rcut,
               a->elapsed_s > 0 ? 100.0 * a->wwait_s / a->elapsed_s : 0.0,
               a->elapsed_s > 0 ? (double)a->nr / a->elapsed_s : 0.0, a->max_overlap, a->violations,
               w50, w99, wmax, r50, r99, rmax, ratio(w50, base[0]), ratio(w99, base[1]),
               ratio(wmax, base[2]), ratio(r99, base[3]));
    }
    fflush(stdout);
    for (int i = 0; i < nsys; i++) {
        free(acc[i].w);
        free(acc[i].rd);
    }
    free(acc);
    free(dirs);
    free(ds);
    munmap(sh, shsize);
    return 0;
}

/*
 * Fencing-token cost: uncontended single cycles in interleaved rounds (as
 * `uncontended`), each system on its own lock in DIR/<system>/. Ratios to
 * the first SYSTEM (vs_base), and for a -token or -shared system to the
 * plain system of the same method when it is in the list (vs_plain).
 */
static int cmd_fencing(int argc, char **argv)
{
    if (argc < 4)
        die("usage: fencing DIR ROUNDS SLICE_MS BASE_SYSTEM SYSTEM...");
    const char *dir = argv[0];
    int rounds = atoi(argv[1]);
    double slice_ms = atof(argv[2]);
    int nsys = argc - 3;
    if (rounds < 1 || slice_ms <= 0)
        die("fencing: at least one round, a positive slice");
    struct inst *insts = calloc((size_t)nsys, sizeof *insts);
    for (int i = 0; i < nsys; i++) {
        const struct sysdesc *d = find_system(argv[3 + i]);
        char sub[PATH_MAX];
        join(sub, sizeof sub, dir, d->name);
        inst_open(&insts[i], d, sub, "one", 0, LOCKING_NEVER_EXPIRE);
    }
    struct rounds R;
    rounds_collect(&R, insts, nsys, rounds, slice_ms);
    double *med = calloc((size_t)nsys, sizeof *med);
    for (int i = 0; i < nsys; i++) {
        size_t n = (size_t)(R.k[i] * rounds);
        qsort(R.t[i], n, sizeof **R.t, cmp_i64);
        med[i] = (double)pct(R.t[i], n, 50);
    }
    for (int i = 0; i < nsys; i++) {
        const struct sysdesc *d = insts[i].d;
        size_t n = (size_t)(R.k[i] * rounds);
        int plain = -1;
        if (d->flags & (SF_TOKEN | SF_SHARED | SF_APPEND))
            for (int j = 0; j < nsys; j++) {
                const struct sysdesc *e = insts[j].d;
                if (e->kind == d->kind && e->method == d->method && e->timeout == d->timeout &&
                    e->flags == 0)
                    plain = j;
            }
        printf("{");
        jstr("scenario", "fencing", 1);
        jstr("system", d->name, 1);
        jstr("base", insts[0].d->name, 1);
        if (plain >= 0)
            jstr("plain", insts[plain].d->name, 1);
        printf("\"cycles\":%zu,\"timer_ns\":%lld,\"median_ns\":%.0f,\"p10_ns\":%lld,\"p90_ns\":%lld,"
               "\"last_token\":%llu,\"vs_base\":%.4f",
               n, (long long)R.oh, med[i], (long long)pct(R.t[i], n, 10),
               (long long)pct(R.t[i], n, 90), (unsigned long long)insts[i].token, ratio(med[i], med[0]));
        if (plain >= 0)
            printf(",\"vs_plain\":%.4f,\"minus_plain_ns\":%.0f", ratio(med[i], med[plain]),
                   med[i] - med[plain]);
        printf("}\n");
    }
    fflush(stdout);
    rounds_free(&R);
    free(med);
    for (int i = 0; i < nsys; i++)
        inst_close(&insts[i]);
    free(insts);
    return 0;
}

/* ------------------------------------------------------ crash recovery */

static int cmd_crash(int argc, char **argv)
{
    if (argc != 3)
        die("usage: crash DIR SYSTEM CAP_MS");
    const char *dir = argv[0];
    const struct sysdesc *d = find_system(argv[1]);
    double cap_ms = atof(argv[2]);
    char lockdir[PATH_MAX];
    join(lockdir, sizeof lockdir, dir, "locks");
    mkdirs(lockdir);
    volatile int64_t *acquired = t_shared_alloc(4096);
    *acquired = 0;
    int hp[2], wp[2];
    if (pipe2(hp, O_CLOEXEC) || pipe2(wp, O_CLOEXEC))
        die("pipe");
    fflush(stdout);

    pid_t holder = fork();
    if (holder == 0) {
        struct inst in;
        /* expire disabled for liblocking: only the holder's death frees it */
        inst_open(&in, d, lockdir, "crash", 1, LOCKING_NEVER_EXPIRE);
        inst_lock(&in);
        char c = 'L';
        if (write(hp[1], &c, 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
    char c;
    if (read(hp[0], &c, 1) != 1)
        die("holder failed");

    pid_t waiter = fork();
    if (waiter == 0) {
        struct inst in;
        inst_open(&in, d, lockdir, "crash", 1, LOCKING_NEVER_EXPIRE);
        char w = 'W';
        if (write(wp[1], &w, 1) != 1)
            _exit(3);
        inst_lock(&in);
        *acquired = t_now_ns();
        inst_unlock(&in);
        inst_close(&in);
        _exit(0);
    }
    if (read(wp[0], &c, 1) != 1)
        die("waiter failed");
    t_sleep(0.05); /* the waiter is in its wait by now */
    int early = *acquired != 0;
    int64_t t_kill = t_now_ns();
    t_kill_reap(holder);

    int64_t deadline = t_kill + (int64_t)(cap_ms * 1e6);
    int done = 0;
    while (t_now_ns() < deadline) {
        int st;
        pid_t p = waitpid(waiter, &st, WNOHANG);
        if (p == waiter) {
            done = WIFEXITED(st) && WEXITSTATUS(st) == 0;
            if (!done)
                die("waiter failed (status %d)", st);
            break;
        }
        t_sleep(0.0002);
    }
    if (!done) {
        t_kill_reap(waiter);
    }
    printf("{");
    jstr("scenario", "crash", 1);
    jstr("system", d->name, 1);
    printf("\"cap_ms\":%.0f,\"early\":%s,\"recovery_ms\":", cap_ms, early ? "true" : "false");
    if (done)
        printf("%.3f}\n", (double)(*acquired - t_kill) / 1e6);
    else
        printf("null}\n");
    fflush(stdout);
    return 0;
}

/* ------------------------------------------ many names held; memory */

static long status_kb(const char *key)
{
    char v[64];
    return t_self_status(key, v, sizeof v) ? strtol(v, NULL, 10) : -1;
}

static int count_fds(void)
{
    DIR *dp = opendir("/proc/self/fd");
    if (!dp)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (e->d_name[0] != '.')
            n++;
    closedir(dp);
    return n - 1; /* opendir's own */
}

static int cmd_hold(int argc, char **argv)
{
    if (argc != 3)
        die("usage: hold DIR SYSTEM N");
    const char *dir = argv[0];
    const struct sysdesc *d = find_system(argv[1]);
    int n = atoi(argv[2]);
    mkdirs(dir);
    long rss0 = status_kb("VmRSS"), hwm0 = status_kb("VmHWM");
    int fds0 = count_fds();
    struct inst *insts = calloc((size_t)n, sizeof *insts);
    int64_t *lat = calloc((size_t)n, sizeof *lat);
    int64_t t0 = t_now_ns();
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "name%05d", i);
        inst_open(&insts[i], d, dir, name, 0, LOCKING_NEVER_EXPIRE);
    }
    int64_t t1 = t_now_ns();
    for (int i = 0; i < n; i++) {
        int64_t a = t_now_ns();
        inst_lock(&insts[i]);
        lat[i] = t_now_ns() - a;
    }
    int64_t t2 = t_now_ns();
    long hwm1 = status_kb("VmHWM"), rss1 = status_kb("VmRSS");
    int fds1 = count_fds();
    int64_t t3 = t_now_ns();
    for (int i = 0; i < n; i++)
        inst_unlock(&insts[i]);
    int64_t t4 = t_now_ns();
    for (int i = 0; i < n; i++)
        inst_close(&insts[i]);
    int k = n < 100 ? n : 100;
    int64_t first = 0, last = 0;
    for (int i = 0; i < k; i++) {
        first += lat[i];
        last += lat[n - k + i];
    }
    printf("{");
    jstr("scenario", "hold", 1);
    jstr("system", d->name, 1);
    printf("\"n\":%d,\"new_ms\":%.3f,\"lock_all_ms\":%.3f,\"unlock_all_ms\":%.3f,"
           "\"first100_us\":%.2f,\"last100_us\":%.2f,\"rss0_kb\":%ld,\"hwm0_kb\":%ld,"
           "\"rss_kb\":%ld,\"hwm_kb\":%ld,\"fds_held\":%d}\n",
           n, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6, (double)(t4 - t3) / 1e6,
           (double)first / k / 1e3, (double)last / k / 1e3, rss0, hwm0, rss1, hwm1,
           fds1 - fds0);
    fflush(stdout);
    free(insts);
    free(lat);
    return 0;
}

/* N lock+unlock cycles of one system, silently (for syscall counting) */
static int cmd_cycles(int argc, char **argv)
{
    if (argc != 3)
        die("usage: cycles DIR SYSTEM N");
    struct inst in;
    inst_open(&in, find_system(argv[1]), argv[0], "one", 0, LOCKING_NEVER_EXPIRE);
    cycle_ns(&in, atol(argv[2]));
    inst_close(&in);
    return 0;
}

static int cmd_populate(int argc, char **argv)
{
    if (argc != 2)
        die("usage: populate DIR N");
    mkdirs(argv[0]);
    int dfd = open(argv[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        die("open %s: %s", argv[0], strerror(errno));
    long n = atol(argv[1]);
    int64_t t0 = t_now_ns();
    for (long i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "other-%07ld", i);
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            die("create %s: %s", name, strerror(errno));
        close(fd);
    }
    int64_t t1 = t_now_ns();
    /* write the new directory out now, so that its writeback does not slow
       down the measurements that follow */
    syncfs(dfd);
    close(dfd);
    printf("{\"scenario\":\"populate\",\"n\":%ld,\"ms\":%.1f,\"sync_ms\":%.1f}\n", n,
           (double)(t1 - t0) / 1e6, (double)(t_now_ns() - t1) / 1e6);
    return 0;
}

static int cmd_list(void)
{
    for (size_t i = 0; i < NSYSTEMS; i++)
        printf("%s\n", SYSTEMS[i].name);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        die("usage: lockbench list|uncontended|contended|fairness|threads|crash|hold|dirsize|"
            "populate|readers|mixed|fencing ...");
    /* 1,000 held locks need 1,000 descriptors for some systems */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
        rl.rlim_cur = 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *cmd = argv[1];
    argc -= 2;
    argv += 2;
    if (strcmp(cmd, "list") == 0)
        return cmd_list();
    if (strcmp(cmd, "uncontended") == 0)
        return cmd_uncontended(argc, argv);
    if (strcmp(cmd, "contended") == 0 || strcmp(cmd, "threads") == 0 ||
        strcmp(cmd, "fairness") == 0)
        return contend(cmd, argc, argv);
    if (strcmp(cmd, "crash") == 0)
        return cmd_crash(argc, argv);
    if (strcmp(cmd, "hold") == 0)
        return cmd_hold(argc, argv);
    if (strcmp(cmd, "dirsize") == 0)
        return cmd_dirsize(argc, argv);
    if (strcmp(cmd, "cycles") == 0)
        return cmd_cycles(argc, argv);
    if (strcmp(cmd, "populate") == 0)
        return cmd_populate(argc, argv);
    if (strcmp(cmd, "readers") == 0)
        return cmd_readers(argc, argv);
    if (strcmp(cmd, "mixed") == 0)
        return cmd_mixed(argc, argv);
    if (strcmp(cmd, "fencing") == 0)
        return cmd_fencing(argc, argv);
    die("unknown command %s", cmd);
}
