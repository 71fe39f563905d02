package ecash_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

// Fuzz targets for every decoder and for amount arithmetic. Properties:
// no panic; a successful decode re-encodes to exactly the input (the
// encodings are canonical); a failed decode returns a zero value and an
// error wrapping one of the package's sentinels.
//
// Run one with:
//
//	go test -run='^$' -fuzz=FuzzDecodeCoin -fuzztime=10s -fuzzminimizetime=1s ./ecash/
//
// (the seeds are large, so the default one-minute minimization of each new
// input would otherwise eat a short run).
//
// A run that fails with only "context deadline exceeded", just after its
// -fuzztime, and writes no crasher has found nothing: that is a race in Go's
// fuzzing coordinator (go.dev/issue/75804, in Go 1.26 and reported fixed in
// Go 1.27). When the -fuzztime deadline fires, the coordinator can see its
// own context done before the workers' child context is cancelled, and then
// it reports the deadline as an error. It hits any target, more often on a
// loaded machine. A count budget (-fuzztime=20000x) has no deadline and so
// avoids it.

var (
	fuzzOnce sync.Once
	fuzzFx   *vectorFixture
	fuzzVecs []vector
)

// fuzzFixture is the vector world without its coins (cheap to build in every
// fuzz worker); the corpora are seeded with the encodings of the positive and
// negative vectors in testdata/ecash/vectors.json.
func fuzzFixture(f *testing.F) *vectorFixture {
	fuzzOnce.Do(func() {
		fuzzFx = newVectorKeys(f)
		raw, err := os.ReadFile(vectorsPath)
		if err != nil {
			f.Fatal(err)
		}
		var file vectorFile
		if err := json.Unmarshal(raw, &file); err != nil {
			f.Fatal(err)
		}
		fuzzVecs = file.Vectors
	})
	if fuzzFx == nil {
		f.Fatal("fixture failed")
	}
	return fuzzFx
}

// addSeeds adds the encodings of every vector of the given kinds.
func addSeeds(f *testing.F, kinds ...string) {
	for _, v := range fuzzVecs {
		for _, k := range kinds {
			if v.Kind == k {
				f.Add(mustHex(f, v.Fields["encoding"]))
			}
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0})
}

var sentinels = []error{
	ecash.ErrMalformed, ecash.ErrBadAmount, ecash.ErrOverflow, ecash.ErrBadKey,
	ecash.ErrBadSignature, ecash.ErrUnknownCipher, ecash.ErrCurrencyMismatch,
}

func checkDecode[T any](t *testing.T, in []byte, v T, err error, encode func(T) []byte) {
	t.Helper()
	if err != nil {
		if !isZero(v) {
			t.Fatalf("partial value %+v with error %v", v, err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error %v wraps no ecash sentinel", err)
	}
	if got := encode(v); !bytes.Equal(got, in) {
		t.Fatalf("non-canonical: decoded and re-encoded\n  in %x\n out %x", in, got)
	}
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{
		"EUR:0", "EUR:12.50", "EUR:1.5", "EUR:90071992547409.91", "EUR:90071992547409.92",
		"EUR:1.234", "eur:1", "EUR:-1", "EUR:1e3", "EUR:", "EUR", "ABCDEFGHIJK:007.00", "EUR:9999999999999999",
	} {
		f.Add(s)
	}
	ref := regexp.MustCompile(`^[A-Z]{1,11}:([0-9]{1,16})(?:\.([0-9]{1,2}))?$`)
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ecash.ParseAmount(s)
		// An independent reference: the grammar, then the bound in big.Int.
		want, wantOK := (*big.Int)(nil), false
		if m := ref.FindStringSubmatch(s); m != nil {
			frac := (m[2] + "00")[:2]
			want, _ = new(big.Int).SetString(m[1]+frac, 10)
			wantOK = want.Cmp(big.NewInt(ecash.MaxValue)) <= 0
		}
		if err != nil {
			if a != (ecash.Amount{}) {
				t.Fatalf("partial amount %+v", a)
			}
			if !errors.Is(err, ecash.ErrBadAmount) && !errors.Is(err, ecash.ErrOverflow) {
				t.Fatalf("error %v", err)
			}
			if wantOK {
				t.Fatalf("ParseAmount(%q) refused a valid amount: %v", s, err)
			}
			return
		}
		if !wantOK || a.Value != want.Uint64() || a.Currency != strings.SplitN(s, ":", 2)[0] {
			t.Fatalf("ParseAmount(%q) = %+v, reference %v %v", s, a, want, wantOK)
		}
		if err := a.Validate(); err != nil {
			t.Fatal(err)
		}
		b, err := ecash.ParseAmount(a.String())
		if err != nil || b != a {
			t.Fatalf("String round trip of %q: %q -> %+v, %v", s, a.String(), b, err)
		}
	})
}

