package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// swapOp builds a swap of coins worth value for two fake signatures; each
// coin's fake permission names the coin and the swap.
func swapOp(value int64, tag string, coins ...ecash.Hash) bank.SwapOp {
	op := bank.SwapOp{
		RequestHash: hashOf("swap %s", tag),
		Value:       value,
		BlindSigs:   [][]byte{[]byte("swap-sig-1 " + tag), []byte("swap-sig-2 " + tag)},
		Time:        epoch,
	}
	for _, c := range coins {
		op.Coins = append(op.Coins, bank.SpentCoin{ID: c, Permission: permission("swap "+tag, c)})
	}
	return op
}

// testSwap: a swap spends its coins and records its signatures; no money
// moves in the ledger.
func testSwap(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	before := f.balances()
	op := swapOp(300, "s1", coin("a"), coin("b"))
	sigs, err := s.Swap(f.ctx, op)
	if err != nil {
		t.Fatal(err)
	}
	if !equalSigs(sigs, op.BlindSigs) {
		t.Errorf("Swap returned %q, want %q", sigs, op.BlindSigs)
	}
	f.expectBalances(before)
	got, found, err := s.SwapRecord(f.ctx, op.RequestHash)
	if err != nil || !found || !equalSigs(got, op.BlindSigs) {
		t.Errorf("SwapRecord = %q, %v, %v; want the signatures", got, found, err)
	}
	if _, found, err := s.SwapRecord(f.ctx, hashOf("no such swap")); err != nil || found {
		t.Errorf("SwapRecord(unknown) = %v, %v", found, err)
	}
	// The inputs are spent: a deposit of one of them is refused with the
	// swap's permission as the evidence.
	_, err = s.Deposit(f.ctx, depositOp(m, 100, "p1", coin("c"), coin("b")))
	var se *bank.SpentError
	if !errors.As(err, &se) || se.Coin != coin("b") || string(se.Permission) != string(permission("swap s1", coin("b"))) {
		t.Fatalf("deposit of a swapped coin: %v, want *SpentError with the swap permission", err)
	}
	f.expectBalances(before)
	f.checkLedger()
}

func testSwapReplay(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	op := swapOp(200, "s1", coin("a"), coin("b"))
	first, err := s.Swap(f.ctx, op)
	if err != nil {
		t.Fatal(err)
	}
	// A retry, its coins in another order, gets the recorded signatures
	// even if it carries others (the service signs again before asking).
	again := op
	again.Coins = []bank.SpentCoin{op.Coins[1], op.Coins[0]}
	again.BlindSigs = [][]byte{[]byte("other"), []byte("sigs")}
	sigs, err := s.Swap(f.ctx, again)
	if err != nil || !equalSigs(sigs, first) {
		t.Fatalf("replay = %q, %v; want the first signatures", sigs, err)
	}
	otherCoins := swapOp(200, "s1", coin("a"), coin("c"))
	if _, err := s.Swap(f.ctx, otherCoins); !errors.Is(err, bank.ErrRequestConflict) {
		t.Errorf("request hash with other coins: %v, want ErrRequestConflict", err)
	}
	otherValue := swapOp(300, "s1", coin("a"), coin("b"))
	if _, err := s.Swap(f.ctx, otherValue); !errors.Is(err, bank.ErrRequestConflict) {
		t.Errorf("request hash with another value: %v, want ErrRequestConflict", err)
	}
	// coin c was not spent by the refused conflict.
	if _, err := s.Swap(f.ctx, swapOp(100, "s2", coin("c"))); err != nil {
		t.Errorf("swap of a coin a refused swap named: %v", err)
	}
	f.checkLedger()
}

