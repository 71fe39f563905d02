package storetest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// eur is a test amount of n cents.
func eur(n int64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: uint64(n)} }

// unverifiedSig fills the account or customer signature of a debit's
// entry: a store does not verify it (the auditor does).
var unverifiedSig = make([]byte, 64)

// entries reads the whole log.
func (f *fixture) entries() []*auditlog.Entry {
	f.t.Helper()
	size, err := f.s.LogSize(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*auditlog.Entry
	for from := int64(0); from < size; {
		raw, err := f.s.LogEntries(f.ctx, from, bank.MaxLogRead, bank.MaxLogReadBytes)
		if err != nil {
			f.t.Fatal(err)
		}
		if len(raw) == 0 {
			f.t.Fatalf("LogEntries(%d) empty below size %d", from, size)
		}
		for _, b := range raw {
			e, err := auditlog.DecodeEntry(b)
			if err != nil {
				f.t.Fatalf("entry %d: %v", from, err)
			}
			if e.Index != from {
				f.t.Fatalf("entry at %d names index %d", from, e.Index)
			}
			out = append(out, e)
			from++
		}
	}
	return out
}

// checkLogTree replays the log and checks the store's stored hashes give
// the same tree.
func (f *fixture) checkLogTree() {
	f.t.Helper()
	size, err := f.s.LogSize(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var raw [][]byte
	for from := int64(0); from < size; {
		b, err := f.s.LogEntries(f.ctx, from, bank.MaxLogRead, bank.MaxLogReadBytes)
		if err != nil {
			f.t.Fatal(err)
		}
		raw = append(raw, b...)
		from += int64(len(b))
	}
	root, err := auditlog.TreeHash(size, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return f.s.LogHashes(f.ctx, ix) }))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := auditlog.VerifyLog(auditlog.Checkpoint{Origin: auditlog.Origin(ecash.Hash{}), Size: size, Root: root}, raw); err != nil {
		f.t.Fatalf("the stored hashes do not match the entries: %v", err)
	}
}

func kinds(es []*auditlog.Entry) []auditlog.Kind {
	var out []auditlog.Kind
	for _, e := range es {
		out = append(out, e.Kind())
	}
	return out
}

