package auditlog_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// TestCheckpointKeySetLine: the keyset line round-trips in its one
// canonical form, and every other form, an index at or past the size, or
// any other extension line is refused as malformed.
func TestCheckpointKeySetLine(t *testing.T) {
	cp := auditlog.Checkpoint{Origin: "example.org/log", Size: 12345, Root: tlog.RecordHash([]byte("x")),
		KeySet: auditlog.KeySetLine{Index: 12344, Hash: ecash.HashOf([]byte("ks"))}, HasKeySet: true}
	text := cp.Text()
	b64 := base64.StdEncoding.EncodeToString(cp.KeySet.Hash[:])
	if want := "example.org/log\n12345\n" + base64.StdEncoding.EncodeToString(cp.Root[:]) + "\nkeyset 12344 " + b64 + "\n"; string(text) != want {
		t.Fatalf("text %q, want %q", text, want)
	}
	got, err := auditlog.ParseCheckpoint(text)
	if err != nil || got != cp {
		t.Fatalf("parse: %+v, %v", got, err)
	}
	// Index 0 is a line too (the first key set), not its absence.
	zero := cp
	zero.KeySet.Index = 0
	if got, err := auditlog.ParseCheckpoint(zero.Text()); err != nil || got != zero || !got.HasKeySet {
		t.Fatalf("index 0: %+v, %v", got, err)
	}
	good := string(text)
	line := "keyset 12344 " + b64 + "\n"
	base := strings.TrimSuffix(good, line)
	for _, b := range []string{
		base + "keyset 12345 " + b64 + "\n", // not below the size
		base + "keyset 99999 " + b64 + "\n",
		base + "keyset 012344 " + b64 + "\n",
		base + "keyset +12344 " + b64 + "\n",
		base + "keyset -1 " + b64 + "\n",
		base + "keyset 12344  " + b64 + "\n",
		base + "keyset  12344 " + b64 + "\n",
		base + "keyset 12344 " + b64 + " \n",
		base + "keyset 12344 " + strings.TrimSuffix(b64, "=") + "\n",
		base + "keyset 12344 " + b64[:40] + "AA==\n", // 31 bytes
		base + "keyset 12344 " + b64 + b64 + "\n",
		base + "keyset 12344\n",
		base + "keyset\n",
		base + "Keyset 12344 " + b64 + "\n",
		base + "keyset\t12344 " + b64 + "\n",
		base + "keyset 12344 " + b64 + "\r\n",
		good + line, // twice
		good + "other extension\n",
		base + "other extension\n" + line,
		strings.TrimSuffix(good, "\n"),
		good + "\n",
		base + "\n",
		"example.org/log\n0\n" + strings.Split(good, "\n")[2] + "\nkeyset 0 " + b64 + "\n", // the empty log has no key set
	} {
		if got, err := auditlog.ParseCheckpoint([]byte(b)); !errors.Is(err, auditlog.ErrMalformedCheckpoint) || got != (auditlog.Checkpoint{}) {
			t.Errorf("%q: %+v, %v", b, got, err)
		}
	}
	// Nor is one signed.
	f := newFixture(t)
	s, err := auditlog.NewSigner(f.origin, f.signing)
	if err != nil {
		t.Fatal(err)
	}
	bad := cp
	bad.Origin, bad.KeySet.Index = f.origin, cp.Size
	if _, err := auditlog.SignCheckpoint(bad, s); !errors.Is(err, auditlog.ErrMalformedCheckpoint) {
		t.Errorf("signed a keyset line past the size: %v", err)
	}
	// A checkpoint without the line (signed before banks committed to
	// their key sets) is read, and refused only where one is required.
	legacy := cp
	legacy.KeySet, legacy.HasKeySet = auditlog.KeySetLine{}, false
	if got, err := auditlog.ParseCheckpoint(legacy.Text()); err != nil || got != legacy {
		t.Errorf("a checkpoint without the line: %+v, %v", got, err)
	}
	if err := auditlog.RequireKeySet(legacy); !errors.Is(err, auditlog.ErrMalformedCheckpoint) {
		t.Errorf("RequireKeySet of a non-empty log without the line: %v", err)
	}
	if err := auditlog.RequireKeySet(auditlog.Checkpoint{Origin: "o"}); err != nil {
		t.Errorf("RequireKeySet of the empty log: %v", err)
	}
}

