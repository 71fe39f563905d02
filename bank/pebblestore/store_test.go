package pebblestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/storetest"
	"github.com/blindbank/blindbank/ecash"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) bank.Store {
		s, err := Open("bank", Options{Logger: quiet, FS: vfs.NewMem()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestConformanceSmallBatch runs the suite with groups of at most two ops,
// so that group boundaries fall everywhere.
func TestConformanceSmallBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	storetest.Run(t, func(t *testing.T) bank.Store {
		s, err := Open("bank", Options{Logger: quiet, FS: vfs.NewMem(), MaxBatch: 2})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

var (
	epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	bg    = context.Background()
	quiet = slog.New(slog.DiscardHandler) // Pebble's WAL recovery messages
)

// key is a valid Ed25519 public key per name (the audit log refuses keys
// that are not points of large order).
func key(name string) []byte { return storetest.Key(name) }

func hashOf(format string, args ...any) ecash.Hash {
	return ecash.HashOf(fmt.Appendf(nil, format, args...))
}

func mustOpen(t testing.TB, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open("bank", Options{Logger: quiet, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openAccount(t testing.TB, s *Store, name string, merchant bool) uint64 {
	t.Helper()
	id, err := s.OpenAccount(bg, name, key(name), merchant, epoch)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A store of format 1, whose account records lack the last posting's
// time, opens and is marked format 2 (which older binaries refuse); its
// records decode without the field. A newer format, or a record that is
// not a version, is refused.
func TestFormatUpgrade(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs)
	c := openAccount(t, s, "alice", false)
	a, err := s.Account(bg, c)
	if err != nil {
		t.Fatal(err)
	}
	old := encodeAccount(&account{Account: a, NextSeq: 1})
	old = old[:len(old)-1] // a zero time is one byte: the record as format 1 wrote it
	for _, kv := range [][2][]byte{{keyFormat, binary.BigEndian.AppendUint32(nil, 1)}, {accountKey(c), old}} {
		if err := s.db.Set(kv[0], kv[1], pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, fs)
	if a, err := s.Account(bg, c); err != nil || a.Name != "alice" || !a.LastPosted.IsZero() {
		t.Errorf("a format-1 account record: %+v, %v", a, err)
	}
	v, closer, err := s.db.Get(keyFormat)
	if err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint32(v) != formatVersion {
		t.Errorf("format %x after opening, want %d", v, formatVersion)
	}
	closer.Close()
	if err := s.db.Set(keyFormat, binary.BigEndian.AppendUint32(nil, formatVersion+1), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open("bank", Options{Logger: quiet, FS: fs}); !errors.Is(err, ErrStoreTooNew) {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open on a newer format = %v, want ErrStoreTooNew", err)
	}
	// A record that is not a version is refused, not decoded.
	db, err := OpenDB("bank", DBOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(db.Set(keyFormat, []byte{0, 0, 2}, pebble.Sync), db.Close()); err != nil {
		t.Fatal(err)
	}
	if s, err := Open("bank", Options{Logger: quiet, FS: fs}); !errors.Is(err, ErrBadFormat) {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open on a 3-byte format record = %v, want ErrBadFormat", err)
	}
}

func TestReopen(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs)
	c := openAccount(t, s, "alice", false)
	if c != FirstUserAccount {
		t.Errorf("first user account %d, want %d", c, FirstUserAccount)
	}
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 42, Reference: "r1", Time: epoch}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}

	s = mustOpen(t, fs)
	defer s.Close()
	a, err := s.Account(bg, c)
	if err != nil || a.Balance != 42 || a.Name != "alice" || !a.Created.Equal(epoch) {
		t.Errorf("after reopen: %+v, %v", a, err)
	}
	if bal, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 42, Reference: "r1", Time: epoch}); err != nil || bal != 42 {
		t.Errorf("reference replay after reopen = %d, %v", bal, err)
	}
	if d := openAccount(t, s, "bob", false); d != c+1 {
		t.Errorf("next account %d, want %d", d, c+1)
	}
	if _, err := s.OpenAccount(bg, "alice2", key("alice"), false, epoch); !errors.Is(err, bank.ErrKeyInUse) {
		t.Errorf("reused key after reopen: %v", err)
	}
	totals, err := s.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]int64{bank.AccountFunding: -42, bank.AccountOutstanding: 0, bank.AccountFees: 0, c: 42, c + 1: 0}
	if !mapsEqual(totals, want) {
		t.Errorf("Totals = %v, want %v", totals, want)
	}
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

func TestOverflow(t *testing.T) {
	s := mustOpen(t, vfs.NewMem())
	defer s.Close()
	c := openAccount(t, s, "rich", false)
	d := openAccount(t, s, "other", false)
	m := openAccount(t, s, "shop", true)
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: math.MaxInt64, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	// The account side overflows.
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 1, Time: epoch}); !errors.Is(err, ErrOverflow) {
		t.Errorf("Credit past MaxInt64 = %v, want ErrOverflow", err)
	}
	// Funding is at -MaxInt64: one more credit anywhere takes it past MinInt64.
	if _, err := s.Credit(bg, bank.CreditOp{Account: d, Amount: 2, Time: epoch}); !errors.Is(err, ErrOverflow) {
		t.Errorf("Credit taking Funding past MinInt64 = %v, want ErrOverflow", err)
	}
	// Outstanding goes to MaxInt64; a deposit to a merchant works, and
	// one more withdraw overflows Outstanding.
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
	// The refused deposit left its coin unspent.
	if n := countPrefix(t, s.db, prefixCoin); n != 1 {
		t.Errorf("%d spent coins, want 1", n)
	}
}

func countPrefix(t testing.TB, r pebble.Reader, prefix string) int {
	t.Helper()
	n := 0
	scan(t, r, prefix, func(k, v []byte) { n++ })
	return n
}

func scan(t testing.TB, r pebble.Reader, prefix string, fn func(k, v []byte)) {
	t.Helper()
	p := []byte(prefix)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		fn(it.Key()[len(p):], it.Value())
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
}

func TestWithdrawRequestConflict(t *testing.T) {
	s := mustOpen(t, vfs.NewMem())
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
	if _, err := s.Withdraw(bg, other); !errors.Is(err, ErrRequestConflict) {
		t.Errorf("replay for another account = %v, want ErrRequestConflict", err)
	}
	other = op
	other.Amount = 11
	if _, err := s.Withdraw(bg, other); !errors.Is(err, ErrRequestConflict) {
		t.Errorf("replay for another amount = %v, want ErrRequestConflict", err)
	}
}

// TestCloseInFlight closes the store under load: every call either fails
// with ErrClosed, or succeeded and is durable.
func TestCloseInFlight(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs)
	c := openAccount(t, s, "a", false)
	var (
		wg      sync.WaitGroup
		applied atomic.Int64
	)
	for i := range 50 {
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
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = mustOpen(t, fs)
	defer s.Close()
	a, err := s.Account(bg, c)
	if err != nil {
		t.Fatal(err)
	}
	if a.Balance != applied.Load() {
		t.Errorf("balance %d after close, %d credits acknowledged", a.Balance, applied.Load())
	}
}

// TestCrash runs random operations from several goroutines against a store
// on a crashable file system, takes crash images at random moments, and
// checks each image: nothing acknowledged before the crash is lost, and the
// ledger is consistent.
func TestCrash(t *testing.T) {
	crashes := 20
	if testing.Short() {
		crashes = 5
	}
	fs := vfs.NewCrashableMem()
	s := mustOpen(t, fs)
	const customers, merchants, workers, coinPool = 5, 3, 6, 4000
	var cs, ms []uint64
	for i := range customers {
		cs = append(cs, openAccount(t, s, fmt.Sprint("customer ", i), false))
	}
	for i := range merchants {
		ms = append(ms, openAccount(t, s, fmt.Sprint("merchant ", i), true))
	}

	var (
		log  ackLog
		gate sync.RWMutex // held shared by each operation, exclusively while checking an image
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	// step runs one random operation and logs it if acknowledged.
	step := func(rng *rand.Rand, tag string) error {
		gate.RLock()
		defer gate.RUnlock()
		switch rng.IntN(3) {
		case 0:
			op := bank.CreditOp{Account: cs[rng.IntN(len(cs))], Amount: 1 + rng.Int64N(1000), Reference: "ref " + tag, Time: epoch}
			if _, err := s.Credit(bg, op); err != nil {
				return fmt.Errorf("Credit: %w", err)
			}
			log.add(func() { log.credits = append(log.credits, op) })
		case 1:
			op := bank.WithdrawOp{RequestHash: hashOf("w %s", tag), Account: cs[rng.IntN(len(cs))], Amount: 1 + rng.Int64N(700), BlindSigs: [][]byte{[]byte("sig " + tag)}, Time: epoch}
			sigs, err := s.Withdraw(bg, op)
			if errors.Is(err, bank.ErrInsufficientFunds) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("Withdraw: %w", err)
			}
			log.add(func() { log.withdraws = append(log.withdraws, ackWithdraw{op, sigs}) })
		case 2:
			op := bank.DepositOp{PaymentHash: hashOf("p %s", tag), Merchant: ms[rng.IntN(len(ms))], Amount: 1 + rng.Int64N(300), Receipt: []byte("receipt " + tag), Time: epoch}
			for _, k := range rng.Perm(coinPool)[:1+rng.IntN(4)] {
				op.Coins = append(op.Coins, bank.SpentCoin{ID: hashOf("coin %d", k), Permission: []byte("perm " + tag)})
			}
			receipt, err := s.Deposit(bg, op)
			var se *bank.SpentError
			if errors.As(err, &se) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("Deposit: %w", err)
			}
			log.add(func() { log.deposits = append(log.deposits, ackDeposit{op, receipt}) })
		}
		return nil
	}
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := step(rng, fmt.Sprintf("%d/%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}

	// Crash after a random number of further acknowledged operations, while
	// the workers keep going, so crashes fall amid group commits.
	rng := rand.New(rand.NewPCG(1, 2))
	target := 0
	for n := range crashes {
		target += 20 + rng.IntN(80)
		for log.len() < target && !t.Failed() {
			time.Sleep(100 * time.Microsecond)
		}
		acked := log.snapshot() // everything acknowledged before the crash
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng})
		t.Logf("crash %d: %d credits, %d withdraws, %d deposits acknowledged", n, len(acked.credits), len(acked.withdraws), len(acked.deposits))
		// Pause the workers while checking, so the run stays short.
		gate.Lock()
		checkCrashImage(t, crashed, acked, rng)
		gate.Unlock()
		if t.Failed() {
			break
		}
	}
	close(stop)
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

type ackWithdraw struct {
	op   bank.WithdrawOp
	sigs [][]byte
}

type ackDeposit struct {
	op      bank.DepositOp
	receipt []byte
}

// ackLog records operations that returned success. Slices only grow, so a
// snapshot can share their backing arrays.
type ackLog struct {
	mu        sync.Mutex
	credits   []bank.CreditOp
	withdraws []ackWithdraw
	deposits  []ackDeposit
}

func (l *ackLog) add(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn()
}

func (l *ackLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.credits) + len(l.withdraws) + len(l.deposits)
}

func (l *ackLog) snapshot() *ackLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	return &ackLog{credits: l.credits, withdraws: l.withdraws, deposits: l.deposits}
}

// sample returns the indexes of up to n random elements of a slice of
// length total, always including the last n/2 (the ones most at risk).
func sample(rng *rand.Rand, total, n int) []int {
	if total <= n {
		out := make([]int, total)
		for i := range out {
			out[i] = i
		}
		return out
	}
	var out []int
	for i := total - n/2; i < total; i++ {
		out = append(out, i)
	}
	for range n - n/2 {
		out = append(out, rng.IntN(total-n/2))
	}
	return out
}

func checkCrashImage(t *testing.T, fs vfs.FS, acked *ackLog, rng *rand.Rand) {
	t.Helper()
	s, err := Open("bank", Options{Logger: quiet, FS: fs})
	if err != nil {
		t.Fatalf("open crash image: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("close crash image: %v", err)
		}
	}()
	checkConsistent(t, s)
	before, err := s.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}

	// Acknowledged operations survived: every one is recorded...
	for _, op := range acked.credits {
		v, closer, err := s.db.Get(bytesKey(prefixRef, []byte(op.Reference)))
		if err != nil {
			t.Fatalf("acknowledged credit %q lost: %v", op.Reference, err)
		}
		r, err := decodeRef(v)
		closer.Close()
		if err != nil || r.Account != op.Account || r.Amount != op.Amount {
			t.Fatalf("acknowledged credit %q: record %+v, %v", op.Reference, r, err)
		}
	}
	for _, w := range acked.withdraws {
		v, closer, err := s.db.Get(hashKey(prefixWithdraw, w.op.RequestHash))
		if err != nil {
			t.Fatalf("acknowledged withdraw %x lost: %v", w.op.RequestHash[:4], err)
		}
		r, err := decodeWithdraw(v)
		closer.Close()
		if err != nil || !slices.EqualFunc(r.Sigs, w.sigs, bytes.Equal) {
			t.Fatalf("acknowledged withdraw %x: record %+v, %v", w.op.RequestHash[:4], r, err)
		}
	}
	for _, d := range acked.deposits {
		v, closer, err := s.db.Get(hashKey(prefixDeposit, d.op.PaymentHash))
		if err != nil {
			t.Fatalf("acknowledged deposit %x lost: %v", d.op.PaymentHash[:4], err)
		}
		r, err := decodeDeposit(v)
		closer.Close()
		if err != nil || !bytes.Equal(r.Receipt, d.receipt) {
			t.Fatalf("acknowledged deposit %x: record %+v, %v", d.op.PaymentHash[:4], r, err)
		}
	}
	t.Logf("image holds %d credits, %d withdraws, %d deposits", countPrefix(t, s.db, prefixRef), countPrefix(t, s.db, prefixWithdraw), countPrefix(t, s.db, prefixDeposit))

	// ...and a sample replays, through the API, to its first answer.
	for _, i := range sample(rng, len(acked.credits), 30) {
		op := acked.credits[i]
		other := op
		other.Amount++
		if _, err := s.Credit(bg, other); !errors.Is(err, bank.ErrReferenceConflict) {
			t.Errorf("acknowledged credit %q lost: conflicting replay = %v", op.Reference, err)
		}
	}
	for _, i := range sample(rng, len(acked.withdraws), 30) {
		w := acked.withdraws[i]
		op := w.op
		op.BlindSigs = [][]byte{[]byte("fresh sig")}
		if sigs, err := s.Withdraw(bg, op); err != nil || !slices.EqualFunc(sigs, w.sigs, bytes.Equal) {
			t.Errorf("acknowledged withdraw %x: replay = %q, %v; want %q", op.RequestHash[:4], sigs, err, w.sigs)
		}
	}
	for _, i := range sample(rng, len(acked.deposits), 30) {
		d := acked.deposits[i]
		op := d.op
		op.Receipt = []byte("fresh receipt")
		if r, err := s.Deposit(bg, op); err != nil || !bytes.Equal(r, d.receipt) {
			t.Errorf("acknowledged deposit %x: replay = %q, %v; want %q", op.PaymentHash[:4], r, err, d.receipt)
		}
	}
	after, err := s.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}
	if !mapsEqual(before, after) {
		t.Errorf("replays moved money: %v → %v", before, after)
	}
}

