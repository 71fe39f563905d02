package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// testIssued: withdrawals and swaps index their signatures by blinded
// message; refused and replayed operations index nothing new.
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
	sw.Blinded = []ecash.Hash{hashOf("blinded 3"), hashOf("blinded 6")}
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

// testIssuedOnce: a blinded message is signed in one request only. A new
// request (withdrawal or swap) with one already signed in another is
// refused with ErrAlreadyIssued, debiting and spending nothing: a wallet
// whose planchet counter went back (a directory put back from a backup)
// would otherwise pay again for coins it had, perhaps spent. The request
// that signed it is still answered from its record when retried, and one
// request may hold the same blinded message twice.
func testIssuedOnce(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	w := withdrawOp(c, 200, "w1")
	w.Blinded = []ecash.Hash{hashOf("blinded 1"), hashOf("blinded 2")}
	if _, err := s.Withdraw(f.ctx, w); err != nil {
		t.Fatal(err)
	}
	again := withdrawOp(c, 200, "w2")
	again.Blinded = []ecash.Hash{hashOf("blinded 3"), hashOf("blinded 2")}
	if _, err := s.Withdraw(f.ctx, again); !errors.Is(err, bank.ErrAlreadyIssued) {
		t.Fatalf("withdrawal of a blinded message a withdrawal signed: %v, want ErrAlreadyIssued", err)
	}
	f.fundOutstanding(300)
	sw := swapOp(100, "s1", coin("a"))
	sw.Blinded = []ecash.Hash{hashOf("blinded 4"), hashOf("blinded 1")}
	if _, err := s.Swap(f.ctx, sw); !errors.Is(err, bank.ErrAlreadyIssued) {
		t.Fatalf("swap of a blinded message a withdrawal signed: %v, want ErrAlreadyIssued", err)
	}
	if st := f.coinState(coin("a")); st.Permission != nil {
		t.Errorf("the refused swap spent its input: %+v", st)
	}
	sw2 := swapOp(100, "s2", coin("a"))
	sw2.Blinded = []ecash.Hash{hashOf("blinded 5"), hashOf("blinded 6")}
	sigs, err := s.Swap(f.ctx, sw2)
	if err != nil {
		t.Fatal(err)
	}
	w3 := withdrawOp(c, 100, "w3")
	w3.Blinded = []ecash.Hash{hashOf("blinded 6"), hashOf("blinded 7")}
	if _, err := s.Withdraw(f.ctx, w3); !errors.Is(err, bank.ErrAlreadyIssued) {
		t.Fatalf("withdrawal of a blinded message a swap signed: %v, want ErrAlreadyIssued", err)
	}
	// Retries of the requests that signed them are answered.
	if got, err := s.Withdraw(f.ctx, w); err != nil || !equalSigs(got, w.BlindSigs) {
		t.Fatalf("withdrawal retried: %q, %v", got, err)
	}
	if got, err := s.Swap(f.ctx, sw2); err != nil || !equalSigs(got, sigs) {
		t.Fatalf("swap retried: %q, %v", got, err)
	}
	twice := withdrawOp(c, 100, "w4")
	twice.Blinded = []ecash.Hash{hashOf("blinded 8"), hashOf("blinded 8")}
	if _, err := s.Withdraw(f.ctx, twice); err != nil {
		t.Fatalf("one request with a blinded message twice: %v", err)
	}
	got, err := s.Issued(f.ctx, []ecash.Hash{hashOf("blinded 2"), hashOf("blinded 3"), hashOf("blinded 4"), hashOf("blinded 7"), hashOf("blinded 8")})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] == nil || got[0].Request != w.RequestHash || got[1] != nil || got[2] != nil || got[3] != nil || got[4] == nil || !bytes.Equal(got[4].Sig, twice.BlindSigs[0]) {
		t.Errorf("Issued after the refusals = %+v", got)
	}
	f.expectBalances(map[uint64]int64{c: 700})

	// Concurrent requests with one blinded message: one is signed.
	const n = 8
	errs := make([]error, n)
	run(n, func(i int) {
		op := withdrawOp(c, 10, fmt.Sprintf("race %d", i))
		op.Blinded = []ecash.Hash{hashOf("raced"), hashOf("race %d", i)}
		_, errs[i] = s.Withdraw(f.ctx, op)
	})
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, bank.ErrAlreadyIssued):
			t.Errorf("racing withdrawal %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d withdrawals of one blinded message were signed, want 1", won, n)
	}
	f.expectBalances(map[uint64]int64{c: 690})
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

