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
