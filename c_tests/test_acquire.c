/*
 * locker_acquire's per-call timeout and mode, and locker_holder (0.2), for
 * every real method:
 *
 *  1. Per-call timeout on a lock held by another process: a Locker made
 *     with timeout LOCKING_WAIT_FOREVER gets LOCKING_E_LOCKER_FAILED at once
 *     from locker_acquire(.., 0) and after about 0.3 s (not before 0.25 s,
 *     not after 10 s) from locker_acquire(.., 0.3), in both modes; the
 *     per-call timeout overrides the Locker's (a Locker with timeout 5 s
 *     tries once with 0; one with 0 waits with 0.3). locker_lock still uses
 *     the Locker's own timeout (0, 0.3 s; and forever: it waits until the
 *     holder releases, as do locker_acquire(.., LOCKING_WAIT_FOREVER) and
 *     (.., +inf) on a Locker whose own timeout is 0).
 *  2. Invalid arguments: NaN timeout; mode 2, -1, 100, INT_MAX, INT_MIN;
 *     NULL Locker -> LOCKING_E_INVALID_ARGUMENT (lock free and held), and
 *     the Locker holds nothing afterwards. Negative and infinite timeouts
 *     are valid.
 *  3. LOCKING_E_ALREADY_LOCKED when the Locker holds the lock in either mode,
 *     for either requested mode and for locker_lock, at once even with a
 *     timeout; the lock stays held in its mode (no upgrade or downgrade).
 *  4. locker_holder: 0 when free (never locked, and after unlock); held
 *     exclusive by a child: the return value is strlen of the text, which
 *     is one block of key=value lines, the first "mode=exclusive", with
 *     "pid=<child>", "state=alive", "age=<seconds>", "method=..." and the
 *     owner record's "token=" (32 hex digits; not the fencing token); the
 *     holder sees the same about itself; snprintf semantics (size 0 with
 *     NULL or a real buffer writes nothing and returns the length; a short
 *     buffer gets a NUL-terminated prefix and the return value is the full
 *     length); NULL Locker, or NULL buf with size > 0 ->
 *     LOCKING_E_INVALID_ARGUMENT. Two shared holders: two blocks separated
 *     by one empty line, each "mode=shared" with its pid and its own record
 *     token. A SIGKILLed holder: "state=dead" (mkdir, opencreate: the entry
 *     is still there; kernel: the kernel dropped the lock, so the answer may
 *     also be that nobody holds it). After a recovery the new holder shows,
 *     with a new record token.
 *
 * Built with -DFORCE_METHOD=LOCKING_METHOD_FAKE (common.h) the method loop
 * runs FAKE instead, and the checks that need exclusion must fail.
 */
#include "common.h"

#define SENTINEL UINT64_C(0xDEADBEEFCAFEF00D)

static uint64_t recv_u64(t_pipe *p, double timeout)
{
    uint64_t v;
    if (!t_recv_u64(p, timeout, &v))
        FATAL("no token from the child");
    return v;
}

static uint64_t token_of(const Locker *l)
{
    uint64_t t = SENTINEL;
    int rc = locker_fencing_token(l, &t);
    CHECK_RC_QUIET(rc, LOCKING_OK);
    return rc == LOCKING_OK ? t : 0;
}

/* A child holding (dir, "ns", "acq") in `mode`: sends its fencing token,
 * then holds until it reads 'r' (or 20 s passed, so that a test that hangs
 * in a wait gets unstuck), unlocks, sends 'd' and exits. */
static pid_t holder_child(const char *dir, int m, int mode, t_pipe *to, t_pipe *from)
{
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *l = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        int rc = locker_acquire(l, mode, 10.0);
        CHECK_RC(rc, LOCKING_OK);
        t_send_u64(from, rc == LOCKING_OK ? token_of(l) : 0);
        int c = t_recv_timeout(to, 20.0);
        CHECK(c == 'r', "holder: told to release (not by its own 20 s bound)");
        if (rc == LOCKING_OK)
            CHECK_RC(locker_unlock(l), LOCKING_OK);
        t_send(from, 'd');
        locker_free(l);
        t_child_exit();
    }
    return pid;
}

/* locker_acquire(l, mode, timeout) must fail with LOCKER_FAILED, taking
 * between lo and hi seconds. */