func FuzzAmountArithmetic(f *testing.F) {
	f.Add("EUR", uint64(1050), "EUR", uint64(75))
	f.Add("EUR", uint64(ecash.MaxValue), "EUR", uint64(1))
	f.Add("EUR", uint64(1), "USD", uint64(1))
	f.Add("EUR", uint64(1<<63), "EUR", uint64(1<<63))
	f.Add("", uint64(0), "", uint64(0))
	f.Fuzz(func(t *testing.T, c1 string, v1 uint64, c2 string, v2 uint64) {
		a, b := ecash.Amount{Currency: c1, Value: v1}, ecash.Amount{Currency: c2, Value: v2}
		same := c1 == c2
		exact := new(big.Int).Add(new(big.Int).SetUint64(v1), new(big.Int).SetUint64(v2))
		fits := v1 <= ecash.MaxValue && v2 <= ecash.MaxValue && exact.Cmp(big.NewInt(ecash.MaxValue)) <= 0

		sum, err := a.Add(b)
		switch {
		case !same:
			if !errors.Is(err, ecash.ErrCurrencyMismatch) || sum != (ecash.Amount{}) {
				t.Fatalf("Add mismatch: %+v, %v", sum, err)
			}
		case !fits:
			if !errors.Is(err, ecash.ErrOverflow) || sum != (ecash.Amount{}) {
				t.Fatalf("Add overflow: %+v, %v", sum, err)
			}
		default:
			if err != nil || sum.Currency != c1 || sum.Value != exact.Uint64() {
				t.Fatalf("Add = %+v, %v", sum, err)
			}
			if back, err := sum.Sub(b); err != nil || back != a {
				t.Fatalf("(a+b)-b = %+v, %v", back, err)
			}
			if s, err := ecash.Sum(c1, a, b); err != nil || s != sum {
				t.Fatalf("Sum = %+v, %v", s, err)
			}
		}

		diff, err := a.Sub(b)
		switch {
		case !same:
			if !errors.Is(err, ecash.ErrCurrencyMismatch) || diff != (ecash.Amount{}) {
				t.Fatalf("Sub mismatch: %+v, %v", diff, err)
			}
		case v2 > v1:
			if !errors.Is(err, ecash.ErrUnderflow) || diff != (ecash.Amount{}) {
				t.Fatalf("Sub underflow: %+v, %v", diff, err)
			}
		default:
			if err != nil || diff.Currency != c1 || diff.Value != v1-v2 {
				t.Fatalf("Sub = %+v, %v", diff, err)
			}
			if v1 <= ecash.MaxValue {
				if back, err := diff.Add(b); err != nil || back != a {
					t.Fatalf("(a-b)+b = %+v, %v", back, err)
				}
			}
		}

		c, err := a.Cmp(b)
		if !same {
			if !errors.Is(err, ecash.ErrCurrencyMismatch) {
				t.Fatalf("Cmp mismatch: %v", err)
			}
			return
		}
		want := 0
		if v1 < v2 {
			want = -1
		} else if v1 > v2 {
			want = 1
		}
		if err != nil || c != want {
			t.Fatalf("Cmp = %d, %v", c, err)
		}
	})
}

