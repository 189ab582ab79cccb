/*
 * common.pml: what the three method models share.
 *
 * NPROC processes each make up to ITER lock calls (acquire -> critical
 * section -> release).  Any process may crash before any of its steps.
 * Compile-time switches:
 *   NO_EXPIRE  waiters never judge a holder expired, only dead
 *   LIVENESS   the last process never crashes and makes one lock call;
 *              the claim `live` says it eventually gets the lock
 *   BUGGY      the method file's deliberately broken variant
 *   NPROC, ITER  processes, lock calls per process (default 3 and 2)
 */

#ifndef NPROC
#define NPROC 3
#endif
#ifndef ITER
#define ITER 2
#endif

/* Acquisition tokens.  Process p's k-th lock call uses TOK(p,k): every token
   is used by one acquisition only (fresh), and its owner is PID(t). 0 = none. */
#define NTOK      (NPROC*ITER + 1)
#define TOK(p,k)  ((p)*ITER + (k) + 1)
#define PID(t)    (((t) - 1) / ITER)

bool crashed[NPROC];   /* a crash is for good: the judgement "dead" */
bool incs[NPROC];      /* ghost: process is in its critical section */
byte cstok[NPROC];     /* ghost: ... holding the lock of this token */
bool broken[NTOK];     /* ghost: an expire-judging breaker broke this token */
bool wacq;             /* ghost: the LIVENESS waiter has had the lock */

#ifdef LIVENESS
#define WAITER    (NPROC - 1)
#define CANCRASH  (me != WAITER)
#define NCALLS    (me == WAITER -> 1 : ITER)
#else
#define CANCRASH  true
#define NCALLS    ITER
#endif

/* Use as an option of the `if` that performs a step: crash instead of it.
   Beware: no `else` (nor a nested `if` using `else`) among the other options
   of such an `if`: spin evaluates that `else` against CRASH too, so it would
   never be taken.  Write the complementary guard out instead. */
#define CRASH  CANCRASH -> goto crash

/*
 * A waiter's judgement of the holder of token tok, made from what it read:
 * dead (its process crashed), expired (the age may exceed `expire` at any
 * moment, since a holder can be stuck), or alive.  A dead holder is always
 * judged stale; an alive one only by expire.
 */
inline judge(tok) {
	if
	:: crashed[PID(tok)] -> stale = true; exp = false
#ifndef NO_EXPIRE
	:: true -> stale = true; exp = true
#endif
	:: !crashed[PID(tok)] -> stale = false; exp = false
	fi
}

/*
 * Entering the critical section with the lock of token tok.  SAFETY: if
 * another process is in its critical section, one of the two locks was
 * broken by an expire judgement (a holder can be stuck for longer than
 * `expire`, even before it starts its critical section).  With NO_EXPIRE no
 * other process may be in it at all.
 */
inline enter_cs(tok) {
	atomic {
		q = 0;
		do
		:: q < NPROC ->
			if
			:: q != me ->
#ifdef NO_EXPIRE
				assert(!incs[q]);
#else
				assert(!incs[q] || broken[cstok[q]] || broken[tok]);
#endif
			:: q == me
			fi;
			q++
		:: else -> break
		od;
		q = 0;
		incs[me] = true;
		cstok[me] = tok;
#ifdef LIVENESS
		wacq = wacq || me == WAITER
#endif
	}
}

inline leave_cs() {
	d_step { incs[me] = false; cstok[me] = 0 }
}

/* shared.pml states its own claim (OWN_CLAIM) */
#if defined(LIVENESS) && !defined(OWN_CLAIM)
ltl live { <> wacq }
#endif
