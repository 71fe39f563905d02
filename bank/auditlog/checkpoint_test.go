package auditlog_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/bank/auditlog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestCheckpointText(t *testing.T) {
	cp := auditlog.Checkpoint{Origin: "example.org/log", Size: 12345, Root: tlog.RecordHash([]byte("x"))}
	text := cp.Text()
	// The body is tlog.FormatTree's, with the origin as the first line.
	tree := tlog.FormatTree(tlog.Tree{N: cp.Size, Hash: cp.Root})
	if want := append([]byte(cp.Origin), tree[len("go.sum database tree"):]...); !bytes.Equal(text, want) {
		t.Errorf("text %q, want %q", text, want)
	}
	got, err := auditlog.ParseCheckpoint(text)
	if err != nil || got != cp {
		t.Errorf("parse: %+v, %v", got, err)
	}
	good := string(text)
	bad := []string{
		"",
		"example.org/log\n12345\n",
		strings.TrimSuffix(good, "\n"),
		good + "extension line\n",
		good + "\n",
		strings.Replace(good, "12345", "012345", 1),
		strings.Replace(good, "12345", "+12345", 1),
		strings.Replace(good, "12345", "-1", 1),
		strings.Replace(good, "12345", "99999999999999999999", 1),
		strings.Replace(good, "=\n", "\n", 1),
		strings.Replace(good, "example.org/log", "example.org log", 1),
		strings.Replace(good, "example.org/log", "example.org+log", 1),
		strings.Replace(good, "example.org/log", "exämple.org/log", 1),
		strings.Replace(good, "example.org/log", strings.Repeat("o", 256), 1),
		"\n12345\n" + strings.SplitN(good, "\n", 3)[2],
		strings.ReplaceAll(good, "\n", "\r\n"),
	}
	for _, b := range bad {
		if got, err := auditlog.ParseCheckpoint([]byte(b)); !errors.Is(err, auditlog.ErrMalformedCheckpoint) || got != (auditlog.Checkpoint{}) {
			t.Errorf("%q: %+v, %v", b, got, err)
		}
	}
}

func TestSignedCheckpoints(t *testing.T) {
	f := newFixture(t)
	m := f.memLog(t)
	cp, signed := signedCheckpoint(t, f, m)
	v := f.verifier(t)
	got, err := auditlog.OpenCheckpoint(signed, f.origin, v)
	if err != nil || got != cp {
		t.Fatalf("open: %+v, %v", got, err)
	}
	// The note's key name is the origin; its key hash is the standard
	// C2SP one, so the stock verifier from the encoded key agrees.
	vkey, err := auditlog.VerifierKey(f.origin, f.signing.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	stock, err := note.NewVerifier(vkey)
	if err != nil || stock.KeyHash() != v.KeyHash() || stock.Name() != f.origin {
		t.Fatalf("stock verifier: %v", err)
	}
	if n, err := note.Open(signed, note.VerifierList(stock)); err != nil || n.Text != string(cp.Text()) {
		t.Fatalf("note.Open: %v", err)
	}
	if !strings.HasPrefix(vkey, f.origin+"+") {
		t.Errorf("verifier key %q", vkey)
	}

	// A cosigner's signature (unknown to us) is ignored.
	cosigner, err := auditlog.NewSigner("witness.example", seedKey(0x77))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := note.Open(signed, note.VerifierList(v))
	cosigned, err := note.Sign(n, cosigner)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := auditlog.OpenCheckpoint(cosigned, f.origin, v); err != nil || got != cp {
		t.Errorf("cosigned: %v", err)
	}
	// Only the cosigner's signature: not the bank's.
	only, _ := note.Sign(&note.Note{Text: string(cp.Text())}, cosigner)
	if _, err := auditlog.OpenCheckpoint(only, f.origin, v); !errors.Is(err, auditlog.ErrCheckpointSignature) {
		t.Errorf("cosigner only: %v", err)
	}
	// Another log's checkpoint, even signed by the same key.
	other := cp
	other.Origin = "example.org/other"
	s, _ := auditlog.NewSigner(f.origin, f.signing)
	otherSigned, err := auditlog.SignCheckpoint(other, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auditlog.OpenCheckpoint(otherSigned, f.origin, v); !errors.Is(err, auditlog.ErrWrongOrigin) {
		t.Errorf("other origin: %v", err)
	}
	// Signature bytes changed.
	i := bytes.LastIndexByte(signed[:len(signed)-1], ' ')
	flipped := bytes.Clone(signed)
	flipped[i+10] ^= 1
	if _, err := auditlog.OpenCheckpoint(flipped, f.origin, v); err == nil {
		t.Error("flipped signature accepted")
	}
	// Garbage and oversize.
	for _, b := range [][]byte{nil, []byte("hello"), cp.Text(), append(bytes.Clone(signed), make([]byte, auditlog.MaxCheckpointSize)...)} {
		if _, err := auditlog.OpenCheckpoint(b, f.origin, v); !errors.Is(err, auditlog.ErrMalformedCheckpoint) && !errors.Is(err, auditlog.ErrCheckpointSignature) {
			t.Errorf("%.20q: %v", b, err)
		}
	}
	if _, err := auditlog.OpenCheckpoint(signed, f.origin, nil); err == nil {
		t.Error("opened without a verifier")
	}
}

func TestKeys(t *testing.T) {
	f := newFixture(t)
	if _, err := auditlog.NewSigner("bad name", f.signing); err == nil {
		t.Error("signer name with a space")
	}
	if _, err := auditlog.NewSigner(f.origin, f.signing[:10]); err == nil {
		t.Error("short private key")
	}
	identity := make([]byte, 32)
	identity[0] = 1
	if _, err := auditlog.NewVerifier(f.origin, identity); err == nil {
		t.Error("verifier for the identity point")
	}
	// The checkpoint signature is plain Ed25519 over the note text, made
	// with the bank's signing key: a note text starts with a printable
	// byte, every canonical ecash encoding with a zero byte.
	cp := auditlog.Checkpoint{Origin: f.origin, Size: 1}
	s, _ := auditlog.NewSigner(f.origin, f.signing)
	signed, _ := auditlog.SignCheckpoint(cp, s)
	if signed[0] == 0 || !bytes.HasPrefix(signed, []byte("blindbank/v1/auditlog/")) {
		t.Errorf("note starts %q", signed[:8])
	}
}
