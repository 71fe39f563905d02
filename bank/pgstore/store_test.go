package pgstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/bank/storetest"
	"github.com/blindbank/blindbank/ecash"
)

// The tests start their own PostgreSQL (see pgtest) and skip without one,
// unless BLINDBANK_REQUIRE_POSTGRES=1.
func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	bg    = context.Background()
	quiet = slog.New(slog.DiscardHandler)
)

func mustOpen(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dsn, Options{MaxConns: 8, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// freshDSN returns the DSN of a new, empty schema on the shared server.
func freshDSN(t testing.TB) string {
	t.Helper()
	return pgtest.Shared(t).NewSchema(t)
}

func TestConformance(t *testing.T) {
	pgtest.Shared(t) // skip (or fail) once, not in every subtest
	storetest.Run(t, func(t *testing.T) bank.Store { return mustOpen(t, freshDSN(t)) })
}

// TestConformanceTwoStores runs the suite against two Stores over one
// database, every call going to the next one in turn: two bankd replicas
// behave as one store.
func TestConformanceTwoStores(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	pgtest.Shared(t)
	storetest.Run(t, func(t *testing.T) bank.Store {
		s1, s2 := openConcurrently(t, freshDSN(t))
		return &replicas{stores: []*Store{s1, s2}}
	})
}

// openConcurrently opens two stores on dsn at once, so that both run the
// migrations at the same time.
func openConcurrently(t *testing.T, dsn string) (*Store, *Store) {
	t.Helper()
	var stores [2]*Store
	var errs [2]error
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), dsn, Options{MaxConns: 8, Logger: quiet}) })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		for _, s := range stores {
			if s != nil {
				s.Close()
			}
		}
		t.Fatal(err)
	}
	return stores[0], stores[1]
}

// replicas is a bank.Store that sends each call to the next of several
// Stores over one database.
type replicas struct {
	stores []*Store
	n      atomic.Uint64
}

func (r *replicas) next() *Store { return r.stores[r.n.Add(1)%uint64(len(r.stores))] }

