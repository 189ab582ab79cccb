/*
 * locking.hpp: a header-only C++11 wrapper of liblocking (locking.h).
 *
 *   locking::locker    owns a Locker; lock()/unlock()/refresh()/check()
 *   locking::lock_guard holds a locker's lock for a scope (movable)
 *   locking::locked_file a file from open_locked_fd(), closed (and
 *                       unlocked) by its destructor (movable)
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
 *
 * Destructors never throw: a lock that was lost (broken after `expire`) is
 * reported only by an explicit unlock()/close(); call it when that matters.
 *
 * Like the C API, one object must not be used by two threads at once; two
 * threads that each own a locker for the same name exclude each other.
 *
 * Link with -llocking (pkg-config --cflags --libs locking).
 */
#ifndef LOCKING_HPP
#define LOCKING_HPP

#include "locking.h"

#include <cerrno>
#include <string>
#include <system_error>
#include <utility>

namespace locking {

/* The lock methods (LOCKING_METHOD_*). */
enum class method : int {
    mkdir = LOCKING_METHOD_MKDIR,
    opencreate = LOCKING_METHOD_OPENCREATE,
    fake = LOCKING_METHOD_FAKE,
    kernel = LOCKING_METHOD_KERNEL
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
    internal = LOCKING_E_INTERNAL
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

/* locker::lock() timed out (LOCKING_E_LOCKER_FAILED). */
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

[[noreturn]] inline void throw_error(int rc, int saved_errno, const char *call)
{
    std::error_code ec = code_of(rc, saved_errno);
    std::string what = call;
    const char *detail = locking_last_error();
    if (detail != nullptr && *detail != '\0') {
        what += ": ";
        what += detail;
    }
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
    throw error(make_error_code(errc::invalid_argument),
                std::string(call) + ": a name or path contains a NUL byte");
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
 * Movable, not copyable. Destroying it releases the lock if held. It meets
 * BasicLockable (lock/unlock); but std::lock_guard and std::unique_lock
 * call unlock() from their destructors, where a lost lock (lock_lost)
 * would call std::terminate: use locking::lock_guard instead. */
class locker {
public:
    /* An empty locker, to be move-assigned. */
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

    locker(locker &&other) noexcept : l_(other.l_) { other.l_ = nullptr; }

    locker &operator=(locker &&other) noexcept
    {
        if (this != &other) {
            locker_free(l_);
            l_ = other.l_;
            other.l_ = nullptr;
        }
        return *this;
    }

    ~locker() { locker_free(l_); }

    /* Acquires, waiting up to the timeout: throws locker_failed when it ran
     * out, error(errc::already_locked) if this locker holds it already. */
    void lock() { detail::check(locker_lock(l_), "locker_lock"); }
    bool lock(std::error_code &ec) noexcept { return detail::check(locker_lock(l_), ec); }

    /* Releases: throws lock_lost if another party broke the lock (it is
     * released all the same), error(errc::not_locked) if not held. */
    void unlock() { detail::check(locker_unlock(l_), "locker_unlock"); }
    bool unlock(std::error_code &ec) noexcept { return detail::check(locker_unlock(l_), ec); }

    /* Renews the lock's age, so `expire` does not break a live holder. */
    void refresh() { detail::check(locker_refresh(l_), "locker_refresh"); }
    bool refresh(std::error_code &ec) noexcept { return detail::check(locker_refresh(l_), ec); }

    /* True while this locker holds its lock; false if it does not or if
     * the lock was lost; throws only for OS failures. */
    bool holds() const
    {
        int rc = locker_check(l_);
        if (rc == LOCKING_OK)
            return true;
        if (rc == LOCKING_E_NOT_LOCKED || rc == LOCKING_E_LOCK_LOST)
            return false;
        detail::throw_error(rc, errno, "locker_check");
    }

    /* The raw outcome of locker_check(): success, errc::not_locked or
     * errc::lock_lost (or an OS failure). */
    std::error_code check() const noexcept
    {
        std::error_code ec;
        detail::check(locker_check(l_), ec);
        return ec;
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
        return locker_new(objname.c_str(), lockdir.c_str(), ns.c_str(), opts.timeout,
                          opts.expire, static_cast<int>(opts.method), &l_);
    }

    Locker *l_ = nullptr;
};

/* Holds a locker's lock for a scope: locks in the constructor, unlocks in
 * the destructor. Unlike std::lock_guard it is movable (return it from a
 * function, keep it in a container); a moved-from guard releases nothing.
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

/* The library version, e.g. "0.1.0". */
inline std::string version() { return locking_version(); }

}  // namespace locking

#endif /* LOCKING_HPP */
