// Package pebblestore implements [bank.Store] on Pebble
// (github.com/cockroachdb/pebble/v2), the bank's embedded storage.
//
// # Guarantees
//
// Pebble has no transactions, so the store serialises every mutation itself:
// all mutating calls become operations that one committer goroutine applies
// in arrival order. The committer takes the first waiting operation and then
// as many more as are already waiting (up to [Options.MaxBatch]) into one
// indexed Pebble batch. Each operation first does all its reads and checks,
// reading through the batch so that it sees the writes of the operations
// before it in the same group, and writes only if every check passed: a
// refused operation leaves no trace. The committer then hands the group to
// Pebble with pebble.Sync, without waiting for the sync (ApplyNoSyncWait:
// the group is visible to the next group's reads at once), and goes on to
// the next group; a second goroutine waits for each group's sync in turn
// and only then replies to every operation in it, refused ones included (a
// refusal may rest on an earlier operation, of this group or of one not yet
// synced). If a commit fails, every operation in that group and in every
// group applied after it gets the error and the store refuses all further
// mutations, since the durable state is then unknown; reopen it.
//
// This gives the [bank.Store] contract: each mutation is atomic (one Pebble
// batch), durable on return (synced), and linearizable (one committer). Reads
// ([Store.Account], [Store.History], [Store.Totals]) read committed state
// directly and so see every mutation that returned before they started.
//
// Contexts: a mutation whose context is done before the committer picks it
// up returns ctx.Err() and is not applied. Once picked up, an operation runs
// to completion and its caller waits for the group's commit, whatever the
// context does, so that a reply always tells the truth about durability.
//
// # Key layout
//
// Integers are fixed-width big-endian; values use the same conventions
// (fixed field order, u32 length-prefixed byte strings).
//
//	m/format                  u32 on-disk format version (2; a store of 1 is upgraded, a newer one refused: Format)
//	m/next-account            u64 next user account id (from 1000)
//	a/<u64 id>                account: name, key, merchant flag, balance, created, next posting seq
//	k/<public key>            u64 account id
//	p/<u64 id><u64 seq>       posting: time, kind, signed amount, running balance, memo
//	w/<request hash>          withdraw: account, amount, blind signatures
//	o/<request hash>          withdraw refused for good: account, gRPC code and text, time (never beside w/)
//	q/<u64 µs><request hash>  nothing: each o/ record by its time, for PruneWithdrawRefusals
//	c/<coin id>               spent coin: payment or swap request hash, permission bytes
//	s/<request hash>          swap: value, sorted input coin ids, blind signatures, time
//	i/<blinded message hash>  issued: withdraw or swap, its request hash, the signature's position
//	d/<payment hash>          deposit: merchant, amount, coin ids, receipt bytes
//	r/<credit reference>      credit reference: account, amount
//	f/<coin id>               refunds of a spent coin: value restored in all, credit not yet spent again
//	u/<refund request hash>   refund: payment hash, merchant, amount, receipt bytes
//	v/<payment hash><u64 seq> a payment's refunds in order: refund request hash
//	t/<u64 day><u64 id><hash> failed authentications of an account from one source (SHA-256) on a day
//
// History reads an account's postings newest first by iterating p/<id> in
// reverse. The system accounts [bank.AccountFunding] and
// [bank.AccountOutstanding] (and [bank.AccountFees]) are created when a store is first opened; user
// accounts are numbered from 1000.
//
// # Ledger
//
// Every operation posts balanced entries, so the sum of all balances is zero:
// a credit posts +amount to the account and -amount to Funding; a withdraw
// -amount to the account and +amount to Outstanding; a deposit -amount to
// Outstanding and +amount to the merchant; a swap posts nothing (its value
// stays outstanding, in other coins); a refund -amount to the merchant and
// +amount to Outstanding. A fee is one more transfer, of kind "fee", to
// [bank.AccountFees] (created on open in a database made before fees): from
// the account withdrawing, from Outstanding for a deposit or swap, from the
// merchant refunding. Balances are int64; a posting that would overflow is
// refused with [ErrOverflow].
package pebblestore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// Errors of this package, besides the bank.Store sentinels.
var (
	// ErrClosed is returned by every call on a closed store.
	ErrClosed = bank.ErrStoreClosed
	// ErrOverflow refuses an operation that would take a balance outside int64.
	ErrOverflow = bank.ErrBalanceOverflow
	// ErrRequestConflict refuses a withdraw whose request hash is recorded
	// for another account or amount.
	ErrRequestConflict = bank.ErrRequestConflict
	// ErrInvalid wraps every refusal of a malformed operation (non-positive
	// amount, oversized field, duplicate coin, system account, ...).
	ErrInvalid = bank.ErrInvalidOp
)

// Limits on operation fields, so that one record stays small.
const (
	MaxNameLen       = bank.MaxNameLen
	MaxMemoLen       = bank.MaxMemoLen
	MaxReferenceLen  = bank.MaxReferenceLen
	MaxSigLen        = bank.MaxSigLen
	MaxPermissionLen = bank.MaxPermissionLen
	MaxReceiptLen    = bank.MaxReceiptLen
)

// FirstUserAccount is the id of the first customer or merchant account.
const FirstUserAccount = bank.FirstUserAccount

// formatVersion 2: account records end with the time of the account's
// latest posting, which an older binary cannot read (it refuses the store
// by the version, not by a record). A version-1 store is upgraded at open:
// the field is simply absent from its records until they are rewritten.
// Withdraw refusals (o/) did not raise it: an older build never reads o/,
// and reads every other record as before; run on this ledger it only
// forgets the refusals (a refused request sent again is decided afresh).
const (
	formatVersion = 2
	defaultBatch  = 256
	maxGroupBytes = 32 << 20 // stop filling a group past this batch size
)

// Options configures a Store.
type Options struct {
	// FS is the file system; nil means the operating system's (vfs.Default).
	// Tests pass vfs.NewMem() or vfs.NewCrashableMem().
	FS vfs.FS
	// MaxBatch bounds the operations committed together in one group commit;
	// 0 means 256.
	MaxBatch int
	// ObserveCommit, if set, is told the size and the time of every group
	// commit, from the group's first apply to the end of its sync (for
	// metrics). It runs on the goroutine that answers the groups: be quick.
	ObserveCommit func(ops int, d time.Duration)
	// Logger receives Pebble's own messages (WAL recovery, compactions,
	// background errors) with component=pebble; nil means slog.Default().
	Logger *slog.Logger
	// CacheSize is the size in bytes of Pebble's block cache (uncompressed
	// data, index and bloom-filter blocks); 0 means DefaultCacheSize.
	CacheSize int64
	// Now is the clock an operation's NotAfter is judged by, at its commit;
	// nil means time.Now. Tests whose bank runs on a clock of their own
	// pass the same one.
	Now func() time.Time
}

// DefaultCacheSize is the block cache a Store gets when Options.CacheSize is
// 0: 192 MiB. Pebble's own default, 8 MB, is too small for a bank: every
// commit looks up each coin it spends, mostly absent keys that the bloom
// filters answer, and once the filter and index blocks no longer fit each
// lookup re-reads and decompresses them (the cost per coin grew with the
// number of spent coins, docs/PERFORMANCE.md). A store of 1M coins
// withdrawn and spent held 5 MiB of filters and 6.4 MiB of indexes, so
// 128 MiB holds them for some 10M coins (issue 7's target size); Pebble
// charges its memtables to the same cache (MemTableSize each, one or two
// live), hence two of them more. It is small beside the page cache that a
// store of several GB wants anyway. The cache is allocated as it fills,
// outside the Go heap.
const DefaultCacheSize = 128<<20 + 2*MemTableSize

// MemTableSize is the size of the bank store's memtables: 32 MiB, against
// Pebble's 4 MB. Every memtable flushed becomes an L0 table that overlaps
// the whole of the next level (coin ids and request hashes are random), so
// small memtables make many small compactions, each rewriting that level
// for a few MB of new data: at 1M spent coins the larger memtable cut
// compactions from 45 to 16 µs a paid coin and the process's CPU per coin
// by 9% (docs/PERFORMANCE.md, "Memtables"). The cost: up to that much
// more WAL to replay when the store opens after a crash.
const MemTableSize = 32 << 20

// DBOptions is how OpenDB opens a Pebble database.
type DBOptions struct {
	FS           vfs.FS       // nil: the operating system's
	CacheSize    int64        // block cache in bytes; 0: Pebble's default (8 MB)
	MemTableSize uint64       // 0: Pebble's default (4 MB)
	Logger       *slog.Logger // nil: discard Pebble's messages
	// ReadOnly opens an existing database without writing to it (a copy
	// of a wallet directory whose seed a restore reads).
	ReadOnly bool

	lock *pebble.Lock // the directory's lock, already held (openChecked)
}