// testSwapSpendsOnce: a coin spent by a deposit or a swap cannot be swapped,
// and a refused swap spends none of its coins.
func testSwapSpendsOnce(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	if _, err := s.Deposit(f.ctx, depositOp(m, 100, "p1", coin("paid"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Swap(f.ctx, swapOp(100, "s1", coin("swapped"))); err != nil {
		t.Fatal(err)
	}
	before := f.balances()
	for _, spent := range []string{"paid", "swapped"} {
		op := swapOp(200, "again "+spent, coin("fresh"), coin(spent))
		_, err := s.Swap(f.ctx, op)
		var se *bank.SpentError
		if !errors.As(err, &se) || se.Coin != coin(spent) || !errors.Is(err, ecash.ErrDoubleSpend) {
			t.Errorf("swap of the %s coin: %v, want *SpentError for it", spent, err)
		}
		if _, found, _ := s.SwapRecord(f.ctx, op.RequestHash); found {
			t.Errorf("refused swap recorded")
		}
	}
	f.expectBalances(before)
	if _, err := s.Swap(f.ctx, swapOp(100, "s2", coin("fresh"))); err != nil {
		t.Errorf("coin of refused swaps is not free: %v", err)
	}
	f.checkLedger()
}

// testSwapNonceLocks: withdrawals and swaps share one table of CS nonce
// locks (the same denomination key answers both).
func testSwapNonceLocks(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	f.fundOutstanding(1000)
	lock := bank.NonceLock{Denom: hashOf("denom"), Nonce: []byte("nonce-1"), Blinded: hashOf("challenge A")}
	w := withdrawOp(c, 100, "w1")
	w.Locks = []bank.NonceLock{lock}
	if _, err := s.Withdraw(f.ctx, w); err != nil {
		t.Fatal(err)
	}
	bad := lock
	bad.Blinded = hashOf("challenge B")
	sw := swapOp(100, "s1", coin("a"))
	sw.Locks = []bank.NonceLock{bad}
	if _, err := s.Swap(f.ctx, sw); !errors.Is(err, bank.ErrNonceReused) {
		t.Fatalf("swap answering a withdrawal's nonce anew: %v, want ErrNonceReused", err)
	}
	// The refused swap spent nothing and locked nothing.
	lock2 := bank.NonceLock{Denom: hashOf("denom"), Nonce: []byte("nonce-2"), Blinded: hashOf("challenge C")}
	sw = swapOp(100, "s2", coin("a"))
	sw.Locks = []bank.NonceLock{lock2, lock}
	if _, err := s.Swap(f.ctx, sw); err != nil {
		t.Fatalf("swap with the same blinded message and a new nonce: %v", err)
	}
	w2 := withdrawOp(c, 100, "w2")
	w2.Locks = []bank.NonceLock{{Denom: lock2.Denom, Nonce: lock2.Nonce, Blinded: hashOf("challenge D")}}
	if _, err := s.Withdraw(f.ctx, w2); !errors.Is(err, bank.ErrNonceReused) {
		t.Fatalf("withdrawal answering a swap's nonce anew: %v, want ErrNonceReused", err)
	}
	f.expectBalances(map[uint64]int64{c: 900})
	f.checkLedger()
}

func testInvalidSwaps(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	bad := map[string]bank.SwapOp{}
	for _, v := range []int64{0, -1} {
		bad[fmt.Sprint("value ", v)] = swapOp(v, fmt.Sprint("v", v), coin("a"))
	}
	bad["no coins"] = swapOp(100, "none")
	noSigs := swapOp(100, "nosigs", coin("a"))
	noSigs.BlindSigs = nil
	bad["no signatures"] = noSigs
	dup := swapOp(100, "dup", coin("a"), coin("a"))
	bad["a coin twice"] = dup
	big := swapOp(100, "big", coin("a"))
	big.Coins[0].Permission = make([]byte, bank.MaxPermissionLen+1)
	bad["oversized permission"] = big
	twice := swapOp(100, "twice", coin("a"))
	l := bank.NonceLock{Denom: hashOf("d"), Nonce: []byte("n"), Blinded: hashOf("b")}
	twice.Locks = []bank.NonceLock{l, l}
	bad["a nonce twice"] = twice
	for name, op := range bad {
		if _, err := s.Swap(f.ctx, op); err == nil {
			t.Errorf("swap with %s succeeded", name)
		}
	}
	if _, err := s.Swap(f.ctx, swapOp(100, "ok", coin("a"))); err != nil {
		t.Errorf("coin of refused swaps is not free: %v", err)
	}
	f.checkLedger()
}

// testConcurrentSwapAndDeposit: many swaps and deposits race for one coin;
// exactly one wins, and every loser sees the winner's permission.
func testConcurrentSwapAndDeposit(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	const n = 60
	errs := make([]error, n)
	perms := make([]string, n)
	run(n, func(i int) {
		tag := fmt.Sprintf("race %d", i)
		if i%2 == 0 {
			op := swapOp(100, tag, coin("contested"))
			perms[i] = string(op.Coins[0].Permission)
			_, errs[i] = s.Swap(f.ctx, op)
		} else {
			op := depositOp(m, 100, tag, coin("contested"))
			perms[i] = string(op.Coins[0].Permission)
			_, errs[i] = s.Deposit(f.ctx, op)
		}
	})
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("coin spent twice: by %d and %d", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no spend succeeded; first error: %v", errs[0])
	}
	for i, err := range errs {
		var se *bank.SpentError
		if i != winner && (!errors.As(err, &se) || string(se.Permission) != perms[winner]) {
			t.Errorf("spend %d: %v, want *SpentError with the winner's permission", i, err)
		}
	}
	want := map[uint64]int64{m: 0, bank.AccountOutstanding: 1000}
	if winner%2 == 1 {
		want = map[uint64]int64{m: 100, bank.AccountOutstanding: 900}
	}
	f.expectBalances(want)
	f.checkLedger()
}

// testSpendAcrossKinds: a coin is spent once, whatever spent it. Deposits
// and swaps keep separate records, and the store's contract does not keep
// their hashes apart (the bank does, hashing each kind of request with a
// tag of its own; a recoup is recorded as a deposit or as a swap, as its
// coin's origin says, under its own request's hash): a deposit under the
// hash a swap was recorded under, or a swap under a deposit's, does not
// make the coin the other spent count as its own.
func testSpendAcrossKinds(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	m := f.merchant()
	sw := swapOp(100, "s1", coin("a"))
	if _, err := s.Swap(f.ctx, sw); err != nil {
		t.Fatal(err)
	}
	dep := depositOp(m, 100, "d1", coin("a"))
	dep.PaymentHash = sw.RequestHash
	var se *bank.SpentError
	if _, err := s.Deposit(f.ctx, dep); !errors.As(err, &se) || se.Coin != coin("a") || string(se.Permission) != string(sw.Coins[0].Permission) {
		t.Errorf("deposit under the swap's hash of the coin it swapped: %v, want *SpentError with the swap's permission", err)
	}
	f.expectBalances(map[uint64]int64{m: 0, bank.AccountOutstanding: 1000})
	// With other coins, the first spent in the op's order is reported,
	// spent under this hash or another, and the unspent one stays so.
	other := depositOp(m, 100, "d0", coin("z"))
	if _, err := s.Deposit(f.ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		coins []ecash.Hash
		first ecash.Hash
		perm  []byte
	}{
		{[]ecash.Hash{coin("x"), coin("a"), coin("z")}, coin("a"), sw.Coins[0].Permission},
		{[]ecash.Hash{coin("x"), coin("z"), coin("a")}, coin("z"), other.Coins[0].Permission},
	} {
		dep := depositOp(m, 300, "d1", tc.coins...)
		dep.PaymentHash = sw.RequestHash
		if _, err := s.Deposit(f.ctx, dep); !errors.As(err, &se) || se.Coin != tc.first || string(se.Permission) != string(tc.perm) {
			t.Errorf("deposit of %v under the swap's hash: %v, want *SpentError for %v with its permission", tc.coins, err, tc.first)
		}
	}
	if spent, err := s.Spent(f.ctx, []ecash.Hash{coin("x")}); err != nil || spent[0] {
		t.Errorf("the refused deposits' unspent coin spent: %v, %v", spent, err)
	}
	f.expectBalances(map[uint64]int64{m: 100, bank.AccountOutstanding: 900})

	dep = depositOp(m, 100, "d2", coin("b"))
	if _, err := s.Deposit(f.ctx, dep); err != nil {
		t.Fatal(err)
	}
	sw = swapOp(100, "s2", coin("b"))
	sw.RequestHash = dep.PaymentHash
	if _, err := s.Swap(f.ctx, sw); !errors.As(err, &se) || se.Coin != coin("b") || string(se.Permission) != string(dep.Coins[0].Permission) {
		t.Errorf("swap under the deposit's hash of the coin it paid: %v, want *SpentError with the deposit's permission", err)
	}
	if _, found, err := s.SwapRecord(f.ctx, sw.RequestHash); err != nil || found {
		t.Errorf("SwapRecord of the refused swap: found %v, %v", found, err)
	}
	f.expectBalances(map[uint64]int64{m: 200, bank.AccountOutstanding: 800})
	f.checkLedger()
}
