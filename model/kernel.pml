/*
 * kernel.pml: the kernel method of docs/PROTOCOL.md.
 *
 * E names an inode (or is absent after a break).  Inodes are numbered as
 * they are created (never reused: whoever could compare a number keeps the
 * inode open).  b0[i] / b1[i] are the OFD write locks on bytes 0 and 1 of
 * inode i (owner pid+1, 0 = free), dropped by the kernel when the owner
 * crashes; rec[i] is the token of the last record written into inode i (its
 * mtime is that write's).  Byte 2 (waiters' read locks) and the touch on
 * release only serve wake-ups and are left out: a waiter simply retries.
 * Each Locker keeps its descriptor fd between lock calls.  Breaks are
 * expire-only: the crash of a holder frees byte 0 by itself.
 *
 * BUGGY: the acquirer locks byte 0 only, not bytes [0, 2), so it verifies
 * inode-at-E and writes its record without holding the break guard.
 * TRYLOCK0: proposed fix for a livelock of the protocol as written (see
 * README.md): a breaker holding byte 1 try-locks byte 0 instead of only
 * testing it.
 */
#include "common.pml"

#define NINO (NPROC*ITER + 2)

byte E;               /* inode at E, 0 = absent */
byte nino;            /* inodes created so far */
byte b0[NINO];
byte b1[NINO];
byte rec[NINO];

#define MINE(x)   x = (x == me+1 -> 0 : x)

active [NPROC] proctype P() {
	byte me = _pid;
	byte k, t, fd, rd, q, i;

	do
	:: k < NCALLS ->
		t = TOK(me, k); k++;
open:
		/* openat(D, E, O_RDWR|O_CREAT|O_NOFOLLOW), unless still open */
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
		/* fcntl(F_OFD_SETLK, write lock on [0, 2)) */
		if
		:: CRASH
#ifndef BUGGY
		:: atomic { b0[fd] == 0 && b1[fd] == 0 -> b0[fd] = me+1; b1[fd] = me+1 }
		:: atomic { b0[fd] != 0 || b1[fd] != 0 } -> goto waiting   /* EAGAIN */
#else
		:: atomic { b0[fd] == 0 -> b0[fd] = me+1 }
		:: atomic { b0[fd] != 0 } -> goto waiting
#endif
		fi;
		/* fstatat(D, E): is the inode locked still the one at E? */
verify:
		if
		:: CRASH
		:: atomic { E == fd }
		:: atomic { E != fd -> MINE(b0[fd]); MINE(b1[fd]); fd = 0 }; goto open   /* close, reopen */
		fi;
		/* write the owner record (renews the mtime) */
		if :: CRASH :: rec[fd] = t fi;
		/* unlock byte 1 */
		if :: CRASH :: MINE(b1[fd]) fi;
		enter_cs(t);
		if :: CRASH :: leave_cs() fi;
		/* release: unlock byte 0 (then touch E for waiters; not modelled) */
		if :: CRASH :: b0[fd] = 0 fi;
		goto next;
waiting:
		/* the range is taken: wait and retry, or judge the holder expired */
		if
		:: true -> goto trylock
#ifndef NO_EXPIRE
		:: true -> skip
#endif
		fi;
		/* break: fcntl(F_OFD_SETLK, byte 1) */
		if
		:: CRASH
		:: atomic { b1[fd] == 0 -> b1[fd] = me+1 }
		:: atomic { b1[fd] != 0 } -> goto trylock
		fi;
		/* fstatat(D, E): still our inode? */
		if
		:: CRASH
		:: atomic { E == fd }
		:: atomic { E != fd -> MINE(b1[fd]); fd = 0 }; goto open
		fi;
		/* byte 0 still locked?  As written: F_OFD_GETLK.  TRYLOCK0: F_OFD_SETLK
		   on byte 0 instead; if that gets it, the lock was free, we hold [0, 2)
		   and carry on as an acquirer. */
		if
		:: CRASH
		:: atomic { b0[fd] != 0 }
#ifndef TRYLOCK0
		:: atomic { b0[fd] == 0 -> MINE(b1[fd]) }; goto trylock
#else
		:: atomic { b0[fd] == 0 -> b0[fd] = me+1 }; goto verify
#endif
		fi;
		/* fstat: age (of the last record written) still exceeds expire? */
		if
		:: CRASH
		:: rd = rec[fd]
		:: atomic { MINE(b1[fd]) }; goto trylock
		fi;
		/* unlinkat(D, E) */
		if
		:: CRASH
		:: atomic { E = 0; broken[rd] = true }
		fi;
		/* unlock byte 1 and close: the next open creates a fresh E */
		if
		:: CRASH
		:: atomic { MINE(b1[fd]); fd = 0; rd = 0 }
		fi;
		goto open;
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
		i = 0; rd = 0
	};
done:
	atomic { t = 0; fd = 0 }
}
