package auditlog

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrBadProof is returned (wrapped) when an inclusion or consistency proof,
// or a replayed log, does not match a checkpoint.
var ErrBadProof = errors.New("auditlog: proof does not verify")

// RecordHash is the leaf hash of an encoded entry: RFC 6962
// SHA-256(0x00 || entry).
func RecordHash(entry []byte) tlog.Hash { return tlog.RecordHash(entry) }

// StoredHashes returns the hashes a store writes when it appends the encoded
// entry with index n, to be stored from tlog.StoredHashIndex(0, n) on, in
// order. r must serve the hashes stored for entries 0..n-1.
func StoredHashes(n int64, entry []byte, r tlog.HashReader) ([]tlog.Hash, error) {
	if n < 0 {
		return nil, fmt.Errorf("auditlog: negative index %d", n)
	}
	return tlog.StoredHashes(n, entry, r)
}

// TreeHash is the root hash of the first size entries (the SHA-256 of
// nothing for size 0), from the stored hashes r serves.
func TreeHash(size int64, r tlog.HashReader) (tlog.Hash, error) {
	if size < 0 {
		return tlog.Hash{}, fmt.Errorf("auditlog: negative tree size %d", size)
	}
	return tlog.TreeHash(size, r)
}

// ProveInclusion returns the RFC 6962 audit path showing that the tree of
// size entries contains entry index.
func ProveInclusion(index, size int64, r tlog.HashReader) (tlog.RecordProof, error) {
	if index < 0 || index >= size {
		return nil, fmt.Errorf("auditlog: no entry %d in a log of %d", index, size)
	}
	return tlog.ProveRecord(size, index, r)
}

// ProveConsistency returns the RFC 6962 consistency proof that the tree of
// newSize entries extends the tree of oldSize entries. The proof between
// equal sizes, or from the empty tree, is empty.
func ProveConsistency(oldSize, newSize int64, r tlog.HashReader) (tlog.TreeProof, error) {
	if oldSize < 0 || oldSize > newSize {
		return nil, fmt.Errorf("auditlog: no consistency proof from size %d to %d", oldSize, newSize)
	}
	if oldSize == 0 || oldSize == newSize {
		return tlog.TreeProof{}, nil
	}
	return tlog.ProveTree(newSize, oldSize, r)
}

// VerifyInclusion checks that entry, an encoded entry, is the entry at
// index in the tree cp describes, and returns it decoded. It checks that the
// entry names index as its own. A failure wraps ErrBadProof (or
// ecash.ErrMalformed for an entry that does not decode).
func VerifyInclusion(cp Checkpoint, index int64, entry []byte, proof tlog.RecordProof) (*Entry, error) {
	if index < 0 || index >= cp.Size {
		return nil, fmt.Errorf("%w: entry %d is not in a log of %d", ErrBadProof, index, cp.Size)
	}
	e, err := DecodeEntry(entry)
	if err != nil {
		return nil, err
	}
	if e.Index != index {
		return nil, fmt.Errorf("%w: entry %d says it is entry %d", ErrBadProof, index, e.Index)
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Root, index, RecordHash(entry)); err != nil {
		return nil, fmt.Errorf("%w: entry %d in the log of %d: %v", ErrBadProof, index, cp.Size, err)
	}
	return e, nil
}

// VerifyConsistency checks that newer extends older: same origin, and proof
// shows the tree of older.Size is a prefix of the tree of newer.Size (for
// equal sizes: the same root). Checkpoint signatures are not checked here:
// the checkpoints come from OpenCheckpoint. A failure wraps ErrBadProof.
func VerifyConsistency(older, newer Checkpoint, proof tlog.TreeProof) error {
	if older.Origin != newer.Origin {
		return fmt.Errorf("%w: checkpoints of logs %q and %q", ErrBadProof, older.Origin, newer.Origin)
	}
	if older.Size < 0 || older.Size > newer.Size {
		return fmt.Errorf("%w: size %d does not precede size %d", ErrBadProof, older.Size, newer.Size)
	}
	switch {
	case older.Size == newer.Size:
		if older.Root != newer.Root || len(proof) != 0 {
			return fmt.Errorf("%w: two trees of size %d with roots %s and %s", ErrBadProof, older.Size, older.Root, newer.Root)
		}
		return nil
	case older.Size == 0:
		if older.Root != emptyRoot || len(proof) != 0 {
			return fmt.Errorf("%w: the empty tree has root %s, not %s", ErrBadProof, emptyRoot, older.Root)
		}
		return nil
	}
	if err := tlog.CheckTree(proof, newer.Size, newer.Root, older.Size, older.Root); err != nil {
		return fmt.Errorf("%w: the tree of %d does not extend the tree of %d: %v", ErrBadProof, newer.Size, older.Size, err)
	}
	return nil
}

// emptyRoot is the root of the empty tree, SHA-256 of nothing.
var emptyRoot = func() tlog.Hash {
	h, _ := tlog.TreeHash(0, nil)
	return h
}()

