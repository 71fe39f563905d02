package auditlog

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// Kind names the state change an entry records. Each kind has its own
// domain-separation tag, "blindbank/v1/auditlog/<name>".
type Kind uint8

// The kinds of entries.
const (
	KindAccountOpened Kind = iota + 1 // an account was opened
	KindCredit                        // money entered an account from outside
	KindWithdraw                      // an account was debited for blind-signed coins
	KindDeposit                       // coins were spent into a merchant account
	KindSwap                          // coins were exchanged for fresh coins
	KindRefund                        // a merchant gave back (part of) a payment
	KindRecoup                        // a coin of a revoked denomination was paid back
	KindCheck                         // a NetBill payment order was decided
	KindPayout                        // money left an account to the outside
	KindKeySet                        // a master-signed key set was published
	_                                 // 11, revocation: retired (retiredKinds), never reused
)

var kindNames = [...]string{
	KindAccountOpened: "account-opened",
	KindCredit:        "credit",
	KindWithdraw:      "withdraw",
	KindDeposit:       "deposit",
	KindSwap:          "swap",
	KindRefund:        "refund",
	KindRecoup:        "recoup",
	KindCheck:         "check",
	KindPayout:        "payout",
	KindKeySet:        "keyset",
}

// retiredKinds are the kinds no log may hold, by name, with why: their
// tags are refused, and neither their names nor their numbers are reused.
var retiredKinds = map[string]string{
	// Kind 11 listed denominations revoked under no key but the log's: the
	// online key alone could revoke in an auditor's eyes while wallets
	// went on being served the denomination. No bank ever wrote it.
	"revocation": "a denomination is revoked only by a master-signed key set listing it revoked (a keyset entry)",
}

// Kinds lists every kind in use, in numeric order.
func Kinds() []Kind {
	ks := make([]Kind, 0, len(kindNames)-1)
	for k := KindAccountOpened; int(k) < len(kindNames); k++ {
		if k.valid() {
			ks = append(ks, k)
		}
	}
	return ks
}

// valid reports whether k is a kind in use: a retired number has no name.
func (k Kind) valid() bool {
	return k >= KindAccountOpened && int(k) < len(kindNames) && kindNames[k] != ""
}

// String is the kind's name, as it appears in its tag.
func (k Kind) String() string {
	if !k.valid() {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// Purpose is the argument to ecash.NewEncoder for entries of this kind:
// "auditlog/<name>". The full tag is ecash.TagPrefix + Purpose.
func (k Kind) Purpose() string { return "auditlog/" + k.String() }

// Bounds of the encoding.
const (
	// MaxEntrySize bounds an encoded entry; DecodeEntry refuses larger
	// input before reading it. The largest entries are key sets, whose
	// signed encoding may take up to ecash.MaxFieldLen bytes.
	MaxEntrySize = ecash.MaxFieldLen + 4096
	// MaxEPOIDLen bounds a Check's EPOID, as the store does.
	MaxEPOIDLen = 128
	// maxMillis is 9999-12-31T23:59:59.999Z: entry times lie in
	// [1970-01-01, 9999-12-31].
	maxMillis = 253402300799999
)

// ErrInvalidEntry is returned (wrapped) by Entry.Encode and Appender.Append
// for an entry that breaks one of the rules in docs/AUDITLOG.md. DecodeEntry
// returns the same errors, also wrapping ecash.ErrMalformed.
var ErrInvalidEntry = errors.New("auditlog: invalid entry")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidEntry, fmt.Sprintf(format, args...))
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: auditlog: %s", ecash.ErrMalformed, fmt.Sprintf(format, args...))
}

// Entry is one record of the log.
type Entry struct {
	Index int64     // position in the log, from 0
	Time  time.Time // commit time; encoded in whole milliseconds (UTC)
	Op    Op        // the operation's public facts
}

// Kind is the kind of e.Op (0 if there is none).
func (e Entry) Kind() Kind {
	if e.Op == nil {
		return 0
	}
	return e.Op.Kind()
}

// Op is the public content of one state change: one of AccountOpened,
// Credit, Withdraw, Deposit, Swap, Refund, Recoup, Check, Payout and KeySet
// (values, not pointers). The set is closed.
type Op interface {
	Kind() Kind
	// canonical returns a copy whose order-free lists are sorted.
	canonical() Op
	// validate checks a canonical op against the rules of its kind.
	validate() error
	// encodeTo appends the op's fields.
	encodeTo(e *ecash.Encoder)
}

// Canonical returns e with its time truncated to milliseconds in UTC and the
// order-free lists of its op sorted: the value DecodeEntry(e.Encode())
// returns.
func (e Entry) Canonical() Entry {
	e.Time = time.UnixMilli(e.Time.UnixMilli()).UTC()
	if e.Op != nil {
		e.Op = e.Op.canonical()
	}
	return e
}

// Validate checks e against the rules its encoding enforces.
func (e Entry) Validate() error {
	_, err := e.Encode()
	return err
}

