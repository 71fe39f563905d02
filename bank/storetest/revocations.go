package storetest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// RevocationKeySet is a master-signed key set of two CS denominations of
// EUR:1.00, signed at issued, with the denominations of revoke revoked,
// and the denomination ids.
func RevocationKeySet(t testing.TB, issued time.Time, revoke ...int) ([]byte, [2]ecash.Hash) {
	t.Helper()
	master := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	ks := &ecash.KeySet{Currency: "EUR", MasterPub: master.Public().(ed25519.PublicKey), SigningPub: fakeKey("signing"),
		HPKEPub: make([]byte, 32), IssuedAt: issued}
	var ids [2]ecash.Hash
	rnd := rand.NewChaCha8([32]byte{'r', 'e', 'v', 'o', 'k', 'e'}) // the same keys every call
	for i := range ids {
		sk, err := ecash.CSScheme{}.GenerateKey(rnd, 0)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = ecash.DenominationID(eur(100), sk.Public())
		ks.Denominations = append(ks.Denominations, ecash.Denomination{ID: ids[i], Value: eur(100), Key: sk.Public(),
			WithdrawStart: epoch.Add(-time.Hour), WithdrawEnd: epoch.Add(time.Hour), DepositEnd: epoch.Add(2 * time.Hour), Revoked: slices.Contains(revoke, i)})
	}
	ks.Sign(master)
	return ks.Encode(), ids
}

