package ecash_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

func TestPaymentRequest(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	body := w.req.Body()
	if w.req.Hash() != ecash.HashOf(body) {
		t.Fatal("Hash is not SHA-256 of Body")
	}
	got, err := ecash.DecodePaymentRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.BankID != w.req.BankID || got.MerchantAccount != 7 || !got.MerchantPub.Equal(w.req.MerchantPub) ||
		got.OrderID != testOrder || got.Amount != eur10 || got.SummaryHash != w.req.SummaryHash ||
		!got.CreatedAt.Equal(t0Millis) || !got.ExpiresAt.Equal(w.req.ExpiresAt) || got.Hash() != w.req.Hash() {
		t.Fatalf("decoded %+v", got)
	}

	// Order ids are printable ASCII: the wallet shows them for confirmation.
	for _, bad := range []string{"ord-1\x1b[6A\r", "ord 1", "ord-\x7f", "ord-\u00e9", "ord-1\n"} {
		r := cloneRequest(w.req)
		r.OrderID = bad
		if _, err := ecash.DecodePaymentRequest(r.Body()); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("order id %q: %v, want ErrMalformed", bad, err)
		}
	}

	// A new request lives at most MaxPaymentLifetime: the coins a wallet
	// sends stay pending until it expires. One stored from before the bound
	// still decodes.
	r := cloneRequest(w.req)
	r.ExpiresAt = r.CreatedAt.Add(ecash.MaxPaymentLifetime)
	if got, err = ecash.DecodePaymentRequest(r.Body()); err == nil {
		err = got.CheckLifetime()
	}
	if err != nil {
		t.Errorf("a request of the longest life: %v", err)
	}
	r.ExpiresAt = r.ExpiresAt.Add(time.Millisecond)
	if got, err = ecash.DecodePaymentRequest(r.Body()); err != nil {
		t.Errorf("a request living %s does not decode: %v", r.ExpiresAt.Sub(r.CreatedAt), err)
	} else if err := got.CheckLifetime(); !errors.Is(err, ecash.ErrMalformed) {
		t.Errorf("a request living %s: %v, want ErrMalformed", r.ExpiresAt.Sub(r.CreatedAt), err)
	}

	// The merchant signs the body.
	sig := ecash.SignBody(w.merchant, body)
	if err := ecash.VerifyBody(w.req.MerchantPub, body, sig, "payment request"); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ pub, body, sig []byte }{
		"wrong key":       {edPub(w.account), body, sig},
		"tampered body":   {w.req.MerchantPub, flip(body, len(body)-1), sig},
		"tampered sig":    {w.req.MerchantPub, body, flip(sig, 0)},
		"short sig":       {w.req.MerchantPub, body, sig[:63]},
		"short key":       {w.req.MerchantPub[:31], body, sig},
		"other purpose":   {w.req.MerchantPub, w.pay.Permissions[0].Body(), sig},
		"empty signature": {w.req.MerchantPub, body, nil},
	} {
		if err := ecash.VerifyBody(tc.pub, tc.body, tc.sig, "payment request"); !errors.Is(err, ecash.ErrBadSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}

	// Every field is bound into the hash.
	for name, mutate := range map[string]func(r *ecash.PaymentRequest){
		"bank":     func(r *ecash.PaymentRequest) { r.BankID[0] ^= 1 },
		"account":  func(r *ecash.PaymentRequest) { r.MerchantAccount++ },
		"merchant": func(r *ecash.PaymentRequest) { r.MerchantPub[0] ^= 1 },
		"order":    func(r *ecash.PaymentRequest) { r.OrderID += "x" },
		"amount":   func(r *ecash.PaymentRequest) { r.Amount.Value++ },
		"currency": func(r *ecash.PaymentRequest) { r.Amount.Currency = "USD" },
		"summary":  func(r *ecash.PaymentRequest) { r.SummaryHash[31] ^= 1 },
		"created":  func(r *ecash.PaymentRequest) { r.CreatedAt = r.CreatedAt.Add(time.Millisecond) },
		"expires":  func(r *ecash.PaymentRequest) { r.ExpiresAt = r.ExpiresAt.Add(time.Millisecond) },
	} {
		r := cloneRequest(w.req)
		mutate(r)
		if r.Hash() == w.req.Hash() {
			t.Errorf("%s is not bound into the payment request hash", name)
		}
	}
}

