// Tests of locking::locker as a standard lock type: Lockable, TimedLockable
// and SharedTimedLockable, used through std::lock_guard, std::unique_lock,
// std::lock (C++11), std::shared_lock (C++14) and std::scoped_lock (C++17),
// plus fencing_token() and holder(). Run by tests/cpp.rs, compiled once per
// standard (C++11, 14, 17, 20), with a scratch directory as argv[1]. Each
// facility announces itself with a "-- facility NAME" line (tests/cpp.rs
// checks that every facility the standard has was run). One "ok"/"FAIL" line
// per check; exits non-zero if any failed.

#include "cpp_test_util.hpp"

#include <atomic>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <ratio>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
#if __cplusplus >= 201402L
#include <shared_mutex>
#endif

namespace chr = std::chrono;
typedef chr::milliseconds ms;
typedef chr::steady_clock steady;
typedef locking::locker locker;

// ---- compile-time: the members the standard's requirements name ----------

template <class T>
struct lockable_members {
    static T &t();
    static const bool value =
        std::is_same<decltype(t().lock()), void>::value &&
        std::is_same<decltype(t().unlock()), void>::value &&
        std::is_same<decltype(t().try_lock()), bool>::value &&
        std::is_same<decltype(t().try_lock_for(ms(1))), bool>::value &&
        std::is_same<decltype(t().try_lock_until(steady::now())), bool>::value &&
        std::is_same<decltype(t().lock_shared()), void>::value &&
        std::is_same<decltype(t().unlock_shared()), void>::value &&
        std::is_same<decltype(t().try_lock_shared()), bool>::value &&
        std::is_same<decltype(t().try_lock_shared_for(ms(1))), bool>::value &&
        std::is_same<decltype(t().try_lock_shared_until(steady::now())), bool>::value &&
        std::is_same<decltype(t().fencing_token()), std::uint64_t>::value &&
        std::is_same<decltype(t().holder()), std::string>::value;
};
static_assert(lockable_members<locker>::value, "locker has the members of SharedTimedLockable");
static_assert(std::is_nothrow_destructible<locker>::value, "");
static_assert(std::is_nothrow_destructible<locking::lock_guard>::value, "");

// A clock of the program's own, to show that try_lock_until takes any clock:
// tenths of a second, as a double, since the steady clock's epoch.
struct tenths_clock {
    typedef double rep;
    typedef std::ratio<1, 10> period;
    typedef chr::duration<rep, period> duration;
    typedef chr::time_point<tenths_clock> time_point;
    static constexpr bool is_steady = true;
    static time_point now()
    {
        return time_point(chr::duration_cast<duration>(steady::now().time_since_epoch()));
    }
};

static void facility(const char *name) { std::printf("-- facility %s\n", name); }

// Runs f; true if it throws an E (or a subclass) whose code() equals want.
template <class E, class W, class F>
static bool throws(F f, W want)
{
    try {
        f();
    } catch (const E &e) {
        if (e.code() != want)
            std::printf("     threw %s code %d: %s\n", e.code().category().name(),
                        e.code().value(), e.what());
        return e.code() == want;
    } catch (const std::exception &e) {
        std::printf("     threw another exception: %s\n", e.what());
        return false;
    }
    std::printf("     did not throw\n");
    return false;
}

static std::string pid_line(pid_t pid) { return "pid=" + std::to_string(pid) + "\n"; }

// The time a call took is at least `want` seconds (less a little for clock
// granularity) and not forever; prints it.
static bool took_about(double took, double want)
{
    std::printf("     took %.3f s (asked for %.3f s)\n", took, want);
    return took >= want * 0.95 - 0.002 && took < 10;
}

// ---- a child holds the lock exclusively ------------------------------------

