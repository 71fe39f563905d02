package echeck_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// Fixed keys and clock: every test builds its world from these, so failures
// reproduce. Only HPKE's ephemeral keys are random.

func seed(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func edKey(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(seed(b)) }

func edPub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func x25519Key(tb testing.TB, b byte) *ecdh.PrivateKey {
	tb.Helper()
	k, err := ecdh.X25519().NewPrivateKey(seed(b))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func pub32(k *ecdh.PrivateKey) (p [32]byte) {
	copy(p[:], k.PublicKey().Bytes())
	return p
}

var (
	t0              = time.Date(2025, 3, 14, 15, 9, 26, 535_000_000, time.UTC)
	merchantAccount = uint64(7)
	customerAccount = uint64(42)
	price           = ecash.MustParseAmount("EUR:1.50")
	testGoods       = []byte("blindbank test goods: one song, FLAC\n")
)

// keys are the parties' long-term keys.
type keys struct {
	customer, merchant, signing ed25519.PrivateKey
	bankHPKE, reply             *ecdh.PrivateKey
}

func newKeys(tb testing.TB) keys {
	return keys{
		signing:  edKey(0x02),
		merchant: edKey(0x03),
		customer: edKey(0x04),
		bankHPKE: x25519Key(tb, 0x05),
		reply:    x25519Key(tb, 0x08),
	}
}

func (k keys) bankHPKEPub() []byte { return k.bankHPKE.PublicKey().Bytes() }

// flow is one run of the eight steps, built with the package's constructors.
type flow struct {
	keys
	req      *echeck.PriceRequest
	quote    *echeck.Quote
	delivery *echeck.Delivery
	key      [32]byte
	epo      *echeck.SignedEPO
	priv     echeck.EPOPrivate
	end      *echeck.Endorsement
	receipt  *echeck.Receipt
}

// fixedReader returns its bytes, then EOF.
func fixedReader(b ...byte) *bytes.Reader { return bytes.NewReader(b) }

func goodsKeyReader() *bytes.Reader { return fixedReader(bytes.Repeat([]byte{0x09}, 32)...) }

func testEPOID() echeck.EPOID { return echeck.NewEPOID(merchantAccount, t0, 1) }

func testPrivate(k keys) echeck.EPOPrivate {
	p := echeck.EPOPrivate{Account: customerAccount, Memo: "music", ReplyKey: pub32(k.reply)}
	copy(p.Nonce[:], bytes.Repeat([]byte{0x0b}, 16))
	return p
}

// newGoodsFlow runs steps 1–7 for a goods sale.
func newGoodsFlow(tb testing.TB) *flow {
	tb.Helper()
	f := &flow{keys: newKeys(tb)}
	f.req = &echeck.PriceRequest{
		Customer:  edPub(f.customer),
		ProductID: "song-0001",
		PRD:       []byte("format=flac"),
		Bid:       ecash.MustParseAmount("EUR:1.00"),
	}
	copy(f.req.TID[:], bytes.Repeat([]byte{0x0a}, 16))
	f.quote = echeck.NewQuote(f.req, merchantAccount, price, t0.Add(15*time.Minute), f.merchant)
	d, key, err := echeck.NewDelivery(goodsKeyReader(), testEPOID(), f.req.TID, testGoods)
	if err != nil {
		tb.Fatal(err)
	}
	f.delivery, f.key = d, key
	f.priv = testPrivate(f.keys)
	f.epo, err = echeck.NewSignedEPO(echeck.NewGoodsEPO(edPub(f.customer), f.quote, f.delivery, t0.Add(time.Hour)),
		f.priv, f.bankHPKEPub(), f.customer)
	if err != nil {
		tb.Fatal(err)
	}
	f.end, err = echeck.NewEndorsement(f.epo, merchantAccount, "order 1", &f.key, f.bankHPKEPub(), f.merchant)
	if err != nil {
		tb.Fatal(err)
	}
	f.receipt, err = echeck.NewReceipt(f.epo, echeck.Approved, "", f.key, t0.Add(2*time.Minute), f.signing)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func checkEPOID() echeck.EPOID {
	return echeck.NewEPOID(merchantAccount, t0, 1<<63|0x0102030405060708)
}

func checkEPO(k keys) echeck.EPO {
	return echeck.EPO{
		Kind:            echeck.KindCheck,
		Customer:        edPub(k.customer),
		ProductID:       "invoice 2025-17",
		Price:           ecash.MustParseAmount("EUR:25.00"),
		MerchantAccount: merchantAccount,
		MerchantPub:     edPub(k.merchant),
		EPOID:           checkEPOID(),
		ExpiresAt:       t0.Add(7 * 24 * time.Hour),
	}
}

// newCheckFlow writes, endorses and approves a plain check.
func newCheckFlow(tb testing.TB) *flow {
	tb.Helper()
	f := &flow{keys: newKeys(tb)}
	f.priv = testPrivate(f.keys)
	var err error
	f.epo, err = echeck.NewSignedEPO(checkEPO(f.keys), f.priv, f.bankHPKEPub(), f.customer)
	if err != nil {
		tb.Fatal(err)
	}
	f.end, err = echeck.NewEndorsement(f.epo, merchantAccount, "deposit", nil, f.bankHPKEPub(), f.merchant)
	if err != nil {
		tb.Fatal(err)
	}
	f.receipt, err = echeck.NewReceipt(f.epo, echeck.Approved, "", [32]byte{}, t0.Add(2*time.Minute), f.signing)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// resignEPO signs a (tampered) signed EPO again with the customer's key, so
// that only the property under test fails.
func resignEPO(s *echeck.SignedEPO, customer ed25519.PrivateKey) {
	s.CustomerSig = ecash.SignBody(customer, s.SignatureInput())
}

func cloneSigned(tb testing.TB, s *echeck.SignedEPO) *echeck.SignedEPO {
	tb.Helper()
	c, err := echeck.DecodeSignedEPO(s.Encode())
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func cloneEndorsement(tb testing.TB, e *echeck.Endorsement) *echeck.Endorsement {
	tb.Helper()
	c, err := echeck.DecodeEndorsement(e.Encode())
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func cloneReceipt(tb testing.TB, r *echeck.Receipt) *echeck.Receipt {
	tb.Helper()
	c, err := echeck.DecodeReceipt(r.Encode())
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// endorseRaw builds an endorsement without NewEndorsement's checks: what a
// dishonest or buggy merchant could send.
func endorseRaw(tb testing.TB, epoBytes []byte, account uint64, key *[32]byte, bankHPKE []byte, merchant ed25519.PrivateKey) *echeck.Endorsement {
	tb.Helper()
	e := &echeck.Endorsement{EPO: epoBytes, MerchantAccount: account, Memo: "raw"}
	if key != nil {
		h := ecash.HashOf(epoBytes)
		sealed, err := ecash.Seal(bankHPKE, echeck.InfoGoodsKey, h[:], key[:])
		if err != nil {
			tb.Fatal(err)
		}
		e.SealedKey = sealed
	}
	e.MerchantSig = ecash.SignBody(merchant, e.Body())
	return e
}

func wantErr(tb testing.TB, err, target error) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("error %v, want %v", err, target)
	}
}

// isZero reports whether v is the zero value of its type (nil pointers and
// slices included): decoders must return nothing partial on failure.
func isZero(v any) bool {
	if v == nil {
		return true
	}
	return reflect.ValueOf(v).IsZero()
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// tagLen is the length of tag(purpose).
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

// retag replaces the tag of an encoding with another purpose's.
func retag(b []byte, from, to string) []byte {
	e := ecash.NewEncoder(to)
	e.Fixed(b[tagLen(from):])
	return e.Bytes()
}
