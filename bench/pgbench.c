/*
 * pgbench: the postgres method (LOCKING_METHOD_POSTGRES) against its raw
 * floor, libpq's own advisory lock round trips, on one server in one run
 * (bench/pg_run.sh starts the server, builds this and writes
 * bench/results-postgres.md from what it prints).
 *
 *   pgbench [--quick] LABEL=CONNINFO...
 *
 * For each connection string (a Unix socket, TCP loopback, ...) it
 * measures, and prints as Markdown:
 *
 *   1. lock + unlock, uncontended, on one connection: raw (two round trips,
 *      `SELECT pg_advisory_lock(k)` and `SELECT pg_advisory_unlock(k)`
 *      through PQexec) against liblocking (locker_lock, locker_fencing_token,
 *      locker_unlock; and variants). Rounds of each are interleaved, so a
 *      drift of the machine hits both alike; the ratio is of medians.
 *   2. contended: NPROC processes (4, 8) each looping lock, unlock for a
 *      few seconds, raw (a blocking pg_advisory_lock) against liblocking
 *      (with and without the fencing token): the wait of each acquisition
 *      (p50, p99) and the hand-overs per second;
 *   3. creating a Locker (locker_new: connect, set the session up, look the
 *      name up; and locker_free) against PQconnectdb + PQfinish.
 *
 * libpq is loaded with dlopen (LOCKING_LIBPQ, else libpq.so.5), as
 * liblocking loads it: no PostgreSQL headers are needed to build this.
 *
 * Build: cc -O2 -std=c11 -I include bench/pgbench.c -L<libdir> -llocking
 *        -Wl,-rpath,<libdir> -ldl -lm
 */
#define _GNU_SOURCE
#include <locking.h>

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG LOCKING_METHOD_POSTGRES

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pgbench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------- libpq */

#include "pq_dl.h"


static void pq_load_or_die(void)
{
    const char *why = pq_load();
    if (why != NULL)
        die("%s", why);
}

static PGconn *raw_connect(const char *ci)
{
    PGconn *c = pq.connectdb(ci);
    if (c == NULL || pq.status(c) != CONNECTION_OK)
        die("connect %s: %s", ci, c ? pq.error_message(c) : "out of memory");
    return c;
}

static void raw_exec(PGconn *c, const char *sql)
{
    PGresult *r = pq.exec(c, sql);
    int st = r ? pq.result_status(r) : -1;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        die("%s: %s", sql, pq.error_message(c));
    pq.clear(r);
}

/* ------------------------------------------------------------ numbers */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q quantile of v[0..n) (sorted in place). */
static double quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)ceil(q * (double)n);
    if (i < 1)
        i = 1;
    if (i > n)
        i = n;
    return v[i - 1];
}

static double mean(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : NAN;
}

#define US(x) ((x) * 1e6)

/* -------------------------------------------------------- uncontended */

enum variant {
    RAW,       /* pg_advisory_lock + pg_advisory_unlock */
    LIB_TOKEN, /* locker_lock + locker_fencing_token + locker_unlock */
    LIB,       /* locker_lock + locker_unlock */
    LIB_TRY,   /* a try (timeout 0) + token + unlock */
    LIB_TIMED, /* timeout 5 s, expire 30 s: + token + unlock */
    LIB_SHARED, /* a shared lock (its token drawn with it) + token + unlock */
    NVARIANT
};

static const char *variant_name[NVARIANT] = {
    "raw: `pg_advisory_lock` + `pg_advisory_unlock` (2 round trips)",
    "**liblocking: lock + fencing token + unlock** (exclusive, wait forever)",
    "liblocking: lock + unlock (no token)",
    "liblocking: try (timeout 0) + token + unlock",
    "liblocking: timeout 5 s, expire 30 s, + token + unlock",
    "liblocking: shared lock (token drawn with it) + token + unlock",
};

struct one {
    Locker *l;
    PGconn *c;
};

static void cycle(enum variant v, struct one *o)
{
    int rc = 0;
    uint64_t tok = 0;
    switch (v) {
    case RAW:
        raw_exec(o->c, "SELECT pg_advisory_lock(7700001)");
        raw_exec(o->c, "SELECT pg_advisory_unlock(7700001)");
        return;
    case LIB:
        rc = locker_lock(o->l);
        break;
    case LIB_TOKEN:
    case LIB_TIMED:
        rc = locker_lock(o->l);
        if (rc == 0)
            rc = locker_fencing_token(o->l, &tok);
        break;
    case LIB_TRY:
        rc = locker_acquire(o->l, LOCKING_EXCLUSIVE, 0.0);
        if (rc == 0)
            rc = locker_fencing_token(o->l, &tok);
        break;
    case LIB_SHARED:
        rc = locker_acquire(o->l, LOCKING_SHARED, LOCKING_WAIT_FOREVER);
        if (rc == 0)
            rc = locker_fencing_token(o->l, &tok);
        break;
    default:
        die("variant");
    }
    if (rc == 0)
        rc = locker_unlock(o->l);
    if (rc != 0)
        die("variant %d: %d %s", (int)v, rc, locking_last_error());
}

