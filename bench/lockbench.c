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
 *   lockbench threads     DIR SYSTEM NTHREADS DURATION_MS
 *   lockbench crash       DIR SYSTEM CAP_MS
 *   lockbench hold        DIR SYSTEM N
 *   lockbench dirsize     EMPTY_DIR BIG_DIR ROUNDS PAIRS SYSTEM...
 *   lockbench populate    DIR N
 *   lockbench cycles      DIR SYSTEM N   (no output: for strace -c)
 *
 * Build with -DHAVE_LOCKFILE -llockfile to include liblockfile.
 * LOCKBENCH_DUMP=FILE makes contended/threads write every wait to FILE.
 */
#define _GNU_SOURCE
#include <locking.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_LOCKFILE
#include <lockfile.h>
#endif

/* ---------------------------------------------------------------- utils */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

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

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&t, &t) == -1 && errno == EINTR) {
    }
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

struct sysdesc {
    const char *name;
    enum kind kind;
    int method;     /* liblocking method */
    double timeout; /* liblocking timeout */
    int lfflags;    /* liblockfile flags */
};

static const struct sysdesc SYSTEMS[] = {
    {"liblocking-mkdir", K_LL, LOCKING_METHOD_MKDIR, LOCKING_WAIT_FOREVER, 0},
    {"liblocking-opencreate", K_LL, LOCKING_METHOD_OPENCREATE, LOCKING_WAIT_FOREVER, 0},
    {"liblocking-kernel", K_LL, LOCKING_METHOD_KERNEL, LOCKING_WAIT_FOREVER, 0},
    {"liblocking-kernel-t60", K_LL, LOCKING_METHOD_KERNEL, 60.0, 0},
    {"raw-mkdir", K_RAW_MKDIR, 0, 0, 0},
    {"raw-open", K_RAW_OPEN, 0, 0, 0},
    {"raw-ofd", K_RAW_OFD, 0, 0, 0},
    {"raw-flock", K_RAW_FLOCK, 0, 0, 0},
#ifdef HAVE_LOCKFILE
    {"liblockfile", K_LOCKFILE, 0, 0, 0},
    {"liblockfile-pid", K_LOCKFILE, 0, 0, L_PID},
#endif
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
    in->blocking = blocking;
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
        int rc = locker_lock(in->lk);
        if (rc != LOCKING_OK)
            die("locker_lock(%s): %s (%s)", in->d->name, locking_strerror(rc), locking_last_error());
        return;
    }
    case K_RAW_MKDIR:
        while (mkdirat(in->dirfd, in->name, 0777) == -1) {
            if (errno != EEXIST || !in->blocking)
                die("mkdir %s: %s", in->name, strerror(errno));
            sleep_ns(1000000);
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
            sleep_ns(1000000);
        }
    case K_RAW_OFD:
        while (ofd(in->fd, in->blocking ? F_OFD_SETLKW : F_OFD_SETLK, F_WRLCK) == -1)
            if (errno != EINTR)
                die("fcntl(F_OFD_SETLK%s): %s", in->blocking ? "W" : "", strerror(errno));
        return;
    case K_RAW_FLOCK:
        while (flock(in->fd, in->blocking ? LOCK_EX : LOCK_EX | LOCK_NB) == -1)
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
    free(in->path);
    in->path = NULL;
    in->lk = NULL;
    in->dirfd = in->fd = -1;
}

/* -------------------------------------------------- uncontended cycles */

/* ns per lock+unlock cycle over `n` cycles */
static double cycle_ns(struct inst *in, long n)
{
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        inst_lock(in);
        inst_unlock(in);
    }
    return (double)(now_ns() - t0) / (double)n;
}