func (r *replicas) OpenAccount(ctx context.Context, name string, key ed25519.PublicKey, merchant bool, now time.Time) (uint64, error) {
	return r.next().OpenAccount(ctx, name, key, merchant, now)
}
func (r *replicas) Account(ctx context.Context, id uint64) (bank.Account, error) {
	return r.next().Account(ctx, id)
}
func (r *replicas) History(ctx context.Context, id uint64, limit int) ([]bank.Posting, error) {
	return r.next().History(ctx, id, limit)
}
func (r *replicas) Credit(ctx context.Context, op bank.CreditOp) (int64, error) {
	return r.next().Credit(ctx, op)
}
func (r *replicas) Withdraw(ctx context.Context, op bank.WithdrawOp) ([][]byte, error) {
	return r.next().Withdraw(ctx, op)
}
func (r *replicas) RefuseWithdrawal(ctx context.Context, op bank.RefuseWithdrawalOp) ([][]byte, error) {
	return r.next().RefuseWithdrawal(ctx, op)
}
func (r *replicas) PruneWithdrawRefusals(ctx context.Context, before time.Time) (int64, error) {
	return r.next().PruneWithdrawRefusals(ctx, before)
}
func (r *replicas) Deposit(ctx context.Context, op bank.DepositOp) ([]byte, error) {
	return r.next().Deposit(ctx, op)
}
func (r *replicas) Swap(ctx context.Context, op bank.SwapOp) ([][]byte, error) {
	return r.next().Swap(ctx, op)
}
func (r *replicas) Refund(ctx context.Context, op bank.RefundOp) ([]byte, error) {
	return r.next().Refund(ctx, op)
}
func (r *replicas) RefundRecord(ctx context.Context, h ecash.Hash) ([]byte, bool, error) {
	return r.next().RefundRecord(ctx, h)
}
func (r *replicas) RefundReceipts(ctx context.Context, h ecash.Hash) ([][]byte, error) {
	return r.next().RefundReceipts(ctx, h)
}
func (r *replicas) CoinStates(ctx context.Context, ids []ecash.Hash) ([]bank.CoinState, error) {
	return r.next().CoinStates(ctx, ids)
}
func (r *replicas) Issued(ctx context.Context, h []ecash.Hash) ([]*bank.Issued, error) {
	return r.next().Issued(ctx, h)
}
func (r *replicas) Spent(ctx context.Context, ids []ecash.Hash) ([]bool, error) {
	return r.next().Spent(ctx, ids)
}
func (r *replicas) SwapRecord(ctx context.Context, h ecash.Hash) ([][]byte, bool, error) {
	return r.next().SwapRecord(ctx, h)
}
func (r *replicas) Withdrawal(ctx context.Context, h ecash.Hash) ([][]byte, bool, error) {
	return r.next().Withdrawal(ctx, h)
}
func (r *replicas) DepositRecord(ctx context.Context, h ecash.Hash) ([]byte, []ecash.Hash, bool, error) {
	return r.next().DepositRecord(ctx, h)
}
func (r *replicas) Check(ctx context.Context, op bank.CheckOp) (bank.CheckOutcome, error) {
	return r.next().Check(ctx, op)
}
func (r *replicas) CheckRecord(ctx context.Context, epoid string) (bank.CheckOutcome, bool, error) {
	return r.next().CheckRecord(ctx, epoid)
}
func (r *replicas) SetLimits(ctx context.Context, id uint64, l bank.Limits) error {
	return r.next().SetLimits(ctx, id, l)
}
func (r *replicas) AuthFailure(ctx context.Context, id uint64, source string, now time.Time) (bool, error) {
	return r.next().AuthFailure(ctx, id, source, now)
}
func (r *replicas) AuthLocked(ctx context.Context, id uint64, source string, now time.Time) (bool, error) {
	return r.next().AuthLocked(ctx, id, source, now)
}
func (r *replicas) LockedSources(ctx context.Context, id uint64, now time.Time) (int, error) {
	return r.next().LockedSources(ctx, id, now)
}
func (r *replicas) Unlock(ctx context.Context, id uint64) error          { return r.next().Unlock(ctx, id) }
func (r *replicas) Totals(ctx context.Context) (map[uint64]int64, error) { return r.next().Totals(ctx) }
func (r *replicas) PublishKeySet(ctx context.Context, signed []byte, at time.Time) error {
	return r.next().PublishKeySet(ctx, signed, at)
}
func (r *replicas) Revocations(ctx context.Context) ([]bank.Revocation, error) {
	return r.next().Revocations(ctx)
}
func (r *replicas) LogIndex(ctx context.Context, ref ecash.Hash) (int64, bool, error) {
	return r.next().LogIndex(ctx, ref)
}
func (r *replicas) LogSize(ctx context.Context) (int64, error) { return r.next().LogSize(ctx) }
func (r *replicas) LogEntries(ctx context.Context, from int64, n, maxBytes int) ([][]byte, error) {
	return r.next().LogEntries(ctx, from, n, maxBytes)
}
func (r *replicas) LogHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	return r.next().LogHashes(ctx, indexes)
}
func (r *replicas) Close() error {
	var errs []error
	for _, s := range r.stores {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// key is a valid Ed25519 public key per name (the audit log refuses keys
// that are not points of large order).
func key(name string) []byte {
	h := ecash.HashOf([]byte("key " + name))
	return ed25519.NewKeyFromSeed(h[:]).Public().(ed25519.PublicKey)
}

func hashOf(format string, args ...any) ecash.Hash {
	return ecash.HashOf(fmt.Appendf(nil, format, args...))
}

func openAccount(t testing.TB, s *Store, name string, merchant bool) uint64 {
	t.Helper()
	id, err := s.OpenAccount(bg, name, key(name), merchant, epoch)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mapsEqual(a, b map[uint64]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestReopen closes and reopens a store: everything acknowledged is there,
// the migrations are not applied again, and ids continue.
func TestReopen(t *testing.T) {
	dsn := freshDSN(t)
	s := mustOpen(t, dsn)
	c := openAccount(t, s, "alice", false)
	m := openAccount(t, s, "shop", true)
	if c != FirstUserAccount || m != c+1 {
		t.Errorf("first user accounts %d, %d; want %d, %d", c, m, FirstUserAccount, FirstUserAccount+1)
	}
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 42, Reference: "r1", Time: epoch}); err != nil {
		t.Fatal(err)
	}
	w := bank.WithdrawOp{RequestHash: hashOf("w1"), Account: c, Amount: 30, BlindSigs: [][]byte{[]byte("sig")}, Time: epoch}
	if _, err := s.Withdraw(bg, w); err != nil {
		t.Fatal(err)
	}
	d := bank.DepositOp{PaymentHash: hashOf("p1"), Merchant: m, Amount: 20, Coins: []bank.SpentCoin{{ID: hashOf("c1"), Permission: []byte("perm")}}, Receipt: []byte("receipt"), Time: epoch}
	if _, err := s.Deposit(bg, d); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if _, err := s.Account(bg, c); !errors.Is(err, ErrClosed) {
		t.Errorf("Account after Close = %v, want ErrClosed", err)
	}

	s = mustOpen(t, dsn)
	defer s.Close()
	if applied, err := migrate(bg, s.pool, migrations); err != nil || len(applied) != 0 {
		t.Errorf("migrate on an up-to-date database applied %v, %v", applied, err)
	}
	var versions int
	if err := s.pool.QueryRow(bg, `SELECT count(*) FROM schema_migrations`).Scan(&versions); err != nil || versions != len(migrations) {
		t.Errorf("schema_migrations has %d rows, %v; want %d", versions, err, len(migrations))
	}
	a, err := s.Account(bg, c)
	if err != nil || a.Balance != 12 || a.Name != "alice" || !a.Created.Equal(epoch) || !bytes.Equal(a.Key, key("alice")) {
		t.Errorf("after reopen: %+v, %v", a, err)
	}
	if bal, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 42, Reference: "r1", Time: epoch}); err != nil || bal != 12 {
		t.Errorf("reference replay after reopen = %d, %v", bal, err)
	}
	w.BlindSigs = [][]byte{[]byte("fresh")}
	if sigs, err := s.Withdraw(bg, w); err != nil || len(sigs) != 1 || string(sigs[0]) != "sig" {
		t.Errorf("withdraw replay after reopen = %q, %v", sigs, err)
	}
	d.Receipt = []byte("fresh")
	if r, err := s.Deposit(bg, d); err != nil || string(r) != "receipt" {
		t.Errorf("deposit replay after reopen = %q, %v", r, err)
	}
	if next := openAccount(t, s, "bob", false); next != m+1 {
		t.Errorf("next account %d, want %d", next, m+1)
	}
	if _, err := s.OpenAccount(bg, "alice2", key("alice"), false, epoch); !errors.Is(err, bank.ErrKeyInUse) {
		t.Errorf("reused key after reopen: %v", err)
	}
	totals, err := s.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]int64{bank.AccountFunding: -42, bank.AccountOutstanding: 10, bank.AccountFees: 0, c: 12, m: 20, m + 1: 0}
	if !mapsEqual(totals, want) {
		t.Errorf("Totals = %v, want %v", totals, want)
	}
	// A refused OpenAccount (key in use) did not use up an id.
	if next := openAccount(t, s, "carol", false); next != m+2 {
		t.Errorf("account after a refused open %d, want %d", next, m+2)
	}
}

