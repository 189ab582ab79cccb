/*
 * locking.hpp: a header-only C++ wrapper of liblocking (locking.h), for
 * C++11 and later.
 *
 *   locking::locker     owns a Locker; a Lockable, TimedLockable and
 *                       SharedTimedLockable (like std::shared_timed_mutex),
 *                       plus refresh(), check(), fencing_token(), holder()
 *   locking::lock_guard holds a locker's lock for a scope (movable)
 *   locking::locked_file a file from open_locked_fd(), closed (and
 *                       unlocked) by its destructor (movable)
 *
 * A locker works with the standard lock types and algorithms:
 *
 *   std::lock_guard<locking::locker> g(l);                  // C++11
 *   std::unique_lock<locking::locker> u(l, std::try_to_lock);
 *   std::unique_lock<locking::locker> t(l, std::chrono::seconds(2));
 *   std::lock(a, b);                                        // no deadlock
 *   std::shared_lock<locking::locker> r(l);                 // C++14
 *   std::scoped_lock g2(a, b);                              // C++17
 *
 * lock() and lock_shared() wait up to the locker's own timeout (options);
 * try_lock() and try_lock_shared() try once; try_lock_for(d) waits up to d
 * and try_lock_until(t) up to t, for any std::chrono clock (converted to a
 * timeout relative to now; a duration or time in the past tries once).
 * unlock(), refresh(), check() and the destructor work in either mode.
 *
 * Errors, the C++ way: every operation that can fail throws a
 * locking::error (a std::system_error) or, in the overload that takes a
 * std::error_code&, stores the error there and does not throw.
 *
 *   - codes of the library are in locking::category(), compare them with
 *     locking::errc: `ec == locking::errc::locker_failed`;
 *   - an operating system failure (LOCKING_E_IO) is reported with its errno
 *     in std::system_category(), so `ec == std::errc::permission_denied`
 *     works;
 *   - the exceptions locker_failed, cannot_get_lock and lock_lost derive
 *     from locking::error, for the cases callers usually handle; what()
 *     includes locking_last_error(), which names the call and the path.
 *   - the try_lock family returns false when the lock is busy (the timeout
 *     ran out) and throws only for other failures; their error_code
 *     overloads return false with ec clear when the lock was busy, and
 *     false with ec set for other failures.
 *
 * Destructors never throw: a lock that was lost (broken after `expire`) is
 * reported only by an explicit unlock()/close(); call it when that matters.
 * The standard lock types (std::lock_guard, std::unique_lock,
 * std::scoped_lock, std::shared_lock) call unlock()/unlock_shared() from
 * their destructors, which are noexcept: a lock_lost thrown there ends the
 * program through std::terminate (a fail-stop: the critical section ran
 * unprotected). With expire > 0, use locking::lock_guard (its destructor
 * ignores a lost lock, its unlock() reports it), or end a std::unique_lock
 * or std::shared_lock by hand: `u.release()->unlock(ec)` reports a lost lock
 * in ec. (Calling the locker's unlock() under a guard that still owns it
 * makes the guard's own unlock() fail with not_locked.)
 *
 * The error_code overloads are noexcept, except the templates (which call
 * the clock's now() and convert the caller's durations) and holder(ec)
 * (which may throw std::bad_alloc).
 *
 * Without exceptions (-fno-exceptions, or LOCKING_HPP_NO_EXCEPTIONS defined
 * before including this header): use the error_code overloads. The members
 * that would throw (the ones the standard lock types call, among them) print
 * the error to stderr and call std::abort() instead. Every translation unit
 * of a program must then agree (all with exceptions or all without).
 *
 * Like the C API, one object must not be used by two threads at once; two
 * threads that each own a locker for the same name exclude each other.
 *
 * Link with -llocking (pkg-config --cflags --libs locking).
 */
#ifndef LOCKING_HPP
#define LOCKING_HPP

#include "locking.h"

#if !defined(LOCKING_SHARED) || !defined(LOCKING_E_UNAVAILABLE)
#error "locking.hpp needs the locking.h of liblocking 0.2 or later"
#endif

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>
#include <utility>

#if !defined(LOCKING_HPP_NO_EXCEPTIONS) && !defined(__cpp_exceptions)
#define LOCKING_HPP_NO_EXCEPTIONS 1
#endif

#if __cplusplus >= 201703L
#define LOCKING_HPP_NODISCARD [[nodiscard]]
#else
#define LOCKING_HPP_NODISCARD
#endif

