package auditlog_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Fuzz targets for every decoder. Properties: no panic; a successful decode
// re-encodes to exactly the input; a failed decode returns nothing and an
// error wrapping the package's sentinels. Run one with:
//
//	go test -run='^$' -fuzz=FuzzDecodeEntry -fuzztime=30s ./bank/auditlog/

// seedEntries adds every encoding in testdata/auditlog/entries.json.
func seedEntries(f *testing.F) {
	raw, err := os.ReadFile(entriesPath)
	if err != nil {
		f.Fatal(err)
	}
	var file entriesFile
	if err := json.Unmarshal(raw, &file); err != nil {
		f.Fatal(err)
	}
	for _, v := range file.Entries {
		b, _ := hex.DecodeString(v.Encoding)
		f.Add(b)
	}
	for _, v := range file.Negative {
		b, _ := hex.DecodeString(v.Encoding)
		f.Add(b)
	}
}

func FuzzDecodeEntry(f *testing.F) {
	seedEntries(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := auditlog.DecodeEntry(b)
		if err != nil {
			if e != nil {
				t.Fatal("partial entry returned with an error")
			}
			if !errors.Is(err, ecash.ErrMalformed) {
				t.Fatalf("error %v does not wrap ecash.ErrMalformed", err)
			}
			return
		}
		again, err := e.Encode()
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("non-canonical: %x re-encodes to %x", b, again)
		}
		if k, err := auditlog.PeekKind(b); err != nil || k != e.Kind() {
			t.Fatalf("PeekKind %v %v, entry kind %v", k, err, e.Kind())
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	fx := newFixture(f)
	m := fx.memLog(f)
	cp, _ := m.Checkpoint(fx.origin)
	f.Add(cp.Text())
	f.Add([]byte("example.org/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add([]byte("go.sum database tree\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nextension\n"))
	// The keyset line: well formed, past the size, non-canonical, twice.
	f.Add([]byte("example.org/log\n2\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nkeyset 1 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add([]byte("example.org/log\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nkeyset 1 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add([]byte("example.org/log\n9\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nkeyset 01 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n"))
	f.Add([]byte("example.org/log\n9\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nkeyset 1 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nkeyset 2 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := auditlog.ParseCheckpoint(b)
		if err != nil {
			if cp != (auditlog.Checkpoint{}) || !errors.Is(err, auditlog.ErrMalformedCheckpoint) {
				t.Fatalf("%+v, %v", cp, err)
			}
			return
		}
		if !bytes.Equal(cp.Text(), b) {
			t.Fatalf("non-canonical: %q re-formats to %q", b, cp.Text())
		}
		if cp.HasKeySet && (cp.KeySet.Index < 0 || cp.KeySet.Index >= cp.Size) {
			t.Fatalf("keyset entry %d in a checkpoint of %d", cp.KeySet.Index, cp.Size)
		}
	})
}

func FuzzOpenCheckpoint(f *testing.F) {
	fx := newFixture(f)
	m := fx.memLog(f)
	_, signed := signedCheckpoint(f, fx, m)
	f.Add(signed)
	cosigner, _ := auditlog.NewSigner("witness.example", seedKey(0x77))
	n, _ := note.Open(signed, note.VerifierList(fx.verifier(f)))
	cosigned, _ := note.Sign(n, cosigner)
	f.Add(cosigned)
	f.Add([]byte("x\n\n— x AAAAAAA=\n"))
	v := fx.verifier(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := auditlog.OpenCheckpoint(b, fx.origin, v)
		if err != nil {
			if cp != (auditlog.Checkpoint{}) {
				t.Fatal("partial checkpoint returned with an error")
			}
			if !errors.Is(err, auditlog.ErrMalformedCheckpoint) && !errors.Is(err, auditlog.ErrCheckpointSignature) && !errors.Is(err, auditlog.ErrWrongOrigin) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		// Whatever opened is signed by the bank over exactly cp.Text().
		n, err := note.Open(b, note.VerifierList(v))
		if err != nil || n.Text != string(cp.Text()) {
			t.Fatalf("opened a note whose text is not the checkpoint: %v", err)
		}
	})
}

func FuzzWitnessUnmarshal(f *testing.F) {
	fx := newFixture(f)
	m := fx.memLog(f)
	_, signed := signedCheckpoint(f, fx, m)
	v := fx.verifier(f)
	w, _ := auditlog.NewWitness(fx.origin, v)
	empty, _ := w.MarshalBinary()
	f.Add(empty)
	_, _ = w.Accept(signed, nil)
	full, _ := w.MarshalBinary()
	f.Add(full)
	f.Fuzz(func(t *testing.T, b []byte) {
		w, _ := auditlog.NewWitness(fx.origin, v)
		if err := w.UnmarshalBinary(b); err != nil {
			if _, _, ok := w.Latest(); ok {
				t.Fatal("failed restore left a checkpoint")
			}
			return
		}
		again, _ := w.MarshalBinary()
		if !bytes.Equal(again, b) {
			t.Fatalf("non-canonical saved witness")
		}
	})
}

// FuzzAuditorUnmarshal restores hostile bytes as a saved auditor (what
// "audit log --state FILE" reads back): no panic; a refusal leaves the
// auditor as it was and wraps ecash.ErrMalformed, ErrInvariant or
// ErrAuditorStateVersion; a state that restores saves again to exactly its
// bytes (a state of an earlier version, to one that restores to itself);
// and the restored auditor goes on auditing the fixture's log from its size
// (Apply, Verify, Report, Checkpoint) without panicking, however odd the
// ledger it was handed. Seeded with the states saved after every entry.
func FuzzAuditorUnmarshal(f *testing.F) {
	fx := newFixture(f)
	m := fx.memLog(f)
	var entries [][]byte
	for i := range m.Size() {
		b, err := m.Entry(i)
		if err != nil {
			f.Fatal(err)
		}
		entries = append(entries, b)
	}
	cp, err := m.Checkpoint(fx.origin)
	if err != nil {
		f.Fatal(err)
	}
	a := auditlog.NewAuditor(fx.ks.MasterPub)
	for i := 0; ; i++ {
		saved, err := a.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(saved)
		if i == len(entries) {
			break
		}
		if _, err := a.Apply(entries[i]); err != nil {
			f.Fatal(err)
		}
	}
	fresh, _ := auditlog.NewAuditor(fx.ks.MasterPub).MarshalBinary()
	current := ecash.NewEncoder("auditlog/auditor/v5").Bytes()
	if !bytes.HasPrefix(fresh, current) { // else the check of canonical states below could never fail
		f.Fatalf("the auditor saves under another tag than %q: update current", current)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a := auditlog.NewAuditor(fx.ks.MasterPub)
		if err := a.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ecash.ErrMalformed) && !errors.Is(err, auditlog.ErrInvariant) && !errors.Is(err, auditlog.ErrAuditorStateVersion) {
				t.Fatalf("error %v", err)
			}
			if got, _ := a.MarshalBinary(); !bytes.Equal(got, fresh) {
				t.Fatal("a refused state changed the auditor")
			}
			return
		}
		again, err := a.MarshalBinary()
		if err != nil {
			t.Fatalf("a restored state does not save: %v", err)
		}
		if bytes.HasPrefix(b, current) && !bytes.Equal(again, b) {
			t.Fatalf("non-canonical saved state:\n  in %x\n out %x", b, again)
		}
		b2 := auditlog.NewAuditor(fx.ks.MasterPub)
		if err := b2.UnmarshalBinary(again); err != nil {
			t.Fatalf("the state saved again does not restore: %v", err)
		}
		if third, _ := b2.MarshalBinary(); !bytes.Equal(third, again) {
			t.Fatal("the state saved again restores to another")
		}
		_ = a.Report()
		_, _ = a.Checkpoint(fx.origin)
		_ = a.Verify(cp)
		for i := a.Size(); i >= 0 && i < int64(len(entries)); i++ {
			if _, err := a.Apply(entries[i]); err != nil {
				break
			}
		}
		_ = a.Report()
		_ = a.Verify(cp)
	})
}

// FuzzSavedCheckpoint: SavedCheckpoint, which reads a saved witness
// without verifying it (the checkpoint a wallet or merchant hands an
// auditor), never panics and accepts everything UnmarshalBinary, the
// verifying reader, accepts, returning the very checkpoint it restored.
func FuzzSavedCheckpoint(f *testing.F) {
	fx := newFixture(f)
	m := fx.memLog(f)
	_, signed := signedCheckpoint(f, fx, m)
	v := fx.verifier(f)
	w, _ := auditlog.NewWitness(fx.origin, v)
	empty, _ := w.MarshalBinary()
	f.Add(empty)
	if _, err := w.Accept(signed, nil); err != nil {
		f.Fatal(err)
	}
	full, _ := w.MarshalBinary()
	f.Add(full)
	f.Add(full[:len(full)-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		got, lerr := auditlog.SavedCheckpoint(b)
		if lerr != nil && got != nil {
			t.Fatal("a checkpoint returned with an error")
		}
		w, _ := auditlog.NewWitness(fx.origin, v)
		if err := w.UnmarshalBinary(b); err != nil {
			return
		}
		if lerr != nil {
			t.Fatalf("the witness restored, SavedCheckpoint refused it: %v", lerr)
		}
		_, want, ok := w.Latest()
		if ok != (got != nil) || !bytes.Equal(got, want) {
			t.Fatalf("SavedCheckpoint %q, the witness holds %q", got, want)
		}
	})
}

// proofOf cuts b into hashes, dropping a partial last one.
func proofOf(b []byte) []tlog.Hash {
	out := make([]tlog.Hash, len(b)/32)
	for i := range out {
		copy(out[i][:], b[i*32:])
	}
	return out
}

// FuzzVerifyInclusion: an entry and an inclusion proof from the bank (what
// a client's GetLogEntries and GetInclusionProof hand it) verify only if
// the entry is the one the log holds at that index, whatever the proof;
// and never panic.
func FuzzVerifyInclusion(f *testing.F) {
	fx := newFixture(f)
	m := fx.memLog(f)
	cp, err := m.Checkpoint(fx.origin)
	if err != nil {
		f.Fatal(err)
	}
	var entries [][]byte
	for i := range m.Size() {
		b, _ := m.Entry(i)
		entries = append(entries, b)
		p, err := auditlog.ProveInclusion(i, m.Size(), m)
		if err != nil {
			f.Fatal(err)
		}
		var pb []byte
		for _, h := range p {
			pb = append(pb, h[:]...)
		}
		f.Add(i, b, pb)
		if len(pb) >= 32 {
			f.Add(i, b, pb[32:])
		}
	}
	f.Fuzz(func(t *testing.T, index int64, entry, proof []byte) {
		e, err := auditlog.VerifyInclusion(cp, index, entry, proofOf(proof))
		if err != nil {
			if e != nil {
				t.Fatal("an entry returned with an error")
			}
			return
		}
		if index < 0 || index >= int64(len(entries)) || !bytes.Equal(entry, entries[index]) || e.Index != index {
			t.Fatalf("entry %d verified as %x", index, entry)
		}
	})
}

// FuzzVerifyConsistency: a consistency proof from the bank verifies only
// between the trees the log really had at the two sizes (the older root is
// the one the log had at its size), whatever the proof; and never panics.
func FuzzVerifyConsistency(f *testing.F) {
	fx := newFixture(f)
	m := fx.memLog(f)
	newer, err := m.Checkpoint(fx.origin)
	if err != nil {
		f.Fatal(err)
	}
	roots := make([]tlog.Hash, newer.Size+1)
	for s := range roots {
		if roots[s], err = auditlog.TreeHash(int64(s), m); err != nil {
			f.Fatal(err)
		}
	}
	for s := int64(0); s <= newer.Size; s++ {
		p, err := auditlog.ProveConsistency(s, newer.Size, m)
		if err != nil {
			f.Fatal(err)
		}
		var pb []byte
		for _, h := range p {
			pb = append(pb, h[:]...)
		}
		f.Add(s, roots[s][:], pb)
	}
	f.Fuzz(func(t *testing.T, size int64, root, proof []byte) {
		older := auditlog.Checkpoint{Origin: newer.Origin, Size: size}
		copy(older.Root[:], root)
		if err := auditlog.VerifyConsistency(older, newer, proofOf(proof)); err != nil {
			if !errors.Is(err, auditlog.ErrBadProof) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if size < 0 || size > newer.Size || older.Root != roots[size] {
			t.Fatalf("a tree of %d with root %x accepted", size, older.Root)
		}
	})
}
