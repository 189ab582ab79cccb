/*
 * shared.pml: shared (reader) locks and fencing tokens, docs/PROTOCOL.md
 * "Shared locks" (S1-S6, X1-X4) and "Fencing tokens", as core/src/shared.rs
 * and the Locker (acquire, enter_shared, drain_readers, fencing_token)
 * implement them.  README.md says what is and is not proven.
 *
 * The gate.  Every name's exclusive entry E (the 0.1 protocol of the method)
 * is the gate.  It is modelled as an abstract exclusive lock with what the
 * per-method models (mkdir.pml, opencreate.pml, kernel.pml) prove of it: at
 * most one holder at a time (taking it is one step, G: holder pid+1, 0 =
 * free); a waiter reads the holder, judges it later (dead: the process
 * crashed; expired: at any moment, unless NO_EXPIRE), then breaks it, and
 * the break removes exactly the incarnation it judged, and only if the
 * holder has not refreshed since the read (the mkdir generation rename; the
 * guard re-check of opencreate and kernel).  Release, check and refresh act
 * on our own incarnation only (release = check + remove, atomically).  Every
 * take and every shared entry uses a fresh token, so a name judged once
 * never comes back: a read stays "valid" (rok) until the incarnation it
 * named ends and "fresh" (rfresh) until its holder refreshes.
 *
 * The readers directory E+r.  Per process p: rtmp[p] its private ~r.T file
 * (created in E+r, O_EXCL), rent[p] its shared entry r.T.g (renamed from
 * ~r.T; at most one per process: a process holds one lock at a time and an
 * entry outlives it only if it crashes).  dok[p]: p's descriptor on E+r is
 * on the directory now at that name (an rmdir ends that; files can no longer
 * be created through it; it is no longer used once the entry is in
 * place, when dok[p] is reset, as after a crash).  The method marker
 * m.<method> is left out (removed by the drain like ~r.*, never a holder).
 *
 * Processes.  NPROC processes, ITER lock calls each; every call is
 * exclusive or shared (nondeterministic).  One step per syscall on shared
 * state; a crash may replace any step (CRASH): the process stops for good,
 * its gate, private file and shared entry stay until judged dead and
 * removed.
 *
 *   shared:    S1 take the gate; S2 open E+r, making it if missing; S3
 *              create ~r.T through that descriptor (ENOENT: the directory
 *              was removed, start over), rename ~r.T -> r.T.0 (ENOENT: a
 *              writer removed our file, start over); S4 draw the fencing
 *              token; S5+S6 release the gate, which verifies it was still
 *              ours (LOST: unlink r.T.0, start over); granted.  Hold:
 *              refresh (rename r.T.g -> r.T.g+1: LOST if gone) or not;
 *              release = unlink r.T.g (LOST if gone).
 *   exclusive: X1 take the gate; X2 keeping it, any number of: judge a
 *              shared entry (read its name r.T.g, judge; stale: unlink
 *              exactly that name; alive: wait, then refresh the gate (LOST:
 *              start over), or look again at once, or time out (release
 *              the gate, the call fails)), or remove a leftover ~r.*; X3
 *              rmdir E+r, which succeeds only when it is empty (or absent):
 *              the proof that no shared holder is left; X4 only if X2 had
 *              to wait: verify the gate is still ours (else start over);
 *              granted.  Hold: refresh the gate (LOST if gone), or ask for
 *              the fencing token (draw, then check the gate: LOST, no
 *              token), or neither; release the gate (LOST if gone).
 *
 * Safety (assertion at every grant, i.e. when acquire returns OK): no other
 * holder if the grant is exclusive, no exclusive holder if it is shared.  A
 * holder stops being one (incs[p] cleared) when it releases, crashes, or
 * when its lock is broken: its gate (exclusive) or its shared entry
 * (shared) removed by a breaker.  A grant whose lock was broken before the
 * call returned is not a holder either.  The check/refresh and the release
 * of every holder assert that they report LOST exactly when it was broken.
 * Every break of a shared entry asserts it removed what it judged, not a
 * refreshed entry.
 *
 * Fencing.  A token counts once it is the acquisition's: shared, drawn at
 * S4 and granted unbroken; exclusive, drawn at the first fencing_token
 * call and the check after the draw passed.  Asserted: if A was granted
 * before B (in the order the acquire calls returned), both tokens count
 * and A or B is exclusive, then token(A) < token(B).  Ghosts instead of a
 * counter (which would make the state space unbounded): which current
 * acquisitions drew (drawn), in which order (bef), which were granted
 * (grd) and in which order (gbef); when a token comes to count (complete)
 * it is compared with every token drawn before it, and an acquisition that
 * drew earlier and is granted later is marked (behA; behX if the token
 * that counts is exclusive) for the assertion at its grant.  The ghosts of
 * an acquisition are forgotten when its process starts its next call or
 * crashes.  FENCE_STRICT also asserts the order between two shared grants:
 * that fails (two shared calls return in the other order than they drew).
 *
 * Liveness (LIVENESS): process WAITER (the last) is a writer making one
 * exclusive call, never crashing, never timing out; the others are readers
 * looping forever (shared calls), crashing anywhere.  Claim served:
 * [] (wgate -> <> wacq): once the writer holds the gate it gets the lock.
 * With expire (no NO_EXPIRE), the writer's gate is assumed never judged
 * expired (it refreshes the gate while it waits, more often than expire);
 * everybody else may be.  PLAIN_LIVE: the claim <> wacq of common.pml
 * instead (the writer gets the lock at all): fails, since taking the gate
 * is not fair to one waiter among readers that keep taking it.
 *
 * Broken variants (must fail):
 *   BUGGY_NO_VERIFY    the shared locker ignores LOST from the gate's
 *                      release (S5 left out);
 *   BUGGY_NO_WAIT      the writer does not wait for shared holders;
 *   BUGGY_RECHECK      the writer unlinks a judged shared entry whatever its
 *                      generation (a break without the rename re-check);
 *   BUGGY_EARLY_DRAW   the fencing token is drawn when the call starts,
 *                      before the gate is taken (and kept across retries);
 *   BUGGY_NO_TOKEN_CHECK  an exclusive holder's token counts without the
 *                      check after the draw;
 *   BUGGY_STARVE       (with LIVENESS) the writer lets the gate go while
 *                      it waits for shared holders (and takes it again to
 *                      look again): still safe, but readers that keep
 *                      overlapping starve it.
 * Not bugs, properties the protocol does not have (must fail too):
 *   RMDIR_IGNORED      the writer decides "no live shared entry" from a
 *                      directory listing and ignores rmdir's ENOTEMPTY
 *                      (the protocol's first draft).  A listing may
 *                      miss an entry renamed while it runs: stab[w*NPROC+p]
 *                      says p's entry is unchanged since writer w's listing
 *                      began, and only such entries are sure to be seen;
 *   FENCE_STRICT       see Fencing;
 *   STRICT_GRANT       an exclusive grant's gate was intact at X3 (false
 *                      when X2 did not wait, so that X4 was skipped).
 */
