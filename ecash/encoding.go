package ecash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// TagPrefix starts every domain-separation tag.
const TagPrefix = "blindbank/v1/"

// MaxFieldLen bounds any single length-prefixed field a Decoder accepts, so a
// hostile length prefix can never make us allocate more than the input holds.
const MaxFieldLen = 1 << 20

// ErrMalformed is returned (wrapped) by every decoder for input that is not a
// canonical encoding.
var ErrMalformed = errors.New("ecash: malformed encoding")

// Encoder builds canonical encodings: fixed field order, fixed-width big-endian
// integers, u32 length-prefixed byte strings. The zero value is ready to use.
type Encoder struct{ buf []byte }

// encoderCap is a new Encoder's capacity: enough for a payment request,
// a deposit permission or a receipt of a few coins in one allocation,
// where growing from nothing took six.
const encoderCap = 256

// NewEncoder starts an encoding with the domain-separation tag for purpose.
func NewEncoder(purpose string) *Encoder {
	e := &Encoder{buf: make([]byte, 0, encoderCap)}
	e.String(TagPrefix + purpose)
	return e
}

// Bytes returns the encoding built so far.
func (e *Encoder) Bytes() []byte { return e.buf }

// U8 appends one byte.
func (e *Encoder) U8(v uint8) { e.buf = append(e.buf, v) }

// U32 appends a big-endian uint32.
func (e *Encoder) U32(v uint32) { e.buf = binary.BigEndian.AppendUint32(e.buf, v) }

// U64 appends a big-endian uint64.
func (e *Encoder) U64(v uint64) { e.buf = binary.BigEndian.AppendUint64(e.buf, v) }

// I64 appends a big-endian two's-complement int64 (timestamps).
func (e *Encoder) I64(v int64) { e.U64(uint64(v)) }

// Fixed appends b with no length prefix; the decoder must know its length.
func (e *Encoder) Fixed(b []byte) { e.buf = append(e.buf, b...) }

// VarBytes appends a u32 length prefix and b.
func (e *Encoder) VarBytes(b []byte) {
	e.U32(uint32(len(b)))
	e.buf = append(e.buf, b...)
}

// String appends s as VarBytes.
func (e *Encoder) String(s string) {
	e.U32(uint32(len(s)))
	e.buf = append(e.buf, s...)
}

// Amount appends an amount as currency string then u64 value.
func (e *Encoder) Amount(a Amount) {
	e.String(a.Currency)
	e.U64(a.Value)
}

// Decoder reads a canonical encoding. The first error sticks: later reads
// return zero values, and Finish reports it. Decoders never panic.
type Decoder struct {
	buf []byte
	err error
}

// NewDecoder reads b, which must start with the tag for purpose.
func NewDecoder(purpose string, b []byte) *Decoder {
	d := &Decoder{buf: b}
	if tag := d.String(); d.err == nil && tag != TagPrefix+purpose {
		d.fail("tag %q, want %q", tag, TagPrefix+purpose)
	}
	return d
}

func (d *Decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
}

func (d *Decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.buf) {
		d.fail("truncated")
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

// U8 reads one byte.
func (d *Decoder) U8() uint8 {
	b := d.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// U32 reads a big-endian uint32.
func (d *Decoder) U32() uint32 {
	b := d.take(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// U64 reads a big-endian uint64.
func (d *Decoder) U64() uint64 {
	b := d.take(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// I64 reads a big-endian int64.
func (d *Decoder) I64() int64 { return int64(d.U64()) }

// Fixed reads exactly n bytes, copied.
func (d *Decoder) Fixed(n int) []byte {
	b := d.take(n)
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// VarBytes reads a u32 length prefix and that many bytes, at most max.
func (d *Decoder) VarBytes(max int) []byte {
	n := d.U32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(max) || n > MaxFieldLen {
		d.fail("field of %d bytes exceeds %d", n, min(max, MaxFieldLen))
		return nil
	}
	return d.Fixed(int(n))
}

// String reads a VarBytes field of at most 1024 bytes as a string.
func (d *Decoder) String() string { return string(d.VarBytes(1024)) }

// Count reads a u32 element count, at most max.
func (d *Decoder) Count(max int) int {
	n := d.U32()
	if d.err == nil && uint64(n) > uint64(max) {
		d.fail("count %d exceeds %d", n, max)
		return 0
	}
	if n > math.MaxInt32 {
		d.fail("count %d too large", n)
		return 0
	}
	return int(n)
}

// Amount reads an amount and validates it.
func (d *Decoder) Amount() Amount {
	a := Amount{Currency: d.String(), Value: d.U64()}
	if d.err == nil {
		if err := a.Validate(); err != nil {
			d.fail("%v", err)
			return Amount{}
		}
	}
	return a
}

// More reports whether bytes remain to be read (for optional trailing
// fields, encoded only when present).
func (d *Decoder) More() bool { return d.err == nil && len(d.buf) > 0 }

// Err returns the first error seen.
func (d *Decoder) Err() error { return d.err }

// Finish returns the first error, or an error if bytes remain.
func (d *Decoder) Finish() error {
	if d.err == nil && len(d.buf) != 0 {
		d.fail("%d trailing bytes", len(d.buf))
	}
	return d.err
}
