package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// refundOp builds a refund of the deposit depositOp(merchant, …, payment)
// restoring values to coins, each of which paid cap.
func refundOp(merchant uint64, payment, tag string, cap int64, coins map[ecash.Hash]int64) bank.RefundOp {
	op := bank.RefundOp{
		RequestHash: hashOf("refund %s", tag),
		PaymentHash: hashOf("payment %s", payment),
		Merchant:    merchant,
		Receipt:     []byte("refund receipt " + tag),
		Time:        epoch,
	}
	for id, v := range coins {
		op.Coins = append(op.Coins, bank.CoinRefund{ID: id, Value: v, Cap: cap})
		op.Amount += v
	}
	return op
}

// credit is a swap input spending a coin's refund credit.
func creditInput(tag string, c ecash.Hash, credit int64) bank.SpentCoin {
	return bank.SpentCoin{ID: c, Permission: permission("credit "+tag, c), Credit: credit}
}

func (f *fixture) coinState(c ecash.Hash) bank.CoinState {
	f.t.Helper()
	st, err := f.s.CoinStates(f.ctx, []ecash.Hash{c})
	if err != nil || len(st) != 1 {
		f.t.Fatalf("CoinStates: %v, %v", st, err)
	}
	return st[0]
}

// testRefund: a refund moves money from the merchant back into
// circulation and gives the coins credit, which a swap then spends once.
func testRefund(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	if _, err := s.Deposit(f.ctx, depositOp(m, 300, "p1", coin("a"), coin("b"), coin("c"))); err != nil {
		t.Fatal(err)
	}
	op := refundOp(m, "p1", "r1", 100, map[ecash.Hash]int64{coin("a"): 100, coin("b"): 30})
	receipt, err := s.Refund(f.ctx, op)
	if err != nil || string(receipt) != string(op.Receipt) {
		t.Fatalf("Refund = %q, %v", receipt, err)
	}
	f.expectBalances(map[uint64]int64{m: 170, bank.AccountOutstanding: 830})
	if r, found, err := s.RefundRecord(f.ctx, op.RequestHash); err != nil || !found || string(r) != string(op.Receipt) {
		t.Errorf("RefundRecord = %q, %v, %v", r, found, err)
	}
	if _, found, err := s.RefundRecord(f.ctx, hashOf("no such refund")); err != nil || found {
		t.Errorf("RefundRecord(unknown) = %v, %v", found, err)
	}
	second := refundOp(m, "p1", "r2", 100, map[ecash.Hash]int64{coin("c"): 5})
	if _, err := s.Refund(f.ctx, second); err != nil {
		t.Fatal(err)
	}
	if rs, err := s.RefundReceipts(f.ctx, op.PaymentHash); err != nil || len(rs) != 2 ||
		string(rs[0]) != string(op.Receipt) || string(rs[1]) != string(second.Receipt) {
		t.Errorf("RefundReceipts = %q, %v; want both receipts in order", rs, err)
	}
	if rs, err := s.RefundReceipts(f.ctx, hashOf("payment none")); err != nil || len(rs) != 0 {
		t.Errorf("RefundReceipts(unrefunded) = %q, %v", rs, err)
	}
	f.expectBalances(map[uint64]int64{m: 165, bank.AccountOutstanding: 835})
	if st := f.coinState(coin("b")); st.Refunded != 30 || st.Credit != 30 || string(st.Permission) != string(permission("p1", coin("b"))) {
		t.Errorf("coin b after the refund: %+v", st)
	}
	if st := f.coinState(coin("zz")); st.Permission != nil || st.Refunded != 0 || st.Credit != 0 {
		t.Errorf("unknown coin: %+v", st)
	}
	// A replay returns the recorded receipt and moves nothing.
	again := op
	again.Receipt = []byte("another receipt")
	if r, err := s.Refund(f.ctx, again); err != nil || string(r) != string(op.Receipt) {
		t.Errorf("replay = %q, %v; want the first receipt", r, err)
	}
	conflict := op
	conflict.Coins = []bank.CoinRefund{{ID: coin("a"), Value: 50, Cap: 100}}
	conflict.Amount = 50
	if _, err := s.Refund(f.ctx, conflict); !errors.Is(err, bank.ErrRequestConflict) {
		t.Errorf("request hash with another amount: %v, want ErrRequestConflict", err)
	}

	// The credit is spent in a swap, once, for exactly its value.
	wrong := swapOp(29, "w", coin("new1"))
	wrong.Coins = append(wrong.Coins, creditInput("w", coin("b"), 29))
	wrong.Value = 29 + 29
	if _, err := s.Swap(f.ctx, wrong); !errors.Is(err, bank.ErrNoCredit) {
		t.Errorf("swap of a part of a credit: %v, want ErrNoCredit", err)
	}
	if spent, _ := s.Spent(f.ctx, []ecash.Hash{coin("new1")}); spent[0] {
		t.Errorf("a refused swap spent its other input")
	}
	sw := swapOp(130, "s1")
	sw.Coins = []bank.SpentCoin{creditInput("s1", coin("a"), 100), creditInput("s1", coin("b"), 30)}
	if _, err := s.Swap(f.ctx, sw); err != nil {
		t.Fatalf("swap of the credit: %v", err)
	}
	if st := f.coinState(coin("a")); st.Refunded != 100 || st.Credit != 0 {
		t.Errorf("coin a after its credit was swapped: %+v", st)
	}
	twice := swapOp(100, "s2")
	twice.Coins = []bank.SpentCoin{creditInput("s2", coin("a"), 100)}
	if _, err := s.Swap(f.ctx, twice); !errors.Is(err, bank.ErrNoCredit) {
		t.Errorf("second swap of a credit: %v, want ErrNoCredit", err)
	}
	// An unspent coin has no credit to spend; a spent one cannot be
	// spent again as if it were new.
	never := swapOp(10, "s3")
	never.Coins = []bank.SpentCoin{creditInput("s3", coin("fresh"), 10)}
	if _, err := s.Swap(f.ctx, never); !errors.Is(err, bank.ErrNoCredit) {
		t.Errorf("credit of an unspent coin: %v, want ErrNoCredit", err)
	}
	var se *bank.SpentError
	if _, err := s.Swap(f.ctx, swapOp(100, "s4", coin("a"))); !errors.As(err, &se) {
		t.Errorf("a refunded coin swapped as new: %v, want *SpentError", err)
	}
	f.expectBalances(map[uint64]int64{m: 165, bank.AccountOutstanding: 835})
	f.checkLedger()
}