// testIssuedFirstPosition: a blinded message twice in one request is
// indexed at its first position, however many messages the request holds
// and in whatever order they repeat.
func testIssuedFirstPosition(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	const n, distinct = 40, 5
	op := withdrawOp(c, 100, "repeats")
	op.BlindSigs = nil
	first := map[ecash.Hash]int{}
	for i := range n {
		h := hashOf("repeated blinded %d", i*7%distinct)
		op.Blinded = append(op.Blinded, h)
		op.BlindSigs = append(op.BlindSigs, fmt.Appendf(nil, "sig at %d", i))
		if _, ok := first[h]; !ok {
			first[h] = i
		}
	}
	if _, err := s.Withdraw(f.ctx, op); err != nil {
		t.Fatal(err)
	}
	got, err := s.Issued(f.ctx, op.Blinded)
	if err != nil {
		t.Fatal(err)
	}
	for i, is := range got {
		at := first[op.Blinded[i]]
		if is == nil || !bytes.Equal(is.Sig, op.BlindSigs[at]) {
			t.Errorf("Issued(blinded at %d) = %+v, want %q, the signature at its first position", i, is, op.BlindSigs[at])
		}
	}
}

// testIssuedAcrossKinds: a blinded message indexed for a swap is indexed
// for another request than a withdrawal under the same hash, and the
// reverse: the one that comes second is ErrAlreadyIssued, as for any
// other request, and changes nothing. (The bank hashes each kind of
// request with a tag of its own, so only the store's contract keeps them
// apart; it names no kind.)
func testIssuedAcrossKinds(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	c := f.customer()
	f.credit(c, 1000)
	sw := swapOp(100, "indexed", coin("a"))
	sw.Blinded = []ecash.Hash{hashOf("blinded 1"), hashOf("blinded 2")}
	if _, err := s.Swap(f.ctx, sw); err != nil {
		t.Fatal(err)
	}
	w := withdrawOp(c, 100, "under the swap's hash")
	w.RequestHash = sw.RequestHash
	w.Blinded = []ecash.Hash{hashOf("blinded 3"), hashOf("blinded 2")}
	if _, err := s.Withdraw(f.ctx, w); !errors.Is(err, bank.ErrAlreadyIssued) {
		t.Errorf("withdrawal under a swap's hash of a message the swap signed: %v, want ErrAlreadyIssued", err)
	}
	if _, found, err := s.Withdrawal(f.ctx, w.RequestHash); err != nil || found {
		t.Errorf("Withdrawal of the refused withdrawal: found %v, %v", found, err)
	}

	w = withdrawOp(c, 100, "indexed")
	w.Blinded = []ecash.Hash{hashOf("blinded 4")}
	w.BlindSigs = w.BlindSigs[:1]
	if _, err := s.Withdraw(f.ctx, w); err != nil {
		t.Fatal(err)
	}
	sw = swapOp(100, "under the withdrawal's hash", coin("b"))
	sw.RequestHash = w.RequestHash
	sw.Blinded = []ecash.Hash{hashOf("blinded 4"), hashOf("blinded 5")}
	if _, err := s.Swap(f.ctx, sw); !errors.Is(err, bank.ErrAlreadyIssued) {
		t.Errorf("swap under a withdrawal's hash of a message the withdrawal signed: %v, want ErrAlreadyIssued", err)
	}
	if spent, err := s.Spent(f.ctx, []ecash.Hash{coin("b")}); err != nil || spent[0] {
		t.Errorf("the refused swap's input spent: %v, %v", spent, err)
	}
	got, err := s.Issued(f.ctx, []ecash.Hash{hashOf("blinded 2"), hashOf("blinded 3"), hashOf("blinded 4"), hashOf("blinded 5")})
	if err != nil {
		t.Fatal(err)
	}
	kinds := make([]string, len(got))
	for i, is := range got {
		if is != nil {
			kinds[i] = is.Kind
		}
	}
	if want := []string{bank.KindSwap, "", bank.KindWithdraw, ""}; !slices.Equal(kinds, want) {
		t.Errorf("Issued kinds = %q, want %q", kinds, want)
	}
	f.expectBalances(map[uint64]int64{c: 900, bank.AccountOutstanding: 1100})
	f.checkLedger()
}