// TestAuditorKeySetLine: the auditor checks a checkpoint's keyset line
// against its replay at every size (the newest key set entry below it),
// refuses a line naming an older key set, another hash or another entry,
// and accepts a checkpoint without one (signed before the line existed).
func TestAuditorKeySetLine(t *testing.T) {
	f := newFixture(t)
	m := f.memLog(t)
	entries := memEntries(t, m)
	a := auditlog.NewAuditor(f.ks.MasterPub)
	keySets := 0
	for i, b := range entries {
		if _, err := a.Apply(b); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		size := int64(i + 1)
		cp, err := a.Checkpoint(f.origin)
		if err != nil {
			t.Fatal(err)
		}
		want, ok, err := m.NewestKeySet(size)
		if err != nil || !ok || !cp.HasKeySet || cp.KeySet != want {
			t.Fatalf("size %d: the auditor's line %+v (%t), the log's %+v (%t, %v)", size, cp.KeySet, cp.HasKeySet, want, ok, err)
		}
		if err := a.Verify(cp); err != nil {
			t.Fatalf("size %d: the true line: %v", size, err)
		}
		legacy := cp
		legacy.KeySet, legacy.HasKeySet = auditlog.KeySetLine{}, false
		if err := a.Verify(legacy); err != nil {
			t.Fatalf("size %d: a checkpoint without the line: %v", size, err)
		}
		lies := []auditlog.KeySetLine{
			{Index: cp.KeySet.Index, Hash: ecash.HashOf([]byte("another key set"))},
		}
		if cp.KeySet.Index > 0 {
			lies = append(lies, auditlog.KeySetLine{Index: 0, Hash: want.Hash})
			if first, _, _ := m.NewestKeySet(1); first.Hash != want.Hash {
				keySets++
				lies = append(lies, first) // the older key set, as it was logged: the hiding bank's line
			}
		}
		if cp.KeySet.Index+1 < size {
			lies = append(lies, auditlog.KeySetLine{Index: size - 1, Hash: want.Hash})
		}
		for _, lie := range lies {
			bad := cp
			bad.KeySet = lie
			if err := a.Verify(bad); !errors.Is(err, auditlog.ErrKeySetLine) || !errors.Is(err, auditlog.ErrBadProof) {
				t.Errorf("size %d: a line naming %+v: %v", size, lie, err)
			}
		}
	}
	if keySets == 0 {
		t.Fatal("the fixture logs no second key set: the hiding bank's line was not tried")
	}
}

// TestWitnessTakesKeySetLine: a witness holding a checkpoint without the
// keyset line (saved before it existed) takes the same tree's checkpoint
// with one, and keeps a line once it holds one.
func TestWitnessTakesKeySetLine(t *testing.T) {
	f := newFixture(t)
	m := f.memLog(t)
	cp, signed := signedCheckpoint(t, f, m)
	s, err := auditlog.NewSigner(f.origin, f.signing)
	if err != nil {
		t.Fatal(err)
	}
	legacy := cp
	legacy.KeySet, legacy.HasKeySet = auditlog.KeySetLine{}, false
	oldSigned, err := auditlog.SignCheckpoint(legacy, s)
	if err != nil {
		t.Fatal(err)
	}
	w, err := auditlog.NewWitness(f.origin, f.verifier(t))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w.Accept(oldSigned, nil); err != nil || got.HasKeySet {
		t.Fatalf("%+v, %v", got, err)
	}
	if got, err := w.Accept(signed, nil); err != nil || got != cp {
		t.Fatalf("the same tree with the line: %+v, %v", got, err)
	}
	if got, err := w.Accept(oldSigned, nil); err != nil || got != cp {
		t.Fatalf("the line given up for a checkpoint without it: %+v, %v", got, err)
	}
}