static Locker *new_locker(const char *name, const char *ci, double timeout, double expire)
{
    Locker *l = NULL;
    int rc = locker_new(name, ci, "pgbench", timeout, expire, PG, &l);
    if (rc != 0)
        die("locker_new %s: %d %s", ci, rc, locking_last_error());
    return l;
}

static void uncontended(const char *label, const char *ci, int rounds)
{
    struct one o[NVARIANT];
    for (int v = 0; v < NVARIANT; v++) {
        o[v].c = v == RAW ? raw_connect(ci) : NULL;
        char name[64];
        snprintf(name, sizeof name, "uncontended-%d", v);
        o[v].l = v == RAW ? NULL
                          : new_locker(name, ci, v == LIB_TIMED ? 5.0 : LOCKING_WAIT_FOREVER,
                                       v == LIB_TIMED ? 30.0 : 0.0);
    }
    double *t[NVARIANT];
    for (int v = 0; v < NVARIANT; v++) {
        t[v] = calloc((size_t)rounds, sizeof(double));
        if (t[v] == NULL)
            die("out of memory");
    }
    /* warm up, then rounds of every variant in turn */
    for (int i = 0; i < 50; i++)
        for (int v = 0; v < NVARIANT; v++)
            cycle((enum variant)v, &o[v]);
    for (int i = 0; i < rounds; i++) {
        for (int v = 0; v < NVARIANT; v++) {
            double t0 = now();
            cycle((enum variant)v, &o[v]);
            t[v][i] = now() - t0;
        }
    }
    printf("\n#### Lock + unlock, uncontended: %s (%d rounds, interleaved)\n\n", label, rounds);
    printf("| | median µs | mean µs | p99 µs | median / raw |\n|---|---:|---:|---:|---:|\n");
    double raw_median = 0;
    for (int v = 0; v < NVARIANT; v++) {
        double m = mean(t[v], (size_t)rounds);
        double p50 = quantile(t[v], (size_t)rounds, 0.5);
        double p99 = quantile(t[v], (size_t)rounds, 0.99);
        if (v == RAW)
            raw_median = p50;
        printf("| %s | %.0f | %.0f | %.0f | %.2fx |\n", variant_name[v], US(p50), US(m), US(p99),
               p50 / raw_median);
        if (v == LIB_TOKEN)
            printf("GOAL %s %.3f\n", label, p50 / raw_median);
    }
    for (int v = 0; v < NVARIANT; v++) {
        if (o[v].c)
            pq.finish(o[v].c);
        locker_free(o[v].l);
        free(t[v]);
    }
}

/* ----------------------------------------------------------- contended */

#define CAP 200000

struct shared {
    volatile int go;
    size_t n[16];
    double wait[16][CAP];
};

static void contend_child(struct shared *sh, int k, int kind, const char *ci, double secs)
{
    PGconn *c = NULL;
    Locker *l = NULL;
    if (kind == 0)
        c = raw_connect(ci);
    else
        l = new_locker("contended", ci, LOCKING_WAIT_FOREVER, 0.0);
    while (!sh->go)
        usleep(1000);
    double end = now() + secs;
    size_t n = 0;
    while (now() < end && n < CAP) {
        double t0 = now();
        if (kind == 0) {
            raw_exec(c, "SELECT pg_advisory_lock(7700002)");
        } else {
            int rc = locker_lock(l);
            if (rc != 0)
                die("lock: %d %s", rc, locking_last_error());
        }
        sh->wait[k][n++] = now() - t0;
        if (kind == 0) {
            raw_exec(c, "SELECT pg_advisory_unlock(7700002)");
        } else {
            uint64_t tok;
            int rc = kind == 2 ? locker_fencing_token(l, &tok) : 0;
            if (rc == 0)
                rc = locker_unlock(l);
            if (rc != 0)
                die("unlock: %d %s", rc, locking_last_error());
        }
    }
    sh->n[k] = n;
    if (c)
        pq.finish(c);
    locker_free(l);
    _exit(0);
}

struct contended_result {
    double p50, p99, max, rate;
};

