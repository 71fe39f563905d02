package pebblestore

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// Keys. Every key starts with a one-letter table name and a slash; integers
// are fixed-width big-endian so that byte order is numeric order.
var (
	keyFormat      = []byte(BankFormatKey)    // u32 format version
	keyNextAccount = []byte("m/next-account") // u64 next user account id
)

const (
	prefixAccount  = "a/" // a/<u64 id>                     → account record
	prefixKey      = "k/" // k/<ed25519 public key>         → u64 account id
	prefixPosting  = "p/" // p/<u64 account><u64 seq>       → posting record
	prefixWithdraw = "w/" // w/<request hash>               → withdraw record
	prefixRefused  = "o/" // o/<request hash>               → withdraw refusal record
	prefixRefusedT = "q/" // q/<u64 µs since 1970><request hash> → nothing: o/ by time, for pruning
	prefixCoin     = "c/" // c/<coin id>                    → spent-coin record
	prefixDeposit  = "d/" // d/<payment hash>               → deposit record
	prefixRef      = "r/" // r/<credit reference>           → reference record
	prefixNonce    = "n/" // n/<denomination id><nonce>     → SHA-256 of the blinded message
	prefixCheck    = "e/" // e/<EPOID>                      → check outcome record
	prefixSwap     = "s/" // s/<request hash>               → swap record
	prefixIssued   = "i/" // i/<SHA-256 of blinded message> → issued record
	prefixCredit   = "f/" // f/<coin id>                    → coin refund record
	prefixRefund   = "u/" // u/<refund request hash>        → refund record
	prefixRefunds  = "v/" // v/<payment hash><u64 log size> → refund request hash
	prefixAuth     = "t/" // t/<u64 day><u64 account><SHA-256 of source> → u64 failed authentications
)

func u64Key(prefix string, id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefix), id)
}

func accountKey(id uint64) []byte { return u64Key(prefixAccount, id) }

func postingKey(id, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(u64Key(prefixPosting, id), seq)
}

func hashKey(prefix string, h ecash.Hash) []byte { return append([]byte(prefix), h[:]...) }

// refusedAtKey is a withdraw refusal's key in time order: its time in
// microseconds since 1970 (0 for one before), then its request hash.
func refusedAtKey(t time.Time, h ecash.Hash) []byte {
	return append(u64Key(prefixRefusedT, uint64(max(0, t.UnixMicro()))), h[:]...)
}

func bytesKey(prefix string, b []byte) []byte { return append([]byte(prefix), b...) }

// authDay is the prefix of the failed authentications of one day, and
// authAccount of one account's on that day: the day first, so that the
// days before today, which count for nothing, are one range.
func authDay(day int64) []byte { return u64Key(prefixAuth, uint64(day)) }

func authAccount(day int64, id uint64) []byte {
	return binary.BigEndian.AppendUint64(authDay(day), id)
}

// authKey is the key of an account's failed authentications from source
// on day.
func authKey(id uint64, day int64, source string) []byte {
	h := sha256.Sum256([]byte(source))
	return append(authAccount(day, id), h[:]...)
}

// prefixEnd returns the smallest key greater than every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// errCorrupt wraps every failure to decode a stored record.
var errCorrupt = errors.New("pebblestore: corrupt record")

// enc builds record values: fixed-width big-endian integers and u32
// length-prefixed byte strings, in a fixed field order per record type (the
// same conventions as ecash.Encoder, without the domain tag, which a key
// prefix already provides).
type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) i64(v int64)  { e.u64(uint64(v)) }
func (e *enc) fixed(b []byte) {
	e.b = append(e.b, b...)
}
func (e *enc) bytes(b []byte) {
	e.u32(uint32(len(b)))
	e.b = append(e.b, b...)
}
func (e *enc) str(s string) {
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
}

// time stores seconds and nanoseconds since the Unix epoch; the zero time
// round-trips to the zero time. Location is not kept: times decode as UTC.
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.u8(0)
		return
	}
	e.u8(1)
	e.i64(t.Unix())
	e.u32(uint32(t.Nanosecond()))
}

// dec reads record values. The first error sticks; later reads return zero
// values. Byte strings are copied, so they outlive the Pebble buffer.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("%w: truncated", errCorrupt)
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *dec) u8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *dec) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *dec) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *dec) i64() int64 { return int64(d.u64()) }

