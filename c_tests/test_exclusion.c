/*
 * Exclusion: Lockers on the same (lockdir, ns, objname) exclude each other --
 * in one thread and across processes -- and distinct pairs never do, for
 * every real method and for awkward names. Also the Locker state machine
 * (ALREADY_LOCKED, NOT_LOCKED, relock, free releases), lockdir creation,
 * release removing lock entries, fork() inheritance, FAKE never excluding,
 * and a name held with one method never granted to a Locker of another.
 */
#include "common.h"

#define NS_MAX 64

typedef struct {
    const char *ns;
    const char *obj;
    const char *what;
} name_pair;

static char bytes_80_ff[129];
static char ctl_bytes[32];
static char long_a[10001], long_b[10001], long_c[10001];
static char name_255[256], name_256[257];

static void make_names(void)
{
    for (int i = 0; i < 128; i++)
        bytes_80_ff[i] = (char)(0x80 + i);
    bytes_80_ff[128] = '\0';
    for (int i = 0; i < 31; i++)
        ctl_bytes[i] = (char)(1 + i);
    ctl_bytes[31] = '\0';
    memset(long_a, 'n', 10000);
    long_a[10000] = '\0';
    memcpy(long_b, long_a, sizeof long_a);
    long_b[9999] = 'm'; /* differs in the last byte only */
    memcpy(long_c, long_a, sizeof long_a);
    long_c[0] = 'm'; /* differs in the first byte only */
    memset(name_255, 'q', 255);
    name_255[255] = '\0';
    memset(name_256, 'q', 256);
    name_256[256] = '\0';
}

/* All pairwise distinct: each must get its own lock. */
static const name_pair *pairs(int *n)
{
    static name_pair p[] = {
        { NULL, "x", "plain" },
        { "a", "x", "ns a" },
        { "b", "x", "ns b" },
        { NULL, "a:x", "colon in objname vs ns a / objname x" },
        { "a:b", "c", "colon in ns" },
        { "a", "b:c", "colon in objname" },
        { "a/b", "c", "slash in ns" },
        { "a", "b/c", "slash in objname" },
        { NULL, "a/b", "slash" },
        { NULL, "a//b", "double slash" },
        { NULL, "x/", "trailing slash" },
        { NULL, "./x", "leading ./" },
        { NULL, "x/.", "trailing /." },
        { NULL, "X", "upper case X" },
        { NULL, ".", "dot" },
        { NULL, "..", "dotdot" },
        { "..", "..", "dotdot in ns and objname" },
        { NULL, "../../../../../../../../tmp/escape", "../ escape" },
        { NULL, "/etc/passwd", "absolute path" },
        { NULL, "a b  c ", "spaces" },
        { NULL, "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9" " \xe2\x9c\x93 \xe5\x90\x8d", "UTF-8" },
        { NULL, bytes_80_ff, "bytes 0x80-0xff (not UTF-8)" },
        { NULL, ctl_bytes, "control bytes 0x01-0x1f" },
        { NULL, "line\nbreak", "newline" },
        { NULL, "a%2Fb", "literal %2F" },
        { NULL, "a%2fb", "literal %2f" },
        { NULL, "a\\b", "backslash" },
        { NULL, "~t-00000000000000000000000000000000", "looks like a temp entry" },
        { NULL, "o.00000000000000000000000000000000", "looks like an owner record" },
        { NULL, name_255, "255 bytes" },
        { NULL, name_256, "256 bytes" },
        { NULL, long_a, "10000 bytes" },
        { NULL, long_b, "10000 bytes, last byte differs" },
        { NULL, long_c, "10000 bytes, first byte differs" },
        { long_a, "x", "10000-byte ns" },
    };
    *n = (int)(sizeof p / sizeof p[0]);
    return p;
}

