package auditlog

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/blindbank/blindbank/ecash"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint errors.
var (
	// ErrMalformedCheckpoint: not a blindbank checkpoint (C2SP
	// tlog-checkpoint body or signed note).
	ErrMalformedCheckpoint = errors.New("auditlog: malformed checkpoint")
	// ErrCheckpointSignature: the checkpoint does not carry a valid
	// signature by the bank's key.
	ErrCheckpointSignature = errors.New("auditlog: checkpoint not signed by the bank's log key")
	// ErrWrongOrigin: a checkpoint of another log.
	ErrWrongOrigin = errors.New("auditlog: checkpoint of another log")
)

// Bounds.
const (
	// MaxOriginLen bounds a log's origin line.
	MaxOriginLen = 255
	// MaxCheckpointSize bounds a signed checkpoint: its body and up to a
	// few dozen signature lines (the bank's and any cosigners').
	MaxCheckpointSize = 8192
	// maxBodySize bounds a checkpoint body: the origin, a size and a root,
	// and a keyset line ("keyset ", a 19-digit index, a space, 44 base64
	// characters).
	maxBodySize = MaxOriginLen + 80 + 72
)

// keySetLinePrefix starts a checkpoint's keyset line.
const keySetLinePrefix = "keyset "

// Checkpoint describes the log at one size: the body of a C2SP
// tlog-checkpoint. The bank signs its Text as a note.
type Checkpoint struct {
	Origin string    // the log's name (see Origin)
	Size   int64     // number of entries
	Root   tlog.Hash // RFC 6962 root hash of those entries

	// KeySet is the newest key set entry of those Size entries, if
	// HasKeySet: the bank commits to it so that a wallet served an older
	// key set learns a newer one exists. Checkpoints signed before banks
	// committed to it have none (HasKeySet false): they still prove
	// consistency and inclusion, but say nothing of key sets, and a
	// verifier takes a non-empty log's fresh checkpoint without one for a
	// bank hiding its key sets (docs/AUDITLOG.md).
	KeySet    KeySetLine
	HasKeySet bool
}

// KeySetLine is a checkpoint's claim about its key sets: entry Index is a
// KeySet entry whose signed key set has SHA-256 Hash (the key set's log
// reference, as FindEntry takes it), and no KeySet entry of the tree has a
// larger index. Index is below the checkpoint's size.
type KeySetLine struct {
	Index int64
	Hash  ecash.Hash
}

// Origin is the origin line, and the note key name, of the log of the bank
// whose id (SHA-256 of the master public key, ecash.KeySet.BankID) is
// bankID: "blindbank/v1/auditlog/" followed by the id in lower-case hex.
func Origin(bankID ecash.Hash) string {
	return ecash.TagPrefix + "auditlog/" + hex.EncodeToString(bankID[:])
}

// checkOrigin accepts 1 to MaxOriginLen bytes of printable ASCII other than
// '+' and space: a valid origin line and a valid note key name.
func checkOrigin(o string) error {
	if len(o) == 0 || len(o) > MaxOriginLen {
		return fmt.Errorf("%w: origin of %d bytes (want 1 to %d)", ErrMalformedCheckpoint, len(o), MaxOriginLen)
	}
	for i := 0; i < len(o); i++ {
		if c := o[i]; c <= ' ' || c > '~' || c == '+' {
			return fmt.Errorf("%w: origin byte %#x (want printable ASCII, no space or '+')", ErrMalformedCheckpoint, c)
		}
	}
	return nil
}

// Text is the checkpoint body, each line ending in a newline:
//
//	<origin>
//	<size in decimal>
//	<root hash in standard base64>
//	keyset <index in decimal> <key set hash in standard base64>
//
// This is a C2SP tlog-checkpoint body with one extension line, the keyset
// line, present if HasKeySet. (Without it, it is tlog.FormatTree's format
// with the origin in place of tlog's fixed first line "go.sum database
// tree".)
func (c Checkpoint) Text() []byte {
	b := make([]byte, 0, len(c.Origin)+64)
	b = append(b, c.Origin...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, c.Size, 10)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, c.Root[:])
	b = append(b, '\n')
	if c.HasKeySet {
		b = append(b, keySetLinePrefix...)
		b = strconv.AppendInt(b, c.KeySet.Index, 10)
		b = append(b, ' ')
		b = base64.StdEncoding.AppendEncode(b, c.KeySet.Hash[:])
		b = append(b, '\n')
	}
	return b
}

// ParseCheckpoint parses a checkpoint body. It accepts only what Text
// produces: a valid origin, a size in decimal without sign or leading zeros,
// a 32-byte root in padded standard base64, and at most one extension
// line, a keyset line naming an index below the size and a 32-byte hash,
// in the same forms.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	if len(text) > maxBodySize {
		return Checkpoint{}, fmt.Errorf("%w: body of %d bytes", ErrMalformedCheckpoint, len(text))
	}
	lines := bytes.Split(text, []byte("\n"))
	if (len(lines) != 4 && len(lines) != 5) || len(lines[len(lines)-1]) != 0 {
		return Checkpoint{}, fmt.Errorf("%w: want three lines and at most a keyset line, each ending in a newline", ErrMalformedCheckpoint)
	}
	c := Checkpoint{Origin: string(lines[0])}
	if err := checkOrigin(c.Origin); err != nil {
		return Checkpoint{}, err
	}
	n, ok := parseDecimal(lines[1])
	if !ok {
		return Checkpoint{}, fmt.Errorf("%w: size %q", ErrMalformedCheckpoint, lines[1])
	}
	c.Size = n
	if !parseHash(c.Root[:], lines[2]) {
		return Checkpoint{}, fmt.Errorf("%w: root hash %q", ErrMalformedCheckpoint, lines[2])
	}
	if len(lines) == 5 {
		ks, err := parseKeySetLine(lines[3], c.Size)
		if err != nil {
			return Checkpoint{}, err
		}
		c.KeySet, c.HasKeySet = ks, true
	}
	return c, nil
}