// testRefundLimits: refunds stay within what each coin paid, within the
// payment, within the merchant's balance, and only by its merchant.
func testRefundLimits(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m, other := f.merchant(), f.merchant()
	if _, err := s.Deposit(f.ctx, depositOp(m, 200, "p1", coin("a"), coin("b"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refund(f.ctx, refundOp(m, "p1", "r1", 100, map[ecash.Hash]int64{coin("a"): 60})); err != nil {
		t.Fatal(err)
	}
	before := f.balances()
	cases := []struct {
		name string
		op   bank.RefundOp
		want error
	}{
		{"beyond the coin", refundOp(m, "p1", "r2", 100, map[ecash.Hash]int64{coin("a"): 41}), bank.ErrRefundExceeds},
		{"not deposited", refundOp(m, "p9", "r3", 100, map[ecash.Hash]int64{coin("a"): 1}), bank.ErrNotDeposited},
		{"another merchant", refundOp(other, "p1", "r4", 100, map[ecash.Hash]int64{coin("a"): 1}), bank.ErrNotDeposited},
		{"a coin of another payment", refundOp(m, "p1", "r5", 100, map[ecash.Hash]int64{coin("z"): 1}), bank.ErrInvalidOp},
		{"over its cap", refundOp(m, "p1", "r6", 100, map[ecash.Hash]int64{coin("b"): 101}), bank.ErrInvalidOp},
	}
	for _, tc := range cases {
		if _, err := s.Refund(f.ctx, tc.op); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	f.expectBalances(before)
	if st := f.coinState(coin("a")); st.Refunded != 60 || st.Credit != 60 {
		t.Errorf("coin a after refused refunds: %+v", st)
	}
	// Once paid out, the money cannot be refunded.
	if _, err := s.Credit(f.ctx, bank.CreditOp{Account: m, Amount: 140, Payout: true, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refund(f.ctx, refundOp(m, "p1", "r7", 100, map[ecash.Hash]int64{coin("b"): 1})); !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Errorf("refund after payout: %v, want ErrInsufficientFunds", err)
	}
	if st := f.coinState(coin("b")); st.Refunded != 0 || st.Credit != 0 {
		t.Errorf("a refused refund changed coin b: %+v", st)
	}
	f.checkLedger()
}

// testConcurrentRefunds: many refunds race for one coin's value; exactly
// as many as fit succeed.
func testConcurrentRefunds(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	if _, err := s.Deposit(f.ctx, depositOp(m, 100, "p1", coin("a"))); err != nil {
		t.Fatal(err)
	}
	const n = 40
	errs := make([]error, n)
	run(n, func(i int) {
		_, errs[i] = s.Refund(f.ctx, refundOp(m, "p1", fmt.Sprintf("r%d", i), 100, map[ecash.Hash]int64{coin("a"): 10}))
	})
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, bank.ErrRefundExceeds):
			t.Errorf("refund %d: %v", i, err)
		}
	}
	if ok != 10 {
		t.Errorf("%d refunds of 10 succeeded against a coin of 100, want 10", ok)
	}
	if st := f.coinState(coin("a")); st.Refunded != 100 || st.Credit != 100 {
		t.Errorf("coin a: %+v", st)
	}
	f.expectBalances(map[uint64]int64{m: 0, bank.AccountOutstanding: 1000})
	// Many swaps race for the credit: one wins.
	run(n, func(i int) {
		op := swapOp(100, fmt.Sprintf("s%d", i))
		op.Coins = []bank.SpentCoin{creditInput(fmt.Sprint(i), coin("a"), 100)}
		_, errs[i] = s.Swap(f.ctx, op)
	})
	ok = 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, bank.ErrNoCredit):
			t.Errorf("swap %d: %v", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("the credit was swapped %d times, want once", ok)
	}
	f.checkLedger()
}

// testRefundCount: a payment takes at most MaxRefunds refunds, as many as
// RefundReceipts lists, so that every coin's credit is backed by receipts
// a wallet can fetch.
func testRefundCount(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(10 * bank.MaxRefunds)
	m := f.merchant()
	if _, err := s.Deposit(f.ctx, depositOp(m, 4*bank.MaxRefunds, "p1", coin("a"))); err != nil {
		t.Fatal(err)
	}
	refund := func(i int) error {
		_, err := s.Refund(f.ctx, refundOp(m, "p1", fmt.Sprintf("r%d", i), 4*bank.MaxRefunds, map[ecash.Hash]int64{coin("a"): 1}))
		return err
	}
	for i := range bank.MaxRefunds {
		if err := refund(i); err != nil {
			t.Fatalf("refund %d: %v", i, err)
		}
	}
	if err := refund(bank.MaxRefunds); !errors.Is(err, bank.ErrTooManyRefunds) {
		t.Fatalf("refund %d of one payment: %v, want ErrTooManyRefunds", bank.MaxRefunds+1, err)
	}
	// A retry of one applied is still answered from its record.
	if err := refund(7); err != nil {
		t.Fatalf("a retry of refund 7: %v", err)
	}
	rs, err := s.RefundReceipts(f.ctx, hashOf("payment p1"))
	if err != nil || len(rs) != bank.MaxRefunds {
		t.Fatalf("RefundReceipts: %d, %v; want %d", len(rs), err, bank.MaxRefunds)
	}
	if st := f.coinState(coin("a")); st.Credit != bank.MaxRefunds {
		t.Errorf("the coin's credit %d, want %d: one per receipt", st.Credit, bank.MaxRefunds)
	}
	f.expectBalances(map[uint64]int64{m: 3 * bank.MaxRefunds})
	f.checkLedger()
}