static void busy_exclusive(const std::string &top, locking::method m)
{
    std::printf("-- a child holds the lock exclusively, method %s\n", method_name(m).c_str());
    std::string dir = top + "/" + method_name(m);
    // lock() and lock_shared() wait 0.1 s (the locker's timeout)
    locker l("x", dir, "", locking::options(0.1, 0, m));
    child c = hold_in_child(dir, "x", m, LOCKING_EXCLUSIVE);
    std::uint64_t child_token = 0;
    CHECK(child_holds(c, child_token));
    CHECK(child_token >= 1);
    std::error_code ec = locking::errc::internal;

    facility("Lockable");
    CHECK(!l.try_lock());
    CHECK(!l.try_lock(ec) && !ec);
    CHECK(throws<locking::locker_failed>([&] { l.lock(); }, locking::errc::locker_failed));
    CHECK(!l.lock(ec) && ec == locking::errc::locker_failed);
    CHECK(!l.holds());

    facility("TimedLockable");
    steady::time_point start = steady::now();
    CHECK(!l.try_lock_for(ms(200)));
    CHECK(took_about(seconds_since(start), 0.2));
    start = steady::now();
    CHECK(!l.try_lock_for(chr::duration<double>(0.15)));
    CHECK(took_about(seconds_since(start), 0.15));
    start = steady::now();
    CHECK(!l.try_lock_until(steady::now() + ms(100)));
    CHECK(took_about(seconds_since(start), 0.1));
    start = steady::now();
    CHECK(!l.try_lock_until(chr::system_clock::now() + ms(100)));
    CHECK(took_about(seconds_since(start), 0.1));
    start = steady::now();
    CHECK(!l.try_lock_until(tenths_clock::now() + tenths_clock::duration(1)));
    CHECK(took_about(seconds_since(start), 0.1));
#if __cplusplus >= 202002L
    facility("file_clock");
    start = steady::now();
    CHECK(!l.try_lock_until(chr::file_clock::now() + ms(100)));
    CHECK(took_about(seconds_since(start), 0.1));
#endif
    // zero, negative, in the past: try once (a negative C timeout would wait
    // forever: the child releases after 20 s, then this would succeed)
    start = steady::now();
    CHECK(!l.try_lock_for(ms(0)));
    CHECK(!l.try_lock_for(chr::seconds(-1)));
    CHECK(!l.try_lock_for(chr::duration<double>(-0.0)));
    CHECK(!l.try_lock_for(chr::hours::min()));
    CHECK(!l.try_lock_until(steady::now() - chr::seconds(1)));
    CHECK(!l.try_lock_until(steady::time_point::min()));
    CHECK(!l.try_lock_until(chr::system_clock::time_point()));
    CHECK(!l.try_lock_shared_for(chr::seconds(-1)));
    CHECK(!l.try_lock_shared_until(steady::time_point::min()));
    CHECK(seconds_since(start) < 5);
    // error_code overloads: busy is false with ec clear
    ec = locking::errc::internal;
    CHECK(!l.try_lock_for(ms(50), ec) && !ec);
    ec = locking::errc::internal;
    CHECK(!l.try_lock_until(steady::now() + ms(50), ec) && !ec);

    facility("std::unique_lock");
    {
        std::unique_lock<locker> u(l, std::try_to_lock);
        CHECK(!u.owns_lock());
        start = steady::now();
        std::unique_lock<locker> t(l, ms(100));
        CHECK(!t.owns_lock());
        CHECK(took_about(seconds_since(start), 0.1));
        std::unique_lock<locker> t2(l, steady::now() + ms(100));
        CHECK(!t2.owns_lock());
        std::unique_lock<locker> d(l, std::defer_lock);
        CHECK(!d.try_lock());
        CHECK(!d.try_lock_for(ms(50)));
        CHECK(!d.try_lock_until(steady::now() + ms(50)));
        CHECK(!d.owns_lock() && d.mutex() == &l);
    }

    facility("SharedTimedLockable");
    CHECK(!l.try_lock_shared());
    ec = locking::errc::internal;
    CHECK(!l.try_lock_shared(ec) && !ec);
    start = steady::now();
    CHECK(!l.try_lock_shared_for(ms(100)));
    CHECK(took_about(seconds_since(start), 0.1));
    CHECK(!l.try_lock_shared_until(steady::now() + ms(100)));
    CHECK(!l.try_lock_shared_until(tenths_clock::now() + tenths_clock::duration(0.5)));
    ec = locking::errc::internal;
    CHECK(!l.try_lock_shared_for(ms(50), ec) && !ec);
    ec = locking::errc::internal;
    CHECK(!l.try_lock_shared_until(steady::now() + ms(50), ec) && !ec);
    CHECK(throws<locking::locker_failed>([&] { l.lock_shared(); }, locking::errc::locker_failed));
    CHECK(!l.lock_shared(ec) && ec == locking::errc::locker_failed);

#if __cplusplus >= 201402L
    facility("std::shared_lock");
    {
        std::shared_lock<locker> s(l, std::try_to_lock);
        CHECK(!s.owns_lock());
        std::shared_lock<locker> t(l, ms(100));
        CHECK(!t.owns_lock());
        std::shared_lock<locker> t2(l, steady::now() + ms(100));
        CHECK(!t2.owns_lock());
        std::shared_lock<locker> d(l, std::defer_lock);
        CHECK(!d.try_lock());
        CHECK(!d.try_lock_for(ms(50)));
        CHECK(!d.owns_lock());
    }
#endif

    facility("holder");
    std::string h = l.holder();
    std::printf("     holder text:\n%s", h.c_str());
    CHECK(count_of(h, "mode=") == 1 && contains(h, "mode=exclusive\n"));
    CHECK(contains(h, pid_line(c.pid)));
    CHECK(contains(h, "state=alive\n"));
    CHECK(contains(h, "\nage="));
    CHECK(!h.empty() && h[h.size() - 1] == '\n');
    CHECK(contains(l.holder(ec), pid_line(c.pid)) && !ec);

    facility("fencing_token");
    CHECK(throws<locking::error>([&] { (void)l.fencing_token(); }, locking::errc::not_locked));
    ec.clear();
    CHECK(l.fencing_token(ec) == 0 && ec == locking::errc::not_locked);

    // released: now the same calls succeed
    CHECK(child_releases(c));
    CHECK(l.holder() == "");
    CHECK(l.holder(ec) == "" && !ec);
    CHECK(l.try_lock_for(chr::hours::max()));  // huge: waits forever, but it is free
    std::uint64_t t1 = l.fencing_token();
    CHECK(t1 > child_token);
    CHECK(l.fencing_token(ec) == t1 && !ec);
    h = l.holder();
    CHECK(contains(h, "mode=exclusive\n") && contains(h, pid_line(getpid())));
    CHECK(throws<locking::error>([&] { (void)l.try_lock(); }, locking::errc::already_locked));
    CHECK(!l.try_lock(ec) && ec == locking::errc::already_locked);
    CHECK(throws<locking::error>([&] { (void)l.try_lock_shared(); },
                                 locking::errc::already_locked));
    l.unlock();
    {
        std::unique_lock<locker> u(l, ms(100));
        CHECK(u.owns_lock() && l.holds());
        std::uint64_t t2 = l.fencing_token();
        CHECK(t2 > t1);
        t1 = t2;
    }
    CHECK(!l.holds());
    {
        std::unique_lock<locker> u(l, tenths_clock::now() + tenths_clock::duration(1));
        CHECK(u.owns_lock() && l.fencing_token() > t1);
        u.unlock();
        CHECK(!l.holds());
        CHECK(u.try_lock_until(steady::now() + ms(100)) && l.holds());
    }
    CHECK(l.try_lock_shared_until(chr::system_clock::now() + ms(100)));
    CHECK(l.holds());
    l.unlock_shared();
    CHECK(!l.holds());
}

