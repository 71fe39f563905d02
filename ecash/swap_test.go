package ecash_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

func FuzzDecodeSwapRequest(f *testing.F) {
	fuzzFixture(f)
	addSeeds(f, "swap-request")
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ecash.DecodeSwapRequest(b)
		checkDecode(t, b, r, err, (*ecash.SwapRequest).Body)
		if err == nil && (len(r.Inputs) == 0 || len(r.Outputs) == 0 || len(r.Inputs) > ecash.MaxCoinsPerRequest || len(r.Outputs) > ecash.MaxCoinsPerRequest) {
			t.Fatalf("%d inputs, %d outputs accepted", len(r.Inputs), len(r.Outputs))
		}
	})
}

// TestSwapPermissionBinding: a swap input's signature binds the coin to the
// outputs, the value and the time, and can never be used as a payment: the
// permission names account 0 (SwapAccount), which no payment request does.
func TestSwapPermissionBinding(t *testing.T) {
	fx := newVectorFixture(t)
	r := fx.swap
	back, err := ecash.DecodeSwapRequest(r.Body())
	if err != nil || !bytes.Equal(back.Body(), r.Body()) {
		t.Fatalf("round trip: %v", err)
	}
	dp := r.Permission(0, fx.denom.Value)
	if err := dp.Verify(); err != nil {
		t.Fatalf("swap permission: %v", err)
	}
	// The forms that take the outputs hash once give the same permissions.
	if got := r.PermissionOver(r.OutputsHash(), 0, fx.denom.Value); !bytes.Equal(got.Encode(), dp.Encode()) {
		t.Error("PermissionOver differs from Permission")
	}
	credit := ecash.MustParseAmount("EUR:0.01")
	if a, b := r.CreditPermission(0, credit), dp.ForCredit(credit); !bytes.Equal(a.Encode(), b.Encode()) || a.MerchantAccount != ecash.CreditAccount {
		t.Error("ForCredit differs from CreditPermission")
	}
	tamper := map[string]func(p *ecash.DepositPermission){
		"as a payment to a merchant": func(p *ecash.DepositPermission) { p.MerchantAccount = fx.req.MerchantAccount },
		"for a payment request":      func(p *ecash.DepositPermission) { p.PaymentHash = fx.req.Hash() },
		"at another value":           func(p *ecash.DepositPermission) { p.Value = ecash.MustParseAmount("EUR:10") },
		"at another time":            func(p *ecash.DepositPermission) { p.Timestamp = p.Timestamp.Add(time.Millisecond) },
	}
	for name, f := range tamper {
		p := dp
		f(&p)
		if err := p.Verify(); !errors.Is(err, ecash.ErrBadSignature) {
			t.Errorf("swap permission %s: %v, want ErrBadSignature", name, err)
		}
	}
	// The payment's permissions, in turn, do not verify as swap inputs.
	pay := fx.pay.Permissions[0]
	asSwap := &ecash.SwapRequest{CreatedAt: pay.Timestamp, Inputs: []ecash.SwapInput{{Coin: pay.Coin, CoinSig: pay.CoinSig}}, Outputs: r.Outputs}
	asPerm := asSwap.Permission(0, pay.Value)
	if err := asPerm.Verify(); !errors.Is(err, ecash.ErrBadSignature) {
		t.Errorf("a payment permission used as a swap input: %v, want ErrBadSignature", err)
	}
	// Two inputs, each bound by its own key.
	keys := []ed25519.PrivateKey{fx.secrets[0].CoinKey, fx.secrets[1].CoinKey}
	two, err := ecash.NewSwapRequest(fx.coins, keys, []ecash.Amount{fx.denom.Value, fx.denom.Value}, r.Outputs, vecCreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	two.Inputs[0].CoinSig, two.Inputs[1].CoinSig = two.Inputs[1].CoinSig, two.Inputs[0].CoinSig
	if p := two.Permission(0, fx.denom.Value); p.Verify() == nil {
		t.Error("input signatures swapped between coins verify")
	}
	if _, err := ecash.NewSwapRequest(fx.coins, keys[:1], []ecash.Amount{fx.denom.Value}, r.Outputs, vecCreatedAt); err == nil {
		t.Error("NewSwapRequest with fewer keys than coins succeeded")
	}
}

func FuzzDecodeRecoupRequest(f *testing.F) {
	fuzzFixture(f)
	addSeeds(f, "recoup-request")
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ecash.DecodeRecoupRequest(b)
		checkDecode(t, b, r, err, (*ecash.RecoupRequest).Encode)
		if err == nil && len(r.Outputs) > ecash.MaxCoinsPerRequest {
			t.Fatalf("%d outputs accepted", len(r.Outputs))
		}
	})
}

// TestRevocation: a key set that lists a denomination as revoked round
// trips, marks it, and refuses to issue or accept its coins; a revocation
// section naming no listed denomination, unsorted or empty, is malformed.
func TestRevocation(t *testing.T) {
	fx := newVectorFixture(t)
	ks := *fx.ks
	ks.Denominations = append([]ecash.Denomination(nil), fx.ks.Denominations...)
	ks.Denominations[0].Revoked = true
	ks.Sign(fx.master)
	back, err := ecash.DecodeKeySet(ks.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := back.Denomination(fx.denom.ID)
	if err != nil || !d.Revoked {
		t.Fatalf("revoked denomination decodes as %+v, %v", d, err)
	}
	at := fx.denom.WithdrawStart.Add(time.Hour)
	if err := d.CanWithdraw(at); !errors.Is(err, ecash.ErrDenominationRevoked) {
		t.Errorf("withdraw of a revoked denomination: %v", err)
	}
	if err := d.CanDeposit(at); !errors.Is(err, ecash.ErrDenominationRevoked) {
		t.Errorf("deposit of a revoked denomination: %v", err)
	}
	if got := back.Revoked(); len(got) != 1 || got[0] != fx.denom.ID {
		t.Errorf("Revoked() = %x", got)
	}
	// Without revocations the encoding is the one the vectors fix.
	if plain, _ := ecash.DecodeKeySet(fx.ks.Encode(), nil); len(plain.Revoked()) != 0 {
		t.Error("a key set without a revocation section lists revocations")
	}
	// A section naming an unknown denomination is refused.
	body := fx.ks.Body()
	e := ecash.Encoder{}
	e.U8(2)
	e.U32(1)
	e.Fixed(make([]byte, 32))
	bad := append(append([]byte(nil), body...), e.Bytes()...)
	sig := ed25519.Sign(fx.master, bad)
	signed := ecash.NewEncoder("signed-keyset")
	signed.VarBytes(bad)
	signed.Fixed(sig)
	if _, err := ecash.DecodeKeySet(signed.Bytes(), nil); !errors.Is(err, ecash.ErrMalformed) {
		t.Errorf("revocation of an unknown denomination: %v, want ErrMalformed", err)
	}
}
