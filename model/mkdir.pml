/*
 * mkdir.pml: the mkdir method of docs/PROTOCOL.md.
 *
 * The entry E is absent, an empty directory, or a directory holding exactly
 * one file o.T.  One step = one syscall on shared state.  The private
 * preparation (mkdirat ~t-T, create and write ~t-T/o.T) and its removal
 * after a failed rename touch nothing another party looks at, so each is a
 * single step (a crash there only leaves litter in D).
 *
 * BUGGY: the breaker, having judged o.rd stale, renames E aside (i.e. removes
 * whatever is at E now) instead of unlinking E/o.rd.
 * BUGGY_LIVE: the new lock can only take E when E is absent (as with a plain
 * mkdirat(E)), so an empty E left by a crash is never cleared.
 * BUGGY_RECHECK: the breaker unlinks the judged token's record whatever its
 * generation, so a holder that refreshed after the judgement is broken.
 *
 * REFRESH (own runs: it multiplies the states): a holder in its critical
 * section may refresh, which renames
 * E/o.T.g to E/o.T.g+1 (Egen).  A breaker reads (token, generation) and
 * unlinks exactly that name.  An expire judgement is legitimate only if the
 * holder has not refreshed since the breaker read the record (ghost rfc[]);
 * a break after such a refresh does not mark the lock broken, so an overlap
 * it causes fails the critical-section assertion.
 */
#include "common.pml"

#ifdef BUGGY_LIVE
#define RENAME_OK  (!Edir)
#else
#define RENAME_OK  (!Edir || Etok == 0)
#endif

bool Edir;   /* a directory is at E */
byte Etok;   /* the T of the o.T inside it; 0 = empty directory */
byte Egen;   /* the generation g of its name o.T.g (refreshes so far) */
byte rfc[NTOK];  /* ghost: refreshes made by the holder of each token */

active [NPROC] proctype P() {
	byte me = _pid;
	byte k, t, rd, rg, rs, q;
	bool stale, exp;

	do
	:: k < NCALLS ->
		t = TOK(me, k); k++;
acquire:
		/* mkdirat(D, "~t-T"); ~t-T/o.T with O_CREAT|O_EXCL; write record */
		if :: CRASH :: skip fi;
		/* renameat(D, "~t-T", D, E): E absent or an empty directory */
		if
		:: CRASH
		:: atomic { RENAME_OK -> Edir = true; Etok = t; Egen = 0 }; goto held
		:: atomic { !RENAME_OK }                   /* ENOTEMPTY / EEXIST */
		fi;
		/* remove ~t-T (private); read E: readdir finds o.rd, read record */
		if
		:: CRASH
		:: atomic { Edir && Etok != 0 -> rd = Etok; rg = Egen; rs = rfc[Etok] }
		:: atomic { !Edir || Etok == 0 } -> goto acquire   /* gone: retry */
		fi;
		/* judge the holder of rd (later than the read: races are explored) */
		if :: CRASH :: judge(rd) fi;
		if
		:: !stale -> rd = 0; goto acquire          /* wait, then retry */
		:: stale
		fi;
#ifndef BUGGY
		/* break = the release steps on behalf of rd: unlinkat(D, "E/o.rd.rg") */
		if
		:: CRASH
#ifndef BUGGY_RECHECK
		:: atomic { Edir && Etok == rd && Egen == rg ->
			Etok = 0; Egen = 0;
			broken[rd] = broken[rd] || (exp && rfc[rd] == rs)
		   }
		:: atomic { !(Edir && Etok == rd && Egen == rg) }   /* ENOENT */
#else
		:: atomic { Edir && Etok == rd ->
			Etok = 0; Egen = 0;
			broken[rd] = broken[rd] || (exp && rfc[rd] == rs)
		   }
		:: atomic { !(Edir && Etok == rd) }
#endif
		fi;
		/* unlinkat(D, E, AT_REMOVEDIR): removes E only if it is empty */
		if
		:: CRASH
		:: Edir = (Edir && Etok != 0)              /* or ENOTEMPTY, ENOENT */
		fi;
#else
		/* BUG: renameat(D, E, D, "~b-..."), whatever E holds by now */
		if
		:: CRASH
		:: atomic { Edir = false; Etok = 0; broken[rd] = broken[rd] || exp }
		fi;
#endif
		d_step { rd = 0; rg = 0; rs = 0; stale = false; exp = false };
		goto acquire;
held:
		enter_cs(t);
#ifdef REFRESH
		/* refresh, or not: renameat(E/o.t.g, E/o.t.g+1), ENOENT = lost */
		if
		:: CRASH
		:: atomic { Edir && Etok == t -> Egen++; rfc[t]++ }
		:: atomic { !(Edir && Etok == t) }
		:: skip
		fi;
#endif
		if :: CRASH :: leave_cs() fi;
		/* release: unlinkat(D, "E/o.t"); ENOENT would be LOCK_LOST */
		if
		:: CRASH
		:: Etok = (Edir && Etok == t -> 0 : Etok)  /* or ENOENT */
		fi;
		/* unlinkat(D, E, AT_REMOVEDIR): fails if a new lock is already at E */
		if
		:: CRASH
		:: Edir = (Edir && Etok != 0)              /* or ENOTEMPTY, ENOENT */
		fi
	:: else -> break
	od;
	t = 0;
	goto done;
crash:
	atomic {
		crashed[me] = true; incs[me] = false; cstok[me] = 0;
		t = 0; rd = 0; rg = 0; rs = 0; stale = false; exp = false
	};
done:
	skip
}