// TestMigrations: versions are applied once each, in their own
// transactions, and a database newer than the program is refused.
func TestMigrations(t *testing.T) {
	dsn := freshDSN(t)
	s := mustOpen(t, dsn)
	defer s.Close()
	extra := append(slices.Clone(migrations), migration{
		version: len(migrations) + 1, name: "test: extra table",
		steps: []string{`CREATE TABLE extra (id bigint PRIMARY KEY)`, `INSERT INTO extra VALUES (1)`},
	})
	for i, want := range [][]int{{len(migrations) + 1}, nil} {
		applied, err := migrate(bg, s.pool, extra)
		if err != nil || !slices.Equal(applied, want) {
			t.Fatalf("migrate #%d applied %v, %v; want %v", i, applied, err, want)
		}
	}
	var n int
	if err := s.pool.QueryRow(bg, `SELECT count(*) FROM extra`).Scan(&n); err != nil || n != 1 {
		t.Errorf("extra has %d rows, %v; want 1", n, err)
	}
	// A failing migration leaves nothing behind: neither its DDL nor its version.
	bad := append(slices.Clone(extra), migration{
		version: len(extra) + 1, name: "test: fails halfway",
		steps: []string{`CREATE TABLE half (id bigint)`, `SELECT 1/0`},
	})
	if _, err := migrate(bg, s.pool, bad); err == nil {
		t.Fatal("failing migration succeeded")
	}
	if err := s.pool.QueryRow(bg, `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'half'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("failed migration left its table: %d, %v", n, err)
	}
	// The schema is now newer than this program's migrations.
	if _, err := Open(bg, dsn, Options{Logger: quiet}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("newer")) {
		t.Errorf("Open on a newer schema = %v, want a refusal", err)
	}
	// The hash-partitioned tables have their partitions.
	for _, table := range []string{"spent_coins", "withdrawals", "swaps", "issued", "checks", "log_refs"} {
		if err := s.pool.QueryRow(bg, `SELECT count(*) FROM pg_inherits WHERE inhparent = $1::regclass`, table).Scan(&n); err != nil || n != Partitions {
			t.Errorf("%s has %d partitions, %v; want %d", table, n, err, Partitions)
		}
	}
}

// An opener that knows fewer migrations than one migrating at the same
// moment waits for it, then is refused: it never serves on a schema newer
// than it knows (it used to read the version before the other's
// migration committed, and open).
func TestMigrationsTakeTurns(t *testing.T) {
	dsn := freshDSN(t)
	s := mustOpen(t, dsn)
	defer s.Close()
	newer, err := s.pool.Acquire(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer newer.Release()
	// A newer binary: holds the lock, mid-way through its next migration.
	if _, err := newer.Exec(bg, `SELECT pg_advisory_lock($1)`, int64(migrateLock)); err != nil {
		t.Fatal(err)
	}
	tx, err := newer.Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(bg, `INSERT INTO schema_migrations (version, name) VALUES ($1, 'test: newer')`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	older := make(chan error, 1)
	go func() { _, err := migrate(bg, s.pool, migrations); older <- err }()
	for waiting := false; !waiting; {
		select {
		case err := <-older:
			t.Fatalf("an older binary's migrate returned (%v) while a newer one was migrating", err)
		default:
		}
		if err := s.pool.QueryRow(bg, `SELECT count(*) > 0 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
			WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(bg); err != nil {
		t.Fatal(err)
	}
	if _, err := newer.Exec(bg, `SELECT pg_advisory_unlock($1)`, int64(migrateLock)); err != nil {
		t.Fatal(err)
	}
	if err := <-older; err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("the older binary's migrate after the newer one's = %v, want a refusal", err)
	}
}

