// Tests of include/locking.hpp, the C++ wrapper; run by tests/cpp.rs with a
// scratch directory as argv[1]. Prints one "ok"/"FAIL" line per check and
// exits non-zero if any failed.

#include <locking.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <initializer_list>
#include <limits>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <type_traits>
#include <unistd.h>
#include <utility>
#include <vector>

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

// Movable, not copyable, and moving never throws.
template <class T>
struct move_only {
    static const bool value = !std::is_copy_constructible<T>::value &&
                              !std::is_copy_assignable<T>::value &&
                              std::is_nothrow_move_constructible<T>::value &&
                              std::is_nothrow_move_assignable<T>::value &&
                              std::is_nothrow_destructible<T>::value;
};
static_assert(move_only<locking::locker>::value, "locker is move-only");
static_assert(move_only<locking::lock_guard>::value, "lock_guard is move-only");
static_assert(move_only<locking::locked_file>::value, "locked_file is move-only");
static_assert(std::is_error_code_enum<locking::errc>::value, "errc is an error code enum");
static_assert(std::is_base_of<std::system_error, locking::error>::value, "error is a system_error");
static_assert(std::is_base_of<locking::error, locking::locker_failed>::value, "");
static_assert(std::is_base_of<locking::error, locking::cannot_get_lock>::value, "");
static_assert(std::is_base_of<locking::error, locking::lock_lost>::value, "");
static_assert(static_cast<int>(locking::method::kernel) == LOCKING_METHOD_KERNEL, "");
static_assert(static_cast<int>(locking::errc::lock_lost) == LOCKING_E_LOCK_LOST, "");

// Runs f; true if it throws an E (or a subclass) whose code() equals want
// (a locking::errc, compared exactly, or a std::errc, compared as a
// condition) and whose what() contains what_contains.
template <class E, class W, class F>
static bool throws(F f, W want, const char *what_contains = "")
{
    try {
        f();
    } catch (const E &e) {
        if (e.code() != want)
            std::printf("     threw %s code %d: %s\n", e.code().category().name(),
                        e.code().value(), e.what());
        return e.code() == want && std::strstr(e.what(), what_contains) != nullptr;
    } catch (const std::exception &e) {
        std::printf("     threw another exception: %s\n", e.what());
        return false;
    }
    std::printf("     did not throw\n");
    return false;
}

static locking::lock_guard take(locking::locker &l) { return locking::lock_guard(l); }

static std::string per_method(const std::string &dir, locking::method m)
{
    // the kernel method keeps its lock file: one directory per method
    return dir + "/" + std::to_string(static_cast<int>(m));
}

