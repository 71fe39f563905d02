package echeck

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// EPOID is the globally unique id of one electronic payment order (NetBill
// step 4): the merchant's id (its account number at the bank), the time the
// merchant finished delivering the encrypted goods, and a serial. The bank
// keys its records on it: one outcome per EPOID.
//
// Merchant tills number their deliveries with serials below 2^63; a check
// written by a customer (KindCheck) uses NewCheckEPOID, whose random serial
// has the top bit set, so the two never collide.
//
// Inside other messages it is encoded inline, without a tag, as u64
// merchant, i64 Unix milliseconds, u64 serial; on its own, Encode adds the
// tag "epoid". Decoders refuse timestamps before 1970. Timestamps carry
// millisecond precision: compare EPOIDs with Equal, not ==.
type EPOID struct {
	Merchant  uint64
	Timestamp time.Time
	Serial    uint64
}

// NewEPOID returns an EPOID with the timestamp truncated to milliseconds, in
// UTC, as a decoder would return it.
func NewEPOID(merchant uint64, t time.Time, serial uint64) EPOID {
	return EPOID{Merchant: merchant, Timestamp: time.UnixMilli(t.UnixMilli()).UTC(), Serial: serial}
}

// NewCheckEPOID draws an EPOID for a check the customer writes to merchant
// account merchant at time t: a random serial from rnd with the top bit set.
func NewCheckEPOID(rnd io.Reader, merchant uint64, t time.Time) (EPOID, error) {
	var b [8]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return EPOID{}, fmt.Errorf("echeck: EPOID serial: %w", err)
	}
	return NewEPOID(merchant, t, binary.BigEndian.Uint64(b[:])|1<<63), nil
}

// Equal reports whether two EPOIDs are the same id (timestamps compared in
// milliseconds).
func (id EPOID) Equal(o EPOID) bool {
	return id.Merchant == o.Merchant && id.Serial == o.Serial && sameMillis(id.Timestamp, o.Timestamp)
}

// IsZero reports whether id is the zero value (used for statement lines
// that are not e-check postings).
func (id EPOID) IsZero() bool {
	return id.Merchant == 0 && id.Serial == 0 && id.Timestamp.IsZero()
}

// String is "merchant-milliseconds-serial" in decimal, e.g.
// "7-1741964966535-1". ParseEPOID reads it back.
func (id EPOID) String() string {
	return fmt.Sprintf("%d-%d-%d", id.Merchant, id.Timestamp.UnixMilli(), id.Serial)
}

// ParseEPOID parses the String form. Only the canonical form is accepted:
// three decimal numbers without signs or leading zeros, joined by '-'.
func ParseEPOID(s string) (EPOID, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 3 {
		return EPOID{}, malformed("EPOID %q: want merchant-milliseconds-serial", s)
	}
	var n [3]uint64
	for i, p := range parts {
		if p == "" || len(p) > 20 || (len(p) > 1 && p[0] == '0') || strings.TrimLeft(p, "0123456789") != "" {
			return EPOID{}, malformed("EPOID %q: want merchant-milliseconds-serial", s)
		}
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return EPOID{}, malformed("EPOID %q: %v", s, err)
		}
		n[i] = v
	}
	if n[1] > 1<<63-1 {
		return EPOID{}, malformed("EPOID %q: timestamp out of range", s)
	}
	return EPOID{Merchant: n[0], Timestamp: time.UnixMilli(int64(n[1])).UTC(), Serial: n[2]}, nil
}

// Key is the 24-byte big-endian inline encoding, for use as a storage key:
// it sorts by merchant, then time, then serial.
func (id EPOID) Key() [24]byte {
	var k [24]byte
	binary.BigEndian.PutUint64(k[0:], id.Merchant)
	binary.BigEndian.PutUint64(k[8:], uint64(id.Timestamp.UnixMilli()))
	binary.BigEndian.PutUint64(k[16:], id.Serial)
	return k
}

// Encode is the tagged encoding (tag "epoid"). It is also the AAD of the
// goods encryption.
func (id EPOID) Encode() []byte {
	e := ecash.NewEncoder("epoid")
	putEPOID(e, id)
	return e.Bytes()
}

// DecodeEPOID parses what Encode produced.
func DecodeEPOID(b []byte) (EPOID, error) {
	r := newReader("epoid", b)
	id := r.epoid()
	if err := r.finish(); err != nil {
		return EPOID{}, err
	}
	return id, nil
}