#ifndef PLAIN_LIVE
#define OWN_CLAIM
#endif
#include "common.pml"

#ifdef LIVENESS
#define NOFENCE
#define MORE      (me != WAITER || k < 1)
#define NEXTK     k = (me == WAITER -> k + 1 : k)
#define EXPIRABLE(v)  (v != WAITER)
#define TIMEOUT_OK    (me != WAITER)
#else
#define MORE      (k < ITER)
#define NEXTK     k++
#define EXPIRABLE(v)  true
#define TIMEOUT_OK    true
#endif

byte G;                /* the gate: holder pid+1, 0 = free */
bool dok[NPROC];       /* p's descriptor on E+r: the directory at E+r now */
bool rtmp[NPROC];      /* p's private ~r.T is in E+r */
bool rent[NPROC];      /* p's shared entry r.T.g is in E+r */
byte nent, ntmp;       /* how many of each (derived, for guards) */
bool xcl[NPROC];       /* ghost: p's current call is exclusive */
bool wgate;            /* ghost: the LIVENESS writer holds the gate */

/* A breaker b's read: of the gate (rgate) or of rvic's shared entry. */
byte rvic[NPROC];
bool rgate[NPROC];
bool rok[NPROC];       /* the incarnation read still exists */
bool rfresh[NPROC];    /* ... and has not been refreshed since */

