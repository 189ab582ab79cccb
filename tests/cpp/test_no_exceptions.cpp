// Tests of locking.hpp in a program built with -fno-exceptions: every
// operation through its std::error_code overload, the standard lock types
// on the happy path, and the documented std::abort() of the members that
// would otherwise throw. Run by tests/cpp.rs (C++11 and C++20) with a
// scratch directory as argv[1]. One "ok"/"FAIL" line per check; exits
// non-zero if any failed.

#ifdef __cpp_exceptions
#error "build this test with -fno-exceptions"
#endif

#include "cpp_test_util.hpp"

#include <initializer_list>
#include <mutex>
#if __cplusplus >= 201402L
#include <shared_mutex>
#endif

#ifndef LOCKING_HPP_NO_EXCEPTIONS
#error "locking.hpp did not notice that exceptions are disabled"
#endif

namespace chr = std::chrono;
typedef chr::milliseconds ms;
typedef chr::steady_clock steady;
typedef locking::locker locker;

static std::string pid_line(pid_t pid) { return "pid=" + std::to_string(pid) + "\n"; }

static void error_codes(const std::string &top, locking::method m)
{
    std::printf("-- error_code overloads, method %s\n", method_name(m).c_str());
    std::string dir = top + "/" + method_name(m);
    std::error_code ec;
    locker l("e", dir, "", locking::options(0.1, 0, m), ec);
    CHECK(!ec && l);
    locker bad("", dir, "", locking::options(), ec);
    CHECK(ec == locking::errc::invalid_argument && !bad);
    locker nul(std::string("a\0b", 3), dir, "", locking::options(), ec);
    CHECK(ec == locking::errc::invalid_argument && !nul);

    // free
    CHECK(l.holder(ec) == "" && !ec);
    CHECK(l.fencing_token(ec) == 0 && ec == locking::errc::not_locked);
    CHECK(!l.holds(ec) && !ec);
    CHECK(l.check() == locking::errc::not_locked);
    CHECK(!l.unlock(ec) && ec == locking::errc::not_locked);
    CHECK(!l.unlock_shared(ec) && ec == locking::errc::not_locked);
    CHECK(!l.refresh(ec) && ec == locking::errc::not_locked);

    // exclusive, every way
    CHECK(l.try_lock(ec) && !ec);
    std::uint64_t t1 = l.fencing_token(ec);
    CHECK(t1 >= 1 && !ec);
    std::string h = l.holder(ec);
    CHECK(!ec && contains(h, "mode=exclusive\n") && contains(h, pid_line(getpid())));
    CHECK(!l.try_lock(ec) && ec == locking::errc::already_locked);
    CHECK(!l.try_lock_shared(ec) && ec == locking::errc::already_locked);
    CHECK(!l.lock(ec) && ec == locking::errc::already_locked);
    CHECK(l.refresh(ec) && !ec);
    CHECK(l.holds(ec) && !ec);
    CHECK(!l.check());
    CHECK(l.unlock(ec) && !ec);
    CHECK(l.try_lock_for(ms(100), ec) && !ec);
    std::uint64_t t2 = l.fencing_token(ec);
    CHECK(t2 > t1 && !ec);
    CHECK(l.unlock(ec) && !ec);
    CHECK(l.try_lock_until(steady::now() + ms(100), ec) && !ec);
    CHECK(l.unlock(ec) && !ec);
    CHECK(l.lock(ec) && !ec);
    CHECK(l.fencing_token(ec) > t2);
    CHECK(l.unlock(ec) && !ec);

    // shared, every way
    locker other("e", dir, "", locking::options(0, 0, m), ec);
    CHECK(!ec);
    CHECK(l.lock_shared(ec) && !ec);
    CHECK(other.try_lock_shared(ec) && !ec);
    h = l.holder(ec);
    CHECK(!ec && h.find("mode=shared\n") != h.rfind("mode=shared\n"));
    CHECK(l.fencing_token(ec) < other.fencing_token(ec) && !ec);
    CHECK(!l.try_lock_shared(ec) && ec == locking::errc::already_locked);
    CHECK(l.unlock_shared(ec) && !ec);
    CHECK(l.try_lock_shared_for(ms(100), ec) && !ec);
    CHECK(l.unlock_shared(ec) && !ec);
    CHECK(l.try_lock_shared_until(chr::system_clock::now() + ms(100), ec) && !ec);
    CHECK(l.unlock_shared(ec) && !ec);
    CHECK(other.unlock_shared(ec) && !ec);

    // busy: a child holds the lock exclusively
    child c = hold_in_child(dir, "e", m, LOCKING_EXCLUSIVE);
    std::uint64_t child_token = 0;
    CHECK(child_holds(c, child_token));
    ec = locking::errc::internal;
    CHECK(!l.try_lock(ec) && !ec);
    ec = locking::errc::internal;
    steady::time_point start = steady::now();
    CHECK(!l.try_lock_for(ms(100), ec) && !ec);
    CHECK(seconds_since(start) >= 0.09);
    ec = locking::errc::internal;
    CHECK(!l.try_lock_until(steady::now() + ms(50), ec) && !ec);
    ec = locking::errc::internal;
    CHECK(!l.try_lock_for(chr::seconds(-1), ec) && !ec);  // tries once, never forever
    ec = locking::errc::internal;
    CHECK(!l.try_lock_shared(ec) && !ec);
    ec = locking::errc::internal;
    CHECK(!l.try_lock_shared_for(ms(50), ec) && !ec);
    ec = locking::errc::internal;
    CHECK(!l.try_lock_shared_until(steady::now() + ms(50), ec) && !ec);
    CHECK(!l.lock(ec) && ec == locking::errc::locker_failed);
    CHECK(!l.lock_shared(ec) && ec == locking::errc::locker_failed);
    {
        locking::lock_guard g(l, ec);
        CHECK(!g.owns_lock() && ec == locking::errc::locker_failed);
    }
    h = l.holder(ec);
    CHECK(!ec && contains(h, pid_line(c.pid)) && contains(h, "state=alive\n"));
    CHECK(seconds_since(start) < 10);
    CHECK(child_releases(c));

    {
        locking::lock_guard g(l, ec);
        CHECK(g.owns_lock() && !ec && l.fencing_token(ec) > child_token);
        CHECK(g.unlock(ec) && !ec && !g.owns_lock());
        CHECK(g.unlock(ec) && !ec);  // owns nothing: nothing to do
    }

    // locked_file
    std::string path = dir + "/data";
    locking::locked_file f(path, locking::options(0, 0, m), "", ec);
    CHECK(f.is_open() && !ec);
    locking::locked_file g(path, locking::options(0, 0, m), "", ec);
    CHECK(!g.is_open() && ec == locking::errc::cannot_get_lock);
    CHECK(f.close(ec) && !ec && !f.is_open());
    locking::locked_file n(dir + "/no/such/dir/f", locking::options(0, 0, m), "", ec);
    CHECK(!n.is_open() && ec == std::errc::no_such_file_or_directory);
}