// checkConsistent checks a store's records against its ledger: balances sum
// to zero, each account's postings add up to its balance, every spent coin
// belongs to exactly one deposit, and the system accounts equal the totals
// of the withdraw, deposit and credit records.
func checkConsistent(t *testing.T, s *Store) {
	t.Helper()
	totals, err := s.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for id, bal := range totals {
		sum += bal
		hist, err := s.History(bg, id, math.MaxInt)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for i, p := range hist {
			total += p.Amount
			if i+1 < len(hist) && (hist[i+1].Balance+p.Amount != p.Balance || hist[i+1].Seq+1 != p.Seq) {
				t.Errorf("account %d: posting %d does not follow posting %d", id, p.Seq, hist[i+1].Seq)
			}
		}
		if total != bal || (len(hist) > 0 && hist[0].Balance != bal) {
			t.Errorf("account %d: balance %d, postings sum to %d", id, bal, total)
		}
	}
	if sum != 0 {
		t.Errorf("balances sum to %d", sum)
	}

	// Spent coins and deposits point at each other, one deposit per coin.
	coinOwner := map[ecash.Hash]ecash.Hash{}
	var deposited, withdrawn int64
	perMerchant := map[uint64]int64{}
	scan(t, s.db, prefixDeposit, func(k, v []byte) {
		var ph ecash.Hash
		copy(ph[:], k)
		d, err := decodeDeposit(v)
		if err != nil {
			t.Fatal(err)
		}
		deposited += d.Amount
		perMerchant[d.Merchant] += d.Amount
		for _, c := range d.Coins {
			if prev, ok := coinOwner[c]; ok {
				t.Errorf("coin %x in deposits %x and %x", c[:4], prev[:4], ph[:4])
			}
			coinOwner[c] = ph
		}
	})
	coins := 0
	scan(t, s.db, prefixCoin, func(k, v []byte) {
		coins++
		var id ecash.Hash
		copy(id[:], k)
		c, err := decodeCoin(v)
		if err != nil {
			t.Fatal(err)
		}
		if owner, ok := coinOwner[id]; !ok || owner != c.Payment {
			t.Errorf("spent coin %x: payment %x, deposit record says %x (%v)", id[:4], c.Payment[:4], owner[:4], ok)
		}
	})
	if coins != len(coinOwner) {
		t.Errorf("%d spent coins, %d coins in deposits", coins, len(coinOwner))
	}
	perCustomer := map[uint64]int64{}
	scan(t, s.db, prefixWithdraw, func(k, v []byte) {
		w, err := decodeWithdraw(v)
		if err != nil {
			t.Fatal(err)
		}
		withdrawn += w.Amount
		perCustomer[w.Account] -= w.Amount
	})
	var credited int64
	scan(t, s.db, prefixRef, func(k, v []byte) {
		r, err := decodeRef(v)
		if err != nil {
			t.Fatal(err)
		}
		credited += r.Amount
		perCustomer[r.Account] += r.Amount
	})
	// In TestCrash every credit has a reference, every customer only
	// credits and withdraws, and every merchant only receives deposits.
	if got := totals[bank.AccountOutstanding]; got != withdrawn-deposited {
		t.Errorf("outstanding %d, withdraw records %d − deposit records %d", got, withdrawn, deposited)
	}
	if got := totals[bank.AccountFunding]; got != -credited {
		t.Errorf("funding %d, reference records %d", got, credited)
	}
	for id, want := range perMerchant {
		if totals[id] != want {
			t.Errorf("merchant %d balance %d, deposit records %d", id, totals[id], want)
		}
	}
	for id, want := range perCustomer {
		if totals[id] != want {
			t.Errorf("customer %d balance %d, credit − withdraw records %d", id, totals[id], want)
		}
	}
}

