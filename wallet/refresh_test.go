package wallet_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// scheduleKeys makes CS keys of 0.01 to 1.28 on a schedule: each key issues
// coins for 10 hours, the next starts 2 hours before that ends, coins are
// accepted 20 hours after their key stops issuing; made ahead until
// start+until. So period 1 issues [0h, 10h) and takes deposits until 30h;
// period 2 issues [8h, 18h) and takes deposits until 38h.
func scheduleKeys(t *testing.T, start time.Time, until time.Duration) *bank.Keys {
	t.Helper()
	var specs []bank.DenomSpec
	for v := uint64(1); v <= 128; v *= 2 {
		specs = append(specs, bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: ecash.CipherCS})
	}
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs, WithdrawPeriod: 10 * time.Hour, Overlap: 2 * time.Hour,
		DepositPeriod: 30 * time.Hour, Until: start.Add(until)}, start, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// periodOf says which period (1, 2, ...) a coin's key belongs to.
func periodOf(t *testing.T, ks *ecash.KeySet, start time.Time, c ecash.Coin) int {
	t.Helper()
	d, err := ks.Denomination(c.Denom)
	if err != nil {
		t.Fatal(err)
	}
	return 1 + int(d.WithdrawStart.Sub(start.Truncate(time.Second))/(8*time.Hour))
}

func coinIDs(cs []ecash.Coin) []ecash.Hash {
	ids := make([]ecash.Hash, len(cs))
	for i, c := range cs {
		ids[i] = c.ID()
	}
	return ids
}

// TestRotationAndRefreshCoins: keys rotate by the clock alone on a bank
// started once; the wallet withdraws one key per value during the overlap;
// after period 1 stops issuing, RefreshCoins swaps its coins for period-2
// coins before their deposit deadline; the old coins are spent at the bank,
// the value is unchanged, and the new coins pay after period 1's deadline.
func TestRotationAndRefreshCoins(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	start := clk.now()
	k := scheduleKeys(t, start, 15*time.Hour)
	f := newFixtureWith(t, k, clk.now)
	ks, _ := f.bank.KeySet()
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	acct := f.fund(t, w, "EUR:10.00")

	clk.add(time.Hour)
	// 2.55 = one coin of each value.
	old, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:2.55"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range old {
		if p := periodOf(t, ks, start, c); p != 1 {
			t.Fatalf("at 1h a coin of period %d", p)
		}
	}
	// In the overlap both periods issue; the wallet takes the newer, one
	// key per value: as many coins as before.
	clk.add(8 * time.Hour)
	newer, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:2.55"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(newer) != len(old) {
		t.Fatalf("%d coins at 9h, %d at 1h", len(newer), len(old))
	}
	for _, c := range newer {
		if p := periodOf(t, ks, start, c); p != 2 {
			t.Fatalf("at 9h a coin of period %d", p)
		}
	}

	// 12h: period 1 issues no more; its coins are accepted for 18 hours.
	clk.add(3 * time.Hour)
	res, err := w.RefreshCoins(ctx, f.bankc, time.Hour)
	if err != nil || !res.Renewed.IsZero() || len(res.Coins) != 0 {
		t.Fatalf("with a margin of an hour: %v, %v", res, err)
	}
	res, err = w.RefreshCoins(ctx, f.bankc, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if res.Renewed.String() != "EUR:2.55" || len(res.Errors) != 0 || !res.Stranded.IsZero() {
		t.Fatalf("refresh: %v, errors %v", res, res.Errors)
	}
	var sum uint64
	for _, c := range res.Coins {
		if p := periodOf(t, ks, start, c); p != 2 {
			t.Fatalf("refreshed into a coin of period %d", p)
		}
		d, _ := ks.Denomination(c.Denom)
		sum += d.Value.Value
	}
	if sum != 255 {
		t.Fatalf("new coins worth %d, want 255", sum)
	}
	spent, _, _, err := f.bank.CoinsSpent(ctx, coinIDs(old))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range spent {
		if !s {
			t.Fatalf("old coin %d not spent at the bank", i)
		}
	}
	if spent, _, _, _ := f.bank.CoinsSpent(ctx, coinIDs(newer)); spent[0] {
		t.Fatal("a period-2 coin was swapped")
	}
	bal, err := w.Balance()
	if err != nil || bal.Fresh.String() != "EUR:5.10" || !bal.Pending.IsZero() || f.balance(t, acct) != 490 {
		t.Fatalf("after refresh: wallet %v pending %v (%v), account %d", bal.Fresh, bal.Pending, err, f.balance(t, acct))
	}
	f.checkConservation(t, w)
	// Nothing is left to renew.
	if res, err := w.RefreshCoins(ctx, f.bankc, 24*time.Hour); err != nil || !res.Renewed.IsZero() {
		t.Fatalf("second refresh: %v, %v", res, err)
	}

	// 31h: period 1's coins would be worthless now; the wallet's are not.
	clk.add(19 * time.Hour)
	if _, err := w.Return(ctx, f.bankc, ecash.MustParseAmount("EUR:5.10")); err != nil {
		t.Fatal(err)
	}
	if got := f.balance(t, acct); got != 1000 {
		t.Fatalf("account %d after returning everything, want 1000", got)
	}
	f.checkConservation(t, w)
}

