//! The postgres method across real networks, under faults, and under load,
//! against servers that these tests start (`tests/support/pg.rs`):
//!
//! - a network partition: holders in their own network namespace, joined
//!   to the server by a veth pair whose link is cut (`ip link set ...
//!   down`) while they hold; the server frees the locks within `expire`, a
//!   waiter gets them, and the holders learn LOCK_LOST;
//! - exclusion across "hosts": processes in two network namespaces, each
//!   reaching the server through its own veth pair, on one lock;
//! - a chaos run: workers write through a fenced store while they are
//!   killed, stopped and cut off at random;
//! - 100 processes waiting on one lock at once, beside a raw
//!   `pg_advisory_lock` queue of 100 (p99 wait reported, not asserted).
//!
//! They run one at a time (they measure waits, and the chaos run and the
//! 100 waiters load the machine), in a test binary of their own, so they
//! do not disturb the timings of `tests/postgres.rs` either.
//!
//! The network tests need root and `ip` (iproute2, which `.ci/run`
//! installs), and a kernel that lets us make network namespaces. Without
//! them they print SKIP, except in CI (`CI` set), where that is a failure;
//! likewise without PostgreSQL's server programs.

#[path = "support/pg.rs"]
mod pg;
mod support;

use locking::Mode;
use pg::*;
use std::io::{BufRead, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

/// `None` after printing SKIP; a failure in CI.
fn skip<T>(why: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("CI: {why}");
    }
    eprintln!("SKIP: {why}");
    None
}

// ---------------------------------------------------------------------
// Network namespaces

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace joined to ours by a veth pair: `host_ip` on our
/// side (`host_if`), `ns_ip` on its side, a /30 of 198.18.0.0/15 (the
/// range set aside for benchmarking networks, RFC 2544) chosen from our
/// PID. Removed when dropped and, whatever happens, when this process
/// ends.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
    cidr: String,
    /// `/run/netns/<name>`, which a child enters with setns(2).
    file: std::fs::File,
}

impl Netns {
    /// A new one, or `None` after printing SKIP (a failure in CI).
    fn new() -> Option<Netns> {
        if !is_root() {
            return skip("network namespaces need root");
        }
        if !Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return skip("no `ip` command (install iproute2)");
        }
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        assert!(n < 16, "at most 16 namespaces per test process");
        let pid = std::process::id();
        let index = (pid % 2048) * 16 + n as u32;
        let base = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + 4 * index;
        let addr = |i: u32| std::net::Ipv4Addr::from(base + i).to_string();
        let tag = format!("lkp{}", pid % 100_000);
        let (name, host_if, ns_if) = (
            format!("liblocking-{pid}-{n}"),
            format!("{tag}h{n}"),
            format!("{tag}c{n}"),
        );
        let (name, host_if) = (name.as_str(), host_if.as_str());
        reaper(name, host_if);
        let host_cidr = format!("{}/30", addr(1));
        let ns_cidr = format!("{}/30", addr(2));
        let made = ip(&["netns", "add", name])
            .and_then(|_| {
                ip(&[
                    "link", "add", host_if, "type", "veth", "peer", "name", &ns_if,
                ])
            })
            .and_then(|_| ip(&["link", "set", &ns_if, "netns", name]))
            .and_then(|_| ip(&["addr", "add", &host_cidr, "dev", host_if]))
            .and_then(|_| ip(&["link", "set", host_if, "up"]))
            .and_then(|_| ip(&["-n", name, "addr", "add", &ns_cidr, "dev", &ns_if]))
            .and_then(|_| ip(&["-n", name, "link", "set", &ns_if, "up"]))
            .and_then(|_| ip(&["-n", name, "link", "set", "lo", "up"]))
            .and_then(|_| {
                std::fs::File::open(Path::new("/run/netns").join(name))
                    .map_err(|e| format!("cannot open /run/netns/{name}: {e}"))
            });
        match made {
            Ok(file) => Some(Netns {
                name: name.to_string(),
                host_if: host_if.to_string(),
                host_ip: addr(1),
                ns_ip: addr(2),
                cidr: format!("{}/30", addr(0)),
                file,
            }),
            Err(e) => {
                remove(name, host_if);
                skip(&format!("cannot make a network namespace: {e}"))
            }
        }
    }

    /// `cmd` will run in the namespace.
    fn enter(&self, cmd: &mut Command) {
        let fd = self.file.as_raw_fd();
        // SAFETY: setns(2) is async-signal-safe and touches nothing of the
        // parent's; `fd` stays open (in `self`) until the child has exec'd,
        // since spawn returns only then.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }

    /// The connection string from inside the namespace: TCP to our side
    /// of the veth pair.
    fn conninfo(&self, port: u16) -> String {
        format!(
            "host={} port={port} user=postgres dbname=postgres",
            self.host_ip
        )
    }

    /// Cuts the link: our end of the veth pair goes down (its peer loses
    /// its carrier; both sides' packets are dropped, no RST, no FIN).
    fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]).unwrap();
    }

    fn heal(&self) {
        ip(&["link", "set", &self.host_if, "up"]).unwrap();
    }
}