// TestWitnessKeySetEquivocation: two signed checkpoints of one tree whose
// keyset lines differ are a *ForkError carrying both (the tree determines
// its newest key set: one line is false); the same line again, or a line
// where the one held had none, is accepted.
func TestWitnessKeySetEquivocation(t *testing.T) {
	f := newFixture(t)
	m := f.memLog(t)
	s, err := auditlog.NewSigner(f.origin, f.signing)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := m.Checkpoint(f.origin)
	if err != nil {
		t.Fatal(err)
	}
	if !cp.HasKeySet || cp.KeySet.Index == 0 {
		t.Fatalf("the fixture's checkpoint %+v: want a line past entry 0", cp)
	}
	sign := func(c auditlog.Checkpoint) []byte {
		t.Helper()
		b, err := auditlog.SignCheckpoint(c, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	legacy := cp
	legacy.KeySet, legacy.HasKeySet = auditlog.KeySetLine{}, false
	older := cp
	older.KeySet, _, _ = m.NewestKeySet(1)
	w, err := auditlog.NewWitness(f.origin, f.verifier(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []auditlog.Checkpoint{legacy, cp, cp, legacy} {
		want := cp
		if i == 0 {
			want = legacy
		}
		if got, err := w.Accept(sign(c), nil); err != nil || got != want {
			t.Fatalf("%+v: %+v, %v", c, got, err)
		}
	}
	lie := sign(older)
	_, err = w.Accept(lie, nil)
	var fork *auditlog.ForkError
	if !errors.As(err, &fork) || !errors.Is(err, auditlog.ErrForked) || !bytes.Equal(fork.Newer, lie) || !strings.Contains(err.Error(), "key set") {
		t.Fatalf("a checkpoint of the same tree naming another key set: %v, want a *ForkError carrying it", err)
	}
	if held, signed, _ := w.Latest(); held != cp || !bytes.Equal(fork.Older, signed) {
		t.Fatalf("the witness holds %+v after the equivocation, want %+v, and the fork its signed form", held, cp)
	}
}

// TestAuditorKeySetLineEarlierSizes: the auditor answers which key set is
// the newest below every size it applied, not only its own (a wallet's
// checkpoint of an earlier size is checked by it), before and after its
// state is saved and restored, and refuses a false line at any of them.
func TestAuditorKeySetLineEarlierSizes(t *testing.T) {
	f := newFixture(t)
	m := f.memLog(t)
	entries := memEntries(t, m)
	a := auditlog.NewAuditor(f.ks.MasterPub)
	check := func(a *auditlog.Auditor) {
		t.Helper()
		for size := int64(1); size <= a.Size(); size++ {
			want, _, err := m.NewestKeySet(size)
			if err != nil {
				t.Fatal(err)
			}
			if got, known := a.NewestKeySet(size); !known || got != want {
				t.Fatalf("size %d of %d: the newest key set %+v (%t), want %+v", size, a.Size(), got, known, want)
			}
			cp := auditlog.Checkpoint{Size: size, KeySet: want, HasKeySet: true}
			if checked, err := a.VerifyKeySetLine(cp); !checked || err != nil {
				t.Fatalf("size %d of %d: the true line: %t, %v", size, a.Size(), checked, err)
			}
			cp.KeySet.Hash = ecash.HashOf([]byte("another key set"))
			if _, err := a.VerifyKeySetLine(cp); !errors.Is(err, auditlog.ErrKeySetLine) {
				t.Fatalf("size %d of %d: a false line: %v", size, a.Size(), err)
			}
		}
		if _, known := a.NewestKeySet(a.Size() + 1); known {
			t.Fatal("a size past the replay is answered")
		}
	}
	for i, b := range entries {
		if _, err := a.Apply(b); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if i == len(entries)/2 {
			saved, err := a.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			a = auditlog.NewAuditor(f.ks.MasterPub)
			if err := a.UnmarshalBinary(saved); err != nil {
				t.Fatal(err)
			}
		}
	}
	check(a)
}
