/*
 * opencreate.pml: the opencreate method of docs/PROTOCOL.md.
 *
 * E is absent or names an inode.  Every acquisition makes its own inode
 * (O_TMPFILE, record written before it is linked), so inode number = token:
 * inode t holds the record of acquisition t, and no number is reused while
 * anybody has it open (holders and breakers keep a descriptor).  guard[i] is
 * the OFD write lock on byte 0 of inode i (owner pid+1, 0 = free); the kernel
 * drops it when its owner crashes.
 *
 * BUGGY: the breaker verifies "still at E and still stale" *before* taking
 * the guard instead of under it.
 */
#include "common.pml"

byte E;              /* inode at E, 0 = absent */
byte guard[NTOK];

/* Breaker's verification: inode fd still at E, its holder still stale (a dead
   holder stays dead; an alive one may have refreshed, or be expired now). */
inline verify_stale() {
	if
	:: CRASH
	:: atomic { E == fd && crashed[PID(fd)] -> exp = false }
#ifndef NO_EXPIRE
	:: atomic { E == fd -> exp = true }
#endif
	:: !(E == fd && crashed[PID(fd)]) -> goto giveup
	fi
}

inline take_guard(i) {
	/* fcntl(F_OFD_SETLKW, byte 0): blocks while another description has it */
	if
	:: CRASH
	:: atomic { guard[i] == 0 -> guard[i] = me + 1 }
	fi
}

active [NPROC] proctype P() {
	byte me = _pid;
	byte k, t, fd, q, i;
	bool stale, exp;

	do
	:: k < NCALLS ->
		t = TOK(me, k); k++;
acquire:
		/* open(O_TMPFILE), write the record: private inode t */
		if :: CRASH :: skip fi;
		/* linkat(fd, "", D, E, AT_EMPTY_PATH): never replaces E */
		if
		:: CRASH
		:: atomic { E == 0 -> E = t }; goto held
		:: atomic { E != 0 }                       /* EEXIST */
		fi;
		/* openat(D, E): the breaker's own descriptor on the inode at E */
		if
		:: CRASH
		:: atomic { E != 0 -> fd = E }
		:: atomic { E == 0 } -> goto acquire       /* ENOENT: retry */
		fi;
		/* read the record of inode fd and judge it */
		if :: CRASH :: judge(fd) fi;
		if
		:: !stale -> fd = 0; goto acquire          /* wait, then retry */
		:: stale
		fi;
#ifndef BUGGY
		take_guard(fd);
		verify_stale();        /* fstatat(D, E) == fd, re-read mtime */
#else
		verify_stale();        /* BUG: checked before the guard is held */
		take_guard(fd);
#endif
		/* unlinkat(D, E) */
		if
		:: CRASH
		:: atomic {
#ifndef BUGGY
			assert(E == fd);   /* the guard made verify-then-unlink atomic */
#endif
			E = 0;
			broken[fd] = broken[fd] || exp
		   }
		fi;
		/* close(fd): drops the guard */
giveup:
		atomic { guard[fd] = (guard[fd] == me+1 -> 0 : guard[fd]); fd = 0; stale = false; exp = false };
		goto acquire;
held:
		enter_cs(t);
		if :: CRASH :: leave_cs() fi;
		/* release: guard our own inode t, verify it is still at E */
		take_guard(t);
		if
		:: CRASH
		:: atomic { E == t }
		:: atomic { E != t } -> goto closed        /* LOCK_LOST */
		fi;
		/* unlinkat(D, E) */
		if
		:: CRASH
		:: atomic {
#ifndef BUGGY
			assert(E == t);    /* ditto */
#endif
			E = 0
		   }
		fi;
closed:
		/* close: drops the guard */
		guard[t] = 0
	:: else -> break
	od;
	t = 0;
	goto done;
crash:
	atomic {
		crashed[me] = true; incs[me] = false; cstok[me] = 0;
		i = 0;
		do   /* the kernel drops every OFD lock of the dead process */
		:: i < NTOK -> guard[i] = (guard[i] == me+1 -> 0 : guard[i]); i++
		:: else -> break
		od;
		i = 0; t = 0; fd = 0; stale = false; exp = false
	};
done:
	skip
}