// BenchmarkDeposit measures parallel deposits of four fresh coins each, on
// an in-memory file system and on disk (real fsync).
func BenchmarkDeposit(b *testing.B) {
	for _, bc := range []struct {
		name string
		fs   func(b *testing.B) (vfs.FS, string)
	}{
		{"mem", func(b *testing.B) (vfs.FS, string) { return vfs.NewMem(), "bank" }},
		{"disk", func(b *testing.B) (vfs.FS, string) { return vfs.Default, b.TempDir() }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			fs, dir := bc.fs(b)
			s, err := Open(dir, Options{Logger: quiet, FS: fs})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			m := openAccount(b, s, "shop", true)
			var seq atomic.Uint64
			b.SetParallelism(16)
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
		})
	}
}

func TestDuplicateCoinError(t *testing.T) {
	s := mustOpen(t, vfs.NewMem())
	defer s.Close()
	m := openAccount(t, s, "shop", true)
	c := bank.SpentCoin{ID: hashOf("c"), Permission: []byte{1}}
	_, err := s.Deposit(bg, bank.DepositOp{PaymentHash: hashOf("p"), Merchant: m, Amount: 2, Coins: []bank.SpentCoin{c, c}, Receipt: []byte{1}, Time: epoch})
	if !errors.Is(err, bank.ErrDuplicateCoin) || !errors.Is(err, ErrInvalid) {
		t.Errorf("Deposit(coin twice) = %v, want ErrDuplicateCoin and ErrInvalid", err)
	}
}

