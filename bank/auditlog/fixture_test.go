package auditlog_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	"golang.org/x/mod/sumdb/note"
)

// The fixture is a small, coherent bank history built from fixed inputs:
// a key set with three CS denominations, a customer and a merchant, and one
// entry of every kind (two key sets: the second revokes a denomination). testdata/auditlog holds its encodings, tree hashes,
// checkpoint and proofs.

var fixtureBase = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fixtureRevokedAt is when, after fixtureBase, the fixture's second key set
// is issued: its entry's time.
const fixtureRevokedAt = 18 * time.Second

func seedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

func tag(s string) ecash.Hash { return ecash.HashOf([]byte("fixture: " + s)) }

type fixture struct {
	master, signing, customerKey, merchantKey ed25519.PrivateKey
	ks                                        *ecash.KeySet
	d1, d2, d5                                ecash.Denomination
	denomKeys                                 map[ecash.Hash]ecash.DenomPrivateKey
	origin                                    string
	names                                     []string
	entries                                   []auditlog.Entry
}

const (
	customer uint64 = 1000
	merchant uint64 = 1001
)

func eur(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{master: seedKey(0x01), signing: seedKey(0x02), customerKey: seedKey(0x11), merchantKey: seedKey(0x12)}
	hpke, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{0x03}, 32))
	if err != nil {
		t.Fatal(err)
	}
	f.ks = &ecash.KeySet{
		Currency:   "EUR",
		MasterPub:  f.master.Public().(ed25519.PublicKey),
		SigningPub: f.signing.Public().(ed25519.PublicKey),
		HPKEPub:    hpke.PublicKey().Bytes(),
		IssuedAt:   fixtureBase,
	}
	for i, v := range []uint64{100, 200, 500} {
		sk, err := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{0x20 + byte(i)}, 64)))
		if err != nil {
			t.Fatal(err)
		}
		d := ecash.Denomination{
			ID: ecash.DenominationID(eur(v), sk.Public()), Value: eur(v), Key: sk.Public(),
			WithdrawStart: fixtureBase, WithdrawEnd: fixtureBase.AddDate(1, 0, 0), DepositEnd: fixtureBase.AddDate(3, 0, 0),
		}
		f.ks.Denominations = append(f.ks.Denominations, d)
		if f.denomKeys == nil {
			f.denomKeys = map[ecash.Hash]ecash.DenomPrivateKey{}
		}
		f.denomKeys[d.ID] = sk
	}
	f.ks.Sign(f.master)
	f.d1, f.d2, f.d5 = f.ks.Denominations[0], f.ks.Denominations[1], f.ks.Denominations[2]
	f.origin = auditlog.Origin(f.ks.BankID())

	coin := func(name string, d ecash.Denomination) auditlog.SpentCoin {
		return auditlog.SpentCoin{ID: tag("coin " + name), Denom: d.ID, Value: d.Value, PermissionHash: tag("permission " + name)}
	}
	paid := tag("payment request 1")
	ops := []struct {
		name string
		op   auditlog.Op
	}{
		{"keyset", auditlog.KeySet{Signed: f.ks.Encode()}},
		{"open customer", auditlog.AccountOpened{Account: customer, Key: f.customerKey.Public().(ed25519.PublicKey)}},
		{"open merchant", auditlog.AccountOpened{Account: merchant, Merchant: true, Key: f.merchantKey.Public().(ed25519.PublicKey)}},
		{"credit", auditlog.Credit{Account: customer, Amount: eur(5000), Reference: auditlog.OptionalHash("wire 2026-0001")}},
		{"withdraw", auditlog.Withdraw{Account: customer, Amount: eur(900), RequestHash: tag("withdraw request 1"),
			Issued: []auditlog.DenomCount{{Denom: f.d2.ID, Value: f.d2.Value, Count: 2}, {Denom: f.d5.ID, Value: f.d5.Value, Count: 1}}}},
		{"deposit", auditlog.Deposit{Merchant: merchant, Amount: eur(700), PaymentHash: paid,
			Coins: []auditlog.SpentCoin{coin("a", f.d2), coin("b", f.d5)}}},
		{"swap", auditlog.Swap{RequestHash: tag("swap request 1"), AmountIn: eur(200), AmountOut: eur(200),
			Spent:  []auditlog.SpentCoin{coin("c", f.d2)},
			Issued: []auditlog.DenomCount{{Denom: f.d1.ID, Value: f.d1.Value, Count: 2}}}},
		{"refund", auditlog.Refund{Merchant: merchant, Amount: eur(200), PaymentHash: paid, RefundHash: tag("refund 1"),
			Coins: []auditlog.RefundedCoin{{ID: tag("coin a"), Denom: f.d2.ID, Value: eur(200)}}}},
		{"check approved", auditlog.Check{EPOID: "1001-" + strconv.FormatInt(fixtureBase.UnixMilli(), 10) + "-1", EPOHash: tag("epo 1"),
			Customer: customer, Merchant: merchant, Amount: eur(350), Outcome: auditlog.OutcomeApproved}},
		{"check declined", auditlog.Check{EPOID: "1001-" + strconv.FormatInt(fixtureBase.UnixMilli(), 10) + "-2", EPOHash: tag("epo 2"),
			Customer: customer, Merchant: merchant, Amount: eur(100000), Outcome: auditlog.OutcomeInsufficientFunds}},
		{"payout", auditlog.Payout{Account: merchant, Amount: eur(500), Reference: auditlog.OptionalHash("settlement 0001")}},
		{"withdraw of the coin later recouped", auditlog.Withdraw{Account: customer, Amount: eur(100), RequestHash: tag("withdraw request 2"),
			Issued: []auditlog.DenomCount{{Denom: f.d1.ID, Value: f.d1.Value, Count: 1}}}},
		{"keyset revoking the 1.00 denomination", f.revoking(fixtureRevokedAt, f.d1)},
		{"recoup", auditlog.Recoup{Account: customer, Amount: eur(100), Coin: tag("coin d"), Denom: f.d1.ID, RequestHash: tag("recoup request 1")}},
	}
	for i, o := range ops {
		f.names = append(f.names, o.name)
		f.entries = append(f.entries, auditlog.Entry{Index: int64(i), Time: fixtureBase.Add(time.Duration(i) * 1500 * time.Millisecond), Op: f.authorise(o.op)}.Canonical())
	}
	return f
}