// A coin left past its deposit deadline is reported, not swapped.
func TestRefreshCoinsTooLate(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := scheduleKeys(t, clk.now(), 40*time.Hour)
	f := newFixtureWith(t, k, clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:1.00", "EUR:0.03")
	clk.add(31 * time.Hour)
	res, err := w.RefreshCoins(ctx, f.bankc, 24*time.Hour)
	if err != nil || res.Stranded.String() != "EUR:0.03" || !res.Renewed.IsZero() {
		t.Fatalf("too late: %v, %v", res, err)
	}
}

// twoClocks gives the bank one clock and the wallet another, so that the
// wallet believes a key usable while the bank, which decides, does not.
type twoClocks struct{ bank, wallet atomic.Int64 }

func (c *twoClocks) set(bankAt, walletAt time.Time) {
	c.bank.Store(bankAt.UnixNano())
	c.wallet.Store(walletAt.UnixNano())
}
func (c *twoClocks) bankNow() time.Time   { return time.Unix(0, c.bank.Load()) }
func (c *twoClocks) walletNow() time.Time { return time.Unix(0, c.wallet.Load()) }

// TestWindowEdges: the bank refuses withdrawals just before a key's
// withdraw start and at its withdraw end, and deposits just before its
// start and at its deposit deadline; it accepts them at the start and just
// before the ends.
func TestWindowEdges(t *testing.T) {
	ctx := context.Background()
	var clk twoClocks
	now := time.Now().Truncate(time.Second)
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{{Value: ecash.MustParseAmount("EUR:1.00"), Cipher: ecash.CipherCS}},
		WithdrawPeriod: time.Hour, DepositPeriod: 3 * time.Hour}, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := k.Denoms[0]
	start, wEnd, dEnd := d.WithdrawStart, d.WithdrawEnd, d.DepositEnd
	clk.set(start, start)
	f := newFixtureWith(t, k, clk.bankNow)
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: clk.walletNow})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	acct := f.fund(t, w, "EUR:10.00")
	one := ecash.MustParseAmount("EUR:1.00")
	second := time.Second

	withdraw := func(bankAt, walletAt time.Time, ok bool, balance int64) {
		t.Helper()
		clk.set(bankAt, walletAt)
		_, err := w.Withdraw(ctx, f.bankc, one, nil)
		if ok && err != nil {
			t.Fatalf("withdraw at %v: %v", bankAt.Sub(start), err)
		}
		if !ok && (status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "withdrawable")) {
			t.Fatalf("withdraw at %v: %v, want a refusal (FailedPrecondition)", bankAt.Sub(start), err)
		}
		if got := f.balance(t, acct); got != balance {
			t.Fatalf("withdraw at %v: account %d, want %d", bankAt.Sub(start), got, balance)
		}
	}
	withdraw(start.Add(-second), start, false, 1000)
	withdraw(start, start, true, 900)
	withdraw(start, start, true, 800)
	withdraw(start, start, true, 700)
	withdraw(wEnd.Add(-second), wEnd.Add(-second), true, 600)
	withdraw(wEnd, wEnd.Add(-second), false, 600)
	withdraw(wEnd.Add(time.Hour), wEnd.Add(-second), false, 600)

	// Deposits (a return to the wallet's own account is a deposit).
	deposit := func(bankAt, walletAt time.Time, ok bool, balance int64) {
		t.Helper()
		clk.set(bankAt, walletAt)
		_, err := w.Return(ctx, f.bankc, one)
		if ok && err != nil {
			t.Fatalf("deposit at %v: %v", bankAt.Sub(start), err)
		}
		// The wallet keeps a refused deposit pending until it expires;
		// the bank's refusal is in the error.
		if !ok && (!errors.Is(err, wallet.ErrPending) || !strings.Contains(err.Error(), ecash.ErrDenominationExpired.Error())) {
			t.Fatalf("deposit at %v: %v, want the bank's refusal", bankAt.Sub(start), err)
		}
		if got := f.balance(t, acct); got != balance {
			t.Fatalf("deposit at %v: account %d, want %d", bankAt.Sub(start), got, balance)
		}
	}
	deposit(start.Add(-second), start, false, 600)
	deposit(start, start, true, 700)
	deposit(dEnd, dEnd.Add(-second), false, 700)
	deposit(dEnd.Add(-second), dEnd.Add(-second), true, 800)
	f.checkConservation(t, w)
}