// testLog: each state change appends its entry in the same commit, in
// commit order; refusals and replays append nothing; a refused entry
// refuses the op; the stored hashes make the tree of the entries.
func testLog(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	if n := len(f.entries()); n != 0 {
		t.Fatalf("new store has %d log entries", n)
	}
	c := f.customer()
	m := f.merchant()
	credit := bank.CreditOp{Account: c, Amount: 1000, Time: epoch, Reference: "slip-1",
		Log: auditlog.Credit{Account: c, Amount: eur(1000), Reference: auditlog.OptionalHash("slip-1")}}
	for range 2 { // the replay appends nothing
		if _, err := s.Credit(f.ctx, credit); err != nil {
			t.Fatal(err)
		}
	}
	d := hashOf("denom")
	w := withdrawOp(c, 200, "w1")
	w.Log = auditlog.Withdraw{Account: c, Amount: eur(200), RequestHash: w.RequestHash, AccountSig: unverifiedSig, Issued: []auditlog.DenomCount{{Denom: d, Value: eur(100), Count: 2}}}
	for range 2 {
		if _, err := s.Withdraw(f.ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	poor := withdrawOp(c, 5000, "w2")
	poor.Log = auditlog.Withdraw{Account: c, Amount: eur(5000), RequestHash: poor.RequestHash, AccountSig: unverifiedSig, Issued: []auditlog.DenomCount{{Denom: d, Value: eur(2500), Count: 2}}}
	if _, err := s.Withdraw(f.ctx, poor); !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Fatalf("withdraw beyond the balance: %v", err)
	}
	dep := depositOp(m, 100, "p1", coin("a"))
	dep.Log = auditlog.Deposit{Merchant: m, Amount: eur(100), PaymentHash: dep.PaymentHash,
		Coins: []auditlog.SpentCoin{{ID: coin("a"), Denom: d, Value: eur(100), PermissionHash: ecash.HashOf(dep.Coins[0].Permission)}}}
	if _, err := s.Deposit(f.ctx, dep); err != nil {
		t.Fatal(err)
	}
	again := depositOp(m, 100, "p2", coin("a"))
	again.Log = dep.Log
	if _, err := s.Deposit(f.ctx, again); !errors.Is(err, ecash.ErrDoubleSpend) {
		t.Fatalf("second deposit of a coin: %v", err)
	}
	sw := swapOp(100, "s1", coin("b"))
	sw.Log = auditlog.Swap{RequestHash: sw.RequestHash, AmountIn: eur(100), AmountOut: eur(100),
		Spent:  []auditlog.SpentCoin{{ID: coin("b"), Denom: d, Value: eur(100), PermissionHash: ecash.HashOf(sw.Coins[0].Permission)}},
		Issued: []auditlog.DenomCount{{Denom: d, Value: eur(50), Count: 2}}}
	if _, err := s.Swap(f.ctx, sw); err != nil {
		t.Fatal(err)
	}
	chk := checkOp("m-1-1", c, m, 300)
	chk.Log = auditlog.Check{EPOID: chk.EPOID, EPOHash: chk.EPOHash, CustomerSig: unverifiedSig, Customer: c, Merchant: m, Amount: eur(300)}
	f.check(chk)
	big := checkOp("m-1-2", c, m, 1<<40)
	big.Log = auditlog.Check{EPOID: big.EPOID, EPOHash: big.EPOHash, CustomerSig: unverifiedSig, Customer: c, Merchant: m, Amount: eur(1 << 40)}
	if out := f.check(big); out.Outcome != bank.CheckDeclinedFunds {
		t.Fatalf("check beyond the balance: %s", out.Outcome)
	}
	ks1, ks2 := signedKeySet(epoch), signedKeySet(epoch.Add(time.Hour))
	for range 2 {
		if err := s.PublishKeySet(f.ctx, ks1, epoch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PublishKeySet(f.ctx, ks2, epoch); err != nil {
		t.Fatal(err)
	}
	// An entry the log refuses refuses the op, which changes nothing.
	bad := withdrawOp(c, 100, "w3")
	bad.Log = auditlog.Withdraw{Account: c, Amount: eur(999), RequestHash: bad.RequestHash, AccountSig: unverifiedSig, Issued: []auditlog.DenomCount{{Denom: d, Value: eur(100), Count: 1}}}
	before := f.balance(c)
	if _, err := s.Withdraw(f.ctx, bad); !errors.Is(err, bank.ErrInvalidOp) {
		t.Fatalf("withdraw with an entry that does not add up: %v, want ErrInvalidOp", err)
	}
	if f.balance(c) != before {
		t.Fatal("a refused entry moved money")
	}
	if _, found, _ := s.Withdrawal(f.ctx, bad.RequestHash); found {
		t.Fatal("a refused entry's withdrawal was recorded")
	}

	es := f.entries()
	want := []auditlog.Kind{auditlog.KindAccountOpened, auditlog.KindAccountOpened, auditlog.KindCredit, auditlog.KindWithdraw,
		auditlog.KindDeposit, auditlog.KindSwap, auditlog.KindCheck, auditlog.KindCheck, auditlog.KindKeySet, auditlog.KindKeySet}
	if got := kinds(es); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("log kinds %v, want %v", got, want)
	}
	if o := es[0].Op.(auditlog.AccountOpened); o.Account != c || o.Merchant || !bytes.Equal(o.Key, fakeKey("user-1")) {
		t.Errorf("account entry %+v", o)
	}
	if o := es[6].Op.(auditlog.Check); o.Outcome != mustOutcome(t, bank.CheckApproved) {
		t.Errorf("first check logged as %v", o.Outcome)
	}
	if o := es[7].Op.(auditlog.Check); o.Outcome != mustOutcome(t, bank.CheckDeclinedFunds) {
		t.Errorf("declined check logged as %v", o.Outcome)
	}
	if o := es[9].Op.(auditlog.KeySet); !bytes.Equal(o.Signed, ks2) {
		t.Errorf("key set entry %q", o.Signed)
	}
	for name, c := range map[string]struct {
		ref  ecash.Hash
		want int64
	}{"withdraw": {w.RequestHash, 3}, "deposit": {dep.PaymentHash, 4}, "swap": {sw.RequestHash, 5}, "check": {chk.EPOHash, 6},
		// Published twice, logged once: found by the hash of its bytes.
		"first key set": {sha256.Sum256(ks1), 8}, "second key set": {sha256.Sum256(ks2), 9}} {
		got, found, err := s.LogIndex(f.ctx, c.ref)
		if err != nil || !found || got != c.want {
			t.Errorf("LogIndex(%s) = %d, %v, %v; want %d", name, got, found, err, c.want)
		}
	}
	if _, found, err := s.LogIndex(f.ctx, poor.RequestHash); err != nil || found {
		t.Errorf("LogIndex(refused withdrawal) = %v, %v", found, err)
	}
	f.checkLogTree()
	f.checkLedger()
}

// signedKeySet is a master-signed key set without denominations.
func signedKeySet(issued time.Time) []byte {
	master := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	ks := &ecash.KeySet{Currency: "EUR", MasterPub: master.Public().(ed25519.PublicKey), SigningPub: fakeKey("signing"),
		HPKEPub: make([]byte, 32), IssuedAt: issued}
	ks.Sign(master)
	return ks.Encode()
}

func mustOutcome(t *testing.T, s string) auditlog.Outcome {
	t.Helper()
	o, err := auditlog.ParseOutcome(s)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// testConcurrentLog: many concurrent operations each append exactly one
// entry; the log has no gap and its stored hashes match its entries.
func testConcurrentLog(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	const n = 40
	ids := make([]uint64, n)
	run(n, func(i int) {
		name := fmt.Sprintf("concurrent-%d", i)
		id, err := s.OpenAccount(f.ctx, name, fakeKey(name), false, epoch)
		if err != nil {
			t.Error(err)
		}
		ids[i] = id
	})
	run(n, func(i int) {
		op := bank.CreditOp{Account: ids[i], Amount: int64(i + 1), Time: epoch, Log: auditlog.Credit{Account: ids[i], Amount: eur(int64(i + 1))}}
		if _, err := s.Credit(f.ctx, op); err != nil {
			t.Error(err)
		}
	})
	es := f.entries()
	if len(es) != 2*n {
		t.Fatalf("%d entries for %d operations", len(es), 2*n)
	}
	credited := map[uint64]bool{}
	for _, e := range es[n:] {
		c, ok := e.Op.(auditlog.Credit)
		if !ok || credited[c.Account] {
			t.Fatalf("entry %d: %+v", e.Index, e.Op)
		}
		credited[c.Account] = true
	}
	f.checkLogTree()
}

// testLogReadBudget: a log read stops after the entry that brings its size
// to the budget, returns at least one entry whatever the budget, and
// returns the same bytes as an unbounded read.
func testLogReadBudget(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	for i := range 6 {
		name := fmt.Sprintf("budget-%d", i)
		if _, err := s.OpenAccount(f.ctx, name, fakeKey(name), false, epoch); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.LogEntries(f.ctx, 0, bank.MaxLogRead, bank.MaxLogReadBytes)
	if err != nil || len(all) < 6 {
		t.Fatalf("the whole log: %d entries, %v", len(all), err)
	}
	for _, tc := range []struct {
		budget, want int
	}{
		{1, 1},
		{len(all[0]), 1},
		{len(all[0]) + 1, 2},
		{len(all[0]) + len(all[1]), 2},
		{len(all[0]) + len(all[1]) + 1, 3},
	} {
		got, err := s.LogEntries(f.ctx, 0, bank.MaxLogRead, tc.budget)
		if err != nil || len(got) != tc.want {
			t.Fatalf("a budget of %d bytes: %d entries, %v; want %d", tc.budget, len(got), err, tc.want)
		}
		for i := range got {
			if !bytes.Equal(got[i], all[i]) {
				t.Fatalf("a budget of %d bytes: entry %d differs", tc.budget, i)
			}
		}
	}
	if got, err := s.LogEntries(f.ctx, 2, bank.MaxLogRead, 1); err != nil || len(got) != 1 || !bytes.Equal(got[0], all[2]) {
		t.Fatalf("one byte from entry 2: %d entries, %v", len(got), err)
	}
}