// Encode returns the canonical encoding of e (that is, of e.Canonical():
// order-free lists are sorted on the way), or an error wrapping
// ErrInvalidEntry.
func (e Entry) Encode() ([]byte, error) {
	if e.Op == nil || !e.Op.Kind().valid() {
		return nil, invalid("entry without an operation")
	}
	if e.Index < 0 {
		return nil, invalid("negative index %d", e.Index)
	}
	ms := e.Time.UnixMilli()
	if ms < 0 || ms > maxMillis {
		return nil, invalid("time %s outside 1970..9999", e.Time.UTC().Format(time.RFC3339))
	}
	op := e.Op.canonical()
	if err := op.validate(); err != nil {
		return nil, fmt.Errorf("%s entry: %w", op.Kind(), err)
	}
	enc := ecash.NewEncoder(op.Kind().Purpose())
	enc.U64(uint64(e.Index))
	enc.I64(ms)
	op.encodeTo(enc)
	b := enc.Bytes()
	if len(b) > MaxEntrySize {
		return nil, invalid("%s entry of %d bytes exceeds %d", op.Kind(), len(b), MaxEntrySize)
	}
	return b, nil
}

// maxTagLen bounds the tag DecodeEntry peeks at.
const maxTagLen = 64

// PeekKind returns the kind named by the tag at the start of an encoded
// entry, without decoding the rest.
func PeekKind(b []byte) (Kind, error) {
	if len(b) < 4 {
		return 0, malformed("truncated entry tag")
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxTagLen || int(n) > len(b)-4 {
		return 0, malformed("entry tag of %d bytes", n)
	}
	tag := string(b[4 : 4+n])
	for _, k := range Kinds() {
		if tag == ecash.TagPrefix+k.Purpose() {
			return k, nil
		}
	}
	for name, why := range retiredKinds {
		if tag == ecash.TagPrefix+"auditlog/"+name {
			return 0, malformed("entry tag %q: the kind %s is retired: %s", tag, name, why)
		}
	}
	return 0, malformed("unknown entry tag %q", tag)
}

// DecodeEntry parses a canonical entry. It returns a complete entry or nil
// and an error wrapping ecash.ErrMalformed (and ErrInvalidEntry when the
// fields break a rule of their kind); it never panics and allocates at most
// in proportion to len(b).
func DecodeEntry(b []byte) (*Entry, error) {
	if len(b) > MaxEntrySize {
		return nil, malformed("entry of %d bytes exceeds %d", len(b), MaxEntrySize)
	}
	k, err := PeekKind(b)
	if err != nil {
		return nil, err
	}
	d := ecash.NewDecoder(k.Purpose(), b)
	idx := d.U64()
	ms := d.I64()
	op := decoders[k](d)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("%s entry: %w", k, err)
	}
	if idx > math.MaxInt64 {
		return nil, malformed("%s entry: index %d exceeds 2^63-1", k, idx)
	}
	if ms < 0 || ms > maxMillis {
		return nil, malformed("%s entry: time %d ms outside 1970..9999", k, ms)
	}
	if err := op.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s entry: %w", ecash.ErrMalformed, k, err)
	}
	// Lists must arrive sorted: canonical() of a decoded op is itself.
	return &Entry{Index: int64(idx), Time: time.UnixMilli(ms).UTC(), Op: op}, nil
}

var decoders = [...]func(*ecash.Decoder) Op{
	KindAccountOpened: decodeAccountOpened,
	KindCredit:        decodeCredit,
	KindWithdraw:      decodeWithdraw,
	KindDeposit:       decodeDeposit,
	KindSwap:          decodeSwap,
	KindRefund:        decodeRefund,
	KindRecoup:        decodeRecoup,
	KindCheck:         decodeCheck,
	KindPayout:        decodePayout,
	KindKeySet:        decodeKeySet,
}

// OptionalHash is the hash under which entries record an optional free-form
// value (a credit or payout reference): SHA-256 of its bytes, or all zeros
// for the empty string. It hides only values that cannot be guessed.
func OptionalHash(s string) ecash.Hash {
	if s == "" {
		return ecash.Hash{}
	}
	return ecash.HashOf([]byte(s))
}

// ---- shared field types ----

// DenomCount is a number of coins of one denomination: what a withdrawal or
// a swap issued, without anything that identifies the coins.
type DenomCount struct {
	Denom ecash.Hash   // denomination id (ecash.DenominationID)
	Value ecash.Amount // the denomination's value (per coin)
	Count uint32       // at least 1
}

// SpentCoin is one coin spent in a deposit or a swap.
type SpentCoin struct {
	ID             ecash.Hash   // coin id: SHA-256 of the coin public key
	Denom          ecash.Hash   // its denomination id
	Value          ecash.Amount // its denomination's value
	PermissionHash ecash.Hash   // SHA-256 of the signed permission the bank keeps for it
}

// RefundedCoin is a coin whose spent value a refund restores.
type RefundedCoin struct {
	ID    ecash.Hash   // coin id
	Denom ecash.Hash   // its denomination id
	Value ecash.Amount // value restored to it
}

func hashLess(a, b ecash.Hash) int { return bytes.Compare(a[:], b[:]) }

