/* Promela model of stablefs's stable-page protocol (issue 4, point 6).
 *
 * Kept next to page_cache.h / writeback.cc / data_fs.cc: change both
 * together. Checked by tests/model/check_model.sh (ctest: model.*).
 *
 *   spin -DPOLICY=WAIT -a core/page_cache.pml && gcc -O2 -DSAFETY -o pan pan.c && ./pan
 *
 * POLICY is WAIT, SHADOW, BOUNCE or OFF (the stable_pages= mount option).
 * MUTATION (optional) plants a known bug so the checks are seen to bite:
 *   NOWAIT       the writer does not wait on Writeback (WAIT without the wait)
 *   EARLY_REUSE  a freed block is allocatable at once, before its freeing
 *                transaction committed (Allocator::free_blocks clearing the
 *                in-memory bit instead of release_committed)
 *   LOCKED_END   end_page_writeback takes the page lock (a writer sleeps in
 *                wait_on_page_writeback holding it: check (2) must fail)
 * CHECK_ORDER adds check (4) below (the script always sets it);
 * NO_ORDER_WAIT removes writeback's wait for a shadowed predecessor's
 * write, the bug check (4) found under SHADOW (a mutation: must fail).
 *
 * What is modelled, and the C++ it stands for:
 *   one file page (ino, index 0) cached in frame `cur`; frames are
 *   Page objects with the kernel's bits (locked/dirty/wb/attached) and a
 *   reference count (PageRef). The page's bytes are one byte: a version
 *   number, bumped by every write().
 *
 *   proctype Writer   MountedFs::write -> MountedFs::grab_stable_page:
 *     grab       PageCache::grab_cache_page (find + ref under Shard::mu,
 *                lock_page, retry if no longer attached)
 *     WAIT       PageCache::wait_on_page_writeback, page lock held
 *     SHADOW     PageCache::shadow_page (frame from the bounded shadow
 *                pool, see below; the copy takes the index slot and the
 *                Dirty state, the old frame stays under writeback,
 *                detached); pool too low -> fall back to waiting
 *                (shadow_fallbacks_)
 *     BOUNCE/OFF nothing
 *     then       memcpy (data = ++ver), set_page_dirty, unlock_page, PageRef
 *                dropped.
 *   proctype Flusher  MountedFs::writeback_inode (the background flusher and
 *                an fsync() can run it for the same inode at once: NFLUSH=2)
 *     1. find_dirty_pages, lock_page, re-check attached/dirty,
 *        wait_on_page_writeback (a page redirtied during its write, only
 *        bounce/off), test_clear_page_dirty, PageCache::set_page_writeback,
 *        BOUNCE: memcpy into the bounce buffer, unlock_page
 *     2. Allocator::reserve_blocks (ENOSPC + pending frees -> journal commit
 *        and retry; still ENOSPC -> error path: unreserve, end writeback)
 *     3. block_checksum over the bytes that go out, submit_and_wait
 *     4. one journal handle: commit_reserved, ExtentMap::map (redirect-on-
 *        write: the old block is "replaced"), ChecksumTable::set,
 *        Allocator::free_blocks(old) into the running transaction
 *     5. PageCache::end_page_writeback (wakes waiters), PageRef dropped (a
 *        detached shadowed frame goes back to the pool: ref_dropped).
 *   proctype Device   the io_uring write: the device reads ("DMAs") the
 *                buffer at a nondeterministic moment between submit and
 *                completion, writes it to the block, completes.
 *   proctype Journal  Journal::commit -> on_commit ->
 *                Allocator::release_committed: blocks freed by the
 *                committed transaction become allocatable.
 *
 * Checks (assertions; pan is compiled with -DSAFETY, so spin's default
 * invalid-end-state check is on too):
 *   (1) DMA == checksum: in Device, the bytes captured at DMA time equal the
 *       value the checksum was computed over, for every I/O (what
 *       verify_writes / a DIF disk would catch). OFF must violate it.
 *   (2) no deadlock: Writer and Flusher loops are bounded, Device and
 *       Journal wait at `end` labels; any state where nothing can move and
 *       a Writer/Flusher has not finished is an invalid end state.
 *   (3) no premature block reuse: when the allocator hands out a block, and
 *       when the device writes it, the block is neither under I/O, nor
 *       mapped, nor freed-but-uncommitted; the old block freed by step 4
 *       has no I/O in flight.
 *   (4) [CHECK_ORDER] the mapping never goes back to older bytes: step 4
 *       never maps a version older than the one already mapped.
 *       Without the wait below it FAILED for SHADOW: the shadowed frame's
 *       write (flusher) and the copy's write (an fsync's writeback_inode)
 *       were in flight together; if the newer one completed and mapped
 *       first, the older one then mapped over it and freed its block: a
 *       lost update that fsync had reported durable. The fix, in
 *       MountedFs::writeback_inode, is wait_on_writeback_range(ino, idx,
 *       idx) before set_page_writeback; -DNO_ORDER_WAIT removes it again
 *       and the script checks that the model then fails (model.order).
 *
 * Not modelled: eviction and page creation in grab_cache_page, truncate /
 * punch hole, read_page, multi-page batches (pages are independent in the
 * protocol), write errors other than ENOSPC, verify_writes' read-back, the
 * mmap path. The shadow pool: PageCache::shadow_page takes a frame from
 * the free list, by eviction, or from a reserve that only shadow copies use
 * (refilled first by completed shadowed frames), and refuses (EAGAIN ->
 * the writer waits) once max_in_flight shadowed frames are alive
 * (ShadowPoolConfig). Nothing else allocates frames in the model, so these
 * collapse into one pool of NFR-1 frames, and `pool_free > RESERVE` is
 * exactly "fewer than NFR-1-RESERVE = 1 shadowed frame alive": the
 * max_in_flight bound, small enough that the exhaustion fallback is
 * explored (REACH probe 3) as well as the copy (probe 2). Eviction and the
 * reserve's refill order are checked by tests/unit/page_cache_test.cc
 * (ShadowReserveServesAFullCacheAndRefillsOnCompletion,
 * ShadowCopiesInFlightAreBounded).
 */

