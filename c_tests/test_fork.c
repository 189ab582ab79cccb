/*
 * fork(): a child never releases its parent's lock. For every real method:
 *
 *  1. The parent holds a Locker; a child inherits it and
 *       a) calls locker_unlock (LOCKING_E_NOT_LOCKED), locker_free, exits;
 *       b) calls only locker_free (which releases a lock it holds: the
 *          inherited one is not the child's) and exits;
 *       c) calls locker_check (NOT_LOCKED), locker_lock with timeout 0
 *          (LOCKER_FAILED: that is a new acquisition of its own, and the
 *          parent holds the lock), locker_unlock (NOT_LOCKED), locker_free;
 *       d) exits with _exit() without touching it.
 *     After each, the parent's locker_check is LOCKING_OK and a second
 *     child with a fresh Locker (timeout 0) cannot lock. Then the parent
 *     unlocks, and such a child can.
 *  2. The parent holds a descriptor from open_locked_fd; a child calls
 *     close_locked_fd on it (the header leaves the code open: OK or
 *     NOT_LOCKED; we print what we see) and the child's descriptor is
 *     closed; the parent's lock is still held (another child's
 *     open_locked_fd with timeout 0: CANNOT_GET_LOCK), the parent's
 *     descriptor still works, and the parent's close_locked_fd is OK;
 *     afterwards another child gets the lock.
 *  3. A child may lock an inherited unlocked Locker anew (the parent has
 *     locked and unlocked it before the fork, so any descriptor it keeps
 *     is inherited too): that excludes the parent, through the same
 *     Locker and through a fresh one; after the child unlocks, the parent
 *     locks again.
 *
 * Built with -DFORCE_METHOD=LOCKING_METHOD_FAKE (common.h) the test runs
 * with FAKE instead, and its exclusion checks must fail (which shows that
 * they can).
 */
#include "common.h"

/* In a child: try once to lock (dir, name) with a fresh Locker; exit 0 if
 * the result is `want`. */
