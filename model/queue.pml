/*
 * queue.pml: the hand-over order of docs/PROTOCOL.md ("Hand-over order").
 *
 * NPROC lockers each make ITER lock calls. The gate E is abstract: a test-
 * and-set that a dead holder keeps until a head judges it dead and breaks
 * it (the methods' own models check E's protocol). What is checked here is
 * the queue in front of E:
 *
 *   - safety: at most one holder;
 *   - FIFO: when a locker is granted, no live waiter that arrived before it
 *     is still waiting (arrival: the draw of its ticket number; for a
 *     locker granted without a ticket, its look at the queue after the
 *     try, step Q1);
 *   - liveness (-DLIVENESS): the last locker never crashes nor gives up
 *     and makes one lock call: it is eventually granted.
 *
 * Any locker may crash before any step (its ticket and, if it holds E, E
 * stay behind), or give up waiting (a timeout: it removes its ticket).
 * -DBUGGY_NUMBER_FIRST: a waiter draws its number before its ticket is
 *  visible (the order the protocol avoids): FIFO must fail.
 * -DBUGGY_LOOK_BEFORE: a locker looks at the queue before trying E and not
 *  after: FIFO must fail.
 * -DBUGGY_NO_JUDGE (with LIVENESS): a waiter never removes the ticket of a
 *  dead waiter ahead of it: the liveness claim must fail.
 */

#ifndef NPROC
#define NPROC 3
#endif
#ifndef ITER
#define ITER 1
#endif
#define NONE 255

byte E = NONE;            /* the gate's holder */
bool vis[NPROC];          /* ticket visible (w.T or q.n.T) */
bool numd[NPROC];         /* ... numbered */
byte num[NPROC];          /* its number */
byte counter = 0;         /* E+f */
bool crashed[NPROC];
bool waiting[NPROC];      /* ghost: arrived (drew) and not yet granted */
byte arr[NPROC];          /* ghost: arrival stamp */
byte clock = 0;           /* ghost */
byte holders = 0;         /* ghost: live holders */
bool incs[NPROC];         /* ghost: in the critical section */
bool granted_last = false;/* ghost: the LIVENESS locker was granted */

#ifdef LIVENESS
#define WAITER_OR_NONE WAITER
#define WAITER (NPROC - 1)
#define CANCRASH (me != WAITER)
#define NCALLS (me == WAITER -> 1 : ITER)
#else
#define WAITER_OR_NONE NONE
#define CANCRASH true
#define NCALLS ITER
#endif
#define CRASH CANCRASH -> goto crash

/* granted: check FIFO, count the holder */
inline grant() {
	d_step {
		j = 0;
		do
		:: j < NPROC ->
			assert(!(j != me && waiting[j] && !crashed[j] && arr[j] < arr[me]));
			j++
		:: j >= NPROC -> break
		od;
		waiting[me] = false;
		incs[me] = true;
		holders++;
		assert(holders == 1)
	}
}