#define WAIT   1
#define SHADOW 2
#define BOUNCE 3
#define OFF    4
#ifndef POLICY
#define POLICY WAIT
#endif

#define NOWAIT      1
#define EARLY_REUSE 2
#define LOCKED_END  3
#ifndef MUTATION
#define MUTATION 0
#endif

/* Reachability probes (vacuity check): -DREACH=k turns probe k into a
   failing assertion, so spin must find a run that gets there. The script
   asserts it does, proving the interesting paths are really exercised.
     1 a writer found its page under writeback
     2 shadow_page made a copy            3 shadow pool low: fallback wait
     4 writeback found its page still under writeback (bounce/off)
     5 a block freed by a commit was allocated again
     6 ENOSPC with pending frees: commit and retry
     7 a shadowed frame went back to the pool */
#ifndef REACH
#define REACH 0
#endif
#define PROBE(k) assert(REACH != k)

#define NWRITERS 2      /* concurrent write() callers on the page */
#define WRITES   2      /* write() calls each */
#define NFLUSH   2      /* concurrent writeback_inode calls (flusher + fsync) */
#define FLUSHES  2      /* passes each */
#define NFR      3      /* page frames: the page + the shadow pool */
#define RESERVE  1      /* bounds shadowed frames alive to NFR-1-RESERVE */
#define NB       3      /* data blocks */
#define NONE     255

/* Page frames (Page). */
byte ver = 0;                 /* last version any writer produced */
byte data[NFR];               /* the frame's bytes */
bit  locked[NFR];
bit  dirty[NFR];
bit  wb[NFR];
bit  attached[NFR];
byte refs[NFR];               /* PageRefs + the index's reference */
byte cur = 0;                 /* the frame the index holds for the page */
byte pool_free = NFR - 1;     /* free frames (PageCache::free_) */
/* No history counters (shadow copies, fallbacks): they would multiply the
   state space; the REACH probes show those paths are taken. */

/* Blocks. */
#define B_FREE     0
#define B_RESERVED 1          /* reserved by writeback, I/O may be in flight */
#define B_MAPPED   2          /* a committed mapping refers to it */
#define B_PENDING  3          /* freed in the running transaction */
byte bstate[NB];
bit  bmem[NB];                /* allocator's in-memory "in use" bit */
byte inflight[NB];            /* I/Os in flight on the block */
/* The bytes on the device are not kept: check (1) compares them with the
   checksum at the moment they are captured, which is all a later read or
   scrub could see (the block is written exactly once per reservation). */
byte csum[NB];                /* checksum table */
byte map_blk = 0;             /* extent map: page -> block */
#ifdef CHECK_ORDER
byte map_ver = 0;             /* version the mapped block holds */
#endif
byte npending = 0;            /* blocks freed, waiting for the commit */