func sortedStrictly[T any](xs []T, key func(T) ecash.Hash) bool {
	for i := 1; i < len(xs); i++ {
		if hashLess(key(xs[i-1]), key(xs[i])) >= 0 {
			return false
		}
	}
	return true
}

func sortedClone[T any](xs []T, key func(T) ecash.Hash) []T {
	if xs == nil {
		return nil
	}
	out := slices.Clone(xs)
	slices.SortStableFunc(out, func(a, b T) int { return hashLess(key(a), key(b)) })
	return out
}

func denomKey(d DenomCount) ecash.Hash    { return d.Denom }
func spentKey(c SpentCoin) ecash.Hash     { return c.ID }
func refundKey(c RefundedCoin) ecash.Hash { return c.ID }

// positive checks that a is a valid, non-zero amount in currency cur (any
// currency if cur is empty).
func positive(name string, a ecash.Amount, cur string) error {
	if err := a.Validate(); err != nil {
		return invalid("%s: %v", name, err)
	}
	if a.IsZero() {
		return invalid("%s is zero", name)
	}
	if cur != "" && a.Currency != cur {
		return invalid("%s in %s, the entry is in %s", name, a.Currency, cur)
	}
	return nil
}

func account(name string, id uint64) error {
	if id == 0 {
		return invalid("%s account 0", name)
	}
	return nil
}

// sumOf adds count·value over xs in currency cur, refusing overflow past
// ecash.MaxValue.
func sumOf(cur string, n int, term func(i int) (ecash.Amount, uint32)) (ecash.Amount, error) {
	total := ecash.Amount{Currency: cur}
	for i := range n {
		v, c := term(i)
		if c != 0 && v.Value > ecash.MaxValue/uint64(c) {
			return ecash.Amount{}, invalid("total overflows")
		}
		var err error
		if total, err = total.Add(ecash.Amount{Currency: cur, Value: v.Value * uint64(c)}); err != nil {
			return ecash.Amount{}, invalid("total: %v", err)
		}
	}
	return total, nil
}

func encodeDenomCounts(e *ecash.Encoder, ds []DenomCount) {
	e.U32(uint32(len(ds)))
	for _, d := range ds {
		e.Fixed(d.Denom[:])
		e.Amount(d.Value)
		e.U32(d.Count)
	}
}

func decodeDenomCounts(d *ecash.Decoder) []DenomCount {
	n := d.Count(ecash.MaxDenominations)
	out := make([]DenomCount, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		var c DenomCount
		c.Denom = fixedHash(d)
		c.Value = d.Amount()
		c.Count = d.U32()
		out = append(out, c)
	}
	return out
}

// checkDenomCounts checks a list of issued coins: 1 to MaxDenominations
// denominations sorted by id, each of a positive value in cur and a positive
// count, at most ecash.MaxCoinsPerRequest coins, summing to want.
func checkDenomCounts(name string, ds []DenomCount, cur string, want ecash.Amount) error {
	if len(ds) == 0 || len(ds) > ecash.MaxDenominations {
		return invalid("%d denominations in %s (want 1 to %d)", len(ds), name, ecash.MaxDenominations)
	}
	if !sortedStrictly(ds, denomKey) {
		return invalid("%s not sorted by denomination id, or a denomination repeats", name)
	}
	coins := 0
	for i, c := range ds {
		if err := positive(fmt.Sprintf("%s[%d] value", name, i), c.Value, cur); err != nil {
			return err
		}
		if c.Count == 0 {
			return invalid("%s[%d] count is zero", name, i)
		}
		if c.Count > ecash.MaxCoinsPerRequest {
			return invalid("%s: more than %d coins", name, ecash.MaxCoinsPerRequest)
		}
		coins += int(c.Count)
	}
	if coins > ecash.MaxCoinsPerRequest {
		return invalid("%s: %d coins exceed %d", name, coins, ecash.MaxCoinsPerRequest)
	}
	total, err := sumOf(cur, len(ds), func(i int) (ecash.Amount, uint32) { return ds[i].Value, ds[i].Count })
	if err != nil {
		return err
	}
	if total != want {
		return invalid("%s total %s, the entry says %s", name, total, want)
	}
	return nil
}

func encodeSpentCoins(e *ecash.Encoder, cs []SpentCoin) {
	e.U32(uint32(len(cs)))
	for _, c := range cs {
		e.Fixed(c.ID[:])
		e.Fixed(c.Denom[:])
		e.Amount(c.Value)
		e.Fixed(c.PermissionHash[:])
	}
}

func decodeSpentCoins(d *ecash.Decoder) []SpentCoin {
	n := d.Count(ecash.MaxCoinsPerRequest)
	out := make([]SpentCoin, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		var c SpentCoin
		c.ID = fixedHash(d)
		c.Denom = fixedHash(d)
		c.Value = d.Amount()
		c.PermissionHash = fixedHash(d)
		out = append(out, c)
	}
	return out
}

