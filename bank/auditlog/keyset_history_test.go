package auditlog_test

import (
	"bytes"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// keySetLog logs the signed key sets, one a minute, and replays the log.
func keySetLog(t *testing.T, at time.Time, signed ...[]byte) *auditlog.AuditReport {
	t.Helper()
	m := auditlog.NewMemLog()
	for i, s := range signed {
		if _, err := m.Append(auditlog.KeySet{Signed: s}, at.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := replay(t, nil, memEntries(t, m))
	if err != nil {
		t.Fatal(err)
	}
	return a.Report()
}

func warned(r *auditlog.AuditReport, index int64, words ...string) bool {
	for _, w := range r.Warnings {
		if w.Index != index {
			continue
		}
		s := w.String()
		if !slices.ContainsFunc(words, func(x string) bool { return !strings.Contains(s, x) }) {
			return true
		}
	}
	return false
}

// TestAuditKeySetDropsLiveKeys: per-user key sets, all logged. The bank
// logs KA (this year's keys), then KB (KA and next year's successors),
// then KA2: KA issued later, without the successors, whose coins are
// accepted for years yet. Serving KB to some wallets and KA2 to others,
// it tells their coins apart during the overlap; each wallet finds its own
// key set in the log. An honest bank drops a key only at its deposit end
// (Keys.Prune), so the replay warns of KA2. The same log with KA logged
// again as it was (a replica restarted on an old key file) also draws a
// warning: its issue time is not after KB's.
func TestAuditKeySetDropsLiveKeys(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{eur(1), eur(2)}, Cipher: ecash.CipherCS}, t0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ka := k.KeySet().Encode()
	kb := *k
	kb.Denoms = slices.Clone(k.Denoms)
	added, err := kb.Extend(bank.Schedule{}, t0.AddDate(1, 6, 0), t0.Add(24*time.Hour), rand.Reader)
	if err != nil || len(added) == 0 {
		t.Fatalf("extend: %d keys, %v", len(added), err)
	}
	ka2 := *k
	ka2.IssuedAt = t0.Add(48 * time.Hour)

	r := keySetLog(t, t0, ka, kb.KeySet().Encode(), ka2.KeySet().Encode())
	if r.WarningsTotal != 1 || !warned(r, 2, "drops 2 denominations", "still accepted") {
		t.Errorf("a key set dropping %d keys still accepted: warnings %v, want one, at entry 2", len(added), r.Warnings)
	}
	r = keySetLog(t, t0, ka, kb.KeySet().Encode(), ka)
	if r.WarningsTotal != 2 || !warned(r, 2, "drops 2 denominations") || !warned(r, 2, "issued "+t0.UTC().Format(time.RFC3339), "not after") {
		t.Errorf("an older key set logged again: warnings %v, want two, at entry 2", r.Warnings)
	}
}

// TestAuditKeySetChangesWindows: a denomination's id covers its value and
// key, not its windows, so two logged key sets can list one key with
// different windows or fees. The bank lists next year's key n to everyone
// as starting on schedule and, in a key set made for one wallet, two
// months earlier (still a successor, so warnParallelKeys is quiet): both
// are logged, and that wallet alone withdraws under n for two months. An
// honest bank never changes a listed key's windows or fees, nor lists a
// revoked key as valid again: each is warned of.
func TestAuditKeySetChangesWindows(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{eur(100)}, Cipher: ecash.CipherCS, Until: t0.AddDate(1, 2, 0)}, t0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Denoms) < 2 {
		t.Fatalf("%d keys", len(k.Denoms))
	}
	everyone := k.KeySet().Encode()
	variant := func(issued time.Duration, change func(d *bank.DenomKey)) []byte {
		v := *k
		v.Denoms = slices.Clone(k.Denoms)
		change(&v.Denoms[1])
		v.IssuedAt = t0.Add(issued)
		return v.KeySet().Encode()
	}
	again := *k
	again.IssuedAt = t0.Add(time.Hour)
	for name, change := range map[string]func(d *bank.DenomKey){
		"withdraw start": func(d *bank.DenomKey) { d.WithdrawStart = d.WithdrawStart.AddDate(0, -2, 0) },
		"withdraw end":   func(d *bank.DenomKey) { d.WithdrawEnd = d.WithdrawEnd.Add(time.Hour) },
		"deposit end":    func(d *bank.DenomKey) { d.DepositEnd = d.DepositEnd.Add(-time.Hour) },
		"fees":           func(d *bank.DenomKey) { d.Fees.Swap = eur(1) },
	} {
		r := keySetLog(t, t0, everyone, variant(time.Minute, change), again.KeySet().Encode())
		if r.WarningsTotal == 0 || !warned(r, 1, k.Denoms[1].ID.String()[:16], "other") {
			t.Errorf("a key listed with another %s: warnings %v", name, r.Warnings)
		}
	}
	revoked := variant(time.Minute, func(d *bank.DenomKey) { d.Revoked = true })
	r := keySetLog(t, t0, everyone, revoked, again.KeySet().Encode())
	if r.WarningsTotal != 1 || !warned(r, 2, k.Denoms[1].ID.String()[:16], "revoked", "as valid") {
		t.Errorf("a revoked key listed as valid again: warnings %v", r.Warnings)
	}
}