#define TIMED_FAIL(l, mode, timeout, lo, hi, what)                            \
    timed_fail_at((l), (mode), (timeout), (lo), (hi), (what), __FILE__, __LINE__)
static void timed_fail_at(Locker *l, int mode, double timeout, double lo,
                          double hi, const char *what, const char *file, int line)
{
    double t0 = t_now();
    int rc = locker_acquire(l, mode, timeout);
    double el = t_now() - t0;
    t_report(rc == LOCKING_E_LOCKER_FAILED && el >= lo && el < hi, file, line,
             "%s: locker_acquire(%s, %g) on a held lock: %s after %.3f s (want "
             "LOCKING_E_LOCKER_FAILED within [%g, %g) s)%s%s", what,
             t_mode_name(mode), timeout, t_rc_name(rc), el, lo, hi,
             rc < 0 ? "; last_error=" : "", rc < 0 ? locking_last_error() : "");
    if (rc == LOCKING_OK)
        locker_unlock(l);
}

static void timed_lock_fail_at(Locker *l, double lo, double hi, const char *what,
                               const char *file, int line)
{
    double t0 = t_now();
    int rc = locker_lock(l);
    double el = t_now() - t0;
    t_report(rc == LOCKING_E_LOCKER_FAILED && el >= lo && el < hi, file, line,
             "%s: locker_lock on a held lock: %s after %.3f s (want "
             "LOCKING_E_LOCKER_FAILED within [%g, %g) s)", what, t_rc_name(rc),
             el, lo, hi);
    if (rc == LOCKING_OK)
        locker_unlock(l);
}

/* ------------------------------------------------------------------ */
/* 1. per-call timeouts                                                 */

struct waiter {
    Locker *l;
    int how; /* 0: locker_lock, 1: acquire shared forever, 2: acquire exclusive +inf */
    atomic_int done;
    int rc;
};

static void *waiter_thread(void *arg)
{
    struct waiter *w = arg;
    if (w->how == 0)
        w->rc = locker_lock(w->l);
    else if (w->how == 1)
        w->rc = locker_acquire(w->l, LOCKING_SHARED, LOCKING_WAIT_FOREVER);
    else
        w->rc = locker_acquire(w->l, LOCKING_EXCLUSIVE, INFINITY);
    if (w->rc == LOCKING_OK)
        locker_unlock(w->l);
    atomic_store(&w->done, 1);
    return NULL;
}