// parseKeySetLine parses "keyset <index> <hash>" of a checkpoint of size
// entries: the index below size.
func parseKeySetLine(line []byte, size int64) (KeySetLine, error) {
	rest, ok := bytes.CutPrefix(line, []byte(keySetLinePrefix))
	index, hash, two := bytes.Cut(rest, []byte(" "))
	if !ok || !two {
		return KeySetLine{}, fmt.Errorf("%w: extension line %q (want only %q<index> <hash>)", ErrMalformedCheckpoint, line, keySetLinePrefix)
	}
	var ks KeySetLine
	var valid bool
	if ks.Index, valid = parseDecimal(index); !valid || ks.Index >= size {
		return KeySetLine{}, fmt.Errorf("%w: keyset index %q in a checkpoint of %d entries", ErrMalformedCheckpoint, index, size)
	}
	if !parseHash(ks.Hash[:], hash) {
		return KeySetLine{}, fmt.Errorf("%w: keyset hash %q", ErrMalformedCheckpoint, hash)
	}
	return ks, nil
}

// parseDecimal parses a non-negative int64 in decimal without sign or
// leading zeros.
func parseDecimal(b []byte) (int64, bool) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil && n >= 0 && strconv.FormatInt(n, 10) == string(b)
}

// parseHash decodes a 32-byte hash in padded standard base64 into out.
func parseHash(out []byte, b []byte) bool {
	h, err := base64.StdEncoding.Strict().DecodeString(string(b))
	if err != nil || len(h) != len(out) || base64.StdEncoding.EncodeToString(h) != string(b) {
		return false
	}
	copy(out, h)
	return true
}

// SignCheckpoint signs c as a C2SP signed note. The bank's signer (NewSigner)
// is named after the origin.
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	if err := checkOrigin(c.Origin); err != nil {
		return nil, err
	}
	if c.Size < 0 {
		return nil, fmt.Errorf("%w: negative size", ErrMalformedCheckpoint)
	}
	if c.HasKeySet && (c.KeySet.Index < 0 || c.KeySet.Index >= c.Size) {
		return nil, fmt.Errorf("%w: keyset entry %d of %d", ErrMalformedCheckpoint, c.KeySet.Index, c.Size)
	}
	return note.Sign(&note.Note{Text: string(c.Text())}, s)
}

// OpenCheckpoint parses a signed checkpoint, checks that v (the bank's log
// key, NewVerifier) signed it and that it is a checkpoint of the log named
// origin. Signatures by other keys (cosigners) are allowed and ignored.
func OpenCheckpoint(signed []byte, origin string, v note.Verifier) (Checkpoint, error) {
	list, err := verifierList([]note.Verifier{v})
	if err != nil {
		return Checkpoint{}, err
	}
	return openCheckpoint(signed, origin, list)
}

// verifierList is the note.Verifiers of vs: at least one, none nil.
func verifierList(vs []note.Verifier) (note.Verifiers, error) {
	if len(vs) == 0 || slices.Contains(vs, nil) {
		return nil, fmt.Errorf("%w: no verifier", ErrCheckpointSignature)
	}
	return note.VerifierList(vs...), nil
}

// openCheckpoint is OpenCheckpoint with a signature by any of vs.
func openCheckpoint(signed []byte, origin string, vs note.Verifiers) (Checkpoint, error) {
	if len(signed) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes exceed %d", ErrMalformedCheckpoint, len(signed), MaxCheckpointSize)
	}
	n, err := note.Open(signed, vs)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalidSig *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified), errors.As(err, &invalidSig):
			return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpointSignature, err)
		}
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrMalformedCheckpoint, err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != origin {
		return Checkpoint{}, fmt.Errorf("%w: origin %q, want %q", ErrWrongOrigin, c.Origin, origin)
	}
	return c, nil
}

// VerifierKey is the standard encoded note verifier key
// ("<name>+<key hash>+<base64 key>") for the Ed25519 public key pub: what an
// operator publishes beside the key set.
func VerifierKey(name string, pub ed25519.PublicKey) (string, error) {
	if err := ecash.CheckEd25519Key(pub); err != nil {
		return "", fmt.Errorf("auditlog: log key: %w", err)
	}
	if err := checkOrigin(name); err != nil {
		return "", err
	}
	return note.NewEd25519VerifierKey(name, pub)
}

// NewVerifier is the note verifier for checkpoints signed by pub (the
// bank's online signing key, ecash.KeySet.SigningPub) under name (the log's
// origin).
func NewVerifier(name string, pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := VerifierKey(name, pub)
	if err != nil {
		return nil, err
	}
	return note.NewVerifier(vkey)
}

// NewSigner is the note signer for checkpoints made with the bank's online
// Ed25519 signing key (bank.Keys.Signing) under name (the log's origin).
func NewSigner(name string, key ed25519.PrivateKey) (note.Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("auditlog: log key of %d bytes", len(key))
	}
	v, err := NewVerifier(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &signer{name: name, hash: v.KeyHash(), key: key}, nil
}

type signer struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s *signer) Name() string                    { return s.name }
func (s *signer) KeyHash() uint32                 { return s.hash }
func (s *signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }
