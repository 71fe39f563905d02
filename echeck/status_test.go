package echeck_test

import (
	"math"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

func TestStatusQuery(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	now := t0.Add(time.Hour)
	for _, key := range []byte{0x03, 0x04} { // the merchant or the customer
		q := echeck.NewStatusQuery(testEPOID(), now, edKey(key))
		if err := q.Verify(now); err != nil {
			t.Fatal(err)
		}
		if !q.Requester.Equal(edPub(edKey(key))) {
			t.Fatal("requester")
		}
	}
	q := echeck.NewStatusQuery(testEPOID(), now, k.customer)
	if err := q.Verify(now.Add(ecash.MaxClockSkew)); err != nil {
		t.Fatal(err)
	}
	if err := q.Verify(now.Add(-ecash.MaxClockSkew)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, q.Verify(now.Add(ecash.MaxClockSkew+time.Millisecond)), echeck.ErrStale)
	wantErr(t, q.Verify(now.Add(-ecash.MaxClockSkew-time.Millisecond)), echeck.ErrStale)
	// A query dated 2^63 ms before now, where now − t in milliseconds wraps
	// to MinInt64 and its negation with it: stale, not fresh forever.
	far := echeck.NewStatusQuery(testEPOID(), time.UnixMilli(math.MinInt64+now.UnixMilli()), k.customer)
	dec, err := echeck.DecodeStatusQuery(far.Encode())
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, dec.Verify(now), echeck.ErrStale)

	// Asking about another EPOID with the same signature fails.
	bad, err := echeck.DecodeStatusQuery(q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	bad.EPOID.Serial++
	wantErr(t, bad.Verify(now), ecash.ErrBadSignature)
	// A weak requester key is refused before the signature is looked at.
	bad, _ = echeck.DecodeStatusQuery(q.Encode())
	bad.Requester = make([]byte, 32)
	wantErr(t, bad.Verify(now), ecash.ErrBadKey)
}

// TestStatementRequestFreshness: a statement request is fresh within
// MaxClockSkew of the bank's clock either way, and stale beyond, however
// far: one dated centuries ahead (where time.Time.Sub saturates) would
// otherwise be replayable forever.
func TestStatementRequestFreshness(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	now := t0.Add(time.Hour)
	for _, c := range []struct {
		at    time.Time
		fresh bool
	}{
		{now, true}, {now.Add(ecash.MaxClockSkew), true}, {now.Add(-ecash.MaxClockSkew), true},
		{now.Add(ecash.MaxClockSkew + time.Millisecond), false}, {now.Add(-ecash.MaxClockSkew - time.Millisecond), false},
		{time.UnixMilli(math.MaxInt64), false}, {time.UnixMilli(math.MinInt64), false},
	} {
		r := echeck.NewStatementRequest(customerAccount, now.Add(-time.Hour), now, c.at, k.customer)
		dec, err := echeck.DecodeStatementRequest(r.Encode())
		if err != nil {
			t.Fatal(err)
		}
		err = dec.Verify(edPub(k.customer), now)
		if c.fresh && err != nil {
			t.Errorf("made at %d ms, verified at %d: %v", c.at.UnixMilli(), now.UnixMilli(), err)
		} else if !c.fresh {
			wantErr(t, err, echeck.ErrStale)
		}
	}
}

func TestStatement(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s := statementFixture(k)
	if err := s.Verify(edPub(k.signing)); err != nil {
		t.Fatal(err)
	}
	if s.Closing() != 12350 {
		t.Fatalf("Closing = %d", s.Closing())
	}
	wantErr(t, s.Verify(edPub(k.merchant)), ecash.ErrBadSignature)
	dec, err := echeck.DecodeStatement(s.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if !dec.Lines[0].EPOID.IsZero() || !dec.Lines[1].EPOID.Equal(testEPOID()) {
		t.Fatal("optional EPOID")
	}
	empty := &echeck.Statement{Account: 1, Currency: "EUR", From: t0, To: t0, Opening: -5}
	empty.Sign(k.signing)
	if err := empty.Verify(edPub(k.signing)); err != nil || empty.Closing() != -5 {
		t.Fatal(err)
	}

	cases := map[string]struct {
		change func(s *echeck.Statement)
		want   error
	}{
		"running balance": {func(s *echeck.Statement) { s.Lines[1].Balance++ }, ecash.ErrMalformed},
		"opening balance": {func(s *echeck.Statement) { s.Opening++ }, ecash.ErrMalformed},
		"zero amount":     {func(s *echeck.Statement) { s.Lines[0].Amount = 0; s.Lines[0].Balance = s.Opening }, ecash.ErrBadAmount},
		"amount over MaxValue": {func(s *echeck.Statement) {
			s.Opening = 0
			s.Lines = s.Lines[:1]
			s.Lines[0].Amount = ecash.MaxValue + 1
			s.Lines[0].Balance = ecash.MaxValue + 1
		}, ecash.ErrBadAmount},
		"opening over MaxValue":   {func(s *echeck.Statement) { s.Opening = -ecash.MaxValue - 1 }, ecash.ErrOverflow},
		"line before the period":  {func(s *echeck.Statement) { s.Lines[0].PostedAt = s.From.Add(-time.Millisecond) }, ecash.ErrMalformed},
		"line at the period end":  {func(s *echeck.Statement) { s.Lines[2].PostedAt = s.To }, ecash.ErrMalformed},
		"lines out of order":      {func(s *echeck.Statement) { s.Lines[2].PostedAt = s.Lines[1].PostedAt.Add(-time.Millisecond) }, ecash.ErrMalformed},
		"period ends before":      {func(s *echeck.Statement) { s.To = s.From.Add(-time.Millisecond) }, ecash.ErrMalformed},
		"bad currency":            {func(s *echeck.Statement) { s.Currency = "euro" }, ecash.ErrBadAmount},
		"memo not UTF-8":          {func(s *echeck.Statement) { s.Lines[0].Memo = "\xff" }, ecash.ErrMalformed},
		"memo with an escape":     {func(s *echeck.Statement) { s.Lines[0].Memo = "\x1b]0;paid\a" }, ecash.ErrMalformed},
		"product id with a bidi":  {func(s *echeck.Statement) { s.Lines[1].ProductID = "song\u2067" }, ecash.ErrMalformed},
		"EPOID before 1970":       {func(s *echeck.Statement) { s.Lines[1].EPOID.Timestamp = time.UnixMilli(-1) }, ecash.ErrMalformed},
		"product id over the max": {func(s *echeck.Statement) { s.Lines[1].ProductID = string(make([]byte, echeck.MaxProductIDLen+1)) }, ecash.ErrMalformed},
	}
	for name, tc := range cases {
		s := statementFixture(k)
		tc.change(s)
		s.Sign(k.signing)
		if err := s.Verify(edPub(k.signing)); err == nil {
			t.Errorf("%s: verifies", name)
		} else {
			wantErr(t, err, tc.want)
		}
		st, err := echeck.DecodeStatement(s.Encode())
		if st != nil || err == nil {
			t.Errorf("%s: decodes", name)
		}
	}
}
