package auditlog_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// replay applies entries to a fresh auditor pinned to master and returns it
// with the first error.
func replay(t *testing.T, master ed25519.PublicKey, entries [][]byte) (*auditlog.Auditor, error) {
	t.Helper()
	a := auditlog.NewAuditor(master)
	for _, b := range entries {
		if _, err := a.Apply(b); err != nil {
			return a, err
		}
	}
	return a, nil
}

func memEntries(t *testing.T, m *auditlog.MemLog) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range m.Size() {
		b, err := m.Entry(i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func marshal(t *testing.T, a *auditlog.Auditor) []byte {
	t.Helper()
	b, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuditFixture: the fixture's history (one entry of every kind) is a
// coherent bank history, and the report adds it up.
func TestAuditFixture(t *testing.T) {
	f := newFixture(t)
	m := f.memLog(t)
	a, err := replay(t, f.ks.MasterPub, memEntries(t, m))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := m.Checkpoint(f.origin)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(cp); err != nil {
		t.Fatal(err)
	}
	r := a.Report()
	want := auditlog.AuditTotals{
		Credited: 5000, PaidOut: 500, Withdrawn: 1000, Deposited: 700, SwappedIn: 200, SwappedOut: 200,
		Checks: 350, Refunded: 200, Recouped: 100, Outstanding: 400, Balances: 4100,
	}
	if r.Totals != want {
		t.Errorf("totals %+v\nwant   %+v", r.Totals, want)
	}
	if r.Entries != 14 || r.Currency != "EUR" || !r.Master.Equal(f.ks.MasterPub) || r.KeySets != 2 || r.Accounts != 2 || r.Merchants != 1 {
		t.Errorf("report %+v", r)
	}
	if r.CoinsSpent != 4 || r.Checks != [2]int64{1, 1} || len(r.ByKind) != len(auditlog.Kinds()) || r.WarningsTotal != 0 {
		t.Errorf("coins %d, checks %v, kinds %v, warnings %v", r.CoinsSpent, r.Checks, r.ByKind, r.Warnings)
	}
	if len(r.Denominations) != 3 {
		t.Fatalf("denominations %+v", r.Denominations)
	}
	d1, d2, d5 := r.Denominations[0], r.Denominations[1], r.Denominations[2]
	if d1.ID != f.d1.ID || !d1.Revoked || d1.IssuedCount != 3 || d1.RedeemedCount != 1 || d1.RedeemedValue != 100 ||
		d2.IssuedCount != 2 || d2.RedeemedCount != 2 || d5.IssuedValue != 500 || d5.RedeemedValue != 500 {
		t.Errorf("denominations %+v", r.Denominations)
	}
	if got := a.SigningKeys(); len(got) != 1 || !got[0].Equal(f.ks.SigningPub) {
		t.Errorf("signing keys %x", got)
	}
	// Without a pinned key the first key set pins its own.
	b, err := replay(t, nil, memEntries(t, m))
	if err != nil || !b.Master().Equal(f.ks.MasterPub) {
		t.Fatalf("unpinned: %v, master %x", err, b.Master())
	}
}

// TestAuditResume: an audit saved and resumed after any entry ends in the
// same state as one run straight through, and RootsAfter predicts the
// roots Apply makes.
func TestAuditResume(t *testing.T) {
	f := newFixture(t)
	entries := memEntries(t, f.memLog(t))
	whole, err := replay(t, f.ks.MasterPub, entries)
	if err != nil {
		t.Fatal(err)
	}
	want := marshal(t, whole)
	empty := auditlog.NewAuditor(nil)
	roots, err := empty.RootsAfter(entries)
	if err != nil {
		t.Fatal(err)
	}
	for split := 0; split <= len(entries); split++ {
		a, err := replay(t, f.ks.MasterPub, entries[:split])
		if err != nil {
			t.Fatal(err)
		}
		saved := marshal(t, a)
		b := auditlog.NewAuditor(f.ks.MasterPub)
		if err := b.UnmarshalBinary(saved); err != nil {
			t.Fatalf("split %d: %v", split, err)
		}
		if !bytes.Equal(marshal(t, b), saved) {
			t.Fatalf("split %d: the restored state saves differently", split)
		}
		ahead, err := b.RootsAfter(entries[split:])
		if err != nil {
			t.Fatal(err)
		}
		for i := split; i < len(entries); i++ {
			if ahead[i-split] != roots[i] {
				t.Fatalf("split %d: RootsAfter[%d] differs", split, i-split)
			}
			if _, err := b.Apply(entries[i]); err != nil {
				t.Fatalf("split %d, entry %d: %v", split, i, err)
			}
			if r, _ := b.Root(); r != roots[i] {
				t.Fatalf("split %d: root after entry %d differs", split, i)
			}
		}
		if !bytes.Equal(marshal(t, b), want) {
			t.Fatalf("split %d: resumed audit ends in another state", split)
		}
	}

	// A saved state is checked as it is restored.
	other := seedKey(0x77).Public().(ed25519.PublicKey)
	if err := auditlog.NewAuditor(other).UnmarshalBinary(want); err == nil {
		t.Error("a state pinned to another master key was restored")
	}
	// A state saved before refunds were checked against their payment's
	// merchant and coins (tag auditlog/auditor), or before recoups were
	// checked against the coins each account withdrew (v2), lacks them and
	// cannot be upgraded: it is refused, saying to audit again from the
	// start.
	v5 := ecash.NewEncoder("auditlog/auditor/v5").Bytes()
	if !bytes.HasPrefix(want, v5) {
		t.Fatal("the saved state is not tagged auditlog/auditor/v5")
	}
	for _, old := range []string{"auditlog/auditor", "auditlog/auditor/v2"} {
		b := append(ecash.NewEncoder(old).Bytes(), want[len(v5):]...)
		if err := auditlog.NewAuditor(nil).UnmarshalBinary(b); !errors.Is(err, auditlog.ErrAuditorStateVersion) || !strings.Contains(err.Error(), "again from its start") {
			t.Errorf("a state of the earlier version %s: %v", old, err)
		}
	}
	// The state keeps the last key set's issue time (after the count of
	// key sets), which the next key set's is compared with.
	issued := binary.BigEndian.AppendUint64(nil, uint64(whole.Report().KeySets))
	issued = binary.BigEndian.AppendUint64(append(issued, 1), uint64(fixtureBase.Add(fixtureRevokedAt).Unix()))
	if bytes.Count(want, issued) != 1 {
		t.Fatal("the key sets' count and the last one's issue time are not in the saved state once")
	}
	// Then the key set entries (complete from size 0; their count; each
	// index and hash), which keyset lines are checked against; a v4 state
	// lacks them, and is read as complete only from its own size.
	listAt := bytes.Index(want, issued) + len(issued)
	nks := int(binary.BigEndian.Uint32(want[listAt+8:]))
	listEnd := listAt + 8 + 4 + nks*(8+32)
	if binary.BigEndian.Uint64(want[listAt:]) != 0 || int64(nks) != whole.Report().KeySets {
		t.Fatalf("the saved state lists %d key set entries from %d, want all %d from 0", nks, binary.BigEndian.Uint64(want[listAt:]), whole.Report().KeySets)
	}
	if cp, err := whole.Checkpoint(f.origin); err != nil || int64(binary.BigEndian.Uint64(want[listEnd-40:])) != cp.KeySet.Index || !bytes.Equal(want[listEnd-32:listEnd], cp.KeySet.Hash[:]) {
		t.Fatalf("the last key set entry saved is not the checkpoint's (%v)", err)
	}
	unknown := binary.BigEndian.AppendUint64(bytes.Clone(want[:listAt]), uint64(whole.Report().Entries))
	unknown = append(binary.BigEndian.AppendUint32(unknown, 0), want[listEnd:]...)
	v4 := append(ecash.NewEncoder("auditlog/auditor/v4").Bytes(), want[len(v5):listAt]...)
	v4 = append(v4, want[listEnd:]...)
	a4 := auditlog.NewAuditor(f.ks.MasterPub)
	if err := a4.UnmarshalBinary(v4); err != nil || !bytes.Equal(marshal(t, a4), unknown) {
		t.Fatalf("a v4 state is not read as the v5 state with no key set entries, complete from its size: %v", err)
	}
	if _, known := a4.NewestKeySet(a4.Size()); known {
		t.Error("an auditor restored from a v4 state says which key set is the newest below its size")
	}
	if checked, err := a4.VerifyKeySetLine(auditlog.Checkpoint{Size: 1, HasKeySet: true}); checked || err != nil {
		t.Errorf("an auditor restored from a v4 state checked a keyset line: %t, %v", checked, err)
	}
	// A v3 state also counted the entries of the retired kind revocation,
	// after the others': with none it is read as the v4 state it equals,
	// with one it is refused (the denomination was revoked without the
	// master key).
	var counts []byte
	for _, k := range auditlog.Kinds() {
		counts = binary.BigEndian.AppendUint64(counts, uint64(whole.Report().ByKind[k]))
	}
	kinds := append(binary.BigEndian.AppendUint32(nil, uint32(len(auditlog.Kinds()))), counts...)
	if bytes.Count(want, kinds) != 1 {
		t.Fatal("the entries per kind are not in the saved state once")
	}
	v3 := func(revocations uint64) []byte {
		i := bytes.Index(want, kinds)
		b := append(ecash.NewEncoder("auditlog/auditor/v3").Bytes(), want[len(v5):i]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(auditlog.Kinds())+1))
		b = binary.BigEndian.AppendUint64(append(b, counts...), revocations)
		b = append(b, want[i+len(kinds):listAt]...)
		return append(b, want[listEnd:]...)
	}
	if a := auditlog.NewAuditor(f.ks.MasterPub); a.UnmarshalBinary(v3(0)) != nil || !bytes.Equal(marshal(t, a), unknown) {
		t.Error("a v3 state without revocation entries is not read as the v4 state it equals")
	}
	if err := auditlog.NewAuditor(nil).UnmarshalBinary(v3(1)); !errors.Is(err, auditlog.ErrAuditorStateVersion) || !strings.Contains(err.Error(), "revocation entries (1)") {
		t.Errorf("a v3 state that honoured a revocation entry: %v", err)
	}
	for _, bad := range [][]byte{want[:len(want)-1], append(bytes.Clone(want), 0), nil} {
		a := auditlog.NewAuditor(nil)
		if err := a.UnmarshalBinary(bad); err == nil {
			t.Errorf("restored %d bytes of a %d-byte state", len(bad), len(want))
		} else if a.Size() != 0 {
			t.Error("a refused state changed the auditor")
		}
	}
}

// history builds a log: the fixture's key set, customer, merchant, a
// credit of EUR 50.00 and a withdrawal of EUR 9.00 (two 2.00 coins, one
// 5.00), then ops.
func history(t *testing.T, f *fixture, ops ...auditlog.Op) [][]byte {
	t.Helper()
	return logOf(t, f, append(baseOps(f), ops...))
}

// logOf logs ops, a second apart, signing debits as the fixture does.
func logOf(t *testing.T, f *fixture, ops []auditlog.Op) [][]byte {
	t.Helper()
	m := auditlog.NewMemLog()
	for i, op := range ops {
		if _, err := m.Append(f.authorise(op), fixtureBase.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	return memEntries(t, m)
}

func baseOps(f *fixture) []auditlog.Op {
	return []auditlog.Op{
		auditlog.KeySet{Signed: f.ks.Encode()},
		auditlog.AccountOpened{Account: customer, Key: f.customerKey.Public().(ed25519.PublicKey)},
		auditlog.AccountOpened{Account: merchant, Merchant: true, Key: f.merchantKey.Public().(ed25519.PublicKey)},
		auditlog.Credit{Account: customer, Amount: eur(5000), Reference: auditlog.OptionalHash("wire 1")},
		auditlog.Withdraw{Account: customer, Amount: eur(900), RequestHash: tag("withdraw 1"),
			Issued: []auditlog.DenomCount{{Denom: f.d2.ID, Value: f.d2.Value, Count: 2}, {Denom: f.d5.ID, Value: f.d5.Value, Count: 1}}},
	}
}

const nBase = 5

func coinOf(name string, d ecash.Denomination) auditlog.SpentCoin {
	return auditlog.SpentCoin{ID: tag("coin " + name), Denom: d.ID, Value: d.Value, PermissionHash: tag("permission " + name)}
}

func deposit(to uint64, payment string, coins ...auditlog.SpentCoin) auditlog.Deposit {
	var total uint64
	for _, c := range coins {
		total += c.Value.Value
	}
	return auditlog.Deposit{Merchant: to, Amount: eur(total), PaymentHash: tag(payment), Coins: coins}
}

// TestAuditInvariants breaks each invariant once, in an otherwise good log:
// the audit fails at that entry, names the check, and the auditor's state
// stays that before the entry.
// refundOf is a refund of value (cents) to coin c of "payment 1".
func refundOf(c auditlog.SpentCoin, value uint64) auditlog.Refund {
	return auditlog.Refund{Merchant: merchant, Amount: eur(value), PaymentHash: tag("payment 1"), RefundHash: tag("rf"),
		Coins: []auditlog.RefundedCoin{{ID: c.ID, Denom: c.Denom, Value: eur(value)}}}
}

// forgedRefund is a refund of coin c signed by the customer's key, not the
// merchant's.
func forgedRefund(f *fixture, c auditlog.SpentCoin) auditlog.Refund {
	o := refundOf(c, 100)
	o.CreatedAt = fixtureBase
	r := o.Request()
	r.Sign(f.customerKey)
	o.MerchantSig, o.RefundHash = r.MerchantSig, r.Hash()
	return o
}

// creditSwap is a swap that spends value (cents) of coin id's refund credit
// for coins of d (whose value must divide it).
func creditSwap(req string, c auditlog.SpentCoin, value uint64, d ecash.Denomination) auditlog.Swap {
	return auditlog.Swap{RequestHash: tag(req), AmountIn: eur(value), AmountOut: eur(value),
		Credits: []auditlog.RefundedCoin{{ID: c.ID, Denom: c.Denom, Value: eur(value)}},
		Issued:  []auditlog.DenomCount{{Denom: d.ID, Value: d.Value, Count: uint32(value / d.Value.Value)}}}
}

func TestAuditInvariants(t *testing.T) {
	f := newFixture(t)
	otherMaster := seedKey(0x41)
	foreign := *f.ks
	foreign.MasterPub = otherMaster.Public().(ed25519.PublicKey)
	foreign.Sign(otherMaster)
	badSig := f.ks.Encode()
	badSig[len(badSig)-1] ^= 1
	usd := *f.ks
	usd.Currency = "USD"
	usd.Denominations = nil
	usd.Sign(f.master)
	epo := func(id string, amount uint64, out auditlog.Outcome) auditlog.Check {
		return auditlog.Check{EPOID: id, EPOHash: tag("epo " + id), Customer: customer, Merchant: merchant, Amount: eur(amount), Outcome: out}
	}
	a1, b2, c5 := coinOf("a", f.d2), coinOf("b", f.d2), coinOf("c", f.d5)
	// Debits whose signature is not the customer's authorisation: another
	// key's, or the customer's for another amount.
	w2 := auditlog.Withdraw{Account: customer, Amount: eur(200), RequestHash: tag("w2"), Issued: []auditlog.DenomCount{{Denom: f.d2.ID, Value: f.d2.Value, Count: 1}}}
	forgedW := w2
	forgedW.AccountSig = ed25519.Sign(f.merchantKey, ecash.WithdrawSignatureInput(w2.Account, w2.Amount, w2.RequestHash))
	moreW := auditlog.Withdraw{Account: customer, Amount: eur(500), RequestHash: tag("w2"), Issued: []auditlog.DenomCount{{Denom: f.d5.ID, Value: f.d5.Value, Count: 1}},
		AccountSig: f.authorise(w2).(auditlog.Withdraw).AccountSig}
	signedCheck := f.authorise(epo("1001-1-9", 100, auditlog.OutcomeApproved)).(auditlog.Check)
	forgedC := signedCheck
	forgedC.CustomerSig = ed25519.Sign(f.merchantKey, ecash.EPOSignatureInput(forgedC.EPOID, forgedC.Amount, forgedC.Merchant, forgedC.PartsHash))
	otherMerchantC := signedCheck
	otherMerchantC.Merchant = customer
	pay := deposit(merchant, "payment 1", a1)
	unknown := ecash.Denomination{ID: tag("no such denomination"), Value: eur(200)}

	cases := []struct {
		name  string
		ops   []auditlog.Op
		check string
		msg   string
		at    int // the failing entry, counted from the end of the base history
	}{
		{"account never opened", []auditlog.Op{auditlog.Credit{Account: 1002, Amount: eur(100)}}, auditlog.CheckAccount, "credited account 1002 was never opened", 0},
		{"merchant never opened", []auditlog.Op{deposit(1002, "p", a1)}, auditlog.CheckAccount, "credited account 1002 was never opened", 0},
		{"account opened twice", []auditlog.Op{auditlog.AccountOpened{Account: customer, Key: seedKey(0x31).Public().(ed25519.PublicKey)}},
			auditlog.CheckAccount, "account 1000 opened twice (first in entry 1)", 0},
		{"key reused", []auditlog.Op{auditlog.AccountOpened{Account: 1002, Key: f.customerKey.Public().(ed25519.PublicKey)}},
			auditlog.CheckAccount, "opened for the key of account 1000", 0},
		{"withdraw beyond balance", []auditlog.Op{auditlog.Withdraw{Account: customer, Amount: eur(5000), RequestHash: tag("w2"),
			Issued: []auditlog.DenomCount{{Denom: f.d5.ID, Value: f.d5.Value, Count: 10}}}},
			auditlog.CheckBalance, "account 1000 would go below zero: it holds EUR:41.00 and is debited EUR:50.00", 0},
		{"check beyond balance", []auditlog.Op{epo("1001-1-1", 4101, auditlog.OutcomeApproved)}, auditlog.CheckBalance, "account 1000 would go below zero", 0},
		{"payout beyond balance", []auditlog.Op{pay, auditlog.Payout{Account: merchant, Amount: eur(201)}}, auditlog.CheckBalance,
			"account 1001 would go below zero: it holds EUR:2.00 and is debited EUR:2.01", 1},
		// A payout carries no signature: the operator's settlement of a
		// merchant, never a way to take a customer's balance out.
		{"payout of a customer account", []auditlog.Op{auditlog.Payout{Account: customer, Amount: eur(4100), Reference: auditlog.OptionalHash("to the operator")}},
			auditlog.CheckAuthorised, "payout of EUR:41.00 from account 1000, a customer's: payouts settle merchant accounts", 0},
		{"coin spent twice", []auditlog.Op{pay, deposit(customer, "payment 2", a1)}, auditlog.CheckDoubleSpend,
			"coin " + shortHex(a1.ID) + "… (EUR:2.00) was already spent in entry 5", 1},
		{"coin spent again in a swap", []auditlog.Op{pay, auditlog.Swap{RequestHash: tag("s"), AmountIn: eur(200), AmountOut: eur(200),
			Spent: []auditlog.SpentCoin{a1}, Issued: []auditlog.DenomCount{{Denom: f.d1.ID, Value: f.d1.Value, Count: 2}}}},
			auditlog.CheckDoubleSpend, "was already spent in entry 5", 1},
		{"more coins redeemed than issued", []auditlog.Op{deposit(merchant, "p", a1, b2), deposit(merchant, "q", coinOf("x", f.d2))},
			auditlog.CheckEmergency, "denomination EUR:2.00 (" + shortHex(f.d2.ID) + "…): 3 coins worth EUR:6.00 redeemed, only 2 worth EUR:4.00 issued", 1},
		{"a coin never issued", []auditlog.Op{deposit(merchant, "p", coinOf("forged", f.d1))},
			auditlog.CheckEmergency, "1 coins worth EUR:1.00 redeemed, only 0 worth EUR:0.00 issued", 0},
		{"a swap's coins pay for themselves", []auditlog.Op{auditlog.Swap{RequestHash: tag("s"), AmountIn: eur(100), AmountOut: eur(100),
			Spent: []auditlog.SpentCoin{coinOf("forged", f.d1)}, Issued: []auditlog.DenomCount{{Denom: f.d1.ID, Value: f.d1.Value, Count: 1}}}},
			auditlog.CheckEmergency, "only 0 worth EUR:0.00 issued", 0},
		{"two outcomes for one EPOID", []auditlog.Op{epo("1001-1-1", 100, auditlog.OutcomeApproved), epo("1001-1-1", 100, auditlog.OutcomeOverLimit)},
			auditlog.CheckEPOID, "EPOID 1001-1-1 was already decided in entry 5", 1},
		{"denomination in no key set", []auditlog.Op{auditlog.Withdraw{Account: customer, Amount: eur(200), RequestHash: tag("w2"),
			Issued: []auditlog.DenomCount{{Denom: unknown.ID, Value: unknown.Value, Count: 1}}}},
			auditlog.CheckDenomination, "coins issued of denomination " + shortHex(unknown.ID) + "…, which no earlier key set lists", 0},
		{"coin at another value than its denomination", []auditlog.Op{deposit(merchant, "p", auditlog.SpentCoin{ID: tag("coin a"), Denom: f.d2.ID, Value: eur(500)})},
			auditlog.CheckDenomination, "a coin spent of denomination " + shortHex(f.d2.ID) + "… at EUR:5.00, the key set values it EUR:2.00", 0},
		{"key set of another bank", []auditlog.Op{auditlog.KeySet{Signed: foreign.Encode()}}, auditlog.CheckKeySet, "the key set does not verify", 0},
		{"key set with a bad signature", []auditlog.Op{auditlog.KeySet{Signed: badSig}}, auditlog.CheckKeySet, "master signature", 0},
		{"key set in another currency", []auditlog.Op{auditlog.KeySet{Signed: usd.Encode()}}, auditlog.CheckCurrency, "a key set in USD, the bank's currency is EUR", 0},
		{"amount in another currency", []auditlog.Op{auditlog.Credit{Account: customer, Amount: ecash.Amount{Currency: "USD", Value: 1}}},
			auditlog.CheckCurrency, "an amount in USD, the bank's currency is EUR", 0},
		{"withdraw request used twice", []auditlog.Op{auditlog.Withdraw{Account: customer, Amount: eur(200), RequestHash: tag("withdraw 1"),
			Issued: []auditlog.DenomCount{{Denom: f.d2.ID, Value: f.d2.Value, Count: 1}}}},
			auditlog.CheckReplay, "withdraw request " + shortHex(tag("withdraw 1")) + "… was already used by entry 4", 0},
		{"credit reference used twice", []auditlog.Op{auditlog.Credit{Account: customer, Amount: eur(5000), Reference: auditlog.OptionalHash("wire 1")}},
			auditlog.CheckReplay, "credit reference", 0},
		{"payment deposited twice", []auditlog.Op{pay, deposit(merchant, "payment 1", c5)}, auditlog.CheckReplay, "payment " + shortHex(tag("payment 1")), 1},
		{"revoked denomination issued", []auditlog.Op{f.revoking(time.Hour, f.d2),
			auditlog.Withdraw{Account: customer, Amount: eur(200), RequestHash: tag("w2"), Issued: []auditlog.DenomCount{{Denom: f.d2.ID, Value: f.d2.Value, Count: 1}}}},
			auditlog.CheckRevoked, "which was revoked", 1},
		{"withdrawal signed by another key", []auditlog.Op{forgedW}, auditlog.CheckAuthorised, "withdrawal is not signed by the key of account 1000", 0},
		{"withdrawal of more than signed", []auditlog.Op{moreW}, auditlog.CheckAuthorised, "withdrawal is not signed by the key of account 1000", 0},
		{"check signed by another key", []auditlog.Op{forgedC}, auditlog.CheckAuthorised, "payment order 1001-1-9 is not signed by the key of account 1000", 0},
		{"check to another payee than signed", []auditlog.Op{otherMerchantC}, auditlog.CheckAuthorised, "payment order 1001-1-9 is not signed", 0},
		{"revoked denomination spent", []auditlog.Op{f.revoking(time.Hour, f.d2), pay}, auditlog.CheckRevoked, "which was revoked", 1},
		// A credited recoup pays the account that withdrew the coin: never
		// one that withdrew none of the denomination.
		{"recoup to an account that withdrew no coin of it", []auditlog.Op{f.revoking(time.Hour, f.d5),
			auditlog.Recoup{Account: merchant, Amount: eur(500), Coin: tag("no such coin"), Denom: f.d5.ID, RequestHash: tag("r1")}},
			auditlog.CheckRevoked, "credited to account 1001, which withdrew no coin of that denomination not already recouped", 1},
		// Nor more coins than it withdrew, though other accounts' coins of
		// the denomination leave the global count room.
		{"recoup of more coins than the account withdrew", func() []auditlog.Op {
			k2 := seedKey(0x13)
			w := auditlog.Withdraw{Account: 1002, Amount: eur(500), RequestHash: tag("w 1002"),
				Issued: []auditlog.DenomCount{{Denom: f.d5.ID, Value: f.d5.Value, Count: 1}}}
			w.AccountSig = ed25519.Sign(k2, ecash.WithdrawSignatureInput(w.Account, w.Debit(), w.RequestHash))
			return []auditlog.Op{
				auditlog.AccountOpened{Account: 1002, Key: k2.Public().(ed25519.PublicKey)},
				auditlog.Credit{Account: 1002, Amount: eur(500)}, w,
				f.revoking(time.Hour, f.d5),
				auditlog.Recoup{Account: customer, Amount: eur(500), Coin: tag("coin x"), Denom: f.d5.ID, RequestHash: tag("r1")},
				auditlog.Recoup{Account: customer, Amount: eur(500), Coin: tag("coin y"), Denom: f.d5.ID, RequestHash: tag("r2")},
			}
		}(), auditlog.CheckRevoked, "credited to account 1000, which withdrew no coin of that denomination not already recouped", 5},
		{"recoup of a denomination not revoked", []auditlog.Op{auditlog.Recoup{Account: customer, Amount: eur(200), Coin: tag("coin a"), Denom: f.d2.ID, RequestHash: tag("r")}},
			auditlog.CheckRevoked, "which was not revoked", 0},
		{"refund of a coin never spent", []auditlog.Op{pay, auditlog.Refund{Merchant: merchant, Amount: eur(100), PaymentHash: tag("payment 1"), RefundHash: tag("rf"),
			Coins: []auditlog.RefundedCoin{{ID: tag("coin b"), Denom: f.d2.ID, Value: eur(100)}}}}, auditlog.CheckRefund, "which was never spent", 1},
		{"refund above the payment", []auditlog.Op{pay, auditlog.Refund{Merchant: merchant, Amount: eur(300), PaymentHash: tag("payment 1"), RefundHash: tag("rf"),
			Coins: []auditlog.RefundedCoin{{ID: tag("coin a"), Denom: f.d2.ID, Value: eur(300)}}}}, auditlog.CheckRefund, "exceed the EUR:2.00 deposited in entry 5", 1},
		{"refund signed by another key", []auditlog.Op{pay, forgedRefund(f, a1)}, auditlog.CheckAuthorised,
			"the refund is not signed by the key of account 1001", 1},
		{"refund credit never given", []auditlog.Op{pay, creditSwap("s1", a1, 100, f.d1)}, auditlog.CheckDoubleSpend, "which has EUR:0.00 left", 1},
		{"refund credit spent twice", []auditlog.Op{pay, refundOf(a1, 100), creditSwap("s1", a1, 100, f.d1), creditSwap("s2", a1, 100, f.d1)},
			auditlog.CheckDoubleSpend, "which has EUR:0.00 left", 3},
		{"refund credit spent in part", []auditlog.Op{pay, refundOf(a1, 200), creditSwap("s1", a1, 100, f.d1)},
			auditlog.CheckDoubleSpend, "spends EUR:1.00 of refund credit of coin " + shortHex(a1.ID) + "…, which has EUR:2.00 left", 2},
	}
	base := history(t, f)
	before, err := replay(t, f.ks.MasterPub, base)
	if err != nil {
		t.Fatal(err)
	}
	saved := marshal(t, before)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			entries := history(t, f, c.ops...)
			a := auditlog.NewAuditor(f.ks.MasterPub)
			if err := a.UnmarshalBinary(saved); err != nil {
				t.Fatal(err)
			}
			var err error
			for _, b := range entries[nBase:] {
				if _, err = a.Apply(b); err != nil {
					break
				}
			}
			wantAt := int64(nBase + c.at)
			var ae *auditlog.AuditError
			if !errors.As(err, &ae) {
				t.Fatalf("got %v, want an AuditError at entry %d", err, wantAt)
			}
			if ae.Index != wantAt || ae.Check != c.check || !strings.Contains(ae.Msg, c.msg) {
				t.Fatalf("got %v\nwant entry %d, %s, %q", err, wantAt, c.check, c.msg)
			}
			if !errors.Is(err, auditlog.ErrInvariant) || errors.Is(err, auditlog.ErrEmergency) != (c.check == auditlog.CheckEmergency) {
				t.Errorf("%v: error classes wrong", err)
			}
			if a.Size() != wantAt {
				t.Errorf("size %d after a failure at %d", a.Size(), wantAt)
			}
			if c.at == 0 && !bytes.Equal(marshal(t, a), saved) {
				t.Error("a refused entry changed the auditor's state")
			}
		})
	}

	// Entries that do not decode, or are out of place.
	misplaced, err := auditlog.Entry{Index: 7, Time: fixtureBase, Op: auditlog.Credit{Account: customer, Amount: eur(1)}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		entry []byte
		check string
	}{{[]byte("not an entry"), auditlog.CheckDecode}, {misplaced, auditlog.CheckIndex}} {
		_, err := before.Apply(c.entry)
		var ae *auditlog.AuditError
		if !errors.As(err, &ae) || ae.Index != nBase || ae.Check != c.check {
			t.Errorf("got %v, want entry %d %s", err, nBase, c.check)
		}
	}
	// Coins before any key set.
	_, err = replay(t, nil, logOf(t, f, baseOps(f)[1:]))
	var ae *auditlog.AuditError
	if !errors.As(err, &ae) || ae.Index != 3 || ae.Check != auditlog.CheckDenomination {
		t.Errorf("a withdrawal before any key set: %v", err)
	}
}

// TestAuditRevocationNeedsMasterKey: a denomination is revoked in the
// auditor's eyes only by a key set the master key signed, the one wallets
// are served too. A bank with only its online log key logs a "revocation"
// entry (a kind the log once specified, which no key signs) for the 5.00
// denomination the customer withdrew, then credits the customer a recoup
// of it: the audit fails at the revocation, which decodes no longer, and
// nothing is revoked or recouped. The same recoup after a master-signed
// key set that lists the denomination revoked passes.
func TestAuditRevocationNeedsMasterKey(t *testing.T) {
	f := newFixture(t)
	recoup := auditlog.Recoup{Account: customer, Amount: eur(500), Coin: tag("coin r"), Denom: f.d5.ID, RequestHash: tag("recoup r")}
	// Built field by field: the package no longer encodes the kind.
	rev := newRaw("revocation", nBase, fixtureBase.Add(time.Hour).UnixMilli())
	rev.e.U32(1)
	rev.e.Fixed(f.d5.ID[:])
	recouped, err := auditlog.Entry{Index: nBase + 1, Time: fixtureBase.Add(time.Hour), Op: recoup}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	a, err := replay(t, f.ks.MasterPub, append(history(t, f), rev.bytes(), recouped))
	var ae *auditlog.AuditError
	if !errors.As(err, &ae) || ae.Index != nBase || ae.Check != auditlog.CheckDecode || !strings.Contains(ae.Msg, "master-signed key set") {
		t.Fatalf("a revocation by the log key alone, then a recoup of the denomination: got %v, want a failure at entry %d (%s)", err, nBase, auditlog.CheckDecode)
	}
	r := a.Report()
	if r.Entries != nBase || r.Totals.Recouped != 0 || slices.ContainsFunc(r.Denominations, func(d auditlog.DenomReport) bool { return d.Revoked }) {
		t.Errorf("after the refused revocation: %d entries, recouped %d, denominations %+v", r.Entries, r.Totals.Recouped, r.Denominations)
	}

	a, err = replay(t, f.ks.MasterPub, history(t, f, f.revoking(time.Hour, f.d5), recoup))
	if err != nil {
		t.Fatalf("a recoup after a master-signed key set revoking it: %v", err)
	}
	if r := a.Report(); r.Totals.Recouped != 500 || r.WarningsTotal != 0 {
		t.Errorf("recouped %d, warnings %v", r.Totals.Recouped, r.Warnings)
	}
}

func shortHex(h ecash.Hash) string { return h.String()[:16] }

// TestAuditRefundBoundToPayment: a refund restores value only to coins the
// refunded payment deposited, at the denomination each was deposited as
// (whose deposit fee caps what the coin can get back and whose refund fee
// the merchant pays), and only the merchant that payment paid may refund it.
// Each case breaks one of these with every other check satisfied: the
// refund is signed by the merchant named and within the payment's and the
// coin's budgets.
func TestAuditRefundBoundToPayment(t *testing.T) {
	f := newFixture(t)
	// The fixture's key set with fees (a 2.00 coin costs 0.10 to deposit
	// and 0.05 to refund, a 5.00 coin 0.50 to refund), and a second 2.00
	// denomination that costs nothing to deposit and 0.01 to refund.
	ks := *f.ks
	ks.Denominations = slices.Clone(f.ks.Denominations)
	for i := range ks.Denominations {
		switch ks.Denominations[i].ID {
		case f.d2.ID:
			ks.Denominations[i].Fees = ecash.Fees{Deposit: eur(10), Refund: eur(5)}
		case f.d5.ID:
			ks.Denominations[i].Fees = ecash.Fees{Refund: eur(50)}
		}
	}
	sk, err := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{0x30}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	twin := f.d2
	twin.Key = sk.Public()
	twin.ID = ecash.DenominationID(twin.Value, twin.Key)
	twin.Fees = ecash.Fees{Refund: eur(1)}
	ks.Denominations = append(ks.Denominations, twin)
	ks.Sign(f.master)
	const other = 1002 // a second merchant
	otherKey := seedKey(0x13)
	base := append([]auditlog.Op{auditlog.KeySet{Signed: ks.Encode()}}, baseOps(f)[1:]...)
	base = append(base, auditlog.AccountOpened{Account: other, Merchant: true, Key: otherKey.Public().(ed25519.PublicKey)},
		auditlog.Credit{Account: merchant, Amount: eur(1000)}, auditlog.Credit{Account: other, Amount: eur(1000)})
	// Payment 1 pays the merchant coin a, payment 2 pays the customer coin
	// b; each coin pays 1.90 after its deposit fee.
	a, b := coinOf("a", f.d2), coinOf("b", f.d2)
	base = append(base,
		auditlog.Deposit{Merchant: merchant, Amount: eur(200), Fee: eur(10), PaymentHash: tag("payment 1"), Coins: []auditlog.SpentCoin{a}},
		auditlog.Deposit{Merchant: customer, Amount: eur(200), Fee: eur(10), PaymentHash: tag("payment 2"), Coins: []auditlog.SpentCoin{b}})
	// refund gives payment 1's 1.90 back to coin id as a coin of d, for a
	// fee of fee cents.
	refund := func(id ecash.Hash, d ecash.Denomination, fee uint64) auditlog.Refund {
		return auditlog.Refund{Merchant: merchant, Amount: eur(190), PaymentHash: tag("payment 1"), RefundID: 1,
			Coins: []auditlog.RefundedCoin{{ID: id, Denom: d.ID, Value: eur(190)}}, Fee: eur(fee)}
	}
	if _, err := replay(t, f.ks.MasterPub, logOf(t, f, append(slices.Clone(base), refund(a.ID, f.d2, 5)))); err != nil {
		t.Fatalf("the honest refund: %v", err)
	}
	byOther := refund(a.ID, f.d2, 5)
	byOther.Merchant, byOther.CreatedAt = other, fixtureBase
	req := byOther.Request()
	req.Sign(otherKey)
	byOther.MerchantSig, byOther.RefundHash = req.MerchantSig, req.Hash()
	cases := []struct {
		name string
		op   auditlog.Refund
		msg  string
	}{
		// Coin b is payment 2's: the credit would go to someone else's coin.
		{"credit to a coin of another payment", refund(b.ID, f.d2, 5), "which payment " + shortHex(tag("payment 1")) + "… did not spend"},
		// As a 5.00 coin, coin a would cost the merchant 0.50 and lose its
		// deposit fee's bound.
		{"coin at a denomination of another value", refund(a.ID, f.d5, 50), "not the one it was deposited as"},
		// As a coin of the twin 2.00 denomination coin a would cost the
		// merchant 0.01, not 0.05: its value alone does not name it.
		{"coin at another denomination of its value", refund(a.ID, twin, 1), "not the one it was deposited as"},
		// Merchant 1002 signs a refund of merchant 1001's payment: its own
		// money, but it uses up payment 1's refunds and credits its coin.
		{"a refund by a merchant the payment did not pay", byOther, "refund by account 1002 of payment " + shortHex(tag("payment 1")) + "…, which paid account 1001"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			entries := logOf(t, f, append(slices.Clone(base), c.op))
			_, err := replay(t, f.ks.MasterPub, entries)
			var ae *auditlog.AuditError
			if !errors.As(err, &ae) || ae.Index != int64(len(entries)-1) || ae.Check != auditlog.CheckRefund || !strings.Contains(ae.Msg, c.msg) {
				t.Fatalf("got %v\nwant entry %d, %s, %q", err, len(entries)-1, auditlog.CheckRefund, c.msg)
			}
		})
	}
}