static void probe_child_locker(const char *dir, int m, int want, const char *what)
{
    pid_t pid = t_fork();
    if (pid == 0) {
        Locker *l = t_locker("forked", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
        int rc = locker_lock(l);
        t_check_rc(rc, want, false, true, what, __FILE__, __LINE__);
        if (rc == LOCKING_OK)
            CHECK_RC(locker_unlock(l), LOCKING_OK);
        locker_free(l);
        t_child_exit();
    }
    t_wait_child(pid, what);
}

static void probe_child_open(const char *file, int m, bool expect_locked,
                             const char *what)
{
    pid_t pid = t_fork();
    if (pid == 0) {
        int fd = open_locked_fd(file, 0.0, NULL, LOCKING_NEVER_EXPIRE, m);
        if (expect_locked) {
            CHECK(fd == LOCKING_E_CANNOT_GET_LOCK, "%s: open_locked_fd with "
                  "timeout 0 -> %d (%s), want LOCKING_E_CANNOT_GET_LOCK "
                  "(last_error=\"%s\")", what, fd, fd < 0 ? t_rc_name(fd) : "an fd",
                  locking_last_error());
        } else {
            CHECK(fd >= 0, "%s: open_locked_fd with timeout 0 -> %d (%s) "
                  "(last_error=\"%s\")", what, fd, fd < 0 ? t_rc_name(fd) : "an fd",
                  locking_last_error());
        }
        if (fd >= 0)
            CHECK_RC(close_locked_fd(fd), LOCKING_OK);
        t_child_exit();
    }
    t_wait_child(pid, what);
}

enum child_action { A_UNLOCK_FREE, A_FREE, A_RELOCK, A_EXIT, A_N };
static const char *action_name[A_N] = {
    "unlock+free", "free only", "check+lock+unlock+free", "_exit"
};

/* 1. an inherited held Locker */
static void inherited_held(int m)
{
    char *dir = t_fresh_path("fork-held");
    Locker *l = t_locker("forked", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    CHECK_RC(locker_lock(l), LOCKING_OK);

    for (int a = 0; a < A_N; a++) {
        t_note("child inherits the held Locker: %s", action_name[a]);
        pid_t pid = t_fork();
        if (pid == 0) {
            switch (a) {
            case A_UNLOCK_FREE:
                CHECK_RC(locker_unlock(l), LOCKING_E_NOT_LOCKED);
                locker_free(l);
                break;
            case A_FREE:
                locker_free(l);
                break;
            case A_RELOCK:
                CHECK_RC(locker_check(l), LOCKING_E_NOT_LOCKED);
                CHECK_RC(locker_lock(l), LOCKING_E_LOCKER_FAILED);
                CHECK_RC(locker_unlock(l), LOCKING_E_NOT_LOCKED);
                locker_free(l);
                break;
            case A_EXIT:
                _exit(0);
            }
            t_child_exit();
        }
        t_wait_child(pid, action_name[a]);
        CHECK_RC(locker_check(l), LOCKING_OK);
        probe_child_locker(dir, m, LOCKING_E_LOCKER_FAILED,
                           "another process while the parent holds");
    }
    CHECK_RC(locker_unlock(l), LOCKING_OK);
    probe_child_locker(dir, m, LOCKING_OK, "another process after the parent unlocked");
    /* and the parent's Locker still works */
    CHECK_RC(locker_lock(l), LOCKING_OK);
    CHECK_RC(locker_unlock(l), LOCKING_OK);
    locker_free(l);
    free(dir);
}

/* 2. an inherited descriptor from open_locked_fd */
static void inherited_fd(int m)
{
    char *dir = t_fresh_dir("fork-fd");
    char *file = NULL;
    if (asprintf(&file, "%s/data", dir) < 0)
        FATAL("asprintf");
    int fd = open_locked_fd(file, 0.0, NULL, LOCKING_NEVER_EXPIRE, m);
    if (!CHECK(fd >= 0, "parent: open_locked_fd -> %d (last_error=\"%s\")", fd,
               locking_last_error()))
        return;
    const char *text = "parent\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text),
          "parent writes through its locked descriptor");

    t_pipe from_child = t_pipe_new();
    pid_t pid = t_fork();
    if (pid == 0) {
        int rc = close_locked_fd(fd);
        CHECK(rc == LOCKING_OK || rc == LOCKING_E_NOT_LOCKED,
              "child: close_locked_fd(inherited fd) -> %s (%d), want OK or "
              "NOT_LOCKED", t_rc_name(rc), rc);
        errno = 0;
        int fl = fcntl(fd, F_GETFD);
        CHECK(fl == -1 && errno == EBADF, "child: its copy of the descriptor "
              "is closed (fcntl -> %d, errno %d)", fl, errno);
        t_send(&from_child, rc == LOCKING_OK ? 'o' : 'n');
        t_child_exit();
    }
    int c = t_recv_timeout(&from_child, T_PIPE_TIMEOUT_S);
    t_wait_child(pid, "child closing an inherited locked fd");
    t_note("observed: close_locked_fd on an inherited descriptor in a child "
           "returns %s", c == 'o' ? "LOCKING_OK" :
           c == 'n' ? "LOCKING_E_NOT_LOCKED" : "(no answer)");

    probe_child_open(file, m, true, "another process while the parent holds the fd");
    /* the parent's descriptor is intact */
    CHECK(fcntl(fd, F_GETFD) >= 0, "parent: descriptor still open");
    CHECK(lseek(fd, 0, SEEK_SET) == 0, "parent: lseek");
    char buf[32] = { 0 };
    ssize_t got = read(fd, buf, sizeof buf - 1);
    CHECK(got == (ssize_t)strlen(text) && strcmp(buf, text) == 0,
          "parent: reads back what it wrote (%zd bytes)", got);
    CHECK_RC(close_locked_fd(fd), LOCKING_OK);
    probe_child_open(file, m, false, "another process after the parent closed");

    t_pipe_close(&from_child);
    free(file);
    free(dir);
}

/* 3. a child locks an inherited unlocked Locker anew */
static void inherited_unlocked(int m)
{
    char *dir = t_fresh_path("fork-unlocked");
    Locker *l = t_locker("forked", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    Locker *other = t_locker("forked", dir, "ns", 0.0, LOCKING_NEVER_EXPIRE, m);
    /* lock and unlock once, so that whatever the Locker keeps open
     * between locks is there, and inherited */
    CHECK_RC(locker_lock(l), LOCKING_OK);
    CHECK_RC(locker_unlock(l), LOCKING_OK);

    t_pipe to_child = t_pipe_new(), from_child = t_pipe_new();
    pid_t pid = t_fork();
    if (pid == 0) {
        CHECK_RC(locker_lock(l), LOCKING_OK);
        t_send(&from_child, 'l');
        t_expect(&to_child, 'u', "unlock");
        CHECK_RC(locker_check(l), LOCKING_OK);
        CHECK_RC(locker_unlock(l), LOCKING_OK);
        t_send(&from_child, 'd');
        t_expect(&to_child, 'x', "exit");
        locker_free(l);
        t_child_exit();
    }
    t_expect(&from_child, 'l', "child locked");
    CHECK_RC(locker_lock(l), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_lock(other), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_check(l), LOCKING_E_NOT_LOCKED);
    probe_child_locker(dir, m, LOCKING_E_LOCKER_FAILED,
                       "a third process while the child holds");
    t_send(&to_child, 'u');
    t_expect(&from_child, 'd', "child unlocked");
    CHECK_RC(locker_lock(l), LOCKING_OK);
    CHECK_RC(locker_lock(other), LOCKING_E_LOCKER_FAILED);
    /* the child's exit (and its locker_free) leaves the parent's lock alone */
    t_send(&to_child, 'x');
    t_wait_child(pid, "child that locked an inherited Locker");
    CHECK_RC(locker_check(l), LOCKING_OK);
    CHECK_RC(locker_lock(other), LOCKING_E_LOCKER_FAILED);
    CHECK_RC(locker_unlock(l), LOCKING_OK);
    CHECK_RC(locker_lock(other), LOCKING_OK);
    CHECK_RC(locker_unlock(other), LOCKING_OK);

    t_pipe_close(&to_child);
    t_pipe_close(&from_child);
    locker_free(other);
    locker_free(l);
    free(dir);
}

int main(int argc, char **argv)
{
    t_init(argc, argv);
    double t0 = t_now();
    FOR_EACH_REAL_METHOD(m) {
        inherited_held(m);
        inherited_fd(m);
        inherited_unlocked(m);
    }
    int rc = t_done();
    int checks = atomic_load(&t_checks), failed = atomic_load(&t_failures);
    printf("test_fork: %d passed, %d failed (%.2f s)\n", checks - failed,
           failed, t_now() - t0);
    return rc;
}