func TestNewPayment(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	if len(w.pay.Permissions) != 2 {
		t.Fatal(len(w.pay.Permissions))
	}
	for i, dp := range w.pay.Permissions {
		if dp.PaymentHash != w.req.Hash() || dp.MerchantAccount != w.req.MerchantAccount || dp.Value != eur5 ||
			!bytes.Equal(dp.Coin.Encode(), w.coins[i].Encode()) {
			t.Fatalf("permission %d: %+v", i, dp)
		}
		if err := dp.Verify(); err != nil {
			t.Fatalf("permission %d: %v", i, err)
		}
	}
	if _, err := ecash.NewPayment(w.req, w.coins, []ed25519.PrivateKey{w.secrets[0].CoinKey}, []ecash.Amount{eur5, eur5}, t0); err == nil {
		t.Error("NewPayment with fewer keys than coins")
	}
	if _, err := ecash.NewPayment(w.req, w.coins, []ed25519.PrivateKey{w.secrets[0].CoinKey, w.secrets[1].CoinKey}, []ecash.Amount{eur5}, t0); err == nil {
		t.Error("NewPayment with fewer values than coins")
	}
}

func TestDepositPermissionVerify(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for name, mutate := range map[string]func(dp *ecash.DepositPermission){
		"merchant account": func(dp *ecash.DepositPermission) { dp.MerchantAccount = 8 },
		"payment hash":     func(dp *ecash.DepositPermission) { dp.PaymentHash[0] ^= 1 },
		"value":            func(dp *ecash.DepositPermission) { dp.Value = ecash.MustParseAmount("EUR:2") },
		"currency":         func(dp *ecash.DepositPermission) { dp.Value.Currency = "USD" },
		"timestamp":        func(dp *ecash.DepositPermission) { dp.Timestamp = dp.Timestamp.Add(time.Millisecond) },
		"coin key":         func(dp *ecash.DepositPermission) { dp.Coin = cloneCoin(w.coins[1]) },
		"denomination":     func(dp *ecash.DepositPermission) { dp.Coin.Denom[0] ^= 1 },
		"coin signature":   func(dp *ecash.DepositPermission) { dp.CoinSig = flip(dp.CoinSig, 63) },
		"short signature":  func(dp *ecash.DepositPermission) { dp.CoinSig = dp.CoinSig[:63] },
		"short coin key":   func(dp *ecash.DepositPermission) { dp.Coin.Pub = dp.Coin.Pub[:31] },
		"no signature":     func(dp *ecash.DepositPermission) { dp.CoinSig = nil },
	} {
		dp := clonePermission(w.pay.Permissions[0])
		if err := dp.Verify(); err != nil {
			t.Fatal(err)
		}
		mutate(&dp)
		if err := dp.Verify(); !errors.Is(err, ecash.ErrBadSignature) {
			t.Errorf("%s: Verify = %v", name, err)
		}
	}
	// The denomination's signature on the coin is not part of what the coin
	// key signs: Verify checks the coin's consent only, Coin.Verify the coin.
	dp := clonePermission(w.pay.Permissions[0])
	dp.Coin.Sig = flip(dp.Coin.Sig, 0)
	if err := dp.Verify(); err != nil {
		t.Errorf("permission with tampered coin signature: %v", err)
	}
}