// keysFrom serves a chosen signed key set and counts GetKeys calls; down
// makes GetKeys fail as an unreachable bank would.
type keysFrom struct {
	pb.BankClient
	signed []byte
	calls  atomic.Int32
	down   atomic.Bool
}

func (k *keysFrom) GetKeys(ctx context.Context, in *pb.GetKeysRequest, opts ...grpc.CallOption) (*pb.GetKeysResponse, error) {
	k.calls.Add(1)
	if k.down.Load() {
		return nil, status.Error(codes.Unavailable, "bank down (simulated)")
	}
	if k.signed != nil {
		return &pb.GetKeysResponse{SignedKeyset: k.signed}, nil
	}
	return k.BankClient.GetKeys(ctx, in, opts...)
}

// TestKeySetRefresh: the wallet pins the master key and refuses another
// with a clear error; keeps the newer of two key sets; refreshes a stale
// set, and works from the stored one when the bank cannot be reached for
// the refresh.
func TestKeySetRefresh(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := scheduleKeys(t, clk.now(), 0)
	f := newFixtureWith(t, k, clk.now)
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f.fund(t, w, "EUR:10.00")
	bc := &keysFrom{BankClient: f.bankc}
	first, err := w.RefreshKeys(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}

	// Another bank (another master key) is refused, clearly.
	other := scheduleKeys(t, clk.now(), 0)
	bc.signed = other.KeySet().Encode()
	_, err = w.RefreshKeys(ctx, bc)
	if !errors.Is(err, wallet.ErrMasterKeyChanged) || !strings.Contains(err.Error(), first.BankID().String()) || !strings.Contains(err.Error(), other.BankID().String()) {
		t.Fatalf("another master key: %v", err)
	}
	if ks, err := w.KeySet(); err != nil || ks.BankID() != first.BankID() {
		t.Fatalf("stored after the refusal: %v", err)
	}
	// A key set with a bad signature is refused.
	bad := k.KeySet()
	bad.MasterSig[0] ^= 1
	bc.signed = bad.Encode()
	if _, err := w.RefreshKeys(ctx, bc); !errors.Is(err, ecash.ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}

	// The same bank, extended later (a newer key set), then an older one
	// served again (a replica not yet restarted): the wallet keeps the newer.
	clk.add(time.Minute)
	ext := *k
	ext.Denoms = append([]bank.DenomKey(nil), k.Denoms...)
	if _, err := ext.Extend(bank.Schedule{}, clk.now().Add(20*time.Hour), clk.now(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	bc.signed = ext.KeySet().Encode()
	if ks, err := w.RefreshKeys(ctx, bc); err != nil || !ks.IssuedAt.Equal(ext.IssuedAt) {
		t.Fatalf("newer key set: %v", err)
	}
	bc.signed = k.KeySet().Encode()
	if ks, err := w.RefreshKeys(ctx, bc); err != nil || !ks.IssuedAt.Equal(ext.IssuedAt) || len(ks.Denominations) != len(ext.Denoms) {
		t.Fatalf("an older key set replaced the newer: %v", err)
	}
	// KeySet decodes the stored set once (it held the first set, decoded
	// above), and again only when the stored set changes.
	stored, err := w.KeySet()
	if err != nil || !stored.IssuedAt.Equal(ext.IssuedAt) || len(stored.Denominations) != len(ext.Denoms) {
		t.Fatalf("KeySet after the newer set was stored: %v", err)
	}
	if again, err := w.KeySet(); err != nil || again != stored {
		t.Fatalf("KeySet decoded the unchanged set again: %v", err)
	}

	// Fresh: operations do not ask for the key set; stale: they do once.
	bc.signed = nil
	bc.calls.Store(0)
	clk.add(KeySetMaxAgeForTest - time.Minute)
	if _, err := w.Withdraw(ctx, bc, ecash.MustParseAmount("EUR:0.01"), nil); err != nil {
		t.Fatal(err)
	}
	if n := bc.calls.Load(); n != 0 {
		t.Fatalf("%d key set fetches with a fresh set", n)
	}
	clk.add(time.Minute)
	if _, err := w.Withdraw(ctx, bc, ecash.MustParseAmount("EUR:0.01"), nil); err != nil {
		t.Fatal(err)
	}
	if n := bc.calls.Load(); n != 1 {
		t.Fatalf("%d key set fetches with a stale set, want 1", n)
	}
	// Stale, and the bank's key service down: the stored set serves.
	clk.add(2 * KeySetMaxAgeForTest)
	bc.down.Store(true)
	if _, err := w.Withdraw(ctx, bc, ecash.MustParseAmount("EUR:0.01"), nil); err != nil {
		t.Fatalf("withdraw with the key service down: %v", err)
	}
}

// KeySetMaxAgeForTest is wallet.KeySetMaxAge.
const KeySetMaxAgeForTest = wallet.KeySetMaxAge

// TestBalanceCountsExpiredApart: coins past their denomination's deposit
// deadline are worth nothing (the bank takes them neither in a payment nor
// in a swap, and RefreshCoins reports them stranded): Balance counts them
// in Expired, not in Fresh, and the bank's outstanding e-cash, which still
// counts them, is what the wallet holds fresh, pending or expired.
func TestBalanceCountsExpiredApart(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := scheduleKeys(t, clk.now(), 40*time.Hour)
	f := newFixtureWith(t, k, clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:1.00", "EUR:0.03")
	clk.add(31 * time.Hour)
	res, err := w.RefreshCoins(ctx, f.bankc, 24*time.Hour)
	if err != nil || res.Stranded.String() != "EUR:0.03" {
		t.Fatalf("refresh: %v, %v", res, err)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if !bal.Fresh.IsZero() || len(bal.Coins) != 0 || bal.Expired.String() != "EUR:0.03" || bal.ExpiredCoins != 2 {
		t.Fatalf("balance: fresh %s (%v), expired %s (%d coins); want all EUR:0.03, past its deposit deadline and reported stranded, expired", bal.Fresh, bal.Coins, bal.Expired, bal.ExpiredCoins)
	}
	f.checkConservation(t, w)
}
