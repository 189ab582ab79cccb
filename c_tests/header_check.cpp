// Compiled by tests/c_tests.rs with c++ -std=c++11 -Wall -Wextra -Werror
// -pedantic and linked against liblocking.so: the header works from C++
// (extern "C" linkage, no C-only constructs), and declares the contract's
// exact types and values.
#include "locking.h"
#include "locking.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

static_assert(LOCKING_METHOD_MKDIR == 0, "MKDIR");
static_assert(LOCKING_METHOD_OPENCREATE == 1, "OPENCREATE");
static_assert(LOCKING_METHOD_FAKE == 2, "FAKE");
static_assert(LOCKING_METHOD_KERNEL == 3, "KERNEL");
static_assert(LOCKING_OK == 0, "OK");
static_assert(LOCKING_E_LOCKER_FAILED == -1, "LOCKER_FAILED");
static_assert(LOCKING_E_CANNOT_GET_LOCK == -2, "CANNOT_GET_LOCK");
static_assert(LOCKING_E_INVALID_ARGUMENT == -3, "INVALID_ARGUMENT");
static_assert(LOCKING_E_IO == -4, "IO");
static_assert(LOCKING_E_ALREADY_LOCKED == -5, "ALREADY_LOCKED");
static_assert(LOCKING_E_NOT_LOCKED == -6, "NOT_LOCKED");
static_assert(LOCKING_E_LOCK_LOST == -7, "LOCK_LOST");
static_assert(LOCKING_E_INTERNAL == -8, "INTERNAL");
static_assert(LOCKING_WAIT_FOREVER == -1.0, "WAIT_FOREVER");
static_assert(LOCKING_NEVER_EXPIRE == 0.0, "NEVER_EXPIRE");

#define SAME_TYPE(fn, type) \
    static_assert(std::is_same<decltype(&fn), type>::value, #fn " has the contract's type")
SAME_TYPE(locker_new, int (*)(const char *, const char *, const char *, double,
                              double, int, Locker **));
SAME_TYPE(locker_lock, int (*)(Locker *));
SAME_TYPE(locker_unlock, int (*)(Locker *));
SAME_TYPE(locker_refresh, int (*)(Locker *));
SAME_TYPE(locker_check, int (*)(const Locker *));
SAME_TYPE(locker_free, void (*)(Locker *));
SAME_TYPE(open_locked_fd, int (*)(const char *, double, const char *, double, int));
SAME_TYPE(close_locked_fd, int (*)(int));
SAME_TYPE(locking_strerror, const char *(*)(int));
SAME_TYPE(locking_last_error, const char *(*)());
SAME_TYPE(locking_version, const char *(*)());

int main()
{
    Locker *l = nullptr;
    int bad = 0;
    if (locker_new(nullptr, "/nonexistent", nullptr, 0.0, 0.0,
                   LOCKING_METHOD_MKDIR, &l) != LOCKING_E_INVALID_ARGUMENT ||
        l != nullptr || locking_last_error()[0] == '\0') {
        std::printf("FAIL: locker_new(NULL objname) from C++\n");
        bad = 1;
    }
    if (std::strcmp(locking_version(), "0.2.0") != 0) {
        std::printf("FAIL: locking_version() = \"%s\"\n", locking_version());
        bad = 1;
    }
    locker_free(nullptr);
    std::printf("%s: header works from C++11, version %s\n", bad ? "FAIL" : "ok",
                locking_version());
    return bad;
}