static struct contended_result contend(int kind, const char *ci, int nproc, double secs)
{
    struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    pid_t pid[16];
    for (int k = 0; k < nproc; k++) {
        fflush(stdout);
        pid[k] = fork();
        if (pid[k] < 0)
            die("fork: %s", strerror(errno));
        if (pid[k] == 0)
            contend_child(sh, k, kind, ci, secs);
    }
    usleep(300000); /* all connected */
    sh->go = 1;
    for (int k = 0; k < nproc; k++) {
        int st;
        if (waitpid(pid[k], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("a contending process failed");
    }
    size_t total = 0;
    for (int k = 0; k < nproc; k++)
        total += sh->n[k];
    double *all = malloc(total * sizeof(double));
    if (all == NULL)
        die("out of memory");
    size_t j = 0;
    for (int k = 0; k < nproc; k++)
        for (size_t i = 0; i < sh->n[k]; i++)
            all[j++] = sh->wait[k][i];
    struct contended_result r = {
        .p50 = quantile(all, total, 0.5),
        .p99 = quantile(all, total, 0.99),
        .max = quantile(all, total, 1.0),
        .rate = (double)total / secs,
    };
    free(all);
    munmap(sh, sizeof *sh);
    return r;
}

static void contended(const char *label, const char *ci, double secs)
{
    static const char *kinds[3] = {
        "raw: blocking `pg_advisory_lock` loop",
        "liblocking: lock + unlock",
        "liblocking: lock + fencing token + unlock",
    };
    printf("\n#### Contended: %s (%.0f s each)\n\n", label, secs);
    printf("| processes | | wait p50 µs | wait p99 µs | max ms | acquisitions/s | p99 / raw "
           "p99 |\n|---:|---|---:|---:|---:|---:|---:|\n");
    int nprocs[2] = { 4, 8 };
    for (int i = 0; i < 2; i++) {
        struct contended_result r[3];
        for (int kind = 0; kind < 3; kind++)
            r[kind] = contend(kind, ci, nprocs[i], secs);
        for (int kind = 0; kind < 3; kind++)
            printf("| %d | %s | %.0f | %.0f | %.1f | %.0f | %.2fx |\n", nprocs[i], kinds[kind],
                   US(r[kind].p50), US(r[kind].p99), r[kind].max * 1e3, r[kind].rate,
                   r[kind].p99 / r[0].p99);
        printf("CONTENDED %s %d %.3f %.3f\n", label, nprocs[i], r[1].p99 / r[0].p99,
               r[2].p99 / r[0].p99);
    }
}

/* ------------------------------------------------------------- create */

static void create(const char *label, const char *ci, int rounds)
{
    double *raw = calloc((size_t)rounds, sizeof(double));
    double *lib = calloc((size_t)rounds, sizeof(double));
    double *first = calloc((size_t)rounds, sizeof(double));
    if (!raw || !lib || !first)
        die("out of memory");
    for (int i = 0; i < rounds; i++) {
        double t0 = now();
        pq.finish(raw_connect(ci));
        raw[i] = now() - t0;
        t0 = now();
        locker_free(new_locker("create", ci, LOCKING_WAIT_FOREVER, 0.0));
        lib[i] = now() - t0;
        /* a name never used before: the row is added */
        char name[64];
        snprintf(name, sizeof name, "create-%ld-%d-%.0f", (long)getpid(), i, now() * 1e6);
        t0 = now();
        locker_free(new_locker(name, ci, LOCKING_WAIT_FOREVER, 0.0));
        first[i] = now() - t0;
    }
    printf("\n#### Creating a Locker (a connection): %s (%d rounds, interleaved)\n\n", label,
           rounds);
    printf("| | median µs | p99 µs | median / raw |\n|---|---:|---:|---:|\n");
    double base = quantile(raw, (size_t)rounds, 0.5);
    const char *names[3] = { "raw: `PQconnectdb` + `PQfinish`",
                             "liblocking: `locker_new` + `locker_free` (a known name)",
                             "liblocking: the same, a new name (its row is added)" };
    double *v[3] = { raw, lib, first };
    for (int k = 0; k < 3; k++) {
        double p50 = quantile(v[k], (size_t)rounds, 0.5);
        printf("| %s | %.0f | %.0f | %.2fx |\n", names[k], US(p50),
               US(quantile(v[k], (size_t)rounds, 0.99)), p50 / base);
    }
    free(raw);
    free(lib);
    free(first);
}

int main(int argc, char **argv)
{
    bool quick = false, latency_only = false;
    int first = 1;
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
        if (strcmp(argv[first], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[first], "--latency-only") == 0)
            latency_only = true;
        else
            die("unknown option %s", argv[first]);
    }
    if (first >= argc)
        die("usage: pgbench [--quick] [--latency-only] LABEL=CONNINFO...");
    pq_load_or_die();
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = first; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL)
            die("not LABEL=CONNINFO: %s", argv[i]);
        *eq = '\0';
        const char *label = argv[i], *ci = eq + 1;
        uncontended(label, ci, quick ? 300 : 3000);
        if (latency_only)
            continue;
        contended(label, ci, quick ? 1.0 : 3.0);
        create(label, ci, quick ? 30 : 200);
    }
    return 0;
}
