package auditlog_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank/auditlog"
	"golang.org/x/mod/sumdb/tlog"
)

// credits returns n valid credit ops, each distinct.
func credits(n int) []auditlog.Op {
	ops := make([]auditlog.Op, n)
	for i := range ops {
		ops[i] = auditlog.Credit{Account: 1000 + uint64(i%7), Amount: eur(uint64(i + 1)), Reference: auditlog.OptionalHash(fmt.Sprint("ref ", i))}
	}
	return ops
}

func at(i int) time.Time { return fixtureBase.Add(time.Duration(i) * time.Millisecond) }

// naiveRoot is RFC 6962 MTH computed directly from the leaves.
func naiveRoot(leaves []tlog.Hash) tlog.Hash {
	switch len(leaves) {
	case 0:
		h, _ := tlog.TreeHash(0, nil)
		return h
	case 1:
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return tlog.NodeHash(naiveRoot(leaves[:k]), naiveRoot(leaves[k:]))
}

func TestProofsAcrossSizes(t *testing.T) {
	const n = 70
	m := auditlog.NewMemLog()
	var leaves []tlog.Hash
	var roots []tlog.Hash
	origin := "example.org/log"
	for i, op := range credits(n) {
		root, err := auditlog.TreeHash(int64(i), m)
		if err != nil {
			t.Fatal(err)
		}
		if root != naiveRoot(leaves) {
			t.Fatalf("size %d: root differs from RFC 6962 MTH", i)
		}
		roots = append(roots, root)
		e, err := m.Append(op, at(i))
		if err != nil {
			t.Fatal(err)
		}
		if e.Index != int64(i) {
			t.Fatalf("entry index %d, want %d", e.Index, i)
		}
		b, _ := m.Entry(int64(i))
		leaves = append(leaves, auditlog.RecordHash(b))
	}
	root, _ := auditlog.TreeHash(n, m)
	roots = append(roots, root)
	cp := func(size int) auditlog.Checkpoint {
		return auditlog.Checkpoint{Origin: origin, Size: int64(size), Root: roots[size]}
	}
	for size := 1; size <= n; size++ {
		for i := range size {
			p, err := auditlog.ProveInclusion(int64(i), int64(size), m)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := m.Entry(int64(i))
			if _, err := auditlog.VerifyInclusion(cp(size), int64(i), b, p); err != nil {
				t.Fatalf("inclusion of %d in %d: %v", i, size, err)
			}
			// The proof is for this index only.
			if size > 1 {
				j := (i + 1) % size
				bj, _ := m.Entry(int64(j))
				if _, err := auditlog.VerifyInclusion(cp(size), int64(j), bj, p); !errors.Is(err, auditlog.ErrBadProof) {
					t.Fatalf("proof of %d accepted for %d in %d: %v", i, j, size, err)
				}
			}
		}
		for old := 0; old <= size; old++ {
			p, err := auditlog.ProveConsistency(int64(old), int64(size), m)
			if err != nil {
				t.Fatal(err)
			}
			if err := auditlog.VerifyConsistency(cp(old), cp(size), p); err != nil {
				t.Fatalf("consistency %d -> %d: %v", old, size, err)
			}
			if old > 0 && old < size {
				// Against another root of the old size: refused.
				bad := cp(old)
				bad.Root[0] ^= 1
				if err := auditlog.VerifyConsistency(bad, cp(size), p); !errors.Is(err, auditlog.ErrBadProof) {
					t.Fatalf("consistency %d -> %d with a wrong old root: %v", old, size, err)
				}
			}
		}
	}
	if _, err := auditlog.ProveInclusion(n, n, m); err == nil {
		t.Error("inclusion proof for an entry past the end")
	}
	if _, err := auditlog.ProveConsistency(5, 4, m); err == nil {
		t.Error("consistency proof backwards")
	}
	if err := auditlog.VerifyConsistency(cp(5), cp(4), nil); !errors.Is(err, auditlog.ErrBadProof) {
		t.Errorf("backwards consistency: %v", err)
	}
	other := cp(5)
	other.Origin = "example.org/other"
	if err := auditlog.VerifyConsistency(other, cp(5), nil); !errors.Is(err, auditlog.ErrBadProof) {
		t.Errorf("consistency across origins: %v", err)
	}
}

// A store commits entries in groups: an Appender over the committed hashes
// must give the same log as appending one at a time, and Rewind must undo
// exactly the entries after the mark.
func TestAppenderGroups(t *testing.T) {
	ops := credits(40)
	one := auditlog.NewMemLog()
	for i, op := range ops {
		if _, err := one.Append(op, at(i)); err != nil {
			t.Fatal(err)
		}
	}
	grouped := auditlog.NewMemLog()
	i := 0
	for _, g := range []int{1, 2, 3, 5, 8, 13, 8} {
		a := grouped.Appender()
		for range g {
			mark := a.Size()
			// An operation that fails after appending is rewound.
			if _, _, err := a.Append(auditlog.Credit{Account: 9, Amount: eur(1)}, at(99)); err != nil {
				t.Fatal(err)
			}
			if err := a.Rewind(mark); err != nil {
				t.Fatal(err)
			}
			e, b, err := a.Append(ops[i], at(i))
			if err != nil {
				t.Fatal(err)
			}
			if e.Index != int64(i) {
				t.Fatalf("index %d, want %d", e.Index, i)
			}
			want, _ := one.Entry(int64(i))
			if !bytes.Equal(b, want) {
				t.Fatalf("entry %d differs", i)
			}
			i++
		}
		// Proofs can be made from inside the batch, before the commit.
		if _, err := auditlog.ProveInclusion(int64(i-1), a.Size(), a); err != nil {
			t.Fatal(err)
		}
		batchRoot, err := a.TreeHash()
		if err != nil {
			t.Fatal(err)
		}
		first, hashes := a.Pending()
		start, entries := a.Entries()
		if first != tlog.StoredHashIndex(0, start) || int64(len(entries)) != a.Size()-start {
			t.Fatalf("pending from %d for entries from %d", first, start)
		}
		if first+int64(len(hashes)) != tlog.StoredHashIndex(0, a.Size()) {
			t.Fatalf("pending %d hashes from %d; the next entry's start at %d", len(hashes), first, tlog.StoredHashIndex(0, a.Size()))
		}
		if err := grouped.Commit(a); err != nil {
			t.Fatal(err)
		}
		if r, _ := auditlog.TreeHash(grouped.Size(), grouped); r != batchRoot {
			t.Fatal("root after commit differs from the batch's")
		}
		// A stale appender is refused.
		if err := grouped.Commit(a); err == nil && len(entries) > 0 {
			t.Fatal("stale appender committed twice")
		}
	}
	r1, _ := auditlog.TreeHash(int64(len(ops)), one)
	r2, _ := auditlog.TreeHash(int64(len(ops)), grouped)
	if r1 != r2 {
		t.Error("grouped log differs")
	}
	a := grouped.Appender()
	if err := a.Rewind(a.Size() - 1); err == nil {
		t.Error("rewound into committed entries")
	}
	if _, _, err := a.Append(auditlog.Credit{}, at(0)); !errors.Is(err, auditlog.ErrInvalidEntry) || a.Size() != grouped.Size() {
		t.Errorf("invalid op: %v, size %d", err, a.Size())
	}
}

func signedCheckpoint(t testing.TB, f *fixture, m *auditlog.MemLog) (auditlog.Checkpoint, []byte) {
	t.Helper()
	cp, err := m.Checkpoint(f.origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := auditlog.NewSigner(f.origin, f.signing)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := auditlog.SignCheckpoint(cp, s)
	if err != nil {
		t.Fatal(err)
	}
	return cp, signed
}

// Tampering with the stored log is caught, naming the entry where it can.
func TestTampering(t *testing.T) {
	f := newFixture(t)
	m := f.memLog(t)
	cp, signed := signedCheckpoint(t, f, m)
	verifier := f.verifier(t)
	if _, err := auditlog.OpenCheckpoint(signed, f.origin, verifier); err != nil {
		t.Fatal(err)
	}
	entries := f.encodings(t)
	if err := auditlog.VerifyLog(cp, entries); err != nil {
		t.Fatal(err)
	}

	t.Run("changed amount", func(t *testing.T) {
		// The withdraw debits 9.00; the tamperer makes it 0.09 and fixes
		// the coin counts so the entry is still well formed.
		e := f.entries[4]
		w := e.Op.(auditlog.Withdraw)
		w.Amount = eur(w.Amount.Value - 100)
		w.Issued = slices.Clone(w.Issued)
		for i := range w.Issued {
			if w.Issued[i].Value == eur(200) {
				w.Issued[i].Value = eur(150)
			}
		}
		e.Op = w
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		tampered := slices.Clone(entries)
		tampered[4] = b
		if err := auditlog.VerifyLog(cp, tampered); !errors.Is(err, auditlog.ErrBadProof) {
			t.Errorf("VerifyLog: %v", err)
		}
		// Anyone holding the entry's inclusion proof sees it too.
		p, _ := auditlog.ProveInclusion(4, cp.Size, m)
		if _, err := auditlog.VerifyInclusion(cp, 4, b, p); !errors.Is(err, auditlog.ErrBadProof) {
			t.Errorf("VerifyInclusion: %v", err)
		}
		// A byte changed in place without care for the format is named.
		raw := slices.Clone(entries)
		raw[4] = append(bytes.Clone(entries[4]), 0)
		if err := auditlog.VerifyLog(cp, raw); err == nil || !containsAll(err.Error(), "entry 4") {
			t.Errorf("VerifyLog of a garbled entry: %v", err)
		}
	})

	t.Run("removed entry", func(t *testing.T) {
		removed := slices.Delete(slices.Clone(entries), 5, 6)
		err := auditlog.VerifyLog(cp, removed)
		if !errors.Is(err, auditlog.ErrBadProof) {
			t.Errorf("VerifyLog: %v", err)
		}
		// Replayed against the checkpoint's size the gap is named.
		a := auditlog.NewAppender(0, nil)
		var at error
		for _, b := range removed {
			if _, at = a.AppendEncoded(b); at != nil {
				break
			}
		}
		if at == nil || !containsAll(at.Error(), "entry 5 says it is entry 6") {
			t.Errorf("replay: %v", at)
		}
		// Renumbering every later entry does not help: the root differs.
		renum := slices.Clone(removed)
		for i := 5; i < len(renum); i++ {
			e, _ := auditlog.DecodeEntry(renum[i])
			e.Index = int64(i)
			renum[i], _ = e.Encode()
		}
		short := cp
		short.Size--
		if err := auditlog.VerifyLog(short, renum); !errors.Is(err, auditlog.ErrBadProof) {
			t.Errorf("renumbered log: %v", err)
		}
	})

	t.Run("rewritten checkpoint", func(t *testing.T) {
		// Rewriting the root (or the size) in the signed note breaks the
		// signature.
		forged := bytes.Replace(signed, []byte(fmt.Sprintf("\n%d\n", cp.Size)), []byte(fmt.Sprintf("\n%d\n", cp.Size-1)), 1)
		if _, err := auditlog.OpenCheckpoint(forged, f.origin, verifier); !errors.Is(err, auditlog.ErrCheckpointSignature) {
			t.Errorf("size rewritten: %v", err)
		}
		other := cp
		other.Root[0] ^= 1
		text := other.Text()
		forged = append(text, signed[len(cp.Text()):]...)
		if _, err := auditlog.OpenCheckpoint(forged, f.origin, verifier); !errors.Is(err, auditlog.ErrCheckpointSignature) {
			t.Errorf("root rewritten: %v", err)
		}
		// Re-signed with another key: refused.
		s, _ := auditlog.NewSigner(f.origin, seedKey(0x66))
		forged, _ = auditlog.SignCheckpoint(other, s)
		if _, err := auditlog.OpenCheckpoint(forged, f.origin, verifier); !errors.Is(err, auditlog.ErrCheckpointSignature) {
			t.Errorf("other key: %v", err)
		}
	})

	t.Run("forked log", func(t *testing.T) {
		// The bank shows one client the real log and another a log where
		// entry 5 never happened; both checkpoints carry its signature.
		w, err := auditlog.NewWitness(f.origin, verifier)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Accept(signed, nil); err != nil {
			t.Fatal(err)
		}
		fork := auditlog.NewMemLog()
		for i, e := range f.entries {
			if i == 5 {
				continue
			}
			if _, err := fork.Append(e.Op, e.Time); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = fork.Append(credits(1)[0], fixtureBase)
		forkCP, forkSigned := signedCheckpoint(t, f, fork)
		if forkCP.Size != cp.Size {
			t.Fatalf("fork of %d, log of %d", forkCP.Size, cp.Size)
		}
		_, err = w.Accept(forkSigned, nil)
		var fe *auditlog.ForkError
		if !errors.Is(err, auditlog.ErrForked) || !errors.As(err, &fe) {
			t.Fatalf("fork of the same size: %v", err)
		}
		// The evidence stands alone: both notes verify, same size, two roots.
		c1, err1 := auditlog.OpenCheckpoint(fe.Older, f.origin, verifier)
		c2, err2 := auditlog.OpenCheckpoint(fe.Newer, f.origin, verifier)
		if err1 != nil || err2 != nil || c1.Size != c2.Size || c1.Root == c2.Root {
			t.Errorf("evidence: %v %v %+v %+v", err1, err2, c1, c2)
		}
		// A larger fork cannot be proved consistent with what the
		// witness holds, whatever proof the bank sends.
		_, _ = fork.Append(credits(2)[1], fixtureBase)
		_, bigger := signedCheckpoint(t, f, fork)
		p, _ := auditlog.ProveConsistency(cp.Size, fork.Size(), fork)
		if _, err := w.Accept(bigger, p); !errors.Is(err, auditlog.ErrForked) {
			t.Errorf("larger fork: %v", err)
		}
		if got, _, _ := w.Latest(); got != cp {
			t.Errorf("witness moved to %+v", got)
		}
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !bytes.Contains([]byte(s), []byte(sub)) {
			return false
		}
	}
	return true
}

// MemLog is safe for concurrent use: appends from many goroutines make a
// log of distinct, consecutive indexes.
func TestMemLogConcurrent(t *testing.T) {
	m := auditlog.NewMemLog()
	done := make(chan int64, 64)
	for g := range 8 {
		go func() {
			for i := range 8 {
				e, err := m.Append(auditlog.Credit{Account: uint64(1 + g), Amount: eur(uint64(1 + i))}, at(i))
				if err != nil {
					t.Error(err)
				}
				done <- e.Index
				_, _ = m.Checkpoint("example.org/log")
			}
		}()
	}
	seen := map[int64]bool{}
	for range 64 {
		seen[<-done] = true
	}
	if len(seen) != 64 || m.Size() != 64 {
		t.Errorf("%d distinct indexes, size %d", len(seen), m.Size())
	}
	cp, _ := m.Checkpoint("example.org/log")
	var entries [][]byte
	for i := range m.Size() {
		b, _ := m.Entry(i)
		entries = append(entries, b)
	}
	if err := auditlog.VerifyLog(cp, entries); err != nil {
		t.Error(err)
	}
}
