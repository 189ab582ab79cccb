/*
 * pq_dl.h: the few libpq functions the raw (floor) measurements and tests
 * use, loaded with dlopen as liblocking itself loads them (LOCKING_LIBPQ,
 * else libpq.so.5), so nothing here needs libpq's headers or -lpq. One copy
 * for c_tests/pg_client.c and bench/pgbench.c.
 */
#ifndef PQ_DL_H
#define PQ_DL_H

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;

struct pq_fns {
    PGconn *(*connectdb)(const char *);
    int (*status)(const PGconn *);
    char *(*error_message)(const PGconn *);
    PGresult *(*exec)(PGconn *, const char *);
    int (*result_status)(const PGresult *);
    char *(*getvalue)(const PGresult *, int, int);
    void (*clear)(PGresult *);
    void (*finish)(PGconn *);
};
static struct pq_fns pq;

enum { CONNECTION_OK = 0, PGRES_COMMAND_OK = 1, PGRES_TUPLES_OK = 2 };

/* Loads libpq once. Returns NULL on success, else a message (static). */
static const char *pq_load(void)
{
    static char why[256];
    static const struct {
        const char *name;
        size_t offset;
    } syms[] = {
        {"PQconnectdb", offsetof(struct pq_fns, connectdb)},
        {"PQstatus", offsetof(struct pq_fns, status)},
        {"PQerrorMessage", offsetof(struct pq_fns, error_message)},
        {"PQexec", offsetof(struct pq_fns, exec)},
        {"PQresultStatus", offsetof(struct pq_fns, result_status)},
        {"PQgetvalue", offsetof(struct pq_fns, getvalue)},
        {"PQclear", offsetof(struct pq_fns, clear)},
        {"PQfinish", offsetof(struct pq_fns, finish)},
    };
    if (pq.connectdb != NULL)
        return NULL;
    const char *path = getenv("LOCKING_LIBPQ");
    void *h = dlopen(path ? path : "libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(why, sizeof why, "cannot load libpq: %s", dlerror());
        return why;
    }
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *sym = dlsym(h, syms[i].name);
        if (sym == NULL) {
            snprintf(why, sizeof why, "libpq has no %s", syms[i].name);
            return why;
        }
        memcpy((char *)&pq + syms[i].offset, &sym, sizeof sym);
    }
    return NULL;
}

#endif