// ---- a child holds the lock shared -----------------------------------------

static void busy_shared(const std::string &top, locking::method m)
{
    std::printf("-- a child holds the lock shared, method %s\n", method_name(m).c_str());
    std::string dir = top + "/" + method_name(m);
    locking::options quick(0.1, 0, m);
    locker r("s", dir, "", quick), w("s", dir, "", quick);
    child c = hold_in_child(dir, "s", m, LOCKING_SHARED);
    std::uint64_t child_token = 0;
    CHECK(child_holds(c, child_token));
    std::error_code ec;

    // another shared holder coexists; an exclusive one does not
    CHECK(r.try_lock_shared());
    CHECK(r.holds() && r.fencing_token() > child_token);
    std::string h = w.holder();
    std::printf("     holder text:\n%s", h.c_str());
    CHECK(count_of(h, "mode=shared\n") == 2 && count_of(h, "mode=") == 2);
    CHECK(contains(h, "\n\n"));
    CHECK(contains(h, pid_line(c.pid)) && contains(h, pid_line(getpid())));
    CHECK(count_of(h, "state=alive\n") == 2);
    CHECK(!w.try_lock());
    CHECK(!w.try_lock_for(ms(100)));
    CHECK(!w.try_lock_until(steady::now() + ms(100)));
    {
        std::unique_lock<locker> u(w, std::try_to_lock);
        CHECK(!u.owns_lock());
    }
    CHECK(throws<locking::error>([&] { (void)r.try_lock(); }, locking::errc::already_locked));
    CHECK(!r.try_lock_shared(ec) && ec == locking::errc::already_locked);
    r.unlock_shared();
    CHECK(!r.holds());
    CHECK(!w.try_lock());  // the child still holds it shared
    CHECK(r.lock_shared(ec) && !ec);
    CHECK(r.unlock_shared(ec) && !ec);

#if __cplusplus >= 201402L
    facility("std::shared_lock");
    {
        locker r2("s", dir, "", quick), r3("s", dir, "", quick), r4("s", dir, "", quick);
        std::shared_lock<locker> s1(r);
        std::shared_lock<locker> s2(r2, std::try_to_lock);
        std::shared_lock<locker> s3(r3, ms(100));
        std::shared_lock<locker> s4(r4, steady::now() + ms(100));
        CHECK(s1.owns_lock() && s2.owns_lock() && s3.owns_lock() && s4.owns_lock());
        CHECK(r.holds() && r2.holds() && r3.holds() && r4.holds());
        CHECK(count_of(w.holder(), "mode=shared\n") == 5);
        CHECK(!w.try_lock());
        s2.unlock();
        CHECK(!r2.holds() && !s2.owns_lock());
        CHECK(s2.try_lock_for(ms(100)) && r2.holds());
        std::shared_lock<locker> moved(std::move(s4));
        CHECK(moved.owns_lock() && !s4.owns_lock());
    }  // every one released
    CHECK(count_of(w.holder(), "mode=shared\n") == 1);
    CHECK(!r.holds());
#endif

    CHECK(child_releases(c));
    CHECK(w.try_lock());
    CHECK(!r.try_lock_shared());  // and now the exclusive holder excludes readers
    CHECK(count_of(r.holder(), "mode=exclusive\n") == 1);
    w.unlock();
}

