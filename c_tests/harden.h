/*
 * Helpers shared by the hardening tests (test_hostile.c, test_exhaustion.c),
 * on top of common.h:
 *   - the entry name of (ns, objname) computed as docs/FORMAT.md ("Entry
 *     names") documents it (short form only), so a test can plant things
 *     exactly where the library will look;
 *   - this machine's identity as docs/FORMAT.md's owner record shows it,
 *     and records built from it;
 *   - counting open descriptors (/proc/self/fd);
 *   - running a scenario in a forked child under a watchdog, so that a hang
 *     or a crash is reported as a failing check, not a stuck test;
 *   - snapshots of files and directories outside the lock directory, to
 *     prove they were not touched.
 */
#ifndef LOCKING_C_TESTS_HARDEN_H
#define LOCKING_C_TESTS_HARDEN_H

#include "common.h"

#include <sys/syscall.h>

/* ------------------------------------------------------------------ */
/* entry names (docs/FORMAT.md, "Entry names")                         */

static inline void h_enc(char *out, size_t cap, const char *in)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t o = strlen(out);
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        unsigned char b = *p;
        bool keep = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
                    (b >= '0' && b <= '9') || b == '-' || b == '_' || b == '.';
        if (o + 4 >= cap)
            FATAL("entry name too long for the test's buffer");
        if (keep) {
            out[o++] = (char)b;
        } else {
            out[o++] = '%';
            out[o++] = hexd[b >> 4];
            out[o++] = hexd[b & 15];
        }
    }
    out[o] = '\0';
}

/* Writes `l-<enc(ns)>=<enc(obj)>` into `out` and returns it. The tests only
 * use names short enough for the short form (<= 200 bytes), and insist on
 * it. */
static inline const char *h_entry_name(char *out, size_t cap, const char *ns,
                                       const char *obj)
{
    snprintf(out, cap, "l-");
    h_enc(out, cap, ns ? ns : "");
    size_t n = strlen(out);
    if (n + 1 >= cap)
        FATAL("entry name too long");
    out[n] = '=';
    out[n + 1] = '\0';
    h_enc(out, cap, obj);
    if (strlen(out) > 200)
        FATAL("entry name %s is longer than the short form allows", out);
    return out;
}

/* ------------------------------------------------------------------ */
/* identity and owner records (docs/FORMAT.md, "Owner record")         */

typedef struct {
    char machine[128];
    char boot[128];
    char host[300];
    unsigned long long pidns;
    bool have_machine;
} h_identity;

static inline bool h_read_trimmed(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    if (n <= 0)
        return false;
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return n > 0;
}

static inline h_identity h_me(void)
{
    h_identity id;
    memset(&id, 0, sizeof id);
    id.have_machine = h_read_trimmed("/etc/machine-id", id.machine, sizeof id.machine);
    if (!id.have_machine)
        snprintf(id.machine, sizeof id.machine, "-");
    if (!h_read_trimmed("/proc/sys/kernel/random/boot_id", id.boot, sizeof id.boot))
        snprintf(id.boot, sizeof id.boot, "-");
    char h[256] = { 0 };
    if (gethostname(h, sizeof h - 1) != 0 || h[0] == '\0')
        snprintf(h, sizeof h, "-");
    size_t o = 0;
    for (size_t i = 0; h[i] && o + 1 < sizeof id.host; i++)
        if ((unsigned char)h[i] >= 0x20 && h[i] != 0x7f)
            id.host[o++] = h[i];
    id.host[o] = '\0';
    struct stat st;
    id.pidns = stat("/proc/self/ns/pid", &st) == 0 ? (unsigned long long)st.st_ino : 0;
    return id;
}

/* A PID that belonged to a child which has exited and been reaped, and
 * that child's start time: a holder that is really dead. */
static inline pid_t h_dead_pid(unsigned long long *start)
{
    t_pipe go = t_pipe_new();
    pid_t pid = fork();
    if (pid < 0)
        FATAL("fork");
    if (pid == 0) {
        char c;
        while (read(go.r, &c, 1) < 0 && errno == EINTR) {
        }
        _exit(0);
    }
    *start = t_start_time(pid);
    t_send(&go, 'x');
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    t_pipe_close(&go);
    return pid;
}

