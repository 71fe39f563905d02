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
)

// Checkpoint describes the log at one size: the body of a C2SP
// tlog-checkpoint. The bank signs its Text as a note.
type Checkpoint struct {
	Origin string    // the log's name (see Origin)
	Size   int64     // number of entries
	Root   tlog.Hash // RFC 6962 root hash of those entries
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

// Text is the checkpoint body, three lines each ending in a newline:
//
//	<origin>
//	<size in decimal>
//	<root hash in standard base64>
//
// This is the C2SP tlog-checkpoint body with no extension lines. (It is
// tlog.FormatTree's format with the origin in place of tlog's fixed first
// line "go.sum database tree".)
func (c Checkpoint) Text() []byte {
	b := make([]byte, 0, len(c.Origin)+64)
	b = append(b, c.Origin...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, c.Size, 10)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, c.Root[:])
	return append(b, '\n')
}

// ParseCheckpoint parses a checkpoint body. It accepts only what Text
// produces: a valid origin, a size in decimal without sign or leading zeros,
// a 32-byte root in padded standard base64, and no extension lines (blindbank
// checkpoints have none).
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	if len(text) > MaxOriginLen+80 {
		return Checkpoint{}, fmt.Errorf("%w: body of %d bytes", ErrMalformedCheckpoint, len(text))
	}
	lines := bytes.Split(text, []byte("\n"))
	if len(lines) != 4 || len(lines[3]) != 0 {
		return Checkpoint{}, fmt.Errorf("%w: want exactly three lines, each ending in a newline", ErrMalformedCheckpoint)
	}
	c := Checkpoint{Origin: string(lines[0])}
	if err := checkOrigin(c.Origin); err != nil {
		return Checkpoint{}, err
	}
	n, err := strconv.ParseInt(string(lines[1]), 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != string(lines[1]) {
		return Checkpoint{}, fmt.Errorf("%w: size %q", ErrMalformedCheckpoint, lines[1])
	}
	c.Size = n
	root, err := base64.StdEncoding.Strict().DecodeString(string(lines[2]))
	if err != nil || len(root) != tlog.HashSize || base64.StdEncoding.EncodeToString(root) != string(lines[2]) {
		return Checkpoint{}, fmt.Errorf("%w: root hash %q", ErrMalformedCheckpoint, lines[2])
	}
	copy(c.Root[:], root)
	return c, nil
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