func (d *dec) fixed(n int) []byte {
	if b := d.take(n); b != nil {
		return append([]byte(nil), b...)
	}
	return nil
}

func (d *dec) bytes() []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: field of %d bytes, %d left", errCorrupt, n, len(d.b))
		return nil
	}
	return d.fixed(int(n))
}

func (d *dec) str() string { return string(d.bytes()) }

func (d *dec) hash() (h ecash.Hash) {
	copy(h[:], d.take(len(h)))
	return h
}

func (d *dec) time() time.Time {
	switch d.u8() {
	case 0:
		return time.Time{}
	case 1:
		sec, nsec := d.i64(), d.u32()
		if nsec >= 1e9 {
			d.err = fmt.Errorf("%w: nanoseconds %d", errCorrupt, nsec)
			return time.Time{}
		}
		t := time.Unix(sec, int64(nsec)).UTC()
		if t.IsZero() { // written as tag 0: this is no record of ours
			d.err = fmt.Errorf("%w: the zero time tagged as set", errCorrupt)
			return time.Time{}
		}
		return t
	default:
		if d.err == nil {
			d.err = fmt.Errorf("%w: bad time tag", errCorrupt)
		}
		return time.Time{}
	}
}

// count reads a u32 element count, rejecting counts that cannot fit in the
// remaining input at elemSize bytes or more each.
func (d *dec) count(elemSize int) int {
	n := d.u32()
	if d.err == nil && uint64(n)*uint64(elemSize) > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: count %d exceeds input", errCorrupt, n)
		return 0
	}
	return int(n)
}

func (d *dec) finish(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("%s: %w", what, d.err)
	}
	return nil
}

// account is the stored account record: the public bank.Account plus the
// sequence number of its next posting.
type account struct {
	bank.Account
	NextSeq uint64
}

func encodeAccount(a *account) []byte {
	var e enc
	e.str(a.Name)
	e.bytes(a.Key)
	if a.Merchant {
		e.u8(1)
	} else {
		e.u8(0)
	}
	e.i64(a.Balance)
	e.time(a.Created)
	e.u64(a.NextSeq)
	e.i64(a.Limits.PerTransaction)
	e.i64(a.Limits.PerDay)
	e.i64(a.SpentDay)
	e.i64(a.SpentToday)
	// Where an account-wide count of failed authentications was, before
	// they were counted per source (t/): its day and count, now zero.
	e.i64(0)
	e.i64(0)
	e.time(a.LastPosted)
	return e.b
}

func decodeAccount(id uint64, b []byte) (*account, error) {
	d := dec{b: b}
	a := &account{}
	a.ID = id
	a.Name = d.str()
	if k := d.bytes(); len(k) > 0 {
		a.Key = k
	}
	switch d.u8() {
	case 0:
	case 1:
		a.Merchant = true
	default:
		if d.err == nil {
			d.err = fmt.Errorf("%w: bad merchant flag", errCorrupt)
		}
	}
	a.Balance = d.i64()
	a.Created = d.time()
	a.NextSeq = d.u64()
	a.Limits.PerTransaction = d.i64()
	a.Limits.PerDay = d.i64()
	a.SpentDay = d.i64()
	a.SpentToday = d.i64()
	// The account-wide failures of before, unused (encodeAccount).
	_, _ = d.i64(), d.i64()
	if len(d.b) > 0 { // absent from records written before it was kept
		a.LastPosted = d.time()
	}
	if err := d.finish(fmt.Sprintf("account %d", id)); err != nil {
		return nil, err
	}
	return a, nil
}

func encodePosting(p *bank.Posting) []byte {
	var e enc
	e.time(p.Time)
	e.str(p.Kind)
	e.i64(p.Amount)
	e.i64(p.Balance)
	e.str(p.Memo)
	e.u64(p.Counterparty)
	e.str(p.Ref)
	e.str(p.Product)
	return e.b
}

func decodePosting(seq uint64, b []byte) (bank.Posting, error) {
	d := dec{b: b}
	p := bank.Posting{Seq: seq}
	p.Time = d.time()
	p.Kind = d.str()
	p.Amount = d.i64()
	p.Balance = d.i64()
	p.Memo = d.str()
	p.Counterparty = d.u64()
	p.Ref = d.str()
	p.Product = d.str()
	return p, d.finish(fmt.Sprintf("posting %d", seq))
}