static void basic_state_machine(int m)
{
    char *root = t_fresh_path("basic");
    char *dir = NULL;
    if (asprintf(&dir, "%s/nested/deeper", root) < 0)
        FATAL("asprintf");
    Locker *a = t_locker("x", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    Locker *b = t_locker("x", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);

    CHECK_RC(locker_lock(a), LOCKING_OK);
    struct stat st;
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode),
          "missing lockdir and its parents were created: %s", dir);
    CHECK_RC(locker_lock(b), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_check(a), LOCKING_OK);
    CHECK_RC(locker_check(b), LOCKING_E_NOT_LOCKED);
    CHECK_RC(locker_refresh(a), LOCKING_OK);
    CHECK_RC(locker_refresh(b), LOCKING_E_NOT_LOCKED);
    CHECK_RC(locker_unlock(b), LOCKING_E_NOT_LOCKED);
    CHECK_RC(locker_lock(a), LOCKING_E_ALREADY_LOCKED);
    CHECK_RC(locker_check(a), LOCKING_OK); /* still held after that */
    CHECK_RC(locker_lock(b), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_unlock(a), LOCKING_OK);
    CHECK_RC(locker_unlock(a), LOCKING_E_NOT_LOCKED);
    CHECK_RC(locker_check(a), LOCKING_E_NOT_LOCKED);
    CHECK_RC(locker_lock(b), LOCKING_OK);
    CHECK_RC(locker_lock(a), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_unlock(b), LOCKING_OK);
    CHECK_RC(locker_lock(a), LOCKING_OK); /* a Locker can lock again */
    locker_free(a);                       /* free releases a held lock */
    CHECK_RC(locker_lock(b), LOCKING_OK);
    CHECK_RC(locker_unlock(b), LOCKING_OK);
    locker_free(b);

    /* Not reentrant, and no self-deadlock even when waiting forever. */
    Locker *f = t_locker("forever", dir, "ns", LOCKING_WAIT_FOREVER,
                         LOCKING_NEVER_EXPIRE, m);
    CHECK_RC(locker_lock(f), LOCKING_OK);
    CHECK_RC(locker_lock(f), LOCKING_E_ALREADY_LOCKED);
    CHECK_RC(locker_unlock(f), LOCKING_OK);
    locker_free(f);

    /* ns NULL is the empty namespace */
    Locker *n1 = t_locker("y", dir, NULL, 0.0, 0.0, m);
    Locker *n2 = t_locker("y", dir, "", 0.0, 0.0, m);
    CHECK_RC(locker_lock(n1), LOCKING_OK);
    CHECK_RC(locker_lock(n2), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_unlock(n1), LOCKING_OK);
    CHECK_RC(locker_lock(n2), LOCKING_OK);
    CHECK_RC(locker_unlock(n2), LOCKING_OK);
    locker_free(n1);
    locker_free(n2);

    /* the same name in two lock directories: two different locks */
    char *dir2 = t_fresh_path("basic-other");
    Locker *d1 = t_locker("z", dir, "ns", 0.0, 0.0, m);
    Locker *d2 = t_locker("z", dir2, "ns", 0.0, 0.0, m);
    CHECK_RC(locker_lock(d1), LOCKING_OK);
    CHECK_RC(locker_lock(d2), LOCKING_OK);
    CHECK_RC(locker_unlock(d1), LOCKING_OK);
    CHECK_RC(locker_unlock(d2), LOCKING_OK);
    locker_free(d1);
    locker_free(d2);

    /* one lockdir reached through two spellings is one lockdir */
    char *dir_alias = NULL;
    if (asprintf(&dir_alias, "%s/nested/../nested/./deeper/", root) < 0)
        FATAL("asprintf");
    Locker *s1 = t_locker("w", dir, "ns", 0.0, 0.0, m);
    Locker *s2 = t_locker("w", dir_alias, "ns", 0.0, 0.0, m);
    CHECK_RC(locker_lock(s1), LOCKING_OK);
    CHECK_RC(locker_lock(s2), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_unlock(s1), LOCKING_OK);
    locker_free(s1);
    locker_free(s2);

    free(dir_alias);
    free(dir2);
    free(dir);
    free(root);
}