// testRevocations: a key set's revocations are recorded with its entry;
// from then on a change whose entry issues or spends a revoked
// denomination's coins is refused and changes nothing (a recoup of its
// coins is not), and no key set that lists it as valid is published.
func testRevocations(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, m := f.customer(), f.merchant()
	f.credit(c, 1000)
	ks0, ids := RevocationKeySet(t, epoch)
	ks1, _ := RevocationKeySet(t, epoch.Add(time.Second), 0)
	ks2, _ := RevocationKeySet(t, epoch.Add(2*time.Second), 0, 1)
	if revs, err := s.Revocations(f.ctx); err != nil || len(revs) != 0 {
		t.Fatalf("a new store's revocations: %v, %v", revs, err)
	}
	if err := s.PublishKeySet(f.ctx, ks0, epoch); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		n, err := s.LogSize(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	at := size()
	if err := s.PublishKeySet(f.ctx, ks1, epoch); err != nil {
		t.Fatal(err)
	}
	if revs, err := s.Revocations(f.ctx); err != nil || !slices.Equal(revs, []bank.Revocation{{Denom: ids[0], KeySet: at}}) {
		t.Fatalf("revocations after a key set revoking %x at %d: %+v, %v", ids[0][:4], at, revs, err)
	}
	revoked, valid := ids[0], ids[1]
	issue := func(d ecash.Hash, n uint32) []auditlog.DenomCount {
		return []auditlog.DenomCount{{Denom: d, Value: eur(100), Count: n}}
	}
	spend := func(op []bank.SpentCoin, d ecash.Hash) []auditlog.SpentCoin {
		var out []auditlog.SpentCoin
		for _, sc := range op {
			out = append(out, auditlog.SpentCoin{ID: sc.ID, Denom: d, Value: eur(100), PermissionHash: ecash.HashOf(sc.Permission)})
		}
		return out
	}
	before, logged := f.balances(), size()
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ecash.ErrDenominationRevoked) {
			t.Errorf("%s: %v, want ErrDenominationRevoked", what, err)
		}
	}

	w := withdrawOp(c, 200, "revoked")
	w.Log = auditlog.Withdraw{Account: c, Amount: eur(200), RequestHash: w.RequestHash, AccountSig: unverifiedSig, Issued: issue(revoked, 2)}
	_, err := s.Withdraw(f.ctx, w)
	refused("withdrawing a revoked denomination", err)
	dep := depositOp(m, 100, "revoked", coin("revoked"))
	dep.Log = auditlog.Deposit{Merchant: m, Amount: eur(100), PaymentHash: dep.PaymentHash, Coins: spend(dep.Coins, revoked)}
	_, err = s.Deposit(f.ctx, dep)
	refused("depositing a revoked coin", err)
	in := swapOp(200, "revoked in", coin("revoked in"), coin("valid in"))
	in.Log = auditlog.Swap{RequestHash: in.RequestHash, AmountIn: eur(200), AmountOut: eur(200),
		Spent: append(spend(in.Coins[:1], revoked), spend(in.Coins[1:], valid)...), Issued: issue(valid, 2)}
	_, err = s.Swap(f.ctx, in)
	refused("swapping a revoked coin", err)
	out := swapOp(100, "revoked out", coin("valid out"))
	out.Log = auditlog.Swap{RequestHash: out.RequestHash, AmountIn: eur(100), AmountOut: eur(100), Spent: spend(out.Coins, valid), Issued: issue(revoked, 1)}
	_, err = s.Swap(f.ctx, out)
	refused("swapping for coins of a revoked denomination", err)
	if err := s.PublishKeySet(f.ctx, ks0, epoch); !errors.Is(err, bank.ErrUnrevoked) {
		t.Errorf("publishing a key set that lists a revoked denomination as valid: %v, want ErrUnrevoked", err)
	}
	if got := f.balances(); !maps.Equal(got, before) || size() != logged {
		t.Fatalf("refusals changed the ledger (%v → %v) or the log (%d → %d entries)", before, got, logged, size())
	}
	if sp, err := s.Spent(f.ctx, []ecash.Hash{coin("revoked"), coin("revoked in"), coin("valid in"), coin("valid out")}); err != nil || slices.Contains(sp, true) {
		t.Fatalf("refused changes spent coins: %v, %v", sp, err)
	}
	if _, found, err := s.Withdrawal(f.ctx, w.RequestHash); err != nil || found {
		t.Fatalf("a refused withdrawal was recorded: %v, %v", found, err)
	}

	// The other denomination is untouched, and a revoked coin is recouped.
	ok := withdrawOp(c, 200, "valid")
	ok.Log = auditlog.Withdraw{Account: c, Amount: eur(200), RequestHash: ok.RequestHash, AccountSig: unverifiedSig, Issued: issue(valid, 2)}
	if _, err := s.Withdraw(f.ctx, ok); err != nil {
		t.Fatal(err)
	}
	rc := depositOp(c, 100, "recoup", coin("recouped"))
	rc.Log = auditlog.Recoup{Account: c, Amount: eur(100), Coin: coin("recouped"), Denom: revoked, RequestHash: rc.PaymentHash}
	if _, err := s.Deposit(f.ctx, rc); err != nil {
		t.Fatalf("recouping a revoked coin: %v", err)
	}

	// Revocations accumulate, each under the key set that made it.
	at2 := size()
	if err := s.PublishKeySet(f.ctx, ks2, epoch); err != nil {
		t.Fatal(err)
	}
	want := []bank.Revocation{{Denom: revoked, KeySet: at}, {Denom: valid, KeySet: at2}}
	revs, err := s.Revocations(f.ctx)
	slices.SortFunc(revs, func(a, b bank.Revocation) int { return int(a.KeySet - b.KeySet) })
	if err != nil || !slices.Equal(revs, want) {
		t.Fatalf("revocations: %+v, %v; want %+v", revs, err, want)
	}
	f.checkLedger()
}

