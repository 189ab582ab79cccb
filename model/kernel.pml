/*
 * kernel.pml: the kernel method, as src/method/kernel.rs implements it
 * (try_acquire, break_stale/break_guarded, release) and src/locker.rs drives
 * it (lock: attempt, judge the holder, break if stale, wait, retry).
 *
 * E names an inode (or is absent after a break).  Inodes are numbered as
 * they are created (never reused: whoever could compare a number keeps the
 * inode open).  b0[i] / b1[i] are the OFD write locks on bytes 0 and 1 of
 * inode i (owner pid+1, 0 = free), dropped by the kernel when the owner
 * crashes or closes its descriptor; rec[i] is the token of the last record
 * written into inode i (its mtime is that write's).  Byte 2 (waiters' read
 * locks) and the touch on release only serve wake-ups and are left out: a
 * waiter simply retries.  Each Locker (process) keeps its descriptor fd
 * between lock calls.
 *
 * Each process is one Locker, blocking or not (blk, chosen at the start):
 * blocking = timeout forever and expire never, so it waits in F_OFD_SETLKW
 * on [0, 2) and never judges anybody.  A non-blocking Locker judges the
 * holder it finds dead (record of a crashed process) or, unless NO_EXPIRE,
 * expired, and then breaks.  NO_BLOCK: every Locker non-blocking.  Safety
 * runs lose nothing by it: a blocking Locker's SETLKW [0, 2) is a successful
 * SETLK [0, 2) that a non-blocking one may take at the same moment, and
 * their steps after it are the same, so every state reachable with blocking
 * Lockers is reachable with non-blocking ones.  Liveness runs keep both
 * kinds (weak fairness: a sleeping SETLKW is only sure to be granted if its
 * bytes stay free).
 *
 * BUGGY: having got byte 0 alone, the acquirer does not wait for byte 1 (the
 * breaker's guard) before it verifies and writes.
 * OLD_ACQUIRE: the acquirer as docs/PROTOCOL.md describes it: if
 * F_OFD_SETLK [0, 2) fails it reports the holder busy, never trying byte 0
 * alone.  Has the livelock of README.md with expire.
 */
#include "common.pml"

#define NINO (NPROC*ITER + 2)

byte E;               /* inode at E, 0 = absent */
byte nino;            /* inodes created so far */
byte b0[NINO];
byte b1[NINO];
byte rec[NINO];

#define MINE(x)   x = (x == me+1 -> 0 : x)

/*
 * A breaker re-checking the age of a record it judged expired (rd, read
 * with its mtime at the busy step).  Safety runs: "no longer expired" at
 * any time (as if the wall clock stepped back).  Liveness runs assume the
 * clock does not step back: an age once above expire stays so until the
 * file is written again, i.e. until another record is in it.
 */
#ifdef LIVENESS
#define YOUNG_AGAIN  (rec[fd] != rd)
#else
#define YOUNG_AGAIN  true
#endif

