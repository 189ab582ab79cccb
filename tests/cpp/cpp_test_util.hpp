// Helpers shared by the C++ test programs (tests/cpp/*.cpp): one "ok"/"FAIL"
// line per check, child processes that talk to the parent through pipes, and
// waits bounded by a generous limit so that a hang becomes a failure. Builds
// with and without exceptions.

#ifndef CPP_TEST_UTIL_HPP
#define CPP_TEST_UTIL_HPP

#include <locking.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            std::printf("ok   %s\n", #cond);                                         \
        } else {                                                                     \
            std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
            ++failures;                                                              \
        }                                                                            \
    } while (0)

// The longest any single wait may take before it counts as a hang.
static const int hang_ms = 20000;

static const locking::method real_methods[] = {locking::method::kernel, locking::method::mkdir,
                                               locking::method::opencreate};

inline std::string method_name(locking::method m)
{
    switch (m) {
    case locking::method::kernel:
        return "kernel";
    case locking::method::mkdir:
        return "mkdir";
    case locking::method::opencreate:
        return "opencreate";
    default:
        return "method " + std::to_string(static_cast<int>(m));
    }
}

inline double seconds_since(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// ---- pipes ---------------------------------------------------------------

inline bool write_all(int fd, const void *p, size_t n)
{
    const char *c = static_cast<const char *>(p);
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

// Reads exactly n bytes, waiting at most hang_ms for each.
inline bool read_all(int fd, void *p, size_t n, int limit_ms = hang_ms)
{
    char *c = static_cast<char *>(p);
    while (n > 0) {
        struct pollfd pfd;
        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        int r = poll(&pfd, 1, limit_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t got = read(fd, c, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        c += got;
        n -= static_cast<size_t>(got);
    }
    return true;
}

inline bool send_byte(int fd, char c) { return write_all(fd, &c, 1); }

inline bool expect_byte(int fd, char want, int limit_ms = hang_ms)
{
    char c = 0;
    if (!read_all(fd, &c, 1, limit_ms))
        return false;
    if (c != want)
        std::printf("     got '%c', expected '%c'\n", c, want);
    return c == want;
}

inline bool send_u64(int fd, std::uint64_t v) { return write_all(fd, &v, sizeof v); }

inline bool recv_u64(int fd, std::uint64_t &v) { return read_all(fd, &v, sizeof v); }

// ---- child processes -----------------------------------------------------

// The child's ends of its two pipes.
struct channel {
    int in;   // reads what the parent sends
    int out;  // writes to the parent
};

// The parent's view of a child.
struct child {
    pid_t pid;
    int to;    // writes to the child
    int from;  // reads from the child
};

// Forks a child that runs f(channel) and exits with its result (0: passed).
// The child never returns into the caller's code (no destructors of the
// parent's objects run in it).
template <class F>
inline child spawn(F f)
{
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) != 0 || pipe2(up, O_CLOEXEC) != 0) {
        std::perror("pipe2");
        std::exit(2);
    }
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        std::perror("fork");
        std::exit(2);
    }
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        channel ch;
        ch.in = down[0];
        ch.out = up[1];
        int rc = f(ch);
        std::fflush(stdout);
        std::fflush(stderr);
        _exit(rc);
    }
    close(down[0]);
    close(up[1]);
    child c;
    c.pid = pid;
    c.to = down[1];
    c.from = up[0];
    return c;
}

// Waits (at most hang_ms, then kills it) for the child to end; returns its
// wait status, or -1 if it hung.
inline int reap(child &c)
{
    if (c.to >= 0)
        close(c.to);
    if (c.from >= 0)
        close(c.from);
    c.to = c.from = -1;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    int status = 0;
    for (;;) {
        pid_t r = waitpid(c.pid, &status, WNOHANG);
        if (r == c.pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (seconds_since(start) * 1000 > hang_ms) {
            kill(c.pid, SIGKILL);
            waitpid(c.pid, &status, 0);
            std::printf("     child %d hung: killed\n", static_cast<int>(c.pid));
            return -1;
        }
        usleep(2000);
    }
}

// True if the child ended with exit status 0.
inline bool passed(child &c)
{
    int status = reap(c);
    if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    if (status != -1 && WIFEXITED(status))
        std::printf("     child exited with status %d\n", WEXITSTATUS(status));
    else if (status != -1 && WIFSIGNALED(status))
        std::printf("     child killed by signal %d\n", WTERMSIG(status));
    return false;
}

// A child that holds (dir, "", name) in `mode` (LOCKING_EXCLUSIVE or
// LOCKING_SHARED) with method m. Protocol: the child sends 'h' and its
// fencing token when it holds the lock; on 'r' from the parent (or after
// hang_ms without it) it releases and sends 'u'.
inline child hold_in_child(const std::string &dir, const std::string &name, locking::method m,
                           int mode)
{
    return spawn([=](channel ch) -> int {
        std::error_code ec;
        locking::locker l(name, dir, "", locking::options(hang_ms / 1000.0, 0, m), ec);
        if (ec)
            return 10;
        bool got = mode == LOCKING_SHARED
                       ? l.try_lock_shared_for(std::chrono::milliseconds(hang_ms), ec)
                       : l.try_lock_for(std::chrono::milliseconds(hang_ms), ec);
        if (!got)
            return 11;
        std::uint64_t token = l.fencing_token(ec);
        if (ec || !send_byte(ch.out, 'h') || !send_u64(ch.out, token))
            return 12;
        expect_byte(ch.in, 'r');  // released after hang_ms at the latest
        if (!l.unlock(ec))
            return 13;
        send_byte(ch.out, 'u');
        return 0;
    });
}

// Starts hold_in_child and waits until it holds; token receives its fencing
// token.
inline bool child_holds(child &c, std::uint64_t &token)
{
    return expect_byte(c.from, 'h') && recv_u64(c.from, token);
}

// Tells a hold_in_child child to release, waits until it has, and reaps it.
inline bool child_releases(child &c)
{
    bool ok = send_byte(c.to, 'r') && expect_byte(c.from, 'u');
    return passed(c) && ok;
}

// The number of times `needle` occurs in `s`.
inline size_t count_of(const std::string &s, const std::string &needle)
{
    size_t n = 0;
    for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1))
        ++n;
    return n;
}

inline bool contains(const std::string &s, const std::string &needle)
{
    return s.find(needle) != std::string::npos;
}

#endif  // CPP_TEST_UTIL_HPP
