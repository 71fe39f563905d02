package bank

import (
	"sync"

	"github.com/blindbank/blindbank/ecash"
)

// recentLogRefs bounds a RecentLogRefs: two generations of at most this
// many refs, a few MiB at most.
const recentLogRefs = 1 << 14

// RecentLogRefs remembers the audit-log index of the refs a store
// committed lately, for its LogIndex: a deposit, swap, recoup, refund or
// check answers with the index of the entry its commit just wrote, and a
// read of the store for it cost a swap 2% of a bankd's CPU. An operation's
// index never changes once committed, so a remembered one is never stale
// (a key set's can: logged again, it names the newer entry, so stores
// shared by replicas do not remember those). A store adds
// refs only after their commit is durable. Safe for concurrent use; the
// zero value is ready.
type RecentLogRefs struct {
	mu       sync.Mutex
	cur, old map[ecash.Hash]int64
}

// Add remembers that ref's entry is at index.
func (r *RecentLogRefs) Add(ref ecash.Hash, index int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cur) >= recentLogRefs {
		r.old, r.cur = r.cur, nil
	}
	if r.cur == nil {
		r.cur = make(map[ecash.Hash]int64)
	}
	r.cur[ref] = index
}

// Get returns the index remembered for ref.
func (r *RecentLogRefs) Get(ref ecash.Hash) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.cur[ref]; ok {
		return i, true
	}
	i, ok := r.old[ref]
	return i, ok
}
