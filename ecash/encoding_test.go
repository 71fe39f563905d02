package ecash_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

func TestEncoderPrimitives(t *testing.T) {
	e := ecash.NewEncoder("test")
	e.U8(0xab)
	e.U32(0x01020304)
	e.U64(0x05060708090a0b0c)
	e.I64(-2)
	e.Fixed([]byte{0xde, 0xad})
	e.VarBytes([]byte{0xbe, 0xef})
	e.VarBytes(nil)
	e.String("hi")
	want := []byte{
		0, 0, 0, 17, 'b', 'l', 'i', 'n', 'd', 'b', 'a', 'n', 'k', '/', 'v', '1', '/', 't', 'e', 's', 't',
		0xab,
		1, 2, 3, 4,
		5, 6, 7, 8, 9, 10, 11, 12,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
		0xde, 0xad,
		0, 0, 0, 2, 0xbe, 0xef,
		0, 0, 0, 0,
		0, 0, 0, 2, 'h', 'i',
	}
	if !bytes.Equal(e.Bytes(), want) {
		t.Fatalf("encoding\n got %x\nwant %x", e.Bytes(), want)
	}

	d := ecash.NewDecoder("test", e.Bytes())
	if v := d.U8(); v != 0xab {
		t.Errorf("U8 = %x", v)
	}
	if v := d.U32(); v != 0x01020304 {
		t.Errorf("U32 = %x", v)
	}
	if v := d.U64(); v != 0x05060708090a0b0c {
		t.Errorf("U64 = %x", v)
	}
	if v := d.I64(); v != -2 {
		t.Errorf("I64 = %d", v)
	}
	if v := d.Fixed(2); !bytes.Equal(v, []byte{0xde, 0xad}) {
		t.Errorf("Fixed = %x", v)
	}
	if v := d.VarBytes(2); !bytes.Equal(v, []byte{0xbe, 0xef}) {
		t.Errorf("VarBytes = %x", v)
	}
	if v := d.VarBytes(0); len(v) != 0 {
		t.Errorf("empty VarBytes = %x", v)
	}
	if v := d.String(); v != "hi" {
		t.Errorf("String = %q", v)
	}
	if err := d.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestDecoderFixedCopies(t *testing.T) {
	e := ecash.NewEncoder("test")
	e.Fixed([]byte{1, 2, 3})
	b := e.Bytes()
	d := ecash.NewDecoder("test", b)
	got := d.Fixed(3)
	b[len(b)-1] = 9
	if got[2] != 3 {
		t.Error("Fixed aliases the input")
	}
}

func TestDecoderErrors(t *testing.T) {
	tagged := func(rest ...byte) []byte {
		e := ecash.NewEncoder("test")
		e.Fixed(rest)
		return e.Bytes()
	}
	for _, tc := range []struct {
		name string
		in   []byte
		read func(d *ecash.Decoder) any
	}{
		{"empty input", nil, func(d *ecash.Decoder) any { return d.U8() }},
		{"wrong tag", func() []byte { e := ecash.NewEncoder("other"); e.U8(1); return e.Bytes() }(), func(d *ecash.Decoder) any { return d.U8() }},
		{"tag prefix only", []byte{0, 0, 0, 13, 'b', 'l', 'i', 'n', 'd', 'b', 'a', 'n', 'k', '/', 'v', '1', '/'}, func(d *ecash.Decoder) any { return d.U8() }},
		{"huge tag", []byte{0xff, 0xff, 0xff, 0xff}, func(d *ecash.Decoder) any { return d.U8() }},
		{"short U32", tagged(1, 2, 3), func(d *ecash.Decoder) any { return d.U32() }},
		{"short U64", tagged(1, 2, 3, 4, 5, 6, 7), func(d *ecash.Decoder) any { return d.U64() }},
		{"short I64", tagged(1), func(d *ecash.Decoder) any { return d.I64() }},
		{"short Fixed", tagged(1), func(d *ecash.Decoder) any { return d.Fixed(2) }},
		{"negative Fixed", tagged(1), func(d *ecash.Decoder) any { return d.Fixed(-1) }},
		{"short VarBytes", tagged(0, 0, 0, 3, 1, 2), func(d *ecash.Decoder) any { return d.VarBytes(10) }},
		{"VarBytes over max", tagged(0, 0, 0, 3, 1, 2, 3), func(d *ecash.Decoder) any { return d.VarBytes(2) }},
		{"VarBytes over MaxFieldLen", tagged(0xff, 0xff, 0xff, 0xff), func(d *ecash.Decoder) any { return d.VarBytes(math.MaxInt) }},
		{"String over 1024", tagged(append([]byte{0, 0, 4, 1}, make([]byte, 1025)...)...), func(d *ecash.Decoder) any { return d.String() }},
		{"Count over max", tagged(0, 0, 0, 3), func(d *ecash.Decoder) any { return d.Count(2) }},
		{"Count huge", tagged(0xff, 0xff, 0xff, 0xff), func(d *ecash.Decoder) any { return d.Count(math.MaxInt) }},
		{"trailing", tagged(1, 2), func(d *ecash.Decoder) any { return d.U8() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := ecash.NewDecoder("test", tc.in)
			v := tc.read(d)
			err := d.Finish()
			if !errors.Is(err, ecash.ErrMalformed) {
				t.Fatalf("Finish() = %v, want ErrMalformed", err)
			}
			if tc.name != "trailing" && tc.name != "Count huge" && !isZero(v) {
				t.Errorf("read returned %v after an error", v)
			}
			// The first error sticks and later reads give zero values.
			if d.U8() != 0 || d.U64() != 0 || d.Fixed(1) != nil || d.VarBytes(10) != nil || d.Count(10) != 0 || d.Amount() != (ecash.Amount{}) {
				t.Error("read after error returned data")
			}
			if !errors.Is(d.Err(), ecash.ErrMalformed) {
				t.Errorf("Err() = %v", d.Err())
			}
		})
	}
}

func TestDecoderCountHuge(t *testing.T) {
	// A count within max but larger than the input must not allocate: the
	// element reads fail as truncated instead.
	e := ecash.NewEncoder("test")
	e.U32(math.MaxUint32)
	d := ecash.NewDecoder("test", e.Bytes())
	n := d.Count(math.MaxInt)
	for i := 0; i < n && d.Err() == nil; i++ {
		d.U64()
	}
	if !errors.Is(d.Finish(), ecash.ErrMalformed) {
		t.Fatal(d.Finish())
	}
}

// codec describes one top-level decoder for the table-driven tests below.
type codec struct {
	name    string
	purpose string // tag of the outermost encoding
	valid   func(w *world) []byte
	decode  func(w *world, b []byte) (any, error)
	encode  func(v any) []byte
	// inner is set for signed forms: the purpose of the body inside the
	// outer varbytes, followed by a 64-byte signature.
	inner string
	// oversize mutations beyond the generic ones.
	mutations func(w *world) map[string][]byte
}

func tagLen(purpose string) int { return 4 + len(ecash.TagPrefix+purpose) }

// put32 returns a copy of b with a big-endian u32 v at offset off.
func put32(b []byte, off int, v uint32) []byte {
	c := bytes.Clone(b)
	binary.BigEndian.PutUint32(c[off:], v)
	return c
}

// rewrap builds a signed form around a (possibly corrupt) body.
func rewrap(purpose string, body, sig []byte) []byte {
	e := ecash.NewEncoder(purpose)
	e.VarBytes(body)
	e.Fixed(sig)
	return e.Bytes()
}

// unwrap splits a signed form into body and signature.
func unwrap(tb testing.TB, purpose string, b []byte) (body, sig []byte) {
	tb.Helper()
	d := ecash.NewDecoder(purpose, b)
	body = d.VarBytes(ecash.MaxFieldLen)
	sig = d.Fixed(64)
	if err := d.Finish(); err != nil {
		tb.Fatal(err)
	}
	return body, sig
}

var amountLen = 4 + 3 + 8 // "EUR" amounts

func codecs() []codec {
	return []codec{
		{
			name: "coin", purpose: "coin",
			valid:  func(w *world) []byte { return w.coins[0].Encode() },
			decode: func(_ *world, b []byte) (any, error) { return ecash.DecodeCoin(b) },
			encode: func(v any) []byte { return v.(ecash.Coin).Encode() },
			mutations: func(w *world) map[string][]byte {
				b := w.coins[0].Encode()
				off := tagLen("coin") + 64
				return map[string][]byte{
					"sig length 1025":    put32(append(bytes.Clone(b), make([]byte, 1025)...), off, 1025),
					"sig length 2^32-1":  put32(b, off, math.MaxUint32),
					"sig length too big": put32(b, off, uint32(len(w.coins[0].Sig)+1)),
				}
			},
		},
		{
			name: "keyset", purpose: "signed-keyset", inner: "keyset",
			valid:  func(w *world) []byte { return w.ks.Encode() },
			decode: func(_ *world, b []byte) (any, error) { return ecash.DecodeKeySet(b, nil) },
			encode: func(v any) []byte { return v.(*ecash.KeySet).Encode() },
			mutations: func(w *world) map[string][]byte {
				body := w.ks.Body()
				off := tagLen("keyset") + 4 + 3 + 32 + 32 + 32 + 8
				return map[string][]byte{
					"count 257":          rewrap("signed-keyset", put32(body, off, ecash.MaxDenominations+1), w.ks.MasterSig),
					"count 2^32-1":       rewrap("signed-keyset", put32(body, off, math.MaxUint32), w.ks.MasterSig),
					"count 3":            rewrap("signed-keyset", put32(body, off, 3), w.ks.MasterSig),
					"key length 2^32-1":  rewrap("signed-keyset", put32(body, off+4+1+amountLen, math.MaxUint32), w.ks.MasterSig),
					"currency length 2k": rewrap("signed-keyset", put32(body, tagLen("keyset"), 2048), w.ks.MasterSig),
				}
			},
		},
		{
			name: "withdraw-request", purpose: "withdraw-request",
			valid:  func(w *world) []byte { return w.withdrawRequest().Body() },
			decode: func(_ *world, b []byte) (any, error) { return ecash.DecodeWithdrawRequest(b) },
			encode: func(v any) []byte { return v.(*ecash.WithdrawRequest).Body() },
			mutations: func(w *world) map[string][]byte {
				b := w.withdrawRequest().Body()
				off := tagLen("withdraw-request") + 8 + 16 + 8
				return map[string][]byte{
					"count 1025":        put32(b, off, ecash.MaxCoinsPerRequest+1),
					"count 2^32-1":      put32(b, off, math.MaxUint32),
					"count 0":           put32(b[:off+4], off, 0),
					"count 3":           put32(b, off, 3),
					"blinded 2^32-1":    put32(b, off+4+32, math.MaxUint32),
					"blinded 1025":      put32(append(bytes.Clone(b), make([]byte, 1025)...), off+4+32, 1025),
					"blinded too short": put32(b, off+4+32, 255),
				}
			},
		},
		{
			name: "payment-request", purpose: "payment-request",
			valid:  func(w *world) []byte { return w.req.Body() },
			decode: func(_ *world, b []byte) (any, error) { return ecash.DecodePaymentRequest(b) },
			encode: func(v any) []byte { return v.(*ecash.PaymentRequest).Body() },
			mutations: func(w *world) map[string][]byte {
				off := tagLen("payment-request") + 32 + 8 + 32
				long := cloneRequest(w.req)
				long.OrderID = string(bytes.Repeat([]byte{'x'}, ecash.MaxOrderIDLen+1))
				empty := cloneRequest(w.req)
				empty.OrderID = ""
				zero := cloneRequest(w.req)
				zero.Amount.Value = 0
				over := cloneRequest(w.req)
				over.Amount.Value = ecash.MaxValue + 1
				badCur := cloneRequest(w.req)
				badCur.Amount.Currency = "eur"
				return map[string][]byte{
					"order id 2^32-1": put32(w.req.Body(), off, math.MaxUint32),
					"order id 129":    long.Body(),
					"order id empty":  empty.Body(),
					"zero amount":     zero.Body(),
					"amount overflow": over.Body(),
					"bad currency":    badCur.Body(),
					"currency 2^32-1": put32(w.req.Body(), off+4+len(testOrder), math.MaxUint32),
				}
			},
		},
		{
			name: "payment", purpose: "payment",
			valid:  func(w *world) []byte { return w.pay.Encode() },
			decode: func(w *world, b []byte) (any, error) { return ecash.DecodePayment(b, w.req) },
			encode: func(v any) []byte { return v.(*ecash.Payment).Encode() },
			mutations: func(w *world) map[string][]byte {
				b := w.pay.Encode()
				off := tagLen("payment")
				return map[string][]byte{
					"count 1025":     put32(b, off, ecash.MaxCoinsPerRequest+1),
					"count 2^32-1":   put32(b, off, math.MaxUint32),
					"count 0":        put32(b[:off+4], off, 0),
					"count 3":        put32(b, off, 3),
					"sig len 2^32-1": put32(b, off+4+64, math.MaxUint32),
				}
			},
		},
		{
			name: "deposit-permission", purpose: "signed-deposit-permission",
			valid:  func(w *world) []byte { return w.pay.Permissions[0].Encode() },
			decode: func(_ *world, b []byte) (any, error) { return ecash.DecodeDepositPermission(b) },
			encode: func(v any) []byte { return v.(*ecash.DepositPermission).Encode() },
			mutations: func(w *world) map[string][]byte {
				b := w.pay.Permissions[0].Encode()
				return map[string][]byte{
					"sig len 2^32-1": put32(b, tagLen("signed-deposit-permission")+64, math.MaxUint32),
				}
			},
		},
		{
			name: "deposit-receipt", purpose: "signed-deposit-receipt", inner: "deposit-receipt",
			valid:  func(w *world) []byte { return w.receipt().Encode() },
			decode: func(_ *world, b []byte) (any, error) { return ecash.DecodeDepositReceipt(b) },
			encode: func(v any) []byte { return v.(*ecash.DepositReceipt).Encode() },
			mutations: func(w *world) map[string][]byte {
				r := w.receipt()
				body := r.Body()
				off := tagLen("deposit-receipt") + 32 + 8 + amountLen
				return map[string][]byte{
					"count 1025":   rewrap("signed-deposit-receipt", put32(body, off, ecash.MaxCoinsPerRequest+1), r.Sig),
					"count 2^32-1": rewrap("signed-deposit-receipt", put32(body, off, math.MaxUint32), r.Sig),
					"count 3":      rewrap("signed-deposit-receipt", put32(body, off, 3), r.Sig),
				}
			},
		},
		{
			name: "double-spend-proof", purpose: "signed-double-spend-proof", inner: "double-spend-proof",
			valid:  func(w *world) []byte { return w.proof().Encode() },
			decode: func(_ *world, b []byte) (any, error) { return ecash.DecodeDoubleSpendProof(b) },
			encode: func(v any) []byte { return v.(*ecash.DoubleSpendProof).Encode() },
			mutations: func(w *world) map[string][]byte {
				p := w.proof()
				body := p.Body()
				return map[string][]byte{
					"permission 2^32-1": rewrap("signed-double-spend-proof", put32(body, tagLen("double-spend-proof"), math.MaxUint32), p.BankSig),
				}
			},
		},
	}
}

// checkFails asserts that decoding b fails with ErrMalformed (or another
// ecash sentinel) and returns nothing partial.
func checkFails(t *testing.T, c codec, w *world, b []byte, sentinels ...error) {
	t.Helper()
	v, err := c.decode(w, b)
	if err == nil {
		t.Fatalf("decoded %x without error", b)
	}
	if len(sentinels) == 0 {
		sentinels = []error{ecash.ErrMalformed}
	}
	ok := false
	for _, s := range sentinels {
		ok = ok || errors.Is(err, s)
	}
	if !ok {
		t.Fatalf("error %v, want one of %v", err, sentinels)
	}
	if !isZero(v) {
		t.Fatalf("partial value %+v returned with error %v", v, err)
	}
}

func TestDecoders(t *testing.T) {
	w := newWorld(t)
	for _, c := range codecs() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			valid := c.valid(w)

			t.Run("round trip", func(t *testing.T) {
				v, err := c.decode(w, valid)
				if err != nil {
					t.Fatal(err)
				}
				if got := c.encode(v); !bytes.Equal(got, valid) {
					t.Fatalf("re-encoding differs\n got %x\nwant %x", got, valid)
				}
				v2, err := c.decode(w, c.encode(v))
				if err != nil || !reflect.DeepEqual(v, v2) {
					t.Fatalf("second decode differs: %v", err)
				}
			})

			t.Run("truncated", func(t *testing.T) {
				for n := range len(valid) {
					checkFails(t, c, w, valid[:n])
				}
			})

			t.Run("trailing", func(t *testing.T) {
				checkFails(t, c, w, append(bytes.Clone(valid), 0))
				checkFails(t, c, w, append(bytes.Clone(valid), valid...))
			})

			t.Run("wrong tag", func(t *testing.T) {
				checkFails(t, c, w, flip(valid, tagLen(c.purpose)-1))
				checkFails(t, c, w, flip(valid, 3)) // tag length
				e := ecash.NewEncoder("other")
				e.Fixed(valid[tagLen(c.purpose):])
				checkFails(t, c, w, e.Bytes())
				for _, o := range codecs() {
					if o.name != c.name {
						checkFails(t, c, w, o.valid(w))
					}
				}
			})

			if c.inner != "" {
				body, sig := unwrap(t, c.purpose, valid)
				t.Run("truncated body", func(t *testing.T) {
					for n := range len(body) {
						checkFails(t, c, w, rewrap(c.purpose, body[:n], sig))
					}
				})
				t.Run("body trailing", func(t *testing.T) {
					checkFails(t, c, w, rewrap(c.purpose, append(bytes.Clone(body), 0), sig))
				})
				t.Run("inner wrong tag", func(t *testing.T) {
					checkFails(t, c, w, rewrap(c.purpose, flip(body, tagLen(c.inner)-1), sig))
				})
				t.Run("outer length", func(t *testing.T) {
					checkFails(t, c, w, put32(valid, tagLen(c.purpose), math.MaxUint32))
					checkFails(t, c, w, put32(valid, tagLen(c.purpose), ecash.MaxFieldLen+1))
					checkFails(t, c, w, put32(valid, tagLen(c.purpose), uint32(len(body)+1)))
					checkFails(t, c, w, put32(valid, tagLen(c.purpose), uint32(len(body)-1)))
				})
				t.Run("short signature", func(t *testing.T) {
					checkFails(t, c, w, rewrap(c.purpose, body, sig[:63]))
				})
			}

			if c.mutations != nil {
				for name, b := range c.mutations(w) {
					t.Run(name, func(t *testing.T) {
						checkFails(t, c, w, b, ecash.ErrMalformed, ecash.ErrBadAmount)
					})
				}
			}

			t.Run("bit flips", func(t *testing.T) {
				// Every single-bit change either fails cleanly or decodes to
				// a value whose encoding is exactly the changed bytes.
				for i := range len(valid) {
					b := flip(valid, i)
					v, err := c.decode(w, b)
					if err != nil {
						if !isZero(v) {
							t.Fatalf("byte %d: partial value with error %v", i, err)
						}
						continue
					}
					if got := c.encode(v); !bytes.Equal(got, b) {
						t.Fatalf("byte %d: non-canonical decode", i)
					}
				}
			})
		})
	}
}