// Appender appends entries on top of a committed log inside one atomic
// commit. A store makes one per commit (or per group of operations committed
// together), calls Append for each operation that changes state, in commit
// order, and then writes, in the same atomic batch:
//
//   - each encoded entry under its index (Entries);
//   - the stored hashes (Pending), under consecutive stored-hash indexes;
//   - the new size.
//
// If the commit fails, it drops the Appender: nothing was written. Rewind
// undoes the appends of an operation that fails after appending. An
// Appender is not safe for concurrent use; the store's commit pipeline owns
// it.
type Appender struct {
	base    tlog.HashReader
	start   int64       // committed size
	first   int64       // tlog.StoredHashIndex(0, start)
	pending []tlog.Hash // stored hashes from index first
	entries [][]byte    // encoded entries from index start
	marks   []int       // len(pending) before each entry
}

// NewAppender starts appending to a log of size committed entries whose
// stored hashes committed serves.
func NewAppender(size int64, committed tlog.HashReader) *Appender {
	if size < 0 {
		size = 0
	}
	return &Appender{base: committed, start: size, first: tlog.StoredHashIndex(0, size)}
}

// Size is the log's size including the appended entries.
func (a *Appender) Size() int64 { return a.start + int64(len(a.entries)) }

// Append records op at time t as the next entry and returns the entry (in
// canonical form: its Index is the entry's position) and its encoding. An
// invalid op (ErrInvalidEntry) appends nothing.
func (a *Appender) Append(op Op, t time.Time) (Entry, []byte, error) {
	e := Entry{Index: a.Size(), Time: t, Op: op}
	b, err := e.Encode()
	if err != nil {
		return Entry{}, nil, err
	}
	if err := a.add(b); err != nil {
		return Entry{}, nil, err
	}
	return e.Canonical(), b, nil
}

// AppendEncoded appends an encoded entry, as an auditor replaying a log
// does: it must decode, and name the next index as its own.
func (a *Appender) AppendEncoded(b []byte) (*Entry, error) {
	e, err := DecodeEntry(b)
	if err != nil {
		return nil, fmt.Errorf("auditlog: entry %d: %w", a.Size(), err)
	}
	if e.Index != a.Size() {
		return nil, fmt.Errorf("%w: entry %d says it is entry %d", ErrBadProof, a.Size(), e.Index)
	}
	if err := a.add(b); err != nil {
		return nil, err
	}
	return e, nil
}

func (a *Appender) add(b []byte) error {
	hs, err := tlog.StoredHashes(a.Size(), b, a)
	if err != nil {
		return fmt.Errorf("auditlog: stored hashes for entry %d: %w", a.Size(), err)
	}
	a.marks = append(a.marks, len(a.pending))
	a.pending = append(a.pending, hs...)
	a.entries = append(a.entries, b)
	return nil
}

// Rewind drops the entries appended after the log reached size (which
// must be between the committed size and Size).
func (a *Appender) Rewind(size int64) error {
	if size < a.start || size > a.Size() {
		return fmt.Errorf("auditlog: cannot rewind to %d: committed %d, size %d", size, a.start, a.Size())
	}
	k := int(size - a.start)
	if k < len(a.entries) {
		a.pending = a.pending[:a.marks[k]]
		a.marks = a.marks[:k]
		a.entries = a.entries[:k]
	}
	return nil
}

// Entries returns the index of the first appended entry (the committed
// size) and the encoded entries appended, in order.
func (a *Appender) Entries() (first int64, entries [][]byte) { return a.start, a.entries }

// Pending returns the stored hashes to write: hashes[i] belongs at stored
// hash index first+i.
func (a *Appender) Pending() (first int64, hashes []tlog.Hash) { return a.first, a.pending }

// TreeHash is the root of the log including the appended entries.
func (a *Appender) TreeHash() (tlog.Hash, error) { return tlog.TreeHash(a.Size(), a) }

// ReadHashes serves committed hashes from the base reader and appended ones
// from memory: a tlog.HashReader for the log as it will be after the commit.
func (a *Appender) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var old []int64
	var at []int
	end := a.first + int64(len(a.pending))
	for i, x := range indexes {
		switch {
		case x < 0 || x >= end:
			return nil, fmt.Errorf("auditlog: stored hash %d not in a log of %d", x, a.Size())
		case x >= a.first:
			out[i] = a.pending[x-a.first]
		default:
			old = append(old, x)
			at = append(at, i)
		}
	}
	if len(old) > 0 {
		if a.base == nil {
			return nil, fmt.Errorf("auditlog: stored hash %d: no committed hashes", old[0])
		}
		hs, err := a.base.ReadHashes(old)
		if err != nil {
			return nil, err
		}
		if len(hs) != len(old) {
			return nil, fmt.Errorf("auditlog: ReadHashes(%d indexes) = %d hashes", len(old), len(hs))
		}
		for j, i := range at {
			out[i] = hs[j]
		}
	}
	return out, nil
}