/* An owner record as docs/FORMAT.md shows it. Any field may be given as a
 * raw string; NULL means this process's / machine's value. */
typedef struct {
    const char *method, *token, *pid, *start, *pidns, *boot, *machine, *host,
        *time, *extra_line;
    bool no_end;
} h_rec_fields;

static inline char *h_record(const h_rec_fields *f)
{
    h_identity me = h_me();
    char pid[32], start[32], pidns[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    snprintf(start, sizeof start, "%llu", t_start_time(getpid()));
    snprintf(pidns, sizeof pidns, "%llu", me.pidns);
    char *out = NULL;
    int n = asprintf(&out,
                     "liblocking-owner 1\nmethod=%s\ntoken=%s\npid=%s\nstart=%s\n"
                     "pidns=%s\nboot=%s\nmachine=%s\nhost=%s\ntime=%s\n%s%s%s",
                     f->method ? f->method : "mkdir",
                     f->token ? f->token : "0123456789abcdef0123456789abcdef",
                     f->pid ? f->pid : pid, f->start ? f->start : start,
                     f->pidns ? f->pidns : pidns, f->boot ? f->boot : me.boot,
                     f->machine ? f->machine : me.machine,
                     f->host ? f->host : me.host,
                     f->time ? f->time : "1700000000.000000",
                     f->extra_line ? f->extra_line : "",
                     f->extra_line ? "\n" : "", f->no_end ? "" : "end\n");
    if (n < 0)
        FATAL("asprintf");
    return out;
}

/* ------------------------------------------------------------------ */
/* descriptors                                                         */

/* The library keeps a few idle inotify instances for reuse by later waits
 * (a bounded cache, core/src/wait.rs): those are not leaks, so they are counted
 * apart. At most this many may be kept. */
#define H_MAX_IDLE_INOTIFY 16

static inline bool h_fd_is_inotify(const char *name)
{
    char link[64], target[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", atoi(name));
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0)
        return false;
    target[n] = '\0';
    return strcmp(target, "anon_inode:inotify") == 0;
}

/* Open descriptors of this process, without the one opendir uses and
 * without inotify instances (counted by h_count_inotify). */
static inline int h_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && !h_fd_is_inotify(e->d_name))
            n++;
    closedir(d);
    return n - 1;
}

/* Open inotify instances; *all_cloexec tells whether each is close-on-exec. */
static inline int h_count_inotify(bool *all_cloexec)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    *all_cloexec = true;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.' && h_fd_is_inotify(e->d_name)) {
            n++;
            int fl = fcntl(atoi(e->d_name), F_GETFD);
            if (fl < 0 || !(fl & FD_CLOEXEC))
                *all_cloexec = false;
        }
    }
    closedir(d);
    return n;
}

/* CHECK that no descriptor leaked since `before` = h_count_fds(), and
 * that the inotify instances the library keeps are few and close-on-exec. */
#define H_NO_FD_LEAK(before) h_no_fd_leak_at((before), __FILE__, __LINE__)
static inline void h_no_fd_leak_at(int before, const char *file, int line)
{
    int now = h_count_fds();
    t_report(now == before, file, line, "no descriptor leaked (%d before, %d after)",
             before, now);
    bool cloexec = true;
    int ino = h_count_inotify(&cloexec);
    t_report(ino <= H_MAX_IDLE_INOTIFY && cloexec, file, line,
             "%d idle inotify instances kept by the library (at most %d, all "
             "close-on-exec: %s)",
             ino, H_MAX_IDLE_INOTIFY, cloexec ? "yes" : "NO");
}

/* ------------------------------------------------------------------ */
/* bounded scenarios                                                   */

/* Runs fn(arg) in a forked child; the child's checks count through its exit
 * status. A child still running after `limit_s` is killed and reported as
 * hung; one killed by a signal is reported as crashed. */