// TestContext checks the context rule: an op whose context ends before the
// committer picks it up is not applied; an op already picked up completes
// and reports its commit.
func TestContext(t *testing.T) {
	s := mustOpen(t, vfs.NewMem())
	defer s.Close()
	c := openAccount(t, s, "a", false)

	// Hold the committer inside an op that has been picked up.
	started, release := make(chan struct{}), make(chan struct{})
	heldCtx, cancelHeld := context.WithCancel(bg)
	held := make(chan error, 1)
	go func() {
		held <- s.submit(heldCtx, func(t *txn) error {
			close(started)
			<-release
			t.set([]byte("x/held"), []byte("done"))
			return nil
		})
	}()
	<-started

	// A credit waiting behind it is canceled before pick-up.
	ctx, cancel := context.WithCancel(bg)
	waiting := make(chan error, 1)
	go func() {
		_, err := s.Credit(ctx, bank.CreditOp{Account: c, Amount: 5, Time: epoch})
		waiting <- err
	}()
	time.Sleep(10 * time.Millisecond) // let it block on the committer
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled waiting Credit = %v, want context.Canceled", err)
	}

	// The held op's context ends too, but it was picked up: it completes.
	cancelHeld()
	close(release)
	if err := <-held; err != nil {
		t.Errorf("picked-up op = %v, want nil", err)
	}
	if v, closer, err := s.db.Get([]byte("x/held")); err != nil || string(v) != "done" {
		t.Errorf("picked-up op's write: %q, %v", v, err)
	} else {
		closer.Close()
	}
	if a, err := s.Account(bg, c); err != nil || a.Balance != 0 {
		t.Errorf("balance %d, %v; the canceled credit was applied", a.Balance, err)
	}
}

