package auditlog_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// The privacy rule: a withdrawal (or swap) entry holds nothing that can also
// be computed from the deposit of the coins it issued. The test runs a real
// withdraw and pay flow (CS coins), builds the entries the way the bank
// does, and checks that the withdrawal entry shares no string of 16 bytes or
// more with anything the deposit side produces — the deposit entry, the
// signed deposit permissions, the coins, the payment and its request —
// once the public constants are masked out: the tag prefix every entry
// starts with, and the id and value of each denomination (public in the key
// set, shared by every coin of the denomination).

const minShared = 16

type planchetRun struct {
	coins     []ecash.Coin
	coinKeys  []ed25519.PrivateKey
	values    []ecash.Amount
	planchets []ecash.Planchet
	blindSigs [][]byte
}

// issue derives, blinds, signs and unblinds coins of the given
// denominations from walletSeed, starting at planchet index first.
func (f *fixture) issue(t *testing.T, walletSeed []byte, first uint64, denoms ...ecash.Denomination) planchetRun {
	t.Helper()
	var r planchetRun
	for i, d := range denoms {
		ps, err := ecash.DerivePlanchet(walletSeed, first+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		sk := f.denomKeys[d.ID]
		prepared, err := sk.Prepare(ps.PrepareRequest(d))
		if err != nil {
			t.Fatal(err)
		}
		p, st, err := ps.Blind(d, prepared)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := sk.BlindSign(p.Blinded)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := st.Unblind(bs)
		if err != nil {
			t.Fatal(err)
		}
		r.coins = append(r.coins, ecash.Coin{Denom: d.ID, Pub: ps.CoinPub(), Sig: sig})
		r.coinKeys = append(r.coinKeys, ps.CoinKey)
		r.values = append(r.values, d.Value)
		r.planchets = append(r.planchets, p)
		r.blindSigs = append(r.blindSigs, bs)
	}
	return r
}

// issued counts coins per denomination, as the bank does for the log.
func issued(ks *ecash.KeySet, ps []ecash.Planchet) ([]auditlog.DenomCount, ecash.Amount) {
	counts := map[ecash.Hash]uint32{}
	total := ecash.Amount{Currency: ks.Currency}
	for _, p := range ps {
		counts[p.Denom]++
		d, _ := ks.Denomination(p.Denom)
		total, _ = total.Add(d.Value)
	}
	var out []auditlog.DenomCount
	for id, n := range counts {
		d, _ := ks.Denomination(id)
		out = append(out, auditlog.DenomCount{Denom: id, Value: d.Value, Count: n})
	}
	return out, total
}

func TestPrivacyWithdrawDeposit(t *testing.T) {
	f := newFixture(t)
	now := fixtureBase.Add(time.Hour)
	walletSeed := bytes.Repeat([]byte{0x42}, 32)
	accountKey, err := ecash.DeriveAccountKey(walletSeed)
	if err != nil {
		t.Fatal(err)
	}
	run := f.issue(t, walletSeed, 0, f.d2, f.d2, f.d5, f.d1)

	// Withdraw: the signed request and the entry the bank logs.
	wr := &ecash.WithdrawRequest{Account: customer, CreatedAt: now, Planchets: run.planchets}
	copy(wr.Nonce[:], "0123456789abcdef")
	body := wr.Body()
	counts, total := issued(f.ks, run.planchets)
	log := auditlog.NewMemLog()
	// The account's signature, which the entry carries for the auditor,
	// is over the account, the amount and the request hash only.
	accountSig := ecash.SignWithdraw(accountKey, wr, total)
	we, err := log.Append(auditlog.Withdraw{Account: customer, Amount: total, RequestHash: ecash.HashOf(body), AccountSig: accountSig, Issued: counts}, now)
	if err != nil {
		t.Fatal(err)
	}
	wEnc, _ := log.Entry(we.Index)
	if !bytes.Contains(wEnc, accountSig) {
		t.Fatal("the withdraw entry does not carry the account's signature")
	}

	// Pay: the merchant's request, the wallet's permissions, the deposit
	// entry.
	req := &ecash.PaymentRequest{
		BankID: f.ks.BankID(), MerchantAccount: merchant, MerchantPub: f.merchantKey.Public().(ed25519.PublicKey),
		OrderID: "order-1", Amount: total, SummaryHash: ecash.HashOf([]byte("a book")),
		CreatedAt: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour),
	}
	pay, err := ecash.NewPayment(req, run.coins, run.coinKeys, run.values, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var spent []auditlog.SpentCoin
	depositSide := [][]byte{req.Body(), pay.Encode()}
	for _, dp := range pay.Permissions {
		enc := dp.Encode()
		spent = append(spent, auditlog.SpentCoin{ID: dp.Coin.ID(), Denom: dp.Coin.Denom, Value: dp.Value, PermissionHash: ecash.HashOf(enc)})
		id := dp.Coin.ID()
		depositSide = append(depositSide, enc, dp.Body(), dp.Coin.Encode(), dp.Coin.Pub, id[:])
	}
	de, err := log.Append(auditlog.Deposit{Merchant: merchant, Amount: total, PaymentHash: req.Hash(), Coins: spent}, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dEnc, _ := log.Entry(de.Index)
	depositSide = append(depositSide, dEnc)

	mask := [][]byte{[]byte(ecash.TagPrefix + "auditlog/")}
	for _, d := range f.ks.Denominations {
		v := ecash.Encoder{}
		v.Amount(d.Value)
		mask = append(mask, d.ID[:], v.Bytes())
	}
	if s := sharedString(wEnc, depositSide, mask); s != nil {
		t.Errorf("withdraw entry shares %d bytes %x with the deposit side", len(s), s)
	}
	// Nor does it hold any part of the blinded messages or blind
	// signatures, or of the request beyond its hash (its nonce and its
	// planchets).
	var secretish [][]byte
	for i := range run.planchets {
		secretish = append(secretish, run.planchets[i].Blinded, run.blindSigs[i])
	}
	secretish = append(secretish, body[len(body)-len(run.planchets[0].Blinded):], wr.Nonce[:])
	if s := sharedString(wEnc, secretish, mask); s != nil {
		t.Errorf("withdraw entry holds %x of a blinded message or signature", s)
	}

	// The same for a swap's fresh coins: spend a coin of 2.00, issue two
	// of 1.00, and deposit the two.
	fresh := f.issue(t, walletSeed, 10, f.d1, f.d1)
	freshCounts, out := issued(f.ks, fresh.planchets)
	old := f.issue(t, walletSeed, 20, f.d2).coins[0] // a coin of the same value, never deposited
	in := auditlog.SpentCoin{ID: old.ID(), Denom: old.Denom, Value: f.d2.Value, PermissionHash: ecash.HashOf([]byte("its swap permission"))}
	swapBody := ecash.NewEncoder("swap-request")
	for _, p := range fresh.planchets {
		swapBody.VarBytes(p.Blinded)
	}
	se, err := log.Append(auditlog.Swap{RequestHash: ecash.HashOf(swapBody.Bytes()), AmountIn: in.Value, AmountOut: out,
		Spent: []auditlog.SpentCoin{in}, Issued: freshCounts}, now.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sEnc, _ := log.Entry(se.Index)
	req2 := *req
	req2.OrderID, req2.Amount = "order-2", out
	pay2, err := ecash.NewPayment(&req2, fresh.coins, fresh.coinKeys, fresh.values, now.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	side2 := [][]byte{req2.Body(), pay2.Encode()}
	var spent2 []auditlog.SpentCoin
	for _, dp := range pay2.Permissions {
		enc := dp.Encode()
		spent2 = append(spent2, auditlog.SpentCoin{ID: dp.Coin.ID(), Denom: dp.Coin.Denom, Value: dp.Value, PermissionHash: ecash.HashOf(enc)})
		side2 = append(side2, enc, dp.Coin.Encode())
	}
	de2, err := log.Append(auditlog.Deposit{Merchant: merchant, Amount: out, PaymentHash: req2.Hash(), Coins: spent2}, now.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	d2Enc, _ := log.Entry(de2.Index)
	side2 = append(side2, d2Enc)
	if s := sharedString(sEnc, side2, mask); s != nil {
		t.Errorf("swap entry shares %d bytes %x with the deposit of its fresh coins", len(s), s)
	}

	// The check itself finds what it should: without masking, the tag
	// prefix is shared; an entry that leaked a coin id is caught.
	if sharedString(wEnc, [][]byte{dEnc}, nil) == nil {
		t.Error("the check misses the shared tag prefix")
	}
	leaky := auditlog.Withdraw{Account: customer, Amount: total, RequestHash: run.coins[0].ID(), AccountSig: accountSig, Issued: counts}
	if sharedString(mustEncode(t, leaky), [][]byte{dEnc}, mask) == nil {
		t.Error("the check misses a coin id in a withdraw entry")
	}
}

func mustEncode(t *testing.T, op auditlog.Op) []byte {
	t.Helper()
	b, err := (&auditlog.Entry{Time: fixtureBase, Op: op}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sharedString returns a string of at least minShared bytes that occurs in
// a and in one of others, after every occurrence of each mask string is
// overwritten (with different filler on the two sides), or nil.
func sharedString(a []byte, others [][]byte, mask [][]byte) []byte {
	a = masked(a, mask, 0xA5)
	windows := map[string]bool{}
	for _, o := range others {
		o = masked(o, mask, 0x5A)
		for i := 0; i+minShared <= len(o); i++ {
			windows[string(o[i:i+minShared])] = true
		}
	}
	for i := 0; i+minShared <= len(a); i++ {
		if windows[string(a[i:i+minShared])] {
			return a[i : i+minShared]
		}
	}
	return nil
}

func masked(b []byte, mask [][]byte, fill byte) []byte {
	b = bytes.Clone(b)
	for _, m := range mask {
		for i := 0; ; {
			j := bytes.Index(b[i:], m)
			if j < 0 {
				break
			}
			for k := range m {
				b[i+j+k] = fill
			}
			i += j + len(m)
		}
	}
	return b
}