namespace locking {

/* The lock methods (LOCKING_METHOD_*). */
enum class method : int {
    mkdir = LOCKING_METHOD_MKDIR,
    opencreate = LOCKING_METHOD_OPENCREATE,
    fake = LOCKING_METHOD_FAKE,
    kernel = LOCKING_METHOD_KERNEL
#ifdef LOCKING_METHOD_POSTGRES
    ,
    postgres = LOCKING_METHOD_POSTGRES
#endif
};

/* The library's failure codes (LOCKING_E_*), as a std::error_code enum. */
enum class errc : int {
    locker_failed = LOCKING_E_LOCKER_FAILED,
    cannot_get_lock = LOCKING_E_CANNOT_GET_LOCK,
    invalid_argument = LOCKING_E_INVALID_ARGUMENT,
    io = LOCKING_E_IO,
    already_locked = LOCKING_E_ALREADY_LOCKED,
    not_locked = LOCKING_E_NOT_LOCKED,
    lock_lost = LOCKING_E_LOCK_LOST,
    internal = LOCKING_E_INTERNAL,
    unavailable = LOCKING_E_UNAVAILABLE
};

/* A timeout that never ends, and an expire that never breaks a lock. */
constexpr double wait_forever = LOCKING_WAIT_FOREVER;
constexpr double never_expire = LOCKING_NEVER_EXPIRE;

namespace detail {
class category_impl : public std::error_category {
public:
    const char *name() const noexcept override { return "locking"; }
    std::string message(int code) const override { return locking_strerror(code); }
};
}  // namespace detail

/* The error category of liblocking's codes. */
inline const std::error_category &category() noexcept
{
    static const detail::category_impl c;
    return c;
}

inline std::error_code make_error_code(errc e) noexcept
{
    return std::error_code(static_cast<int>(e), category());
}

}  // namespace locking

namespace std {
template <>
struct is_error_code_enum<locking::errc> : true_type {};
}  // namespace std

namespace locking {

/* Any liblocking failure. code() is in locking::category(), or the errno in
 * std::system_category() for an operating system failure. */
class error : public std::system_error {
public:
    error(std::error_code ec, const std::string &what) : std::system_error(ec, what) {}
};

/* locker::lock() or lock_shared() timed out (LOCKING_E_LOCKER_FAILED). */
class locker_failed : public error {
public:
    using error::error;
};

/* locked_file's open timed out (LOCKING_E_CANNOT_GET_LOCK). */
class cannot_get_lock : public error {
public:
    using error::error;
};

/* The lock was broken by another party after `expire` (LOCKING_E_LOCK_LOST). */
class lock_lost : public error {
public:
    using error::error;
};

namespace detail {

/* The error_code of a failed call; must run right after the call, before
 * anything else can change errno or the thread's last error. */
inline std::error_code code_of(int rc, int saved_errno) noexcept
{
    if (rc == LOCKING_E_IO && saved_errno != 0)
        return std::error_code(saved_errno, std::system_category());
    return std::error_code(rc, category());
}

/* Throws the locking::error (or subclass) for rc; without exceptions,
 * prints it and aborts. */
[[noreturn]] inline void throw_error(int rc, int saved_errno, const char *call)
{
    std::error_code ec = code_of(rc, saved_errno);
    std::string what = call;
    const char *detail = locking_last_error();
    if (detail != nullptr && *detail != '\0') {
        what += ": ";
        what += detail;
    }
#ifdef LOCKING_HPP_NO_EXCEPTIONS
    std::fprintf(stderr, "locking.hpp: %s (%s); exceptions are disabled: aborting\n",
                 what.c_str(), ec.message().c_str());
    std::abort();
#else
    switch (rc) {
    case LOCKING_E_LOCKER_FAILED:
        throw locker_failed(ec, what);
    case LOCKING_E_CANNOT_GET_LOCK:
        throw cannot_get_lock(ec, what);
    case LOCKING_E_LOCK_LOST:
        throw lock_lost(ec, what);
    default:
        throw error(ec, what);
    }
#endif
}

/* Returns rc; throws for a negative rc. */
inline int check(int rc, const char *call)
{
    if (rc < 0)
        throw_error(rc, errno, call);
    return rc;
}

/* Stores the outcome of rc in ec; returns true on success. */
inline bool check(int rc, std::error_code &ec) noexcept
{
    if (rc < 0) {
        ec = code_of(rc, errno);
        return false;
    }
    ec.clear();
    return true;
}

inline bool has_nul(const std::string &s) noexcept
{
    return s.find('\0') != std::string::npos;
}

[[noreturn]] inline void throw_nul(const char *call)
{
    std::string what = std::string(call) + ": a name or path contains a NUL byte";
#ifdef LOCKING_HPP_NO_EXCEPTIONS
    std::fprintf(stderr, "locking.hpp: %s; exceptions are disabled: aborting\n", what.c_str());
    std::abort();
#else
    throw error(make_error_code(errc::invalid_argument), what);
#endif
}

/* A relative timeout in seconds for locker_acquire(): a duration of zero or
 * less tries once (a negative timeout would wait forever); NaN stays NaN,
 * which the library rejects as invalid. */
template <class Rep, class Period>
inline double seconds_of(const std::chrono::duration<Rep, Period> &d)
{
    double s = std::chrono::duration<double>(d).count();
    return s <= 0 ? 0.0 : s;
}

/* The seconds from now until t, for any clock. Computed in double, so
 * time_point::max() and other far times cannot overflow. */
template <class Clock, class Duration>
inline double seconds_until(const std::chrono::time_point<Clock, Duration> &t)
{
    typedef std::chrono::duration<double> secs;
    typename Clock::time_point now = Clock::now();
    return seconds_of(secs(t.time_since_epoch()) - secs(now.time_since_epoch()));
}

}  // namespace detail

/* The options of a locker or a locked_file. */
struct options {
    double timeout = wait_forever;   /* < 0 forever, 0 try once, > 0 seconds */
    double expire = never_expire;    /* <= 0 never, > 0 break older locks */
    locking::method method = locking::method::kernel;