#ifdef RMDIR_IGNORED
bool stab[NPROC*NPROC];
#define UNSTABLE(p)  q = 0; do :: q < NPROC -> stab[q*NPROC + p] = false; q++ :: else -> break od; q = 0
#else
#define UNSTABLE(p)  skip
#endif

/* The gate's current incarnation ends, or a new one begins. */
inline gate_new() {
	q = 0;
	do
	:: q < NPROC -> rok[q] = rok[q] && !rgate[q]; q++
	:: else -> break
	od;
	q = 0
}
inline gate_refresh() {
	q = 0;
	do
	:: q < NPROC -> rfresh[q] = rfresh[q] && !rgate[q]; q++
	:: else -> break
	od;
	q = 0
}
/* p's shared entry appears or disappears. */
inline entry_new(p) {
	q = 0;
	do
	:: q < NPROC -> rok[q] = rok[q] && (rgate[q] || rvic[q] != p); q++
	:: else -> break
	od;
	q = 0;
	UNSTABLE(p)
}
inline entry_refresh(p) {
	q = 0;
	do
	:: q < NPROC -> rfresh[q] = rfresh[q] && (rgate[q] || rvic[q] != p); q++
	:: else -> break
	od;
	q = 0;
	UNSTABLE(p)
}
inline forget_read() {
	rvic[me] = 0; rgate[me] = false; rok[me] = false; rfresh[me] = false;
	v = 0
}

/* Release the gate if it is still ours (by our exact token). */
inline gate_release() {
	if
	:: G == me + 1 -> G = 0; gate_new()
	:: G != me + 1
	fi
}

/* A waiter's judgement of v (the holder of the gate or of an entry): stale
   if dead (its process crashed) or, unless NO_EXPIRE, expired (at any
   moment: a holder can be stuck for longer than expire); else alive.  The
   judgement is made in the step that acts on it, a step after the read:
   "dead" stays true once true, and "alive" only leads to a retry. */
#ifdef NO_EXPIRE
#define STALE(v)   crashed[v]
#else
#define STALE(v)   (crashed[v] || EXPIRABLE(v))
#endif
#ifdef BUGGY_RECHECK
#define BREAK_OK   rok[me]
#else
#define BREAK_OK   (rok[me] && rfresh[me])
#endif
#ifdef RMDIR_IGNORED
#define LISTED_OFF listed = false
#else
#define LISTED_OFF skip
#endif

/* Nondeterministic choice of a present element of a[] (blocks if none). */
#if NPROC > 4
#error "NPROC at most 4"
#endif
#if NPROC > 2
#define PICK2(a)  :: a[2] -> v = 2
#else
#define PICK2(a)
#endif
#if NPROC > 3
#define PICK3(a)  :: a[3] -> v = 3
#else
#define PICK3(a)
#endif
#define PICK(a)   if :: a[0] -> v = 0 :: a[1] -> v = 1 PICK2(a) PICK3(a) fi

/* ---- fencing ghosts ---- */
#ifndef NOFENCE
bool drawn[NPROC];         /* p's acquisition has drawn its token */
bool fin[NPROC];           /* ... and the token counts: it is p's (shared:
                              granted unbroken; exclusive: the check after
                              the draw passed) */
bool grd[NPROC];           /* p's acquisition has been granted */
bool bef[NPROC*NPROC];     /* bef[p*NPROC+q]: p drew before q */
bool gbef[NPROC*NPROC];    /* gbef[p*NPROC+q]: p was granted before q */
bool behA[NPROC];          /* p drew before some acquisition whose token
                              counts and that was granted before p */
bool behX[NPROC];          /* ... an exclusive one */
#ifdef FENCE_STRICT
#define SHARED_BEHIND   behA[me]
#define PAIR_COUNTS(q)  true
#else
#define SHARED_BEHIND   behX[me]
#define PAIR_COUNTS(q)  (xcl[me] || xcl[q])
#endif
#ifdef BUGGY_EARLY_DRAW
#define TOKEN_AT_GRANT  true
#else
#define TOKEN_AT_GRANT  (!xcl[me])
#endif

