/*
 * Negative control for the leak checkers (not a test of its own: run by
 * tests/c_tests.rs under AddressSanitizer/LeakSanitizer and under valgrind,
 * which must both report the leak). It leaks exactly one Locker, an
 * allocation made by the Rust library, so a clean run of the real tests
 * shows that the checkers do see the library's memory, not only the C
 * side's.
 */
#include <stdio.h>
#include <string.h>

#include "locking.h"

/* noinline: once it returns, the only pointer to the Locker is in a dead
 * stack frame, which no leak checker counts as a reference */
__attribute__((noinline)) static int leak_one_locker(const char *dir)
{
    Locker *l = NULL;
    if (locker_new("leak", dir, "control", 0.0, 0.0, LOCKING_METHOD_MKDIR, &l) != LOCKING_OK)
        return 1;
    if (locker_lock(l) != LOCKING_OK || locker_unlock(l) != LOCKING_OK)
        return 1;
    return 0; /* never locker_free()d */
}

/* overwrite the dead frame too, in case a register spilled the pointer */
__attribute__((noinline)) static void scrub_stack(void)
{
    volatile char buf[4096];
    memset((char *)buf, 0, sizeof buf);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "leak-control-locks";
    if (leak_one_locker(dir) != 0) {
        fprintf(stderr, "leak_control: could not lock: %s\n", locking_last_error());
        return 2;
    }
    scrub_stack();
    printf("leaked one Locker on purpose\n");
    fflush(stdout); /* LeakSanitizer ends the process without flushing */
    return 0;
}