    options() = default;
    options(double timeout_, double expire_ = never_expire,
            locking::method method_ = locking::method::kernel)
        : timeout(timeout_), expire(expire_), method(method_)
    {
    }
};

/* Owns a Locker (locker_new/locker_free): a lock on (lockdir, ns, objname).
 * Movable, not copyable. Destroying it releases the lock if held.
 *
 * It meets the standard's Lockable, TimedLockable and SharedTimedLockable
 * requirements (see the top of this file). The lock is not reentrant:
 * locking a locker that holds its lock, in either mode, throws
 * error(errc::already_locked) (or sets it in ec). */
class locker {
public:
    /* An empty locker, to be move-assigned. Every operation on it fails
     * with errc::invalid_argument. */
    locker() noexcept = default;

    /* Throws locking::error (invalid_argument, or the errno of an OS
     * failure creating or opening lockdir). An empty ns is the empty
     * namespace. Names may contain any bytes but NUL. */
    locker(const std::string &objname, const std::string &lockdir,
           const std::string &ns = std::string(), const options &opts = options())
    {
        if (detail::has_nul(objname) || detail::has_nul(lockdir) || detail::has_nul(ns))
            detail::throw_nul("locker_new");
        detail::check(make(objname, lockdir, ns, opts), "locker_new");
    }

    /* The same, reporting failure in ec (then the locker is empty). */
    locker(const std::string &objname, const std::string &lockdir, const std::string &ns,
           const options &opts, std::error_code &ec) noexcept
    {
        detail::check(make(objname, lockdir, ns, opts), ec);
    }

    locker(const locker &) = delete;
    locker &operator=(const locker &) = delete;

    locker(locker &&other) noexcept : l_(other.l_), timeout_(other.timeout_)
    {
        other.l_ = nullptr;
    }

    locker &operator=(locker &&other) noexcept
    {
        if (this != &other) {
            locker_free(l_);
            l_ = other.l_;
            timeout_ = other.timeout_;
            other.l_ = nullptr;
        }
        return *this;
    }

    ~locker() { locker_free(l_); }

    /* ---- exclusive (Lockable, TimedLockable) ---- */

    /* Acquires exclusively, waiting up to the locker's timeout: throws
     * locker_failed when it ran out, error(errc::already_locked) if this
     * locker holds it already. */
    void lock() { detail::check(locker_lock(l_), "locker_lock"); }
    bool lock(std::error_code &ec) noexcept { return detail::check(locker_lock(l_), ec); }

    /* Tries once to acquire exclusively: false if another holder has it
     * (in either mode); throws for other failures. */
    LOCKING_HPP_NODISCARD bool try_lock() { return acquire(LOCKING_EXCLUSIVE, 0.0); }
    bool try_lock(std::error_code &ec) noexcept { return acquire(LOCKING_EXCLUSIVE, 0.0, ec); }

