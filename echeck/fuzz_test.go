package echeck_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// Fuzz targets for every decoder. Properties: no panic; a successful decode
// re-encodes to exactly the input (the encodings are canonical); a failed
// decode returns a zero value and an error wrapping one of the sentinels.
// Decoded values are then run through their verifiers, which must not panic
// either. Signed forms are fuzzed twice: as given, and as a body wrapped
// with a dummy signature, so the fuzzer reaches the body parser directly.
//
// Run one with:
//
//	go test -run='^$' -fuzz=FuzzDecodeSignedEPO -fuzztime=10s ./echeck/

var (
	fuzzOnce sync.Once
	fuzzKeys keys
	fuzzVecs []vector
	fuzzFlow *flow
)

// fuzzFixture loads the vectors (whose encodings seed the corpora) and a
// goods flow to verify against.
func fuzzFixture(f *testing.F) {
	fuzzOnce.Do(func() {
		fuzzKeys = newKeys(f)
		fuzzFlow = newGoodsFlow(f)
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
	if fuzzFlow == nil {
		f.Fatal("fixture failed")
	}
}

// addSeeds adds the encodings (and bodies) of every vector of the kinds.
func addSeeds(f *testing.F, kinds ...string) {
	fuzzFixture(f)
	for _, v := range fuzzVecs {
		for _, k := range kinds {
			if v.Kind != k {
				continue
			}
			for _, field := range []string{"encoding", "body"} {
				if h, ok := v.Fields[field]; ok {
					f.Add(mustHex(f, h))
				}
			}
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0})
}

var sentinels = []error{
	ecash.ErrMalformed, ecash.ErrBadAmount, ecash.ErrOverflow, ecash.ErrBadKey, ecash.ErrBadSignature,
	echeck.ErrMismatch, echeck.ErrKeyMismatch, echeck.ErrExpired, echeck.ErrStale, echeck.ErrNoKey, echeck.ErrDecrypt,
}

func checkDecode[T any](t *testing.T, in []byte, v T, err error, encode func(T) []byte) bool {
	t.Helper()
	if err != nil {
		if !isZero(v) {
			t.Fatalf("partial value %+v with error %v", v, err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return false
			}
		}
		t.Fatalf("error %v wraps no sentinel", err)
	}
	if got := encode(v); !bytes.Equal(got, in) {
		t.Fatalf("non-canonical: decoded and re-encoded\n  in %x\n out %x", in, got)
	}
	return true
}

// fuzzSigned runs a signed-form decoder on b and on b wrapped as a body.
func fuzzSigned[T any](t *testing.T, b []byte, purpose string, dec func([]byte) (T, error), encode func(T) []byte, after func(T)) {
	for _, in := range [][]byte{b, rewrap(purpose, b, make([]byte, ed25519.SignatureSize))} {
		v, err := dec(in)
		if checkDecode(t, in, v, err, encode) {
			after(v)
		}
	}
}

func FuzzParseEPOID(f *testing.F) {
	for _, s := range []string{"7-1741964966535-1", "0-0-0", "07-1-1", "7-9223372036854775807-18446744073709551615", "7-9223372036854775808-1", "-1-1-1", "1-2", ""} {
		f.Add(s)
	}
	ref := regexp.MustCompile(`^(0|[1-9][0-9]*)-(0|[1-9][0-9]*)-(0|[1-9][0-9]*)$`)
	f.Fuzz(func(t *testing.T, s string) {
		id, err := echeck.ParseEPOID(s)
		if err != nil {
			if !isZero(id) || !errors.Is(err, ecash.ErrMalformed) {
				t.Fatalf("ParseEPOID(%q) = %v, %v", s, id, err)
			}
			return
		}
		if !ref.MatchString(s) || id.String() != s {
			t.Fatalf("ParseEPOID(%q) accepted a non-canonical form: %v", s, id)
		}
		back, err := echeck.DecodeEPOID(id.Encode())
		if err != nil || !back.Equal(id) {
			t.Fatalf("encoding round trip: %v, %v", back, err)
		}
	})
}

func FuzzDecodeEPOID(f *testing.F) {
	addSeeds(f, "epoid")
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := echeck.DecodeEPOID(b)
		if checkDecode(t, b, id, err, echeck.EPOID.Encode) {
			if back, err := echeck.ParseEPOID(id.String()); err != nil || !back.Equal(id) {
				t.Fatalf("text round trip of %v: %v", id, err)
			}
		}
	})
}