// withdrawRecord is stored under w/<request hash>.
type withdrawRecord struct {
	Account uint64
	Amount  int64
	Sigs    [][]byte
}

func encodeWithdraw(w *withdrawRecord) []byte {
	var e enc
	e.u64(w.Account)
	e.i64(w.Amount)
	e.u32(uint32(len(w.Sigs)))
	for _, s := range w.Sigs {
		e.bytes(s)
	}
	return e.b
}

func decodeWithdraw(b []byte) (*withdrawRecord, error) {
	d := dec{b: b}
	w := &withdrawRecord{Account: d.u64(), Amount: d.i64()}
	n := d.count(4)
	w.Sigs = make([][]byte, 0, n)
	for range n {
		w.Sigs = append(w.Sigs, d.bytes())
	}
	return w, d.finish("withdraw record")
}

// refusalRecord is stored under o/<request hash>: a withdraw request
// refused for good (bank.Store.RefuseWithdrawal). Apart from w/, under a
// prefix no build before it reads: one ignores it and reads the rest as
// it always did.
type refusalRecord struct {
	Account uint64
	Refusal bank.WithdrawRefusal
	Time    time.Time
}

func encodeRefusal(r *refusalRecord) []byte {
	var e enc
	e.u64(r.Account)
	e.u32(uint32(r.Refusal.Code))
	e.str(r.Refusal.Reason)
	e.time(r.Time)
	return e.b
}

func decodeRefusal(b []byte) (*refusalRecord, error) {
	d := dec{b: b}
	r := &refusalRecord{Account: d.u64()}
	r.Refusal.Code = codes.Code(d.u32())
	r.Refusal.Reason = d.str()
	r.Time = d.time()
	if err := d.finish("withdraw refusal record"); err != nil {
		return nil, err
	}
	// Read from disk: a refusal the bank would not record is no record
	// of ours (and its code would reach a wallet).
	if err := r.Refusal.Validate(); err != nil {
		return nil, fmt.Errorf("%w: withdraw refusal record: %v", errCorrupt, err)
	}
	return r, nil
}

// issuedRecord is stored under i/<hash of a blinded message>: where its
// blind signature is, in a withdraw or swap record.
type issuedRecord struct {
	Swap    bool
	Request ecash.Hash
	Pos     uint32
}

func encodeIssued(r *issuedRecord) []byte {
	var e enc
	if r.Swap {
		e.u8(1)
	} else {
		e.u8(0)
	}
	e.fixed(r.Request[:])
	e.u32(r.Pos)
	return e.b
}

func decodeIssued(b []byte) (*issuedRecord, error) {
	d := dec{b: b}
	kind := d.u8()
	r := &issuedRecord{Swap: kind == 1, Request: d.hash(), Pos: d.u32()}
	if kind > 1 {
		return nil, fmt.Errorf("%w: issued record of kind %d", errCorrupt, kind)
	}
	return r, d.finish("issued record")
}

// coinRecord is stored under c/<coin id>: the payment that spent the coin
// and the coin's signed deposit permission.
type coinRecord struct {
	Payment    ecash.Hash
	Permission []byte
}

func encodeCoin(c *coinRecord) []byte {
	var e enc
	e.fixed(c.Payment[:])
	e.bytes(c.Permission)
	return e.b
}

func decodeCoin(b []byte) (*coinRecord, error) {
	d := dec{b: b}
	c := &coinRecord{Payment: d.hash(), Permission: d.bytes()}
	return c, d.finish("coin record")
}

// creditRecord is stored under f/<coin id>: value refunds restored to a
// spent coin, and what of it is not yet spent again.
type creditRecord struct {
	Refunded int64
	Credit   int64
}

func encodeCredit(c *creditRecord) []byte {
	var e enc
	e.i64(c.Refunded)
	e.i64(c.Credit)
	return e.b
}

func decodeCredit(b []byte) (*creditRecord, error) {
	d := dec{b: b}
	c := &creditRecord{Refunded: d.i64(), Credit: d.i64()}
	return c, d.finish("credit record")
}