/// Removes a namespace and its veth pair.
fn remove(name: &str, host_if: &str) {
    let _ = ip(&["link", "del", host_if]);
    let _ = ip(&["netns", "del", name]);
}

/// Removes the namespace and the veth pair when this process ends, however
/// it ends. (Never waited for: it outlives us.)
#[allow(clippy::zombie_processes)]
fn reaper(name: &str, host_if: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         ip link del {host_if} 2>/dev/null; ip netns del {name} 2>/dev/null",
        pid = std::process::id(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawning the namespace's reaper");
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove(&self.name, &self.host_if);
    }
}

// ---------------------------------------------------------------------
// Helpers

/// Waits for all of `kids` to exit, at most `limit`; on the limit, kills
/// the ones left and fails naming them. Gives each one's status and output.
fn finish_all(kids: Vec<Child>, limit: Duration, what: &str) -> Vec<(ExitStatus, String)> {
    let until = Instant::now() + limit;
    let mut kids: Vec<(Child, Option<ExitStatus>)> = kids.into_iter().map(|c| (c, None)).collect();
    loop {
        let mut left = 0;
        for (c, st) in &mut kids {
            if st.is_none() {
                *st = c.try_wait().unwrap();
                left += st.is_none() as usize;
            }
        }
        if left == 0 {
            break;
        }
        if Instant::now() > until {
            let stuck: Vec<u32> = kids
                .iter()
                .filter(|(_, st)| st.is_none())
                .map(|(c, _)| c.id())
                .collect();
            for (c, st) in &mut kids {
                if st.is_none() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            panic!("{what}: {left} processes still running after {limit:?} (stuck): {stuck:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kids.into_iter()
        .map(|(mut c, st)| {
            let mut out = String::new();
            if let Some(mut o) = c.stdout.take() {
                let _ = o.read_to_string(&mut out);
            }
            (st.unwrap(), out)
        })
        .collect()
}

/// Kills whatever children are left when a test fails.
struct Reap(Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: a signal to our own child (continue it if stopped).
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `q` quantile (0..1) of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// A small deterministic random source (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Advisory lock requests in the server: (granted, waiting).
fn advisory(s: &Server) -> (u32, u32) {
    let r = s.psql(
        "SELECT count(*) FILTER (WHERE granted) || ' ' || count(*) FILTER (WHERE NOT granted) \
         FROM pg_locks WHERE locktype = 'advisory'",
    );
    let (g, w) = r.split_once(' ').unwrap();
    (g.parse().unwrap(), w.parse().unwrap())
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < PATIENCE, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------
// A network partition

/// Holders in a network namespace, joined to the server by a veth pair;
/// the link is cut while they hold. The server ends their silent sessions
/// about `expire` after their last call, and waiters in our namespace get
/// the locks: the one behind a cut-off holder at once, the one behind a
/// cut-off holder *and* a cut-off waiter (granted the lock during the
/// partition, which it never hears of) within twice that. A holder that
/// calls during the partition learns LOCK_LOST within about `expire`; one
/// that calls after the link is back learns it at once; the cut-off waiter
/// reconnects once it can and waits anew, and gets the lock after the
/// waiter that overtook it, with a higher fencing token.
#[test]
fn a_holder_cut_off_by_a_network_partition_loses_the_lock_after_expire() {
    let _one = serial();
    let Some(net) = Netns::new() else { return };
    let Some(s) = Server::start_with("partition", &[&net.host_ip], &[&net.cidr]) else {
        return;
    };
    let ci = net.conninfo(s.port);
    let expire = 2.0;
    let (n1, n2) = (fresh("part"), fresh("part"));
    let mut h1 = Holder::spawn_with(&ci, &n1, expire, |c| net.enter(c));
    let mut h2 = Holder::spawn_with(&ci, &n2, expire, |c| net.enter(c));
    let mut q = Holder::spawn_with(&ci, &n1, expire, |c| net.enter(c));
    assert_eq!(h1.ask("lock exclusive 5").0, 0);
    assert_eq!(h2.ask("lock exclusive 5").0, 0);
    // They reach the server through the veth pair.
    let addrs = s.psql(
        "SELECT string_agg(DISTINCT host(client_addr), ',') FROM pg_stat_activity \
         WHERE application_name LIKE 'liblocking %'",
    );
    assert_eq!(addrs, net.ns_ip, "the holders' client addresses");
    // A cut-off waiter queued behind h1, and one of ours behind it.
    q.send("lock exclusive 60");
    wait_for("q waits", || advisory(&s).1 == 1);
    let (tx, got1) = channel();
    let (release1, rx) = channel::<()>();
    let w1 = {
        let (ci, n1) = (s.conninfo(), n1.clone());
        std::thread::spawn(move || {
            let mut w = pg_locker(&ci, &n1, 0.0, 0.0);
            w.acquire(Mode::Exclusive, Duration::from_secs(60)).unwrap();
            tx.send((Instant::now(), w.fencing_token().unwrap()))
                .unwrap();
            rx.recv().unwrap();
            w.unlock().unwrap();
        })
    };
    wait_for("w1 waits", || advisory(&s).1 == 2);

    // The holders' last calls, then the cut.
    assert_eq!(h1.ask("refresh").0, 0);
    assert_eq!(h2.ask("refresh").0, 0);
    let last = Instant::now();
    net.cut();
    let mut w2 = pg_locker(&s.conninfo(), &n2, 0.0, 0.0);
    w2.acquire(Mode::Exclusive, Duration::from_secs(30))
        .unwrap();
    let took2 = last.elapsed().as_secs_f64();
    let (at1, tok1) = got1.recv_timeout(PATIENCE).expect("w1 never got the lock");
    let took1 = at1.duration_since(last).as_secs_f64();
    println!(
        "partition: behind a cut-off holder the lock was free {took2:.2} s after its last call, \
         behind a cut-off holder and a cut-off waiter {took1:.2} s (expire {expire} s)"
    );
    assert!(
        took2 > expire * 0.8 && took2 < expire + 3.0,
        "freed after {took2:.2} s"
    );
    assert!(took1 < 2.0 * expire + 3.0, "freed after {took1:.2} s");

    // During the partition: no answer, LOCK_LOST within about expire.
    let t = Instant::now();
    let (rc, msg) = h1.ask("check");
    assert_eq!(rc, LOCK_LOST, "{msg}");
    assert!(
        t.elapsed() < Duration::from_secs_f64(expire + 1.5),
        "{:?}",
        t.elapsed()
    );
    // After it: LOCK_LOST at once.
    net.heal();
    let healed = Instant::now();
    let t = Instant::now();
    let (rc, msg) = h2.ask("check");
    assert_eq!(rc, LOCK_LOST, "{msg}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(h1.ask("unlock").0, LOCK_LOST);
    assert_eq!(h2.ask("unlock").0, LOCK_LOST);
    // The cut-off waiter connects again and waits behind w1.
    wait_for("q waits again", || advisory(&s).1 == 1);
    println!(
        "partition: the cut-off waiter was queued again {:.2} s after the link came back",
        healed.elapsed().as_secs_f64()
    );
    release1.send(()).unwrap();
    w1.join().unwrap();
    let (rc, msg) = q.read("lock");
    assert_eq!(rc, 0, "the cut-off waiter: {msg}");
    assert_eq!(q.ask("check").0, 0);
    let (rc, tok) = q.ask("token");
    assert_eq!(rc, 0, "{tok}");
    assert!(tok.parse::<u64>().unwrap() > tok1, "{tok} <= {tok1}");
    assert_eq!(q.ask("unlock").0, 0);
    // The holders work again through the healed link.
    assert_eq!(h1.ask("lock exclusive 5").0, 0);
    assert_eq!(h1.ask("unlock").0, 0);
    w2.unlock().unwrap();
    assert_eq!(h2.ask("lock shared 5").0, 0);
    assert_eq!(h2.ask("unlock").0, 0);
}

// ---------------------------------------------------------------------
// Two "hosts"

/// Processes in two network namespaces, each reaching the server through
/// its own veth pair, contend on one lock: never two inside at once (a
/// marker file made with O_EXCL), no lost update, every fencing token
/// above the last one written.
#[test]
fn processes_in_two_network_namespaces_exclude_each_other() {
    let _one = serial();
    let Some(a) = Netns::new() else { return };
    let Some(b) = Netns::new() else { return };
    let Some(s) = Server::start_with("hosts", &[&a.host_ip, &b.host_ip], &[&a.cidr, &b.cidr])
    else {
        return;
    };
    let work = support::scratch("postgres_net", "hosts");
    let counter = work.join("counter");
    let fence = work.join("fence");
    std::fs::write(&counter, "0\n").unwrap();
    let name = fresh("hosts");
    let (per, rounds) = (3, 30);
    let mut kids = Vec::new();
    for net in [&a, &b] {
        for _ in 0..per {
            let mut c = Command::new(pg_client());
            c.arg("count")
                .arg(net.conninfo(s.port))
                .arg(&name)
                .arg(&counter)
                .arg(&fence)
                .arg(rounds.to_string())
                .stdout(Stdio::piped());
            net.enter(&mut c);
            kids.push(c.spawn().unwrap());
        }
    }
    // Both hosts' sessions are seen in the server.
    let mut seen = std::collections::BTreeSet::new();
    let t0 = Instant::now();
    while seen.len() < 2 && t0.elapsed() < PATIENCE {
        for addr in s
            .psql("SELECT host(client_addr) FROM pg_stat_activity WHERE client_addr IS NOT NULL")
            .lines()
        {
            seen.insert(addr.to_string());
        }
        if kids.iter_mut().all(|k| k.try_wait().unwrap().is_some()) {
            break;
        }
    }
    for (st, out) in finish_all(kids, PATIENCE, "count") {
        assert!(st.success() && out.contains("done 0"), "{st}: {out}");
    }
    let n: u64 = std::fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        n,
        2 * per * rounds,
        "lost updates: the lock did not exclude"
    );
    assert!(
        seen.contains(&a.ns_ip) && seen.contains(&b.ns_ip),
        "client addresses seen: {seen:?}"
    );
}

// ---------------------------------------------------------------------
// Chaos

/// What was done to a worker.
struct Worker {
    child: Child,
    net: bool,
    stopped_until: Option<Instant>,
}

/// One line of the fenced store's log (see `store_op` in pg_client.c).
struct Op {
    op: char,
    tok: u64,
    max: u64,
    last_w: u64,
    value: i64,
}

/// Workers take the lock, draw a fencing token and write through a fenced
/// store (a read-modify-write of a counter, both halves carrying the
/// token) while, at random, holders and others are SIGKILLed (and
/// replaced), SIGSTOPped for longer than `expire` (and continued), and the
/// network namespace of half of them is cut off for longer than `expire`
/// (and healed). Afterwards: the store accepted no write out of token
/// order, every accepted write added exactly one to the value it read
/// (the counter equals the number of accepted writes), every write the
/// store refused came from a worker whose unlock then said LOCK_LOST (no
/// two sessions held the lock at once), every worker finished soon after
/// being told to, and no advisory lock is left in the server.
#[test]
fn chaos_kills_stops_and_cuts_never_break_the_fenced_store() {
    let _one = serial();
    let Some(net) = Netns::new() else { return };
    let Some(s) = Server::start_with("chaos", &[&net.host_ip], &[&net.cidr]) else {
        return;
    };
    let dir = support::scratch("postgres_net", "chaos");
    let name = fresh("chaos");
    let expire = 1.5;
    let seed = std::env::var("LOCKING_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("chaos: seed {seed} (LOCKING_CHAOS_SEED to repeat the schedule)");
    let mut rng = Rng(seed);
    let local = [s.conninfo(), s.conninfo(), s.tcp_conninfo()];
    let remote = net.conninfo(s.port);
    let spawn = |slot: usize| -> Worker {
        let net_slot = slot >= local.len();
        let ci = if net_slot { &remote } else { &local[slot] };
        let mut c = Command::new(pg_client());
        c.arg("chaos")
            .arg(ci)
            .arg(&name)
            .arg(&dir)
            .arg(expire.to_string())
            .stdout(Stdio::piped());
        if net_slot {
            net.enter(&mut c);
        }
        Worker {
            child: c.spawn().unwrap(),
            net: net_slot,
            stopped_until: None,
        }
    };
    let slots = 6;
    let mut live: Vec<Worker> = (0..slots).map(spawn).collect();
    let mut gone = Reap(Vec::new()); // killed workers, reaped at the end
    let (mut kills, mut stops, mut cuts) = (0, 0, 0);
    let mut cut_until: Option<Instant> = None;
    let run_for = Duration::from_secs(14);
    let start = Instant::now();
    let mut next = start + Duration::from_millis(600);
    let holder_slot = |live: &[Worker]| -> Option<usize> {
        let pid: u32 = std::fs::read_to_string(dir.join("holder"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        live.iter().position(|w| w.child.id() == pid)
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while start.elapsed() < run_for {
            let now = Instant::now();
            for w in &mut live {
                if w.stopped_until.is_some_and(|t| t <= now) {
                    // SAFETY: a signal to our own child.
                    unsafe { libc::kill(w.child.id() as i32, libc::SIGCONT) };
                    w.stopped_until = None;
                }
            }
            if cut_until.is_some_and(|t| t <= now) {
                net.heal();
                cut_until = None;
            }
            if stops == 0 {
                // First, for sure, a holder stopped in its critical section.
                if let Some(i) = holder_slot(&live) {
                    // SAFETY: a signal to our own child.
                    unsafe { libc::kill(live[i].child.id() as i32, libc::SIGSTOP) };
                    let ms = (expire * 1000.0) as u64 + 500;
                    live[i].stopped_until = Some(now + Duration::from_millis(ms));
                    stops += 1;
                }
            } else if now >= next {
                // The holder half of the time, else anyone.
                let target = match (rng.below(2), holder_slot(&live)) {
                    (0, Some(i)) => i,
                    _ => rng.below(slots as u64) as usize,
                };
                let kind = rng.below(5);
                if kind < 2 {
                    let w = &mut live[target];
                    if w.stopped_until.is_none() {
                        // SAFETY: a signal to our own child.
                        unsafe { libc::kill(w.child.id() as i32, libc::SIGSTOP) };
                        let ms = (expire * 1000.0) as u64 + 200 + rng.below(1000);
                        w.stopped_until = Some(now + Duration::from_millis(ms));
                        stops += 1;
                    }
                } else if kind < 4 && live[target].stopped_until.is_none() {
                    // (A stopped worker is left to report what it finds
                    // when it is continued.)
                    let old = std::mem::replace(&mut live[target], spawn(target));
                    let mut child = old.child;
                    let _ = child.kill();
                    let _ = child.wait();
                    gone.0.push(child);
                    kills += 1;
                } else if cut_until.is_none() {
                    net.cut();
                    let ms = (expire * 1000.0) as u64 + 500 + rng.below(1500);
                    cut_until = Some(now + Duration::from_millis(ms));
                    cuts += 1;
                }
                next = now + Duration::from_millis(300 + rng.below(600));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }));
    if cut_until.is_some() {
        net.heal();
    }
    for w in &live {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(w.child.id() as i32, libc::SIGCONT) };
    }
    if let Err(p) = result {
        drop(Reap(live.into_iter().map(|w| w.child).collect()));
        std::panic::resume_unwind(p);
    }
    std::fs::write(dir.join("stop"), "").unwrap();
    let told = Instant::now();
    let nets: Vec<bool> = live.iter().map(|w| w.net).collect();
    let done = finish_all(
        live.into_iter().map(|w| w.child).collect(),
        Duration::from_secs(30),
        "chaos workers after the stop",
    );
    let stopped_in = told.elapsed();
    let mut killed_out = Vec::new();
    for c in &mut gone.0 {
        let mut out = String::new();
        if let Some(mut o) = c.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        killed_out.push(out);
    }

    // What the workers said.
    let mut failures = Vec::new();
    let mut sums = std::collections::BTreeMap::<String, u64>::new();
    let mut lost = 0;
    for ((st, out), net_slot) in done.iter().zip(&nets) {
        if !st.success() {
            failures.push(format!("a worker (net {net_slot}) exited {st}: {out}"));
        }
        if !out.contains("done ") {
            failures.push(format!("a worker did not finish: {out}"));
        }
    }
    for out in done.iter().map(|(_, o)| o).chain(killed_out.iter()) {
        for l in out.lines() {
            if l.starts_with("FAIL") {
                failures.push(l.to_string());
            }
            if l.starts_with("lost ") {
                lost += 1;
            }
            if let Some(rest) = l.strip_prefix("done ") {
                for kv in rest.split(' ') {
                    if let Some((k, v)) = kv.split_once('=') {
                        *sums.entry(k.to_string()).or_default() += v.parse::<u64>().unwrap();
                    }
                }
            }
        }
    }

    // The store's log, replayed.
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    let ops: Vec<Op> = log
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 6, "a torn log line: {l:?}");
            Op {
                op: f[0].chars().next().unwrap(),
                tok: f[1].parse().unwrap(),
                max: f[2].parse().unwrap(),
                last_w: f[3].parse().unwrap(),
                value: f[4].parse().unwrap(),
            }
        })
        .collect();
    let (mut max, mut last_w, mut value, mut read) = (0u64, 0u64, 0i64, None::<(u64, i64)>);
    let (mut writes, mut refused) = (0i64, 0);
    for (i, o) in ops.iter().enumerate() {
        match o.op {
            'r' => {
                assert!(o.tok >= max, "line {i}: a read accepted below the max");
                max = o.tok;
                read = Some((o.tok, value));
            }
            'w' => {
                assert!(
                    o.tok >= max && o.tok > last_w,
                    "line {i}: a write accepted out of token order ({} after {last_w}, max {max})",
                    o.tok
                );
                let (rt, rv) = read.expect("a write before any read");
                assert_eq!(
                    rt, o.tok,
                    "line {i}: written with a token that did not read last"
                );
                assert_eq!(o.value, rv + 1, "line {i}: a lost update");
                max = o.tok;
                last_w = o.tok;
                value = o.value;
                writes += 1;
            }
            'R' | 'W' => {
                assert!(
                    o.tok < max || (o.op == 'W' && o.tok <= last_w),
                    "line {i}: refused without cause"
                );
                refused += 1;
            }
            c => panic!("line {i}: unknown op {c}"),
        }
        assert_eq!(
            (o.max, o.last_w, o.value),
            (max, last_w, value),
            "line {i}: the store's state"
        );
    }
    println!(
        "chaos: {:.1} s, {kills} kills, {stops} stops, {cuts} cuts; {} store operations, \
         {writes} writes accepted, {refused} refused; {lost} LOCK_LOST; \
         the workers that finished: {sums:?}; \
         all finished {:.2} s after the stop",
        run_for.as_secs_f64(),
        ops.len(),
        stopped_in.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failures, the first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert_eq!(
        value, writes,
        "the counter is not the number of accepted writes"
    );
    assert!(writes >= 20, "too little progress: {writes} writes");
    assert!(
        kills > 0 && stops > 0 && cuts > 0,
        "no fault of some kind was injected"
    );
    // The first stop caught a holder in its critical section.
    assert!(lost > 0, "no worker ever lost the lock");
    // No advisory lock left (a cut-off session ends within about expire).
    wait_for("no advisory lock is left", || advisory(&s) == (0, 0));
}

// ---------------------------------------------------------------------
// 100 waiters

/// One queue of 100 waiting processes.
struct Drain {
    waits: Vec<f64>,
    total: f64,
    max_conns: u32,
}

fn drain(s: &Server, dir: &Path, kind: &str, lock: &str) -> Drain {
    let counter = dir.join(format!("counter-{kind}"));
    std::fs::write(&counter, "0\n").unwrap();
    let ci = s.conninfo();
    let mut gate = Command::new(pg_client())
        .args(["gate", kind, &ci, lock])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut gate_out = std::io::BufReader::new(gate.stdout.take().unwrap());
    let mut line = String::new();
    gate_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "held", "the gate: {line}");
    // The connections, sampled all along (until `_stop` is dropped).
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = Stop(stop.clone());
    let max_conns = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, max_conns) = (stop.clone(), max_conns.clone());
        let (bin, sock, port) = (s.bin.clone(), s.sock.clone(), s.port);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = Command::new(bin.join("psql"))
                    .args(["-XAtq", "-h"])
                    .arg(&sock)
                    .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-c"])
                    .arg("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
                    .output()
                    .unwrap();
                if let Ok(n) = String::from_utf8_lossy(&out.stdout).trim().parse::<usize>() {
                    max_conns.fetch_max(n, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let n = 100;
    let kids = Reap(
        (0..n)
            .map(|_| {
                Command::new(pg_client())
                    .args(["waiter", kind, &ci, lock])
                    .arg(&counter)
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    wait_for("100 waiters queued", || advisory(s) == (1, n));
    let now: usize = s
        .psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        .parse()
        .unwrap();
    max_conns.fetch_max(now, Ordering::SeqCst);
    writeln!(gate.stdin.as_mut().unwrap(), "go").unwrap();
    line.clear();
    gate_out.read_line(&mut line).unwrap();
    let t0: f64 = line
        .trim()
        .strip_prefix("released ")
        .unwrap_or_else(|| panic!("the gate: {line}"))
        .parse()
        .unwrap();
    assert!(gate.wait().unwrap().success());
    let mut kids = kids;
    let done = finish_all(std::mem::take(&mut kids.0), PATIENCE, "100 waiters");
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let mut grants: Vec<(f64, f64, u64)> = Vec::new();
    for (st, out) in &done {
        assert!(st.success(), "a waiter exited {st}: {out}");
        let l = out
            .lines()
            .find_map(|l| l.strip_prefix("got "))
            .unwrap_or_else(|| panic!("a waiter said: {out}"));
        let f: Vec<&str> = l.split(' ').collect();
        grants.push((
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
        ));
    }
    let count: usize = std::fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(count, n as usize, "{kind}: lost updates");
    grants.sort_by(|a, b| a.1.total_cmp(&b.1));
    if kind == "lib" {
        for w in grants.windows(2) {
            assert!(
                w[1].2 > w[0].2,
                "fencing tokens out of grant order: {} then {}",
                w[0].2,
                w[1].2
            );
        }
    }
    let mut waits: Vec<f64> = grants
        .iter()
        .map(|(called, granted, _)| granted - called.max(t0))
        .collect();
    waits.sort_by(f64::total_cmp);
    Drain {
        total: grants.last().unwrap().1 - t0,
        waits,
        max_conns: max_conns.load(Ordering::SeqCst) as u32,
    }
}

/// 100 processes wait on one lock at once (all queued in the server
/// before the holder lets go): every one gets it, in turn (no overlap, no
/// lost update, fencing tokens in grant order), none is stuck, and the
/// server never has more than about 100 sessions. The same queue of raw
/// `pg_advisory_lock` sessions runs beside it; the p99 waits are printed,
/// not asserted.
#[test]
fn a_hundred_waiters_at_once_all_get_the_lock_in_turn() {
    let _one = serial();
    let Some(s) = Server::start("hundred") else {
        return;
    };
    let dir = support::scratch("postgres_net", "hundred");
    // The lock's row exists before the waiters start (a first use creates
    // the table).
    drop(pg_locker(&s.conninfo(), "warm-up", 0.0, 0.0));
    let lib = drain(&s, &dir, "lib", "hundred");
    let raw = drain(&s, &dir, "raw", "4242");
    let ms = |v: f64| v * 1000.0;
    for (what, d) in [
        ("liblocking (lock, fencing token, unlock)", &lib),
        ("raw pg_advisory_lock/pg_advisory_unlock", &raw),
    ] {
        println!(
            "100 waiters, {what}: wait p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             queue drained in {:.1} ms ({:.2} ms a hand-over); at most {} client sessions",
            ms(quantile(&d.waits, 0.5)),
            ms(quantile(&d.waits, 0.99)),
            ms(*d.waits.last().unwrap()),
            ms(d.total),
            ms(d.total) / 100.0,
            d.max_conns
        );
    }
    println!(
        "100 waiters: p99 wait ratio liblocking/raw {:.2}",
        quantile(&lib.waits, 0.99) / quantile(&raw.waits, 0.99)
    );
    for d in [&lib, &raw] {
        // 100 waiters, the gate, the sampler's psql, and a little slack.
        assert!(d.max_conns <= 100 + 4, "{} client sessions", d.max_conns);
        assert!(
            d.max_conns >= 100,
            "the sampler saw {} sessions",
            d.max_conns
        );
    }
}