func FuzzDecodePriceRequest(f *testing.F) {
	addSeeds(f, "price-request")
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := echeck.DecodePriceRequest(b)
		if checkDecode(t, b, r, err, (*echeck.PriceRequest).Encode) {
			_ = r.PRDHash()
			_ = fuzzFlow.quote.CheckRequest(r, t0)
		}
	})
}

func FuzzDecodeQuote(f *testing.F) {
	addSeeds(f, "quote")
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzSigned(t, b, "signed-quote", echeck.DecodeQuote, (*echeck.Quote).Encode, func(q *echeck.Quote) {
			_ = q.Verify()
			_ = q.CheckRequest(fuzzFlow.req, t0)
		})
	})
}

func FuzzDecodeDelivery(f *testing.F) {
	addSeeds(f, "delivery")
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := echeck.DecodeDelivery(b)
		if checkDecode(t, b, d, err, (*echeck.Delivery).Encode) {
			_ = d.Check()
			_ = fuzzFlow.epo.CheckOffer(fuzzFlow.quote, d)
			_, _ = echeck.DecryptGoods(fuzzFlow.key, d.EPOID, d.Ciphertext)
		}
	})
}

func FuzzDecodeEPO(f *testing.F) {
	addSeeds(f, "epo")
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := echeck.DecodeEPO(b)
		if checkDecode(t, b, e, err, (*echeck.EPO).Body) {
			_ = e.Validate(t0)
			_ = e.CheckOffer(fuzzFlow.quote, fuzzFlow.delivery)
		}
	})
}

func FuzzDecodeEPOPrivate(f *testing.F) {
	addSeeds(f, "epo-private")
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := echeck.DecodeEPOPrivate(b)
		checkDecode(t, b, p, err, (*echeck.EPOPrivate).Encode)
	})
}

func FuzzDecodeSignedEPO(f *testing.F) {
	addSeeds(f, "signed-epo")
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := echeck.DecodeSignedEPO(b)
		if checkDecode(t, b, s, err, (*echeck.SignedEPO).Encode) {
			_ = s.VerifyCustomer()
			_ = s.Validate(t0)
			_, _ = s.OpenPrivate(fuzzKeys.bankHPKE)
			_ = echeck.Judge(fuzzFlow.receipt, s, fuzzFlow.delivery.Ciphertext, edPub(fuzzKeys.signing))
		}
	})
}

func FuzzDecodeEndorsement(f *testing.F) {
	addSeeds(f, "endorsement")
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzSigned(t, b, "signed-endorsement", echeck.DecodeEndorsement, (*echeck.Endorsement).Encode, func(e *echeck.Endorsement) {
			_, _ = e.Verify(edPub(fuzzKeys.merchant))
			_, _ = e.OpenKey(fuzzKeys.bankHPKE)
		})
	})
}

// FuzzDecodeRecordedEndorsement: the earlier memo rule an audit applies to
// a till's transcript is as canonical as the strict one (what decodes
// re-encodes to the same bytes, so no second encoding verifies), and a
// record it reads that the strict decoder also reads is the same value.
func FuzzDecodeRecordedEndorsement(f *testing.F) {
	addSeeds(f, "endorsement")
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzSigned(t, b, "signed-endorsement", echeck.DecodeRecordedEndorsement, (*echeck.Endorsement).Encode, func(e *echeck.Endorsement) {
			_, _ = e.VerifyRecorded(edPub(fuzzKeys.merchant))
		})
		if _, err := echeck.DecodeEndorsement(b); err == nil {
			if _, err := echeck.DecodeRecordedEndorsement(b); err != nil {
				t.Fatalf("the strict decoder reads what the recorded one refuses: %v", err)
			}
		}
	})
}

