// Package storetest is the conformance suite for implementations of
// [bank.Store]. Every backend (Pebble, PostgreSQL, test fakes) runs the same
// suite from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) bank.Store { return openFresh(t) })
//	}
//
// The suite checks the contract written on [bank.Store]: sentinel errors,
// idempotent replays, all-or-nothing deposits, double-entry postings whose
// balances sum to zero, and linearizability under concurrent calls (one
// winner among many spends of one coin, one debit among many replays of one
// withdraw). Signatures, receipts and deposit permissions are opaque byte
// strings to a store, so the suite uses fake ones.
package storetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// Run runs the conformance suite. open must return a new, empty store (only
// the system accounts) each time it is called; Run closes every store it
// opens, so open should register cleanup only for other resources.
func Run(t *testing.T, open func(t *testing.T) bank.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s bank.Store)
	}{
		{"SystemAccounts", testSystemAccounts},
		{"OpenAccount", testOpenAccount},
		{"Credit", testCredit},
		{"CreditReference", testCreditReference},
		{"Payout", testPayout},
		{"Withdraw", testWithdraw},
		{"WithdrawReplay", testWithdrawReplay},
		{"InsufficientFunds", testInsufficientFunds},
		{"Deposit", testDeposit},
		{"DepositReplay", testDepositReplay},
		{"DepositAllOrNothing", testDepositAllOrNothing},
		{"PaymentConflict", testPaymentConflict},
		{"DepositAnyAccount", testDepositAnyAccount},
		{"Swap", testSwap},
		{"SwapReplay", testSwapReplay},
		{"SwapSpendsOnce", testSwapSpendsOnce},
		{"SwapNonceLocks", testSwapNonceLocks},
		{"InvalidSwaps", testInvalidSwaps},
		{"ConcurrentSwapAndDeposit", testConcurrentSwapAndDeposit},
		{"SpendAcrossKinds", testSpendAcrossKinds},
		{"Fees", testFees},
		{"Refund", testRefund},
		{"RefundLimits", testRefundLimits},
		{"RefundCount", testRefundCount},
		{"ConcurrentRefunds", testConcurrentRefunds},
		{"Issued", testIssued},
		{"IssuedOnce", testIssuedOnce},
		{"IssuedFirstPosition", testIssuedFirstPosition},
		{"IssuedAcrossKinds", testIssuedAcrossKinds},
		{"Spent", testSpent},
		{"Log", testLog},
		{"ConcurrentLog", testConcurrentLog},
		{"LogReadBudget", testLogReadBudget},
		{"Revocations", testRevocations},
		{"LogHead", testLogHead},
		{"DuplicateCoin", testDuplicateCoin},
		{"InvalidOps", testInvalidOps},
		{"History", testHistory},
		{"PostingTimes", testPostingTimes},
		{"ConcurrentPostingTimes", testConcurrentPostingTimes},
		{"Lookups", testLookups},
		{"NonceLocks", testNonceLocks},
		{"Checks", testChecks},
		{"Lockout", testLockout},
		{"ConcurrentChecks", testConcurrentChecks},
		{"CanceledContext", testCanceledContext},
		{"ConcurrentDoubleSpend", testConcurrentDoubleSpend},
		{"ConcurrentWithdrawReplay", testConcurrentWithdrawReplay},
		{"WithdrawRefusal", testWithdrawRefusal},
		{"ConcurrentWithdrawRefusal", testConcurrentWithdrawRefusal},
		{"PruneWithdrawRefusals", testPruneWithdrawRefusals},
		{"NotAfter", testNotAfter},
		{"ConcurrentMix", testConcurrentMix},
		{"ConcurrentNonceLock", testConcurrentNonceLock},
		{"ConcurrentCreditReference", testConcurrentCreditReference},
		{"ConcurrentOpenAccount", testConcurrentOpenAccount},
		{"ConcurrentDebits", testConcurrentDebits},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
	t.Run("Close", func(t *testing.T) { testClose(t, open(t)) })
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fixture holds the helpers of one subtest.
type fixture struct {
	t     *testing.T
	s     bank.Store
	ctx   context.Context
	users []uint64 // accounts opened through the fixture
	n     int      // counter for unique names
}

func newFixture(t *testing.T, s bank.Store) *fixture {
	return &fixture{t: t, s: s, ctx: t.Context()}
}

// Key is a valid Ed25519 public key per name, for store tests (the audit
// log refuses keys that are not points of large order).
func Key(name string) ed25519.PublicKey { return fakeKey(name) }

func fakeKey(name string) ed25519.PublicKey {
	h := ecash.HashOf([]byte("storetest key " + name))
	return ed25519.NewKeyFromSeed(h[:]).Public().(ed25519.PublicKey)
}

func hashOf(format string, args ...any) ecash.Hash {
	return ecash.HashOf(fmt.Appendf(nil, format, args...))
}

func (f *fixture) open(merchant bool) uint64 {
	f.t.Helper()
	f.n++
	name := fmt.Sprintf("user-%d", f.n)
	id, err := f.s.OpenAccount(f.ctx, name, fakeKey(name), merchant, epoch)
	if err != nil {
		f.t.Fatalf("OpenAccount(%s): %v", name, err)
	}
	f.users = append(f.users, id)
	return id
}

func (f *fixture) customer() uint64 { return f.open(false) }
func (f *fixture) merchant() uint64 { return f.open(true) }

func (f *fixture) balance(id uint64) int64 {
	f.t.Helper()
	a, err := f.s.Account(f.ctx, id)
	if err != nil {
		f.t.Fatalf("Account(%d): %v", id, err)
	}
	return a.Balance
}

func (f *fixture) logSize() int64 {
	f.t.Helper()
	n, err := f.s.LogSize(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) balances() map[uint64]int64 {
	f.t.Helper()
	m := map[uint64]int64{}
	for _, id := range append([]uint64{bank.AccountFunding, bank.AccountOutstanding, bank.AccountFees}, f.users...) {
		m[id] = f.balance(id)
	}
	return m
}

func (f *fixture) credit(id uint64, amount int64) int64 {
	f.t.Helper()
	bal, err := f.s.Credit(f.ctx, bank.CreditOp{Account: id, Amount: amount, Memo: "test credit", Time: epoch})
	if err != nil {
		f.t.Fatalf("Credit(%d, %d): %v", id, amount, err)
	}
	return bal
}

func withdrawOp(id uint64, amount int64, tag string) bank.WithdrawOp {
	return bank.WithdrawOp{
		RequestHash: hashOf("withdraw %s", tag),
		Account:     id,
		Amount:      amount,
		BlindSigs:   [][]byte{[]byte("sig-1 " + tag), []byte("sig-2 " + tag)},
		Time:        epoch,
	}
}

func coin(tag string) ecash.Hash { return hashOf("coin %s", tag) }

// depositOp builds a deposit of coins for payment tag; each coin's fake
// permission names the coin and the payment.
func depositOp(merchant uint64, amount int64, tag string, coins ...ecash.Hash) bank.DepositOp {
	op := bank.DepositOp{
		PaymentHash: hashOf("payment %s", tag),
		Merchant:    merchant,
		Amount:      amount,
		Receipt:     []byte("receipt " + tag),
		Time:        epoch,
	}
	for _, c := range coins {
		op.Coins = append(op.Coins, bank.SpentCoin{ID: c, Permission: permission(tag, c)})
	}
	return op
}

func permission(tag string, c ecash.Hash) []byte {
	return fmt.Appendf(nil, "permission %s %x", tag, c[:])
}

// fundOutstanding puts amount of e-cash in circulation, as a customer's
// withdraw would, so that deposits have something to redeem.
func (f *fixture) fundOutstanding(amount int64) {
	f.t.Helper()
	c := f.customer()
	f.credit(c, amount)
	if _, err := f.s.Withdraw(f.ctx, withdrawOp(c, amount, fmt.Sprintf("fund %d", c))); err != nil {
		f.t.Fatalf("Withdraw: %v", err)
	}
}

// checkLedger checks that the balances of the system accounts and every
// fixture account sum to zero (the fixture must know every user account),
// and that each account's history adds up to its balance.
func (f *fixture) checkLedger() {
	f.t.Helper()
	var sum int64
	for id, bal := range f.balances() {
		sum += bal
		hist, err := f.s.History(f.ctx, id, 1<<30)
		if err != nil {
			f.t.Fatalf("History(%d): %v", id, err)
		}
		var total int64
		for i, p := range hist {
			total += p.Amount
			if p.Amount == 0 {
				f.t.Errorf("account %d posting %d: zero amount", id, p.Seq)
			}
			if i+1 < len(hist) {
				next := hist[i+1]
				if next.Seq >= p.Seq {
					f.t.Errorf("account %d: history not newest first: seq %d before %d", id, p.Seq, next.Seq)
				}
				if next.Balance+p.Amount != p.Balance {
					f.t.Errorf("account %d posting %d: balance %d + %d != %d", id, p.Seq, next.Balance, p.Amount, p.Balance)
				}
			}
		}
		if total != bal {
			f.t.Errorf("account %d: postings sum to %d, balance %d", id, total, bal)
		}
		if len(hist) > 0 && hist[0].Balance != bal {
			f.t.Errorf("account %d: last posting balance %d, balance %d", id, hist[0].Balance, bal)
		}
	}
	if sum != 0 {
		f.t.Errorf("balances sum to %d, want 0", sum)
	}
}

func (f *fixture) expectBalances(want map[uint64]int64) {
	f.t.Helper()
	for id, w := range want {
		if got := f.balance(id); got != w {
			f.t.Errorf("account %d balance %d, want %d", id, got, w)
		}
	}
}

func testSystemAccounts(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	for _, id := range []uint64{bank.AccountFunding, bank.AccountOutstanding} {
		a, err := s.Account(f.ctx, id)
		if err != nil {
			t.Fatalf("Account(%d): %v", id, err)
		}
		if a.ID != id || a.Balance != 0 || a.Merchant || a.Key != nil {
			t.Errorf("system account %d = %+v", id, a)
		}
	}
}

func testOpenAccount(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	key := fakeKey("alice")
	id, err := s.OpenAccount(f.ctx, "alice", key, false, epoch)
	if err != nil {
		t.Fatalf("OpenAccount: %v", err)
	}
	if id == bank.AccountFunding || id == bank.AccountOutstanding || id == 0 {
		t.Errorf("user account got system id %d", id)
	}
	a, err := s.Account(f.ctx, id)
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	if a.ID != id || a.Name != "alice" || !bytes.Equal(a.Key, key) || a.Merchant || a.Balance != 0 || !a.Created.Equal(epoch) {
		t.Errorf("Account = %+v", a)
	}
	mid, err := s.OpenAccount(f.ctx, "shop", fakeKey("shop"), true, epoch)
	if err != nil {
		t.Fatalf("OpenAccount(merchant): %v", err)
	}
	if mid == id {
		t.Fatalf("two accounts got id %d", id)
	}
	if m, err := s.Account(f.ctx, mid); err != nil || !m.Merchant {
		t.Errorf("merchant Account = %+v, %v", m, err)
	}
	// The same account asked for again (a retry whose answer was lost)
	// gets its id, and nothing more is opened or logged.
	size, err := s.LogSize(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.OpenAccount(f.ctx, "alice", key, false, epoch.Add(time.Minute)); err != nil || again != id {
		t.Errorf("OpenAccount(the same again) = %d, %v; want %d", again, err, id)
	}
	if after, err := s.LogSize(f.ctx); err != nil || after != size {
		t.Errorf("log size %d after opening the same account again, want %d (%v)", after, size, err)
	}
	// Another account for the key is refused.
	for _, c := range []struct {
		name     string
		merchant bool
	}{{"alice again", false}, {"alice again", true}, {"alice", true}} {
		if _, err := s.OpenAccount(f.ctx, c.name, key, c.merchant, epoch); !errors.Is(err, bank.ErrKeyInUse) {
			t.Errorf("OpenAccount(same key, %q, merchant=%v) = %v, want ErrKeyInUse", c.name, c.merchant, err)
		}
	}
	if _, err := s.OpenAccount(f.ctx, "short key", ed25519.PublicKey{1, 2, 3}, false, epoch); err == nil {
		t.Error("OpenAccount accepted a 3-byte public key")
	}
	if _, err := s.Account(f.ctx, mid+1000); !errors.Is(err, bank.ErrNoAccount) {
		t.Errorf("Account(unknown) = %v, want ErrNoAccount", err)
	}
	if _, err := s.History(f.ctx, mid+1000, 10); !errors.Is(err, bank.ErrNoAccount) {
		t.Errorf("History(unknown) = %v, want ErrNoAccount", err)
	}
	if h, err := s.History(f.ctx, id, 10); err != nil || len(h) != 0 {
		t.Errorf("History(new account) = %v, %v; want empty", h, err)
	}
}

func testCredit(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	if bal := f.credit(c, 100); bal != 100 {
		t.Errorf("Credit returned balance %d, want 100", bal)
	}
	if bal := f.credit(c, 50); bal != 150 {
		t.Errorf("Credit returned balance %d, want 150", bal)
	}
	f.expectBalances(map[uint64]int64{c: 150, bank.AccountFunding: -150, bank.AccountOutstanding: 0})
	if _, err := s.Credit(f.ctx, bank.CreditOp{Account: c + 1000, Amount: 1, Time: epoch}); !errors.Is(err, bank.ErrNoAccount) {
		t.Errorf("Credit(unknown account) = %v, want ErrNoAccount", err)
	}
	f.checkLedger()
}

func testCreditReference(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, d := f.customer(), f.customer()
	op := bank.CreditOp{Account: c, Amount: 100, Memo: "wire", Reference: "wire-0001", Time: epoch}
	if bal, err := s.Credit(f.ctx, op); err != nil || bal != 100 {
		t.Fatalf("Credit = %d, %v; want 100", bal, err)
	}
	f.credit(c, 7) // the replay must report the current balance
	for range 3 {
		if bal, err := s.Credit(f.ctx, op); err != nil || bal != 107 {
			t.Errorf("Credit(replay) = %d, %v; want 107, nil", bal, err)
		}
	}
	f.expectBalances(map[uint64]int64{c: 107, bank.AccountFunding: -107})

	other := op
	other.Amount = 101
	if _, err := s.Credit(f.ctx, other); !errors.Is(err, bank.ErrReferenceConflict) {
		t.Errorf("Credit(same reference, other amount) = %v, want ErrReferenceConflict", err)
	}
	other = op
	other.Account = d
	if _, err := s.Credit(f.ctx, other); !errors.Is(err, bank.ErrReferenceConflict) {
		t.Errorf("Credit(same reference, other account) = %v, want ErrReferenceConflict", err)
	}
	f.expectBalances(map[uint64]int64{c: 107, d: 0, bank.AccountFunding: -107})

	// Credits without a reference are never deduplicated.
	plain := bank.CreditOp{Account: d, Amount: 5, Time: epoch}
	for i := range 2 {
		if bal, err := s.Credit(f.ctx, plain); err != nil || bal != int64(5*(i+1)) {
			t.Errorf("Credit(no reference) #%d = %d, %v", i, bal, err)
		}
	}
	f.checkLedger()
}

func testWithdraw(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	op := withdrawOp(c, 300, "w1")
	sigs, err := s.Withdraw(f.ctx, op)
	if err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	if !equalSigs(sigs, op.BlindSigs) {
		t.Errorf("Withdraw returned %q, want %q", sigs, op.BlindSigs)
	}
	f.expectBalances(map[uint64]int64{c: 700, bank.AccountOutstanding: 300, bank.AccountFunding: -1000})
	if _, err := s.Withdraw(f.ctx, withdrawOp(c+1000, 1, "nobody")); !errors.Is(err, bank.ErrNoAccount) {
		t.Errorf("Withdraw(unknown account) = %v, want ErrNoAccount", err)
	}
	// A merchant can withdraw its takings too.
	m := f.merchant()
	f.credit(m, 10)
	if _, err := s.Withdraw(f.ctx, withdrawOp(m, 10, "merchant")); err != nil {
		t.Errorf("Withdraw(merchant) = %v", err)
	}
	f.checkLedger()
}

func equalSigs(a, b [][]byte) bool { return slices.EqualFunc(a, b, bytes.Equal) }

func testWithdrawReplay(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	op := withdrawOp(c, 300, "w1")
	if _, err := s.Withdraw(f.ctx, op); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	// A replay carries freshly made signatures (blind signing may be
	// randomised); the store must return the recorded ones.
	replay := op
	replay.BlindSigs = [][]byte{[]byte("other sig")}
	for range 3 {
		sigs, err := s.Withdraw(f.ctx, replay)
		if err != nil || !equalSigs(sigs, op.BlindSigs) {
			t.Errorf("Withdraw(replay) = %q, %v; want %q", sigs, err, op.BlindSigs)
		}
	}
	f.expectBalances(map[uint64]int64{c: 700, bank.AccountOutstanding: 300})

	// Spend the rest; the replay still succeeds and still moves nothing.
	if _, err := s.Withdraw(f.ctx, withdrawOp(c, 700, "w2")); err != nil {
		t.Fatalf("Withdraw(rest): %v", err)
	}
	if sigs, err := s.Withdraw(f.ctx, replay); err != nil || !equalSigs(sigs, op.BlindSigs) {
		t.Errorf("Withdraw(replay at zero balance) = %q, %v; want %q", sigs, err, op.BlindSigs)
	}
	f.expectBalances(map[uint64]int64{c: 0, bank.AccountOutstanding: 1000})
	f.checkLedger()
}

func testInsufficientFunds(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 100)
	before := f.balances()
	op := withdrawOp(c, 101, "too much")
	for range 2 {
		if _, err := s.Withdraw(f.ctx, op); !errors.Is(err, bank.ErrInsufficientFunds) {
			t.Errorf("Withdraw(101 of 100) = %v, want ErrInsufficientFunds", err)
		}
	}
	f.expectBalances(before)
	if h, err := s.History(f.ctx, c, 10); err != nil || len(h) != 1 {
		t.Errorf("History after refused withdraw = %d postings, %v; want 1", len(h), err)
	}
	// The refused request hash was not recorded: once funded, it withdraws.
	f.credit(c, 1)
	if sigs, err := s.Withdraw(f.ctx, op); err != nil || !equalSigs(sigs, op.BlindSigs) {
		t.Errorf("Withdraw after credit = %q, %v", sigs, err)
	}
	f.expectBalances(map[uint64]int64{c: 0, bank.AccountOutstanding: 101})
	f.checkLedger()
}

func testDeposit(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	op := depositOp(m, 300, "p1", coin("a"), coin("b"))
	receipt, err := s.Deposit(f.ctx, op)
	if err != nil {
		t.Fatalf("Deposit: %v", err)
	}
	if !bytes.Equal(receipt, op.Receipt) {
		t.Errorf("Deposit returned receipt %q, want %q", receipt, op.Receipt)
	}
	f.expectBalances(map[uint64]int64{m: 300, bank.AccountOutstanding: 700})
	if _, err := s.Deposit(f.ctx, depositOp(m+1000, 1, "nobody", coin("z"))); !errors.Is(err, bank.ErrNoAccount) {
		t.Errorf("Deposit(unknown account) = %v, want ErrNoAccount", err)
	}
	// The coins are spent: another payment with one of them is refused.
	_, err = s.Deposit(f.ctx, depositOp(m, 100, "p2", coin("b")))
	var se *bank.SpentError
	if !errors.As(err, &se) || !errors.Is(err, ecash.ErrDoubleSpend) {
		t.Fatalf("Deposit(spent coin) = %v, want *SpentError", err)
	}
	if se.Coin != coin("b") || !bytes.Equal(se.Permission, permission("p1", coin("b"))) {
		t.Errorf("SpentError = coin %x permission %q; want coin b with permission from p1", se.Coin[:4], se.Permission)
	}
	f.expectBalances(map[uint64]int64{m: 300, bank.AccountOutstanding: 700})
	f.checkLedger()
}

// testLookups: the read side of withdraw and deposit records, which the
// bank consults before any validity-window check so a retry is answered
// from the record.
func testLookups(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	if _, found, err := s.Withdrawal(f.ctx, hashOf("withdraw w1")); err != nil || found {
		t.Fatalf("Withdrawal(unrecorded) = found %v, %v", found, err)
	}
	op := withdrawOp(c, 400, "w1")
	if _, err := s.Withdraw(f.ctx, op); err != nil {
		t.Fatal(err)
	}
	sigs, found, err := s.Withdrawal(f.ctx, op.RequestHash)
	if err != nil || !found || !equalSigs(sigs, op.BlindSigs) {
		t.Fatalf("Withdrawal = %q found %v, %v; want the recorded sigs", sigs, found, err)
	}
	m := f.merchant()
	dop := depositOp(m, 300, "p1", coin("a"), coin("b"))
	if _, _, found, err := s.DepositRecord(f.ctx, dop.PaymentHash); err != nil || found {
		t.Fatalf("DepositRecord(unpaid) = found %v, %v", found, err)
	}
	if _, err := s.Deposit(f.ctx, dop); err != nil {
		t.Fatal(err)
	}
	receipt, coins, found, err := s.DepositRecord(f.ctx, dop.PaymentHash)
	if err != nil || !found || !bytes.Equal(receipt, dop.Receipt) || !slices.Equal(coins, []ecash.Hash{coin("a"), coin("b")}) {
		t.Fatalf("DepositRecord = %q %x found %v, %v", receipt, coins, found, err)
	}
}

// testNonceLocks: a CS nonce is answered for one blinded message only; the
// lock is taken in the same commit as the debit.
func testNonceLocks(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	lock := bank.NonceLock{Denom: hashOf("denom"), Nonce: []byte("nonce-1"), Blinded: hashOf("challenge A")}
	op := withdrawOp(c, 100, "first")
	op.Locks = []bank.NonceLock{lock}
	if _, err := s.Withdraw(f.ctx, op); err != nil {
		t.Fatal(err)
	}
	other := withdrawOp(c, 100, "second")
	bad := lock
	bad.Blinded = hashOf("challenge B")
	other.Locks = []bank.NonceLock{bad}
	if _, err := s.Withdraw(f.ctx, other); !errors.Is(err, bank.ErrNonceReused) {
		t.Fatalf("nonce locked to another blinded message: %v, want ErrNonceReused", err)
	}
	f.expectBalances(map[uint64]int64{c: 900})
	same := withdrawOp(c, 100, "third")
	same.Locks = []bank.NonceLock{lock}
	if _, err := s.Withdraw(f.ctx, same); err != nil {
		t.Fatalf("the same blinded message again: %v", err)
	}
	// The same nonce under another denomination is another lock.
	elsewhere := withdrawOp(c, 100, "fourth")
	elsewhere.Locks = []bank.NonceLock{{Denom: hashOf("other denom"), Nonce: lock.Nonce, Blinded: bad.Blinded}}
	if _, err := s.Withdraw(f.ctx, elsewhere); err != nil {
		t.Fatalf("same nonce, other denomination: %v", err)
	}
	f.expectBalances(map[uint64]int64{c: 700})
	f.checkLedger()
}

func testDepositReplay(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	op := depositOp(m, 300, "p1", coin("a"), coin("b"), coin("c"))
	first, err := s.Deposit(f.ctx, op)
	if err != nil {
		t.Fatalf("Deposit: %v", err)
	}
	// A replay carries a receipt signed anew; the store returns the first.
	replay := op
	replay.Receipt = []byte("a newer receipt")
	replay.Time = epoch.Add(time.Hour)
	for range 3 {
		got, err := s.Deposit(f.ctx, replay)
		if err != nil || !bytes.Equal(got, first) {
			t.Errorf("Deposit(replay) = %q, %v; want %q", got, err, first)
		}
	}
	f.expectBalances(map[uint64]int64{m: 300, bank.AccountOutstanding: 700})
	if h, err := s.History(f.ctx, m, 10); err != nil || len(h) != 1 {
		t.Errorf("merchant history = %d postings, %v; want 1", len(h), err)
	}
	f.checkLedger()
}

func testDepositAllOrNothing(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	if _, err := s.Deposit(f.ctx, depositOp(m, 100, "p1", coin("a"), coin("b"))); err != nil {
		t.Fatalf("Deposit(p1): %v", err)
	}
	before := f.balances()

	// One spent coin among fresh ones: the first spent coin in op order
	// is reported with its earlier permission, and nothing happens.
	bad := depositOp(m, 400, "p2", coin("c"), coin("b"), coin("d"), coin("a"))
	for range 2 {
		_, err := s.Deposit(f.ctx, bad)
		var se *bank.SpentError
		if !errors.As(err, &se) {
			t.Fatalf("Deposit(p2) = %v, want *SpentError", err)
		}
		if se.Coin != coin("b") || !bytes.Equal(se.Permission, permission("p1", coin("b"))) {
			t.Errorf("SpentError coin %x permission %q; want coin b, permission %q", se.Coin[:4], se.Permission, permission("p1", coin("b")))
		}
	}
	f.expectBalances(before)

	// The fresh coins stayed unspent, and payment p2 was not recorded: it
	// can be paid with them now.
	ok := depositOp(m, 200, "p2", coin("c"), coin("d"))
	if r, err := s.Deposit(f.ctx, ok); err != nil || !bytes.Equal(r, ok.Receipt) {
		t.Fatalf("Deposit(p2 with fresh coins) = %q, %v", r, err)
	}
	f.expectBalances(map[uint64]int64{m: 300, bank.AccountOutstanding: 700})
	f.checkLedger()
}

func testPaymentConflict(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	op := depositOp(m, 200, "p1", coin("a"), coin("b"))
	if _, err := s.Deposit(f.ctx, op); err != nil {
		t.Fatalf("Deposit: %v", err)
	}
	before := f.balances()
	for name, other := range map[string]bank.DepositOp{
		"fewer coins": depositOp(m, 200, "p1", coin("a")),
		"more coins":  depositOp(m, 200, "p1", coin("a"), coin("b"), coin("c")),
		"other coins": depositOp(m, 200, "p1", coin("c"), coin("d")),
	} {
		if _, err := s.Deposit(f.ctx, other); !errors.Is(err, bank.ErrPaymentConflict) {
			t.Errorf("Deposit(p1, %s) = %v, want ErrPaymentConflict", name, err)
		}
	}
	f.expectBalances(before)
	// The conflicting attempts spent nothing.
	if _, err := s.Deposit(f.ctx, depositOp(m, 200, "p3", coin("c"), coin("d"))); err != nil {
		t.Errorf("Deposit(p3 with coins of refused attempts) = %v", err)
	}
	f.checkLedger()
}

// testDepositAnyAccount: deposits credit customer accounts too (a wallet
// returns coins to its own account), never system accounts.
func testDepositAnyAccount(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	c := f.customer()
	before := f.balances()
	for _, id := range []uint64{bank.AccountFunding, bank.AccountOutstanding} {
		if _, err := s.Deposit(f.ctx, depositOp(id, 100, "p1", coin("a"))); !errors.Is(err, bank.ErrInvalidOp) {
			t.Errorf("Deposit(system account %d) = %v, want ErrInvalidOp", id, err)
		}
	}
	f.expectBalances(before)
	// The coin was not spent by the refused deposits.
	if _, err := s.Deposit(f.ctx, depositOp(c, 100, "p1", coin("a"))); err != nil {
		t.Errorf("Deposit(customer) after refusals = %v", err)
	}
	f.expectBalances(map[uint64]int64{c: 100, bank.AccountOutstanding: 900})
	f.checkLedger()
}

func testDuplicateCoin(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	before := f.balances()
	dup := depositOp(m, 300, "p1", coin("a"), coin("b"), coin("a"))
	if _, err := s.Deposit(f.ctx, dup); err == nil {
		t.Fatal("Deposit with a coin twice succeeded")
	}
	f.expectBalances(before)
	if _, err := s.Deposit(f.ctx, depositOp(m, 200, "p1", coin("a"), coin("b"))); err != nil {
		t.Errorf("Deposit after refused duplicate = %v", err)
	}
	f.checkLedger()
}

func testInvalidOps(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	c, m := f.customer(), f.merchant()
	f.credit(c, 100)
	before := f.balances()
	for _, amount := range []int64{0, -1, -100} {
		if _, err := s.Credit(f.ctx, bank.CreditOp{Account: c, Amount: amount, Time: epoch}); err == nil {
			t.Errorf("Credit(amount %d) succeeded", amount)
		}
		if _, err := s.Withdraw(f.ctx, withdrawOp(c, amount, fmt.Sprint("neg", amount))); err == nil {
			t.Errorf("Withdraw(amount %d) succeeded", amount)
		}
		if _, err := s.Deposit(f.ctx, depositOp(m, amount, fmt.Sprint("neg", amount), coin("n"))); err == nil {
			t.Errorf("Deposit(amount %d) succeeded", amount)
		}
	}
	if _, err := s.Deposit(f.ctx, depositOp(m, 10, "no coins")); err == nil {
		t.Error("Deposit without coins succeeded")
	}
	noSigs := withdrawOp(c, 10, "no sigs")
	noSigs.BlindSigs = nil
	if _, err := s.Withdraw(f.ctx, noSigs); err == nil {
		t.Error("Withdraw without signatures succeeded")
	}
	for _, id := range []uint64{bank.AccountFunding, bank.AccountOutstanding} {
		if _, err := s.Credit(f.ctx, bank.CreditOp{Account: id, Amount: 1, Time: epoch}); err == nil {
			t.Errorf("Credit(system account %d) succeeded", id)
		}
		if _, err := s.Withdraw(f.ctx, withdrawOp(id, 1, fmt.Sprint("system", id))); err == nil {
			t.Errorf("Withdraw(system account %d) succeeded", id)
		}
	}
	f.expectBalances(before)
	f.checkLedger()
}

// testPostingTimes: operations read the clock before they commit, so one
// can commit after another that read a later time. Its postings are then
// stamped with the later time, and its spending counts on the later day:
// an account's postings stay in time order along its history.
func testPostingTimes(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	if err := s.SetLimits(f.ctx, c, bank.Limits{PerDay: 300}); err != nil {
		t.Fatal(err)
	}
	day2 := epoch.Truncate(24 * time.Hour).Add(48 * time.Hour)
	if _, err := s.Credit(f.ctx, bank.CreditOp{Account: c, Amount: 1000, Time: day2.Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	late := withdrawOp(c, 200, "after midnight")
	late.Time = day2.Add(time.Second)
	if _, err := s.Withdraw(f.ctx, late); err != nil {
		t.Fatal(err)
	}
	early := withdrawOp(c, 200, "before midnight, committed second")
	early.Time = day2.Add(-time.Second)
	if _, err := s.Withdraw(f.ctx, early); !errors.Is(err, bank.ErrOverLimit) {
		t.Errorf("a second 200 committed on the day that already spent 200 of 300: %v, want ErrOverLimit", err)
	}
	early.Amount = 100
	if _, err := s.Withdraw(f.ctx, early); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(f.ctx, c, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || !h[0].Time.Equal(late.Time) || !h[1].Time.Equal(late.Time) {
		t.Fatalf("history (newest first) = %+v; want the late-read withdrawal stamped %s like the one before it", h, late.Time)
	}
	a, err := s.Account(f.ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if a.SpentToday != 300 || a.SpentDay != bank.Day(late.Time) {
		t.Errorf("spent %d on day %d, want 300 on day %d", a.SpentToday, a.SpentDay, bank.Day(late.Time))
	}
	// Account reads the latest posting's time too: the bank's pre-check of
	// the daily limit judges the day by it, as the commit does.
	if !a.LastPosted.Equal(late.Time) {
		t.Errorf("Account's LastPosted = %s, want the latest posting's %s", a.LastPosted, late.Time)
	}
}

// testConcurrentPostingTimes: the same under concurrent operations on one
// account, whose commits wait for each other (in pgstore, for the
// account's row lock: the latest posting's time must be read after it).
func testConcurrentPostingTimes(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				at := epoch.Add(time.Duration((g*25+i)*7919%200) * time.Millisecond) // in no order
				if _, err := s.Credit(f.ctx, bank.CreditOp{Account: c, Amount: 1, Time: at}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	h, err := s.History(f.ctx, c, 1000)
	if err != nil {
		t.Fatal(err)
	}
	inversions := 0
	for i := 1; i < len(h); i++ { // newest first
		if h[i].Time.After(h[i-1].Time) {
			if inversions++; inversions == 1 {
				t.Errorf("posting %d at %s, after posting %d at %s", h[i].Seq, h[i].Time, h[i-1].Seq, h[i-1].Time)
			}
		}
	}
	if len(h) != 200 || inversions > 0 {
		t.Errorf("%d postings, %d stamped before the one committed ahead of them", len(h), inversions)
	}
}

func testHistory(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, m := f.customer(), f.merchant()
	t1, t2, t3 := epoch, epoch.Add(time.Minute), epoch.Add(2*time.Minute)
	if _, err := s.Credit(f.ctx, bank.CreditOp{Account: c, Amount: 500, Memo: "top-up", Time: t1}); err != nil {
		t.Fatal(err)
	}
	w := withdrawOp(c, 200, "h")
	w.Time = t2
	if _, err := s.Withdraw(f.ctx, w); err != nil {
		t.Fatal(err)
	}
	d := depositOp(m, 150, "h", coin("h"))
	d.Time = t3
	if _, err := s.Deposit(f.ctx, d); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(f.ctx, c, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 {
		t.Fatalf("customer history has %d postings, want 2: %+v", len(h), h)
	}
	if p := h[0]; p.Kind != bank.KindWithdraw || p.Amount != -200 || p.Balance != 300 || !p.Time.Equal(t2) {
		t.Errorf("newest posting = %+v, want withdraw -200 → 300", p)
	}
	if p := h[1]; p.Kind != bank.KindCredit || p.Amount != 500 || p.Balance != 500 || p.Memo != "top-up" || !p.Time.Equal(t1) {
		t.Errorf("oldest posting = %+v, want credit 500 → 500 memo top-up", p)
	}
	if h, err := s.History(f.ctx, c, 1); err != nil || len(h) != 1 || h[0].Kind != bank.KindWithdraw {
		t.Errorf("History(limit 1) = %+v, %v; want the withdraw only", h, err)
	}
	h, err = s.History(f.ctx, m, 10)
	if err != nil || len(h) != 1 {
		t.Fatalf("merchant history = %+v, %v", h, err)
	}
	if p := h[0]; p.Kind != bank.KindDeposit || p.Amount != 150 || p.Balance != 150 || !p.Time.Equal(t3) {
		t.Errorf("merchant posting = %+v, want deposit 150 → 150", p)
	}
	// The system accounts carry the other side of each posting.
	h, err = s.History(f.ctx, bank.AccountOutstanding, 10)
	if err != nil || len(h) != 2 || h[0].Kind != bank.KindDeposit || h[0].Amount != -150 || h[1].Kind != bank.KindWithdraw || h[1].Amount != 200 {
		t.Errorf("outstanding history = %+v, %v", h, err)
	}
	h, err = s.History(f.ctx, bank.AccountFunding, 10)
	if err != nil || len(h) != 1 || h[0].Kind != bank.KindCredit || h[0].Amount != -500 {
		t.Errorf("funding history = %+v, %v", h, err)
	}
	f.checkLedger()
}

func testCanceledContext(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	c, m := f.customer(), f.merchant()
	f.credit(c, 100)
	before := f.balances()
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	if _, err := s.Credit(ctx, bank.CreditOp{Account: c, Amount: 1, Time: epoch}); !errors.Is(err, context.Canceled) {
		t.Errorf("Credit(canceled) = %v, want context.Canceled", err)
	}
	w := withdrawOp(c, 10, "canceled")
	if _, err := s.Withdraw(ctx, w); !errors.Is(err, context.Canceled) {
		t.Errorf("Withdraw(canceled) = %v, want context.Canceled", err)
	}
	d := depositOp(m, 10, "canceled", coin("x"))
	if _, err := s.Deposit(ctx, d); !errors.Is(err, context.Canceled) {
		t.Errorf("Deposit(canceled) = %v, want context.Canceled", err)
	}
	// Every other mutation, too, and none leaves a trace: in the log, nor
	// what each would change. The account is locked out for one source
	// first, so that an Unlock would show.
	for range bank.MaxAuthFailures {
		if _, err := s.AuthFailure(f.ctx, c, "locked", epoch); err != nil {
			t.Fatal(err)
		}
	}
	size, err := s.LogSize(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := s.Account(f.ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	sw := swapOp(10, "canceled", coin("y"))
	// In this order: an Unlock applied after the failure would hide it.
	mutations := []struct {
		name string
		call func() error
	}{
		{"OpenAccount", func() error { _, err := s.OpenAccount(ctx, "canceled", fakeKey("canceled"), false, epoch); return err }},
		{"Swap", func() error { _, err := s.Swap(ctx, sw); return err }},
		{"Check", func() error { _, err := s.Check(ctx, checkOp("canceled", c, m, 1)); return err }},
		{"SetLimits", func() error { return s.SetLimits(ctx, c, bank.Limits{PerDay: 1}) }},
		{"Unlock", func() error { return s.Unlock(ctx, c) }},
		{"AuthFailure", func() error { _, err := s.AuthFailure(ctx, c, "canceled", epoch); return err }},
		{"PublishKeySet", func() error { return s.PublishKeySet(ctx, signedKeySet(epoch), epoch) }},
	}
	for _, mu := range mutations {
		if err := mu.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s(canceled) = %v, want context.Canceled", mu.name, err)
		}
	}
	if after, err := s.LogSize(f.ctx); err != nil || after != size {
		t.Errorf("log size %d after canceled calls, want %d (%v)", after, size, err)
	}
	if a, err := s.Account(f.ctx, c); err != nil || a.Limits != acct.Limits {
		t.Errorf("limits %+v after a canceled SetLimits, want %+v (%v)", a.Limits, acct.Limits, err)
	}
	if locked, err := s.AuthLocked(f.ctx, c, "locked", epoch); err != nil || !locked {
		t.Errorf("AuthLocked after a canceled Unlock = %v, %v; want still locked", locked, err)
	}
	// The canceled failure was not counted: MaxAuthFailures-1 more do not
	// lock the account for its source, and one after them does.
	for i := 1; i <= bank.MaxAuthFailures; i++ {
		locked, err := s.AuthFailure(f.ctx, c, "canceled", epoch)
		if err != nil || locked != (i == bank.MaxAuthFailures) {
			t.Errorf("failure %d after a canceled one: locked %v, %v", i, locked, err)
		}
	}
	if spent, err := s.Spent(f.ctx, []ecash.Hash{coin("y")}); err != nil || spent[0] {
		t.Errorf("the canceled swap's input spent: %v, %v", spent, err)
	}
	if _, found, err := s.SwapRecord(f.ctx, sw.RequestHash); err != nil || found {
		t.Errorf("SwapRecord of the canceled swap: found %v, %v", found, err)
	}
	if _, found, err := s.CheckRecord(f.ctx, "canceled"); err != nil || found {
		t.Errorf("CheckRecord of the canceled check: found %v, %v", found, err)
	}
	f.expectBalances(before)
	// Nothing was recorded: the same operations now apply in full.
	if _, err := s.Withdraw(f.ctx, w); err != nil {
		t.Errorf("Withdraw after canceled attempt = %v", err)
	}
	if _, err := s.Deposit(f.ctx, d); err != nil {
		t.Errorf("Deposit after canceled attempt = %v", err)
	}
	if _, err := s.Swap(f.ctx, sw); err != nil {
		t.Errorf("Swap after canceled attempt = %v", err)
	}
	f.expectBalances(map[uint64]int64{c: 90, m: 10})
}

func testClose(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, m := f.customer(), f.merchant()
	f.credit(c, 10)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Every call after Close, mutation or read, is ErrStoreClosed.
	h := []ecash.Hash{coin("closed")}
	calls := map[string]func() error{
		"OpenAccount": func() error { _, err := s.OpenAccount(f.ctx, "closed", fakeKey("closed"), false, epoch); return err },
		"Account":     func() error { _, err := s.Account(f.ctx, c); return err },
		"History":     func() error { _, err := s.History(f.ctx, c, 10); return err },
		"Credit": func() error {
			_, err := s.Credit(f.ctx, bank.CreditOp{Account: c, Amount: 1, Time: epoch})
			return err
		},
		"Withdraw": func() error { _, err := s.Withdraw(f.ctx, withdrawOp(c, 1, "closed")); return err },
		"RefuseWithdrawal": func() error {
			_, err := s.RefuseWithdrawal(f.ctx, refuseOp(c, "closed", "x"))
			return err
		},
		"Deposit": func() error { _, err := s.Deposit(f.ctx, depositOp(m, 1, "closed", h[0])); return err },
		"Swap":    func() error { _, err := s.Swap(f.ctx, swapOp(1, "closed", h[0])); return err },
		"Refund": func() error {
			_, err := s.Refund(f.ctx, refundOp(m, "closed", "closed", 1, map[ecash.Hash]int64{h[0]: 1}))
			return err
		},
		"RefundRecord":   func() error { _, _, err := s.RefundRecord(f.ctx, h[0]); return err },
		"RefundReceipts": func() error { _, err := s.RefundReceipts(f.ctx, h[0]); return err },
		"CoinStates":     func() error { _, err := s.CoinStates(f.ctx, h); return err },
		"Issued":         func() error { _, err := s.Issued(f.ctx, h); return err },
		"Spent":          func() error { _, err := s.Spent(f.ctx, h); return err },
		"SwapRecord":     func() error { _, _, err := s.SwapRecord(f.ctx, h[0]); return err },
		"Withdrawal":     func() error { _, _, err := s.Withdrawal(f.ctx, h[0]); return err },
		"DepositRecord":  func() error { _, _, _, err := s.DepositRecord(f.ctx, h[0]); return err },
		"Check":          func() error { _, err := s.Check(f.ctx, checkOp("closed", c, m, 1)); return err },
		"CheckRecord":    func() error { _, _, err := s.CheckRecord(f.ctx, "closed"); return err },
		"SetLimits":      func() error { return s.SetLimits(f.ctx, c, bank.Limits{PerDay: 1}) },
		"AuthFailure":    func() error { _, err := s.AuthFailure(f.ctx, c, "closed", epoch); return err },
		"AuthLocked":     func() error { _, err := s.AuthLocked(f.ctx, c, "closed", epoch); return err },
		"LockedSources":  func() error { _, err := s.LockedSources(f.ctx, c, epoch); return err },
		"Unlock":         func() error { return s.Unlock(f.ctx, c) },
		"PublishKeySet":  func() error { return s.PublishKeySet(f.ctx, signedKeySet(epoch), epoch) },
		"Revocations":    func() error { _, err := s.Revocations(f.ctx); return err },
		"LogIndex":       func() error { _, _, err := s.LogIndex(f.ctx, h[0]); return err },
		"LogSize":        func() error { _, err := s.LogSize(f.ctx); return err },
		"LogHead":        func() error { _, _, _, err := s.LogHead(f.ctx); return err },
		"LogEntries":     func() error { _, err := s.LogEntries(f.ctx, 0, 1, bank.MaxLogReadBytes); return err },
		"LogHashes":      func() error { _, err := s.LogHashes(f.ctx, []int64{0}); return err },
		"Totals":         func() error { _, err := s.Totals(f.ctx); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, bank.ErrStoreClosed) {
			t.Errorf("%s after Close = %v, want ErrStoreClosed", name, err)
		}
	}
}

// run starts n goroutines at once and waits for them.
func run(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

func testConcurrentDoubleSpend(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	const n = 100
	results := make([]error, n)
	run(n, func(i int) {
		_, results[i] = s.Deposit(f.ctx, depositOp(m, 100, fmt.Sprintf("race %d", i), coin("contested")))
	})
	winner := -1
	for i, err := range results {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("coin deposited twice: by payments %d and %d", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no deposit succeeded; first error: %v", results[0])
	}
	want := permission(fmt.Sprintf("race %d", winner), coin("contested"))
	for i, err := range results {
		if i == winner {
			continue
		}
		var se *bank.SpentError
		if !errors.As(err, &se) {
			t.Errorf("deposit %d: %v, want *SpentError", i, err)
			continue
		}
		if se.Coin != coin("contested") || !bytes.Equal(se.Permission, want) {
			t.Errorf("deposit %d: SpentError permission %q, want the winner's %q", i, se.Permission, want)
		}
	}
	f.expectBalances(map[uint64]int64{m: 100, bank.AccountOutstanding: 900})
	f.checkLedger()
}

func testConcurrentWithdrawReplay(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	const n = 100
	base := withdrawOp(c, 100, "replayed")
	offered := make([][][]byte, n)
	got := make([][][]byte, n)
	errs := make([]error, n)
	run(n, func(i int) {
		op := base
		op.BlindSigs = [][]byte{fmt.Appendf(nil, "sig a %d", i), fmt.Appendf(nil, "sig b %d", i)}
		offered[i] = op.BlindSigs
		got[i], errs[i] = s.Withdraw(f.ctx, op)
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Withdraw %d: %v", i, err)
		}
		if !equalSigs(got[i], got[0]) {
			t.Errorf("Withdraw %d returned %q, Withdraw 0 %q", i, got[i], got[0])
		}
	}
	if !slices.ContainsFunc(offered, func(o [][]byte) bool { return equalSigs(o, got[0]) }) {
		t.Errorf("returned signatures %q were never offered", got[0])
	}
	f.expectBalances(map[uint64]int64{c: 900, bank.AccountOutstanding: 100})
	f.checkLedger()
}

// testConcurrentMix runs random credits, withdraws and deposits from several
// goroutines and checks the ledger against what the callers were told.
func testConcurrentMix(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	const (
		workers   = 8
		customers = 4
		merchants = 2
		coinPool  = 150
	)
	opsPerWorker := 60
	if testing.Short() {
		opsPerWorker = 20
	}
	var cs, ms []uint64
	for range customers {
		cs = append(cs, f.customer())
	}
	for range merchants {
		ms = append(ms, f.merchant())
	}

	type withdrawn struct {
		op   bank.WithdrawOp
		sigs [][]byte
	}
	type deposited struct {
		op      bank.DepositOp
		receipt []byte
	}
	var (
		mu        sync.Mutex
		expect    = map[uint64]int64{} // per account, from acknowledged ops
		withdraws []withdrawn
		deposits  []deposited
		spentBy   = map[ecash.Hash]string{} // coin → tag of the payment that spent it
		spentErrs []*bank.SpentError
	)
	run(workers, func(w int) {
		rng := rand.New(rand.NewPCG(uint64(w), 42))
		for i := range opsPerWorker {
			tag := fmt.Sprintf("mix %d/%d", w, i)
			switch rng.IntN(3) {
			case 0:
				id := cs[rng.IntN(len(cs))]
				op := bank.CreditOp{Account: id, Amount: 1 + rng.Int64N(1000), Time: epoch}
				if rng.IntN(2) == 0 {
					op.Reference = tag
				}
				if _, err := s.Credit(f.ctx, op); err != nil {
					t.Errorf("%s: Credit: %v", tag, err)
					continue
				}
				mu.Lock()
				expect[id] += op.Amount
				expect[bank.AccountFunding] -= op.Amount
				mu.Unlock()
				if op.Reference != "" && rng.IntN(3) == 0 {
					if _, err := s.Credit(f.ctx, op); err != nil {
						t.Errorf("%s: Credit replay: %v", tag, err)
					}
				}
			case 1:
				id := cs[rng.IntN(len(cs))]
				op := withdrawOp(id, 1+rng.Int64N(500), tag)
				sigs, err := s.Withdraw(f.ctx, op)
				if errors.Is(err, bank.ErrInsufficientFunds) {
					continue
				}
				if err != nil {
					t.Errorf("%s: Withdraw: %v", tag, err)
					continue
				}
				mu.Lock()
				expect[id] -= op.Amount
				expect[bank.AccountOutstanding] += op.Amount
				withdraws = append(withdraws, withdrawn{op, sigs})
				mu.Unlock()
			case 2:
				id := ms[rng.IntN(len(ms))]
				var coins []ecash.Hash
				for _, k := range rng.Perm(coinPool)[:1+rng.IntN(4)] {
					coins = append(coins, coin(fmt.Sprint("pool ", k)))
				}
				op := depositOp(id, 1+rng.Int64N(100), tag, coins...)
				receipt, err := s.Deposit(f.ctx, op)
				var se *bank.SpentError
				if errors.As(err, &se) {
					mu.Lock()
					spentErrs = append(spentErrs, se)
					mu.Unlock()
					continue
				}
				if err != nil {
					t.Errorf("%s: Deposit: %v", tag, err)
					continue
				}
				mu.Lock()
				expect[id] += op.Amount
				expect[bank.AccountOutstanding] -= op.Amount
				deposits = append(deposits, deposited{op, receipt})
				for _, c := range coins {
					if prev, ok := spentBy[c]; ok {
						t.Errorf("coin %x deposited by both %s and %s", c[:4], prev, tag)
					}
					spentBy[c] = tag
				}
				mu.Unlock()
			}
		}
	})
	if t.Failed() {
		return
	}
	for _, id := range append(cs, ms...) {
		expect[id] += 0 // untouched accounts must still be at zero
	}
	f.expectBalances(expect)
	f.checkLedger()
	for _, se := range spentErrs {
		tag, ok := spentBy[se.Coin]
		if !ok {
			t.Errorf("SpentError for coin %x that no acknowledged deposit spent", se.Coin[:4])
		} else if want := permission(tag, se.Coin); !bytes.Equal(se.Permission, want) {
			t.Errorf("SpentError permission %q, want %q", se.Permission, want)
		}
	}
	// Every acknowledged withdraw and deposit replays to the same answer
	// and moves nothing.
	before := f.balances()
	for _, w := range withdraws {
		if sigs, err := s.Withdraw(f.ctx, w.op); err != nil || !equalSigs(sigs, w.sigs) {
			t.Errorf("Withdraw replay = %q, %v; want %q", sigs, err, w.sigs)
		}
	}
	for _, d := range deposits {
		if r, err := s.Deposit(f.ctx, d.op); err != nil || !bytes.Equal(r, d.receipt) {
			t.Errorf("Deposit replay = %q, %v; want %q", r, err, d.receipt)
		}
	}
	f.expectBalances(before)
}