func FuzzDecodeCoin(f *testing.F) {
	fuzzFixture(f)
	addSeeds(f, "coin")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ecash.DecodeCoin(b)
		checkDecode(t, b, c, err, ecash.Coin.Encode)
		if err == nil {
			_ = c.ID()
			_ = c.Verify(fuzzFx.denom.Key) // must not panic
		}
	})
}

func FuzzDecodeKeySet(f *testing.F) {
	fx := fuzzFixture(f)
	addSeeds(f, "keyset")
	// Bodies too: the target signs what it is given as a key set body, so
	// the fuzzer can reach the denomination parsing past the signature.
	f.Add(fx.ks.Body())
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := ecash.DecodeKeySet(b, nil)
		checkDecode(t, b, ks, err, (*ecash.KeySet).Encode)

		signed := rewrap("signed-keyset", b, ed25519.Sign(fx.master, b))
		ks, err = ecash.DecodeKeySet(signed, edPub(fx.master))
		checkDecode(t, signed, ks, err, (*ecash.KeySet).Encode)
		if err == nil {
			for _, d := range ks.Denominations {
				if d.ID != ecash.DenominationID(d.Value, d.Key) || d.Value.Currency != ks.Currency {
					t.Fatal("denomination inconsistent")
				}
			}
		}
	})
}

func FuzzDecodeWithdrawRequest(f *testing.F) {
	fuzzFixture(f)
	addSeeds(f, "withdraw-request")
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := ecash.DecodeWithdrawRequest(b)
		checkDecode(t, b, w, err, (*ecash.WithdrawRequest).Body)
		if err == nil && (len(w.Planchets) == 0 || len(w.Planchets) > ecash.MaxCoinsPerRequest) {
			t.Fatalf("%d planchets accepted", len(w.Planchets))
		}
	})
}

func FuzzDecodePaymentRequest(f *testing.F) {
	fuzzFixture(f)
	addSeeds(f, "payment-request")
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ecash.DecodePaymentRequest(b)
		checkDecode(t, b, r, err, (*ecash.PaymentRequest).Body)
		if err == nil && (r.Amount.IsZero() || r.Amount.Validate() != nil || r.OrderID == "" || len(r.OrderID) > ecash.MaxOrderIDLen) {
			t.Fatalf("invalid request accepted: %+v", r)
		}
	})
}

func FuzzDecodePaymentOffer(f *testing.F) {
	fuzzFixture(f)
	addSeeds(f, "payment-offer")
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ecash.DecodePaymentOffer(b)
		checkDecode(t, b, o, err, (*ecash.PaymentOffer).Encode)
		if err == nil {
			if ecash.CheckMerchantAddr(o.Merchant) != nil {
				t.Fatalf("address %q accepted", o.Merchant)
			}
			if pr, err := o.Verify(); (pr == nil) == (err == nil) {
				t.Fatalf("Verify returned %v and %v", pr, err)
			}
		}
	})
}

// FuzzParsePaymentURI: a URI that parses is the prefix and the base64url
// of an offer that decodes, and prints back in the canonical case.
func FuzzParsePaymentURI(f *testing.F) {
	fuzzFixture(f)
	for _, v := range fuzzVecs {
		if u, ok := v.Fields["uri"]; ok {
			f.Add(u)
			f.Add(strings.ToUpper(u[:len(ecash.PaymentURIPrefix)]) + u[len(ecash.PaymentURIPrefix):])
		}
	}
	f.Add("blindbank:pay/")
	f.Add("blindbank:pay/AAAA=")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ecash.ParsePaymentURI(s)
		if err != nil {
			if o != nil || !errors.Is(err, ecash.ErrMalformed) {
				t.Fatalf("%v with error %v", o, err)
			}
			return
		}
		if got := o.URI(); !strings.EqualFold(got[:len(ecash.PaymentURIPrefix)], s[:len(ecash.PaymentURIPrefix)]) || got[len(ecash.PaymentURIPrefix):] != s[len(ecash.PaymentURIPrefix):] {
			t.Fatalf("parsed %q, prints %q", s, got)
		}
		if len(s) > ecash.MaxPaymentURILen {
			t.Fatalf("URI of %d bytes accepted", len(s))
		}
	})
}