func checkSpentCoins(name string, cs []SpentCoin, cur string, want ecash.Amount) error {
	if len(cs) == 0 || len(cs) > ecash.MaxCoinsPerRequest {
		return invalid("%d coins in %s (want 1 to %d)", len(cs), name, ecash.MaxCoinsPerRequest)
	}
	if !sortedStrictly(cs, spentKey) {
		return invalid("%s not sorted by coin id, or a coin repeats", name)
	}
	for i, c := range cs {
		if err := positive(fmt.Sprintf("%s[%d] value", name, i), c.Value, cur); err != nil {
			return err
		}
	}
	total, err := sumOf(cur, len(cs), func(i int) (ecash.Amount, uint32) { return cs[i].Value, 1 })
	if err != nil {
		return err
	}
	if total != want {
		return invalid("%s total %s, the entry says %s", name, total, want)
	}
	return nil
}

func encodeRefundedCoins(e *ecash.Encoder, cs []RefundedCoin) {
	e.U32(uint32(len(cs)))
	for _, c := range cs {
		e.Fixed(c.ID[:])
		e.Fixed(c.Denom[:])
		e.Amount(c.Value)
	}
}

func decodeRefundedCoins(d *ecash.Decoder) []RefundedCoin {
	n := d.Count(ecash.MaxCoinsPerRequest)
	out := make([]RefundedCoin, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		out = append(out, RefundedCoin{ID: fixedHash(d), Denom: fixedHash(d), Value: d.Amount()})
	}
	return out
}

// A fee trails its entry, encoded only when not zero, so that an entry
// without fees encodes as before fees existed.
func encodeFee(e *ecash.Encoder, fee ecash.Amount) {
	if fee.Value > 0 {
		e.Amount(fee)
	}
}

func decodeFee(d *ecash.Decoder) ecash.Amount {
	if !d.More() {
		return ecash.Amount{}
	}
	return d.Amount()
}

func canonicalFee(fee ecash.Amount) ecash.Amount {
	if fee.Value == 0 {
		return ecash.Amount{}
	}
	return fee
}

// checkFee checks a fee of an entry of amount: none, or positive in its
// currency, below amount if below is set.
func checkFee(fee, amount ecash.Amount, below bool) error {
	switch {
	case fee == ecash.Amount{}:
		return nil
	case fee.Value == 0 || fee.Currency != amount.Currency:
		return invalid("a fee of %s in an entry of %s", fee, amount)
	case below && fee.Value >= amount.Value:
		return invalid("a fee of %s takes all of %s", fee, amount)
	case fee.Value > ecash.MaxValue-amount.Value:
		return invalid("a fee of %s on %s overflows", fee, amount)
	}
	return nil
}

// checkRefundedCoins checks 1 to MaxCoinsPerRequest coins, sorted, each of
// a positive value, and returns their total.
func checkRefundedCoins(name string, cs []RefundedCoin, cur string) (ecash.Amount, error) {
	if len(cs) == 0 || len(cs) > ecash.MaxCoinsPerRequest {
		return ecash.Amount{}, invalid("%d coins in %s (want 1 to %d)", len(cs), name, ecash.MaxCoinsPerRequest)
	}
	if !sortedStrictly(cs, refundKey) {
		return ecash.Amount{}, invalid("%s not sorted by coin id, or a coin repeats", name)
	}
	for i, c := range cs {
		if err := positive(fmt.Sprintf("%s[%d] value", name, i), c.Value, cur); err != nil {
			return ecash.Amount{}, err
		}
	}
	return sumOf(cur, len(cs), func(i int) (ecash.Amount, uint32) { return cs[i].Value, 1 })
}

// signature refuses a signature field that is not an Ed25519 signature's
// 64 bytes (whether it verifies is the Auditor's check: it needs the key).
func signature(name string, sig []byte) error {
	if len(sig) != ed25519.SignatureSize {
		return invalid("%s of %d bytes (want %d)", name, len(sig), ed25519.SignatureSize)
	}
	return nil
}

func fixedHash(d *ecash.Decoder) (h ecash.Hash) {
	copy(h[:], d.Fixed(len(h)))
	return h
}

// ---- the operations ----

// AccountOpened records a new customer or merchant account. The account's
// name is not logged.
type AccountOpened struct {
	Account  uint64
	Merchant bool
	Key      []byte // the account's Ed25519 public key (32 bytes)
}

func (AccountOpened) Kind() Kind { return KindAccountOpened }
func (o AccountOpened) canonical() Op {
	o.Key = slices.Clone(o.Key)
	return o
}
func (o AccountOpened) validate() error {
	if err := account("opened", o.Account); err != nil {
		return err
	}
	if err := ecash.CheckEd25519Key(o.Key); err != nil {
		return invalid("account key: %v", err)
	}
	return nil
}
func (o AccountOpened) encodeTo(e *ecash.Encoder) {
	e.U64(o.Account)
	if o.Merchant {
		e.U8(1)
	} else {
		e.U8(0)
	}
	e.Fixed(o.Key)
}
func decodeAccountOpened(d *ecash.Decoder) Op {
	o := AccountOpened{Account: d.U64()}
	m := d.U8()
	o.Key = d.Fixed(32)
	switch m {
	case 0:
	case 1:
		o.Merchant = true
	default:
		return badOp{invalid("merchant flag %d (want 0 or 1)", m)}
	}
	return o
}