// CheckScanRevocations checks that a store whose log holds revoking key
// sets but no record of them (written before it kept one) records them
// when reopened: it publishes two key sets into s, calls forget to drop
// the record behind the store's back, closes s and checks the store
// reopen returns.
func CheckScanRevocations(t *testing.T, s bank.Store, forget func(revoked ecash.Hash), reopen func() bank.Store) {
	t.Helper()
	ks0, ids := RevocationKeySet(t, epoch)
	ks1, _ := RevocationKeySet(t, epoch.Add(time.Second), 1)
	for _, ks := range [][]byte{ks0, ks1} {
		if err := s.PublishKeySet(t.Context(), ks, epoch); err != nil {
			t.Fatal(err)
		}
	}
	forget(ids[1])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	defer s.Close()
	revs, err := s.Revocations(t.Context())
	if want := []bank.Revocation{{Denom: ids[1], KeySet: 1}}; err != nil || !slices.Equal(revs, want) {
		t.Fatalf("revocations after the scan: %+v, %v; want %+v", revs, err, want)
	}
	if err := s.PublishKeySet(t.Context(), ks0, epoch); !errors.Is(err, bank.ErrUnrevoked) {
		t.Fatalf("a key set un-revoking a scanned revocation: %v, want ErrUnrevoked", err)
	}
}

// CheckIndexKeySets: a store whose log holds key sets it cannot find by
// hash (written before it indexed them; forget makes it so) indexes them
// when opened, each at its entry.
func CheckIndexKeySets(t *testing.T, s bank.Store, forget func(refs []ecash.Hash), reopen func() bank.Store) {
	t.Helper()
	ks0, _ := RevocationKeySet(t, epoch)
	ks1, _ := RevocationKeySet(t, epoch.Add(time.Second))
	refs := []ecash.Hash{sha256.Sum256(ks0), sha256.Sum256(ks1)}
	// ks0 published again after ks1 (a replica restarted on older keys):
	// not logged again, found at its entry. (A log written before this
	// rule may hold a key set twice: the index names its newer entry.)
	for _, ks := range [][]byte{ks0, ks1, ks0} {
		if err := s.PublishKeySet(t.Context(), ks, epoch); err != nil {
			t.Fatal(err)
		}
	}
	forget(refs)
	if _, found, err := s.LogIndex(t.Context(), refs[0]); err != nil || found {
		t.Fatalf("a forgotten key set is found (%v): the test forgets nothing", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	defer s.Close()
	for i, want := range []int64{0, 1} {
		if got, found, err := s.LogIndex(t.Context(), refs[i]); err != nil || !found || got != want {
			t.Fatalf("key set %d after the open: entry %d, found %t, %v; want entry %d", i, got, found, err, want)
		}
	}
}

// BenchLoggedDeposits runs parallel deposits, each of four coins of one
// denomination into one merchant account with its audit-log entry, so
// that each is checked against the revocations: with none recorded, or
// with another denomination revoked.
func BenchLoggedDeposits(b *testing.B, s bank.Store, revoked bool, parallelism int) {
	ks, ids := RevocationKeySet(b, epoch)
	if revoked {
		ks, _ = RevocationKeySet(b, epoch.Add(time.Second), 1)
	}
	ctx := b.Context()
	if err := s.PublishKeySet(ctx, ks, epoch); err != nil {
		b.Fatal(err)
	}
	m, err := s.OpenAccount(ctx, "shop", fakeKey("shop"), true, epoch)
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Uint64
	b.SetParallelism(parallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Deposit(ctx, BenchDeposit(m, seq.Add(1), &ids[0])); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

// BenchDeposit is the deposit store benchmarks make: the n-th payment of
// four fresh coins of EUR:0.01 to merchant m. With denom, it carries its
// audit-log entry, the coins of that denomination.
func BenchDeposit(m, n uint64, denom *ecash.Hash) bank.DepositOp {
	op := bank.DepositOp{PaymentHash: hashOf("p %d", n), Merchant: m, Amount: 4, Receipt: make([]byte, 200), Time: epoch}
	for i := range 4 {
		op.Coins = append(op.Coins, bank.SpentCoin{ID: hashOf("c %d %d", n, i), Permission: make([]byte, 180)})
	}
	if denom != nil {
		lg := auditlog.Deposit{Merchant: m, Amount: eur(4), PaymentHash: op.PaymentHash}
		for _, c := range op.Coins {
			lg.Coins = append(lg.Coins, auditlog.SpentCoin{ID: c.ID, Denom: *denom, Value: eur(1), PermissionHash: ecash.HashOf(c.Permission)})
		}
		op.Log = lg
	}
	return op
}
