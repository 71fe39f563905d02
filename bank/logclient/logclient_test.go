package logclient_test

import (
	"errors"
	"testing"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/ecash"
)

// A merchant checks each deposit receipt against the log with its payment
// hash, coins, account and total (merchant/logcheck.go). The entry of an
// honest bank matches: its Amount is the coins' value, its Fee their deposit
// fees, and the receipt's total what the merchant is credited, the
// difference. An entry for the same payment and coins that credits another
// account, or another amount, records another operation and must not match.
func TestMatchDeposit(t *testing.T) {
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	pay := ecash.HashOf([]byte("payment"))
	coin := auditlog.SpentCoin{ID: ecash.HashOf([]byte("coin")), Denom: ecash.HashOf([]byte("d")), Value: eur(500),
		PermissionHash: ecash.HashOf([]byte("perm"))}
	const ours = 1001
	x := logclient.Expect{Kind: auditlog.KindDeposit, Ref: pay, Coins: []ecash.Hash{coin.ID}, Merchant: ours, Amount: eur(490)}
	entry := func(merchant uint64, fee uint64) *auditlog.Entry {
		return &auditlog.Entry{Index: 7, Op: auditlog.Deposit{Merchant: merchant, Amount: coin.Value, Fee: eur(fee), PaymentHash: pay,
			Coins: []auditlog.SpentCoin{coin}}}
	}
	if err := x.Match(entry(ours, 10)); err != nil {
		t.Fatalf("the honest entry: %v", err)
	}
	for name, e := range map[string]*auditlog.Entry{
		"credits another account": entry(4242, 10),
		"credits another amount":  entry(ours, 20),
	} {
		if err := x.Match(e); !errors.Is(err, logclient.ErrMismatch) {
			t.Errorf("an entry that %s: %v, want ErrMismatch", name, err)
		}
	}
	// Unset, the account and amount are not compared.
	x.Merchant, x.Amount = 0, ecash.Amount{}
	if err := x.Match(entry(4242, 20)); err != nil {
		t.Errorf("without an account or amount expected: %v", err)
	}
}

// A recoup that re-issues coins is logged as a recoup entry: it matches
// on its request hash and the one coin it spends, and nothing else does;
// nor does an entry saying the coin's value was credited to an account,
// where the client was given coins (a swap logged as a recoup, say).
func TestMatchRecoup(t *testing.T) {
	req, coin := ecash.HashOf([]byte("recoup request")), ecash.HashOf([]byte("coin"))
	x := logclient.Expect{Kind: auditlog.KindRecoup, Ref: req, Coins: []ecash.Hash{coin}}
	eur2 := ecash.Amount{Currency: "EUR", Value: 2}
	entry := func(req, coin ecash.Hash) *auditlog.Entry {
		return &auditlog.Entry{Index: 9, Op: auditlog.Recoup{Amount: eur2, Coin: coin,
			Denom: ecash.HashOf([]byte("d")), RequestHash: req,
			Issued: []auditlog.DenomCount{{Denom: ecash.HashOf([]byte("d2")), Value: eur2, Count: 1}}}}
	}
	if err := x.Match(entry(req, coin)); err != nil {
		t.Fatalf("the honest entry: %v", err)
	}
	credited := entry(req, coin)
	credited.Op = auditlog.Recoup{Account: 7, Amount: eur2, Coin: coin, Denom: ecash.HashOf([]byte("d")), RequestHash: req}
	for name, e := range map[string]*auditlog.Entry{
		"of another request":   entry(ecash.HashOf([]byte("other")), coin),
		"of another coin":      entry(req, ecash.HashOf([]byte("other coin"))),
		"crediting an account": credited,
	} {
		if err := x.Match(e); !errors.Is(err, logclient.ErrMismatch) {
			t.Errorf("a recoup entry %s: %v, want ErrMismatch", name, err)
		}
	}
	if err := (logclient.Expect{Kind: auditlog.KindSwap, Ref: req, Coins: []ecash.Hash{coin}}).Match(entry(req, coin)); !errors.Is(err, logclient.ErrMismatch) {
		t.Errorf("a recoup entry expected as a swap: %v, want ErrMismatch", err)
	}
}

// A wallet checks each withdrawal against the log with its request hash,
// its account, what it signed to be debited (the entry's Amount and Fee)
// and the denomination of each coin it asked for. An entry for the same
// request that debits another account or amount, or issues other coins
// (another denomination, or more or fewer of one), misstates it.
func TestMatchWithdraw(t *testing.T) {
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	req := ecash.HashOf([]byte("withdraw request"))
	d1, d2 := ecash.HashOf([]byte("d1")), ecash.HashOf([]byte("d2"))
	const ours = 1001
	x := logclient.Expect{Kind: auditlog.KindWithdraw, Ref: req, Coins: []ecash.Hash{d2, d1, d1}, Merchant: ours, Amount: eur(403)}
	entry := func(account uint64, fee uint64, issued ...auditlog.DenomCount) *auditlog.Entry {
		total := eur(0)
		for _, c := range issued {
			total.Value += c.Value.Value * uint64(c.Count)
		}
		return &auditlog.Entry{Index: 5, Op: auditlog.Withdraw{Account: account, Amount: total, Fee: eur(fee), RequestHash: req, Issued: issued}}
	}
	honest := []auditlog.DenomCount{{Denom: d1, Value: eur(100), Count: 2}, {Denom: d2, Value: eur(200), Count: 1}}
	if err := x.Match(entry(ours, 3, honest...)); err != nil {
		t.Fatalf("the honest entry: %v", err)
	}
	for name, e := range map[string]*auditlog.Entry{
		"debits another account": entry(4242, 3, honest...),
		"debits another amount":  entry(ours, 4, honest...),
		"issues another denomination": entry(ours, 3, auditlog.DenomCount{Denom: d1, Value: eur(100), Count: 2},
			auditlog.DenomCount{Denom: ecash.HashOf([]byte("d3")), Value: eur(200), Count: 1}),
		"issues more coins":  entry(ours, 3, auditlog.DenomCount{Denom: d1, Value: eur(100), Count: 4}),
		"issues fewer coins": entry(ours, 203, auditlog.DenomCount{Denom: d2, Value: eur(200), Count: 1}),
		"issues ever more":   entry(ours, 3, auditlog.DenomCount{Denom: d1, Value: eur(100), Count: 1 << 31}),
	} {
		if err := x.Match(e); !errors.Is(err, logclient.ErrMismatch) {
			t.Errorf("an entry that %s: %v, want ErrMismatch", name, err)
		}
	}
	if err := (logclient.Expect{Kind: auditlog.KindSwap, Ref: req}).Match(entry(ours, 3, honest...)); !errors.Is(err, logclient.ErrMismatch) {
		t.Errorf("a withdrawal expected as a swap: %v, want ErrMismatch", err)
	}
}