// authorise signs a debit that carries no signature with the customer's
// key, as the bank's entries carry the customer's signature: a withdrawal
// over its amount and request hash, a check over its EPOID, amount,
// merchant and parts hash.
func (f *fixture) authorise(op auditlog.Op) auditlog.Op {
	switch o := op.(type) {
	case auditlog.Withdraw:
		if o.AccountSig == nil {
			o.AccountSig = ed25519.Sign(f.customerKey, ecash.WithdrawSignatureInput(o.Account, o.Debit(), o.RequestHash))
		}
		return o
	case auditlog.Refund:
		if o.MerchantSig == nil {
			if o.CreatedAt.IsZero() {
				o.CreatedAt = fixtureBase
			}
			r := o.Request()
			r.Sign(f.merchantKey)
			o.MerchantSig, o.RefundHash, o.CreatedAt = r.MerchantSig, r.Hash(), r.CreatedAt
		}
		return o
	case auditlog.Check:
		if o.CustomerSig == nil {
			o.PartsHash = tag("parts " + o.EPOID)
			o.CustomerSig = ed25519.Sign(f.customerKey, ecash.EPOSignatureInput(o.EPOID, o.Amount, o.Merchant, o.PartsHash))
		}
		return o
	}
	return op
}

// revoking is the fixture's key set issued after later, listing ds as
// revoked and signed by the master key: the entry a bank logs to revoke
// (RevokeDenomination), the only one that revokes in an auditor's eyes.
func (f *fixture) revoking(after time.Duration, ds ...ecash.Denomination) auditlog.KeySet {
	ks := *f.ks
	ks.Denominations = slices.Clone(f.ks.Denominations)
	for i, d := range ks.Denominations {
		if slices.ContainsFunc(ds, func(r ecash.Denomination) bool { return r.ID == d.ID }) {
			ks.Denominations[i].Revoked = true
		}
	}
	ks.IssuedAt = fixtureBase.Add(after)
	ks.Sign(f.master)
	return auditlog.KeySet{Signed: ks.Encode()}
}