// OpenDB opens (or creates) a Pebble database in dir as every store of the
// project does (bank, merchant, wallet): with a block cache of the given
// size and bloom filters on every level, since most of their lookups are
// for keys that are absent (fresh coins, new payment and request hashes,
// unknown orders) and a filter answers those without reading blocks.
func OpenDB(dir string, o DBOptions) (*pebble.DB, error) {
	po := &pebble.Options{FS: o.FS, MemTableSize: o.MemTableSize, ReadOnly: o.ReadOnly, ErrorIfNotExists: o.ReadOnly, Lock: o.lock}
	if po.FS == nil {
		po.FS = vfs.Default
	}
	if o.CacheSize > 0 {
		// The DB takes its own reference on the cache; ours is dropped when
		// OpenDB returns, so the cache is freed when the DB is closed (or
		// at once if Open fails).
		cache := pebble.NewCache(o.CacheSize)
		defer cache.Unref()
		po.Cache = cache
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	po.Logger = pebbleLogger{logger}
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10) // inherited by L1+
	return pebble.Open(dir, po)
}

// Get reads the value at key from r (a database, snapshot or indexed
// batch): a copy of it, and whether the key is present.
//
// It reads through an iterator that consults the bloom filters of every
// level. Pebble's own Get skips the filters of the last level (L6), which
// holds most of the data: it assumes a looked-up key is usually present,
// when a filter costs more than the data block it would save. A bank's
// lookups are mostly of absent keys (a coin not yet spent, a new request
// hash, an unused nonce), so without the L6 filter each of them read and
// decompressed a data block of the largest level, and its cost grew with
// the store, past what the block cache holds (docs/PERFORMANCE.md,
// "Database size"). With the filter, an absent key costs a probe of
// cached filter and index blocks (measured: 3.4–3.8 µs against 19–29 µs
// for Pebble's Get, 3M keys in L6).
func Get(r pebble.Reader, key []byte) ([]byte, bool, error) {
	it, err := newLookupIter(r)
	if err != nil {
		return nil, false, err
	}
	v, found, err := seek(it, key)
	if err := errors.Join(err, it.Close()); err != nil {
		return nil, false, err
	}
	return v, found, nil
}

// newLookupIter is an iterator for point lookups (seek) through every
// level's bloom filters.
func newLookupIter(r pebble.Reader) (*pebble.Iterator, error) {
	return r.NewIter(&pebble.IterOptions{UseL6Filters: true})
}

// seek looks key up with it, which may serve many lookups: Get's work
// without an iterator's creation, most of the cost of looking up an
// absent key.
func seek(it *pebble.Iterator, key []byte) ([]byte, bool, error) {
	if !it.SeekPrefixGE(key) || !bytes.Equal(it.Key(), key) {
		return nil, false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, false, err
	}
	return append([]byte(nil), v...), true, nil
}

// NewLogger adapts a slog.Logger to pebble.Logger for every Pebble database
// of the project (bank, wallet, merchant). Pebble's routine messages (WAL
// replay, compactions) go to Debug; errors to Error.
func NewLogger(l *slog.Logger) pebble.Logger { return pebbleLogger{l} }

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called by Pebble on an unrecoverable internal error, and must
// not return; a panic keeps the stack.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic("pebblestore: pebble: " + msg)
}

// Store is a bank.Store on Pebble. It is safe for concurrent use.
type Store struct {
	db       *pebble.DB
	cfs      *checkpointFS // db's file system, which ends a checkpoint whose context ended
	maxBatch int
	observe  func(ops int, d time.Duration)
	now      func() time.Time // Options.Now

	ops  chan *request // unbuffered: a send completes when the committer picks the op up
	done chan struct{} // closed when the committer exits

	mu     sync.RWMutex // guards closed; held shared while registering a call
	closed bool
	calls  sync.WaitGroup // calls in progress, mutating or reading

	failed  error // the first failed commit (setFailure); guarded by syncMu
	logSize int64 // audit-log entries applied; committer-only after Open
	// anyRevoked: a key set revoked a denomination, so logged ops are
	// checked (checkRevoked); committer-only after Open.
	anyRevoked bool
	// authSwept: AuthFailure dropped the counts of the days before it
	// (committer-only).
	authSwept int64
	refs      bank.RecentLogRefs

	// syncLoop-only: shortenRamp's bytes still to watch and groups since
	// it last looked.
	rampLeft   int64
	sinceCheck int

	// Pebble makes a batch visible to reads before its WAL sync ends (its
	// commit pipeline publishes, then waits for the sync), so a read may
	// see a group a crash would take back. Reads that answer from what
	// they found wait (durable) until every group begun by then is synced:
	// started counts the groups handed to Pebble, synced those whose
	// commit returned; syncErr is the commit error that ends the wait.
	started, synced atomic.Uint64
	syncMu          sync.Mutex
	syncMoved       chan struct{} // guarded by syncMu: closed when synced moves or syncErr is set
	syncErr         error         // guarded by syncMu
	waitHook        func()        // tests: called when a read starts to wait
}

var _ bank.Store = (*Store)(nil)

// request is one mutating operation on its way through the committer.
type request struct {
	ctx context.Context
	// fn does all its reads and checks through t and records writes with
	// t.set; its writes are applied only if it returns nil. It stores its
	// result in variables it captures, which the caller reads after done.
	fn   func(t *txn) error
	err  error
	done chan struct{}
}

// Open opens or creates the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.MaxBatch < 0 {
		return nil, fmt.Errorf("pebblestore: MaxBatch %d < 0", opts.MaxBatch)
	}
	if opts.CacheSize < 0 {
		return nil, fmt.Errorf("pebblestore: CacheSize %d < 0", opts.CacheSize)
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	cfs := &checkpointFS{FS: opts.FS}
	// A database initialize would refuse is refused before Pebble writes
	// to it (openChecked).
	checked := func(db *pebble.DB) error { _, err := checkLedger(db); return err }
	db, err := openChecked(dir, DBOptions{FS: cfs, CacheSize: opts.CacheSize, MemTableSize: MemTableSize, Logger: logger}, checked)
	if err != nil {
		return nil, fmt.Errorf("pebblestore: open %s: %w", dir, err)
	}
	if err := initialize(db); err != nil {
		db.Close()
		return nil, err
	}
	logSize, err := loadLogSize(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := scanRevocations(db, logSize, logger); err != nil {
		db.Close()
		return nil, err
	}
	if err := indexKeySets(db, logSize, logger); err != nil {
		db.Close()
		return nil, err
	}
	revs, err := loadRevocations(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		db:         db,
		cfs:        cfs,
		maxBatch:   opts.MaxBatch,
		logSize:    logSize,
		anyRevoked: len(revs) > 0,
		observe:    opts.ObserveCommit,
		now:        opts.Now,
		ops:        make(chan *request),
		done:       make(chan struct{}),
		rampLeft:   rampWindow,
	}
	s.syncMoved = make(chan struct{})
	if s.maxBatch == 0 {
		s.maxBatch = defaultBatch
	}
	go s.commitLoop()
	return s, nil
}

// bankFormat is the bank store's format record (m/format). Unlike the
// wallet's and the merchant's, a bank store has had one from its start:
// a database without it is new, or not a bank's.
var bankFormat = Format{Key: keyFormat, Store: "bank", Version: formatVersion}

// checkLedger refuses a database that is not a ledger this build reads:
// another kind of store, a newer format (Format.Read), or data without a
// format record. It returns the format found, 0 for an empty database.
func checkLedger(db pebble.Reader) (uint32, error) {
	v, err := bankFormat.Read(db)
	if err != nil || v != 0 {
		return v, err
	}
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	nonEmpty := it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, err
	}
	if nonEmpty {
		return 0, errors.New("database has data but no format record")
	}
	return 0, nil
}

// initialize creates the system accounts in a new database, or checks the
// format version of an existing one.
func initialize(db *pebble.DB) error {
	v, err := checkLedger(db)
	if err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	if v != 0 {
		if err := bankFormat.Upgrade(db, v); err != nil {
			return fmt.Errorf("pebblestore: %w", err)
		}
		return ensureFeeAccount(db)
	}
	// A new database.
	b := db.NewBatch()
	defer b.Close()
	now := time.Now().UTC()
	for _, a := range []account{
		{Account: bank.Account{ID: bank.AccountFunding, Name: "funding", Created: now}, NextSeq: 1},
		{Account: bank.Account{ID: bank.AccountOutstanding, Name: "outstanding", Created: now}, NextSeq: 1},
		{Account: bank.Account{ID: bank.AccountFees, Name: "fees", Created: now}, NextSeq: 1},
	} {
		if err := b.Set(accountKey(a.ID), encodeAccount(&a), nil); err != nil {
			return fmt.Errorf("pebblestore: %w", err)
		}
	}
	if err := errors.Join(
		b.Set(keyNextAccount, binary.BigEndian.AppendUint64(nil, FirstUserAccount), nil),
		// The format record goes last in the batch but the batch is atomic:
		// a crash leaves either everything or an empty database.
		b.Set(bankFormat.Key, bankFormat.value(), nil),
		b.Commit(pebble.Sync),
	); err != nil {
		return fmt.Errorf("pebblestore: initialise: %w", err)
	}
	return nil
}