// TestAuditWarnings: what is suspicious but moves no money wrongly is a
// warning, not a failure.
func TestAuditWarnings(t *testing.T) {
	f := newFixture(t)
	m := auditlog.NewMemLog()
	ops := append(baseOps(f), auditlog.Check{EPOID: "1001-1-1", EPOHash: tag("e"), Customer: customer, Merchant: merchant,
		Amount: eur(100), Outcome: auditlog.OutcomeInsufficientFunds})
	for i, op := range ops {
		at := fixtureBase.Add(time.Duration(i) * time.Second)
		if i == 4 {
			at = fixtureBase.AddDate(2, 0, 0) // the withdraw window closed after a year
		}
		if _, err := m.Append(f.authorise(op), at); err != nil {
			t.Fatal(err)
		}
	}
	a, err := replay(t, nil, memEntries(t, m))
	if err != nil {
		t.Fatal(err)
	}
	r := a.Report()
	if r.WarningsTotal != 3 || len(r.Warnings) != 3 {
		t.Fatalf("warnings %v", r.Warnings)
	}
	for i, want := range []string{"1 coins of EUR:5.00", "2 coins of EUR:2.00", "declined for insufficient funds, but account 1000 held EUR:41.00"} {
		if !strings.Contains(r.Warnings[i].String(), want) {
			t.Errorf("warning %d: %s, want %q", i, r.Warnings[i], want)
		}
	}
}