// badOp carries a decoding error to validate, so every decoder returns an Op.
type badOp struct{ err error }

func (badOp) Kind() Kind                { return 0 }
func (b badOp) canonical() Op           { return b }
func (b badOp) validate() error         { return b.err }
func (badOp) encodeTo(e *ecash.Encoder) {}

// Credit records money entering an account from outside (the funding
// account is debited).
type Credit struct {
	Account   uint64
	Amount    ecash.Amount // > 0
	Reference ecash.Hash   // OptionalHash of the idempotency reference
}

func (Credit) Kind() Kind      { return KindCredit }
func (o Credit) canonical() Op { return o }
func (o Credit) validate() error {
	if err := account("credited", o.Account); err != nil {
		return err
	}
	return positive("amount", o.Amount, "")
}
func (o Credit) encodeTo(e *ecash.Encoder) {
	e.U64(o.Account)
	e.Amount(o.Amount)
	e.Fixed(o.Reference[:])
}
func decodeCredit(d *ecash.Decoder) Op {
	return Credit{Account: d.U64(), Amount: d.Amount(), Reference: fixedHash(d)}
}

// Withdraw records an account debited for blind-signed coins. It holds the
// number of coins per denomination and the hash of the signed withdraw
// request — never the blinded messages or the blind signatures, so nothing
// in it can be computed from the later deposit of those coins.
type Withdraw struct {
	Account     uint64
	Amount      ecash.Amount // > 0; the total value of Issued
	RequestHash ecash.Hash   // SHA-256 of the withdraw-request body
	// AccountSig is the account key's Ed25519 signature over
	// ecash.WithdrawSignatureInput(Account, Amount + Fee, RequestHash): the
	// customer's authorisation of the debit, which the Auditor checks.
	AccountSig []byte
	Issued     []DenomCount // sorted by denomination id
	Fee        ecash.Amount // withdraw fees, on top of Amount; encoded only when not zero
}

func (Withdraw) Kind() Kind { return KindWithdraw }
func (o Withdraw) canonical() Op {
	o.Issued = sortedClone(o.Issued, denomKey)
	o.Fee = canonicalFee(o.Fee)
	return o
}
func (o Withdraw) validate() error {
	if err := account("debited", o.Account); err != nil {
		return err
	}
	if err := positive("amount", o.Amount, ""); err != nil {
		return err
	}
	if err := signature("account signature", o.AccountSig); err != nil {
		return err
	}
	if err := checkFee(o.Fee, o.Amount, false); err != nil {
		return err
	}
	return checkDenomCounts("issued", o.Issued, o.Amount.Currency, o.Amount)
}
func (o Withdraw) encodeTo(e *ecash.Encoder) {
	e.U64(o.Account)
	e.Amount(o.Amount)
	e.Fixed(o.RequestHash[:])
	e.Fixed(o.AccountSig)
	encodeDenomCounts(e, o.Issued)
	encodeFee(e, o.Fee)
}
func decodeWithdraw(d *ecash.Decoder) Op {
	return Withdraw{Account: d.U64(), Amount: d.Amount(), RequestHash: fixedHash(d), AccountSig: d.Fixed(ed25519.SignatureSize), Issued: decodeDenomCounts(d),
		Fee: decodeFee(d)}
}

// Debit is what the withdrawal takes from the account: Amount + Fee.
func (o Withdraw) Debit() ecash.Amount {
	return ecash.Amount{Currency: o.Amount.Currency, Value: o.Amount.Value + o.Fee.Value}
}

// Deposit records coins spent into a merchant account for one payment
// request.
type Deposit struct {
	Merchant    uint64
	Amount      ecash.Amount // > 0; the total value of Coins
	PaymentHash ecash.Hash   // the payment request's hash
	Coins       []SpentCoin  // sorted by coin id
	Fee         ecash.Amount // deposit fees, < Amount: the merchant is credited Amount − Fee; encoded only when not zero
}

func (Deposit) Kind() Kind { return KindDeposit }
func (o Deposit) canonical() Op {
	o.Coins = sortedClone(o.Coins, spentKey)
	o.Fee = canonicalFee(o.Fee)
	return o
}
func (o Deposit) validate() error {
	if err := account("merchant", o.Merchant); err != nil {
		return err
	}
	if err := positive("amount", o.Amount, ""); err != nil {
		return err
	}
	if err := checkFee(o.Fee, o.Amount, true); err != nil {
		return err
	}
	return checkSpentCoins("coins", o.Coins, o.Amount.Currency, o.Amount)
}
func (o Deposit) encodeTo(e *ecash.Encoder) {
	e.U64(o.Merchant)
	e.Amount(o.Amount)
	e.Fixed(o.PaymentHash[:])
	encodeSpentCoins(e, o.Coins)
	encodeFee(e, o.Fee)
}
func decodeDeposit(d *ecash.Decoder) Op {
	return Deposit{Merchant: d.U64(), Amount: d.Amount(), PaymentHash: fixedHash(d), Coins: decodeSpentCoins(d), Fee: decodeFee(d)}
}

