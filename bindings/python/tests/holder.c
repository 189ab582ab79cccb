/*
 * A C party for the Python interoperability tests.
 *
 *   holder locker LOCKDIR NS NAME METHOD TIMEOUT [exclusive|shared]
 *   holder file   PATH METHOD TIMEOUT
 *
 * Takes the lock (a Locker through locker_acquire() in the given mode, or
 * open_locked_fd on PATH) through the C API, prints "locked TOKEN" (the
 * fencing token; "locked" alone for a file) and waits until a line (or end
 * of file) arrives on standard input; then releases, prints "released" and
 * exits 0. If the lock cannot be had, prints "failed CODE MESSAGE" and
 * exits 10 - CODE (11 for LOCKING_E_LOCKER_FAILED, 12 for
 * LOCKING_E_CANNOT_GET_LOCK, ...).
 */
#include <locking.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failed(int code)
{
    printf("failed %d %s\n", code, locking_last_error());
    fflush(stdout);
    return 10 - code;
}

static void wait_for_release(void)
{
    char line[64];
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL) {
        /* end of file: release too */
    }
}

int main(int argc, char **argv)
{
    int rc;
    if ((argc == 7 || argc == 8) && strcmp(argv[1], "locker") == 0) {
        Locker *lk = NULL;
        int mode = LOCKING_EXCLUSIVE;
        uint64_t token = 0;
        if (argc == 8 && strcmp(argv[7], "shared") == 0)
            mode = LOCKING_SHARED;
        else if (argc == 8 && strcmp(argv[7], "exclusive") != 0) {
            fprintf(stderr, "unknown mode %s\n", argv[7]);
            return 2;
        }
        rc = locker_new(argv[4], argv[2], argv[3], -1.0, 0.0, atoi(argv[5]), &lk);
        if (rc != LOCKING_OK)
            return failed(rc);
        rc = locker_acquire(lk, mode, atof(argv[6]));
        if (rc != LOCKING_OK) {
            int code = failed(rc);
            locker_free(lk);
            return code;
        }
        rc = locker_fencing_token(lk, &token);
        if (rc != LOCKING_OK) {
            int code = failed(rc);
            locker_free(lk);
            return code;
        }
        printf("locked %" PRIu64 "\n", token);
        wait_for_release();
        rc = locker_unlock(lk);
        locker_free(lk);
        if (rc != LOCKING_OK)
            return failed(rc);
    } else if (argc == 5 && strcmp(argv[1], "file") == 0) {
        int fd = open_locked_fd(argv[2], atof(argv[4]), NULL, 0.0, atoi(argv[3]));
        if (fd < 0)
            return failed(fd);
        printf("locked\n");
        wait_for_release();
        rc = close_locked_fd(fd);
        if (rc != LOCKING_OK)
            return failed(rc);
    } else {
        fprintf(stderr, "usage: holder locker LOCKDIR NS NAME METHOD TIMEOUT [exclusive|shared]\n"
                        "       holder file PATH METHOD TIMEOUT\n");
        return 2;
    }
    printf("released\n");
    fflush(stdout);
    return 0;
}