func FuzzDecodeReceipt(f *testing.F) {
	addSeeds(f, "receipt")
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzSigned(t, b, "signed-epo-receipt", echeck.DecodeReceipt, (*echeck.Receipt).Encode, func(r *echeck.Receipt) {
			_ = r.Verify(edPub(fuzzKeys.signing))
			_ = r.CheckEPO(fuzzFlow.epo)
			_ = r.CheckKey(fuzzFlow.epo.KeyCommit)
			_ = echeck.Judge(r, fuzzFlow.epo, fuzzFlow.delivery.Ciphertext, edPub(fuzzKeys.signing))
		})
	})
}

func FuzzDecodeCustomerBlock(f *testing.F) {
	addSeeds(f, "customer-block")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := echeck.DecodeCustomerBlock(b)
		checkDecode(t, b, c, err, (*echeck.CustomerBlock).Encode)
	})
}

func FuzzDecodeStatusQuery(f *testing.F) {
	addSeeds(f, "status-query")
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzSigned(t, b, "signed-status-query", echeck.DecodeStatusQuery, (*echeck.StatusQuery).Encode, func(q *echeck.StatusQuery) {
			_ = q.Verify(t0)
		})
	})
}

func FuzzDecodeStatement(f *testing.F) {
	addSeeds(f, "statement")
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzSigned(t, b, "signed-statement", echeck.DecodeStatement, (*echeck.Statement).Encode, func(s *echeck.Statement) {
			_ = s.Verify(edPub(fuzzKeys.signing))
			_ = s.Closing()
		})
	})
}

func FuzzDecodeStatementRequest(f *testing.F) {
	fuzzFixture(f)
	r := echeck.NewStatementRequest(customerAccount, t0.Add(-time.Hour), t0, t0, fuzzKeys.customer)
	f.Add(r.Encode())
	f.Add(r.Body())
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzSigned(t, b, "signed-statement-request", echeck.DecodeStatementRequest, (*echeck.StatementRequest).Encode, func(r *echeck.StatementRequest) {
			_ = r.Verify(edPub(fuzzKeys.customer), t0)
		})
	})
}

// FuzzDecryptGoods: arbitrary ciphertexts under the vector key never panic
// and never decrypt unless they are the real one.
func FuzzDecryptGoods(f *testing.F) {
	fuzzFixture(f)
	f.Add(fuzzFlow.delivery.Ciphertext)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ct []byte) {
		g, err := echeck.DecryptGoods(fuzzFlow.key, testEPOID(), ct)
		if err == nil && !bytes.Equal(ct, fuzzFlow.delivery.Ciphertext) {
			t.Fatalf("forged ciphertext decrypted to %q", g)
		}
		if err != nil && (g != nil || !errors.Is(err, echeck.ErrDecrypt)) {
			t.Fatalf("DecryptGoods = %q, %v", g, err)
		}
	})
}

// FuzzDecodeRecordedEPOPrivate: the earlier memo rule the bank reads its
// recorded private parts by (SignedEPO.OpenRecordedPrivate) is as canonical
// as the strict one, and reads everything the strict decoder reads, to the
// same value.
func FuzzDecodeRecordedEPOPrivate(f *testing.F) {
	addSeeds(f, "epo-private")
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := echeck.DecodeRecordedEPOPrivate(b)
		checkDecode(t, b, rec, err, (*echeck.EPOPrivate).Encode)
		if strict, serr := echeck.DecodeEPOPrivate(b); serr == nil {
			if err != nil {
				t.Fatalf("the strict decoder reads what the recorded one refuses: %v", err)
			}
			if !reflect.DeepEqual(strict, rec) {
				t.Fatalf("read as %+v strictly, as %+v recorded", strict, rec)
			}
		}
	})
}
