package echeck

import (
	"crypto/ed25519"
	"crypto/subtle"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/blindbank/blindbank/ecash"
)

// reader wraps ecash.Decoder with the checks echeck needs on top of it
// (bounded UTF-8 strings, fields longer than ecash.MaxFieldLen, EPOIDs,
// times). The first error sticks, as in ecash.Decoder.
type reader struct {
	d        *ecash.Decoder
	err      error
	recorded bool // a record of an order already signed: memos by recordedText
}

func newReader(purpose string, b []byte) *reader {
	return &reader{d: ecash.NewDecoder(purpose, b)}
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ecash.ErrMalformed, fmt.Sprintf(format, args...))
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) ok() bool { return r.err == nil && r.d.Err() == nil }

func (r *reader) u8() uint8   { return r.d.U8() }
func (r *reader) u64() uint64 { return r.d.U64() }
func (r *reader) i64() int64  { return r.d.I64() }

// time reads a millisecond timestamp, returned in UTC.
func (r *reader) time() time.Time { return time.UnixMilli(r.d.I64()).UTC() }

func (r *reader) hash() (h ecash.Hash) {
	copy(h[:], r.d.Fixed(32))
	return h
}

func (r *reader) key32() (k [32]byte) {
	copy(k[:], r.d.Fixed(32))
	return k
}

func (r *reader) pub() ed25519.PublicKey {
	return ed25519.PublicKey(r.d.Fixed(ed25519.PublicKeySize))
}

func (r *reader) amount() ecash.Amount { return r.d.Amount() }

// str reads a string of at most max bytes of displayable text
// (ecash.CheckText; recordedText if the reader reads a record).
func (r *reader) str(max int, what string) string {
	s := r.d.String()
	if r.ok() {
		if err := checkText(s, max, what, r.recorded); err != nil {
			r.fail(err)
		}
	}
	return s
}

// checkText is ecash.CheckText, or recordedText for a record.
func checkText(s string, max int, what string, recorded bool) error {
	if recorded {
		return recordedText(s, max, what)
	}
	return ecash.CheckText(s, max, what)
}

// recordedText is the rule memos followed before ecash.CheckText: at most
// max bytes of UTF-8, control characters allowed. Only for records of
// orders signed under that rule (DecodeRecordedEndorsement,
// OpenRecordedPrivate): the bank's, which it must still answer for, and a
// till's transcript, which an audit replays; never for bytes being
// accepted as new input.
func recordedText(s string, max int, what string) error {
	if len(s) > max {
		return malformed("%s of %d bytes exceeds %d", what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return malformed("%s is not UTF-8", what)
	}
	return nil
}

// bytes reads a length-prefixed field of at most max bytes. Unlike
// ecash.Decoder.VarBytes it allows max above ecash.MaxFieldLen (goods); it
// never allocates more than the input holds.
func (r *reader) bytes(max int, what string) []byte {
	n := r.d.U32()
	if !r.ok() {
		return nil
	}
	if uint64(n) > uint64(max) {
		r.fail(malformed("%s of %d bytes exceeds %d", what, n, max))
		return nil
	}
	return r.d.Fixed(int(n))
}

// epoid reads an inline EPOID (no tag).
func (r *reader) epoid() EPOID {
	id := EPOID{Merchant: r.d.U64()}
	ms := r.d.I64()
	id.Serial = r.d.U64()
	if r.ok() && ms < 0 {
		r.fail(malformed("EPOID timestamp before 1970"))
	}
	id.Timestamp = time.UnixMilli(ms).UTC()
	return id
}

// finish returns the first error of either layer, or an error if bytes
// remain.
func (r *reader) finish() error {
	if err := r.d.Err(); err != nil {
		return err
	}
	if r.err != nil {
		return r.err
	}
	return r.d.Finish()
}

// putEPOID appends an inline EPOID.
func putEPOID(e *ecash.Encoder, id EPOID) {
	e.U64(id.Merchant)
	e.I64(id.Timestamp.UnixMilli())
	e.U64(id.Serial)
}

// signedForm is tag(purpose) || varbytes(body) || sig.
func signedForm(purpose string, body, sig []byte) []byte {
	e := ecash.NewEncoder(purpose)
	e.VarBytes(body)
	e.Fixed(sig)
	return e.Bytes()
}

// openSigned splits a signed form into body and signature.
func openSigned(purpose string, b []byte, maxBody int) (body, sig []byte, err error) {
	d := ecash.NewDecoder(purpose, b)
	body = d.VarBytes(maxBody)
	sig = d.Fixed(ed25519.SignatureSize)
	if err := d.Finish(); err != nil {
		return nil, nil, err
	}
	return body, sig, nil
}

func isZero32(b [32]byte) bool {
	var z [32]byte
	return subtle.ConstantTimeCompare(b[:], z[:]) == 1
}

func sameKey(a, b ed25519.PublicKey) bool {
	return len(a) == ed25519.PublicKeySize && len(b) == ed25519.PublicKeySize && a.Equal(b)
}

// checkPub refuses malformed and weak Ed25519 keys.
func checkPub(pub ed25519.PublicKey, what string) error {
	if err := ecash.CheckEd25519Key(pub); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func sameMillis(a, b time.Time) bool { return a.UnixMilli() == b.UnixMilli() }