    /* Waits up to d (zero or less: tries once) to acquire exclusively;
     * false when the time ran out. */
    template <class Rep, class Period>
    LOCKING_HPP_NODISCARD bool try_lock_for(const std::chrono::duration<Rep, Period> &d)
    {
        return acquire(LOCKING_EXCLUSIVE, detail::seconds_of(d));
    }
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period> &d, std::error_code &ec)
    {
        return acquire(LOCKING_EXCLUSIVE, detail::seconds_of(d), ec);
    }

    /* Waits until t (in the past: tries once) to acquire exclusively. */
    template <class Clock, class Duration>
    LOCKING_HPP_NODISCARD bool try_lock_until(const std::chrono::time_point<Clock, Duration> &t)
    {
        return acquire(LOCKING_EXCLUSIVE, detail::seconds_until(t));
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration> &t, std::error_code &ec)
    {
        return acquire(LOCKING_EXCLUSIVE, detail::seconds_until(t), ec);
    }

    /* Releases (either mode): throws lock_lost if another party broke the
     * lock (it is released all the same), error(errc::not_locked) if not
     * held. */
    void unlock() { detail::check(locker_unlock(l_), "locker_unlock"); }
    bool unlock(std::error_code &ec) noexcept { return detail::check(locker_unlock(l_), ec); }

    /* ---- shared (SharedLockable, SharedTimedLockable) ---- */

    /* Acquires shared, waiting up to the locker's timeout: any number of
     * lockers may hold a name shared at once, none while an exclusive
     * holder has it. Throws locker_failed when the timeout ran out. */
    void lock_shared() { detail::check(raw_acquire(LOCKING_SHARED, timeout_), "locker_acquire"); }
    bool lock_shared(std::error_code &ec) noexcept
    {
        return detail::check(raw_acquire(LOCKING_SHARED, timeout_), ec);
    }

    /* Tries once to acquire shared: false if an exclusive holder has it
     * (or an exclusive locker waits for it). */
    LOCKING_HPP_NODISCARD bool try_lock_shared() { return acquire(LOCKING_SHARED, 0.0); }
    bool try_lock_shared(std::error_code &ec) noexcept { return acquire(LOCKING_SHARED, 0.0, ec); }

    template <class Rep, class Period>
    LOCKING_HPP_NODISCARD bool try_lock_shared_for(const std::chrono::duration<Rep, Period> &d)
    {
        return acquire(LOCKING_SHARED, detail::seconds_of(d));
    }
    template <class Rep, class Period>
    bool try_lock_shared_for(const std::chrono::duration<Rep, Period> &d, std::error_code &ec)
    {
        return acquire(LOCKING_SHARED, detail::seconds_of(d), ec);
    }

    template <class Clock, class Duration>
    LOCKING_HPP_NODISCARD bool
    try_lock_shared_until(const std::chrono::time_point<Clock, Duration> &t)
    {
        return acquire(LOCKING_SHARED, detail::seconds_until(t));
    }
    template <class Clock, class Duration>
    bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration> &t,
                               std::error_code &ec)
    {
        return acquire(LOCKING_SHARED, detail::seconds_until(t), ec);
    }

    /* Releases a shared lock: the same as unlock(). */
    void unlock_shared() { detail::check(locker_unlock(l_), "locker_unlock"); }
    bool unlock_shared(std::error_code &ec) noexcept { return detail::check(locker_unlock(l_), ec); }

    /* ---- while held ---- */

    /* Renews the lock's age, so `expire` does not break a live holder. */
    void refresh() { detail::check(locker_refresh(l_), "locker_refresh"); }
    bool refresh(std::error_code &ec) noexcept { return detail::check(locker_refresh(l_), ec); }

    /* True while this locker holds its lock (either mode); false if it
     * does not or if the lock was lost; throws only for OS failures. */
    bool holds() const
    {
        int rc = locker_check(l_);
        if (rc == LOCKING_OK)
            return true;
        if (rc == LOCKING_E_NOT_LOCKED || rc == LOCKING_E_LOCK_LOST)
            return false;
        detail::throw_error(rc, errno, "locker_check");
    }
    bool holds(std::error_code &ec) const noexcept
    {
        int rc = locker_check(l_);
        if (rc == LOCKING_E_NOT_LOCKED || rc == LOCKING_E_LOCK_LOST) {
            ec.clear();
            return false;
        }
        return detail::check(rc, ec);
    }

    /* The raw outcome of locker_check(): success, errc::not_locked or
     * errc::lock_lost (or an OS failure). */
    std::error_code check() const noexcept
    {
        std::error_code ec;
        detail::check(locker_check(l_), ec);
        return ec;
    }

    /* The fencing token of the current acquisition (either mode): greater
     * than the token of every earlier acquisition of the same lock, in any
     * process. Hand it to the resource you protect, so that it can refuse
     * a holder whose lock was broken. The same value for every call during
     * one acquisition. Throws error(errc::not_locked) when the lock is not
     * held, lock_lost when it was broken before a token was drawn; the
     * overload returns 0 on failure. */
    std::uint64_t fencing_token() const
    {
        std::uint64_t token = 0;
        detail::check(locker_fencing_token(l_, &token), "locker_fencing_token");
        return token;
    }
    std::uint64_t fencing_token(std::error_code &ec) const noexcept
    {
        std::uint64_t token = 0;
        return detail::check(locker_fencing_token(l_, &token), ec) ? token : 0;
    }

    /* Who holds this locker's lock, looked at without locking: "" when
     * nobody does; otherwise, for each holder, the lines mode=, the owner
     * record's key=value lines (method=, token=, pid=, host=, ...), state=
     * (alive, dead or unknown) and age= (seconds), each ending in '\n';
     * several shared holders are separated by an empty line. The overload
     * returns "" on failure. (Both may throw std::bad_alloc.) */
    std::string holder() const
    {
        std::string text;
        detail::check(read_holder(text), "locker_holder");
        return text;
    }
    std::string holder(std::error_code &ec) const
    {
        std::string text;
        detail::check(read_holder(text), ec);
        return text;
    }

    /* False for an empty (moved-from) locker. */
    explicit operator bool() const noexcept { return l_ != nullptr; }

    Locker *native_handle() const noexcept { return l_; }