// ensureFeeAccount creates the fee account in a database made before fees
// existed.
func ensureFeeAccount(db *pebble.DB) error {
	_, closer, err := db.Get(accountKey(bank.AccountFees))
	if err == nil {
		return closer.Close()
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("pebblestore: %w", err)
	}
	a := account{Account: bank.Account{ID: bank.AccountFees, Name: "fees", Created: time.Now().UTC()}, NextSeq: 1}
	if err := db.Set(accountKey(a.ID), encodeAccount(&a), pebble.Sync); err != nil {
		return fmt.Errorf("pebblestore: creating the fee account: %w", err)
	}
	return nil
}

// enter registers a call, or refuses it if the store is closed.
func (s *Store) enter() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.calls.Add(1)
	return nil
}

// Close stops accepting calls (later calls return ErrClosed), waits for
// calls in progress (every operation already handed to the committer is
// committed and answered), and closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.calls.Wait()
	close(s.ops) // no sender is left, and enter refuses new ones
	<-s.done
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("pebblestore: close: %w", err)
	}
	return nil
}

// submit hands fn to the committer and waits for its commit.
func (s *Store) submit(ctx context.Context, fn func(t *txn) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{ctx: ctx, fn: fn, done: make(chan struct{})}
	select {
	case s.ops <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-r.done // once picked up, the op completes: wait for the truth
	return r.err
}

// commitLoop is the committer goroutine. It applies one group after
// another, and a group's WAL sync overlaps the next group's apply: Pebble
// shows a batch to reads once applied (ApplyNoSyncWait), so the next group
// reads it, and syncLoop waits for each group's sync in turn and only then
// answers it. While the committer waited for each sync, a core could sit
// idle with operations queued behind it (docs/PERFORMANCE.md, "A group's
// sync overlapped with the next group").
func (s *Store) commitLoop() {
	defer close(s.done)
	applied := make(chan *group) // unbuffered: at most two groups unsynced
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		s.syncLoop(applied)
	}()
	for r := range s.ops {
		applied <- s.applyGroup(r)
	}
	close(applied)
	<-syncDone
}

// group is one batch of operations on its way from the committer to
// syncLoop.
type group struct {
	reqs []*request
	b    *pebble.Batch
	n    uint64 // its place in started, if handed to Pebble
	err  error  // the batch broke, or Pebble refused it
	// refs are the group's entries recorded under a ref, for s.refs once
	// the group is synced: LogIndex answers from s.refs without waiting.
	refs    []loggedRef
	start   time.Time
	written int // bytes of batch, for shortenRamp
}

// applyGroup applies first and every operation already waiting behind it
// (up to maxBatch, or maxGroupBytes of batch) in one batch and hands it to
// Pebble without waiting for its sync. Nothing is answered here: an
// operation's answer may rest on what an earlier group wrote, so every
// group, even one that writes nothing, is answered by syncLoop in order,
// after every group before it is synced.
func (s *Store) applyGroup(first *request) *group {
	g := &group{reqs: []*request{first}, b: s.db.NewIndexedBatch(), start: time.Now()}
	if g.err = s.failure(); g.err != nil {
		return g
	}
	b := g.b
	t := &txn{b: b, log: auditlog.NewAppender(s.logSize, committedHashes{s.db}), anyRevoked: &s.anyRevoked, authSwept: &s.authSwept}
	apply := func(r *request) {
		if err := r.ctx.Err(); err != nil {
			r.err = err // done before pick-up: not applied
			return
		}
		t.writes = t.writes[:0]
		mark, refs := t.log.Size(), len(t.refs)
		if r.err = t.run(r.fn); r.err != nil {
			if err := t.log.Rewind(mark); err != nil && g.err == nil {
				g.err = err
			}
			t.refs = t.refs[:refs]
			return
		}
		for _, w := range t.writes {
			var err error
			switch {
			case w.end != nil:
				err = b.DeleteRange(w.key, w.end, nil)
			case w.del:
				err = b.Delete(w.key, nil)
			default:
				err = b.Set(w.key, w.value, nil)
			}
			if err != nil && g.err == nil {
				g.err = fmt.Errorf("pebblestore: batch: %w", err)
			}
		}
	}
	apply(first)
fill:
	for len(g.reqs) < s.maxBatch && b.Len() < maxGroupBytes {
		select {
		case r, ok := <-s.ops:
			if !ok {
				break fill
			}
			g.reqs = append(g.reqs, r)
			apply(r)
		default:
			break fill
		}
	}
	if g.err == nil {
		if err := writeLog(b, t.log); err != nil {
			g.err = fmt.Errorf("pebblestore: batch: %w", err)
		}
	}
	if g.err == nil && !b.Empty() {
		g.n = s.started.Add(1)
		g.written = b.Len()
		if err := s.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
			g.err = fmt.Errorf("pebblestore: commit: %w", err)
		} else {
			s.logSize = t.log.Size()
			g.refs = t.refs
		}
	}
	if g.err != nil {
		s.setFailure(g.err)
	}
	return g
}

// syncLoop answers the committer's groups in order, each once its WAL
// sync has ended. After a failed commit every later group fails too: it
// was applied on top of the failed one.
func (s *Store) syncLoop(applied <-chan *group) {
	var failed error
	for g := range applied {
		if g.n != 0 { // handed to Pebble: its sync must end before Close
			if err := g.b.SyncWait(); err != nil && g.err == nil {
				g.err = fmt.Errorf("pebblestore: commit: %w", err)
			}
		}
		if failed == nil && g.err != nil {
			failed = g.err
			s.setFailure(failed)
		}
		if g.n != 0 {
			s.settleSync(g.n, failed)
			if failed == nil {
				// Only now: LogIndex answers a remembered ref at once, and
				// must never name an entry a crash or a failed sync takes back.
				for _, r := range g.refs {
					s.refs.Add(r.ref, r.index)
				}
			}
			if s.observe != nil {
				s.observe(len(g.reqs), time.Since(g.start))
			}
		}
		for _, r := range g.reqs {
			if failed != nil {
				r.err = failed
			}
			close(r.done)
		}
		g.b.Close()
		if failed == nil && g.n != 0 {
			// After the answers: a forced flush rotates the WAL, with an
			// fsync, which neither the group nor ObserveCommit should wait for.
			s.shortenRamp(g.written)
		}
	}
}

// setFailure records the first commit failure: the store refuses every
// later operation.
func (s *Store) setFailure(err error) {
	s.syncMu.Lock()
	if s.failed == nil {
		s.failed = err
	}
	s.syncMu.Unlock()
}

// failure is the recorded commit failure, if any.
func (s *Store) failure() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return s.failed
}

// shortenRamp keeps Pebble from holding memtables back from flushing while
// it ramps their size up after an open. Pebble starts with a 256 KiB
// memtable, doubles each next one up to MemTableSize, and flushes none
// until half of MemTableSize is queued (DB.passedFlushThreshold): for the
// first 16–48 MiB written, every lookup of an absent key, most of a bank's,
// seeks up to seven skiplists, and those seeks, in the commit loop where
// lookups are serialised, took 14–17% of the bank's CPU
// (docs/PERFORMANCE.md, "Pebble's memtable ramp, shortened"). A forced
// flush counts as a full memtable, so when memtables wait behind the
// mutable one and no flush runs, AsyncFlush sends them all to L0. It looks
// every rampCheckEvery groups during the first rampWindow bytes, then
// never again: Pebble's own rule serves once its memtables are full-sized.
func (s *Store) shortenRamp(written int) {
	if s.rampLeft <= 0 {
		return
	}
	s.rampLeft -= int64(written)
	if s.sinceCheck++; s.sinceCheck < rampCheckEvery {
		return
	}
	s.sinceCheck = 0
	if m := s.db.Metrics(); m.MemTable.Count > 2 && m.Flush.NumInProgress == 0 {
		// AsyncFlush fails only on a read-only DB, which this is not.
		_, _ = s.db.AsyncFlush()
	}
}

// The window and pace of shortenRamp. The ramp ends within the first
// 2*MemTableSize bytes written, or a few steps later when a forced flush
// finds the mutable memtable under half full (Pebble then keeps its size
// for one more memtable); Metrics costs microseconds, so it looks only
// every few groups.
const (
	rampWindow     = 4 * MemTableSize
	rampCheckEvery = 8
)

type kv struct {
	key, value []byte
	end        []byte // if set, a deletion of [key, end) (txn.dropRange)
	del        bool   // a deletion of key (txn.delete)
}

// txn is one operation's view: reads see committed state, the writes of
// earlier operations in the group (through the indexed batch) and the
// operation's own pending writes; writes are held until the operation
// succeeds.
type txn struct {
	b *pebble.Batch
	// it serves the lookups of one request: it sees the batch as it was
	// when the request began (the group's earlier requests), and the
	// request's own writes are in writes until it ends.
	it     *pebble.Iterator
	writes []kv
	log    *auditlog.Appender // the group's audit log
	refs   []loggedRef        // the group's entries recorded under a ref
	// anyRevoked is the store's: whether any denomination is revoked.
	anyRevoked *bool
	// authSwept is the store's: the day before which AuthFailure has
	// dropped the counts.
	authSwept *int64
}