// MemLog is an in-memory log: the reference model a store's log must
// behave like, and the log tests and examples run on. It is safe for
// concurrent use.
type MemLog struct {
	mu      sync.Mutex
	entries [][]byte
	hashes  []tlog.Hash // every stored hash, by stored-hash index
	keySets []int64     // the index of every KeySet entry, in order
}

// NewMemLog returns an empty log.
func NewMemLog() *MemLog { return &MemLog{} }

// Size is the number of entries.
func (m *MemLog) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.entries))
}

// Append appends op at time t and returns the entry as recorded.
func (m *MemLog) Append(op Op, t time.Time) (Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.appender()
	e, _, err := a.Append(op, t)
	if err != nil {
		return Entry{}, err
	}
	m.commit(a)
	return e, nil
}

// AppendEncoded appends an encoded entry; it must decode and carry the next
// index.
func (m *MemLog) AppendEncoded(b []byte) (*Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.appender()
	e, err := a.AppendEncoded(b)
	if err != nil {
		return nil, err
	}
	m.commit(a)
	return e, nil
}

// Commit appends everything a (made by m.Appender) appended, as a store
// commits a batch. It fails if the log changed since.
func (m *MemLog) Commit(a *Appender) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a.start != int64(len(m.entries)) {
		return fmt.Errorf("auditlog: appender started at %d, the log has %d entries", a.start, len(m.entries))
	}
	m.commit(a)
	return nil
}

// Appender starts a batch over m's current entries; Commit applies it.
func (m *MemLog) Appender() *Appender {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.appender()
}

func (m *MemLog) appender() *Appender {
	return NewAppender(int64(len(m.entries)), tlog.HashReaderFunc(m.readHashes))
}

func (m *MemLog) commit(a *Appender) {
	first, hs := a.Pending()
	if first != int64(len(m.hashes)) {
		panic("auditlog: MemLog stored hashes out of step")
	}
	m.hashes = append(m.hashes, hs...)
	first, es := a.Entries()
	for i, b := range es {
		if k, err := PeekKind(b); err == nil && k == KindKeySet {
			m.keySets = append(m.keySets, first+int64(i))
		}
	}
	m.entries = append(m.entries, es...)
}

// NewestKeySet returns the newest KeySet entry below size; ok is false if
// there is none.
func (m *MemLog) NewestKeySet(size int64) (ks KeySetLine, ok bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.newestKeySet(size)
}

func (m *MemLog) newestKeySet(size int64) (KeySetLine, bool, error) {
	for i := len(m.keySets) - 1; i >= 0; i-- {
		if x := m.keySets[i]; x < size {
			e, err := DecodeEntry(m.entries[x])
			if err != nil {
				return KeySetLine{}, false, err
			}
			return KeySetLine{Index: x, Hash: sha256.Sum256(e.Op.(KeySet).Signed)}, true, nil
		}
	}
	return KeySetLine{}, false, nil
}

// Entry returns the encoded entry at index.
func (m *MemLog) Entry(index int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if index < 0 || index >= int64(len(m.entries)) {
		return nil, fmt.Errorf("auditlog: no entry %d in a log of %d", index, len(m.entries))
	}
	return m.entries[index], nil
}

// ReadHashes implements tlog.HashReader.
func (m *MemLog) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.readHashes(indexes)
}

func (m *MemLog) readHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("auditlog: stored hash %d not in a log of %d", x, len(m.entries))
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

// Checkpoint describes the log as it is now, under origin.
func (m *MemLog) Checkpoint(origin string) (Checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	size := int64(len(m.entries))
	root, err := tlog.TreeHash(size, tlog.HashReaderFunc(m.readHashes))
	if err != nil {
		return Checkpoint{}, err
	}
	ks, ok, err := m.newestKeySet(size)
	if err != nil {
		return Checkpoint{}, err
	}
	return Checkpoint{Origin: origin, Size: size, Root: root, KeySet: ks, HasKeySet: ok}, nil
}

// VerifyLog replays entries, the whole log from index 0, and checks that
// every entry decodes, carries its own index, and that together they make
// the tree cp describes. An error names the first entry at fault; a root
// that differs wraps ErrBadProof.
func VerifyLog(cp Checkpoint, entries [][]byte) error {
	if int64(len(entries)) != cp.Size {
		return fmt.Errorf("%w: %d entries for a checkpoint of %d", ErrBadProof, len(entries), cp.Size)
	}
	a := NewAppender(0, nil)
	for _, b := range entries {
		if _, err := a.AppendEncoded(b); err != nil {
			return err
		}
	}
	root, err := a.TreeHash()
	if err != nil {
		return err
	}
	if root != cp.Root {
		return fmt.Errorf("%w: %d entries make root %s, the checkpoint says %s", ErrBadProof, cp.Size, root, cp.Root)
	}
	return nil
}
