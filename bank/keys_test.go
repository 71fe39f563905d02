package bank

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

var (
	day   = 24 * time.Hour
	start = time.Unix(1_700_000_000, 0).UTC()
	eur1  = ecash.Amount{Currency: "EUR", Value: 100}
	eur2  = ecash.Amount{Currency: "EUR", Value: 200}
)

// scheduledKeys makes keys for two CS values on a 30-day schedule with a
// 5-day overlap and a 60-day deposit lifetime, made ahead until start+until.
func scheduledKeys(t *testing.T, master ed25519.PublicKey, until time.Duration) *Keys {
	t.Helper()
	k, err := GenerateKeys(KeyConfig{
		Currency: "EUR", MasterPub: master,
		Denoms:         []DenomSpec{{Value: eur1, Cipher: ecash.CipherCS}, {Value: eur2, Cipher: ecash.CipherCS}},
		WithdrawPeriod: 30 * day, DepositPeriod: 90 * day, Overlap: 5 * day, Until: start.Add(until),
	}, start, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// checkChain checks that the keys of every value follow the schedule: each
// starts Overlap before its predecessor stops issuing, and is accepted for
// DepositLifetime after it stops.
func checkChain(t *testing.T, k *Keys, s Schedule) {
	t.Helper()
	for _, v := range k.values() {
		var prev *DenomKey
		for i := range k.Denoms {
			d := &k.Denoms[i]
			if d.Value != v {
				continue
			}
			if d.WithdrawEnd.Sub(d.WithdrawStart) != s.WithdrawPeriod || d.DepositEnd.Sub(d.WithdrawEnd) != s.DepositLifetime {
				t.Errorf("%s key from %v: windows %v..%v..%v do not follow %s", v, d.WithdrawStart, d.WithdrawStart, d.WithdrawEnd, d.DepositEnd, s)
			}
			if prev != nil && !d.WithdrawStart.Equal(prev.WithdrawEnd.Add(-s.Overlap)) {
				t.Errorf("%s key starts %v, want %v (overlap %s)", v, d.WithdrawStart, prev.WithdrawEnd.Add(-s.Overlap), s.Overlap)
			}
			prev = d
		}
	}
}

func TestGenerateAhead(t *testing.T) {
	k := scheduledKeys(t, nil, 70*day)
	s := Schedule{WithdrawPeriod: 30 * day, Overlap: 5 * day, DepositLifetime: 60 * day}
	if k.Schedule != s {
		t.Fatalf("schedule %s, want %s", k.Schedule, s)
	}
	// 70 days need keys starting at day 0, 25 and 50 (the last one ends at 80).
	if len(k.Denoms) != 6 {
		t.Fatalf("%d keys, want 3 per value", len(k.Denoms))
	}
	checkChain(t, k, s)
	if err := k.CheckKeySet(); err != nil {
		t.Fatal(err)
	}
	if got, want := k.WithdrawableUntil(start), start.Add(80*day); !got.Equal(want) {
		t.Errorf("withdrawable until %v, want %v", got, want)
	}
	// The key set lists them all; wallets see the rotation by time.
	ks := k.KeySet()
	for _, tc := range []struct {
		at    time.Duration
		start time.Duration
	}{{0, 0}, {25*day - time.Second, 0}, {25 * day, 25 * day}, {79 * day, 50 * day}} {
		d, err := ks.CurrentDenomination(eur1, start.Add(tc.at))
		if err != nil || !d.WithdrawStart.Equal(start.Add(tc.start)) {
			t.Errorf("at day %v: current key from %v, %v; want the one from day %v", tc.at/day, d.WithdrawStart, err, tc.start/day)
		}
	}
	if _, err := ks.CurrentDenomination(eur1, start.Add(80*day)); err == nil {
		t.Error("a key is current after the schedule ends")
	}
	// A bad schedule is refused.
	for _, cfg := range []KeyConfig{
		{Currency: "EUR", Values: []ecash.Amount{eur1}, Cipher: ecash.CipherCS, WithdrawPeriod: day, Overlap: day},
		{Currency: "EUR", Values: []ecash.Amount{eur1}, Cipher: ecash.CipherCS, WithdrawPeriod: 2 * day, DepositPeriod: day},
	} {
		if _, err := GenerateKeys(cfg, start, rand.Reader); err == nil {
			t.Errorf("schedule %+v accepted", cfg.schedule())
		}
	}
}

func TestExtend(t *testing.T) {
	k := scheduledKeys(t, nil, 0)
	if len(k.Denoms) != 2 {
		t.Fatalf("%d keys, want one per value", len(k.Denoms))
	}
	s := k.Schedule
	sigBefore := k.KeySet().MasterSig
	now := start.Add(day)
	added, err := k.Extend(Schedule{}, start.Add(100*day), now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Keys from day 0, 25, 50, 75: the last ends at day 105.
	if len(added) != 6 || len(k.Denoms) != 8 {
		t.Fatalf("added %d keys (now %d), want 3 per value", len(added), len(k.Denoms))
	}
	checkChain(t, k, s)
	if !k.IssuedAt.Equal(now) || bytes.Equal(k.KeySet().MasterSig, sigBefore) {
		t.Error("the key set was not issued anew")
	}
	if err := k.CheckKeySet(); err != nil {
		t.Fatal(err)
	}
	for _, d := range added {
		if d.Key.Cipher() != ecash.CipherCS {
			t.Error("the cipher changed")
		}
	}
	// Extending to where the schedule already reaches adds nothing.
	if again, err := k.Extend(Schedule{}, start.Add(105*day), now.Add(time.Hour), rand.Reader); err != nil || len(again) != 0 || !k.IssuedAt.Equal(now) {
		t.Fatalf("extending again: %d keys, %v, issued %v", len(again), err, k.IssuedAt)
	}
	// A schedule that lapsed starts again at now, with a new schedule.
	later := start.Add(200 * day)
	s2 := Schedule{WithdrawPeriod: 10 * day, Overlap: day, DepositLifetime: 20 * day}
	added, err = k.Extend(s2, later.Add(15*day), later, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 4 || !added[0].WithdrawStart.Equal(later) || k.Schedule != s2 {
		t.Fatalf("after a gap: %d keys, first from %v, schedule %s", len(added), added[0].WithdrawStart, k.Schedule)
	}
	if got, want := k.WithdrawableUntil(later), later.Add(19*day); !got.Equal(want) {
		t.Errorf("withdrawable until %v, want %v", got, want)
	}
	if !k.WithdrawableUntil(start.Add(150 * day)).IsZero() {
		t.Error("covered in the gap")
	}
	// An RSA value keeps its key size.
	r, err := GenerateKeys(KeyConfig{Currency: "EUR", Values: []ecash.Amount{eur1}, RSABits: 3072, WithdrawPeriod: 30 * day}, start, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	added, err = r.Extend(Schedule{}, start.Add(40*day), start, rand.Reader)
	if err != nil || len(added) != 1 || rsaBits(added[0].Denomination) != 3072 {
		t.Fatalf("RSA extension: %d keys, %v", len(added), err)
	}
	// Too far ahead for a key set.
	if _, err := k.Extend(Schedule{WithdrawPeriod: time.Hour, Overlap: time.Minute}, later.Add(365*day), later, rand.Reader); err == nil {
		t.Fatal("extended beyond MaxDenominations")
	}
}

func TestPrune(t *testing.T) {
	k := scheduledKeys(t, nil, 70*day) // keys from day 0, 25, 50; deposits until 90, 115, 140
	first := k.Denoms[0].DepositEnd
	if gone, _ := k.Prune(first.Add(-time.Second), time.Time{}); len(gone) != 0 {
		t.Fatalf("pruned %d keys still accepting deposits", len(gone))
	}
	issued := k.IssuedAt
	gone, _ := k.Prune(first, time.Time{})
	if len(gone) != 2 || len(k.Denoms) != 4 || !k.IssuedAt.Equal(first) || k.IssuedAt.Equal(issued) {
		t.Fatalf("at the deposit deadline: pruned %d, kept %d", len(gone), len(k.Denoms))
	}
	for _, d := range gone {
		if !d.DepositEnd.Equal(first) {
			t.Errorf("pruned a key accepting deposits until %v", d.DepositEnd)
		}
	}
	if err := k.CheckKeySet(); err != nil {
		t.Fatal(err)
	}
}

// TestRotateSigning: the retired signing key is listed with its window, so
// a receipt it signed before the rotation still verifies, and one dated
// after the grace does not; everything survives the key file.
func TestRotateSigning(t *testing.T) {
	k := scheduledKeys(t, nil, 0)
	oldPriv := k.Signing
	oldPub := oldPriv.Public().(ed25519.PublicKey)
	if _, err := k.RotateSigning(start, time.Hour, rand.Reader); err == nil {
		t.Fatal("rotated a signing key in the second it became current")
	}
	now := start.Add(10 * day)
	for _, g := range []time.Duration{-time.Second, MaxSigningGrace + time.Second} {
		if _, err := k.RotateSigning(now, g, rand.Reader); err == nil || !k.Signing.Equal(oldPriv) {
			t.Fatalf("grace %s: %v; signing key replaced: %t", g, err, !k.Signing.Equal(oldPriv))
		}
	}
	retired, err := k.RotateSigning(now, time.Hour, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if !retired.Pub.Equal(oldPub) || !retired.ValidFrom.Equal(start) || !retired.ValidUntil.Equal(now.Add(time.Hour)) ||
		k.Signing.Equal(oldPriv) || !k.SigningSince.Equal(now) || !k.IssuedAt.Equal(now) {
		t.Fatalf("retired %+v, signing since %v", retired, k.SigningSince)
	}
	// Twice: newest first.
	if _, err := k.RotateSigning(now.Add(day), time.Hour, rand.Reader); err != nil {
		t.Fatal(err)
	}
	if len(k.PastSigning) != 2 || !k.PastSigning[1].Pub.Equal(oldPub) {
		t.Fatalf("past signing keys %+v", k.PastSigning)
	}
	ks, err := ecash.DecodeKeySet(k.KeySet().Encode(), k.MasterPub)
	if err != nil {
		t.Fatal(err)
	}
	receipt := func(at time.Time) *ecash.DepositReceipt {
		r := &ecash.DepositReceipt{MerchantAccount: 7, Total: eur1, DepositedAt: at, SignerPub: oldPub}
		r.Sig = ecash.SignBody(oldPriv, r.Body())
		return r
	}
	for _, tc := range []struct {
		at time.Time
		ok bool
	}{{start.Add(day), true}, {now.Add(time.Hour - time.Millisecond), true}, {now.Add(time.Hour), false}, {start.Add(-time.Second), false}} {
		r := receipt(tc.at)
		err := ks.CheckSigner(r.SignerPub, r.DepositedAt)
		if err == nil {
			err = ecash.VerifyBody(r.SignerPub, r.Body(), r.Sig, "receipt")
		}
		if (err == nil) != tc.ok {
			t.Errorf("receipt by the retired key at %v: %v", tc.at, err)
		}
	}

	// The key file keeps it all.
	path := filepath.Join(t.TempDir(), KeysFile)
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	sameKeys(t, k, back)
	if !back.SigningSince.Equal(k.SigningSince) || back.Schedule != k.Schedule || len(back.PastSigning) != 2 {
		t.Fatalf("after a round trip: since %v, schedule %s, %d past keys", back.SigningSince, back.Schedule, len(back.PastSigning))
	}

	// Dropping retired keys whose window ended before a date.
	if _, gone := k.Prune(now.Add(2*day), now.Add(2*time.Hour)); len(gone) != 1 || !gone[0].Pub.Equal(oldPub) || len(k.PastSigning) != 1 {
		t.Fatalf("pruned signing keys %+v", gone)
	}
	// The list is bounded.
	for i := range ecash.MaxPastSigningKeys - 1 {
		if _, err := k.RotateSigning(now.Add(time.Duration(3+i)*day), time.Hour, rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.RotateSigning(now.Add(100*day), time.Hour, rand.Reader); err == nil {
		t.Fatal("listed more retired signing keys than a key set may")
	}
	if err := k.CheckKeySet(); err != nil {
		t.Fatal(err)
	}
}

// With the master key offline, a change to the key set drops the old
// signature: the bank cannot serve the changed set until it is signed.
func TestChangeNeedsOfflineSignature(t *testing.T) {
	mpub, master, _ := ed25519.GenerateKey(rand.Reader)
	k := scheduledKeys(t, mpub, 0)
	if _, signed, err := SignKeySetBody(master, k.KeySetBody()); err != nil {
		t.Fatal(err)
	} else if _, err := k.InstallSignature(signed); err != nil {
		t.Fatal(err)
	}
	if err := k.CheckKeySet(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Extend(Schedule{}, start.Add(60*day), start.Add(day), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.Signed() || !errors.Is(k.CheckKeySet(), ErrKeySetUnsigned) {
		t.Fatal("the old signature still stands for the extended key set")
	}
	_, signed, err := SignKeySetBody(master, k.KeySetBody())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.InstallSignature(signed); err != nil {
		t.Fatal(err)
	}
	if err := k.CheckKeySet(); err != nil {
		t.Fatal(err)
	}
}

func TestStatus(t *testing.T) {
	k := scheduledKeys(t, nil, 70*day) // from day 0, 25, 50
	st := k.Status(start.Add(30 * day))
	if len(st) != 2 || st[0].Value != eur1 || st[1].Value != eur2 {
		t.Fatalf("status %+v", st)
	}
	s := st[0]
	if s.Current == nil || !s.Current.WithdrawStart.Equal(start.Add(25*day)) || s.Next == nil || !s.Next.WithdrawStart.Equal(start.Add(50*day)) ||
		s.Future != 1 || s.Withdrawable != 1 || s.DepositOnly != 1 || s.Expired != 0 || !s.CoveredUntil.Equal(start.Add(80*day)) {
		t.Fatalf("status at day 30: %+v", s)
	}
	// Key files from before schedules: inferred from the newest key.
	k.Schedule = Schedule{}
	if got := k.ScheduleOf(); got != (Schedule{WithdrawPeriod: 30 * day, Overlap: 30 * day / 12, DepositLifetime: 60 * day}) {
		t.Fatalf("inferred schedule %s", got)
	}
}

// TestFees: fees given per denomination ("/fees=W:D:S:R") go into its keys,
// survive the key file, are signed into the key set, and carry over to the
// keys Extend makes ahead; fees a coin could not pay are refused.
func TestFees(t *testing.T) {
	specs, err := ParseDenomSpecs("EUR:0.01/cs,EUR:1.00/cs/fees=0.02:0.01:0:0.03,EUR:2.00/fees=0:0:0:0", ecash.CipherRSA)
	if err != nil {
		t.Fatal(err)
	}
	cent := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	want := ecash.Fees{Withdraw: cent(2), Deposit: cent(1), Swap: cent(0), Refund: cent(3)}
	if specs[1].Fees != want || !specs[0].Fees.IsZero() || specs[2].Fees != (ecash.Fees{}) {
		t.Fatalf("parsed fees %+v, %+v, %+v", specs[0].Fees, specs[1].Fees, specs[2].Fees)
	}
	if got := FeesSpec(want); got != "fees=0.02:0.01:0.00:0.03" {
		t.Errorf("FeesSpec = %q", got)
	}
	for _, bad := range []string{"EUR:0.01/fees=0:0.01:0:0", "EUR:1.00/fees=0.01:0.01", "EUR:1.00/fees=a:b:c:d"} {
		if _, err := ParseDenomSpecs(bad, ecash.CipherCS); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	k, err := GenerateKeys(KeyConfig{Currency: "EUR", Denoms: specs[:2], WithdrawPeriod: 30 * day, DepositPeriod: 90 * day, Overlap: 5 * day}, start, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Extend(Schedule{}, start.Add(100*day), start, rand.Reader); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), KeysFile)
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := ecash.DecodeKeySet(back.KeySet().Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range ks.Denominations {
		switch d.Value.Value {
		case 100:
			n++
			if d.Fees != want {
				t.Errorf("EUR:1.00 key from %v has fees %+v", d.WithdrawStart, d.Fees)
			}
		case 1:
			if !d.Fees.IsZero() {
				t.Errorf("EUR:0.01 key charges %+v", d.Fees)
			}
		}
	}
	if n < 2 {
		t.Errorf("%d EUR:1.00 keys after Extend, want the first and those made ahead", n)
	}
}

// TestExtendReplacesRevokedKey: the runbook for a leaked key (KEYS.md §7)
// revokes it and then extends. The replacement starts now, not Overlap
// before the end of the revoked key's window, months away; until it is
// made, the schedule's reach (WithdrawableUntil: "bankd keys show", the
// issuable-until metric and its alert) says the value has no withdrawable
// key, rather than counting the revoked one.
func TestExtendReplacesRevokedKey(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	v := ecash.Amount{Currency: "EUR", Value: 2}
	k, err := GenerateKeys(KeyConfig{Currency: "EUR", Values: []ecash.Amount{{Currency: "EUR", Value: 1}, v}, Cipher: ecash.CipherCS}, t0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(day)
	cur, err := k.KeySet().CurrentDenomination(v, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Revoke(cur.ID, now); err != nil {
		t.Fatal(err)
	}
	if got := k.WithdrawableUntil(now); !got.IsZero() {
		t.Errorf("after revoking the only current %s key: WithdrawableUntil = %s, want zero", v, got.UTC())
	}
	until := now.Add(400 * day)
	added, err := k.Extend(Schedule{}, until, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var first *DenomKey
	for i := range added {
		if d := &added[i]; d.Value == v && (first == nil || d.WithdrawStart.Before(first.WithdrawStart)) {
			first = d
		}
	}
	if first == nil || !first.WithdrawStart.Equal(now) {
		t.Fatalf("the replacement of the revoked %s key: %+v, want one starting now (%s)", v, first, now.UTC())
	}
	if d, err := k.KeySet().CurrentDenomination(v, now); err != nil || d.ID != first.ID {
		t.Errorf("current %s key after extending: %v, %v; want the replacement", v, d.ID, err)
	}
	if got := k.WithdrawableUntil(now); got.Before(until) {
		t.Errorf("WithdrawableUntil = %s after extending to %s", got.UTC(), until.UTC())
	}
	// Its cipher and fees are the revoked key's.
	if first.Key.Cipher() != cur.Key.Cipher() || first.Fees != cur.Fees {
		t.Errorf("replacement: cipher %v fees %+v, revoked key: %v %+v", first.Key.Cipher(), first.Fees, cur.Key.Cipher(), cur.Fees)
	}
}

// TestKeySetIssuedAtOnlyMovesForward: wallets keep the later-issued of two
// key sets. A change made with a clock behind the set's issue time (a
// replica a few seconds behind the one that issued it, or a clock stepped
// back) is issued a second after it, not before, so wallets take it; a set
// issued further ahead than the protocol's skew is a clock's mistake, and
// the change is issued at now.
func TestKeySetIssuedAtOnlyMovesForward(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	k, err := GenerateKeys(KeyConfig{Currency: "EUR", Values: []ecash.Amount{{Currency: "EUR", Value: 1}, {Currency: "EUR", Value: 2}}, Cipher: ecash.CipherCS}, t0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issued := t0.Add(time.Hour)
	k.IssuedAt = issued
	if err := k.Revoke(k.Denoms[0].ID, issued.Add(-30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if want := issued.Add(time.Second); !k.IssuedAt.Equal(want) {
		t.Errorf("revoked with a clock 30 s behind the set: issued %s, want %s", k.IssuedAt.UTC(), want.UTC())
	}
	now := issued.Add(time.Minute)
	if err := k.Revoke(k.Denoms[1].ID, now); err != nil {
		t.Fatal(err)
	}
	if !k.IssuedAt.Equal(now) {
		t.Errorf("revoked with a clock ahead of the set: issued %s, want %s", k.IssuedAt.UTC(), now.UTC())
	}
	k.IssuedAt = now.AddDate(1, 0, 0)
	if _, err := k.Extend(Schedule{}, now.AddDate(3, 0, 0), now, rand.Reader); err != nil {
		t.Fatal(err)
	}
	if !k.IssuedAt.Equal(now) {
		t.Errorf("changed after a set issued a year ahead: issued %s, want now (%s)", k.IssuedAt.UTC(), now.UTC())
	}
}

// TestExtendBridgesToSuccessor: the value's current key revoked after its
// successor was made (extend runs ahead), extend makes a bridge from now
// to the successor, ending once the successor has run for the overlap;
// until then the schedule's reach (KeySetWithdrawableUntil, the metric)
// is zero, not the successor's end.
func TestExtendBridgesToSuccessor(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	v := ecash.Amount{Currency: "EUR", Value: 2}
	k, err := GenerateKeys(KeyConfig{Currency: "EUR", Values: []ecash.Amount{v}, Cipher: ecash.CipherCS, Until: t0.Add(400 * day)}, t0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(30 * day)
	cur, err := k.KeySet().CurrentDenomination(v, now)
	if err != nil {
		t.Fatal(err)
	}
	next := k.nextLive(v, now)
	if next == nil {
		t.Fatal("no successor made ahead")
	}
	if err := k.Revoke(cur.ID, now); err != nil {
		t.Fatal(err)
	}
	if got := KeySetWithdrawableUntil(k.KeySet(), now); !got.IsZero() {
		t.Errorf("with the current key revoked and the successor %s away: withdrawable until %s, want zero", next.WithdrawStart.Sub(now), got.UTC())
	}
	added, err := k.Extend(Schedule{}, now.Add(400*day), now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d, err := k.KeySet().CurrentDenomination(v, now)
	if err != nil {
		t.Fatalf("after extending (%d keys added): %v", len(added), err)
	}
	if !d.WithdrawStart.Equal(now) || !d.WithdrawEnd.Equal(next.WithdrawStart.Add(k.Schedule.Overlap)) {
		t.Errorf("bridge withdrawable %s to %s, want now to the successor's start (%s) plus the overlap", d.WithdrawStart.UTC(), d.WithdrawEnd.UTC(), next.WithdrawStart.UTC())
	}
	if got := k.WithdrawableUntil(now); got.Before(next.WithdrawEnd) {
		t.Errorf("after the bridge: withdrawable until %s, want at least the successor's end %s", got.UTC(), next.WithdrawEnd.UTC())
	}
}
