package storetest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// testIssued: withdrawals and swaps index their signatures by blinded
// message; the first origin of a blinded message stays; refused and
// replayed operations index nothing new.
func testIssued(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	w := withdrawOp(c, 200, "w1")
	w.Blinded = []ecash.Hash{hashOf("blinded 1"), hashOf("blinded 2")}
	if _, err := s.Withdraw(f.ctx, w); err != nil {
		t.Fatal(err)
	}
	sw := swapOp(100, "s1", coin("a"))
	sw.Blinded = []ecash.Hash{hashOf("blinded 3"), hashOf("blinded 1")} // 1 answered before
	if _, err := s.Swap(f.ctx, sw); err != nil {
		t.Fatal(err)
	}
	// A refused withdrawal indexes nothing.
	poor := withdrawOp(c, 1<<40, "w2")
	poor.Blinded = []ecash.Hash{hashOf("blinded 4"), hashOf("blinded 5")}
	if _, err := s.Withdraw(f.ctx, poor); !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Fatalf("withdraw beyond the balance: %v", err)
	}
	got, err := s.Issued(f.ctx, []ecash.Hash{hashOf("blinded 2"), hashOf("blinded 3"), hashOf("blinded 4"), hashOf("blinded 1"), hashOf("blinded 2")})
	if err != nil {
		t.Fatal(err)
	}
	want := []*bank.Issued{
		{Sig: w.BlindSigs[1], Kind: bank.KindWithdraw, Request: w.RequestHash, Account: c},
		{Sig: sw.BlindSigs[0], Kind: bank.KindSwap, Request: sw.RequestHash},
		nil,
		{Sig: w.BlindSigs[0], Kind: bank.KindWithdraw, Request: w.RequestHash, Account: c},
		{Sig: w.BlindSigs[1], Kind: bank.KindWithdraw, Request: w.RequestHash, Account: c},
	}
	for i := range want {
		g, w := got[i], want[i]
		switch {
		case (g == nil) != (w == nil):
			t.Errorf("Issued[%d] = %+v, want %+v", i, g, w)
		case g != nil && (!bytes.Equal(g.Sig, w.Sig) || g.Kind != w.Kind || g.Request != w.Request || g.Account != w.Account):
			t.Errorf("Issued[%d] = %+v, want %+v", i, g, w)
		}
	}
	bad := withdrawOp(c, 100, "w3")
	bad.Blinded = []ecash.Hash{hashOf("only one")}
	if _, err := s.Withdraw(f.ctx, bad); !errors.Is(err, bank.ErrInvalidOp) {
		t.Errorf("one blinded hash for two signatures: %v, want ErrInvalidOp", err)
	}
	f.checkLedger()
}

// testSpent: coins deposited or swapped are spent, others not.
func testSpent(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	dep, sw := depositOp(m, 100, "p1", coin("paid")), swapOp(100, "s1", coin("swapped"))
	if _, err := s.Deposit(f.ctx, dep); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Swap(f.ctx, sw); err != nil {
		t.Fatal(err)
	}
	// CoinStates names what spent each coin: a swap's pre-check tells a
	// retry of itself from a replay by it.
	if st := f.coinState(coin("paid")); st.Permission == nil || st.SpentBy != dep.PaymentHash {
		t.Errorf("the paid coin: spent by %x, want the payment %x", st.SpentBy[:8], dep.PaymentHash[:8])
	}
	if st := f.coinState(coin("swapped")); st.Permission == nil || st.SpentBy != sw.RequestHash {
		t.Errorf("the swapped coin: spent by %x, want the swap %x", st.SpentBy[:8], sw.RequestHash[:8])
	}
	if st := f.coinState(coin("fresh")); st.Permission != nil || st.SpentBy != (ecash.Hash{}) {
		t.Errorf("a fresh coin: %+v", st)
	}
	got, err := s.Spent(f.ctx, []ecash.Hash{coin("fresh"), coin("paid"), coin("swapped"), coin("paid")})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true, true, true}; len(got) != len(want) || got[0] || !got[1] || !got[2] || !got[3] {
		t.Errorf("Spent = %v, want %v", got, want)
	}
}