/* I/O: request = (frame or NONE for the bounce buffer, block, checksum). */
byte bbuf[NFLUSH];            /* per-flusher bounce buffer */
chan req[NFLUSH] = [1] of { byte, byte, byte };
chan done[NFLUSH] = [1] of { bit };

/* PageRef::reset: the last reference of a detached frame frees it. */
inline put_ref(f) {
  d_step {
    refs[f]--;
    if
    :: refs[f] == 0 ->
       assert(!attached[f] && !wb[f] && !locked[f]);
       PROBE(7);
       pool_free++
    :: else -> skip
    fi
  }
}

/* lock_page: a sleeping lock. */
inline lock_page(f) {
  atomic { !locked[f] -> locked[f] = 1 }
}

/* wait_on_page_writeback: sleeps until end_page_writeback. */
inline wait_wb(f) {
  (!wb[f])
}

proctype Writer() {
  byte i = 0, f, s;
  do
  :: i < WRITES ->
retry:
     atomic { f = cur; refs[f]++ };             /* find under Shard::mu */
     lock_page(f);
     if
     :: !attached[f] ->                         /* shadowed meanwhile */
        locked[f] = 0; put_ref(f); goto retry
     :: else -> skip
     fi;
     /* grab_stable_page: Writeback can only clear from here on, since
        it is set only under the page lock, which we hold. */
     if
     :: wb[f] ->
        PROBE(1);
#if POLICY == WAIT
#if MUTATION != NOWAIT
        wait_wb(f)
#else
        skip
#endif
#elif POLICY == SHADOW
        s = NONE;
        d_step {                                /* shadow_page */
          if
          :: pool_free > RESERVE ->
             pool_free--;
             s = 0;
             do                                 /* a free frame */
             :: refs[s] == 0 && s != f -> break
             :: else -> s++
             od;
             data[s] = data[f];
             locked[s] = 1; attached[s] = 1; refs[s] = 2;
             dirty[s] = dirty[f]; dirty[f] = 0; /* newer bytes own Dirty */
             attached[f] = 0; refs[f]--;        /* drop the index's ref */
             cur = s;
             PROBE(2)
          :: else -> PROBE(3)                   /* EAGAIN */
          fi
        };
        if
        :: s != NONE -> locked[f] = 0; put_ref(f); f = s; s = 0
        :: else -> s = 0; wait_wb(f)            /* fallback */
        fi
#else
        skip                                    /* BOUNCE, OFF */
#endif
     :: else -> skip
     fi;
#if POLICY != OFF && MUTATION == 0
     assert(!wb[f] || POLICY == BOUNCE);        /* stable for WAIT/SHADOW */
#endif
     atomic { ver++; data[f] = ver };           /* memcpy into the page */
     /* set_page_dirty, unlock_page, drop the PageRef: nothing else runs
        between them in write(), so one step (fewer interleavings). */
     atomic {
       dirty[f] = 1;
       locked[f] = 0;
       put_ref(f);
       f = 0;
       i++
     }
  :: else -> break
  od
}