/* the cost of one now_ns() reading, subtracted from single-cycle times */
static int64_t timer_overhead(void)
{
    enum { N = 10001 };
    static int64_t d[N];
    for (int i = 0; i < N; i++) {
        int64_t a = now_ns();
        d[i] = now_ns() - a;
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
static void rounds_json(struct inst *insts, int nsys, int rounds, double slice_ms)
{
    long *k = calloc((size_t)nsys, sizeof *k);
    int64_t **t = calloc((size_t)nsys, sizeof *t);
    double *mean = calloc((size_t)nsys, sizeof *mean);
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
    int64_t oh = timer_overhead();
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < nsys; j++) {
            int i = (j + r) % nsys;
            int64_t *v = t[i] + (size_t)r * (size_t)k[i];
            for (long c = 0; c < k[i]; c++) {
                int64_t a = now_ns();
                inst_lock(&insts[i]);
                inst_unlock(&insts[i]);
                v[c] = now_ns() - a - oh;
            }
        }
    for (int i = 0; i < nsys; i++) {
        size_t n = (size_t)(k[i] * rounds);
        double sum = 0;
        for (size_t c = 0; c < n; c++)
            sum += (double)t[i][c];
        mean[i] = sum / (double)n;
        qsort(t[i], n, sizeof **t, cmp_i64);
        printf("{");
        jstr("scenario", "uncontended", 1);
        jstr("system", insts[i].d->name, 1);
        printf("\"cycles\":%zu,\"timer_ns\":%lld,\"median_ns\":%lld,\"p10_ns\":%lld,"
               "\"p90_ns\":%lld,\"mean_ns\":%.1f}\n",
               n, (long long)oh, (long long)pct(t[i], n, 50), (long long)pct(t[i], n, 10),
               (long long)pct(t[i], n, 90), mean[i]);
        free(t[i]);
    }
    fflush(stdout);
    free(k);
    free(t);
    free(mean);
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
                    int64_t a = now_ns();
                    inst_lock(&insts[k * 2 + s]);
                    inst_unlock(&insts[k * 2 + s]);
                    t[((size_t)k * 2 + (size_t)s) * per + (size_t)r * (size_t)pairs + (size_t)p] =
                        now_ns() - a;
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

#define HOLD_NS 500000 /* inside the lock */
#define WORK_NS 500000 /* outside the lock */

struct shared {
    volatile int64_t t_start;
    volatile int64_t t_end;
    int nworkers;
    long maxw;
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
static void bump(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    long v = strtol(buf, NULL, 10);
    sleep_ns(HOLD_NS);
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
    while (now_ns() < sh->t_end && n < sh->maxw) {
        int64_t t0 = now_ns();
        me->waiting_since = t0;
        inst_lock(&in);
        int64_t t1 = now_ns();
        me->waiting_since = 0;
        waits[n] = t1 - t0;
        bump(cfd);
        inst_unlock(&in);
        me->count = ++n;
        me->finish = now_ns();
        sleep_ns(WORK_NS);
    }
    me->finish = now_ns();
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

static int contend(const char *mode, int argc, char **argv)
{
    if (argc != 4 && argc != 5)
        die("usage: %s DIR SYSTEM N DURATION_MS [GRACE_MS]", mode);
    /* processes still in a lock call GRACE_MS after the end are killed */
    double grace_ms = argc == 5 ? atof(argv[4]) : -1;
    const char *dir = argv[0];
    const struct sysdesc *d = find_system(argv[1]);
    int nw = atoi(argv[2]);
    double dur_ms = atof(argv[3]);
    int threads = strcmp(mode, "threads") == 0;
    if (nw < 1 || nw > 64)
        die("1..64 workers");
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

    long maxw = (long)(dur_ms * 2.2) + 1000; /* at most one lock per ~1 ms */
    size_t size = sizeof(struct shared) + (size_t)nw * (size_t)maxw * sizeof(int64_t);
    struct shared *sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    sh->nworkers = nw;
    sh->maxw = maxw;
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
        sh->t_start = now_ns();
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
        sh->t_start = now_ns();
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
            if (left > 0 && now_ns() >= kill_at) {
                killed_at = now_ns();
                for (int i = 0; i < nw; i++)
                    if (pids[i] > 0) {
                        int64_t since = sh->slots[i].waiting_since;
                        if (since) {
                            stuck_waits[stuck++] = now_ns() - since;
                            if (now_ns() - since > stuck_ns)
                                stuck_ns = now_ns() - since;
                        } else {
                            bad++;
                        }
                        kill(pids[i], SIGKILL);
                        waitpid(pids[i], NULL, 0);
                        pids[i] = 0;
                        left--;
                    }
            }
            if (left > 0)
                sleep_ns(1000000);
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
    long counter_value = read_counter(counter);
    long over20 = 0;
    for (long i = 0; i < total; i++)
        over20 += all[i] > 20000000;
    double elapsed = (double)(finish - sh->t_start) / 1e9;
    printf("{");
    jstr("scenario", mode, 1);
    jstr("system", d->name, 1);
    printf("\"workers\":%d,\"duration_s\":%.3f,\"acquisitions\":%ld,\"counter\":%ld,"
           "\"throughput\":%.1f,\"cpu_us_per_acq\":%.1f,\"over_20ms\":%ld,"
           "\"stuck\":%ld,\"stuck_wait_us\":%.1f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n",
           nw, elapsed, acquisitions, counter_value,
           elapsed > 0 ? (double)acquisitions / elapsed : 0.0,
           acquisitions ? cpu_s * 1e6 / (double)acquisitions : 0.0, over20, stuck, (double)stuck_ns / 1e3,
           (double)pct(all, (size_t)total, 50) / 1e3, (double)pct(all, (size_t)total, 99) / 1e3,
           (double)pct(all, (size_t)total, 100) / 1e3);
    fflush(stdout);
    free(all);
    free(runs);
    munmap(sh, size);
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
    volatile int64_t *acquired =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (acquired == MAP_FAILED)
        die("mmap");
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
        *acquired = now_ns();
        inst_unlock(&in);
        inst_close(&in);
        _exit(0);
    }
    if (read(wp[0], &c, 1) != 1)
        die("waiter failed");
    sleep_ns(50000000); /* the waiter is in its wait by now */
    int early = *acquired != 0;
    int64_t t_kill = now_ns();
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);

    int64_t deadline = t_kill + (int64_t)(cap_ms * 1e6);
    int done = 0;
    while (now_ns() < deadline) {
        int st;
        pid_t p = waitpid(waiter, &st, WNOHANG);
        if (p == waiter) {
            done = WIFEXITED(st) && WEXITSTATUS(st) == 0;
            if (!done)
                die("waiter failed (status %d)", st);
            break;
        }
        sleep_ns(200000);
    }
    if (!done) {
        kill(waiter, SIGKILL);
        waitpid(waiter, NULL, 0);
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
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
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
    int64_t t0 = now_ns();
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "name%05d", i);
        inst_open(&insts[i], d, dir, name, 0, LOCKING_NEVER_EXPIRE);
    }
    int64_t t1 = now_ns();
    for (int i = 0; i < n; i++) {
        int64_t a = now_ns();
        inst_lock(&insts[i]);
        lat[i] = now_ns() - a;
    }
    int64_t t2 = now_ns();
    long hwm1 = status_kb("VmHWM"), rss1 = status_kb("VmRSS");
    int fds1 = count_fds();
    int64_t t3 = now_ns();
    for (int i = 0; i < n; i++)
        inst_unlock(&insts[i]);
    int64_t t4 = now_ns();
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
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "other-%07ld", i);
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            die("create %s: %s", name, strerror(errno));
        close(fd);
    }
    int64_t t1 = now_ns();
    /* write the new directory out now, so that its writeback does not slow
       down the measurements that follow */
    syncfs(dfd);
    close(dfd);
    printf("{\"scenario\":\"populate\",\"n\":%ld,\"ms\":%.1f,\"sync_ms\":%.1f}\n", n,
           (double)(t1 - t0) / 1e6, (double)(now_ns() - t1) / 1e6);
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
        die("usage: lockbench list|uncontended|contended|threads|crash|hold|dirsize|populate ...");
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
    if (strcmp(cmd, "contended") == 0 || strcmp(cmd, "threads") == 0)
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
    die("unknown command %s", cmd);
}