// loggedRef is an entry's index recorded under ref in the group.
type loggedRef struct {
	ref   ecash.Hash
	index int64
}

// get returns a copy of the value at key, or nil, false if there is none.
func (t *txn) get(key []byte) ([]byte, bool, error) {
	for i := len(t.writes) - 1; i >= 0; i-- {
		switch w := t.writes[i]; {
		case w.end != nil:
			if bytes.Compare(key, w.key) >= 0 && bytes.Compare(key, w.end) < 0 {
				return nil, false, nil
			}
		case bytes.Equal(w.key, key):
			return w.value, !w.del, nil
		}
	}
	if t.it == nil {
		it, err := newLookupIter(t.b)
		if err != nil {
			return nil, false, fmt.Errorf("pebblestore: read: %w", err)
		}
		t.it = it
	}
	v, ok, err := seek(t.it, key)
	if err != nil {
		return nil, false, fmt.Errorf("pebblestore: read: %w", err)
	}
	return v, ok, nil
}

// run applies one request's fn, and closes the iterator of its lookups
// however fn ends: the batch is about to change, and the next request
// must not read through a view of it from before.
func (t *txn) run(fn func(*txn) error) (err error) {
	defer func() {
		if t.it == nil {
			return
		}
		cerr := t.it.Close()
		t.it = nil
		if cerr != nil && err == nil {
			err = fmt.Errorf("pebblestore: read: %w", cerr)
		}
	}()
	return fn(t)
}

func (t *txn) set(key, value []byte) { t.writes = append(t.writes, kv{key: key, value: value}) }

// delete deletes key (a point deletion).
func (t *txn) delete(key []byte) { t.writes = append(t.writes, kv{key: key, del: true}) }

// dropRange deletes [lower, upper) with one range deletion, whatever it
// holds.
func (t *txn) dropRange(lower, upper []byte) {
	t.writes = append(t.writes, kv{key: lower, end: upper})
}