// TestAuditKeySetHistoryQuiet: what an honest bank does to its key set
// (extend, revoke, rotate the signing key, prune keys at their deposit
// end), each logged as it happens, draws no warning; and the check of the
// next key set's issue time survives saving and resuming the audit.
func TestAuditKeySetHistoryQuiet(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{eur(1), eur(2)}, Cipher: ecash.CipherCS,
		WithdrawPeriod: 10 * 24 * time.Hour, DepositPeriod: 30 * 24 * time.Hour, Until: t0.Add(15 * 24 * time.Hour)}, t0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	logged := [][]byte{k.KeySet().Encode()}
	for _, step := range []struct {
		at     time.Duration
		change func(now time.Time) error
	}{
		{time.Hour, func(now time.Time) error {
			_, err := k.Extend(bank.Schedule{}, now.Add(40*24*time.Hour), now, rand.Reader)
			return err
		}},
		{2 * time.Hour, func(now time.Time) error { return k.Revoke(k.Denoms[1].ID, now) }},
		{3 * time.Hour, func(now time.Time) error { _, err := k.RotateSigning(now, time.Hour, rand.Reader); return err }},
		{31 * 24 * time.Hour, func(now time.Time) error {
			if d, _ := k.Prune(now, time.Time{}); len(d) == 0 {
				t.Fatal("nothing pruned")
			}
			return nil
		}},
	} {
		if err := step.change(t0.Add(step.at)); err != nil {
			t.Fatal(err)
		}
		logged = append(logged, k.KeySet().Encode())
	}
	if r := keySetLog(t, t0, logged...); r.WarningsTotal != 0 {
		t.Fatalf("warnings %v", r.Warnings)
	}

	// Saved after the last key set and resumed, the audit still knows its
	// issue time: the same key set logged again is warned of.
	m := auditlog.NewMemLog()
	for i, s := range append(logged, logged[len(logged)-2]) {
		if _, err := m.Append(auditlog.KeySet{Signed: s}, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	es := memEntries(t, m)
	a, err := replay(t, nil, es[:len(es)-1])
	if err != nil {
		t.Fatal(err)
	}
	saved, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b := auditlog.NewAuditor(nil)
	if err := b.UnmarshalBinary(saved); err != nil {
		t.Fatal(err)
	}
	if again, _ := b.MarshalBinary(); !bytes.Equal(again, saved) {
		t.Fatal("the restored auditor saves other bytes")
	}
	if _, err := b.Apply(es[len(es)-1]); err != nil {
		t.Fatal(err)
	}
	if r := b.Report(); r.WarningsTotal == 0 || !warned(r, int64(len(es)-1), "not after") {
		t.Errorf("after resuming, an older key set logged again: warnings %v", r.Warnings)
	}
}