proctype Flusher(byte me) {
  byte k = 0, f, b, old, cs, src;
  bit ok;
  do
  :: k < FLUSHES ->
     k++;
     /* 1. find_dirty_pages, then the handoff under the page lock */
     atomic {
       if
       :: attached[cur] && dirty[cur] -> f = cur; refs[f]++
       :: else -> goto next
       fi
     };
     lock_page(f);
     /* Under the page lock, no other process can change this frame's
        bytes or bits except end_page_writeback, which the wait below
        covers; so the handoff is one step once the wait is satisfied. */
     if
     :: !attached[f] || !dirty[f] ->
        atomic { locked[f] = 0; put_ref(f); goto next }
     :: else ->
        atomic {
          if
          :: wb[f] -> PROBE(4)
          :: else -> skip
          fi;
          wait_wb(f) ->             /* redirtied during its write (bounce/off) */
#ifndef NO_ORDER_WAIT
          /* The fix for check (4): also wait out the write of a shadowed
             (detached) predecessor of this page, i.e.
             wait_on_writeback_range(ino, idx, idx) before
             set_page_writeback. */
          (wb[0] + wb[1] + wb[2] == 0);
#endif
          dirty[f] = 0;             /* test_clear_page_dirty */
          wb[f] = 1;                /* set_page_writeback */
#if POLICY == BOUNCE
          bbuf[me] = data[f];       /* snapshot at writeback start */
          src = NONE;
#else
          src = f;
#endif
          locked[f] = 0             /* unlock_page */
        }
     fi;

     /* 2. reserve_blocks; on ENOSPC with pending frees, commit and retry */
     ok = 0;
     do
     :: d_step {
          b = 0;
          do
          :: b < NB && bmem[b] -> b++
          :: else -> break
          od;
          if
          :: b < NB ->
             /* (3) the allocator never hands out a block with I/O in
                flight, still mapped, or freed but not yet committed */
             assert(bstate[b] == B_FREE && inflight[b] == 0);
             if
             :: b == 0 -> PROBE(5)      /* block 0 was the page's first home */
             :: else -> skip
             fi;
             bmem[b] = 1; bstate[b] = B_RESERVED; ok = 1
          :: else -> skip
          fi
        };
        if
        :: ok -> break
        :: !ok && npending > 0 ->
           PROBE(6);
           d_step {                 /* journal_->commit(), release_committed */
             b = 0;
             do
             :: b < NB ->
                if
                :: bstate[b] == B_PENDING -> bstate[b] = B_FREE; bmem[b] = 0
                :: else -> skip
                fi;
                b++
             :: else -> break
             od;
             npending = 0
           }
        :: else -> break            /* ENOSPC: write_error, page not written */
        fi
     od;
     if
     :: !ok -> wb[f] = 0; put_ref(f); goto next   /* end_page_writeback */
     :: else -> skip
     fi;

     /* 3. checksum the bytes that go out, submit and wait */
     /* The checksum and the submission are one step: bytes changing
        between them are covered by bytes changing before the DMA. */
     atomic {
       if
       :: src == NONE -> cs = bbuf[me]
       :: else -> cs = data[f]
       fi;
       inflight[b]++;
       req[me] ! src, b, cs
     };
     done[me] ? _;

     /* 4. one handle: map the new block, record its checksum, free the old */
     d_step {
       old = map_blk;
#ifdef CHECK_ORDER
       assert(cs >= map_ver);       /* (4) never back to older bytes */
#endif
       map_blk = b;
#ifdef CHECK_ORDER
       map_ver = cs;
#endif
       bstate[b] = B_MAPPED;
       csum[b] = cs;
       assert(inflight[old] == 0);  /* (3) no I/O on the block we free */
       bstate[old] = B_PENDING;
       npending++;
#if MUTATION == EARLY_REUSE
       bmem[old] = 0;
#endif
       b = 0; old = 0; src = 0
     };
     /* 5. end_page_writeback wakes waiters; the I/O's PageRef goes */
#if MUTATION == LOCKED_END
     lock_page(f);
     atomic { wb[f] = 0; locked[f] = 0; put_ref(f) };
#else
     atomic { wb[f] = 0; put_ref(f) };
#endif
next:
     skip;
     d_step { f = 0; b = 0; cs = 0; src = 0; ok = 0 }
  :: else -> break
  od
}

proctype Device(byte me) {
  byte src, b, cs, got;
end:
  do
  :: req[me] ? src, b, cs ->
     /* The DMA window: other processes run between submit and here. */
     d_step {
       if
       :: src == NONE -> got = bbuf[me]
       :: else -> got = data[src]
       fi
     };
     atomic {
       /* (1) the device captured exactly the checksummed bytes */
       assert(got == cs);
       /* (3) the block is still this write's reservation */
       assert(bstate[b] == B_RESERVED && inflight[b] == 1);
       inflight[b]--; src = 0; b = 0; cs = 0; got = 0;
       done[me] ! 1
     }
  od
}

proctype Journal() {
  byte b;
end:
  do
  :: npending > 0 ->
     d_step {                       /* commit; release_committed */
       b = 0;
       do
       :: b < NB ->
          if
          :: bstate[b] == B_PENDING -> bstate[b] = B_FREE; bmem[b] = 0
          :: else -> skip
          fi;
          b++
       :: else -> break
       od;
       b = 0;
       npending = 0
     }
  od
}

init {
  byte i;
  d_step {
    /* The page is cached in frame 0 (clean, attached: the index's ref)
       and mapped to block 0, which holds version 0 and its checksum. */
    attached[0] = 1; refs[0] = 1;
    bstate[0] = B_MAPPED; bmem[0] = 1;
    csum[0] = 0
  };
  atomic {
    i = 0;
    do
    :: i < NFLUSH -> run Device(i); run Flusher(i); i++
    :: else -> break
    od;
    run Journal();
    i = 0;
    do
    :: i < NWRITERS -> run Writer(); i++
    :: else -> break
    od
  }
}