// account loads an account, ErrNoAccount if absent.
func (t *txn) account(id uint64) (*account, error) {
	v, ok, err := t.get(accountKey(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, bank.ErrNoAccount
	}
	return decodeAccount(id, v)
}

// post adds a posting of amount (signed) to a, with the running balance
// checked for overflow, and records a's new state. It writes only through
// t.set, so an op that fails after post still leaves nothing.
func (t *txn) post(a *account, kind string, amount int64, memo string, at time.Time, counterparty uint64, ref, product string) error {
	bal, err := addBalance(a.Balance, amount)
	if err != nil {
		return fmt.Errorf("%w: account %d", err, a.ID)
	}
	a.Balance = bal
	at = a.PostingTime(at)
	a.LastPosted = at
	seq := a.NextSeq
	a.NextSeq++
	p := bank.Posting{Seq: seq, Time: at, Kind: kind, Amount: amount, Balance: bal, Memo: memo, Counterparty: counterparty, Ref: ref, Product: product}
	t.set(postingKey(a.ID, seq), encodePosting(&p))
	t.set(accountKey(a.ID), encodeAccount(a))
	return nil
}

// transfer moves amount (> 0) from one account to another, two postings.
func (t *txn) transfer(from, to *account, kind string, amount int64, memo string, at time.Time, ref, product string) error {
	// Check both sides before writing either; post itself writes only
	// through t.set, so an error here still leaves nothing behind.
	if err := canMove(from, to, amount); err != nil {
		return err
	}
	if err := t.post(from, kind, -amount, memo, at, to.ID, ref, product); err != nil {
		return err
	}
	return t.post(to, kind, amount, memo, at, from.ID, ref, product)
}

// canMove checks that amount can leave one account and reach another
// without overflowing either balance.
func canMove(from, to *account, amount int64) error {
	if _, err := addBalance(from.Balance, -amount); err != nil {
		return fmt.Errorf("%w: account %d", err, from.ID)
	}
	if _, err := addBalance(to.Balance, amount); err != nil {
		return fmt.Errorf("%w: account %d", err, to.ID)
	}
	return nil
}

// check posts an approved check's two postings, each side with its own
// memo; the merchant's names no customer.
func (t *txn) check(cust, merch *account, op bank.CheckOp) error {
	if err := canMove(cust, merch, op.Amount); err != nil {
		return err
	}
	if err := t.post(cust, bank.KindCheck, -op.Amount, op.Memo, op.Time, merch.ID, op.EPOID, op.Product); err != nil {
		return err
	}
	return t.post(merch, bank.KindCheck, op.Amount, op.MerchantMemo, op.Time, 0, op.EPOID, op.Product)
}

// chargeFee moves fee (≥ 0; nothing if 0) from an account to the fee
// account.
func (t *txn) chargeFee(from *account, fee int64, memo string, at time.Time) error {
	if fee == 0 {
		return nil
	}
	fees, err := t.account(bank.AccountFees)
	if err != nil {
		return err
	}
	return t.transfer(from, fees, bank.KindFee, fee, memo, at, "", "")
}

// move transfers amount from one account to another, and fee (≥ 0) from
// the same account to the fee account: an operation and what it costs.
func (t *txn) move(from, to *account, kind string, amount, fee int64, memo string, at time.Time) error {
	if err := t.transfer(from, to, kind, amount, memo, at, "", ""); err != nil {
		return err
	}
	return t.chargeFee(from, fee, memo, at)
}

// refAmount is what a credit reference records: the amount, negative for
// a payout, so that a reference names one movement in one direction.
func refAmount(op bank.CreditOp) int64 {
	if op.Payout {
		return -op.Amount
	}
	return op.Amount
}

// addBalance returns a+b, or ErrOverflow if it does not fit in int64.
func addBalance(a, b int64) (int64, error) {
	c := a + b
	if (b > 0 && c < a) || (b < 0 && c > a) {
		return 0, ErrOverflow
	}
	return c, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func isSystem(id uint64) bool { return id < FirstUserAccount }

// OpenAccount implements bank.Store.
func (s *Store) OpenAccount(ctx context.Context, name string, key ed25519.PublicKey, merchant bool, now time.Time) (uint64, error) {
	if err := bank.ValidateAccount(name, key); err != nil {
		return 0, err
	}
	key = bytes.Clone(key)
	var id uint64
	err := s.submit(ctx, func(t *txn) error {
		kk := bytesKey(prefixKey, key)
		if v, ok, err := t.get(kk); err != nil {
			return err
		} else if ok {
			return t.openedBefore(&id, v, name, merchant)
		}
		v, ok, err := t.get(keyNextAccount)
		if err != nil {
			return err
		}
		if !ok || len(v) != 8 {
			return fmt.Errorf("%w: next account id", errCorrupt)
		}
		id = binary.BigEndian.Uint64(v)
		if id == ^uint64(0) {
			return errors.New("pebblestore: account ids exhausted")
		}
		a := account{Account: bank.Account{ID: id, Name: name, Key: key, Merchant: merchant, Created: now}, NextSeq: 1}
		t.set(accountKey(id), encodeAccount(&a))
		t.set(kk, binary.BigEndian.AppendUint64(nil, id))
		t.set(keyNextAccount, binary.BigEndian.AppendUint64(nil, id+1))
		return t.appendLog(auditlog.AccountOpened{Account: id, Merchant: merchant, Key: key}, now, nil)
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// openedBefore answers OpenAccount for a key that has an account, whose
// id v holds: the same account asked for again (a retry whose answer was
// lost) gets its id in *id, another is refused.
func (t *txn) openedBefore(id *uint64, v []byte, name string, merchant bool) error {
	if len(v) != 8 {
		return fmt.Errorf("%w: key index", errCorrupt)
	}
	a, err := t.account(binary.BigEndian.Uint64(v))
	if err != nil {
		return err
	}
	if a.Name != name || a.Merchant != merchant {
		return bank.ErrKeyInUse
	}
	*id = a.ID
	return nil
}

// Credit implements bank.Store.
func (s *Store) Credit(ctx context.Context, op bank.CreditOp) (int64, error) {
	if err := op.Validate(); err != nil {
		return 0, err
	}
	var balance int64
	err := s.submit(ctx, func(t *txn) error {
		var rk []byte
		if op.Reference != "" {
			rk = bytesKey(prefixRef, []byte(op.Reference))
			v, ok, err := t.get(rk)
			if err != nil {
				return err
			}
			if ok {
				ref, err := decodeRef(v)
				if err != nil {
					return err
				}
				if ref.Account != op.Account || ref.Amount != refAmount(op) {
					return bank.ErrReferenceConflict
				}
				a, err := t.account(op.Account)
				if err != nil {
					return err
				}
				balance = a.Balance
				return nil
			}
		}
		a, err := t.account(op.Account)
		if err != nil {
			return err
		}
		funding, err := t.account(bank.AccountFunding)
		if err != nil {
			return err
		}
		from, to, kind := funding, a, bank.KindCredit
		if op.Payout {
			if a.Balance < op.Amount {
				return bank.ErrInsufficientFunds
			}
			from, to, kind = a, funding, bank.KindPayout
		}
		if err := t.transfer(from, to, kind, op.Amount, op.Memo, op.Time, op.Reference, ""); err != nil {
			return err
		}
		if rk != nil {
			t.set(rk, encodeRef(&refRecord{Account: op.Account, Amount: refAmount(op)}))
		}
		balance = a.Balance
		return t.appendLog(op.Log, op.Time, nil)
	})
	if err != nil {
		return 0, err
	}
	return balance, nil
}

// Withdraw implements bank.Store. A replay of a recorded request hash
// returns the recorded signatures if its account and amount match, and
// ErrRequestConflict if not.
func (s *Store) Withdraw(ctx context.Context, op bank.WithdrawOp) ([][]byte, error) {
	if err := op.Validate(); err != nil {
		return nil, err
	}
	var sigs [][]byte
	err := s.submit(ctx, func(t *txn) error {
		wk := hashKey(prefixWithdraw, op.RequestHash)
		v, ok, err := t.get(wk)
		if err != nil {
			return err
		}
		if ok {
			w, err := decodeWithdraw(v)
			if err != nil {
				return err
			}
			if w.Account != op.Account || w.Amount != op.Amount {
				return ErrRequestConflict
			}
			sigs = w.Sigs
			return nil
		}
		if r, err := t.refusal(op.RequestHash, op.Account); err != nil || r != nil {
			if r != nil {
				return r
			}
			return err
		}
		if err := bank.CheckNotAfter(op.NotAfter, s.now()); err != nil {
			return err
		}
		a, err := t.account(op.Account)
		if err != nil {
			return err
		}
		debit := op.Amount + op.Fee // Validate bounds the sum
		if err := a.CanSpend(debit, op.Time); err != nil {
			return err
		}
		if a.Balance < debit {
			return bank.ErrInsufficientFunds
		}
		if err := t.checkLocks(op.Locks); err != nil {
			return err
		}
		out, err := t.account(bank.AccountOutstanding)
		if err != nil {
			return err
		}
		a.RecordSpend(debit, op.Time)
		memo := "request " + hex.EncodeToString(op.RequestHash[:])
		if err := t.move(a, out, bank.KindWithdraw, op.Amount, op.Fee, memo, op.Time); err != nil {
			return err
		}
		w := withdrawRecord{Account: op.Account, Amount: op.Amount, Sigs: op.BlindSigs}
		t.set(wk, encodeWithdraw(&w))
		t.setLocks(op.Locks)
		if err := t.index(op.Blinded, false, op.RequestHash); err != nil {
			return err
		}
		sigs = cloneSigs(op.BlindSigs)
		return t.appendLog(op.Log, op.Time, &op.RequestHash)
	})
	if err != nil {
		return nil, err
	}
	return sigs, nil
}

// refusal returns the refusal recorded under a withdraw request hash, as
// the error to answer (nil if there is none); ErrRequestConflict if it was
// recorded for another account.
func (t *txn) refusal(h ecash.Hash, account uint64) (*bank.WithdrawRefusal, error) {
	v, ok, err := t.get(hashKey(prefixRefused, h))
	if err != nil || !ok {
		return nil, err
	}
	r, err := decodeRefusal(v)
	if err != nil {
		return nil, err
	}
	if r.Account != account {
		return nil, ErrRequestConflict
	}
	return &r.Refusal, nil
}

// RefuseWithdrawal implements bank.Store: in the committer, so ordered
// with every Withdraw of the hash, and synced before it returns.
func (s *Store) RefuseWithdrawal(ctx context.Context, op bank.RefuseWithdrawalOp) ([][]byte, error) {
	if err := op.Validate(); err != nil {
		return nil, err
	}
	var (
		sigs    [][]byte
		refused *bank.WithdrawRefusal
	)
	err := s.submit(ctx, func(t *txn) error {
		if _, err := t.account(op.Account); err != nil {
			return err
		}
		v, ok, err := t.get(hashKey(prefixWithdraw, op.RequestHash))
		if err != nil {
			return err
		}
		if ok {
			w, err := decodeWithdraw(v)
			if err != nil {
				return err
			}
			if w.Account != op.Account {
				return ErrRequestConflict
			}
			sigs = cloneSigs(w.Sigs)
			return nil
		}
		if refused, err = t.refusal(op.RequestHash, op.Account); err != nil || refused != nil {
			return err
		}
		refused = &op.Refusal
		t.set(hashKey(prefixRefused, op.RequestHash), encodeRefusal(&refusalRecord{Account: op.Account, Refusal: op.Refusal, Time: op.Time}))
		t.set(refusedAtKey(op.Time, op.RequestHash), nil)
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case refused != nil:
		return nil, &bank.WithdrawRefusal{Code: refused.Code, Reason: refused.Reason}
	}
	return sigs, nil
}

// pruneBatch is how many withdraw refusals PruneWithdrawRefusals deletes
// in one operation of the committer: its reads delay the operations
// behind it, so a large backlog is deleted a bounded step at a time.
const pruneBatch = 512

// PruneWithdrawRefusals implements bank.Store: through the q/ index, in
// the committer (ordered with Withdraw and RefuseWithdrawal), pruneBatch
// refusals an operation, each synced, until none before before is left.
//
// An index key of the wrong length names no refusal: it is deleted, so
// that it cannot stop every later pruning at the head of the index, and
// reported once, after the pruning, as corruption.
func (s *Store) PruneWithdrawRefusals(ctx context.Context, before time.Time) (int64, error) {
	upper := refusedAtKey(before, ecash.Hash{})
	var total, bad int64
	for {
		n, nbad := 0, 0
		err := s.submit(ctx, func(t *txn) error {
			n, nbad = 0, 0
			it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixRefusedT), UpperBound: upper})
			if err != nil {
				return fmt.Errorf("pebblestore: read: %w", err)
			}
			for ok := it.First(); ok && n+nbad < pruneBatch; ok = it.Next() {
				k := it.Key()
				t.delete(bytes.Clone(k))
				if len(k) != len(prefixRefusedT)+8+len(ecash.Hash{}) {
					nbad++
					continue
				}
				t.delete(hashKey(prefixRefused, ecash.Hash(k[len(prefixRefusedT)+8:])))
				n++
			}
			if err := errors.Join(it.Error(), it.Close()); err != nil {
				return fmt.Errorf("pebblestore: read: %w", err)
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total, bad = total+int64(n), bad+int64(nbad)
		if n+nbad < pruneBatch {
			break
		}
	}
	if bad > 0 {
		return total, fmt.Errorf("%w: deleted %d withdraw refusal index keys of a wrong length", errCorrupt, bad)
	}
	return total, nil
}

func cloneSigs(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i, s := range in {
		out[i] = bytes.Clone(s)
	}
	return out
}

// Deposit implements bank.Store. "The same coins" means the same set of
// coin ids, in any order; a replay must also name the same merchant and
// amount, or it is an ErrPaymentConflict. A coin id twice in one op is
// refused with an error matching both ErrInvalid and bank.ErrDuplicateCoin.
func (s *Store) Deposit(ctx context.Context, op bank.DepositOp) ([]byte, error) {
	sorted, err := op.Validate()
	if err != nil {
		return nil, err
	}
	ids := make([]ecash.Hash, len(op.Coins))
	for i, c := range op.Coins {
		ids[i] = c.ID
	}
	var receipt []byte
	err = s.submit(ctx, func(t *txn) error {
		dk := hashKey(prefixDeposit, op.PaymentHash)
		v, ok, err := t.get(dk)
		if err != nil {
			return err
		}
		if ok {
			d, err := decodeDeposit(v)
			if err != nil {
				return err
			}
			if d.Merchant != op.Merchant || d.Amount != op.Amount || !slices.Equal(bank.SortedHashes(d.Coins), sorted) {
				return bank.ErrPaymentConflict
			}
			receipt = d.Receipt
			return nil
		}
		if err := bank.CheckNotAfter(op.NotAfter, s.now()); err != nil {
			return err
		}
		m, err := t.account(op.Merchant)
		if err != nil {
			return err
		}
		if err := t.checkUnspent(op.Coins); err != nil {
			return err
		}
		out, err := t.account(bank.AccountOutstanding)
		if err != nil {
			return err
		}
		memo := "payment " + hex.EncodeToString(op.PaymentHash[:])
		if err := t.move(out, m, bank.KindDeposit, op.Amount, op.Fee, memo, op.Time); err != nil {
			return err
		}
		t.spend(op.Coins, op.PaymentHash)
		t.set(dk, encodeDeposit(&depositRecord{Merchant: op.Merchant, Amount: op.Amount, Coins: ids, Receipt: op.Receipt}))
		receipt = bytes.Clone(op.Receipt)
		return t.appendLog(op.Log, op.Time, &op.PaymentHash)
	})
	if err != nil {
		return nil, err
	}
	return receipt, nil
}

// Swap implements bank.Store. A replay of a recorded request hash returns
// the recorded signatures if its coin set and value match, and
// ErrRequestConflict if not.
func (s *Store) Swap(ctx context.Context, op bank.SwapOp) ([][]byte, error) {
	sorted, err := op.Validate()
	if err != nil {
		return nil, err
	}
	var sigs [][]byte
	err = s.submit(ctx, func(t *txn) error {
		sk := hashKey(prefixSwap, op.RequestHash)
		v, ok, err := t.get(sk)
		if err != nil {
			return err
		}
		if ok {
			r, err := decodeSwap(v)
			if err != nil {
				return err
			}
			if r.Value != op.Value || !slices.Equal(bank.SortedHashes(r.Coins), sorted) {
				return ErrRequestConflict
			}
			sigs = r.Sigs
			return nil
		}
		if err := bank.CheckNotAfter(op.NotAfter, s.now()); err != nil {
			return err
		}
		spends, credits := bank.SplitCredits(op.Coins)
		if err := t.checkUnspent(spends); err != nil {
			return err
		}
		if err := t.spendCredits(credits); err != nil {
			return err
		}
		if err := t.checkLocks(op.Locks); err != nil {
			return err
		}
		if op.Fee > 0 {
			out, err := t.account(bank.AccountOutstanding)
			if err != nil {
				return err
			}
			if err := t.chargeFee(out, op.Fee, "swap "+hex.EncodeToString(op.RequestHash[:]), op.Time); err != nil {
				return err
			}
		}
		t.spend(spends, op.RequestHash)
		t.setLocks(op.Locks)
		if err := t.index(op.Blinded, true, op.RequestHash); err != nil {
			return err
		}
		t.set(sk, encodeSwap(&swapRecord{Value: op.Value, Coins: sorted, Sigs: op.BlindSigs, Time: op.Time}))
		sigs = cloneSigs(op.BlindSigs)
		return t.appendLog(op.Log, op.Time, &op.RequestHash)
	})
	if err != nil {
		return nil, err
	}
	return sigs, nil
}

// credit reads a coin's refund record at fk (f/<coin id>); a coin never
// refunded has the zero record.
func (t *txn) credit(fk []byte) (creditRecord, error) {
	v, ok, err := t.get(fk)
	if err != nil || !ok {
		return creditRecord{}, err
	}
	r, err := decodeCredit(v)
	if err != nil {
		return creditRecord{}, err
	}
	return *r, nil
}

// spendCredits zeroes each coin's refund credit, which must be exactly the
// input's Credit (bank.ErrNoCredit otherwise).
func (t *txn) spendCredits(coins []bank.SpentCoin) error {
	for _, c := range coins {
		fk := hashKey(prefixCredit, c.ID)
		rec, err := t.credit(fk)
		if err != nil {
			return err
		}
		if rec.Credit != c.Credit {
			return fmt.Errorf("%w: coin %x has %d, the input claims %d", bank.ErrNoCredit, c.ID[:8], rec.Credit, c.Credit)
		}
		rec.Credit = 0
		t.set(fk, encodeCredit(&rec))
	}
	return nil
}

// Refund implements bank.Store.
func (s *Store) Refund(ctx context.Context, op bank.RefundOp) ([]byte, error) {
	if err := op.Validate(); err != nil {
		return nil, err
	}
	var receipt []byte
	err := s.submit(ctx, func(t *txn) error {
		uk := hashKey(prefixRefund, op.RequestHash)
		v, ok, err := t.get(uk)
		if err != nil {
			return err
		}
		if ok {
			r, err := decodeRefund(v)
			if err != nil {
				return err
			}
			if r.Payment != op.PaymentHash || r.Merchant != op.Merchant || r.Amount != op.Amount {
				return ErrRequestConflict
			}
			receipt = r.Receipt
			return nil
		}
		if err := bank.CheckNotAfter(op.NotAfter, s.now()); err != nil {
			return err
		}
		v, ok, err = t.get(hashKey(prefixDeposit, op.PaymentHash))
		if err != nil {
			return err
		}
		if !ok {
			return bank.ErrNotDeposited
		}
		dep, err := decodeDeposit(v)
		if err != nil {
			return err
		}
		if dep.Merchant != op.Merchant {
			return bank.ErrNotDeposited
		}
		seq, err := t.refundCount(op.PaymentHash)
		if err != nil {
			return err
		}
		if seq >= bank.MaxRefunds {
			return bank.ErrTooManyRefunds
		}
		for _, c := range op.Coins {
			if !slices.Contains(dep.Coins, c.ID) {
				return invalid("coin %x is not in the payment", c.ID[:8])
			}
			fk := hashKey(prefixCredit, c.ID)
			rec, err := t.credit(fk)
			if err != nil {
				return err
			}
			if rec.Refunded+c.Value > c.Cap {
				return bank.ErrRefundExceeds
			}
			rec.Refunded += c.Value
			if rec.Credit, err = addBalance(rec.Credit, c.Value); err != nil {
				return err
			}
			t.set(fk, encodeCredit(&rec))
		}
		m, err := t.account(op.Merchant)
		if err != nil {
			return err
		}
		if m.Balance < op.Amount+op.Fee {
			return bank.ErrInsufficientFunds
		}
		out, err := t.account(bank.AccountOutstanding)
		if err != nil {
			return err
		}
		memo := "refund of payment " + hex.EncodeToString(op.PaymentHash[:])
		if err := t.move(m, out, bank.KindRefund, op.Amount, op.Fee, memo, op.Time); err != nil {
			return err
		}
		t.set(uk, encodeRefund(&refundRecord{Payment: op.PaymentHash, Merchant: op.Merchant, Amount: op.Amount, Receipt: op.Receipt}))
		t.set(binary.BigEndian.AppendUint64(hashKey(prefixRefunds, op.PaymentHash), seq), bytes.Clone(op.RequestHash[:]))
		receipt = bytes.Clone(op.Receipt)
		return t.appendLog(op.Log, op.Time, &op.RequestHash)
	})
	if err != nil {
		return nil, err
	}
	return receipt, nil
}

// refundCount counts the refunds recorded for a payment, those of earlier
// operations in the group included.
func (t *txn) refundCount(payment ecash.Hash) (uint64, error) {
	prefix := hashKey(prefixRefunds, payment)
	n := uint64(0)
	for {
		_, ok, err := t.get(binary.BigEndian.AppendUint64(bytes.Clone(prefix), n))
		if err != nil || !ok {
			return n, err
		}
		n++
	}
}

// RefundReceipts implements bank.Store.
func (s *Store) RefundReceipts(ctx context.Context, payment ecash.Hash) ([][]byte, error) {
	var out [][]byte
	prefix := hashKey(prefixRefunds, payment)
	for n := uint64(0); n < bank.MaxRefunds; n++ {
		h, found, err := s.peek(ctx, binary.BigEndian.AppendUint64(bytes.Clone(prefix), n))
		if err != nil {
			return nil, err
		}
		if !found {
			break
		}
		var rh ecash.Hash
		copy(rh[:], h)
		v, found, err := s.peek(ctx, hashKey(prefixRefund, rh))
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("pebblestore: refund %x of payment %x is indexed but not recorded", rh[:8], payment[:8])
		}
		r, err := decodeRefund(v)
		if err != nil {
			return nil, err
		}
		out = append(out, r.Receipt)
	}
	return out, s.durableIf(ctx, len(out) > 0)
}

// RefundRecord implements bank.Store.
func (s *Store) RefundRecord(ctx context.Context, h ecash.Hash) ([]byte, bool, error) {
	v, found, err := s.lookup(ctx, hashKey(prefixRefund, h))
	if err != nil || !found {
		return nil, false, err
	}
	r, err := decodeRefund(v)
	if err != nil {
		return nil, false, err
	}
	return r.Receipt, true, nil
}

// CoinStates implements bank.Store.
func (s *Store) CoinStates(ctx context.Context, coins []ecash.Hash) ([]bank.CoinState, error) {
	if len(coins) > ecash.MaxCoinsPerRequest {
		return nil, invalid("%d coins", len(coins))
	}
	out := make([]bank.CoinState, len(coins))
	anyFound := false
	for i, id := range coins {
		v, found, err := s.peek(ctx, hashKey(prefixCoin, id))
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		anyFound = true
		c, err := decodeCoin(v)
		if err != nil {
			return nil, err
		}
		out[i].Permission, out[i].SpentBy = c.Permission, c.Payment
		if v, found, err = s.peek(ctx, hashKey(prefixCredit, id)); err != nil {
			return nil, err
		}
		if found {
			r, err := decodeCredit(v)
			if err != nil {
				return nil, err
			}
			out[i].Refunded, out[i].Credit = r.Refunded, r.Credit
		}
	}
	return out, s.durableIf(ctx, anyFound)
}

// checkUnspent returns a *bank.SpentError for the first spent coin.
func (t *txn) checkUnspent(coins []bank.SpentCoin) error {
	for _, c := range coins {
		v, ok, err := t.get(hashKey(prefixCoin, c.ID))
		if err != nil {
			return err
		}
		if ok {
			rec, err := decodeCoin(v)
			if err != nil {
				return err
			}
			return &bank.SpentError{Coin: c.ID, Permission: rec.Permission}
		}
	}
	return nil
}

// spend records coins as spent by the deposit or swap ref.
func (t *txn) spend(coins []bank.SpentCoin, ref ecash.Hash) {
	for _, c := range coins {
		t.set(hashKey(prefixCoin, c.ID), encodeCoin(&coinRecord{Payment: ref, Permission: c.Permission}))
	}
}

// checkLocks refuses nonces locked to another blinded message.
func (t *txn) checkLocks(locks []bank.NonceLock) error {
	for _, l := range locks {
		v, ok, err := t.get(append(hashKey(prefixNonce, l.Denom), l.Nonce...))
		if err != nil {
			return err
		}
		if ok && !bytes.Equal(v, l.Blinded[:]) {
			return bank.ErrNonceReused
		}
	}
	return nil
}

func (t *txn) setLocks(locks []bank.NonceLock) {
	for _, l := range locks {
		t.set(append(hashKey(prefixNonce, l.Denom), l.Nonce...), bytes.Clone(l.Blinded[:]))
	}
}

// index records where the signature on each blinded message is. One
// indexed for another request is refused (bank.ErrAlreadyIssued): signing
// it again would charge for a coin already issued. A request is its kind
// and its hash: a withdrawal and a swap under one hash are two. The same
// one twice in this request keeps its first position.
func (t *txn) index(blinded []ecash.Hash, swap bool, request ecash.Hash) error {
	for i, h := range blinded {
		k := hashKey(prefixIssued, h)
		if v, ok, err := t.get(k); err != nil {
			return err
		} else if ok {
			r, err := decodeIssued(v)
			if err != nil {
				return err
			}
			if r.Request != request || r.Swap != swap {
				return bank.ErrAlreadyIssued
			}
			continue
		}
		t.set(k, encodeIssued(&issuedRecord{Swap: swap, Request: request, Pos: uint32(i)}))
	}
	return nil
}

// Issued implements bank.Store.
func (s *Store) Issued(ctx context.Context, blinded []ecash.Hash) ([]*bank.Issued, error) {
	if len(blinded) > ecash.MaxCoinsPerRequest {
		return nil, invalid("%d blinded messages", len(blinded))
	}
	out := make([]*bank.Issued, len(blinded))
	anyFound := false
	for i, h := range blinded {
		v, found, err := s.peek(ctx, hashKey(prefixIssued, h))
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		r, err := decodeIssued(v)
		if err != nil {
			return nil, err
		}
		is := &bank.Issued{Kind: bank.KindWithdraw, Request: r.Request}
		var sigs [][]byte
		if r.Swap {
			is.Kind = bank.KindSwap
			v, found, err = s.peek(ctx, hashKey(prefixSwap, r.Request))
			if err == nil && found {
				var sw *swapRecord
				if sw, err = decodeSwap(v); err == nil {
					sigs = sw.Sigs
				}
			}
		} else {
			v, found, err = s.peek(ctx, hashKey(prefixWithdraw, r.Request))
			if err == nil && found {
				var w *withdrawRecord
				if w, err = decodeWithdraw(v); err == nil {
					sigs, is.Account = w.Sigs, w.Account
				}
			}
		}
		if err != nil {
			return nil, err
		}
		if !found || int(r.Pos) >= len(sigs) {
			return nil, fmt.Errorf("%w: issued record without its signature", errCorrupt)
		}
		is.Sig = bytes.Clone(sigs[r.Pos])
		out[i] = is
		anyFound = true
	}
	return out, s.durableIf(ctx, anyFound)
}

// Spent implements bank.Store.
func (s *Store) Spent(ctx context.Context, coins []ecash.Hash) ([]bool, error) {
	if len(coins) > ecash.MaxCoinsPerRequest {
		return nil, invalid("%d coins", len(coins))
	}
	out := make([]bool, len(coins))
	anyFound := false
	for i, id := range coins {
		_, found, err := s.peek(ctx, hashKey(prefixCoin, id))
		if err != nil {
			return nil, err
		}
		out[i], anyFound = found, anyFound || found
	}
	return out, s.durableIf(ctx, anyFound)
}

// SwapRecord implements bank.Store.
func (s *Store) SwapRecord(ctx context.Context, h ecash.Hash) ([][]byte, bool, error) {
	v, found, err := s.lookup(ctx, hashKey(prefixSwap, h))
	if err != nil || !found {
		return nil, false, err
	}
	r, err := decodeSwap(v)
	if err != nil {
		return nil, false, err
	}
	return cloneSigs(r.Sigs), true, nil
}

// Account implements bank.Store.
func (s *Store) Account(ctx context.Context, id uint64) (bank.Account, error) {
	if err := s.enter(); err != nil {
		return bank.Account{}, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return bank.Account{}, err
	}
	a, err := s.readAccount(s.db, id)
	if err != nil {
		return bank.Account{}, err
	}
	return a.Account, nil
}

// Withdrawal implements bank.Store. The withdrawal is looked up first: one
// recorded beside a refusal (by a build that ignores refusals) moved the
// money, and is the answer.
func (s *Store) Withdrawal(ctx context.Context, h ecash.Hash) ([][]byte, bool, error) {
	v, found, err := s.lookup(ctx, hashKey(prefixWithdraw, h))
	if err != nil {
		return nil, false, err
	}
	if !found {
		if v, found, err = s.lookup(ctx, hashKey(prefixRefused, h)); err != nil || !found {
			return nil, false, err
		}
		r, err := decodeRefusal(v)
		if err != nil {
			return nil, false, err
		}
		return nil, false, &r.Refusal
	}
	w, err := decodeWithdraw(v)
	if err != nil {
		return nil, false, err
	}
	return cloneSigs(w.Sigs), true, nil
}

// DepositRecord implements bank.Store.
func (s *Store) DepositRecord(ctx context.Context, h ecash.Hash) ([]byte, []ecash.Hash, bool, error) {
	v, found, err := s.lookup(ctx, hashKey(prefixDeposit, h))
	if err != nil || !found {
		return nil, nil, false, err
	}
	d, err := decodeDeposit(v)
	if err != nil {
		return nil, nil, false, err
	}
	return d.Receipt, d.Coins, true, nil
}

// settleSync records that group n's commit returned, synced (err nil) or
// not, and wakes the reads waiting for it.
func (s *Store) settleSync(n uint64, err error) {
	s.syncMu.Lock()
	if err != nil {
		if s.syncErr == nil {
			s.syncErr = err
		}
	} else {
		s.synced.Store(n)
	}
	close(s.syncMoved)
	s.syncMoved = make(chan struct{})
	s.syncMu.Unlock()
}

// durable waits until every group begun before it was called is synced:
// called after a read, it makes what the read saw durable before anyone is
// answered from it. A group that then fails its commit fails the read, as
// does ctx ending first.
func (s *Store) durable(ctx context.Context) error {
	n := s.started.Load()
	for s.synced.Load() < n {
		s.syncMu.Lock()
		if s.synced.Load() >= n { // settled since the check above
			s.syncMu.Unlock()
			return nil
		}
		moved, err := s.syncMoved, s.syncErr
		if err == nil && s.waitHook != nil {
			s.waitHook()
		}
		s.syncMu.Unlock()
		if err != nil {
			return fmt.Errorf("pebblestore: read of an unsynced commit: %w", err)
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// durableIf is durable when a read found something: what it did not find
// answers nothing a crash could take back.
func (s *Store) durableIf(ctx context.Context, found bool) error {
	if !found {
		return nil
	}
	return s.durable(ctx)
}

// lookup reads one committed value, copied: a value found is durable
// before it is returned.
func (s *Store) lookup(ctx context.Context, key []byte) ([]byte, bool, error) {
	v, ok, err := s.peek(ctx, key)
	if err == nil {
		err = s.durableIf(ctx, ok)
	}
	if err != nil {
		return nil, false, err
	}
	return v, ok, nil
}

// peek is lookup without the wait: a call reading many values peeks at
// each and waits once (durable) before it answers from any.
func (s *Store) peek(ctx context.Context, key []byte) ([]byte, bool, error) {
	if err := s.enter(); err != nil {
		return nil, false, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	v, ok, err := Get(s.db, key)
	if err != nil {
		return nil, false, fmt.Errorf("pebblestore: read: %w", err)
	}
	return v, ok, nil
}

// Check implements bank.Store.
func (s *Store) Check(ctx context.Context, op bank.CheckOp) (bank.CheckOutcome, error) {
	if err := op.Validate(); err != nil {
		return bank.CheckOutcome{}, err
	}
	var out bank.CheckOutcome
	err := s.submit(ctx, func(t *txn) error {
		key := bytesKey(prefixCheck, []byte(op.EPOID))
		v, ok, err := t.get(key)
		if err != nil {
			return err
		}
		if ok {
			c, err := decodeCheck(v)
			if err != nil {
				return err
			}
			if c.EPOHash != op.EPOHash {
				return bank.ErrEPOIDConflict
			}
			out = *c
			return nil
		}
		if err := bank.CheckNotAfter(op.NotAfter, s.now()); err != nil {
			return err
		}
		cust, err := t.account(op.Customer)
		if err != nil {
			return err
		}
		merch, err := t.account(op.Merchant)
		if err != nil {
			return err
		}
		if !merch.Merchant {
			return bank.ErrNotMerchant
		}
		out = bank.CheckOutcome{EPOHash: op.EPOHash, Customer: op.Customer, Merchant: op.Merchant, Amount: op.Amount, Record: op.Record, Time: op.Time}
		switch err := cust.CanSpend(op.Amount, op.Time); {
		case op.Declined != "":
			out.Outcome, out.Receipt = op.Declined, op.DeclinedReceipt
		case err != nil:
			out.Outcome, out.Receipt = bank.CheckDeclinedLimit, op.DeclinedLimit
		case cust.Balance < op.Amount:
			out.Outcome, out.Receipt = bank.CheckDeclinedFunds, op.DeclinedFunds
		default:
			out.Outcome, out.Receipt = bank.CheckApproved, op.Approved
			cust.RecordSpend(op.Amount, op.Time)
			if err := t.check(cust, merch, op); err != nil {
				return err
			}
		}
		out.NewBalance = cust.Balance
		t.set(key, encodeCheck(&out))
		return t.appendLog(bank.CheckLog(op.Log, out.Outcome), op.Time, &op.EPOHash)
	})
	if err != nil {
		return bank.CheckOutcome{}, err
	}
	return out, nil
}

// CheckRecord implements bank.Store.
func (s *Store) CheckRecord(ctx context.Context, epoid string) (bank.CheckOutcome, bool, error) {
	if epoid == "" || len(epoid) > 128 {
		return bank.CheckOutcome{}, false, nil
	}
	v, found, err := s.lookup(ctx, bytesKey(prefixCheck, []byte(epoid)))
	if err != nil || !found {
		return bank.CheckOutcome{}, false, err
	}
	c, err := decodeCheck(v)
	if err != nil {
		return bank.CheckOutcome{}, false, err
	}
	return *c, true, nil
}

// SetLimits implements bank.Store.
func (s *Store) SetLimits(ctx context.Context, id uint64, l bank.Limits) error {
	if l.PerTransaction < 0 || l.PerDay < 0 {
		return invalid("negative limit")
	}
	return s.updateAccount(ctx, id, func(a *account) { a.Limits = l })
}

// Unlock implements bank.Store: it drops the account's failed
// authentications, every source's and day's.
func (s *Store) Unlock(ctx context.Context, id uint64) error {
	if isSystem(id) {
		return invalid("policy on system account %d", id)
	}
	return s.submit(ctx, func(t *txn) error {
		if _, err := t.account(id); err != nil {
			return err
		}
		// Every day's: the days the store holds (a few: AuthFailure
		// drops earlier ones) one after the other.
		for day := int64(0); day >= 0; day++ { // days before 1970 are never counted
			it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: authDay(day), UpperBound: authDay(math.MaxInt64)})
			if err != nil {
				return fmt.Errorf("pebblestore: read: %w", err)
			}
			found := it.First()
			if found {
				day = int64(binary.BigEndian.Uint64(it.Key()[len(prefixAuth):]))
			}
			if err := errors.Join(it.Error(), it.Close()); err != nil {
				return fmt.Errorf("pebblestore: read: %w", err)
			}
			if !found {
				return nil
			}
			p := authAccount(day, id)
			t.dropRange(p, prefixEnd(p))
		}
		return nil
	})
}

// AuthFailure implements bank.Store. Counts of days before now's, any
// account's, count for nothing: the first failure counted on a day drops
// those before bank.AuthKeptFrom with one range deletion (whose cost does
// not grow with them), so that they do not pile up day after day.
func (s *Store) AuthFailure(ctx context.Context, id uint64, source string, now time.Time) (bool, error) {
	if isSystem(id) {
		return false, invalid("policy on system account %d", id)
	}
	if err := bank.ValidateSource(source); err != nil {
		return false, err
	}
	day := bank.Day(now)
	if day < 0 {
		return false, invalid("failed authentication dated %s, before 1970", now.UTC().Format(time.RFC3339))
	}
	var locked bool
	err := s.submit(ctx, func(t *txn) error {
		if _, err := t.account(id); err != nil {
			return err
		}
		// A day other than the last swept (a clock stepped back and
		// forth sweeps again).
		sweep := *t.authSwept != day
		if sweep {
			t.dropRange([]byte(prefixAuth), authDay(bank.AuthKeptFrom(now)))
		}
		key := authKey(id, day, source)
		f, err := authFailures(t.get(key))
		if err != nil {
			return err
		}
		f.Day = day
		locked = f.Record(now)
		t.set(key, binary.BigEndian.AppendUint64(nil, uint64(f.Count)))
		if sweep {
			*t.authSwept = day // only once nothing can fail and discard the sweep
		}
		return nil
	})
	return locked, err
}

// AuthLocked implements bank.Store.
func (s *Store) AuthLocked(ctx context.Context, id uint64, source string, now time.Time) (bool, error) {
	day := bank.Day(now)
	f, err := authFailures(s.lookup(ctx, authKey(id, day, source)))
	if err != nil {
		return false, err
	}
	f.Day = day
	return f.Locked(now), nil
}

// LockedSources implements bank.Store.
func (s *Store) LockedSources(ctx context.Context, id uint64, now time.Time) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	day := bank.Day(now)
	p := authAccount(day, id)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, fmt.Errorf("pebblestore: %w", err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		f, err := authFailures(it.Value(), true, nil)
		if err != nil {
			it.Close()
			return 0, err
		}
		f.Day = day
		if f.Locked(now) {
			n++
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("pebblestore: %w", err)
	}
	return n, s.durableIf(ctx, n > 0)
}

// authFailures decodes a t/ record as a lookup returns it: the count, of
// the day its key names (the caller sets Day).
func authFailures(v []byte, found bool, err error) (bank.AuthFailures, error) {
	if err != nil || !found {
		return bank.AuthFailures{}, err
	}
	if len(v) != 8 {
		return bank.AuthFailures{}, fmt.Errorf("%w: failed-authentication record of %d bytes", errCorrupt, len(v))
	}
	return bank.AuthFailures{Count: int64(binary.BigEndian.Uint64(v))}, nil
}

// updateAccount applies f to a user account's record in one commit.
func (s *Store) updateAccount(ctx context.Context, id uint64, f func(*account)) error {
	if isSystem(id) {
		return invalid("policy on system account %d", id)
	}
	return s.submit(ctx, func(t *txn) error {
		a, err := t.account(id)
		if err != nil {
			return err
		}
		f(a)
		t.set(accountKey(id), encodeAccount(a))
		return nil
	})
}

func (s *Store) readAccount(r pebble.Reader, id uint64) (*account, error) {
	v, closer, err := r.Get(accountKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, bank.ErrNoAccount
	}
	if err != nil {
		return nil, fmt.Errorf("pebblestore: read: %w", err)
	}
	defer closer.Close()
	return decodeAccount(id, v)
}

// History implements bank.Store. A limit of zero or less returns nothing.
func (s *Store) History(ctx context.Context, id uint64, limit int) ([]bank.Posting, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	if err := s.durable(ctx); err != nil { // the statement is signed
		return nil, err
	}
	a, err := s.readAccount(snap, id)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	n := min(limit, 1024) // preallocation only: a.NextSeq may be huge
	if a.NextSeq > 0 && a.NextSeq-1 < uint64(n) {
		n = int(a.NextSeq - 1)
	}
	prefix := u64Key(prefixPosting, id)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	out := make([]bank.Posting, 0, n)
	for ok := it.Last(); ok && len(out) < limit; ok = it.Prev() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return nil, err
		}
		k := it.Key()
		if len(k) != len(prefix)+8 {
			it.Close()
			return nil, fmt.Errorf("%w: posting key %x", errCorrupt, k)
		}
		p, err := decodePosting(binary.BigEndian.Uint64(k[len(prefix):]), it.Value())
		if err != nil {
			it.Close()
			return nil, err
		}
		out = append(out, p)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	return out, nil
}

// Totals returns the balance of every account, system accounts included,
// from one consistent snapshot. The balances sum to zero.
func (s *Store) Totals(ctx context.Context) (map[uint64]int64, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prefix := []byte(prefixAccount)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	out := make(map[uint64]int64)
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefix)+8 {
			it.Close()
			return nil, fmt.Errorf("%w: account key %x", errCorrupt, k)
		}
		id := binary.BigEndian.Uint64(k[len(prefix):])
		a, err := decodeAccount(id, it.Value())
		if err != nil {
			it.Close()
			return nil, err
		}
		out[id] = a.Balance
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	// Balances a commit not yet synced moved: settlement pays out by them.
	if err := s.durable(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// DiskUsage is the bytes the store occupies on disk.
func (s *Store) DiskUsage() uint64 { return s.db.Metrics().DiskSpaceUsage() }