static void names(int m)
{
    char *dir = t_fresh_path("names");
    int n;
    const name_pair *p = pairs(&n);

    /* a baseline for the entry count: the lockdir after one lock cycle */
    Locker *warm = t_locker("warm-up", dir, NULL, 0.0, 0.0, m);
    CHECK_RC(locker_lock(warm), LOCKING_OK);
    CHECK_RC(locker_unlock(warm), LOCKING_OK);
    locker_free(warm);
    int base = t_count_entries(dir);

    Locker **held = calloc((size_t)n, sizeof *held);
    for (int i = 0; i < n; i++) {
        held[i] = t_locker(p[i].obj, dir, p[i].ns, 0.0, 0.0, m);
        int rc = locker_lock(held[i]);
        CHECK(rc == LOCKING_OK,
                        "name #%d (%s) locked while all previous names are "
                        "held: %s, last_error=\"%s\"",
                        i, p[i].what, t_rc_name(rc),
                        rc ? locking_last_error() : "");
    }
    for (int i = 0; i < n; i++) {
        Locker *again = t_locker(p[i].obj, dir, p[i].ns, 0.0, 0.0, m);
        int rc = locker_lock(again);
        CHECK(rc == LOCKING_E_LOCKER_FAILED,
              "a second Locker on name #%d (%s) is excluded: got %s", i,
              p[i].what, t_rc_name(rc));
        locker_free(again);
    }
    if (m != LOCKING_METHOD_KERNEL)
        CHECK(t_count_entries(dir) >= base + n,
              "%d lock entries exist while %d names are held (baseline %d)",
              t_count_entries(dir), n, base);
    for (int i = 0; i < n; i++) {
        CHECK_RC_QUIET(locker_unlock(held[i]), LOCKING_OK);
        locker_free(held[i]);
    }
    int after = t_count_entries(dir);
    if (m == LOCKING_METHOD_KERNEL) {
        CHECK(after >= 0 && after <= base + n,
              "kernel: at most one kept lock file per name after release "
              "(%d entries, baseline %d, %d names)", after, base, n);
    } else {
        CHECK(after == base,
              "release removed every lock entry (%d entries, baseline %d)",
              after, base);
    }

    /* the same names again, lock+unlock 5 times: no growth at all */
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < n; i++) {
            Locker *l = t_locker(p[i].obj, dir, p[i].ns, 0.0, 0.0, m);
            CHECK_RC_QUIET(locker_lock(l), LOCKING_OK);
            CHECK_RC_QUIET(locker_unlock(l), LOCKING_OK);
            locker_free(l);
        }
    }
    CHECK(t_count_entries(dir) == after,
          "repeated lock/unlock of the same names does not grow the lockdir "
          "(%d entries, was %d)", t_count_entries(dir), after);
    free(held);
    free(dir);
}

static void other_process(int m)
{
    char *dir = t_fresh_path("proc");
    t_pipe to_child = t_pipe_new(), to_parent = t_pipe_new();
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *c = t_locker("shared", dir, "ns", 0.0, 0.0, m);
        CHECK_RC(locker_lock(c), LOCKING_OK);
        t_send(&to_parent, 'h');
        t_expect(&to_child, 'r', "release request");
        CHECK_RC(locker_unlock(c), LOCKING_OK);
        t_send(&to_parent, 'u');
        t_expect(&to_child, 'p', "parent holds");
        Locker *c2 = t_locker("shared", dir, "ns", 0.0, 0.0, m);
        CHECK_RC(locker_lock(c2), LOCKING_E_LOCKER_FAILED);
        CHECK_RC(locker_lock(c), LOCKING_E_LOCKER_FAILED);
        locker_free(c2);
        locker_free(c);
        t_send(&to_parent, 'd');
        t_child_exit();
    }
    t_expect(&to_parent, 'h', "child holds");
    Locker *p = t_locker("shared", dir, "ns", 0.0, 0.0, m);
    CHECK_RC(locker_lock(p), LOCKING_E_LOCKER_FAILED);
    t_send(&to_child, 'r');
    t_expect(&to_parent, 'u', "child released");
    CHECK_RC(locker_lock(p), LOCKING_OK);
    t_send(&to_child, 'p');
    t_expect(&to_parent, 'd', "child done");
    t_wait_child(pid, "other-process holder/waiter");
    CHECK_RC(locker_unlock(p), LOCKING_OK);
    locker_free(p);
    t_pipe_close(&to_child);
    t_pipe_close(&to_parent);
    free(dir);
}