// TestAuditParallelKeys: a key set adding a successor of a key (starting in
// the second half of its withdraw window) is quiet; one adding a second
// key of a value withdrawable beside the first, which lets a bank serve
// some wallets one and recognise their coins, is warned of.
func TestAuditParallelKeys(t *testing.T) {
	f := newFixture(t)
	ks := *f.ks
	ks.Denominations = append([]ecash.Denomination(nil), f.ks.Denominations...)
	add := func(seed byte, value uint64, start time.Time) ecash.Hash {
		sk, err := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
		if err != nil {
			t.Fatal(err)
		}
		d := ecash.Denomination{ID: ecash.DenominationID(eur(value), sk.Public()), Value: eur(value), Key: sk.Public(),
			WithdrawStart: start, WithdrawEnd: start.AddDate(1, 0, 0), DepositEnd: start.AddDate(3, 0, 0)}
		ks.Denominations = append(ks.Denominations, d)
		return d.ID
	}
	add(0x40, 100, fixtureBase.AddDate(0, 11, 0)) // EUR:1.00's successor
	parallel := add(0x41, 200, fixtureBase.AddDate(0, 1, 0))
	ks.IssuedAt = fixtureBase.Add(time.Hour)
	ks.Sign(f.master)
	m := auditlog.NewMemLog()
	for i, op := range append(baseOps(f), auditlog.KeySet{Signed: ks.Encode()}) {
		if _, err := m.Append(f.authorise(op), fixtureBase.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := replay(t, nil, memEntries(t, m))
	if err != nil {
		t.Fatal(err)
	}
	r := a.Report()
	if r.WarningsTotal != 1 || !strings.Contains(r.Warnings[0].String(), shortHex(parallel)) || !strings.Contains(r.Warnings[0].String(), "beside") {
		t.Fatalf("warnings %v; want one, of the parallel EUR:2.00 key", r.Warnings)
	}
}

// TestAuditBankScheduleQuiet: the keys a bank makes ahead of time on its
// schedule (successive keys of every value, each overlapping the next by a
// twelfth of a period), logged as one key set, extended in another, and
// extended again on a changed schedule, draw no warning of parallel keys.
func TestAuditBankScheduleQuiet(t *testing.T) {
	now := fixtureBase
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{eur(1), eur(2)}, Cipher: ecash.CipherCS,
		WithdrawPeriod: 30 * 24 * time.Hour, DepositPeriod: 90 * 24 * time.Hour, Until: now.AddDate(0, 4, 0)}, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	first := k.KeySet().Encode()
	// Each change is issued later than the one before (keys.go changed):
	// an earlier or equal issue time is warned of.
	if _, err := k.Extend(bank.Schedule{}, now.AddDate(0, 8, 0), now.Add(time.Minute), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if n := len(k.KeySet().Denominations); n < 12 {
		t.Fatalf("%d keys for two values over eight months of 30-day keys", n)
	}
	second := k.KeySet().Encode()
	// The schedule changed to yearly keys overlapping by a month, longer
	// than half the old keys' period: the first new key still starts in
	// the second half of the last old one's window.
	year := 365 * 24 * time.Hour
	if _, err := k.Extend(bank.Schedule{WithdrawPeriod: year, Overlap: 30 * 24 * time.Hour, DepositLifetime: year}, now.AddDate(3, 0, 0), now.Add(2*time.Minute), rand.Reader); err != nil {
		t.Fatal(err)
	}
	third := k.KeySet().Encode()
	// A month in, the current 2.00 key is revoked (its successor made
	// already) and the schedule extended: the bridge to the successor is
	// no parallel key.
	at := now.AddDate(0, 1, 10)
	cur, err := k.KeySet().CurrentDenomination(eur(2), at)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Revoke(cur.ID, at); err != nil {
		t.Fatal(err)
	}
	if added, err := k.Extend(bank.Schedule{}, now.AddDate(3, 0, 0), at, rand.Reader); err != nil || len(added) != 1 {
		t.Fatalf("extend after the revocation: %d keys, %v; want the bridge", len(added), err)
	}
	m := auditlog.NewMemLog()
	for i, signed := range [][]byte{first, second, third, k.KeySet().Encode()} {
		if _, err := m.Append(auditlog.KeySet{Signed: signed}, now.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := replay(t, nil, memEntries(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if r := a.Report(); r.WarningsTotal != 0 {
		t.Fatalf("warnings %v", r.Warnings)
	}
}

// TestParallelKeyWarningsBounded: a key set may list 256 denominations of
// one value, all live at once, and a log may hold many such sets. Each
// denomination added draws one warning (naming the first key it runs
// beside and how many more), not one per pair, and past MaxAuditWarnings
// they are counted, not written: a warning per pair, each formatted and
// held until its entry committed, let a log of a few hundred KiB take the
// auditor's memory into the gigabytes.
func TestParallelKeyWarningsBounded(t *testing.T) {
	f := newFixture(t)
	const perSet, sets = 256, 8
	keySet := func(i int) []byte {
		ks := *f.ks
		ks.Denominations = nil
		ks.IssuedAt = fixtureBase.Add(time.Duration(i) * time.Second)
		for range perSet {
			sk, err := ecash.GenerateCSKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			ks.Denominations = append(ks.Denominations, ecash.Denomination{
				ID: ecash.DenominationID(eur(100), sk.Public()), Value: eur(100), Key: sk.Public(),
				WithdrawStart: fixtureBase, WithdrawEnd: fixtureBase.AddDate(10, 0, 0), DepositEnd: fixtureBase.AddDate(10, 0, 0),
			})
		}
		ks.Sign(f.master)
		return ks.Encode()
	}
	a := auditlog.NewAuditor(f.ks.MasterPub)
	var alloc uint64
	for i := range sets {
		b, err := auditlog.Entry{Index: int64(i), Time: fixtureBase, Op: auditlog.KeySet{Signed: keySet(i)}}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		if _, err := a.Apply(b); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&m1)
		alloc = m1.TotalAlloc - m0.TotalAlloc
	}
	r := a.Report()
	// The first set's first key runs beside none; every other key beside
	// all those listed before it. And each set after the first drops the
	// keys of the one before, still accepted: one warning more each.
	if want := int64(sets*perSet - 1 + sets - 1); r.WarningsTotal != want {
		t.Errorf("%d warnings counted, want one for each key added beside another and one for each set dropping live keys: %d", r.WarningsTotal, want)
	}
	if len(r.Warnings) != auditlog.MaxAuditWarnings {
		t.Errorf("%d warnings kept, want %d", len(r.Warnings), auditlog.MaxAuditWarnings)
	}
	if last := r.Warnings[len(r.Warnings)-1].Msg; !strings.Contains(last, "more of the same value") {
		t.Errorf("a warning of a key beside many: %q", last)
	}
	// Per pair, the last set's entry allocated hundreds of MiB; its own
	// bytes and a walk of the keys known are a few.
	if alloc > 64<<20 {
		t.Errorf("the %dth key set made the auditor allocate %d MiB", sets, alloc>>20)
	}
}