// ---- threads of this process, each with a locker of its own --------------

// A barrier for n threads (C++11 has none), bounded by hang_ms.
class barrier {
public:
    explicit barrier(int n) : n_(n) {}
    bool arrive_and_wait()
    {
        std::unique_lock<std::mutex> g(m_);
        int gen = gen_;
        if (++count_ == n_) {
            count_ = 0;
            ++gen_;
            cv_.notify_all();
            return true;
        }
        return cv_.wait_for(g, ms(hang_ms), [&] { return gen_ != gen; });
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    int n_, count_ = 0, gen_ = 0;
};

static void threads(const std::string &top, locking::method m)
{
    std::printf("-- threads, method %s\n", method_name(m).c_str());
    std::string dir = top + "/" + method_name(m);
    const int n = 4, rounds = 25;

    facility("std::lock_guard");
    {
        std::atomic<int> inside(0), overlaps(0), errors(0);
        long counter = 0;
        std::vector<std::thread> ts;
        for (int i = 0; i < n; ++i)
            ts.emplace_back([&] {
                try {
                    locker l("t", dir, "", locking::options(hang_ms / 1000.0, 0, m));
                    for (int k = 0; k < rounds; ++k) {
                        std::lock_guard<locker> g(l);
                        if (inside.fetch_add(1) != 0)
                            ++overlaps;
                        ++counter;
                        std::this_thread::yield();
                        inside.fetch_sub(1);
                    }
                } catch (const std::exception &e) {
                    std::printf("     thread: %s\n", e.what());
                    ++errors;
                }
            });
        for (std::thread &t : ts)
            t.join();
        CHECK(errors == 0 && overlaps == 0 && counter == n * rounds);
    }

    // readers in threads hold the lock shared all at once
    {
        barrier all_hold(n + 1), done(n + 1);
        std::atomic<int> errors(0);
        std::vector<std::thread> ts;
        for (int i = 0; i < n; ++i)
            ts.emplace_back([&] {
                try {
                    locker l("r", dir, "", locking::options(hang_ms / 1000.0, 0, m));
#if __cplusplus >= 201402L
                    std::shared_lock<locker> g(l);
#else
                    l.lock_shared();
#endif
                    if (!all_hold.arrive_and_wait() || !done.arrive_and_wait())
                        ++errors;
#if __cplusplus < 201402L
                    l.unlock_shared();
#endif
                } catch (const std::exception &e) {
                    std::printf("     thread: %s\n", e.what());
                    ++errors;
                }
            });
        bool met = all_hold.arrive_and_wait();
        CHECK(met);
        locker w("r", dir, "", locking::options(0, 0, m));
        if (met) {
            CHECK(count_of(w.holder(), "mode=shared\n") == static_cast<size_t>(n));
            CHECK(!w.try_lock());
        }
        done.arrive_and_wait();
        for (std::thread &t : ts)
            t.join();
        CHECK(errors == 0);
        CHECK(w.try_lock());
        w.unlock();
    }
}

// ---- two locks, taken in opposite orders by two processes ----------------

enum class both_by { std_lock, scoped_lock };

// `rounds` times: takes x and y together (deadlock-free), checks that nobody
// else is inside (a marker file created O_EXCL), releases. Returns the
// number of problems.
static int rounds_of(both_by how, locker &x, locker &y, const std::string &marker, int rounds)
{
    int problems = 0;
    for (int i = 0; i < rounds; ++i) {
        try {
            auto inside = [&] {
                int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
                if (fd < 0) {
                    std::printf("     round %d: %s exists: someone else is inside\n", i,
                                marker.c_str());
                    ++problems;
                    return;
                }
                ::close(fd);
                if (!x.holds() || !y.holds())
                    ++problems;
                std::this_thread::yield();
                ::unlink(marker.c_str());
            };
            if (how == both_by::std_lock) {
                std::lock(x, y);
                std::lock_guard<locker> gx(x, std::adopt_lock);
                std::lock_guard<locker> gy(y, std::adopt_lock);
                inside();
            } else {
#if __cplusplus >= 201703L
                std::scoped_lock g(x, y);
                inside();
#endif
            }
            if (x.holds() || y.holds())
                ++problems;
        } catch (const std::exception &e) {
            std::printf("     round %d: %s\n", i, e.what());
            ++problems;
        }
    }
    return problems;
}

static void two_locks(const std::string &top, locking::method m, both_by how)
{
    const char *what = how == both_by::std_lock ? "std::lock" : "std::scoped_lock";
    std::printf("-- %s of two lockers, against a child taking them in the other order, "
                "method %s\n",
                what, method_name(m).c_str());
    facility(what);
    std::string dir = top + "/" + method_name(m);
    std::string marker = dir + "/inside";
    // a deadlock would end in locker_failed after 20 s, not hang
    locking::options opts(hang_ms / 1000.0, 0, m);
    const int rounds = 30;
    child c = spawn([&](channel ch) -> int {
        locker a("a", dir, "", opts), b("b", dir, "", opts);
        send_byte(ch.out, 'g');
        expect_byte(ch.in, 'g');
        return rounds_of(how, b, a, marker, rounds) == 0 ? 0 : 1;
    });
    locker a("a", dir, "", opts), b("b", dir, "", opts);
    CHECK(expect_byte(c.from, 'g') && send_byte(c.to, 'g'));
    CHECK(rounds_of(how, a, b, marker, rounds) == 0);
    CHECK(passed(c));

    // and against a child holding one of them: both or nothing
    child h = hold_in_child(dir, "b", m, LOCKING_EXCLUSIVE);
    std::uint64_t token = 0;
    CHECK(child_holds(h, token));
    locker a0("a", dir, "", locking::options(0, 0, m)), b0("b", dir, "", locking::options(0, 0, m));
    CHECK(a0.try_lock());  // a is free...
    a0.unlock();
    // ...but std::lock with b busy and a 0 s timeout fails without keeping a
    CHECK(throws<locking::locker_failed>([&] { std::lock(a0, b0); }, locking::errc::locker_failed));
    CHECK(!a0.holds() && !b0.holds());
#if __cplusplus >= 201703L
    if (how == both_by::scoped_lock) {
        CHECK(throws<locking::locker_failed>([&] { std::scoped_lock g(a0, b0); },
                                             locking::errc::locker_failed));
        CHECK(!a0.holds() && !b0.holds());
    }
#endif
    CHECK(child_releases(h));
    {
        std::lock(a0, b0);
        std::unique_lock<locker> ua(a0, std::adopt_lock), ub(b0, std::adopt_lock);
        CHECK(a0.holds() && b0.holds() && b0.fencing_token() > token);
    }
    CHECK(!a0.holds() && !b0.holds());
}

#if __cplusplus >= 201703L
static void scoped_lock_forms(const std::string &top, locking::method m)
{
    std::string dir = top + "/" + method_name(m);
    locker a("a1", dir, "", locking::options(0, 0, m)), b("b1", dir, "", locking::options(0, 0, m));
    locker probe("a1", dir, "", locking::options(0, 0, m));
    {
        std::scoped_lock one(a);
        CHECK(a.holds() && !probe.try_lock());
    }
    CHECK(!a.holds());
    a.lock();
    b.lock();
    {
        std::scoped_lock adopted(std::adopt_lock, a, b);
        CHECK(a.holds() && b.holds());
    }
    CHECK(!a.holds() && !b.holds());
    CHECK(probe.try_lock());
    probe.unlock();
}
#endif

// ---- a lost lock under a standard guard ----------------------------------

static void lost_under_std_guards(const std::string &top, locking::method m)
{
    std::printf("-- a lost lock under standard guards, method %s\n", method_name(m).c_str());
    std::string dir = top + "/" + method_name(m);
    // std::lock_guard's destructor is noexcept: the lock_lost thrown by
    // unlock() there ends the program (the documented fail-stop)
    child c = spawn([&](channel ch) -> int {
        dup2(ch.out, 2);
        locker holder("l", dir, "", locking::options(0, 0, m));
        locker breaker("l", dir, "", locking::options(hang_ms / 1000.0, 0.2, m));
        {
            std::lock_guard<locker> g(holder);
            breaker.lock();  // waits until the holder's lock is 0.2 s old, breaks it
        }
        return 0;  // not reached
    });
    std::string said;
    char byte = 0;
    while (read_all(c.from, &byte, 1))
        said += byte;
    int status = reap(c);
    std::printf("     the child said: %s", said.c_str());
    CHECK(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(contains(said, "lock_lost"));

    // the way out: release the guard's locker through the error_code overload
    locker holder("l", dir, "", locking::options(0, 0, m));
    locker breaker("l", dir, "", locking::options(hang_ms / 1000.0, 0.2, m));
    {
        std::unique_lock<locker> u(holder);
        breaker.lock();
        std::error_code ec;
        CHECK(holder.check() == locking::errc::lock_lost);
        CHECK(!u.release()->unlock(ec) && ec == locking::errc::lock_lost);
    }
    CHECK(breaker.holds());
    breaker.unlock();
}

// ---- misuse -----------------------------------------------------------------

static void misuse(const std::string &dir)
{
    std::printf("-- errors\n");
    locker empty;
    std::error_code ec;
    CHECK(throws<locking::error>([&] { (void)empty.try_lock(); }, locking::errc::invalid_argument));
    CHECK(!empty.try_lock(ec) && ec == locking::errc::invalid_argument);
    CHECK(throws<locking::error>([&] { (void)empty.try_lock_shared_for(ms(1)); },
                                 locking::errc::invalid_argument));
    CHECK(throws<locking::error>([&] { empty.lock_shared(); }, locking::errc::invalid_argument));
    CHECK(throws<locking::error>([&] { (void)empty.holder(); }, locking::errc::invalid_argument));
    CHECK(empty.holder(ec) == "" && ec == locking::errc::invalid_argument);
    CHECK(throws<locking::error>([&] { (void)empty.fencing_token(); },
                                 locking::errc::invalid_argument));
    CHECK(!empty.holds(ec) && ec == locking::errc::invalid_argument);

    locker l("nan", dir);
    double nan = std::numeric_limits<double>::quiet_NaN();
    CHECK(throws<locking::error>([&] { (void)l.try_lock_for(chr::duration<double>(nan)); },
                                 locking::errc::invalid_argument));
    CHECK(!l.try_lock_shared_for(chr::duration<double>(nan), ec) &&
          ec == locking::errc::invalid_argument);
    CHECK(!l.holds());
    CHECK(throws<locking::error>([&] { l.unlock_shared(); }, locking::errc::not_locked));
    CHECK(!l.unlock_shared(ec) && ec == locking::errc::not_locked);
    CHECK(!l.holds(ec) && !ec);
    // the new code has its category entry
    CHECK(std::error_code(locking::errc::unavailable).message() ==
          locking_strerror(LOCKING_E_UNAVAILABLE));
    // a moved locker keeps its own timeout for lock_shared()
    locker src("mv", dir, "", locking::options(0, 0, locking::method::mkdir));
    locker holder("mv", dir, "", locking::options(0, 0, locking::method::mkdir));
    holder.lock();
    locker dst(std::move(src));
    CHECK(!dst.lock_shared(ec) && ec == locking::errc::locker_failed);  // no wait forever
    holder.unlock();
    CHECK(dst.lock_shared(ec) && dst.holds());
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    std::printf("-- standard %ld\n", static_cast<long>(__cplusplus));
    misuse(dir + "/misuse");
    for (locking::method m : real_methods) {
        busy_exclusive(dir + "/exclusive", m);
        busy_shared(dir + "/shared", m);
        threads(dir + "/threads", m);
        two_locks(dir + "/std_lock", m, both_by::std_lock);
#if __cplusplus >= 201703L
        two_locks(dir + "/scoped_lock", m, both_by::scoped_lock);
        scoped_lock_forms(dir + "/scoped_lock", m);
#endif
        lost_under_std_guards(dir + "/lost", m);
    }
    std::printf("%d failed\n", failures);
    return failures == 0 ? 0 : 1;
}
