// job: do some work under a named lock, the way a cron job would.
//
//   job LOCKDIR NAME TIMEOUT
//
// Takes the lock NAME in LOCKDIR (waiting up to TIMEOUT seconds), prints
// "working", then holds the lock until a line (or end of file) arrives on
// standard input, and prints "done". If the lock is busy it prints why and
// exits 75, as lockrun does.
//
// Build: g++ -std=c++11 job.cpp $(pkg-config --cflags --libs locking)

#include <locking.hpp>

#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char **argv)
{
    if (argc != 4) {
        std::cerr << "usage: job LOCKDIR NAME TIMEOUT\n";
        return 2;
    }
    try {
        locking::locker lk(argv[2], argv[1], "jobs",
                           locking::options(std::atof(argv[3]), locking::never_expire,
                                            locking::method::kernel));
        std::error_code ec;
        locking::lock_guard guard(lk, ec);  // the non-throwing form
        if (ec == locking::errc::locker_failed) {
            std::cout << "busy: " << ec.message() << std::endl;
            return 75;
        }
        if (ec)
            throw locking::error(ec, "locker_lock");
        std::cout << "working" << std::endl;
        std::string line;
        std::getline(std::cin, line);
        guard.unlock();  // explicit, so that a lost lock is reported
        std::cout << "done" << std::endl;
    } catch (const locking::error &e) {
        std::cerr << "job: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