static void per_call_timeouts(int m)
{
    char *dir = t_fresh_path("timeouts");
    t_pipe to = t_pipe_new(), from = t_pipe_new();
    pid_t h = holder_child(dir, m, LOCKING_EXCLUSIVE, &to, &from);
    recv_u64(&from, 30.0);

    Locker *lf = t_locker("acq", dir, "ns", LOCKING_WAIT_FOREVER, LOCKING_NEVER_EXPIRE, m);
    Locker *l5 = t_locker("acq", dir, "ns", 5.0, LOCKING_NEVER_EXPIRE, m);
    Locker *l0 = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    Locker *l0b = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    Locker *l03 = t_locker("acq", dir, "ns", 0.3, LOCKING_NEVER_EXPIRE, m);
    for (int mi = 0; mi < 2; mi++) {
        int mode = mi ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
        TIMED_FAIL(lf, mode, 0.0, 0.0, 2.0, "Locker timeout forever, try once");
        TIMED_FAIL(lf, mode, 0.3, 0.25, 10.0, "Locker timeout forever, call 0.3 s");
        TIMED_FAIL(l5, mode, 0.0, 0.0, 2.5, "Locker timeout 5 s, try once");
        TIMED_FAIL(l0, mode, 0.3, 0.25, 10.0, "Locker timeout 0, call 0.3 s");
        CHECK_RC(locker_check(lf), LOCKING_E_NOT_LOCKED);
    }
    timed_lock_fail_at(l0, 0.0, 2.0, "Locker timeout 0", __FILE__, __LINE__);
    timed_lock_fail_at(l03, 0.25, 10.0, "Locker timeout 0.3 s", __FILE__, __LINE__);

    /* waiting forever: through the Locker's timeout, and per call */
    struct waiter w[3] = { { lf, 0, 0, -100 }, { l0, 1, 0, -100 }, { l0b, 2, 0, -100 } };
    pthread_t tid[3];
    for (int i = 0; i < 3; i++)
        if (pthread_create(&tid[i], NULL, waiter_thread, &w[i]) != 0)
            FATAL("pthread_create");
    /* they must still be waiting half a second later (nothing releases the
     * lock before we tell the holder to) */
    double until = t_now() + 0.5;
    bool early = false;
    while (t_now() < until && !early) {
        for (int i = 0; i < 3; i++)
            early |= atomic_load(&w[i].done) != 0;
        t_sleep(0.01);
    }
    static const char *how[] = { "locker_lock, Locker timeout forever",
                                 "acquire(shared, LOCKING_WAIT_FOREVER), Locker timeout 0",
                                 "acquire(exclusive, +inf), Locker timeout 0" };
    for (int i = 0; i < 3; i++)
        CHECK(!atomic_load(&w[i].done), "%s: still waiting while the lock is held "
              "(returned %s)", how[i], atomic_load(&w[i].done) ? t_rc_name(w[i].rc) : "-");
    t_send(&to, 'r');
    double deadline = t_now() + 20.0;
    for (int i = 0; i < 3; i++) {
        while (!atomic_load(&w[i].done) && t_now() < deadline)
            t_sleep(0.005);
        CHECK(atomic_load(&w[i].done) && w[i].rc == LOCKING_OK, "%s: got the lock "
              "after the holder released: %s", how[i],
              atomic_load(&w[i].done) ? t_rc_name(w[i].rc) : "still waiting");
    }
    for (int i = 0; i < 3; i++)
        if (atomic_load(&w[i].done))
            pthread_join(tid[i], NULL);
        else
            FATAL("a waiter hangs");
    t_expect(&from, 'd', "holder released");
    t_wait_child(h, "holder");

    /* free lock: every valid timeout works */
    static const double timeouts[] = { 0.0, 0.3, -1.0, -5.0, INFINITY, -INFINITY, 1e300 };
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        for (int mi = 0; mi < 2; mi++) {
            int mode = mi ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
            int rc = locker_acquire(l0, mode, timeouts[i]);
            CHECK(rc == LOCKING_OK, "free lock: locker_acquire(%s, %g): %s", t_mode_name(mode),
                  timeouts[i], t_rc_name(rc));
            if (rc == LOCKING_OK)
                CHECK_RC_QUIET(locker_unlock(l0), LOCKING_OK);
        }
    }
    locker_free(lf);
    locker_free(l5);
    locker_free(l0);
    locker_free(l0b);
    locker_free(l03);
    t_pipe_close(&to);
    t_pipe_close(&from);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 2. invalid arguments                                                 */

