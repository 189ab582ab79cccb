/*
 * locker_example: the Locker API of liblocking in a few steps.
 *
 *   usage: locker_example [LOCKDIR]      (default: ./locks)
 *
 * A Locker locks a *name* ("report.pdf" in the namespace "example"),
 * not a file: every program that wants to work on that name creates its
 * own Locker with the same lock directory, namespace, name and method,
 * and locks it first. Here one program plays both parties, which works
 * too: two Lockers exclude each other even in the same thread.
 */
#include <stdio.h>
#include <stdlib.h>

#include "locking.h"

/* Report a failed liblocking call and exit. locking_strerror() names the
 * return code; locking_last_error() says what exactly went wrong (which
 * call, which path, the OS error) in this thread's most recent failure. */
static void die(const char *what, int rc)
{
    fprintf(stderr, "locker_example: %s failed: %s (%d)\n  %s\n", what,
            locking_strerror(rc), rc, locking_last_error());
    exit(1);
}

int main(int argc, char **argv)
{
    const char *lockdir = argc > 1 ? argv[1] : "locks";
    Locker *worker = NULL, *impatient = NULL;
    int rc;

    printf("liblocking %s, lock directory %s\n", locking_version(), lockdir);

    /* Create a Locker. It does not lock yet; the lock directory is created
     * if it does not exist.
     *   timeout 5 s: locker_lock() waits at most that long;
     *   expire LOCKING_NEVER_EXPIRE: never break a live holder's lock (a
     *     holder that dies is recovered at once anyway);
     *   method: any real method, as long as every party uses the same. */
    rc = locker_new("report.pdf", lockdir, "example", 5.0,
                    LOCKING_NEVER_EXPIRE, LOCKING_METHOD_KERNEL, &worker);
    if (rc != LOCKING_OK)
        die("locker_new", rc);

    rc = locker_lock(worker);
    if (rc != LOCKING_OK)
        die("locker_lock", rc);
    printf("worker: holds the lock on example:report.pdf\n");

    /* A second party that only waits 0.2 s. While `worker` holds the lock,
     * its locker_lock() gives up with LOCKING_E_LOCKER_FAILED: that is not
     * an error of the library, just "somebody else has it". */
    rc = locker_new("report.pdf", lockdir, "example", 0.2,
                    LOCKING_NEVER_EXPIRE, LOCKING_METHOD_KERNEL, &impatient);
    if (rc != LOCKING_OK)
        die("locker_new", rc);

    rc = locker_lock(impatient);
    if (rc == LOCKING_E_LOCKER_FAILED) {
        printf("impatient: busy, gave up after 0.2 s (%s)\n",
               locking_strerror(rc));
    } else if (rc == LOCKING_OK) {
        fprintf(stderr, "locker_example: two Lockers held the same lock!\n");
        return 1;
    } else {
        die("locker_lock (impatient)", rc);
    }

    /* ... the critical section of `worker` would be here ... */

    /* Release. LOCKING_E_LOCK_LOST here would mean that another party
     * broke our lock after its `expire`: the work done under it was not
     * protected, and the program should say so. */
    rc = locker_unlock(worker);
    if (rc != LOCKING_OK)
        die("locker_unlock", rc);
    printf("worker: released the lock\n");

    /* Now the second party gets it at once. */
    rc = locker_lock(impatient);
    if (rc != LOCKING_OK)
        die("locker_lock (impatient, second try)", rc);
    printf("impatient: holds the lock\n");
    rc = locker_unlock(impatient);
    if (rc != LOCKING_OK)
        die("locker_unlock (impatient)", rc);

    /* locker_free() also releases a lock that is still held; NULL is fine. */
    locker_free(impatient);
    locker_free(worker);
    printf("locker_example: OK\n");
    return 0;
}