// A key set another replica publishes again (restarted on an old key
// file) is not logged again: every replica answers LogIndex with its
// entry, and LogHead names the newer key set still.
func TestKeySetNotLoggedAgain(t *testing.T) {
	dsn := freshDSN(t)
	a, b := mustOpen(t, dsn), mustOpen(t, dsn)
	defer a.Close()
	defer b.Close()
	k1, k2 := testKeySet(1), testKeySet(2)
	for _, step := range []struct {
		s  *Store
		ks []byte
	}{{a, k1}, {a, k2}, {b, k1}} {
		if err := step.s.PublishKeySet(bg, step.ks, epoch); err != nil {
			t.Fatal(err)
		}
	}
	ref := ecash.Hash(sha256.Sum256(k1))
	for name, s := range map[string]*Store{"a": a, "b": b} {
		if idx, found, err := s.LogIndex(bg, ref); err != nil || !found || idx != 0 {
			t.Errorf("replica %s: LogIndex(K1) = %d, %v, %v; want 0, its only entry", name, idx, found, err)
		}
		size, head, found, err := s.LogHead(bg)
		if err != nil || !found || size != 2 || head.Index != 1 || head.Ref != sha256.Sum256(k2) {
			t.Errorf("replica %s: LogHead = %d, %+v, %v, %v; want K2 at entry 1 of 2", name, size, head, found, err)
		}
	}
}

func TestSynchronousCommitOff(t *testing.T) {
	dsn := freshDSN(t) + " synchronous_commit=off"
	if s, err := Open(bg, dsn, Options{Logger: quiet}); err == nil {
		s.Close()
		t.Fatal("Open accepted a session with synchronous_commit=off")
	}
}

