/*
 * counter: increment a number kept in a file, N times, under an exclusive
 * lock from open_locked_fd(). Several counter processes may run at once on
 * the same file: because every increment (read, add one, write back)
 * happens while the file is locked, no increment is lost.
 *
 *   usage: counter FILE N [mkdir|opencreate|kernel|fake]  (default: kernel)
 *
 * "fake" takes no lock at all: run a few of those at once to watch
 * increments get lost (make run METHODS=fake).
 *
 * The file is created if missing (an empty file counts as 0). The lock
 * lives next to the file (lockdir NULL); all processes must use the same
 * method.
 */
#define _POSIX_C_SOURCE 200809L /* pwrite, ftruncate */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "locking.h"

static int method_from_name(const char *s)
{
    if (strcmp(s, "mkdir") == 0)
        return LOCKING_METHOD_MKDIR;
    if (strcmp(s, "opencreate") == 0)
        return LOCKING_METHOD_OPENCREATE;
    if (strcmp(s, "kernel") == 0)
        return LOCKING_METHOD_KERNEL;
    if (strcmp(s, "fake") == 0)
        return LOCKING_METHOD_FAKE;
    return -1;
}

/* One increment: returns 0, or -1 after printing why it failed. */
static int increment(const char *file, int method)
{
    /* Wait up to 30 s for the lock; never break a live holder's lock. */
    int fd = open_locked_fd(file, 30.0, NULL, LOCKING_NEVER_EXPIRE, method);
    if (fd < 0) {
        fprintf(stderr, "counter: open_locked_fd(%s): %s\n  %s\n", file,
                locking_strerror(fd), locking_last_error());
        return -1;
    }

    /* The descriptor is open for reading and writing, at offset 0. */
    char buf[64];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("counter: read");
            close_locked_fd(fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == sizeof buf - 1)
            break;
    }
    buf[len] = '\0';
    long value = strtol(buf, NULL, 10);

    int n = snprintf(buf, sizeof buf, "%ld\n", value + 1);
    if (pwrite(fd, buf, (size_t)n, 0) != n || ftruncate(fd, n) != 0) {
        perror("counter: write");
        close_locked_fd(fd);
        return -1;
    }

    /* Release the lock and close the descriptor (a plain close() would
     * keep the lock). */
    int rc = close_locked_fd(fd);
    if (rc != LOCKING_OK) {
        fprintf(stderr, "counter: close_locked_fd: %s\n  %s\n",
                locking_strerror(rc), locking_last_error());
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s FILE N [mkdir|opencreate|kernel|fake]\n", argv[0]);
        return 2;
    }
    const char *file = argv[1];
    char *end;
    long times = strtol(argv[2], &end, 10);
    int method = argc > 3 ? method_from_name(argv[3]) : LOCKING_METHOD_KERNEL;
    if (*end != '\0' || times < 0 || method < 0) {
        fprintf(stderr, "usage: %s FILE N [mkdir|opencreate|kernel|fake]\n", argv[0]);
        return 2;
    }
    for (long i = 0; i < times; i++) {
        if (increment(file, method) != 0)
            return 1;
    }
    return 0;
}