static inline bool h_run_bounded(const char *what, void (*fn)(void *), void *arg,
                                 double limit_s)
{
    pid_t pid = t_fork();
    if (pid == 0) {
        fn(arg);
        t_child_exit();
    }
    int st = 0;
    pid_t r = t_wait_until(pid, t_now() + limit_s, &st);
    if (r < 0)
        return CHECK(false, "%s: waitpid: %s", what, strerror(errno));
    if (r == 0) {
        t_kill_reap(pid);
        return CHECK(false, "%s: still running after %.0f s: a hang (killed)",
                     what, limit_s);
    }
    if (WIFSIGNALED(st))
        return CHECK(false, "%s: crashed (signal %d)", what, WTERMSIG(st));
    return CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                 "%s: scenario finished, its checks %s", what,
                 WEXITSTATUS(st) == 0 ? "passed" : "FAILED (see above)");
}

/* ------------------------------------------------------------------ */
/* snapshots of things outside the lock directory                      */

typedef struct {
    char path[PATH_MAX];
    bool exists;
    struct stat st;
    char content[512];
    ssize_t len;
    int entries; /* directories: number of entries */
} h_snap;

static inline h_snap h_snapshot(const char *path)
{
    h_snap s;
    memset(&s, 0, sizeof s);
    snprintf(s.path, sizeof s.path, "%s", path);
    s.exists = lstat(path, &s.st) == 0;
    s.len = -1;
    s.entries = -1;
    if (!s.exists)
        return s;
    if (S_ISREG(s.st.st_mode)) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            s.len = read(fd, s.content, sizeof s.content);
            close(fd);
        }
    } else if (S_ISDIR(s.st.st_mode)) {
        s.entries = t_count_entries(path);
    }
    return s;
}

static inline bool h_same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* CHECK that nothing about the object at snap.path changed: existence,
 * inode, type and mode, size, content, entry count, mtime and ctime. */
#define H_UNTOUCHED(snap, ...)                                                \
    h_untouched_at(&(snap), __FILE__, __LINE__, __VA_ARGS__)
static inline bool h_untouched_at(const h_snap *before, const char *file, int line,
                                  const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline bool h_untouched_at(const h_snap *before, const char *file, int line,
                                  const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    h_snap now = h_snapshot(before->path);
    const char *diff = NULL;
    if (now.exists != before->exists)
        diff = now.exists ? "it was created" : "it was deleted";
    else if (!now.exists)
        diff = NULL;
    else if (now.st.st_ino != before->st.st_ino || now.st.st_dev != before->st.st_dev)
        diff = "it was replaced (another inode)";
    else if (now.st.st_mode != before->st.st_mode)
        diff = "its mode changed";
    else if (now.st.st_size != before->st.st_size)
        diff = "its size changed";
    else if (now.len != before->len ||
             (now.len > 0 && memcmp(now.content, before->content, (size_t)now.len) != 0))
        diff = "its content changed";
    else if (now.entries != before->entries)
        diff = "its number of entries changed";
    else if (!h_same_time(&now.st.st_mtim, &before->st.st_mtim))
        diff = "its mtime changed";
    else if (!h_same_time(&now.st.st_ctim, &before->st.st_ctim))
        diff = "its ctime changed";
    return t_report(diff == NULL, file, line, "%s: %s %s", what, before->path,
                    diff ? diff : "untouched");
}

/* Sets a path's times (not following a symlink) to `ago` seconds ago. */
static inline void h_age(const char *path, double ago)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct timespec ts[2];
    ts[0].tv_sec = now.tv_sec - (time_t)ago;
    ts[0].tv_nsec = now.tv_nsec;
    ts[1] = ts[0];
    if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0)
        FATAL("utimensat %s", path);
}

/* Removes a directory tree (no symlinks followed). Best effort. */
static inline void h_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d != NULL) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                char *sub = NULL;
                if (asprintf(&sub, "%s/%s", path, e->d_name) < 0)
                    FATAL("asprintf");
                h_rm_rf(sub);
                free(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* The current umask, read without changing it (/proc/self/status). */
static inline int h_umask_now(void)
{
    char v[32];
    return t_self_status("Umask", v, sizeof v) ? (int)strtol(v, NULL, 8) : -1;
}

/* Sets the umask without calling umask() (which the tests interpose to
 * catch the library calling it). */
static inline void h_set_umask(mode_t m)
{
    syscall(SYS_umask, (unsigned)m);
}

#endif /* LOCKING_C_TESTS_HARDEN_H */