/* Forget our acquisition (a new call, a crash, a shared start-over). */
inline unfence() {
	q = 0;
	do
	:: q < NPROC ->
		bef[q*NPROC + me] = false; bef[me*NPROC + q] = false;
		gbef[q*NPROC + me] = false; gbef[me*NPROC + q] = false;
		q++
	:: else -> break
	od;
	q = 0;
	drawn[me] = false; fin[me] = false; grd[me] = false;
	behA[me] = false; behX[me] = false
}
/* Append 1 byte to E+f: the token is the offset after it. */
inline draw() {
	d_step {
		q = 0;
		do
		:: q < NPROC -> bef[q*NPROC + me] = drawn[q] && q != me; q++
		:: else -> break
		od;
		q = 0;
		drawn[me] = true
	}
}
/* Our token counts and we are granted: compare with every drawn token. */
inline complete() {
	q = 0;
	do
	:: q < NPROC ->
		if
		:: q != me && drawn[q] && bef[q*NPROC + me] ->   /* q drew first */
			/* ... and was granted after us: its token is smaller */
			assert(!(fin[q] && gbef[me*NPROC + q] && PAIR_COUNTS(q)));
			if
			:: !grd[q] -> behA[q] = true; behX[q] = behX[q] || xcl[me]
			:: grd[q]
			fi
		:: !(q != me && drawn[q] && bef[q*NPROC + me])
		fi;
		q++
	:: else -> break
	od;
	q = 0
}
inline fence_grant(ok) {
	q = 0;
	do
	:: q < NPROC -> gbef[q*NPROC + me] = grd[q]; q++
	:: else -> break
	od;
	q = 0;
	grd[me] = true;
	if
	:: ok && TOKEN_AT_GRANT ->
		assert(xcl[me] -> !behA[me] : !SHARED_BEHIND);
		fin[me] = true;
		complete()
	:: !(ok && TOKEN_AT_GRANT)
	fi
}
/* An exclusive holder's first locker_fencing_token: draw, then check. */
inline fence_check(ok) {
	if
	:: ok -> assert(!behA[me]); fin[me] = true; complete()
	:: !ok
	fi
}
#else
#define unfence()         skip
#define draw()            skip
#define fence_grant(ok)   skip
#define fence_check(ok)   skip
#endif

#ifdef BUGGY_EARLY_DRAW
#define LATE_DRAW()   skip
#define REDRAW()      skip
#else
#define LATE_DRAW()   draw()
#define REDRAW()      unfence()
#endif

/* acquire returns OK.  ok: our lock is still in place (not broken). */
inline grant() {
	d_step {
		ok = (xcl[me] -> G == me + 1 : rent[me]);
		if
		:: ok ->
			q = 0;
			do
			:: q < NPROC ->
				assert(q == me || !incs[q] || !(xcl[me] || xcl[q]));
				q++
			:: else -> break
			od;
			q = 0
		:: !ok
		fi;
		fence_grant(ok);
		incs[me] = ok;
#ifdef LIVENESS
		wacq = wacq || me == WAITER;
#endif
		ok = false
	}
}