static void invalid_arguments(int m)
{
    char *dir = t_fresh_path("invalid");
    Locker *l = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    Locker *other = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    static const int bad_modes[] = { 2, -1, 100, INT_MAX, INT_MIN };
    for (int held = 0; held < 2; held++) {
        t_note("the lock is %s", held ? "held by another Locker" : "free");
        if (held)
            CHECK_RC(locker_acquire(other, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
        CHECK_RC(locker_acquire(l, LOCKING_EXCLUSIVE, NAN), LOCKING_E_INVALID_ARGUMENT);
        CHECK_RC(locker_acquire(l, LOCKING_SHARED, NAN), LOCKING_E_INVALID_ARGUMENT);
        CHECK_RC(locker_acquire(l, LOCKING_SHARED, -NAN), LOCKING_E_INVALID_ARGUMENT);
        for (size_t i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
            int rc = locker_acquire(l, bad_modes[i], 0.0);
            t_check_rc(rc, LOCKING_E_INVALID_ARGUMENT, false, true, "locker_acquire(l, "
                       "bad mode, 0)", __FILE__, __LINE__);
            if (rc == LOCKING_OK)
                locker_unlock(l);
            if (rc != LOCKING_E_INVALID_ARGUMENT)
                t_note("  (the bad mode was %d)", bad_modes[i]);
        }
        /* an unknown mode is refused even with a timeout that would wait */
        int rc = locker_acquire(l, 2, 0.3);
        CHECK(rc == LOCKING_E_INVALID_ARGUMENT, "mode 2, timeout 0.3: %s", t_rc_name(rc));
        if (rc == LOCKING_OK)
            locker_unlock(l);
        CHECK_RC(locker_acquire(NULL, LOCKING_EXCLUSIVE, 0.0), LOCKING_E_INVALID_ARGUMENT);
        CHECK_RC(locker_acquire(NULL, LOCKING_SHARED, LOCKING_WAIT_FOREVER),
                 LOCKING_E_INVALID_ARGUMENT);
        CHECK_RC(locker_check(l), LOCKING_E_NOT_LOCKED);
        if (held)
            CHECK_RC(locker_unlock(other), LOCKING_OK);
    }
    /* the refused calls left nothing behind */
    CHECK_RC(locker_acquire(other, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    CHECK_RC(locker_unlock(other), LOCKING_OK);
    locker_free(l);
    locker_free(other);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 3. ALREADY_LOCKED                                                    */

static void already_at(Locker *l, int mode, double timeout, const char *file, int line)
{
    double t0 = t_now();
    int rc = locker_acquire(l, mode, timeout);
    double el = t_now() - t0;
    t_report(rc == LOCKING_E_ALREADY_LOCKED && el < 1.5, file, line,
             "held: locker_acquire(%s, %g) -> %s after %.3f s (want "
             "LOCKING_E_ALREADY_LOCKED at once)", t_mode_name(mode), timeout,
             t_rc_name(rc), el);
}

static void already_locked(int m)
{
    char *dir = t_fresh_path("already");
    Locker *l = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    Locker *o = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    for (int mi = 0; mi < 2; mi++) {
        int held = mi ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
        t_note("the Locker holds %s", t_mode_name(held));
        CHECK_RC(locker_acquire(l, held, 0.0), LOCKING_OK);
        uint64_t tok = token_of(l);
        for (int ri = 0; ri < 2; ri++) {
            int req = ri ? LOCKING_SHARED : LOCKING_EXCLUSIVE;
            already_at(l, req, 0.0, __FILE__, __LINE__);
            already_at(l, req, 2.0, __FILE__, __LINE__);
        }
        CHECK_RC(locker_lock(l), LOCKING_E_ALREADY_LOCKED);
        CHECK_RC(locker_check(l), LOCKING_OK);
        CHECK(token_of(l) == tok, "the same fencing token after ALREADY_LOCKED");
        /* still held in its mode */
        if (held == LOCKING_EXCLUSIVE) {
            CHECK_RC(locker_acquire(o, LOCKING_SHARED, 0.0), LOCKING_E_LOCKER_FAILED);
        } else {
            CHECK_RC(locker_acquire(o, LOCKING_SHARED, 0.0), LOCKING_OK);
            CHECK_RC(locker_unlock(o), LOCKING_OK);
        }
        CHECK_RC(locker_acquire(o, LOCKING_EXCLUSIVE, 0.0), LOCKING_E_LOCKER_FAILED);
        CHECK_RC(locker_unlock(l), LOCKING_OK);
        CHECK_RC(locker_unlock(l), LOCKING_E_NOT_LOCKED);
        CHECK_RC(locker_acquire(o, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
        CHECK_RC(locker_unlock(o), LOCKING_OK);
    }
    locker_free(l);
    locker_free(o);
    free(dir);
}

/* ------------------------------------------------------------------ */
/* 4. locker_holder                                                     */

typedef struct {
    const char *p;
    size_t len; /* including the last line's '\n' */
} span;

/* Blocks separated by one empty line ("\n\n"). */
static int split_blocks(const char *text, span *out, int max)
{
    int n = 0;
    const char *b = text;
    while (*b && n < max) {
        const char *end = strstr(b, "\n\n");
        out[n].p = b;
        out[n].len = end ? (size_t)(end - b) + 1 : strlen(b);
        n++;
        if (!end)
            break;
        b = end + 2;
    }
    return n;
}

/* The value of the first line "key=..." of a block; false if none. */
static bool block_value(span b, const char *key, char *val, size_t valsz)
{
    size_t kl = strlen(key);
    const char *p = b.p, *end = b.p + b.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (ll > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t vl = ll - kl - 1;
            if (vl >= valsz)
                vl = valsz - 1;
            memcpy(val, p + kl + 1, vl);
            val[vl] = '\0';
            return true;
        }
        p += ll + 1;
    }
    return false;
}

/* Every line is key=value (key: [a-z0-9_]+), the text ends in '\n', blocks
 * are separated by exactly one empty line. */
static bool well_formed(const char *text, char *why, size_t whysz)
{
    size_t n = strlen(text);
    if (n == 0 || text[n - 1] != '\n') {
        snprintf(why, whysz, "does not end in a newline");
        return false;
    }
    if (text[0] == '\n' || strstr(text, "\n\n\n") || (n >= 2 && text[n - 2] == '\n')) {
        snprintf(why, whysz, "empty lines other than one between blocks");
        return false;
    }
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (nl == p) {
            p++;
            continue;
        }
        const char *eq = memchr(p, '=', (size_t)(nl - p));
        bool ok = eq != NULL && eq > p;
        for (const char *k = p; ok && k < eq; k++)
            ok = (*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '_';
        if (!ok) {
            snprintf(why, whysz, "line \"%.*s\" is not key=value", (int)(nl - p), p);
            return false;
        }
        p = nl + 1;
    }
    return true;
}

/* Checks one holder's block; its token= value (the owner record's, not
 * the fencing token) goes to token_out[64] unless NULL. */
#define CHECK_BLOCK(b, mode, pid, state, token_out) \
    check_block_at((b), (mode), (pid), (state), (token_out), __FILE__, __LINE__)
static void check_block_at(span b, const char *mode, pid_t pid, const char *state,
                           char *token_out, const char *file, int line)
{
    char v[64], want[64];
    snprintf(want, sizeof want, "mode=%s\n", mode);
    t_report(b.len >= strlen(want) && memcmp(b.p, want, strlen(want)) == 0, file, line,
             "the block starts with \"mode=%s\": \"%.*s\"", mode, (int)b.len, b.p);
    bool has = block_value(b, "pid", v, sizeof v);
    t_report(has && atol(v) == (long)pid, file, line, "pid=%s (want %ld)",
             has ? v : "(none)", (long)pid);
    has = block_value(b, "state", v, sizeof v);
    t_report(has && strcmp(v, state) == 0, file, line, "state=%s (want %s)",
             has ? v : "(none)", state);
    has = block_value(b, "age", v, sizeof v);
    char *end = NULL;
    double age = has ? strtod(v, &end) : -1;
    t_report(has && end != v && *end == '\0' && age >= 0 && age < 120, file, line,
             "age=%s is a number of seconds", has ? v : "(none)");
    has = block_value(b, "method", v, sizeof v);
    t_report(has && v[0] != '\0', file, line, "method=%s", has ? v : "(none)");
    /* the owner record's token: 32 hex digits naming the acquisition (not
     * the fencing token) */
    has = block_value(b, "token", v, sizeof v);
    bool hex = has && strlen(v) == 32;
    for (const char *k = v; hex && *k; k++)
        hex = (*k >= '0' && *k <= '9') || (*k >= 'a' && *k <= 'f');
    t_report(hex, file, line, "token=%s (32 hex digits)", has ? v : "(none)");
    if (token_out != NULL)
        snprintf(token_out, 64, "%s", has ? v : "");
}

/* Find the block with pid=<pid>; returns its index or -1. */
static int block_of(span *b, int n, pid_t pid)
{
    char v[64];
    for (int i = 0; i < n; i++)
        if (block_value(b[i], "pid", v, sizeof v) && atol(v) == (long)pid)
            return i;
    return -1;
}

static char text[65536];

/* locker_holder into `text`; checks the return value against strlen. */
static int holder_text(Locker *l)
{
    memset(text, 0, sizeof text);
    int n = locker_holder(l, text, sizeof text);
    if (n > 0)
        CHECK(n < (int)sizeof text && (size_t)n == strlen(text),
              "locker_holder returns strlen of the text (%d, %zu)", n, strlen(text));
    return n;
}

static void holder_free(int m)
{
    char *dir = t_fresh_path("holder-free");
    Locker *p = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    char buf[64];
    memset(buf, 'X', sizeof buf);
    int rc = locker_holder(p, buf, sizeof buf);
    CHECK(rc == 0, "never locked: locker_holder -> %d (want 0)", rc);
    CHECK(rc != 0 || buf[0] == '\0' || buf[0] == 'X', "... and writes at most an "
          "empty string");
    CHECK(locker_holder(p, NULL, 0) == 0, "never locked, NULL/0 -> 0");
    CHECK_RC(locker_acquire(p, LOCKING_EXCLUSIVE, 0.0), LOCKING_OK);
    CHECK_RC(locker_unlock(p), LOCKING_OK);
    CHECK_RC(locker_acquire(p, LOCKING_SHARED, 0.0), LOCKING_OK);
    CHECK_RC(locker_unlock(p), LOCKING_OK);
    rc = locker_holder(p, buf, sizeof buf);
    CHECK(rc == 0, "after lock and unlock in both modes: locker_holder -> %d (want "
          "0: \"%.60s\")", rc, rc > 0 ? buf : "");
    CHECK_RC(locker_holder(NULL, buf, sizeof buf), LOCKING_E_INVALID_ARGUMENT);
    CHECK_RC(locker_holder(NULL, NULL, 0), LOCKING_E_INVALID_ARGUMENT);
    CHECK_RC(locker_holder(p, NULL, 16), LOCKING_E_INVALID_ARGUMENT);
    locker_free(p);
    free(dir);
}

static void holder_exclusive(int m)
{
    char *dir = t_fresh_path("holder-excl");
    t_pipe to = t_pipe_new(), from = t_pipe_new();
    pid_t h = t_fork();
    if (h == 0) {
        Locker *l = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        CHECK_RC(locker_acquire(l, LOCKING_EXCLUSIVE, 10.0), LOCKING_OK);
        uint64_t tok = token_of(l);
        /* the holder asks about itself */
        int n = holder_text(l);
        span b[4];
        int nb = n > 0 ? split_blocks(text, b, 4) : 0;
        CHECK(nb == 1, "the holder's own locker_holder: %d block(s)", nb);
        if (nb >= 1)
            CHECK_BLOCK(b[0], "exclusive", getpid(), "alive", NULL);
        t_send_u64(&from, tok);
        t_expect(&to, 'r', "release");
        CHECK_RC(locker_unlock(l), LOCKING_OK);
        t_send(&from, 'd');
        locker_free(l);
        t_child_exit();
    }
    recv_u64(&from, 30.0);
    Locker *p = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    int n = holder_text(p);
    CHECK(n > 0, "held exclusive by a child: locker_holder -> %d (%s)", n,
          n < 0 ? locking_last_error() : "");
    if (n > 0) {
        t_note("locker_holder: \"%s\"", text);
        char why[256] = "";
        CHECK(well_formed(text, why, sizeof why), "key=value lines: %s", why);
        span b[4];
        int nb = split_blocks(text, b, 4);
        CHECK(nb == 1, "one block for one holder (%d)", nb);
        CHECK_BLOCK(b[0], "exclusive", h, "alive", NULL);

        /* snprintf semantics; the text may change (age=) between calls, so
         * a length is compared with the lengths just before and after */
        char saved[4096];
        size_t sk = strnlen(text, sizeof saved - 1);
        memcpy(saved, text, sk);
        saved[sk] = '\0';
        int before = locker_holder(p, NULL, 0);
        CHECK(before == n || before == locker_holder(p, text, sizeof text),
              "size 0, NULL buffer: returns the length (%d; full call %d)", before, n);
        char small[32];
        for (size_t size = 0; size <= 9; size++) {
            memset(small, 'Z', sizeof small);
            int b0 = locker_holder(p, NULL, 0);
            int r = locker_holder(p, small, size);
            int b1 = locker_holder(p, NULL, 0);
            bool ok = r == b0 || r == b1;
            if (size == 0) {
                ok = ok && small[0] == 'Z';
            } else {
                ok = ok && small[size - 1] == '\0' && strlen(small) == size - 1 &&
                     memcmp(small, saved, size - 1) == 0 && small[size] == 'Z';
            }
            CHECK(ok, "size %zu: returns the full length (%d; %d/%d around it) and "
                  "writes %s", size, r, b0, b1,
                  size == 0 ? "nothing" : "a NUL-terminated prefix, nothing beyond");
        }
        CHECK_RC(locker_holder(p, NULL, 16), LOCKING_E_INVALID_ARGUMENT);
        /* a buffer of exactly the length, and one more */
        for (int extra = 0; extra <= 1; extra++) {
            int len = locker_holder(p, NULL, 0);
            if (len <= 0)
                break;
            char *buf = malloc((size_t)len + 8);
            if (buf == NULL)
                FATAL("malloc");
            memset(buf, 'Z', (size_t)len + 8);
            size_t size = (size_t)len + (size_t)extra;
            int r = locker_holder(p, buf, size);
            size_t sl = strnlen(buf, (size_t)len + 8);
            CHECK((r == len && sl == size - 1 && buf[size] == 'Z') ||
                  (r != len && sl < size), "size %zu (text length %d): returns %d, "
                  "writes %zu bytes and a NUL", size, len, r, sl);
            free(buf);
        }
    }
    t_send(&to, 'r');
    t_expect(&from, 'd', "holder released");
    t_wait_child(h, "exclusive holder");
    CHECK(locker_holder(p, text, sizeof text) == 0, "after the holder released: 0");
    locker_free(p);
    t_pipe_close(&to);
    t_pipe_close(&from);
    free(dir);
}

/* Two shared holders; then one is killed; then the other releases; then
 * an exclusive Locker recovers the lock and shows. */
static void holder_shared_and_dead(int m)
{
    bool kernel = m == LOCKING_METHOD_KERNEL;
    char *dir = t_fresh_path("holder-shared");
    t_pipe to_a = t_pipe_new(), from_a = t_pipe_new();
    t_pipe to_b = t_pipe_new(), from_b = t_pipe_new();
    pid_t a = holder_child(dir, m, LOCKING_SHARED, &to_a, &from_a);
    recv_u64(&from_a, 30.0);
    pid_t b = holder_child(dir, m, LOCKING_SHARED, &to_b, &from_b);
    recv_u64(&from_b, 30.0);
    /* the owner records' tokens (acquisition names) */
    char ta[64] = "", tb[64] = "", t2[64] = "";
    Locker *p = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);

    int n = holder_text(p);
    span bl[8];
    int nb = n > 0 ? split_blocks(text, bl, 8) : 0;
    char why[256] = "";
    CHECK(n > 0 && well_formed(text, why, sizeof why), "two shared holders: "
          "locker_holder -> %d, key=value lines %s", n, why);
    CHECK(nb == 2, "two shared holders: two blocks separated by one empty line (%d)", nb);
    if (n > 0)
        t_note("locker_holder: \"%s\"", text);
    int ia = block_of(bl, nb, a), ib = block_of(bl, nb, b);
    CHECK(ia >= 0 && ib >= 0 && ia != ib, "a block for each holder (%d, %d)", ia, ib);
    if (ia >= 0)
        CHECK_BLOCK(bl[ia], "shared", a, "alive", ta);
    if (ib >= 0)
        CHECK_BLOCK(bl[ib], "shared", b, "alive", tb);
    CHECK(strcmp(ta, tb) != 0, "the two shared holders have distinct record tokens "
          "(%s, %s)", ta, tb);

    /* B is killed while holding */
    kill(b, SIGKILL);
    int st;
    while (waitpid(b, &st, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFSIGNALED(st), "shared holder B killed");
    n = holder_text(p);
    nb = n > 0 ? split_blocks(text, bl, 8) : 0;
    ia = block_of(bl, nb, a);
    ib = block_of(bl, nb, b);
    CHECK(ia >= 0, "the live shared holder still shows (%d blocks)", nb);
    if (ia >= 0) {
        CHECK_BLOCK(bl[ia], "shared", a, "alive", t2);
        CHECK(strcmp(t2, ta) == 0, "... with the same record token");
    }
    if (kernel) {
        CHECK(nb == 1 || (nb == 2 && ib >= 0), "kernel: the dead shared holder "
              "shows as dead or not at all (%d blocks)", nb);
        if (ib >= 0)
            CHECK_BLOCK(bl[ib], "shared", b, "dead", NULL);
        t_note("kernel: a SIGKILLed shared holder is %s", ib >= 0 ? "listed as dead" : "not listed");
    } else {
        CHECK(nb == 2 && ib >= 0, "the dead shared holder's entry is still there "
              "(%d blocks)", nb);
        if (ib >= 0) {
            CHECK_BLOCK(bl[ib], "shared", b, "dead", t2);
            CHECK(strcmp(t2, tb) == 0, "... with the same record token");
        }
    }

    /* A releases */
    t_send(&to_a, 'r');
    t_expect(&from_a, 'd', "A released");
    t_wait_child(a, "shared holder A");
    n = holder_text(p);
    nb = n > 0 ? split_blocks(text, bl, 8) : 0;
    ib = block_of(bl, nb, b);
    if (kernel) {
        CHECK(n == 0 || (nb == 1 && ib == 0), "kernel: only the dead holder is left: "
              "%d (%d blocks)", n, nb);
    } else {
        CHECK(nb == 1 && ib == 0, "only the dead holder is left (%d blocks)", nb);
        if (ib == 0)
            CHECK_BLOCK(bl[0], "shared", b, "dead", NULL);
    }

    /* recovery: the new exclusive holder shows */
    int rc = locker_acquire(p, LOCKING_EXCLUSIVE, 5.0);
    CHECK(rc == LOCKING_OK, "exclusive recovers the dead shared holder's lock: %s",
          t_rc_name(rc));
    if (rc == LOCKING_OK) {
        n = holder_text(p);
        nb = n > 0 ? split_blocks(text, bl, 8) : 0;
        CHECK(nb == 1, "after the recovery one holder shows (%d)", nb);
        if (nb >= 1) {
            CHECK_BLOCK(bl[0], "exclusive", getpid(), "alive", t2);
            CHECK(strcmp(t2, ta) != 0 && strcmp(t2, tb) != 0, "a new record token");
        }
        CHECK_RC(locker_unlock(p), LOCKING_OK);
    }
    CHECK(locker_holder(p, NULL, 0) == 0, "free again");
    locker_free(p);
    t_pipe_close(&to_a);
    t_pipe_close(&from_a);
    t_pipe_close(&to_b);
    t_pipe_close(&from_b);
    free(dir);
}

static void holder_dead_exclusive(int m)
{
    bool kernel = m == LOCKING_METHOD_KERNEL;
    char *dir = t_fresh_path("holder-dead");
    t_pipe to = t_pipe_new(), from = t_pipe_new();
    pid_t h = holder_child(dir, m, LOCKING_EXCLUSIVE, &to, &from);
    recv_u64(&from, 30.0);
    char tdead[64] = "", tnew[64] = "";
    kill(h, SIGKILL);
    int st;
    while (waitpid(h, &st, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFSIGNALED(st), "exclusive holder killed");
    Locker *p = t_locker("acq", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    int n = holder_text(p);
    span bl[4];
    int nb = n > 0 ? split_blocks(text, bl, 4) : 0;
    if (kernel) {
        CHECK(n == 0 || nb == 1, "kernel: a SIGKILLed holder: nobody holds, or the "
              "dead holder shows (%d)", n);
        t_note("kernel: a SIGKILLed exclusive holder: %s", n == 0 ? "0 (nobody holds)" : text);
        if (nb == 1)
            CHECK_BLOCK(bl[0], "exclusive", h, "dead", tdead);
    } else {
        CHECK(nb == 1, "a SIGKILLed holder's entry is still there: %d (%d blocks)", n, nb);
        if (nb == 1)
            CHECK_BLOCK(bl[0], "exclusive", h, "dead", tdead);
    }
    int rc = locker_acquire(p, LOCKING_EXCLUSIVE, 5.0);
    CHECK(rc == LOCKING_OK, "recovered: %s", t_rc_name(rc));
    if (rc == LOCKING_OK) {
        n = holder_text(p);
        nb = n > 0 ? split_blocks(text, bl, 4) : 0;
        CHECK(nb == 1, "the new holder shows (%d)", nb);
        if (nb == 1)
            CHECK_BLOCK(bl[0], "exclusive", getpid(), "alive", tnew);
        CHECK(strcmp(tnew, tdead) != 0, "a new record token (%s, the dead one's %s)",
              tnew, tdead[0] ? tdead : "-");
        CHECK_RC(locker_unlock(p), LOCKING_OK);
    }
    CHECK(locker_holder(p, NULL, 0) == 0, "free again");
    locker_free(p);
    t_pipe_close(&to);
    t_pipe_close(&from);
    free(dir);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    double t0 = t_now();
    FOR_EACH_REAL_METHOD(m) {
        double t1 = t_now();
        per_call_timeouts(m);
        invalid_arguments(m);
        already_locked(m);
        holder_free(m);
        holder_exclusive(m);
        holder_shared_and_dead(m);
        holder_dead_exclusive(m);
        t_note("%.2f s", t_now() - t1);
    }
    int rc = t_done();
    int checks = atomic_load(&t_checks), failed = atomic_load(&t_failures);
    printf("test_acquire: %d passed, %d failed (%.2f s)\n", checks - failed,
           failed, t_now() - t0);
    return rc;
}