// TestCacheSize checks that Options.CacheSize sizes Pebble's block cache:
// after reading 24 MiB of tables, a 16 MiB cache holds at most 16 MiB, and
// the default more. (A cache smaller than the 4 MB memtables, which Pebble
// charges to it, holds nothing at all.)
func TestCacheSize(t *testing.T) {
	if _, err := Open("bank", Options{Logger: quiet, FS: vfs.NewMem(), CacheSize: -1}); err == nil {
		t.Fatal("CacheSize -1 accepted")
	}
	const entries, size = 6 << 10, 4 << 10 // 24 MiB, one value a block
	for _, tc := range []struct {
		cacheSize int64
		min, max  int64
	}{
		{16 << 20, 1, 16 << 20},
		{0, 16<<20 + 1, DefaultCacheSize},
	} {
		s, err := Open("bank", Options{Logger: quiet, FS: vfs.NewMem(), CacheSize: tc.cacheSize})
		if err != nil {
			t.Fatal(err)
		}
		// Keys under a prefix the store does not use, written and read
		// through Pebble directly.
		key := func(i int) []byte { return fmt.Appendf(nil, "\xfftest-cache-%06d", i) }
		b := s.db.NewBatch()
		v := make([]byte, size)
		r := rand.NewChaCha8([32]byte{})
		for i := range entries {
			r.Read(v) // incompressible
			if err := b.Set(key(i), v, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
		for i := range entries {
			_, closer, err := s.db.Get(key(i))
			if err != nil {
				t.Fatal(err)
			}
			closer.Close()
		}
		got := s.db.Metrics().BlockCache.Size
		if got < tc.min || got > tc.max {
			t.Errorf("CacheSize %d: block cache holds %d bytes, want %d to %d", tc.cacheSize, got, tc.min, tc.max)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGetUsesL6Filters checks that Get answers an absent key from the bloom
// filter of the last level, where Pebble's own Get reads a data block, and
// that it reads present keys, a batch's pending writes and deletions right.
func TestGetUsesL6Filters(t *testing.T) {
	db, err := OpenDB("db", DBOptions{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := func(i int) []byte { return fmt.Appendf(nil, "c/%08d", i) }
	b := db.NewBatch()
	for i := 0; i < 20000; i += 2 { // even keys present, odd ones absent
		if err := b.Set(key(i), key(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(context.Background(), []byte("c/"), []byte("c0"), false); err != nil {
		t.Fatal(err)
	}
	m := db.Metrics()
	if m.Levels[6].TablesCount == 0 {
		t.Fatalf("no table in L6 after a full compaction:\n%s", m)
	}
	for l := 0; l < 6; l++ {
		if n := m.Levels[l].TablesCount; n != 0 {
			t.Fatalf("L%d holds %d tables after a full compaction", l, n)
		}
	}

	// hits counts the lookups of absent keys that the filters answered.
	hits := func(get func(k []byte) bool) int64 {
		before := db.Metrics().Filter.Hits
		for i := 1; i < 2000; i += 2 {
			if get(key(i)) {
				t.Fatalf("absent key %s found", key(i))
			}
		}
		return db.Metrics().Filter.Hits - before
	}
	pebbleGet := func(k []byte) bool {
		_, closer, err := db.Get(k)
		if err == nil {
			closer.Close()
		}
		return err == nil
	}
	ourGet := func(k []byte) bool {
		_, ok, err := Get(db, k)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// The premise: Pebble's Get skips the L6 filter. If a Pebble upgrade
	// changes that, Get's iterator is no longer needed.
	if h := hits(pebbleGet); h != 0 {
		t.Errorf("pebble's Get: %d filter hits in L6, want 0", h)
	}
	// 1,000 absent keys at a false-positive rate of 1% (10 bits a key).
	if h := hits(ourGet); h < 950 {
		t.Errorf("Get: %d of 1000 absent keys answered by the filter, want ≥ 950", h)
	}

	// Values: present, absent, and a batch's writes over the database.
	ib := db.NewIndexedBatch()
	defer ib.Close()
	if err := ib.Set(key(1), []byte("new"), nil); err != nil {
		t.Fatal(err)
	}
	if err := ib.Delete(key(2), nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		r    pebble.Reader
		k    []byte
		want string
		ok   bool
	}{
		{db, key(4), string(key(4)), true},
		{db, key(5), "", false},
		{db, key(1), "", false},
		{db, key(2), string(key(2)), true},
		{ib, key(1), "new", true},
		{ib, key(2), "", false},
		{ib, key(4), string(key(4)), true},
		{db, []byte("c/0000000"), "", false}, // a prefix of present keys
		{db, append(key(4), 0), "", false},   // an extension of one
	} {
		v, ok, err := Get(tc.r, tc.k)
		if err != nil || ok != tc.ok || string(v) != tc.want {
			t.Errorf("Get(%q) = %q, %v, %v; want %q, %v", tc.k, v, ok, err, tc.want, tc.ok)
		}
	}
}

// TestShortenRamp writes 12 MiB through the commit loop of a fresh store.
// Pebble alone would hold every memtable of its ramp unflushed (256 KiB
// to 4 MiB, 7.75 MiB in all, under its 16 MiB threshold): six memtables
// for each lookup to seek, and no flush. shortenRamp must have flushed them
// as they queued, leaving the mutable memtable and at most two that filled
// since it last looked.
func TestShortenRamp(t *testing.T) {
	s, err := Open("bank", Options{Logger: quiet, FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v := make([]byte, 64<<10)
	r := rand.NewChaCha8([32]byte{})
	for i := range 192 {
		r.Read(v) // incompressible
		err := s.submit(context.Background(), func(t *txn) error {
			t.set(fmt.Appendf(nil, "\xfftest-ramp-%06d", i), bytes.Clone(v))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var m *pebble.Metrics
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m = s.db.Metrics(); m.Flush.NumInProgress == 0 || time.Now().After(deadline) {
			break
		}
	}
	if m.Flush.Count < 2 || m.MemTable.Count > 3 {
		t.Fatalf("after 12 MiB: %d flushes, %d memtables; want flushes as the ramp queued memtables, and at most 3 left", m.Flush.Count, m.MemTable.Count)
	}
	// A lookup still finds what the flushes moved to L0.
	if _, ok, err := Get(s.db, []byte("\xfftest-ramp-000000")); err != nil || !ok {
		t.Fatalf("first key: %v, %v", ok, err)
	}
}

// TestLogIndexRemembered checks that the index LogIndex answers from
// memory after a commit is the one the store holds, and that a refused
// op's ref is neither remembered nor stored.
func TestLogIndexRemembered(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs)
	c := openAccount(t, s, "alice", false)
	if _, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 1000, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	withdraw := func(tag string, amount int64) (ecash.Hash, error) {
		h := ecash.HashOf([]byte(tag))
		_, err := s.Withdraw(bg, bank.WithdrawOp{
			RequestHash: h, Account: c, Amount: amount, BlindSigs: [][]byte{[]byte("sig " + tag)}, Time: epoch,
			Log: auditlog.Withdraw{Account: c, Amount: ecash.Amount{Currency: "EUR", Value: uint64(amount)}, RequestHash: h,
				AccountSig: make([]byte, 64), Issued: []auditlog.DenomCount{{Denom: ecash.HashOf([]byte("d")), Value: ecash.Amount{Currency: "EUR", Value: uint64(amount)}, Count: 1}}},
		})
		return h, err
	}
	var refs []ecash.Hash
	for i := range 3 {
		h, err := withdraw(fmt.Sprint("w", i), 100)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, h)
	}
	poor, err := withdraw("poor", 5000)
	if !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Fatalf("withdraw beyond the balance: %v", err)
	}
	remembered := map[ecash.Hash]int64{}
	for _, h := range refs {
		i, ok := s.refs.Get(h)
		if !ok {
			t.Fatalf("ref %x not remembered after its commit", h[:4])
		}
		remembered[h] = i
	}
	if _, ok := s.refs.Get(poor); ok {
		t.Fatal("a refused withdrawal's ref is remembered")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LogIndex(bg, refs[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("LogIndex after Close = %v, want ErrClosed", err)
	}
	s = mustOpen(t, fs)
	defer s.Close()
	for h, want := range remembered {
		got, found, err := s.LogIndex(bg, h)
		if err != nil || !found || got != want {
			t.Errorf("stored index of %x = %d, %v, %v; remembered %d", h[:4], got, found, err, want)
		}
	}
	if _, found, err := s.LogIndex(bg, poor); found || err != nil {
		t.Errorf("refused withdrawal: found %v, %v", found, err)
	}
}

// TestLogIndexGroupRollback: an op that logs under a ref and then fails,
// in a group with one that succeeds, leaves its ref neither remembered
// nor stored, and the other's ref at the right index.
func TestLogIndexGroupRollback(t *testing.T) {
	s, groups := openObserved(t)
	credit := func(tag string) auditlog.Op {
		return auditlog.Credit{Account: FirstUserAccount, Amount: ecash.Amount{Currency: "EUR", Value: 1}, Reference: auditlog.OptionalHash(tag)}
	}
	refused := errors.New("refused after logging")
	for attempt := range 5 {
		ok, bad := hashOf("ok %d", attempt), hashOf("bad %d", attempt)
		errOK, errBad, shared := twoInOneGroup(s, groups, attempt, func(t *txn) error {
			return t.appendLog(credit(fmt.Sprint("ok", attempt)), epoch, &ok)
		}, func(t *txn) error {
			if err := t.appendLog(credit(fmt.Sprint("bad", attempt)), epoch, &bad); err != nil {
				return err
			}
			return refused
		})
		if errOK != nil || !errors.Is(errBad, refused) {
			t.Fatalf("ops returned %v and %v", errOK, errBad)
		}
		if !shared {
			continue // not one group: the rollback was not exercised
		}
		if _, found := s.refs.Get(bad); found {
			t.Fatal("the failed op's ref is remembered")
		}
		if _, found, err := s.LogIndex(bg, bad); found || err != nil {
			t.Fatalf("the failed op's ref is stored: %v, %v", found, err)
		}
		size, err := s.LogSize(bg)
		if err != nil {
			t.Fatal(err)
		}
		got, found := s.refs.Get(ok)
		if !found || got != size-1 {
			t.Fatalf("the logged op's index: %d, %v; want %d, the last entry", got, found, size-1)
		}
		return
	}
	t.Fatal("the two ops never shared a commit group")
}

// TestGroupReadsEarlierWrites: an op reads what an earlier op of its
// commit group wrote (a coin the first spent is spent for the second),
// though the first op's lookups went through an iterator of their own.
func TestGroupReadsEarlierWrites(t *testing.T) {
	s, groups := openObserved(t)
	for attempt := range 5 {
		key := []byte(fmt.Sprintf("test/written %d", attempt))
		var seen []byte
		var found bool
		errFirst, errSecond, shared := twoInOneGroup(s, groups, attempt, func(t *txn) error {
			if _, ok, err := t.get(key); err != nil || ok {
				return fmt.Errorf("before the write: found %v, %v", ok, err)
			}
			t.set(key, []byte("first"))
			return nil
		}, func(t *txn) (err error) {
			seen, found, err = t.get(key)
			return err
		})
		if errFirst != nil || errSecond != nil {
			t.Fatalf("ops returned %v and %v", errFirst, errSecond)
		}
		if !shared {
			continue
		}
		if !found || string(seen) != "first" {
			t.Fatalf("the second op of the group read %q, %v; want the first's write", seen, found)
		}
		return
	}
	t.Fatal("the two ops never shared a commit group")
}

// openObserved opens a store in memory that reports each commit group's
// size on the channel it returns.
func openObserved(t *testing.T) (*Store, chan int) {
	t.Helper()
	groups := make(chan int, 64)
	s, err := Open("bank", Options{Logger: quiet, FS: vfs.NewMem(), ObserveCommit: func(ops int, _ time.Duration) { groups <- ops }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, groups
}

// twoInOneGroup submits first and then second, trying to put both in one
// commit group: the committer takes first up, which waits while second
// is sent and the group fills. Nothing says when the second goroutine
// reaches its send, so each attempt waits longer; shared says whether the
// two did share a group.
func twoInOneGroup(s *Store, groups <-chan int, attempt int, first, second func(*txn) error) (err1, err2 error, shared bool) {
	started, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		err1 = s.submit(bg, func(t *txn) error {
			close(started)
			<-release
			return first(t)
		})
	})
	<-started
	wg.Go(func() { err2 = s.submit(bg, second) })
	time.Sleep(time.Duration(20<<attempt) * time.Millisecond)
	close(release)
	wg.Wait()
	if n := <-groups; n != 2 {
		for len(groups) > 0 {
			<-groups
		}
		return err1, err2, false
	}
	return err1, err2, true
}

// TestLogIndexCancelled: the remembered path of LogIndex fails a done
// context as the read does.
func TestLogIndexCancelled(t *testing.T) {
	s := mustOpen(t, vfs.NewMem())
	defer s.Close()
	ref := hashOf("ref")
	if err := s.submit(bg, func(t *txn) error {
		return t.appendLog(auditlog.Credit{Account: FirstUserAccount, Amount: ecash.Amount{Currency: "EUR", Value: 1}}, epoch, &ref)
	}); err != nil {
		t.Fatal(err)
	}
	if _, found := s.refs.Get(ref); !found {
		t.Fatal("ref not remembered")
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, _, err := s.LogIndex(ctx, ref); !errors.Is(err, context.Canceled) {
		t.Fatalf("LogIndex with a cancelled context = %v", err)
	}
}

// TestAuthFailuresOfEarlierDaysDropped: the first failure counted on a day
// drops every count of the days before the day before, any account's,
// however many (one range deletion); a count dated before 1970 is refused,
// and Unlock walks the days the store holds and ends.
func TestAuthFailuresOfEarlierDaysDropped(t *testing.T) {
	s := mustOpen(t, vfs.NewMem())
	defer s.Close()
	a, b := openAccount(t, s, "a", false), openAccount(t, s, "b", false)
	for i := range 1000 {
		if _, err := s.AuthFailure(bg, a, fmt.Sprintf("192.0.2.%d/%d", i%256, i), epoch); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int { return authCounts(t, s, math.MaxInt64) }
	if n := count(); n != 1000 {
		t.Fatalf("%d counts stored, want 1000", n)
	}
	if _, err := s.AuthFailure(bg, b, "198.51.100.1", epoch.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1001 {
		t.Fatalf("%d counts after the next day's first failure, want the day before's 1000 and its own 1", n)
	}
	if _, err := s.AuthFailure(bg, b, "198.51.100.1", epoch.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d counts after the first failure two days on, want the day before's 1 and its own 1", n)
	}
	if _, err := s.AuthFailure(bg, a, "198.51.100.1", time.Unix(-100_000, 0)); !errors.Is(err, bank.ErrInvalidOp) {
		t.Fatalf("a failure dated before 1970: %v, want ErrInvalidOp", err)
	}
	for _, id := range []uint64{a, b} {
		if err := s.Unlock(bg, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("%d counts after Unlock, want none", n)
	}
}

// authCounts counts the failed-authentication records of days before
// before.
func authCounts(t *testing.T, s *Store, before int64) (n int) {
	t.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixAuth), UpperBound: authDay(before)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// TestAuthSweepAfterClockStep: a failure dated a year ahead (a clock
// stepped forward, then corrected) does not stop the sweeps of the days
// after it; and a failure that fails does not count as its day's sweep.
func TestAuthSweepAfterClockStep(t *testing.T) {
	for _, ahead := range []bool{false, true} {
		t.Run(fmt.Sprintf("a failure a year ahead first: %v", ahead), func(t *testing.T) {
			s := mustOpen(t, vfs.NewMem())
			defer s.Close()
			a, b := openAccount(t, s, "a", false), openAccount(t, s, "b", false)
			if ahead {
				if _, err := s.AuthFailure(bg, b, "203.0.113.9", epoch.Add(365*24*time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 100 {
				if _, err := s.AuthFailure(bg, a, fmt.Sprintf("192.0.2.%d", i), epoch); err != nil {
					t.Fatal(err)
				}
			}
			next := epoch.Add(48 * time.Hour) // epoch's counts are dropped on the day after the next
			// A count that does not decode fails the day's first failure.
			if err := s.db.Set(authKey(a, bank.Day(next), "x"), []byte("bad"), pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AuthFailure(bg, a, "x", next); err == nil {
				t.Fatal("a corrupt count accepted")
			}
			if n := authCounts(t, s, bank.AuthKeptFrom(next)); n != 100 {
				t.Fatalf("%d counts of two days before after a failed failure, want their 100 (nothing applied)", n)
			}
			if _, err := s.AuthFailure(bg, b, "198.51.100.1", next); err != nil {
				t.Fatal(err)
			}
			if n := authCounts(t, s, bank.AuthKeptFrom(next)); n != 0 {
				t.Fatalf("%d counts of two days before left after the day's first failure", n)
			}
		})
	}
}
