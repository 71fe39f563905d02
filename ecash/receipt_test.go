package ecash_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

func TestDepositReceipt(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.receipt()
	if err := r.Verify(w.ks, w.req); err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(w.ks, nil); err != nil {
		t.Fatal(err)
	}
	got, err := ecash.DecodeDepositReceipt(r.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(w.ks, w.req); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Encode(), r.Encode()) || len(got.Coins) != 2 || got.Coins[1] != w.coins[1].ID() || !got.DepositedAt.Equal(r.DepositedAt) {
		t.Fatalf("decoded %+v", got)
	}

	// Signed by another key that claims to be the bank's.
	forged := w.receipt()
	forged.Sig = ecash.SignBody(edKey(50), forged.Body())
	if err := forged.Verify(w.ks, w.req); !errors.Is(err, ecash.ErrBadSignature) {
		t.Errorf("forged signature: %v", err)
	}
	// Signed by a key that is not the bank's signing key.
	foreign := w.receipt()
	foreign.SignerPub = edPub(edKey(50))
	foreign.Sig = ecash.SignBody(edKey(50), foreign.Body())
	if err := foreign.Verify(w.ks, w.req); !errors.Is(err, ecash.ErrBadSignature) {
		t.Errorf("foreign signer: %v", err)
	}
	// Signed by the master key instead of the online signing key.
	master := w.receipt()
	master.SignerPub = edPub(w.master)
	master.Sig = ecash.SignBody(w.master, master.Body())
	if err := master.Verify(w.ks, w.req); !errors.Is(err, ecash.ErrBadSignature) {
		t.Errorf("master-signed receipt: %v", err)
	}
	short := w.receipt()
	short.SignerPub = short.SignerPub[:31]
	if err := short.Verify(w.ks, nil); !errors.Is(err, ecash.ErrBadSignature) {
		t.Errorf("short signer key: %v", err)
	}

	// A valid receipt for another request does not answer this one.
	for name, mutate := range map[string]func(r *ecash.PaymentRequest){
		"order":   func(r *ecash.PaymentRequest) { r.OrderID = "order-0002" },
		"account": func(r *ecash.PaymentRequest) { r.MerchantAccount = 8 },
		"amount":  func(r *ecash.PaymentRequest) { r.Amount = eur5 },
	} {
		req := cloneRequest(w.req)
		mutate(req)
		if err := r.Verify(w.ks, req); !errors.Is(err, ecash.ErrBadSignature) {
			t.Errorf("receipt for another request (%s): %v", name, err)
		}
	}
	// Receipts re-signed with matching hash but another account or total.
	for name, mutate := range map[string]func(r *ecash.DepositReceipt){
		"account": func(r *ecash.DepositReceipt) { r.MerchantAccount = 8 },
		"total":   func(r *ecash.DepositReceipt) { r.Total = eur5 },
	} {
		x := w.receipt()
		mutate(x)
		x.Sig = ecash.SignBody(w.signing, x.Body())
		if err := x.Verify(w.ks, w.req); !errors.Is(err, ecash.ErrBadSignature) {
			t.Errorf("receipt with another %s: %v", name, err)
		}
	}

	// Tampering any field after signing breaks the signature.
	for name, mutate := range map[string]func(r *ecash.DepositReceipt){
		"payment hash": func(r *ecash.DepositReceipt) { r.PaymentHash[0] ^= 1 },
		"coins":        func(r *ecash.DepositReceipt) { r.Coins = r.Coins[:1] },
		"coin id":      func(r *ecash.DepositReceipt) { r.Coins[0][0] ^= 1 },
		"time":         func(r *ecash.DepositReceipt) { r.DepositedAt = r.DepositedAt.Add(time.Millisecond) },
		"signature":    func(r *ecash.DepositReceipt) { r.Sig = flip(r.Sig, 1) },
	} {
		x := w.receipt()
		mutate(x)
		if err := x.Verify(w.ks, nil); !errors.Is(err, ecash.ErrBadSignature) {
			t.Errorf("tampered %s: %v", name, err)
		}
	}
}