func FuzzDecodePayment(f *testing.F) {
	fx := fuzzFixture(f)
	addSeeds(f, "payment")
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ecash.DecodePayment(b, fx.req)
		checkDecode(t, b, p, err, (*ecash.Payment).Encode)
		if err == nil {
			for i := range p.Permissions {
				dp := &p.Permissions[i]
				if dp.PaymentHash != fx.req.Hash() || dp.MerchantAccount != fx.req.MerchantAccount {
					t.Fatal("permission not bound to the request")
				}
				dp.Value = fx.denom.Value
				_ = dp.Verify() // must not panic
			}
		}
	})
}

func FuzzDecodeDepositPermission(f *testing.F) {
	fuzzFixture(f)
	addSeeds(f, "deposit-permission")
	f.Fuzz(func(t *testing.T, b []byte) {
		dp, err := ecash.DecodeDepositPermission(b)
		checkDecode(t, b, dp, err, (*ecash.DepositPermission).Encode)
		if err == nil {
			_ = dp.Verify()
		}
	})
}

func FuzzDecodeDepositReceipt(f *testing.F) {
	fx := fuzzFixture(f)
	addSeeds(f, "deposit-receipt")
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ecash.DecodeDepositReceipt(b)
		checkDecode(t, b, r, err, (*ecash.DepositReceipt).Encode)
		if err == nil {
			_ = r.Verify(fx.ks, fx.req)
			_ = r.Verify(fx.ks, nil)
		}
	})
}

func FuzzDecodeDoubleSpendProof(f *testing.F) {
	fx := fuzzFixture(f)
	addSeeds(f, "double-spend-proof")
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ecash.DecodeDoubleSpendProof(b)
		checkDecode(t, b, p, err, (*ecash.DoubleSpendProof).Encode)
		if err == nil {
			_ = p.Verify(fx.ks)
			_ = (&ecash.DoubleSpendError{Proof: p}).Error()
		}
	})
}

// FuzzDecodeTranscriptData renders hostile bytes as each step of a
// transcript (what "audit transcript" does with a file from anyone): no
// panic, valid JSON on success, a sentinel on failure, and the same answer
// twice. Seeded with every record of the transcripts in testdata/.
func FuzzDecodeTranscriptData(f *testing.F) {
	steps := ecash.TranscriptSteps()
	if len(steps) == 0 {
		f.Fatal("no transcript steps registered")
	}
	index := make(map[string]uint8, len(steps))
	for i, s := range steps {
		index[s] = uint8(i)
	}
	files, err := filepath.Glob(filepath.Join("..", "testdata", "transcripts", "*.jsonl"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no transcripts to seed from (%v)", err)
	}
	seeded := 0
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for line := range strings.SplitSeq(strings.TrimSpace(string(raw)), "\n") {
			var r ecash.TranscriptRecord
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				f.Fatalf("%s: %v", name, err)
			}
			i, ok := index[r.Step]
			if !ok {
				continue // a NetBill step: the audit command renders those itself
			}
			f.Add(i, mustHex(f, r.Data))
			seeded++
		}
	}
	if seeded == 0 {
		f.Fatal("no transcript record has a step of this package")
	}
	f.Fuzz(func(t *testing.T, sel uint8, b []byte) {
		step := steps[int(sel)%len(steps)]
		out, err := ecash.DecodeTranscriptData(step, b)
		if err != nil {
			if out != nil {
				t.Fatalf("%s: output %s with error %v", step, out, err)
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("%s: error %v wraps no ecash sentinel", step, err)
		}
		if !json.Valid(out) {
			t.Fatalf("%s: invalid JSON %s", step, out)
		}
		again, err := ecash.DecodeTranscriptData(step, b)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("%s: decoded twice differently (%v)", step, err)
		}
	})
}
