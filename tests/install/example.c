/*
 * The program tests/install.rs builds against an installed liblocking with
 * nothing but `cc example.c $(pkg-config --cflags --libs locking)` (and
 * `--static`). It takes and releases a lock and a locked file in the
 * directory argv[1], checks exclusion, prints the library version, and the
 * liblocking objects mapped into the process (to tell a static from a
 * dynamic link).
 */
#include <locking.h>

#include <stdio.h>
#include <string.h>

static int fail(const char *what, int rc)
{
    printf("FAIL %s: %d %s (%s)\n", what, rc, locking_strerror(rc), locking_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    char path[4096];
    Locker *a = NULL, *b = NULL;
    int rc, fd;
    FILE *maps;
    char line[4096];

    if (argc != 2) {
        fprintf(stderr, "usage: example DIR\n");
        return 2;
    }
    if ((rc = locker_new("installed", argv[1], "test", 0.0, LOCKING_NEVER_EXPIRE,
                         LOCKING_METHOD_KERNEL, &a)) != LOCKING_OK)
        return fail("locker_new a", rc);
    if ((rc = locker_new("installed", argv[1], "test", 0.0, LOCKING_NEVER_EXPIRE,
                         LOCKING_METHOD_KERNEL, &b)) != LOCKING_OK)
        return fail("locker_new b", rc);
    if ((rc = locker_lock(a)) != LOCKING_OK)
        return fail("locker_lock a", rc);
    if ((rc = locker_lock(b)) != LOCKING_E_LOCKER_FAILED)
        return fail("locker_lock b while a holds", rc);
    if ((rc = locker_unlock(a)) != LOCKING_OK)
        return fail("locker_unlock a", rc);
    if ((rc = locker_lock(b)) != LOCKING_OK)
        return fail("locker_lock b after a", rc);
    locker_free(b);
    locker_free(a);

    snprintf(path, sizeof path, "%s/file.txt", argv[1]);
    fd = open_locked_fd(path, 0.0, NULL, LOCKING_NEVER_EXPIRE, LOCKING_METHOD_MKDIR);
    if (fd < 0)
        return fail("open_locked_fd", fd);
    rc = open_locked_fd(path, 0.0, NULL, LOCKING_NEVER_EXPIRE, LOCKING_METHOD_MKDIR);
    if (rc != LOCKING_E_CANNOT_GET_LOCK)
        return fail("open_locked_fd while held", rc);
    if ((rc = close_locked_fd(fd)) != LOCKING_OK)
        return fail("close_locked_fd", rc);

    printf("version %s\n", locking_version());
    maps = fopen("/proc/self/maps", "r");
    if (maps != NULL) {
        while (fgets(line, sizeof line, maps) != NULL) {
            char *p = strchr(line, '/');
            if (p != NULL && strstr(p, "liblocking") != NULL)
                printf("mapped %s", p);
        }
        fclose(maps);
    }
    printf("ok\n");
    return 0;
}