func TestDoubleSpendProof(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p := w.proof()
	if err := p.Verify(w.ks); err != nil {
		t.Fatal(err)
	}
	got, err := ecash.DecodeDoubleSpendProof(p.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(w.ks); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Encode(), p.Encode()) || !got.DetectedAt.Equal(p.DetectedAt) || got.Earlier.Value != eur5 {
		t.Fatal("decoded proof differs")
	}

	resign := func(p *ecash.DoubleSpendProof) { p.BankSig = ecash.SignBody(w.signing, p.Body()) }
	for _, tc := range []struct {
		name   string
		mutate func(p *ecash.DoubleSpendProof)
		want   error
	}{
		// The bank's signature.
		{"bank signature", func(p *ecash.DoubleSpendProof) { p.BankSig = flip(p.BankSig, 0) }, ecash.ErrBadSignature},
		{"detected at", func(p *ecash.DoubleSpendProof) { p.DetectedAt = p.DetectedAt.Add(time.Second) }, ecash.ErrBadSignature},
		{"unknown signer", func(p *ecash.DoubleSpendProof) {
			p.SignerPub = edPub(edKey(50))
			p.BankSig = ecash.SignBody(edKey(50), p.Body())
		}, ecash.ErrBadSignature},
		{"earlier payment hash, not re-signed", func(p *ecash.DoubleSpendProof) { p.Earlier.PaymentHash[0] ^= 1 }, ecash.ErrBadSignature},
		// The denomination's signature on the coin, with a valid bank signature.
		{"denomination signature", func(p *ecash.DoubleSpendProof) {
			p.Earlier.Coin.Sig = flip(p.Earlier.Coin.Sig, 40)
			resign(p)
		}, ecash.ErrBadSignature},
		{"coin from another denomination", func(p *ecash.DoubleSpendProof) {
			p.Earlier.Coin.Denom = w.ks.Denominations[1].ID
			p.Earlier.Value = w.ks.Denominations[1].Value
			resign(p)
		}, ecash.ErrBadSignature},
		{"unknown denomination", func(p *ecash.DoubleSpendProof) {
			p.Earlier.Coin.Denom[0] ^= 1
			resign(p)
		}, ecash.ErrUnknownDenomination},
		{"wrong value", func(p *ecash.DoubleSpendProof) {
			p.Earlier.Value = eur10
			resign(p)
		}, ecash.ErrBadSignature},
		// The coin's signature on the earlier permission, with a valid bank signature.
		{"coin signature", func(p *ecash.DoubleSpendProof) {
			p.Earlier.CoinSig = flip(p.Earlier.CoinSig, 0)
			resign(p)
		}, ecash.ErrBadSignature},
		{"earlier merchant account", func(p *ecash.DoubleSpendProof) {
			p.Earlier.MerchantAccount = 8
			resign(p)
		}, ecash.ErrBadSignature},
		{"earlier payment hash", func(p *ecash.DoubleSpendProof) {
			p.Earlier.PaymentHash[0] ^= 1
			resign(p)
		}, ecash.ErrBadSignature},
		{"permission of another coin", func(p *ecash.DoubleSpendProof) {
			p.Earlier.CoinSig = bytes.Clone(w.pay.Permissions[1].CoinSig)
			resign(p)
		}, ecash.ErrBadSignature},
	} {
		x := w.proof()
		tc.mutate(x)
		if err := x.Verify(w.ks); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
		// The same holds after an encode/decode round trip.
		if y, err := ecash.DecodeDoubleSpendProof(x.Encode()); err == nil {
			if err := y.Verify(w.ks); !errors.Is(err, tc.want) {
				t.Errorf("%s after decode: Verify = %v, want %v", tc.name, err, tc.want)
			}
		}
	}
}

func TestDoubleSpendError(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p := w.proof()
	err := fmt.Errorf("deposit refused: %w", &ecash.DoubleSpendError{Proof: p})
	if !errors.Is(err, ecash.ErrDoubleSpend) {
		t.Fatal("errors.Is(ErrDoubleSpend) is false")
	}
	var dse *ecash.DoubleSpendError
	if !errors.As(err, &dse) || dse.Proof != p {
		t.Fatal("errors.As did not find the proof")
	}
	id := p.Earlier.Coin.ID()
	if !strings.Contains(err.Error(), fmt.Sprintf("%x", id[:8])) {
		t.Errorf("message %q does not name the coin", err)
	}
	if errors.Is(err, ecash.ErrBadSignature) || errors.Is(ecash.ErrBadSignature, ecash.ErrDoubleSpend) {
		t.Error("ErrDoubleSpend matches unrelated errors")
	}
}

func TestCoinID(t *testing.T) {
	w := newWorld(t)
	c := w.coins[0]
	id := c.ID()
	if id != ecash.HashOf(c.Pub) || id.String() != fmt.Sprintf("%x", id[:]) {
		t.Fatal("coin id")
	}
}