/* A child inheriting a held Locker must not release the parent's lock. */
static void fork_inherit(int m)
{
    char *dir = t_fresh_path("fork");
    Locker *a = t_locker("inherited", dir, NULL, 0.0, 0.0, m);
    CHECK_RC(locker_lock(a), LOCKING_OK);

    pid_t pid = t_fork();
    if (pid == 0) {
        /* the child does not hold the parent's acquisition */
        CHECK_RC(locker_unlock(a), LOCKING_E_NOT_LOCKED);
        Locker *c = t_locker("inherited", dir, NULL, 0.0, 0.0, m);
        CHECK_RC(locker_lock(c), LOCKING_E_LOCKER_FAILED);
        locker_free(c);
        locker_free(a);
        t_child_exit();
    }
    t_wait_child(pid, "unlock+free of an inherited Locker");

    pid = t_fork();
    if (pid == 0) {
        locker_free(a); /* just free it, then exit normally */
        exit(atomic_load(&t_failures) ? 1 : 0);
    }
    t_wait_child(pid, "free of an inherited Locker");

    CHECK_RC(locker_check(a), LOCKING_OK);
    Locker *b = t_locker("inherited", dir, NULL, 0.0, 0.0, m);
    CHECK_RC(locker_lock(b), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_unlock(a), LOCKING_OK);
    CHECK_RC(locker_lock(b), LOCKING_OK);
    CHECK_RC(locker_unlock(b), LOCKING_OK);
    locker_free(a);
    locker_free(b);
    free(dir);
}

/* Mixing methods on one name is not supported, but must never grant the
 * lock twice: while one method holds it, another method's Locker fails. */
static void mixed_methods(void)
{
    FOR_EACH_REAL_METHOD(holder_m) {
        for (int j = 0; j < T_N_REAL_METHODS; j++) {
            int other_m = t_real_methods[j];
            if (other_m == holder_m)
                continue;
            char *dir = t_fresh_path("mixed");
            Locker *a = t_locker("x", dir, NULL, 0.0, 0.0, holder_m);
            Locker *b = t_locker("x", dir, NULL, 0.0, 0.0, other_m);
            CHECK_RC(locker_lock(a), LOCKING_OK);
            int rc = locker_lock(b);
            CHECK(rc < 0 && locking_last_error()[0] != '\0',
                  "held with %s, a %s Locker is refused: %s (\"%s\")",
                  t_method_name(holder_m), t_method_name(other_m),
                  t_rc_name(rc), locking_last_error());
            if (rc == LOCKING_OK)
                locker_unlock(b);
            CHECK_RC(locker_unlock(a), LOCKING_OK);
            locker_free(a);
            locker_free(b);
            free(dir);
        }
    }
}

static void fake(void)
{
    t_method_label = "fake";
    char *dir = t_fresh_path("fake");
    Locker *a = t_locker("x", dir, "ns", 0.0, 0.0, LOCKING_METHOD_FAKE);
    Locker *b = t_locker("x", dir, "ns", 0.0, 0.0, LOCKING_METHOD_FAKE);
    CHECK_RC(locker_lock(a), LOCKING_OK);
    CHECK_RC(locker_lock(b), LOCKING_OK);
    CHECK_RC(locker_unlock(a), LOCKING_OK);
    CHECK_RC(locker_unlock(b), LOCKING_OK);
    locker_free(a);
    locker_free(b);
    free(dir);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    make_names();
    FOR_EACH_REAL_METHOD(m) {
        basic_state_machine(m);
        names(m);
        other_process(m);
        fork_inherit(m);
    }
    mixed_methods();
    fake();
    return t_done();
}