active [NPROC] proctype P() {
	byte me = _pid;
	byte k, q, v;
	bool ok, waited;
#ifdef STRICT_GRANT
	bool intact;
#endif
#ifdef RMDIR_IGNORED
	bool listed;
#endif

	do
	:: MORE ->
		atomic {
			NEXTK;
			unfence();
#ifdef LIVENESS
			xcl[me] = (me == WAITER)
#else
			if
			:: xcl[me] = true
			:: xcl[me] = false
			fi
#endif
		};
#ifdef BUGGY_EARLY_DRAW
		if :: CRASH :: draw() fi;     /* BUG: before taking the gate */
#endif
start:
		/* ---- S1 / X1: take the gate ---- */
		if
		:: CRASH
		:: d_step { G == 0 -> G = me + 1; gate_new(); waited = false;
#ifdef LIVENESS
			wgate = wgate || me == WAITER
#endif
		   };
		   goto gate_held
		:: d_step { G != 0 -> v = G - 1; rvic[me] = v; rgate[me] = true;
			rok[me] = true; rfresh[me] = true }
		fi;
		/* judge v (later than the read: others act in between) and, if
		   stale, break: remove exactly the incarnation read */
		if
		:: CRASH
		:: d_step { !crashed[v] -> forget_read() }          /* alive: wait */
		:: d_step { STALE(v) && rok[me] && rfresh[me] ->
			G = 0; incs[v] = incs[v] && !xcl[v]; gate_new(); forget_read() }
		:: d_step { STALE(v) && !(rok[me] && rfresh[me]) ->  /* ENOENT */
			forget_read() }
		fi;
		goto start;

gate_held:
		if
		:: xcl[me] -> goto writer
		:: !xcl[me]
		fi;

		/* ---- shared acquisition, holding the gate ---- */
		/* S2: open E+r, making it first if missing */
		if :: CRASH :: dok[me] = true fi;
		/* S3: openat(E+r fd, ~r.T, O_CREAT|O_EXCL), (kernel: OFD lock),
		   write the record: ENOENT if that directory was removed */
		if
		:: CRASH
		:: d_step { dok[me] -> rtmp[me] = true; ntmp++ }
		:: d_step { !dok[me] } -> goto r_over
		fi;
		/* S3: renameat(~r.T, r.T.0): ENOENT if a writer removed ~r.T */
		if
		:: CRASH
		:: d_step { rtmp[me] -> rtmp[me] = false; ntmp--;
			rent[me] = true; nent++; entry_new(me); dok[me] = false }
		:: d_step { !rtmp[me] } -> goto r_over
		fi;
		/* S4: draw the fencing token */
		if :: CRASH :: LATE_DRAW() fi;
		/* S5+S6: release the gate, which verifies it was still ours */
		if
		:: CRASH
		:: d_step { G == me + 1 -> G = 0; gate_new() }
#ifndef BUGGY_NO_VERIFY
		:: G != me + 1 ->                    /* LOST: the gate was broken */
			/* unlink our entry (ENOENT if broken meanwhile) */
			if
			:: CRASH
			:: d_step { nent = nent - rent[me]; rent[me] = false; entry_new(me) }
			fi;
			goto r_over
#else
		:: G != me + 1                       /* BUG: LOST ignored */
#endif
		fi;
		grant();
		/* hold: check/refresh = renameat(r.T.g, r.T.g+1), or not */
		if
		:: CRASH
		:: skip
		:: d_step { ok = rent[me]; assert(ok == incs[me]);
			if :: ok -> entry_refresh(me) :: !ok fi; ok = false }
		fi;
		/* leave, then unlink r.T.g (LOST exactly if broken) */
		if
		:: CRASH
		:: d_step { assert(rent[me] == incs[me]); incs[me] = false;
			nent = nent - rent[me]; rent[me] = false; entry_new(me) }
		fi;
		goto next;
r_over:
		/* start over: release the gate if it is still ours */
		if :: CRASH :: d_step { gate_release(); REDRAW(); dok[me] = false } fi;
		goto start;

		/* ---- exclusive acquisition, holding the gate ---- */
writer:
#ifndef BUGGY_NO_WAIT
		/* X2, X3: drain E+r, then rmdir it */
		do
		:: CRASH
		/* read a shared entry's name r.T.g (and its record, its mtime) */
		:: atomic { nent > 0 -> PICK(rent); rvic[me] = v; rgate[me] = false;
			rok[me] = true; rfresh[me] = true };
			/* judge v and, if stale, unlinkat(E+r, r.T.g); if alive, wait,
			   then refresh the gate (LOST: start over) or time out */
			if
			:: CRASH
			:: d_step { STALE(v) && BREAK_OK ->
				assert(rfresh[me]);       /* judged = removed */
				rent[v] = false; nent--; incs[v] = false;
				entry_new(v); forget_read() }
			:: d_step { STALE(v) && !BREAK_OK -> forget_read() }  /* ENOENT */
#ifdef BUGGY_STARVE
			:: d_step { !crashed[v] -> forget_read(); gate_release() };
				goto start
#else
			:: d_step { !crashed[v] && G == me + 1 ->
				forget_read(); gate_refresh(); waited = true; LISTED_OFF }
			:: d_step { !crashed[v] && G != me + 1 -> forget_read() };
				goto start
#ifndef LIVENESS
			/* woken early, looks again without refreshing */
			:: d_step { !crashed[v] -> forget_read(); waited = true; LISTED_OFF }
#endif
			:: d_step { !crashed[v] && TIMEOUT_OK ->
				forget_read(); gate_release() };
				goto next
#endif
			fi
		/* unlink a leftover ~r.* */
		:: atomic { ntmp > 0 -> PICK(rtmp); rtmp[v] = false; ntmp--; v = 0 }
#ifndef RMDIR_IGNORED
		/* X3: rmdir(E+r), the proof that no shared holder is left
		   (ENOTEMPTY: drain again; ENOENT: fine) */
		:: d_step { nent == 0 && ntmp == 0 ->
			q = 0;
			do
			:: q < NPROC -> dok[q] = false; q++
			:: else -> break
			od;
			q = 0;
#ifdef STRICT_GRANT
			intact = (G == me + 1)
#endif
			};
			break
#else
		/* a directory listing begins ... */
		:: d_step {
			q = 0;
			do
			:: q < NPROC -> stab[me*NPROC + q] = true; q++
			:: else -> break
			od;
			q = 0; listed = true }
		/* ... and has shown no live entry: every entry there now may
		   have been missed (renamed into place during the listing) */
		:: d_step { listed ->
			ok = true;
			do
			:: q < NPROC -> ok = ok && !(rent[q] && stab[me*NPROC + q]); q++
			:: else -> break
			od;
			q = 0 };
			if
			:: ok -> ok = false; break
			:: !ok
			fi
#endif
		od;
#ifdef RMDIR_IGNORED
		/* rmdir(E+r), ENOTEMPTY ignored */
		if
		:: CRASH
		:: d_step {
			listed = false;
			if
			:: nent == 0 && ntmp == 0 ->
				do
				:: q < NPROC -> dok[q] = false; q++
				:: else -> break
				od;
				q = 0
			:: !(nent == 0 && ntmp == 0)
			fi }
		fi;
#endif
#endif
		/* X4: if we had to wait, verify the gate is still ours */
		if
		:: CRASH
		:: !waited
		:: waited && G == me + 1
		:: waited && G != me + 1 -> goto start
		fi;
#ifdef STRICT_GRANT
		assert(intact || waited);
#endif
		grant();
		/* hold: check/refresh the gate, or ask for the fencing token
		   (draw, then check the gate), or neither */
		if
		:: CRASH
		:: skip
		:: d_step { ok = (G == me + 1); assert(ok == incs[me]);
			if :: ok -> gate_refresh() :: !ok fi; ok = false }
#if !defined(NOFENCE) && !defined(BUGGY_EARLY_DRAW)
		:: true ->
			if :: CRASH :: draw() fi;
			if
			:: CRASH
			:: d_step {
#ifndef BUGGY_NO_TOKEN_CHECK
				ok = (G == me + 1); assert(ok == incs[me]);
#else
				ok = true;             /* BUG: no check after the draw */
#endif
				fence_check(ok); ok = false }
			fi
#endif
		fi;
		/* leave, then release the gate (LOST exactly if broken) */
		if
		:: CRASH
		:: d_step { assert((G == me + 1) == incs[me]); incs[me] = false;
			gate_release() }
		fi;
next:
		atomic { xcl[me] = false; v = 0; ok = false; waited = false }
	:: else -> break
	od;
	goto done;
crash:
	atomic {
		crashed[me] = true; incs[me] = false; xcl[me] = false;
		dok[me] = false;      /* its descriptors are closed */
		unfence();
		rvic[me] = 0; rgate[me] = false; rok[me] = false; rfresh[me] = false;
		v = 0; ok = false; waited = false
	};
done:
	skip
}

#if defined(LIVENESS) && !defined(PLAIN_LIVE)
ltl served { [] (wgate -> <> wacq) }
#endif