static void exclusion(const std::string &top)
{
    for (locking::method m : {locking::method::kernel, locking::method::mkdir,
                              locking::method::opencreate}) {
        std::printf("-- exclusion, method %d\n", static_cast<int>(m));
        std::string dir = per_method(top, m);
        locking::options now(0, locking::never_expire, m);
        locking::locker a("job", dir, "t", now), b("job", dir, "t", now);
        {
            locking::lock_guard g(a);
            CHECK(g.owns_lock() && a.holds() && !b.holds());
            CHECK(throws<locking::locker_failed>([&] { b.lock(); },
                                                 locking::errc::locker_failed, "job"));
            std::error_code ec;
            CHECK(!b.lock(ec) && ec == locking::errc::locker_failed);
            locking::lock_guard gb(b, ec);
            CHECK(!gb.owns_lock() && ec == locking::errc::locker_failed);
            // the C API's codes and messages come through
            CHECK(ec.category() == locking::category());
            CHECK(ec.message() == locking_strerror(LOCKING_E_LOCKER_FAILED));
        }
        CHECK(!a.holds());
        {
            std::error_code ec;
            locking::lock_guard gb(b, ec);
            CHECK(gb.owns_lock() && !ec);
            CHECK(throws<locking::locker_failed>([&] { a.lock(); },
                                                 locking::errc::locker_failed));
        }
        // a process excludes another
        locking::lock_guard g(a);
        pid_t pid = fork();
        if (pid == 0) {
            locking::locker c("job", dir, "t", now);
            std::error_code ec;
            c.lock(ec);
            _exit(ec == locking::errc::locker_failed ? 0 : 1);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}

static void moving(const std::string &dir)
{
    std::printf("-- moving guards and lockers\n");
    locking::options now(0);
    locking::locker a("a", dir, "", now), probe_a("a", dir, "", now);
    locking::locker c("c", dir, "", now), probe_c("c", dir, "", now);
    std::error_code ec;

    locking::lock_guard g1 = take(a);  // returned from a function
    locking::lock_guard g2(std::move(g1));
    CHECK(!g1.owns_lock() && g2.owns_lock() && g2.get() == &a);
    CHECK(!probe_a.lock(ec));  // still held: moving did not unlock

    locking::lock_guard g3(c);
    g2 = std::move(g3);  // releases a, takes over c
    CHECK(g2.get() == &c && !g3.owns_lock());
    CHECK(probe_a.lock(ec) && probe_a.unlock(ec));
    CHECK(!probe_c.lock(ec));
    g2.unlock();
    CHECK(!g2.owns_lock());
    CHECK(probe_c.lock(ec) && probe_c.unlock(ec));

    // lockers move too, with their lock
    a.lock();
    locking::locker moved(std::move(a));
    CHECK(!a && moved && moved.holds());
    CHECK(!probe_a.lock(ec));
    std::vector<locking::locker> all;
    all.push_back(std::move(moved));
    all.emplace_back("v", dir, "", now);
    CHECK(all[0].holds() && !all[1].holds());
    all.clear();  // destroying a held locker releases it
    CHECK(probe_a.lock(ec) && probe_a.unlock(ec));
}

static void misuse(const std::string &dir)
{
    std::printf("-- errors\n");
    locking::locker a("m", dir);
    CHECK(throws<locking::error>([&] { a.unlock(); }, locking::errc::not_locked));
    CHECK(a.check() == locking::errc::not_locked);
    a.lock();
    CHECK(throws<locking::error>([&] { a.lock(); }, locking::errc::already_locked));
    CHECK(!a.check());
    a.refresh();
    a.unlock();

    CHECK(throws<locking::error>([&] { locking::locker x("", dir); },
                                 locking::errc::invalid_argument));
    CHECK(throws<locking::error>([&] { locking::locker x(std::string("a\0b", 3), dir); },
                                 locking::errc::invalid_argument, "NUL"));
    double nan = std::numeric_limits<double>::quiet_NaN();
    CHECK(throws<locking::error>([&] { locking::locker x("n", dir, "", nan); },
                                 locking::errc::invalid_argument));
    std::error_code ec;
    locking::locker bad("x", dir, "", locking::options(0, 0, static_cast<locking::method>(99)), ec);
    CHECK(ec == locking::errc::invalid_argument && !bad);

    // an OS failure carries its errno, as std::system_category()
    std::string file = dir + "/plain-file";
    int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    ::close(fd);
    try {
        locking::locker x("x", file + "/sub");
        CHECK(!"no exception for a lockdir below a regular file");
    } catch (const locking::error &e) {
        CHECK(e.code() == std::errc::not_a_directory);
        CHECK(e.code().category() == std::system_category());
        CHECK(std::strstr(e.what(), "plain-file") != nullptr);
    }
    locking::locker y("x", file + "/sub", "", locking::options(), ec);
    CHECK(ec == std::errc::not_a_directory);
}

static void lost(const std::string &top)
{
    for (locking::method m : {locking::method::kernel, locking::method::mkdir,
                              locking::method::opencreate}) {
        std::printf("-- lock lost, method %d\n", static_cast<int>(m));
        std::string dir = per_method(top, m);
        locking::locker holder("l", dir, "", locking::options(0, 0, m));
        // waits until the holder's lock is older than 0.2 s, then breaks it
        locking::locker breaker("l", dir, "", locking::options(30, 0.2, m));
        {
            locking::lock_guard g(holder);
            breaker.lock();
            CHECK(!holder.holds());
            CHECK(holder.check() == locking::errc::lock_lost);
            CHECK(throws<locking::lock_lost>([&] { g.unlock(); }, locking::errc::lock_lost));
        }
        CHECK(breaker.holds());  // the loser's release left it alone
        breaker.unlock();
        // a guard whose lock is lost: its destructor must not throw (that
        // would end the program in std::terminate)
        {
            locking::lock_guard g(holder);
            breaker.lock();
        }
        CHECK(breaker.holds());
        breaker.unlock();
    }
}

static std::string slurp(int fd)
{
    std::string s;
    char buf[256];
    ssize_t n;
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, buf, sizeof buf)) > 0)
        s.append(buf, static_cast<size_t>(n));
    return s;
}

static void files(const std::string &dir)
{
    std::printf("-- locked_file\n");
    std::string path = dir + "/data.txt";
    locking::options now(0);
    {
        locking::locked_file f(path, now);
        CHECK(f.is_open() && f.fd() >= 0);
        CHECK(write(f.fd(), "hello", 5) == 5);
        CHECK((fcntl(f.fd(), F_GETFD) & FD_CLOEXEC) != 0);
        mkdir((dir + "/d").c_str(), 0777);
        CHECK(throws<locking::cannot_get_lock>(
            [&] { locking::locked_file g(dir + "/d/../data.txt", now); },
            locking::errc::cannot_get_lock));
        std::error_code ec;
        locking::locked_file g(path, now, "", ec);
        CHECK(ec == locking::errc::cannot_get_lock && !g.is_open());

        locking::locked_file moved(std::move(f));
        CHECK(!f.is_open() && moved.is_open());
        std::vector<locking::locked_file> v;
        v.push_back(std::move(moved));
        CHECK(slurp(v[0].fd()) == "hello");
        v[0].close();
        CHECK(!v[0].is_open());
        v[0].close();  // closing twice does nothing
        locking::locked_file again(path, now);  // free again
        CHECK(slurp(again.fd()) == "hello");
    }
    // the destructor released it
    locking::locked_file last(path, now);
    std::error_code ec;
    CHECK(last.close(ec) && !ec);
    CHECK(throws<locking::error>([&] { locking::locked_file z(dir + "/no/such/dir/f", now); },
                                 std::errc::no_such_file_or_directory));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    CHECK(locking::version() == locking_version());
    exclusion(dir + "/exclusion");
    moving(dir + "/moving");
    misuse(dir + "/misuse");
    lost(dir + "/lost");
    files(dir);
    std::printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