active [NPROC] proctype P() {
	byte me = _pid;
	byte k, t, fd, rd, q, i;
	bool exp, blk;

#ifndef NO_BLOCK
	if :: blk = true :: blk = false fi;
#endif
	do
	:: k < NCALLS ->
		t = TOK(me, k); k++;
open:
		/* open(): openat(D, E, O_RDWR|O_CREAT|O_NOFOLLOW), unless still open */
		if
		:: fd != 0
		:: fd == 0 ->
			if
			:: CRASH
			:: atomic { E != 0 -> fd = E }
			:: atomic { E == 0 -> nino++; assert(nino < NINO); E = nino; fd = E }
			fi
		fi;
trylock:
#ifndef NO_BLOCK
		if
		:: blk ->
			/* F_OFD_SETLKW [0, 2): sleeps until both bytes are free */
			if
			:: CRASH
			:: atomic { b0[fd] == 0 && b1[fd] == 0 -> b0[fd] = me+1; b1[fd] = me+1 }
			fi;
			goto verify
		:: !blk
		fi;
#endif
		/* F_OFD_SETLK [0, 2) */
		if
		:: CRASH
		:: atomic { b0[fd] == 0 && b1[fd] == 0 -> b0[fd] = me+1; b1[fd] = me+1 }; goto verify
		:: atomic { b0[fd] != 0 || b1[fd] != 0 }                      /* EAGAIN */
		fi;
#ifndef OLD_ACQUIRE
		/* F_OFD_SETLK byte 0 alone */
		if
		:: CRASH
		:: atomic { b0[fd] == 0 -> b0[fd] = me+1 }
		:: atomic { b0[fd] != 0 } -> goto busy                          /* EAGAIN */
		fi;
#ifndef BUGGY
		/* F_OFD_SETLKW byte 1: a breaker holds it, for a few steps */
		if
		:: CRASH
		:: atomic { b1[fd] == 0 -> b1[fd] = me+1 }
		fi;
#endif
#else
		goto busy;
#endif
verify:
		/* fstatat(D, E): is the inode locked still the one at E? */
		if
		:: CRASH
		:: atomic { E == fd }
		:: atomic { E != fd } -> goto reopen      /* broken meanwhile */
		fi;
		/* pwrite the owner record (renews the mtime) */
		if :: CRASH :: rec[fd] = t fi;
		/* unlock byte 1 */
		if :: CRASH :: MINE(b1[fd]) fi;
		enter_cs(t);
		if :: CRASH :: leave_cs() fi;
		/* release: fstatat(D, E) (lost if not at E), unlock byte 0, and
		   close if lost.  Only whether fd is kept depends on the fstatat, and
		   either way is harmless, so it is folded into the unlock. */
		if
		:: CRASH
		:: atomic { MINE(b0[fd]); fd = (E == fd -> fd : 0) }
		fi;
		goto next;
busy:
		/* fstatat(D, E): our inode still at E?  If not it was broken: the
		   lock at E may be free (close, reopen at once) */
		if
		:: CRASH
		:: atomic { E == fd }
		:: atomic { E != fd } -> goto reopen
		fi;
		/* holder(): fstat and read the record */
		if :: CRASH :: rd = rec[fd] fi;
		/* lock(): judge it.  owner::judge: dead if its process crashed (no
		   record, rd 0: unknown); else the age may exceed expire (any time:
		   a holder can be stuck); else alive: wait, then retry */
		if
		:: CRASH
		:: atomic { rd != 0 && crashed[PID(rd)] -> exp = false }
#ifndef NO_EXPIRE
		:: exp = true
#endif
		:: atomic { rd == 0 || !crashed[PID(rd)] -> rd = 0 }; goto trylock
		fi;
		/* break_stale: F_OFD_SETLK byte 1 */
		if
		:: CRASH
		:: atomic { b1[fd] == 0 -> b1[fd] = me+1 }
		:: atomic { b1[fd] != 0 -> rd = 0; exp = false }; goto trylock   /* busy: wait a little */
		fi;
		/* break_guarded: fstatat(D, E): still our inode? */
		if
		:: CRASH
		:: atomic { E == fd }
		:: atomic { E != fd } -> goto reopen      /* already broken */
		fi;
		/* F_OFD_GETLK byte 0: locked by anybody? */
		if
		:: CRASH
		:: atomic { b0[fd] != 0 }
		:: atomic { b0[fd] == 0 } -> goto giveup  /* released meanwhile */
		fi;
		/* still stale?  Expired: fstat; the age is that of the last record
		   written, and still exceeds expire, or not.  Dead: read the record,
		   then judge it. */
		if
		:: CRASH
		:: atomic { exp -> rd = rec[fd]; goto unlink }
		:: atomic { exp && YOUNG_AGAIN -> goto giveup }
		:: atomic { !exp -> rd = rec[fd] }
		fi;
		if
		:: CRASH
		:: atomic { rd != 0 && crashed[PID(rd)] }
		:: atomic { rd == 0 || !crashed[PID(rd)] } -> goto giveup
		fi;
unlink:
		/* unlinkat(D, E): nobody else can have changed E since the fstatat,
		   which we made holding byte 1 of the inode at E */
		if
		:: CRASH
		:: atomic { assert(E == fd); E = 0; broken[rd] = broken[rd] || exp }
		fi;
reopen:
		/* close (drops every lock of this description); the next open
		   creates or opens whatever is at E */
		if
		:: CRASH
		:: atomic { MINE(b0[fd]); MINE(b1[fd]); fd = 0; rd = 0; exp = false }
		fi;
		goto open;
giveup:
		/* unlock byte 1; try again at once */
		if
		:: CRASH
		:: atomic { MINE(b1[fd]); rd = 0; exp = false }
		fi;
		goto trylock;
next:
		skip
	:: else -> break
	od;
	goto done;
crash:
	atomic {
		crashed[me] = true; incs[me] = false; cstok[me] = 0;
		i = 0;
		do   /* the kernel drops every OFD lock of the dead process */
		:: i < NINO -> MINE(b0[i]); MINE(b1[i]); i++
		:: else -> break
		od;
		i = 0; k = 0; t = 0; fd = 0; rd = 0; exp = false; blk = false
	};
done:
	atomic { t = 0; fd = 0; blk = false }
}