// Credited is what the merchant receives: Amount − Fee.
func (o Deposit) Credited() ecash.Amount {
	return ecash.Amount{Currency: o.Amount.Currency, Value: o.Amount.Value - o.Fee.Value}
}

// Swap records coins exchanged for fresh coins of at most the same value
// (the difference is the fee). Like a withdrawal, the fresh coins appear
// only as counts per denomination. Besides coins, a swap may spend the
// credit refunds restored to coins spent before (Credits, encoded only when
// not empty).
type Swap struct {
	RequestHash ecash.Hash     // SHA-256 of the signed swap request
	AmountIn    ecash.Amount   // > 0; the total value of Spent and Credits
	AmountOut   ecash.Amount   // > 0, ≤ AmountIn; the total value of Issued
	Spent       []SpentCoin    // sorted by coin id
	Issued      []DenomCount   // sorted by denomination id
	Credits     []RefundedCoin // refund credit spent, each a coin's whole credit; sorted by coin id
}

func (Swap) Kind() Kind { return KindSwap }
func (o Swap) canonical() Op {
	o.Spent = sortedClone(o.Spent, spentKey)
	o.Issued = sortedClone(o.Issued, denomKey)
	if len(o.Credits) == 0 {
		o.Credits = nil
	} else {
		o.Credits = sortedClone(o.Credits, refundKey)
	}
	return o
}
func (o Swap) validate() error {
	cur := o.AmountIn.Currency
	if err := positive("amount in", o.AmountIn, ""); err != nil {
		return err
	}
	if err := positive("amount out", o.AmountOut, cur); err != nil {
		return err
	}
	if o.AmountOut.Value > o.AmountIn.Value {
		return invalid("swap issues %s for %s", o.AmountOut, o.AmountIn)
	}
	spentIn := o.AmountIn
	// nil is no credits. A decoded list is never nil, and Encode drops an
	// empty one (canonical), so checkRefundedCoins refusing an empty list
	// refuses its only source: a present list of count 0, which the encoder
	// never writes (a second encoding of the swap).
	if o.Credits != nil {
		credits, err := checkRefundedCoins("credits", o.Credits, cur)
		if err != nil {
			return err
		}
		if credits.Value > o.AmountIn.Value {
			return invalid("credits of %s in a swap of %s", credits, o.AmountIn)
		}
		spentIn.Value -= credits.Value
		for _, c := range o.Spent {
			if _, dup := slices.BinarySearchFunc(o.Credits, c.ID, func(r RefundedCoin, id ecash.Hash) int { return hashLess(r.ID, id) }); dup {
				return invalid("coin %x spent and its credit spent in one swap", c.ID[:8])
			}
		}
		if spentIn.Value == 0 && len(o.Spent) == 0 {
			return checkDenomCounts("issued", o.Issued, cur, o.AmountOut)
		}
	}
	if err := checkSpentCoins("spent", o.Spent, cur, spentIn); err != nil {
		return err
	}
	return checkDenomCounts("issued", o.Issued, cur, o.AmountOut)
}
func (o Swap) encodeTo(e *ecash.Encoder) {
	e.Fixed(o.RequestHash[:])
	e.Amount(o.AmountIn)
	e.Amount(o.AmountOut)
	encodeSpentCoins(e, o.Spent)
	encodeDenomCounts(e, o.Issued)
	if len(o.Credits) > 0 {
		encodeRefundedCoins(e, o.Credits)
	}
}
func decodeSwap(d *ecash.Decoder) Op {
	o := Swap{RequestHash: fixedHash(d), AmountIn: d.Amount(), AmountOut: d.Amount(),
		Spent: decodeSpentCoins(d), Issued: decodeDenomCounts(d)}
	if d.More() { // present: non-nil even if empty, which validate refuses
		o.Credits = decodeRefundedCoins(d)
	}
	return o
}

// Refund records a merchant giving back (part of) a deposited payment: the
// merchant is debited and the value is restored to the coins, which the
// wallet can then swap.
type Refund struct {
	Merchant    uint64
	Amount      ecash.Amount // > 0; the total value of Coins
	PaymentHash ecash.Hash   // the payment request refunded
	RefundHash  ecash.Hash   // SHA-256 of the refund-request body: Request().Hash()
	// RefundID, CreatedAt and MerchantSig complete the merchant's signed
	// refund request (with Merchant, Amount and PaymentHash), so that the
	// Auditor checks the merchant authorised the debit.
	RefundID    uint64
	CreatedAt   time.Time      // whole milliseconds
	MerchantSig []byte         // Ed25519, by the merchant account's key
	Coins       []RefundedCoin // sorted by coin id
	Fee         ecash.Amount   // refund fees the merchant pays on top of Amount; encoded only when not zero
}

// Request is the merchant's refund request the entry records (its
// signature not checked).
func (o Refund) Request() *ecash.RefundRequest {
	return &ecash.RefundRequest{PaymentHash: o.PaymentHash, MerchantAccount: o.Merchant, RefundID: o.RefundID,
		Amount: o.Amount, CreatedAt: o.CreatedAt, MerchantSig: o.MerchantSig}
}

