package auditlog_test

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

func TestEveryKindHasAFixtureEntry(t *testing.T) {
	f := newFixture(t)
	seen := map[auditlog.Kind]bool{}
	for _, e := range f.entries {
		seen[e.Kind()] = true
	}
	for _, k := range auditlog.Kinds() {
		if !seen[k] {
			t.Errorf("no fixture entry of kind %s", k)
		}
		if want := "auditlog/" + k.String(); k.Purpose() != want {
			t.Errorf("purpose %q, want %q", k.Purpose(), want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t)
	for i, e := range f.entries {
		b, err := e.Encode()
		if err != nil {
			t.Fatalf("%s: %v", f.names[i], err)
		}
		if k, err := auditlog.PeekKind(b); err != nil || k != e.Kind() {
			t.Errorf("%s: PeekKind = %v, %v", f.names[i], k, err)
		}
		got, err := auditlog.DecodeEntry(b)
		if err != nil {
			t.Fatalf("%s: %v", f.names[i], err)
		}
		if !reflect.DeepEqual(*got, e) {
			t.Errorf("%s: decoded %+v\nwant %+v", f.names[i], *got, e)
		}
		// Every proper prefix fails, and returns nothing.
		for n := range len(b) {
			if got, err := auditlog.DecodeEntry(b[:n]); got != nil || !errors.Is(err, ecash.ErrMalformed) {
				t.Fatalf("%s: prefix of %d bytes: %v, %v", f.names[i], n, got, err)
			}
		}
		// Flipping any single bit either fails or decodes to an entry
		// that re-encodes to the flipped bytes (never a silent change
		// of meaning with a non-canonical encoding).
		for n := range len(b) {
			c := bytes.Clone(b)
			c[n] ^= 0x10
			if got, err := auditlog.DecodeEntry(c); err == nil {
				again, err := got.Encode()
				if err != nil || !bytes.Equal(again, c) {
					t.Fatalf("%s: byte %d flipped decodes non-canonically", f.names[i], n)
				}
			}
		}
	}
}

// Encode sorts order-free lists; the caller's slices are left alone.
func TestEncodeSorts(t *testing.T) {
	f := newFixture(t)
	dep := f.entries[5].Op.(auditlog.Deposit)
	rev := dep
	rev.Coins = slices.Clone(dep.Coins)
	slices.Reverse(rev.Coins)
	before := slices.Clone(rev.Coins)
	a, err := (&auditlog.Entry{Index: 5, Time: f.entries[5].Time, Op: rev}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.entries[5].Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("coin order changes the encoding")
	}
	if !slices.Equal(rev.Coins, before) {
		t.Error("Encode reordered the caller's slice")
	}
	// Sub-millisecond time is dropped; the decoded time is UTC.
	e := auditlog.Entry{Index: 1, Time: fixtureBase.Add(999 * time.Microsecond).In(time.FixedZone("X", 3600)), Op: f.entries[3].Op}
	enc, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := auditlog.DecodeEntry(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(fixtureBase) || got.Time.Location() != time.UTC || !reflect.DeepEqual(*got, e.Canonical()) {
		t.Errorf("time %v, canonical %v", got.Time, e.Canonical().Time)
	}
}

func TestEncodeRefuses(t *testing.T) {
	f := newFixture(t)
	key := f.entries[1].Op.(auditlog.AccountOpened).Key
	dc := auditlog.DenomCount{Denom: f.d2.ID, Value: f.d2.Value, Count: 1}
	coin := auditlog.SpentCoin{ID: tag("x"), Denom: f.d2.ID, Value: f.d2.Value}
	cases := []struct {
		name string
		e    auditlog.Entry
	}{
		{"no op", auditlog.Entry{Time: fixtureBase}},
		{"negative index", auditlog.Entry{Index: -1, Time: fixtureBase, Op: f.entries[3].Op}},
		{"time before 1970", auditlog.Entry{Time: time.Unix(-1, 0), Op: f.entries[3].Op}},
		{"time after 9999", auditlog.Entry{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Op: f.entries[3].Op}},
		{"account 0", auditlog.Entry{Time: fixtureBase, Op: auditlog.AccountOpened{Key: key}}},
		{"short key", auditlog.Entry{Time: fixtureBase, Op: auditlog.AccountOpened{Account: 5, Key: key[:31]}}},
		{"credit of nothing", auditlog.Entry{Time: fixtureBase, Op: auditlog.Credit{Account: 5, Amount: eur(0)}}},
		{"credit without currency", auditlog.Entry{Time: fixtureBase, Op: auditlog.Credit{Account: 5, Amount: ecash.Amount{Value: 5}}}},
		{"withdraw total", auditlog.Entry{Time: fixtureBase, Op: auditlog.Withdraw{Account: 5, Amount: eur(1), Issued: []auditlog.DenomCount{dc}}}},
		{"withdraw duplicate", auditlog.Entry{Time: fixtureBase, Op: auditlog.Withdraw{Account: 5, Amount: eur(400), Issued: []auditlog.DenomCount{dc, dc}}}},
		{"withdraw overflow", auditlog.Entry{Time: fixtureBase, Op: auditlog.Withdraw{Account: 5, Amount: eur(ecash.MaxValue),
			Issued: []auditlog.DenomCount{{Denom: f.d2.ID, Value: eur(ecash.MaxValue), Count: 2}}}}},
		{"deposit duplicate coin", auditlog.Entry{Time: fixtureBase, Op: auditlog.Deposit{Merchant: 5, Amount: eur(400), Coins: []auditlog.SpentCoin{coin, coin}}}},
		{"deposit of nothing", auditlog.Entry{Time: fixtureBase, Op: auditlog.Deposit{Merchant: 5, Amount: eur(400)}}},
		{"swap fee negative", auditlog.Entry{Time: fixtureBase, Op: auditlog.Swap{AmountIn: eur(200), AmountOut: eur(400),
			Spent: []auditlog.SpentCoin{coin}, Issued: []auditlog.DenomCount{{Denom: f.d2.ID, Value: f.d2.Value, Count: 2}}}}},
		{"swap currencies", auditlog.Entry{Time: fixtureBase, Op: auditlog.Swap{AmountIn: eur(200), AmountOut: ecash.Amount{Currency: "USD", Value: 200},
			Spent: []auditlog.SpentCoin{coin}, Issued: []auditlog.DenomCount{dc}}}},
		{"refund total", auditlog.Entry{Time: fixtureBase, Op: auditlog.Refund{Merchant: 5, Amount: eur(3), Coins: []auditlog.RefundedCoin{{ID: tag("x"), Value: eur(2)}}}}},
		{"recoup account 0", auditlog.Entry{Time: fixtureBase, Op: auditlog.Recoup{Amount: eur(3)}}},
		{"check outcome", auditlog.Entry{Time: fixtureBase, Op: auditlog.Check{EPOID: "1-2-3", Customer: 1, Merchant: 2, Amount: eur(1)}}},
		{"check EPOID", auditlog.Entry{Time: fixtureBase, Op: auditlog.Check{EPOID: strings.Repeat("9", 129), Customer: 1, Merchant: 2, Amount: eur(1), Outcome: auditlog.OutcomeApproved}}},
		{"payout of nothing", auditlog.Entry{Time: fixtureBase, Op: auditlog.Payout{Account: 5}}},
		{"empty key set", auditlog.Entry{Time: fixtureBase, Op: auditlog.KeySet{}}},
	}
	for _, c := range cases {
		b, err := c.e.Encode()
		if b != nil || !errors.Is(err, auditlog.ErrInvalidEntry) {
			t.Errorf("%s: %x, %v", c.name, b, err)
		}
	}
}

func TestOutcomes(t *testing.T) {
	// The names are the bank's Check* constants (bank/store.go).
	for _, s := range []string{"approved", "insufficient-funds", "over-limit", "account-locked"} {
		o, err := auditlog.ParseOutcome(s)
		if err != nil || o.String() != s {
			t.Errorf("%s: %v %v", s, o, err)
		}
	}
	if _, err := auditlog.ParseOutcome("maybe"); err == nil {
		t.Error("unknown outcome parsed")
	}
}

func TestOptionalHash(t *testing.T) {
	if auditlog.OptionalHash("") != (ecash.Hash{}) {
		t.Error("empty reference does not hash to zeros")
	}
	if auditlog.OptionalHash("a") != ecash.HashOf([]byte("a")) {
		t.Error("reference hash is not SHA-256")
	}
}

func TestDecodeRefusesOversizedInput(t *testing.T) {
	f := newFixture(t)
	b := f.encodings(t)[0]
	big := append(bytes.Clone(b), make([]byte, auditlog.MaxEntrySize)...)
	if e, err := auditlog.DecodeEntry(big); e != nil || !errors.Is(err, ecash.ErrMalformed) || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("oversized: %v", err)
	}
}

// A swap that spends refund credit encodes its credits after the issued
// coins, only when there are some; it round-trips, and its credits must
// add up with the coins to the amount in, never naming a coin also spent.
func TestSwapCredits(t *testing.T) {
	f := newFixture(t)
	coin := auditlog.SpentCoin{ID: tag("coin x"), Denom: f.d2.ID, Value: f.d2.Value, PermissionHash: tag("perm x")}
	credit := auditlog.RefundedCoin{ID: tag("coin y"), Value: eur(150)}
	sw := auditlog.Swap{RequestHash: tag("swap"), AmountIn: eur(350), AmountOut: eur(300), Spent: []auditlog.SpentCoin{coin},
		Issued: []auditlog.DenomCount{{Denom: f.d1.ID, Value: f.d1.Value, Count: 3}}, Credits: []auditlog.RefundedCoin{credit}}
	e := auditlog.Entry{Index: 9, Time: fixtureBase, Op: sw}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := auditlog.DecodeEntry(b)
	if err != nil || !reflect.DeepEqual(*got, e.Canonical()) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	onlyCredit := auditlog.Swap{RequestHash: tag("swap 2"), AmountIn: eur(100), AmountOut: eur(100),
		Issued: []auditlog.DenomCount{{Denom: f.d1.ID, Value: f.d1.Value, Count: 1}}, Credits: []auditlog.RefundedCoin{{ID: tag("coin y"), Value: eur(100)}}}
	if _, err := (auditlog.Entry{Time: fixtureBase, Op: onlyCredit}).Encode(); err != nil {
		t.Errorf("a swap of credit alone: %v", err)
	}
	bad := map[string]auditlog.Swap{}
	total := sw
	total.AmountIn = eur(400)
	bad["credits and coins short of the amount"] = total
	both := sw
	both.Credits = []auditlog.RefundedCoin{{ID: coin.ID, Value: eur(150)}}
	bad["a coin spent and its credit spent"] = both
	zero := sw
	zero.Credits = []auditlog.RefundedCoin{{ID: tag("coin y"), Value: eur(0)}}
	zero.AmountIn = eur(200)
	bad["a credit of nothing"] = zero
	for name, op := range bad {
		if _, err := (auditlog.Entry{Time: fixtureBase, Op: op}).Encode(); !errors.Is(err, auditlog.ErrInvalidEntry) {
			t.Errorf("%s: %v, want ErrInvalidEntry", name, err)
		}
	}
}

// A swap's credits list is written only when not empty, so a swap entry
// followed by an empty list (count 0) is a second encoding of the same swap:
// it must not decode, or one history would have two leaf hashes and two
// logs with different roots would both pass the audit.
func TestSwapEmptyCreditsRefused(t *testing.T) {
	f := newFixture(t)
	enc := f.encodings(t)
	const swap = 6
	if f.entries[swap].Kind() != auditlog.KindSwap || len(f.entries[swap].Op.(auditlog.Swap).Credits) != 0 {
		t.Fatalf("fixture entry %d is not a swap without credits", swap)
	}
	alt := slices.Clone(enc)
	alt[swap] = append(bytes.Clone(enc[swap]), 0, 0, 0, 0) // credits: count 0
	if e, err := auditlog.DecodeEntry(alt[swap]); e != nil || !errors.Is(err, auditlog.ErrInvalidEntry) {
		t.Fatalf("a swap with an empty credits list decodes: %+v, %v", e, err)
	}
	_, err := replay(t, f.ks.MasterPub, alt)
	var ae *auditlog.AuditError
	if !errors.As(err, &ae) || ae.Index != swap || ae.Check != auditlog.CheckDecode {
		t.Fatalf("the audit of the log with that entry: %v, want a decode failure at entry %d", err, swap)
	}
}