private:
    int make(const std::string &objname, const std::string &lockdir, const std::string &ns,
             const options &opts) noexcept
    {
        if (detail::has_nul(objname) || detail::has_nul(lockdir) || detail::has_nul(ns))
            return LOCKING_E_INVALID_ARGUMENT;
        timeout_ = opts.timeout;
        return locker_new(objname.c_str(), lockdir.c_str(), ns.c_str(), opts.timeout,
                          opts.expire, static_cast<int>(opts.method), &l_);
    }

    int raw_acquire(int mode, double timeout) noexcept
    {
        return locker_acquire(l_, mode, timeout);
    }

    /* true: acquired; false: timed out; throws for the rest. */
    bool acquire(int mode, double timeout)
    {
        int rc = raw_acquire(mode, timeout);
        if (rc == LOCKING_E_LOCKER_FAILED)
            return false;
        detail::check(rc, "locker_acquire");
        return true;
    }

    /* true: acquired; false with ec clear: timed out; false with ec set:
     * failed. */
    bool acquire(int mode, double timeout, std::error_code &ec) noexcept
    {
        int rc = raw_acquire(mode, timeout);
        if (rc == LOCKING_E_LOCKER_FAILED) {
            ec.clear();
            return false;
        }
        return detail::check(rc, ec);
    }

    /* locker_holder() snprintf-style: asks for the length, then reads into
     * a buffer of that size (again if the holders changed meanwhile).
     * Returns the length (>= 0) or a negative code; text is the holder
     * text, "" on failure. */
    int read_holder(std::string &text) const
    {
        text.clear();
        int n = locker_holder(l_, nullptr, 0);
        while (n > 0) {
            std::string buf(static_cast<std::size_t>(n) + 1, '\0');
            int m = locker_holder(l_, &buf[0], buf.size());
            if (m <= n) {
                if (m > 0) {
                    buf.resize(static_cast<std::size_t>(m));
                    text.swap(buf);
                }
                return m;
            }
            n = m;
        }
        return n;
    }

    Locker *l_ = nullptr;
    double timeout_ = wait_forever;
};

/* Holds a locker's lock for a scope: locks in the constructor, unlocks in
 * the destructor. Unlike std::lock_guard it is movable (return it from a
 * function, keep it in a container); a moved-from guard releases nothing;
 * and its destructor ignores a lost lock instead of ending the program.
 * The locker must outlive the guard. */
class lock_guard {
public:
    /* Locks l; throws what locker::lock() throws. */
    explicit lock_guard(locker &l) : l_(&l) { l.lock(); }

    /* Tries to lock l; on failure ec is set and owns_lock() is false. */
    lock_guard(locker &l, std::error_code &ec) noexcept : l_(l.lock(ec) ? &l : nullptr) {}