func (Refund) Kind() Kind { return KindRefund }
func (o Refund) canonical() Op {
	o.Coins = sortedClone(o.Coins, refundKey)
	o.Fee = canonicalFee(o.Fee)
	o.CreatedAt = time.UnixMilli(o.CreatedAt.UnixMilli()).UTC()
	return o
}
func (o Refund) validate() error {
	if err := account("merchant", o.Merchant); err != nil {
		return err
	}
	if err := positive("amount", o.Amount, ""); err != nil {
		return err
	}
	if err := checkFee(o.Fee, o.Amount, false); err != nil {
		return err
	}
	if err := signature("merchant signature", o.MerchantSig); err != nil {
		return err
	}
	if o.Request().Hash() != o.RefundHash {
		return invalid("refund hash %x is not the hash of the refund request the entry records", o.RefundHash[:8])
	}
	total, err := checkRefundedCoins("coins", o.Coins, o.Amount.Currency)
	if err != nil {
		return err
	}
	if total != o.Amount {
		return invalid("refunded coins total %s, the entry says %s", total, o.Amount)
	}
	return nil
}
func (o Refund) encodeTo(e *ecash.Encoder) {
	e.U64(o.Merchant)
	e.Amount(o.Amount)
	e.Fixed(o.PaymentHash[:])
	e.Fixed(o.RefundHash[:])
	e.U64(o.RefundID)
	e.I64(o.CreatedAt.UnixMilli())
	e.Fixed(o.MerchantSig)
	encodeRefundedCoins(e, o.Coins)
	encodeFee(e, o.Fee)
}
func decodeRefund(d *ecash.Decoder) Op {
	return Refund{Merchant: d.U64(), Amount: d.Amount(), PaymentHash: fixedHash(d), RefundHash: fixedHash(d),
		RefundID: d.U64(), CreatedAt: time.UnixMilli(d.I64()).UTC(), MerchantSig: d.Fixed(ed25519.SignatureSize),
		Coins: decodeRefundedCoins(d), Fee: decodeFee(d)}
}

// Recoup records a coin of a revoked denomination paid back into an
// account, after its owner revealed the withdrawal.
type Recoup struct {
	Account     uint64       // credited (a withdrawn coin); 0 when Issued re-issues the value
	Amount      ecash.Amount // > 0
	Coin        ecash.Hash   // coin id
	Denom       ecash.Hash   // its (revoked) denomination
	RequestHash ecash.Hash   // SHA-256 of the recoup request body
	Issued      []DenomCount // a coin from a swap: the coins re-issued for it, worth Amount; sorted by id
}

func (Recoup) Kind() Kind { return KindRecoup }
func (o Recoup) canonical() Op {
	if len(o.Issued) == 0 {
		o.Issued = nil
	} else {
		o.Issued = sortedClone(o.Issued, denomKey)
	}
	return o
}
func (o Recoup) validate() error {
	if err := positive("amount", o.Amount, ""); err != nil {
		return err
	}
	if len(o.Issued) == 0 {
		return account("credited", o.Account)
	}
	if o.Account != 0 {
		return invalid("a recoup both credits account %d and re-issues coins", o.Account)
	}
	return checkDenomCounts("issued", o.Issued, o.Amount.Currency, o.Amount)
}
func (o Recoup) encodeTo(e *ecash.Encoder) {
	e.U64(o.Account)
	e.Amount(o.Amount)
	e.Fixed(o.Coin[:])
	e.Fixed(o.Denom[:])
	e.Fixed(o.RequestHash[:])
	encodeDenomCounts(e, o.Issued)
}
func decodeRecoup(d *ecash.Decoder) Op {
	o := Recoup{Account: d.U64(), Amount: d.Amount(), Coin: fixedHash(d), Denom: fixedHash(d), RequestHash: fixedHash(d), Issued: decodeDenomCounts(d)}
	if len(o.Issued) == 0 {
		o.Issued = nil
	}
	return o
}

// Outcome is the decision recorded for a NetBill payment order.
type Outcome uint8

// The outcomes; their String forms are the bank's Check* constants.
const (
	OutcomeApproved          Outcome = 1
	OutcomeInsufficientFunds Outcome = 2
	OutcomeOverLimit         Outcome = 3
	OutcomeAccountLocked     Outcome = 4
	OutcomeExpired           Outcome = 5 // declined: the EPO expired before the bank decided
	OutcomeBadKey            Outcome = 6 // declined: the goods key does not match its commitment
)

var outcomeNames = [...]string{
	OutcomeApproved:          "approved",
	OutcomeInsufficientFunds: "insufficient-funds",
	OutcomeOverLimit:         "over-limit",
	OutcomeAccountLocked:     "account-locked",
	OutcomeExpired:           "expired",
	OutcomeBadKey:            "bad-key",
}

func (o Outcome) valid() bool { return o >= OutcomeApproved && int(o) < len(outcomeNames) }