// Durability is checked on every connection the pool makes, not only the
// first: a database setting made after Open refuses the next one. The
// refusal is bank.ErrStoreUnavailable (gRPC Unavailable: nothing done,
// retry), not an internal error, for writes and reads alike.
func TestSynchronousCommitTurnedOffLater(t *testing.T) {
	s := mustOpen(t, pgtest.Shared(t).NewDatabase(t)) // a database of its own: the setting is the database's
	defer s.Close()
	c := openAccount(t, s, "c", false)
	if err := s.Probe(bg); err != nil {
		t.Fatalf("Probe before the change: %v", err)
	}
	if _, err := s.pool.Exec(bg, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database()); END $$`); err != nil {
		t.Fatal(err)
	}
	// The probe's session is new: it sees the setting at once, while the
	// pool's sessions keep theirs.
	if err := s.Probe(bg); !errors.Is(err, bank.ErrStoreUnavailable) || !strings.Contains(err.Error(), "synchronous_commit") {
		t.Errorf("Probe after the change = %v, want ErrStoreUnavailable naming synchronous_commit", err)
	}
	s.pool.Reset() // the pool's next connections see the new setting
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 1, Time: epoch}); !errors.Is(err, bank.ErrStoreUnavailable) || !strings.Contains(err.Error(), "synchronous_commit") {
		t.Errorf("a credit on a connection with synchronous_commit off = %v, want ErrStoreUnavailable naming it", err)
	}
	if _, err := s.Account(bg, c); !errors.Is(err, bank.ErrStoreUnavailable) || !strings.Contains(err.Error(), "synchronous_commit") {
		t.Errorf("a read on a connection with synchronous_commit off = %v, want ErrStoreUnavailable naming it", err)
	}
}

// RefundReceipts lists a payment's refunds in the order they were
// applied, whatever the clocks of the replicas that applied them said
// (it used to sort by their times).
func TestRefundReceiptsInOrderApplied(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	c := openAccount(t, s, "c", false)
	m := openAccount(t, s, "m", true)
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 1000, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Withdraw(bg, bank.WithdrawOp{RequestHash: hashOf("w"), Account: c, Amount: 500, BlindSigs: [][]byte{[]byte("s")}, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	coin := hashOf("coin")
	if _, err := s.Deposit(bg, bank.DepositOp{PaymentHash: hashOf("p"), Merchant: m, Amount: 100,
		Coins: []bank.SpentCoin{{ID: coin, Permission: []byte("perm")}}, Receipt: []byte("rcpt"), Time: epoch}); err != nil {
		t.Fatal(err)
	}
	var n uint64
	refund := func(tag string, at time.Time) {
		n++
		ten := ecash.Amount{Currency: "EUR", Value: 10}
		entry := auditlog.Refund{Merchant: m, Amount: ten, PaymentHash: hashOf("p"), RefundID: n,
			CreatedAt: at, MerchantSig: make([]byte, ed25519.SignatureSize), Coins: []auditlog.RefundedCoin{{ID: coin, Value: ten}}}
		entry.RefundHash = entry.Request().Hash()
		if _, err := s.Refund(bg, bank.RefundOp{RequestHash: entry.RefundHash, PaymentHash: hashOf("p"), Merchant: m, Amount: 10,
			Coins: []bank.CoinRefund{{ID: coin, Value: 10, Cap: 100}}, Receipt: []byte(tag), Time: at, Log: entry}); err != nil {
			t.Fatal(err)
		}
	}
	refund("first", epoch.Add(time.Second)) // replica A, clock ahead
	refund("second", epoch)                 // replica B, applied later
	rs, err := s.RefundReceipts(bg, hashOf("p"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || string(rs[0]) != "first" {
		t.Errorf("RefundReceipts = %q, want [first second] (the order applied)", rs)
	}
}

func TestOverflow(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	c := openAccount(t, s, "rich", false)
	d := openAccount(t, s, "other", false)
	m := openAccount(t, s, "shop", true)
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: math.MaxInt64, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 1, Time: epoch}); !errors.Is(err, ErrOverflow) {
		t.Errorf("Credit past MaxInt64 = %v, want ErrOverflow", err)
	}
	if _, err := s.Credit(bg, bank.CreditOp{Account: d, Amount: 2, Time: epoch}); !errors.Is(err, ErrOverflow) {
		t.Errorf("Credit taking Funding past MinInt64 = %v, want ErrOverflow", err)
	}
	if _, err := s.Withdraw(bg, bank.WithdrawOp{RequestHash: hashOf("w1"), Account: c, Amount: math.MaxInt64, BlindSigs: [][]byte{{1}}, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deposit(bg, bank.DepositOp{PaymentHash: hashOf("p1"), Merchant: m, Amount: math.MaxInt64, Coins: []bank.SpentCoin{{ID: hashOf("c1"), Permission: []byte{1}}}, Receipt: []byte{1}, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Totals(bg)
	if after[m] != math.MaxInt64 || after[bank.AccountOutstanding] != 0 {
		t.Errorf("Totals = %v", after)
	}
	if _, err := s.Deposit(bg, bank.DepositOp{PaymentHash: hashOf("p2"), Merchant: m, Amount: 1, Coins: []bank.SpentCoin{{ID: hashOf("c2"), Permission: []byte{1}}}, Receipt: []byte{1}, Time: epoch}); !errors.Is(err, ErrOverflow) {
		t.Errorf("Deposit past MaxInt64 = %v, want ErrOverflow", err)
	}
	final, _ := s.Totals(bg)
	if !mapsEqual(after, final) {
		t.Errorf("refused ops moved money: %v → %v", after, final)
	}
	var coins, deposits int
	if err := s.pool.QueryRow(bg, `SELECT (SELECT count(*) FROM spent_coins), (SELECT count(*) FROM deposits)`).Scan(&coins, &deposits); err != nil || coins != 1 || deposits != 1 {
		t.Errorf("%d spent coins, %d deposits, %v; want 1, 1", coins, deposits, err)
	}
}

func TestWithdrawRequestConflict(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	c := openAccount(t, s, "a", false)
	d := openAccount(t, s, "b", false)
	for _, id := range []uint64{c, d} {
		if _, err := s.Credit(bg, bank.CreditOp{Account: id, Amount: 100, Time: epoch}); err != nil {
			t.Fatal(err)
		}
	}
	op := bank.WithdrawOp{RequestHash: hashOf("w"), Account: c, Amount: 10, BlindSigs: [][]byte{{1}}, Time: epoch}
	if _, err := s.Withdraw(bg, op); err != nil {
		t.Fatal(err)
	}
	other := op
	other.Account = d
	if _, err := s.Withdraw(bg, other); !errors.Is(err, bank.ErrRequestConflict) {
		t.Errorf("replay for another account = %v, want ErrRequestConflict", err)
	}
	other = op
	other.Amount = 11
	if _, err := s.Withdraw(bg, other); !errors.Is(err, bank.ErrRequestConflict) {
		t.Errorf("replay for another amount = %v, want ErrRequestConflict", err)
	}
}

// TestOddStrings: names, memos, references and EPOIDs are byte strings,
// kept exactly, as in the Pebble store: NUL bytes and invalid UTF-8 too.
func TestOddStrings(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	odd := "a\x00b\xff\xfe"
	c, err := s.OpenAccount(bg, odd, key("odd"), false, epoch)
	if err != nil {
		t.Fatal(err)
	}
	m := openAccount(t, s, "shop", true)
	if a, err := s.Account(bg, c); err != nil || a.Name != odd {
		t.Errorf("Account = %+v, %v", a, err)
	}
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 5, Memo: odd, Reference: odd, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	op := bank.CheckOp{EPOID: odd, EPOHash: hashOf("epo"), Customer: c, Merchant: m, Amount: 1, Product: odd, Memo: odd,
		Approved: []byte{1}, DeclinedFunds: []byte{2}, DeclinedLimit: []byte{3}, Time: epoch}
	if out, err := s.Check(bg, op); err != nil || out.Outcome != bank.CheckApproved {
		t.Fatalf("Check = %+v, %v", out, err)
	}
	h, err := s.History(bg, c, 10)
	if err != nil || len(h) != 2 || h[0].Memo != odd || h[0].Ref != odd || h[0].Product != odd || h[1].Memo != odd {
		t.Errorf("History = %+v, %v", h, err)
	}
	if _, found, err := s.CheckRecord(bg, odd); err != nil || !found {
		t.Errorf("CheckRecord = %v, %v", found, err)
	}
}

// TestTimes: times are kept to the microsecond, and the first answer
// already says what a replay will.
func TestTimes(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	c := openAccount(t, s, "c", false)
	m := openAccount(t, s, "m", true)
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 100, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	at := epoch.Add(1234567 * time.Nanosecond)
	op := bank.CheckOp{EPOID: "t-1", EPOHash: hashOf("epo"), Customer: c, Merchant: m, Amount: 1,
		Approved: []byte{1}, DeclinedFunds: []byte{2}, DeclinedLimit: []byte{3}, Time: at}
	first, err := s.Check(bg, op)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Check(bg, op)
	if err != nil {
		t.Fatal(err)
	}
	if want := epoch.Add(1234 * time.Microsecond); !first.Time.Equal(want) || !again.Time.Equal(want) || again.Time.Location() != time.UTC {
		t.Errorf("check times %v and %v, want %v", first.Time, again.Time, want)
	}
	// The zero time round-trips.
	zero := op
	zero.EPOID, zero.Time = "t-2", time.Time{}
	if _, err := s.Check(bg, zero); err != nil {
		t.Fatal(err)
	}
	if rec, _, err := s.CheckRecord(bg, "t-2"); err != nil || !rec.Time.IsZero() {
		t.Errorf("zero time stored as %v, %v", rec.Time, err)
	}
}

// TestContext: a call whose context ends while it waits for a connection
// changes nothing and returns ctx.Err(); a call that holds a connection
// completes and commits whatever its context does.
func TestContext(t *testing.T) {
	dsn := freshDSN(t)
	s, err := Open(bg, dsn, Options{MaxConns: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := openAccount(t, s, "a", false)

	// The pool's only connection is busy: a credit waits for it, and its
	// context ends first.
	held, err := s.pool.Acquire(bg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Credit(ctx, bank.CreditOp{Account: c, Amount: 5, Time: epoch}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Credit waiting for a connection = %v, want DeadlineExceeded", err)
	}
	held.Release()
	if a, err := s.Account(bg, c); err != nil || a.Balance != 0 {
		t.Errorf("balance %d, %v; the timed-out credit was applied", a.Balance, err)
	}

	// Another session holds the funding account's row lock: a credit takes
	// a connection, then waits for the lock; its context is canceled; the
	// lock is released; the credit completes and is committed.
	other, err := Open(bg, dsn, Options{MaxConns: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.pool.Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(bg, `SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE`, int64(bank.AccountFunding)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(bg)
	done := make(chan error, 1)
	go func() {
		_, err := s.Credit(ctx, bank.CreditOp{Account: c, Amount: 7, Time: epoch})
		done <- err
	}()
	waitForLockWait(t, dsn)
	cancel()
	time.Sleep(20 * time.Millisecond)
	if err := tx.Rollback(bg); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Credit taken up, then canceled = %v, want nil", err)
	}
	if a, err := s.Account(bg, c); err != nil || a.Balance != 7 {
		t.Errorf("balance %d, %v; want 7", a.Balance, err)
	}
}

// waitForLockWait waits until some session of the database waits for a lock.
func waitForLockWait(t *testing.T, dsn string) {
	t.Helper()
	conn, err := pgx.Connect(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(bg)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		if err := conn.QueryRow(bg, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no session waits for the lock")
}

// TestTwoStoresOneDatabase: two Stores (two bankd replicas) over one
// database, 100 goroutines depositing one coin split across both: exactly
// one wins, and every loser is shown the winner's permission.
func TestTwoStoresOneDatabase(t *testing.T) {
	s1, s2 := openConcurrently(t, freshDSN(t))
	defer s1.Close()
	defer s2.Close()
	stores := []*Store{s1, s2}
	c := openAccount(t, s1, "customer", false)
	m := openAccount(t, s2, "merchant", true)
	if _, err := s1.Credit(bg, bank.CreditOp{Account: c, Amount: 1000, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Withdraw(bg, bank.WithdrawOp{RequestHash: hashOf("fund"), Account: c, Amount: 500, BlindSigs: [][]byte{{1}}, Time: epoch}); err != nil {
		t.Fatal(err)
	}

	const n = 100
	coin := hashOf("contested coin")
	perm := func(i int) []byte { return fmt.Appendf(nil, "permission %d", i) }
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = stores[i%2].Deposit(bg, bank.DepositOp{
				PaymentHash: hashOf("payment %d", i), Merchant: m, Amount: 100,
				Coins: []bank.SpentCoin{{ID: coin, Permission: perm(i)}}, Receipt: []byte("receipt"), Time: epoch,
			})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("coin deposited twice: by %d and %d", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no deposit won; first error: %v", errs[0])
	}
	for i, err := range errs {
		if i == winner {
			continue
		}
		var se *bank.SpentError
		if !errors.As(err, &se) || se.Coin != coin || !bytes.Equal(se.Permission, perm(winner)) {
			t.Errorf("deposit %d: %v, want SpentError with the winner's permission", i, err)
		}
	}

	// The same payment order through both replicas: decided once.
	op := bank.CheckOp{EPOID: "both", EPOHash: hashOf("epo both"), Customer: c, Merchant: m, Amount: 50,
		Approved: []byte("ok"), DeclinedFunds: []byte("funds"), DeclinedLimit: []byte("limit"), Time: epoch}
	var approved atomic.Int32
	for i := range 20 {
		wg.Go(func() {
			out, err := stores[i%2].Check(bg, op)
			if err != nil || out.Outcome != bank.CheckApproved {
				t.Errorf("Check = %+v, %v", out, err)
				return
			}
			approved.Add(1)
		})
	}
	wg.Wait()
	if approved.Load() != 20 {
		t.Errorf("%d of 20 submissions saw the approval", approved.Load())
	}
	totals, err := s1.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]int64{bank.AccountFunding: -1000, bank.AccountOutstanding: 400, bank.AccountFees: 0, c: 450, m: 150}
	if !mapsEqual(totals, want) {
		t.Errorf("Totals = %v, want %v", totals, want)
	}
	checkConsistent(t, s2)
}

// TestCloseInFlight closes the store under load: every call either fails
// with ErrClosed, or succeeded and is durable.
func TestCloseInFlight(t *testing.T) {
	dsn := freshDSN(t)
	s := mustOpen(t, dsn)
	c := openAccount(t, s, "a", false)
	var (
		wg      sync.WaitGroup
		applied atomic.Int64
	)
	for i := range 20 {
		wg.Go(func() {
			for j := 0; ; j++ {
				_, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 1, Reference: fmt.Sprint(i, "/", j), Time: epoch})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Credit: %v", err)
					return
				}
				applied.Add(1)
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = mustOpen(t, dsn)
	defer s.Close()
	a, err := s.Account(bg, c)
	if err != nil {
		t.Fatal(err)
	}
	if a.Balance != applied.Load() || a.Balance == 0 {
		t.Errorf("balance %d after close, %d credits acknowledged", a.Balance, applied.Load())
	}
}

func TestDuplicateCoinError(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	m := openAccount(t, s, "shop", true)
	c := bank.SpentCoin{ID: hashOf("c"), Permission: []byte{1}}
	_, err := s.Deposit(bg, bank.DepositOp{PaymentHash: hashOf("p"), Merchant: m, Amount: 2, Coins: []bank.SpentCoin{c, c}, Receipt: []byte{1}, Time: epoch})
	if !errors.Is(err, bank.ErrDuplicateCoin) || !errors.Is(err, ErrInvalid) {
		t.Errorf("Deposit(coin twice) = %v, want ErrDuplicateCoin and ErrInvalid", err)
	}
}

// TestEPOIDRace: one EPOID submitted at once by pairs of accounts that
// share no row lock, so nothing serialises them but the EPOID's primary
// key: one order is decided, the losers' inserts fail with a unique
// violation, are retried, and find the EPOID taken.
func TestEPOIDRace(t *testing.T) {
	s1, s2 := openConcurrently(t, freshDSN(t))
	defer s1.Close()
	defer s2.Close()
	const n = 8
	ops := make([]bank.CheckOp, n)
	for i := range ops {
		c := openAccount(t, s1, fmt.Sprint("customer ", i), false)
		m := openAccount(t, s1, fmt.Sprint("merchant ", i), true)
		if _, err := s1.Credit(bg, bank.CreditOp{Account: c, Amount: 100, Time: epoch}); err != nil {
			t.Fatal(err)
		}
		ops[i] = bank.CheckOp{EPOID: "raced", EPOHash: hashOf("epo %d", i), Customer: c, Merchant: m, Amount: 10,
			Approved: []byte("ok"), DeclinedFunds: []byte("funds"), DeclinedLimit: []byte("limit"), Time: epoch}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = []*Store{s1, s2}[i%2].Check(bg, ops[i])
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("EPOID decided twice: for %d and %d", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, bank.ErrEPOIDConflict):
			t.Errorf("Check %d = %v, want ErrEPOIDConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no order was decided")
	}
	rec, found, err := s2.CheckRecord(bg, "raced")
	if err != nil || !found || rec.EPOHash != ops[winner].EPOHash {
		t.Errorf("CheckRecord = %+v, %v, %v; want the winner's", rec, found, err)
	}
	for i, op := range ops {
		want := int64(100)
		if i == winner {
			want = 90
		}
		if a, err := s1.Account(bg, op.Customer); err != nil || a.Balance != want {
			t.Errorf("customer %d balance %d, %v; want %d", i, a.Balance, err, want)
		}
	}
	checkConsistent(t, s1)
}

// BenchmarkDeposit measures parallel deposits of four fresh coins each to
// one merchant: every one locks the merchant's and the Outstanding
// account's rows, so this is the store's serial ceiling.
func BenchmarkDeposit(b *testing.B) {
	s := mustOpen(b, freshDSN(b))
	defer s.Close()
	c := openAccount(b, s, "customer", false)
	m := openAccount(b, s, "shop", true)
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: math.MaxInt32, Time: epoch}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Withdraw(bg, bank.WithdrawOp{RequestHash: hashOf("fund"), Account: c, Amount: math.MaxInt32, BlindSigs: [][]byte{{1}}, Time: epoch}); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Uint64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Deposit(bg, storetest.BenchDeposit(m, seq.Add(1), nil)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

// TestServerDown: with the server down, reads and mutations fail with
// bank.ErrStoreUnavailable (gRPC Unavailable: nothing was done, retry
// later), not as internal errors; once it is back, the same calls succeed.
func TestServerDown(t *testing.T) {
	srv := pgtest.New(t)
	db, err := srv.CreateDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, srv.DSN(db))
	defer s.Close()
	a := openAccount(t, s, "a", false)
	credit := func(n int) error {
		_, err := s.Credit(bg, bank.CreditOp{Account: a, Amount: 10, Reference: fmt.Sprintf("ref %d", n), Time: epoch})
		return err
	}
	if err := credit(0); err != nil {
		t.Fatal(err)
	}
	if err := srv.Crash(); err != nil {
		t.Fatal(err)
	}
	// The pool's idle connections are dead and new ones cannot be made:
	// every call must say so, whichever of the two it meets.
	for i := 1; i <= 3; i++ {
		err := credit(i)
		if !errors.Is(err, bank.ErrStoreUnavailable) {
			t.Errorf("credit with the server down: %v, want ErrStoreUnavailable", err)
		}
		if code := status.Code(bank.ToStatus(context.Background(), err, nil)); code != codes.Unavailable {
			t.Errorf("credit with the server down: gRPC %v, want Unavailable", code)
		}
		if _, err := s.Account(bg, a); !errors.Is(err, bank.ErrStoreUnavailable) {
			t.Errorf("read with the server down: %v, want ErrStoreUnavailable", err)
		}
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := credit(4); err != nil {
		t.Fatalf("credit after the restart: %v", err)
	}
	acct, err := s.Account(bg, a)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Balance != 20 {
		t.Errorf("balance %d after two credits of 10 acknowledged, want 20", acct.Balance)
	}
}

// TestScanRevocations: on the first Open after migration 8, the
// revocations of key sets logged before it are recorded.
func TestScanRevocations(t *testing.T) {
	dsn := freshDSN(t)
	s := mustOpen(t, dsn)
	storetest.CheckScanRevocations(t, s, func(ecash.Hash) {
		// The state migration 8 leaves a database in.
		if _, err := s.pool.Exec(bg, `DELETE FROM revocations; UPDATE log_state SET unscanned = size`); err != nil {
			t.Fatal(err)
		}
	}, func() bank.Store { return mustOpen(t, dsn) })
}

// TestIndexKeySets: on the first Open after migration 9, the key sets
// logged before it are indexed by hash.
func TestIndexKeySets(t *testing.T) {
	dsn := freshDSN(t)
	s := mustOpen(t, dsn)
	storetest.CheckIndexKeySets(t, s, func(refs []ecash.Hash) {
		// The state migration 9 leaves a database in.
		s.refs = bank.RecentLogRefs{}
		if _, err := s.pool.Exec(bg, `DELETE FROM log_refs WHERE ref = ANY($1)`, [][]byte{refs[0][:], refs[1][:]}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.pool.Exec(bg, `UPDATE log_state SET unindexed = size`); err != nil {
			t.Fatal(err)
		}
	}, func() bank.Store { return mustOpen(t, dsn) })
}

// BenchmarkDepositLogged is BenchmarkDeposit with each deposit's
// audit-log entry, so each also takes the log's lock and is checked
// against the revocations: with none recorded, and with another
// denomination revoked.
func BenchmarkDepositLogged(b *testing.B) {
	for _, revoked := range []bool{false, true} {
		b.Run(fmt.Sprintf("revoked=%t", revoked), func(b *testing.B) {
			s := mustOpen(b, freshDSN(b))
			defer s.Close()
			storetest.BenchLoggedDeposits(b, s, revoked, 8)
		})
	}
}