// verifier is the note verifier of the fixture's log key.
func (f *fixture) verifier(t testing.TB) note.Verifier {
	t.Helper()
	v, err := auditlog.NewVerifier(f.origin, f.signing.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// encodings returns the fixture's entries encoded.
func (f *fixture) encodings(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, e := range f.entries {
		b, err := e.Encode()
		if err != nil {
			t.Fatalf("entry %d: %v", e.Index, err)
		}
		out = append(out, b)
	}
	return out
}

// memLog returns a MemLog holding the fixture's entries.
func (f *fixture) memLog(t testing.TB) *auditlog.MemLog {
	t.Helper()
	m := auditlog.NewMemLog()
	for _, e := range f.entries {
		if _, err := m.Append(e.Op, e.Time); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// describe renders an entry's fields as strings, for the vector file and
// for people reading it.
func describe(e *auditlog.Entry) map[string]string {
	m := map[string]string{}
	h := func(k string, v ecash.Hash) { m[k] = fmt.Sprintf("%x", v[:]) }
	amt := func(k string, a ecash.Amount) { m[k] = a.String() }
	u := func(k string, v uint64) { m[k] = strconv.FormatUint(v, 10) }
	denoms := func(p string, ds []auditlog.DenomCount) {
		for i, d := range ds {
			h(fmt.Sprintf("%s.%d.denom", p, i), d.Denom)
			amt(fmt.Sprintf("%s.%d.value", p, i), d.Value)
			u(fmt.Sprintf("%s.%d.count", p, i), uint64(d.Count))
		}
	}
	spent := func(p string, cs []auditlog.SpentCoin) {
		for i, c := range cs {
			h(fmt.Sprintf("%s.%d.id", p, i), c.ID)
			h(fmt.Sprintf("%s.%d.denom", p, i), c.Denom)
			amt(fmt.Sprintf("%s.%d.value", p, i), c.Value)
			h(fmt.Sprintf("%s.%d.permission_hash", p, i), c.PermissionHash)
		}
	}
	refunded := func(p string, cs []auditlog.RefundedCoin) {
		for i, c := range cs {
			h(fmt.Sprintf("%s.%d.id", p, i), c.ID)
			h(fmt.Sprintf("%s.%d.denom", p, i), c.Denom)
			amt(fmt.Sprintf("%s.%d.value", p, i), c.Value)
		}
	}
	fee := func(f ecash.Amount) {
		if f.Value > 0 {
			amt("fee", f)
		}
	}
	switch o := e.Op.(type) {
	case auditlog.AccountOpened:
		u("account", o.Account)
		m["merchant"] = strconv.FormatBool(o.Merchant)
		m["key"] = fmt.Sprintf("%x", o.Key)
	case auditlog.Credit:
		u("account", o.Account)
		amt("amount", o.Amount)
		h("reference", o.Reference)
	case auditlog.Withdraw:
		u("account", o.Account)
		amt("amount", o.Amount)
		h("request_hash", o.RequestHash)
		m["account_sig"] = fmt.Sprintf("%x", o.AccountSig)
		denoms("issued", o.Issued)
		fee(o.Fee)
	case auditlog.Deposit:
		u("merchant", o.Merchant)
		amt("amount", o.Amount)
		h("payment_hash", o.PaymentHash)
		spent("coins", o.Coins)
		fee(o.Fee)
	case auditlog.Swap:
		h("request_hash", o.RequestHash)
		amt("amount_in", o.AmountIn)
		amt("amount_out", o.AmountOut)
		spent("spent", o.Spent)
		denoms("issued", o.Issued)
		refunded("credits", o.Credits)
	case auditlog.Refund:
		u("merchant", o.Merchant)
		amt("amount", o.Amount)
		h("payment_hash", o.PaymentHash)
		h("refund_hash", o.RefundHash)
		u("refund_id", o.RefundID)
		m["created_at_unix_ms"] = strconv.FormatInt(o.CreatedAt.UnixMilli(), 10)
		m["merchant_sig"] = fmt.Sprintf("%x", o.MerchantSig)
		refunded("coins", o.Coins)
		fee(o.Fee)
	case auditlog.Recoup:
		u("account", o.Account)
		amt("amount", o.Amount)
		h("coin", o.Coin)
		h("denom", o.Denom)
		h("request_hash", o.RequestHash)
	case auditlog.Check:
		m["epoid"] = o.EPOID
		h("epo_hash", o.EPOHash)
		h("parts_hash", o.PartsHash)
		m["customer_sig"] = fmt.Sprintf("%x", o.CustomerSig)
		u("customer", o.Customer)
		u("merchant", o.Merchant)
		amt("amount", o.Amount)
		m["outcome"] = o.Outcome.String()
	case auditlog.Payout:
		u("account", o.Account)
		amt("amount", o.Amount)
		h("reference", o.Reference)
	case auditlog.KeySet:
		m["signed"] = fmt.Sprintf("%x", o.Signed)
	}
	return m
}