// refundRecord is stored under u/<refund request hash>.
type refundRecord struct {
	Payment  ecash.Hash
	Merchant uint64
	Amount   int64
	Receipt  []byte
}

func encodeRefund(r *refundRecord) []byte {
	var e enc
	e.fixed(r.Payment[:])
	e.u64(r.Merchant)
	e.i64(r.Amount)
	e.bytes(r.Receipt)
	return e.b
}

func decodeRefund(b []byte) (*refundRecord, error) {
	d := dec{b: b}
	r := &refundRecord{Payment: d.hash(), Merchant: d.u64(), Amount: d.i64(), Receipt: d.bytes()}
	return r, d.finish("refund record")
}

// depositRecord is stored under d/<payment hash>.
type depositRecord struct {
	Merchant uint64
	Amount   int64
	Coins    []ecash.Hash // in the order of the deposit
	Receipt  []byte
}

func encodeDeposit(r *depositRecord) []byte {
	var e enc
	e.u64(r.Merchant)
	e.i64(r.Amount)
	e.u32(uint32(len(r.Coins)))
	for _, c := range r.Coins {
		e.fixed(c[:])
	}
	e.bytes(r.Receipt)
	return e.b
}

func decodeDeposit(b []byte) (*depositRecord, error) {
	d := dec{b: b}
	r := &depositRecord{Merchant: d.u64(), Amount: d.i64()}
	n := d.count(32)
	r.Coins = make([]ecash.Hash, 0, n)
	for range n {
		r.Coins = append(r.Coins, d.hash())
	}
	r.Receipt = d.bytes()
	return r, d.finish("deposit record")
}

// swapRecord is stored under s/<request hash>.
type swapRecord struct {
	Value int64
	Coins []ecash.Hash // sorted
	Sigs  [][]byte
	Time  time.Time
}

func encodeSwap(r *swapRecord) []byte {
	var e enc
	e.i64(r.Value)
	e.u32(uint32(len(r.Coins)))
	for _, c := range r.Coins {
		e.fixed(c[:])
	}
	e.u32(uint32(len(r.Sigs)))
	for _, s := range r.Sigs {
		e.bytes(s)
	}
	e.time(r.Time)
	return e.b
}

func decodeSwap(b []byte) (*swapRecord, error) {
	d := dec{b: b}
	r := &swapRecord{Value: d.i64()}
	n := d.count(32)
	r.Coins = make([]ecash.Hash, 0, n)
	for range n {
		r.Coins = append(r.Coins, d.hash())
	}
	n = d.count(4)
	r.Sigs = make([][]byte, 0, n)
	for range n {
		r.Sigs = append(r.Sigs, d.bytes())
	}
	r.Time = d.time()
	return r, d.finish("swap record")
}

// refRecord is stored under r/<credit reference>.
type refRecord struct {
	Account uint64
	Amount  int64
}

func encodeRef(r *refRecord) []byte {
	var e enc
	e.u64(r.Account)
	e.i64(r.Amount)
	return e.b
}

func decodeRef(b []byte) (*refRecord, error) {
	d := dec{b: b}
	r := &refRecord{Account: d.u64(), Amount: d.i64()}
	return r, d.finish("reference record")
}

func encodeCheck(c *bank.CheckOutcome) []byte {
	var e enc
	e.b = append(e.b, c.EPOHash[:]...)
	e.str(c.Outcome)
	e.bytes(c.Receipt)
	e.u64(c.Customer)
	e.u64(c.Merchant)
	e.i64(c.Amount)
	e.i64(c.NewBalance)
	e.bytes(c.Record)
	e.time(c.Time)
	return e.b
}

func decodeCheck(b []byte) (*bank.CheckOutcome, error) {
	if len(b) < 32 {
		return nil, fmt.Errorf("%w: check record", errCorrupt)
	}
	d := dec{b: b[32:]}
	c := &bank.CheckOutcome{}
	copy(c.EPOHash[:], b[:32])
	c.Outcome = d.str()
	c.Receipt = d.bytes()
	c.Customer = d.u64()
	c.Merchant = d.u64()
	c.Amount = d.i64()
	c.NewBalance = d.i64()
	c.Record = d.bytes()
	c.Time = d.time()
	return c, d.finish("check record")
}