func TestSealedPayment(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	sealed, err := ecash.SealPayment(w.ks.HPKEPub, w.req, w.pay)
	if err != nil {
		t.Fatal(err)
	}
	if want := 32 + len(w.pay.Encode()) + 16; len(sealed) != want {
		t.Errorf("sealed payment of %d bytes, want enc(32) || ct(%d)", len(sealed), want-32)
	}
	again, _ := ecash.SealPayment(w.ks.HPKEPub, w.req, w.pay)
	if bytes.Equal(sealed, again) {
		t.Error("sealing is deterministic")
	}

	got, err := ecash.OpenPayment(w.hpke, w.req, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Encode(), w.pay.Encode()) {
		t.Fatal("opened payment differs")
	}
	// The bank fills the values from its key set, then every permission verifies.
	for i := range got.Permissions {
		dp := &got.Permissions[i]
		if dp.PaymentHash != w.req.Hash() || dp.MerchantAccount != w.req.MerchantAccount {
			t.Fatal("payment hash and account not filled from the request")
		}
		if !dp.Value.IsZero() || dp.Value.Currency != "" {
			t.Fatal("DecodePayment filled the value")
		}
		d, err := w.ks.Denomination(dp.Coin.Denom)
		if err != nil {
			t.Fatal(err)
		}
		dp.Value = d.Value
		if err := dp.Verify(); err != nil {
			t.Fatal(err)
		}
		if err := dp.Coin.Verify(d.Key); err != nil {
			t.Fatal(err)
		}
	}

	// Opening for another payment request fails: the request hash is the AAD.
	for name, mutate := range map[string]func(r *ecash.PaymentRequest){
		"order":   func(r *ecash.PaymentRequest) { r.OrderID = "order-0002" },
		"account": func(r *ecash.PaymentRequest) { r.MerchantAccount = 8 },
		"amount":  func(r *ecash.PaymentRequest) { r.Amount = eur5 },
	} {
		r := cloneRequest(w.req)
		mutate(r)
		if p, err := ecash.OpenPayment(w.hpke, r, sealed); !errors.Is(err, ecash.ErrMalformed) || p != nil {
			t.Errorf("opened for another request (%s): %v", name, err)
		}
	}
	// Opening with another key fails.
	if p, err := ecash.OpenPayment(x25519Key(t, 77), w.req, sealed); !errors.Is(err, ecash.ErrMalformed) || p != nil {
		t.Errorf("opened with the wrong key: %v", err)
	}
	// Tampering anywhere fails.
	for _, i := range []int{0, 31, 32, len(sealed) / 2, len(sealed) - 1} {
		if p, err := ecash.OpenPayment(w.hpke, w.req, flip(sealed, i)); !errors.Is(err, ecash.ErrMalformed) || p != nil {
			t.Errorf("tampered byte %d: %v", i, err)
		}
	}
	for _, b := range [][]byte{nil, sealed[:47], sealed[:len(sealed)-1], make([]byte, ecash.MaxSealedLen+1)} {
		if p, err := ecash.OpenPayment(w.hpke, w.req, b); !errors.Is(err, ecash.ErrMalformed) || p != nil {
			t.Errorf("sealed payment of %d bytes: %v", len(b), err)
		}
	}
	// A sealed payment with a malformed plaintext opens but does not parse.
	junk, err := ecash.Seal(w.ks.HPKEPub, ecash.TagPrefix+"sealed-payment", hashBytes(w.req.Hash()), []byte("junk"))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ecash.OpenPayment(w.hpke, w.req, junk); !errors.Is(err, ecash.ErrMalformed) || p != nil {
		t.Errorf("junk plaintext: %v", err)
	}
	// The info string separates sealed payments from other sealed objects.
	other, _ := ecash.Seal(w.ks.HPKEPub, ecash.TagPrefix+"other", hashBytes(w.req.Hash()), w.pay.Encode())
	if p, err := ecash.OpenPayment(w.hpke, w.req, other); !errors.Is(err, ecash.ErrMalformed) || p != nil {
		t.Errorf("sealed with another info: %v", err)
	}
	// Sealing to a malformed key fails.
	if _, err := ecash.SealPayment(w.ks.HPKEPub[:31], w.req, w.pay); !errors.Is(err, ecash.ErrBadKey) {
		t.Errorf("seal to a short key: %v", err)
	}
}

func hashBytes(h ecash.Hash) []byte { return h[:] }

func TestSealOpen(t *testing.T) {
	t.Parallel()
	k := x25519Key(t, 8)
	pt := []byte("hello")
	sealed, err := ecash.Seal(k.PublicKey().Bytes(), "info", []byte("aad"), pt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ecash.Open(k, "info", []byte("aad"), sealed)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	for name, tc := range map[string]struct{ info, aad string }{
		"info": {"info2", "aad"},
		"aad":  {"info", "aad2"},
	} {
		if got, err := ecash.Open(k, tc.info, []byte(tc.aad), sealed); !errors.Is(err, ecash.ErrMalformed) || got != nil {
			t.Errorf("wrong %s: %v", name, err)
		}
	}
}
