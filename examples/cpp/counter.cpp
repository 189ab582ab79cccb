// counter: add 1 to the number in a file, N times, each time under the
// file's lock (locking::locked_file). Run several at once: no increment is
// lost.
//
//   counter FILE [N]
//
// Build: g++ -std=c++11 counter.cpp $(pkg-config --cflags --libs locking)

#include <locking.hpp>

#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <string>
#include <system_error>
#include <unistd.h>

// Reads the whole file from offset 0.
static std::string read_all(int fd)
{
    std::string s;
    char buf[64];
    ssize_t n;
    while ((n = pread(fd, buf, sizeof buf, static_cast<off_t>(s.size()))) > 0)
        s.append(buf, static_cast<size_t>(n));
    if (n < 0)
        throw std::system_error(errno, std::system_category(), "read");
    return s;
}

static void write_all(int fd, const std::string &s)
{
    if (ftruncate(fd, 0) != 0 || pwrite(fd, s.data(), s.size(), 0) != static_cast<ssize_t>(s.size()))
        throw std::system_error(errno, std::system_category(), "write");
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        std::cerr << "usage: counter FILE [N]\n";
        return 2;
    }
    long n = argc == 3 ? std::strtol(argv[2], nullptr, 10) : 1;
    try {
        for (long i = 0; i < n; i++) {
            // wait up to 30 s for the lock; break a lock older than 60 s
            locking::locked_file f(argv[1], locking::options(30, 60));
            long value = std::strtol(read_all(f.fd()).c_str(), nullptr, 10);
            write_all(f.fd(), std::to_string(value + 1) + "\n");
            f.close();  // releases; throws locking::lock_lost if it was broken
        }
    } catch (const locking::cannot_get_lock &e) {
        std::cerr << "counter: busy: " << e.what() << "\n";
        return 75;
    } catch (const std::system_error &e) {
        std::cerr << "counter: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
