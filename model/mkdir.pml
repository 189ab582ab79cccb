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
 */
#include "common.pml"

#ifdef BUGGY_LIVE
#define RENAME_OK  (!Edir)
#else
#define RENAME_OK  (!Edir || Etok == 0)
#endif

bool Edir;   /* a directory is at E */
byte Etok;   /* the T of the o.T inside it; 0 = empty directory */

active [NPROC] proctype P() {
	byte me = _pid;
	byte k, t, rd, q;
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
		:: atomic { RENAME_OK -> Edir = true; Etok = t }; goto held
		:: atomic { !RENAME_OK }                   /* ENOTEMPTY / EEXIST */
		fi;
		/* remove ~t-T (private); read E: readdir finds o.rd, read record */
		if
		:: CRASH
		:: atomic { Edir && Etok != 0 -> rd = Etok }
		:: atomic { !Edir || Etok == 0 } -> goto acquire   /* gone: retry */
		fi;
		/* judge the holder of rd (later than the read: races are explored) */
		if :: CRASH :: judge(rd) fi;
		if
		:: !stale -> rd = 0; goto acquire          /* wait, then retry */
		:: stale
		fi;
#ifndef BUGGY
		/* break = the release steps on behalf of rd: unlinkat(D, "E/o.rd") */
		if
		:: CRASH
		:: atomic {
			Etok = (Edir && Etok == rd -> 0 : Etok);   /* or ENOENT */
			broken[rd] = broken[rd] || exp
		   }
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
		d_step { rd = 0; stale = false; exp = false };
		goto acquire;
held:
		enter_cs(t);
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
		t = 0; rd = 0; stale = false; exp = false
	};
done:
	skip
}
