/*
 * Compiled by tests/c_tests.rs as strict C99 (-std=c99 -pedantic -Werror
 * ...) and linked both against liblocking.so and liblocking.a: the header is
 * valid C99, self-contained, idempotent, declares every function with the
 * contract's exact type, and gives every constant the contract's value.
 */
#include "locking.h"
#include "locking.h" /* a second include must be harmless */

#include <stdio.h>
#include <string.h>

#define STATIC_ASSERT_(cond, line) typedef char static_assert_line_##line[(cond) ? 1 : -1]
#define STATIC_ASSERT_L(cond, line) STATIC_ASSERT_(cond, line)
#define STATIC_ASSERT(cond) STATIC_ASSERT_L(cond, __LINE__)

STATIC_ASSERT(LOCKING_METHOD_MKDIR == 0);
STATIC_ASSERT(LOCKING_METHOD_OPENCREATE == 1);
STATIC_ASSERT(LOCKING_METHOD_FAKE == 2);
STATIC_ASSERT(LOCKING_METHOD_KERNEL == 3);
STATIC_ASSERT(LOCKING_OK == 0);
STATIC_ASSERT(LOCKING_E_LOCKER_FAILED == -1);
STATIC_ASSERT(LOCKING_E_CANNOT_GET_LOCK == -2);
STATIC_ASSERT(LOCKING_E_INVALID_ARGUMENT == -3);
STATIC_ASSERT(LOCKING_E_IO == -4);
STATIC_ASSERT(LOCKING_E_ALREADY_LOCKED == -5);
STATIC_ASSERT(LOCKING_E_NOT_LOCKED == -6);
STATIC_ASSERT(LOCKING_E_LOCK_LOST == -7);
STATIC_ASSERT(LOCKING_E_INTERNAL == -8);
STATIC_ASSERT(LOCKING_E_UNAVAILABLE == -9);
STATIC_ASSERT(LOCKING_EXCLUSIVE == 0);
STATIC_ASSERT(LOCKING_SHARED == 1);
STATIC_ASSERT(LOCKING_VERSION_MAJOR == 0 && LOCKING_VERSION_MINOR == 2 && LOCKING_VERSION_PATCH == 0);

/* exact prototypes: a mismatch is an incompatible-pointer error (-Werror) */
static int (*const p_locker_new)(const char *, const char *, const char *,
                                 double, double, int, Locker **) = locker_new;
static int (*const p_locker_lock)(Locker *) = locker_lock;
static int (*const p_locker_unlock)(Locker *) = locker_unlock;
static int (*const p_locker_refresh)(Locker *) = locker_refresh;
static int (*const p_locker_check)(const Locker *) = locker_check;
static void (*const p_locker_free)(Locker *) = locker_free;
static int (*const p_open_locked_fd)(const char *, double, const char *, double,
                                     int) = open_locked_fd;
static int (*const p_close_locked_fd)(int) = close_locked_fd;
static const char *(*const p_locking_strerror)(int) = locking_strerror;
static const char *(*const p_locking_last_error)(void) = locking_last_error;
static const char *(*const p_locking_version)(void) = locking_version;
static int (*const p_locker_acquire)(Locker *, int, double) = locker_acquire;
static int (*const p_locker_fencing_token)(const Locker *, uint64_t *) = locker_fencing_token;
static int (*const p_locker_holder)(Locker *, char *, size_t) = locker_holder;

int main(void)
{
    double wait_forever = LOCKING_WAIT_FOREVER;
    double never_expire = LOCKING_NEVER_EXPIRE;
    Locker *l = NULL;
    int bad = 0;
    if (wait_forever != -1.0 || never_expire != 0.0) {
        printf("FAIL: LOCKING_WAIT_FOREVER=%g LOCKING_NEVER_EXPIRE=%g\n",
               wait_forever, never_expire);
        bad = 1;
    }
    if (p_locker_acquire(NULL, LOCKING_EXCLUSIVE, 0.0) != LOCKING_E_INVALID_ARGUMENT ||
        p_locker_fencing_token(NULL, NULL) != LOCKING_E_INVALID_ARGUMENT ||
        p_locker_holder(NULL, NULL, 0) != LOCKING_E_INVALID_ARGUMENT) {
        printf("FAIL: 0.2 entry points accept NULL\n");
        bad = 1;
    }
    if (strcmp(p_locking_version(), "0.2.0") != 0) {
        printf("FAIL: locking_version() = \"%s\"\n", p_locking_version());
        bad = 1;
    }
    /* every entry point resolves and links; harmless calls only */
    if (p_locker_new(NULL, NULL, NULL, 0.0, 0.0, 0, &l) != LOCKING_E_INVALID_ARGUMENT ||
        p_locker_lock(NULL) != LOCKING_E_INVALID_ARGUMENT ||
        p_locker_unlock(NULL) != LOCKING_E_INVALID_ARGUMENT ||
        p_locker_refresh(NULL) != LOCKING_E_INVALID_ARGUMENT ||
        p_locker_check(NULL) != LOCKING_E_INVALID_ARGUMENT ||
        p_open_locked_fd(NULL, 0.0, NULL, 0.0, 0) != LOCKING_E_INVALID_ARGUMENT ||
        p_close_locked_fd(-1) != LOCKING_E_NOT_LOCKED ||
        p_locking_strerror(LOCKING_E_IO)[0] == '\0' ||
        p_locking_last_error()[0] == '\0') {
        printf("FAIL: an entry point misbehaved: %s\n", p_locking_last_error());
        bad = 1;
    }
    p_locker_free(NULL);
    printf("%s: header compiles as C99, version %s\n", bad ? "FAIL" : "ok",
           p_locking_version());
    return bad;
}