// The standard lock types work without exceptions too (on success).
static void std_types(const std::string &top, locking::method m)
{
    std::printf("-- standard lock types, method %s\n", method_name(m).c_str());
    std::string dir = top + "/" + method_name(m);
    std::error_code ec;
    locker a("a", dir, "", locking::options(0, 0, m), ec), b("b", dir, "", locking::options(0, 0, m), ec);
    locker probe("a", dir, "", locking::options(0, 0, m), ec);
    CHECK(!ec);
    {
        std::lock_guard<locker> g(a);
        CHECK(a.holds(ec) && !probe.try_lock(ec));
    }
    {
        std::unique_lock<locker> u(a, std::try_to_lock);
        CHECK(u.owns_lock());
        std::unique_lock<locker> v(probe, std::try_to_lock);
        CHECK(!v.owns_lock());
        std::unique_lock<locker> t(probe, ms(50));
        CHECK(!t.owns_lock());
    }
    {
        std::lock(a, b);
        std::lock_guard<locker> ga(a, std::adopt_lock), gb(b, std::adopt_lock);
        CHECK(a.holds(ec) && b.holds(ec));
    }
#if __cplusplus >= 201402L
    {
        std::shared_lock<locker> s(a), t(probe, std::try_to_lock);
        CHECK(s.owns_lock() && t.owns_lock());
    }
#endif
#if __cplusplus >= 201703L
    {
        std::scoped_lock g(a, b);
        CHECK(a.holds(ec) && b.holds(ec));
    }
#endif
    CHECK(!a.holds(ec) && !b.holds(ec) && !ec);
}

// Runs f in a child whose stderr is a pipe; true if it died of SIGABRT
// having said every one of `words` on stderr.
template <class F>
static bool aborts_saying(F f, std::initializer_list<const char *> words)
{
    child c = spawn([&](channel ch) -> int {
        dup2(ch.out, 2);
        f();
        return 0;
    });
    std::string said;
    char byte = 0;
    while (read_all(c.from, &byte, 1))
        said += byte;
    int status = reap(c);
    std::printf("     the child said: %s", said.c_str());
    bool ok = status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    if (!ok)
        std::printf("     (it did not die of SIGABRT)\n");
    for (const char *w : words)
        if (!contains(said, w)) {
            std::printf("     (it did not say \"%s\")\n", w);
            ok = false;
        }
    return ok;
}

static void aborting(const std::string &top, locking::method m)
{
    std::printf("-- members that would throw abort, method %s\n", method_name(m).c_str());
    std::string dir = top + "/" + method_name(m);
    std::error_code ec;
    locker mine("x", dir, "", locking::options(0, 0, m), ec);
    CHECK(mine.lock(ec));
    CHECK(aborts_saying(
        [&] {
            locker l("x", dir, "", locking::options(0, 0, m));
            l.lock();
        },
        {"locker_lock", "aborting"}));
    CHECK(aborts_saying(
        [&] {
            locker l("x", dir, "", locking::options(0, 0, m));
            std::lock_guard<locker> g(l);
        },
        {"locker_lock", "aborting"}));
    CHECK(aborts_saying(
        [&] {
            locker l("y", dir, "", locking::options(0, 0, m));
            std::lock_guard<locker> g(l);
            std::error_code e;
            l.unlock(e);
        },  // the guard's unlock() finds it not locked
        {"locker_unlock", "aborting"}));
    CHECK(aborts_saying([&] { locker l("", dir); }, {"locker_new", "aborting"}));
    CHECK(mine.unlock(ec) && !ec);

    // locking::lock_guard's destructor ignores a lost lock: no abort
    locker holder("l", dir, "", locking::options(0, 0, m), ec);
    locker breaker("l", dir, "", locking::options(hang_ms / 1000.0, 0.2, m), ec);
    {
        locking::lock_guard g(holder, ec);
        CHECK(g.owns_lock());
        CHECK(breaker.lock(ec) && !ec);  // breaks the holder's lock once 0.2 s old
        CHECK(holder.check() == locking::errc::lock_lost);
    }
    CHECK(breaker.holds(ec) && breaker.unlock(ec));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    std::printf("-- standard %ld, no exceptions\n", static_cast<long>(__cplusplus));
    for (locking::method m : real_methods) {
        error_codes(dir + "/codes", m);
        std_types(dir + "/std", m);
        aborting(dir + "/abort", m);
    }
    std::printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