proctype P(byte me) {
	byte k = 0, j, pred, best;
	bool ticket = false, any, wasnum;
	do
	:: k < NCALLS ->
		ticket = false;
try:
		/* the head (or a locker without a ticket) tries E; a dead holder
		   is judged and broken first */
		if
		:: CRASH
		:: atomic { E != NONE && crashed[E] -> E = NONE }
		:: atomic { E == NONE -> E = me }
			goto got
		:: atomic { E != NONE && !crashed[E] && !ticket -> skip }
			goto enqueue
		:: atomic { E != NONE && !crashed[E] && ticket -> skip }
			goto waitE
		fi;
		goto try;
got:
		if
		:: ticket ->
			/* Q4: leave the queue */
			if
			:: CRASH
			:: vis[me] = false; numd[me] = false; grant()
			fi
		:: !ticket ->
#ifdef BUGGY_LOOK_BEFORE
			d_step { clock++; arr[me] = clock; waiting[me] = true };
			grant()
#else
			/* Q1: look at the queue after the try */
			if
			:: CRASH
			:: d_step {
				any = false; j = 0;
				do
				:: j < NPROC -> any = any || vis[j]; j++
				:: j >= NPROC -> break
				od;
				if
				:: !any -> clock++; arr[me] = clock; waiting[me] = true
				:: any -> skip
				fi
			   }
			fi;
			if
			:: waiting[me] -> grant()
			:: !waiting[me] ->
				/* others queued first: let go, queue */
				if
				:: CRASH
				:: E = NONE; goto enqueue
				fi
			fi
#endif
		fi;
		/* critical section, then release */
		if
		:: CRASH
		:: d_step { holders--; incs[me] = false; E = NONE }
		fi;
		if
		:: me == WAITER_OR_NONE -> granted_last = true
		:: else -> skip
		fi;
		k++;
		goto next;
enqueue:
		/* Q2 */
#ifdef BUGGY_NUMBER_FIRST
		if
		:: CRASH
		:: d_step { counter++; num[me] = counter; clock++; arr[me] = clock; waiting[me] = true }
		fi;
		if
		:: CRASH
		:: d_step { vis[me] = true; numd[me] = true }
		fi;
#else
		if
		:: CRASH
		:: vis[me] = true
		fi;
		if
		:: CRASH
		:: d_step { counter++; num[me] = counter; clock++; arr[me] = clock; waiting[me] = true }
		fi;
		if
		:: CRASH
		:: numd[me] = true
		fi;
#endif
		ticket = true;
place:
		skip;
		/* Q3: find the ticket just ahead (an atomic listing) */
		d_step {
			pred = NONE; best = 0; j = 0;
			do
			:: j < NPROC ->
				if
				:: j != me && vis[j] && !numd[j] && pred == NONE -> pred = j; best = 0
				:: j != me && vis[j] && numd[j] && num[j] < num[me] && (pred == NONE || num[j] >= best) ->
					pred = j; best = num[j]
				:: else -> skip
				fi;
				j++
			:: j >= NPROC -> break
			od
		}
		if
		:: CRASH
		:: pred == NONE -> goto try
#ifndef BUGGY_NO_JUDGE
		:: pred != NONE && crashed[pred] ->
			/* judged dead: removed by its exact name */
			d_step { vis[pred] = false; numd[pred] = false }
			goto place
		:: pred != NONE && !crashed[pred] ->
#else
		:: pred != NONE ->
#endif
			/* wait for it to go, die or be numbered, or give up */
			wasnum = numd[pred];
			if
#ifndef BUGGY_NO_JUDGE
			:: atomic { !vis[pred] || crashed[pred] || numd[pred] != wasnum -> skip }
#else
			:: atomic { !vis[pred] || numd[pred] != wasnum -> skip }
#endif
			:: CANCRASH -> goto giveup
			fi;
			goto place
		fi;
waitE:
		/* the head waits for E to be released (or its holder to die) */
		if
		:: atomic { E == NONE || crashed[E] -> skip }
		:: CANCRASH -> goto giveup
		fi;
		goto place;
giveup:
		/* a timeout: leave the queue (Q4) */
		if
		:: CRASH
		:: d_step { vis[me] = false; numd[me] = false; waiting[me] = false }
		fi;
		k++;
next:
		skip
	:: k >= NCALLS -> break
	od;
	goto done;
crash:
	skip;
	d_step {
		crashed[me] = true;
		waiting[me] = false;
		/* a dead holder holds nothing: its E is broken by the next head */
		if
		:: incs[me] -> incs[me] = false; holders--
		:: else -> skip
		fi
	}
done:
	skip
}

init {
	byte i;
	atomic {
		i = 0;
		do
		:: i < NPROC -> run P(i); i++
		:: i >= NPROC -> break
		od
	}
}

#ifdef LIVENESS
ltl served { <> granted_last }
#endif