// String is the outcome's name: "approved", "insufficient-funds",
// "over-limit", "account-locked", "expired" or "bad-key".
func (o Outcome) String() string {
	if !o.valid() {
		return fmt.Sprintf("outcome(%d)", uint8(o))
	}
	return outcomeNames[o]
}

// ParseOutcome parses an outcome's name (the bank's Check* constants).
func ParseOutcome(s string) (Outcome, error) {
	for o := OutcomeApproved; o.valid(); o++ {
		if outcomeNames[o] == s {
			return o, nil
		}
	}
	return 0, invalid("unknown check outcome %q", s)
}

// Check records the bank's decision on a NetBill electronic payment order.
// An approval moves Amount from Customer to Merchant; a decline moves
// nothing. The product and the customer's memo are not logged: EPOHash
// commits to them.
type Check struct {
	EPOID   string     // canonical EPOID, 1 to MaxEPOIDLen printable ASCII bytes
	EPOHash ecash.Hash // hash of the signed EPO
	// PartsHash (ecash.EPOPartsHash of the EPO's clear and sealed parts)
	// and CustomerSig, the customer's Ed25519 signature over
	// ecash.EPOSignatureInput(EPOID, Amount, Merchant, PartsHash): the
	// customer's authorisation of the debit, which the Auditor checks.
	PartsHash   ecash.Hash
	CustomerSig []byte
	Customer    uint64
	Merchant    uint64
	Amount      ecash.Amount // > 0
	Outcome     Outcome
}

func (Check) Kind() Kind      { return KindCheck }
func (o Check) canonical() Op { return o }
func (o Check) validate() error {
	if err := account("customer", o.Customer); err != nil {
		return err
	}
	if err := account("merchant", o.Merchant); err != nil {
		return err
	}
	if err := positive("amount", o.Amount, ""); err != nil {
		return err
	}
	if !o.Outcome.valid() {
		return invalid("unknown outcome %d", uint8(o.Outcome))
	}
	if err := signature("customer signature", o.CustomerSig); err != nil {
		return err
	}
	if len(o.EPOID) == 0 || len(o.EPOID) > MaxEPOIDLen {
		return invalid("EPOID of %d bytes (want 1 to %d)", len(o.EPOID), MaxEPOIDLen)
	}
	for i := 0; i < len(o.EPOID); i++ {
		if c := o.EPOID[i]; c < 0x21 || c > 0x7e {
			return invalid("EPOID byte %#x is not printable ASCII", c)
		}
	}
	return nil
}
func (o Check) encodeTo(e *ecash.Encoder) {
	e.String(o.EPOID)
	e.Fixed(o.EPOHash[:])
	e.Fixed(o.PartsHash[:])
	e.Fixed(o.CustomerSig)
	e.U64(o.Customer)
	e.U64(o.Merchant)
	e.Amount(o.Amount)
	e.U8(uint8(o.Outcome))
}
func decodeCheck(d *ecash.Decoder) Op {
	return Check{EPOID: d.String(), EPOHash: fixedHash(d), PartsHash: fixedHash(d), CustomerSig: d.Fixed(ed25519.SignatureSize),
		Customer: d.U64(), Merchant: d.U64(), Amount: d.Amount(), Outcome: Outcome(d.U8())}
}

// Payout records money leaving an account to the outside (a settlement to
// a merchant's external bank account).
type Payout struct {
	Account   uint64
	Amount    ecash.Amount // > 0
	Reference ecash.Hash   // OptionalHash of the payout reference
}

func (Payout) Kind() Kind      { return KindPayout }
func (o Payout) canonical() Op { return o }
func (o Payout) validate() error {
	if err := account("debited", o.Account); err != nil {
		return err
	}
	return positive("amount", o.Amount, "")
}
func (o Payout) encodeTo(e *ecash.Encoder) {
	e.U64(o.Account)
	e.Amount(o.Amount)
	e.Fixed(o.Reference[:])
}
func decodePayout(d *ecash.Decoder) Op {
	return Payout{Account: d.U64(), Amount: d.Amount(), Reference: fixedHash(d)}
}

// KeySet records a key set the bank published: the master-signed encoding
// (ecash.KeySet.Encode), kept whole so the log alone tells an auditor every
// denomination's value and windows. This package checks only its tag;
// ecash.DecodeKeySet checks the rest.
type KeySet struct {
	Signed []byte
}

func (KeySet) Kind() Kind { return KindKeySet }
func (o KeySet) canonical() Op {
	o.Signed = slices.Clone(o.Signed)
	return o
}
func (o KeySet) validate() error {
	if len(o.Signed) == 0 || len(o.Signed) > ecash.MaxFieldLen {
		return invalid("signed key set of %d bytes", len(o.Signed))
	}
	if err := ecash.NewDecoder("signed-keyset", o.Signed).Err(); err != nil {
		return invalid("not a signed key set: %v", err)
	}
	return nil
}
func (o KeySet) encodeTo(e *ecash.Encoder) { e.VarBytes(o.Signed) }
func decodeKeySet(d *ecash.Decoder) Op     { return KeySet{Signed: d.VarBytes(ecash.MaxFieldLen)} }