    lock_guard(const lock_guard &) = delete;
    lock_guard &operator=(const lock_guard &) = delete;

    lock_guard(lock_guard &&other) noexcept : l_(other.l_) { other.l_ = nullptr; }

    lock_guard &operator=(lock_guard &&other) noexcept
    {
        if (this != &other) {
            release_quietly();
            l_ = other.l_;
            other.l_ = nullptr;
        }
        return *this;
    }

    /* Releases; a lost lock cannot be reported here (call unlock()). */
    ~lock_guard() { release_quietly(); }

    /* Releases now and reports: throws lock_lost if the lock had been
     * broken. Afterwards the guard owns nothing. */
    void unlock()
    {
        locker *l = l_;
        l_ = nullptr;
        if (l != nullptr)
            l->unlock();
    }

    /* The same, reporting in ec. */
    bool unlock(std::error_code &ec) noexcept
    {
        locker *l = l_;
        l_ = nullptr;
        if (l == nullptr) {
            ec.clear();
            return true;
        }
        return l->unlock(ec);
    }

    bool owns_lock() const noexcept { return l_ != nullptr; }
    explicit operator bool() const noexcept { return owns_lock(); }
    locker *get() const noexcept { return l_; }

private:
    void release_quietly() noexcept
    {
        if (l_ != nullptr) {
            std::error_code ignored;
            l_->unlock(ignored);
            l_ = nullptr;
        }
    }

    locker *l_;
};

/* A file opened read+write with an exclusive lock (open_locked_fd): created
 * with mode 0666 & ~umask if missing, at offset 0, close-on-exec. The
 * destructor releases the lock and closes the descriptor; never close fd()
 * yourself. Movable, not copyable. */
class locked_file {
public:
    locked_file() noexcept = default;

    /* Throws cannot_get_lock when the timeout runs out, locking::error for
     * the rest (errno in std::system_category() for OS failures). lockdir
     * empty: the lock lives in the file's own directory. */
    explicit locked_file(const std::string &path, const options &opts = options(),
                         const std::string &lockdir = std::string())
    {
        if (detail::has_nul(path) || detail::has_nul(lockdir))
            detail::throw_nul("open_locked_fd");
        fd_ = detail::check(open(path, opts, lockdir), "open_locked_fd");
    }

    /* The same, reporting failure in ec (then is_open() is false). */
    locked_file(const std::string &path, const options &opts, const std::string &lockdir,
                std::error_code &ec) noexcept
    {
        int fd = open(path, opts, lockdir);
        if (detail::check(fd, ec))
            fd_ = fd;
    }

    locked_file(const locked_file &) = delete;
    locked_file &operator=(const locked_file &) = delete;

    locked_file(locked_file &&other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

    locked_file &operator=(locked_file &&other) noexcept
    {
        if (this != &other) {
            close_quietly();
            fd_ = other.fd_;
            other.fd_ = -1;
        }
        return *this;
    }

    ~locked_file() { close_quietly(); }

    /* The descriptor, for read(2), write(2), lseek(2), fstat(2), ... */
    int fd() const noexcept { return fd_; }
    bool is_open() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return is_open(); }

    /* Releases the lock and closes; throws lock_lost if the lock had been
     * broken (the file is closed all the same). Closing a closed file does
     * nothing. */
    void close()
    {
        int fd = fd_;
        fd_ = -1;
        if (fd >= 0)
            detail::check(close_locked_fd(fd), "close_locked_fd");
    }

    bool close(std::error_code &ec) noexcept
    {
        int fd = fd_;
        fd_ = -1;
        if (fd < 0) {
            ec.clear();
            return true;
        }
        return detail::check(close_locked_fd(fd), ec);
    }

private:
    static int open(const std::string &path, const options &opts,
                    const std::string &lockdir) noexcept
    {
        if (detail::has_nul(path) || detail::has_nul(lockdir))
            return LOCKING_E_INVALID_ARGUMENT;
        return open_locked_fd(path.c_str(), opts.timeout,
                              lockdir.empty() ? nullptr : lockdir.c_str(), opts.expire,
                              static_cast<int>(opts.method));
    }

    void close_quietly() noexcept
    {
        if (fd_ >= 0) {
            close_locked_fd(fd_);
            fd_ = -1;
        }
    }

    int fd_ = -1;
};

/* The library version, e.g. "0.2.0". */
inline std::string version() { return locking_version(); }

}  // namespace locking

#undef LOCKING_HPP_NODISCARD

#endif /* LOCKING_HPP */
