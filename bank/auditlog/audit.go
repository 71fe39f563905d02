package auditlog

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindbank/blindbank/ecash"
)

// The auditor: replaying the log and checking the bank's invariants
// (docs/AUDIT.md).
//
// An Auditor applies encoded entries in index order. It keeps the right
// edge of the Merkle tree (so its Root can be compared with a signed
// checkpoint) and a replica of what the log says about the ledger: every
// account's balance, the e-cash outstanding, the coins issued and redeemed
// per denomination, the coins spent, the EPOIDs decided and the request,
// payment and reference hashes already used. Apply refuses the first entry
// that breaks an invariant with an *AuditError naming it, and leaves the
// state as it was before that entry, so an audit can be saved
// (MarshalBinary) and resumed (UnmarshalBinary) at any entry.
//
// What the log alone cannot show: that a debit was authorised. A withdraw
// entry carries only the hash of the signed request (the request holds the
// blinded coins, which must stay private) and a check entry only the hash of
// the signed payment order, so the account holder's signature behind a
// debit is not in the log and is not checked here.

// ErrInvariant is matched (errors.Is) by every *AuditError.
var ErrInvariant = errors.New("auditlog: the log breaks an invariant")

// ErrEmergency is matched by an *AuditError whose Check is CheckEmergency:
// more coins of a denomination redeemed than were issued, by count or by
// value. The denomination's private key has leaked or the bank signed
// outside the log: stop issuing it, revoke it, investigate.
var ErrEmergency = errors.New("auditlog: emergency: more coins redeemed than issued")

// The checks an AuditError names.
const (
	CheckDecode       = "decode"        // the entry does not decode
	CheckIndex        = "index"         // the entry names another index than its position
	CheckTree         = "tree"          // the tree cannot be extended (an auditor state without its hashes)
	CheckCurrency     = "currency"      // an amount in another currency than the bank's
	CheckKeySet       = "keyset"        // a key set that does not verify, or of another bank
	CheckAccount      = "account"       // an account used before it was opened, opened twice, or a key reused
	CheckBalance      = "balance"       // an account debited below zero
	CheckOutstanding  = "outstanding"   // more e-cash redeemed than is outstanding
	CheckDenomination = "denomination"  // a denomination in no earlier key set, or a value that differs from it
	CheckRevoked      = "revoked"       // a revoked denomination issued or spent, or a recoup of one not revoked
	CheckDoubleSpend  = "double-spend"  // a coin spent (or recouped) twice
	CheckEmergency    = "emergency"     // a denomination redeemed more than issued
	CheckEPOID        = "epoid"         // a second outcome for one EPOID
	CheckReplay       = "replay"        // a request, payment or reference hash used twice: one authorisation, two effects
	CheckAuthorised   = "authorised"    // a debit without the account holder's valid signature
	CheckRefund       = "refund"        // a refund of something never deposited, of more than it was worth, or not by or to the payment's merchant and coins
	CheckFees         = "fees"          // a fee other than the key set's fees of the coins concerned
	CheckOverflow     = "overflow"      // a total beyond 64 bits
	CheckConservation = "conservation"  // the ledger does not add up (a fault in the auditor itself)
	CheckState        = "auditor-state" // a saved auditor state that is not self-consistent
)

// AuditError is an entry that breaks an invariant. The auditor's state is
// that before the entry.
type AuditError struct {
	Index int64  // the entry's position in the log
	Kind  Kind   // its kind (0 if it does not decode)
	Check string // the Check* constant that failed
	Msg   string // what failed, in words
	Err   error  // the underlying error, if any (a decoding error, say)
}

func (e *AuditError) Error() string {
	k := "?"
	if e.Kind.valid() {
		k = e.Kind.String()
	}
	return fmt.Sprintf("entry %d (%s): %s: %s", e.Index, k, e.Check, e.Msg)
}

// Is matches ErrInvariant, and ErrEmergency for CheckEmergency.
func (e *AuditError) Is(target error) bool {
	return target == ErrInvariant || (target == ErrEmergency && e.Check == CheckEmergency)
}

// Unwrap returns the underlying error.
func (e *AuditError) Unwrap() error { return e.Err }

// Emergency reports whether the failure is an emergency (ErrEmergency).
func (e *AuditError) Emergency() bool { return e.Check == CheckEmergency }

// MaxAuditWarnings bounds the warnings an Auditor keeps (it counts them
// all).
const MaxAuditWarnings = 100

// AuditWarning is something suspicious that breaks no invariant of money:
// a coin issued outside its denomination's withdraw window, say.
type AuditWarning struct {
	Index int64
	Kind  Kind
	Msg   string
}

func (w AuditWarning) String() string {
	return fmt.Sprintf("entry %d (%s): %s", w.Index, w.Kind, w.Msg)
}

// Totals of the ledger, in minor units of the bank's currency.
const (
	totCredited   = iota // Credit: money in from outside
	totPaidOut           // Payout: money out to the outside
	totWithdrawn         // Withdraw: accounts → e-cash
	totDeposited         // Deposit: e-cash → accounts
	totSwappedIn         // Swap: e-cash spent
	totSwappedOut        // Swap: e-cash issued
	totFees              // fees: withdrawals', deposits', refunds', and swaps' in − out
	totChecks            // Check approved: customer → merchant
	totRefunded          // Refund: merchant → e-cash
	totRecouped          // Recoup: e-cash → accounts
	totIssued            // value of all coins issued (withdrawals and swaps)
	totRedeemed          // value of all coins redeemed (deposits, swaps, recoups), and refund credit spent in swaps
	numTotals
)

type seenNS uint8

// What Apply remembers having seen, by namespace.
const (
	seenCoin     seenNS = iota + 1 // coin id: spent or recouped (value: the coin's value; ref: its denomination's ordinal)
	seenWithdraw                   // withdraw request hash
	seenSwap                       // swap request hash
	seenPayment                    // payment hash (value: what the deposit credited; ref: the merchant it paid)
	seenCredit                     // credit reference hash (non-zero)
	seenPayout                     // payout reference hash (non-zero)
	seenRefund                     // refund hash
	seenRecoup                     // recoup request hash
	seenEPOID                      // SHA-256 of the EPOID
	seenLast     = seenEPOID

	// creditSpent keys, in the refunded map, the refund credit of a coin
	// already spent again in swaps.
	creditSpent = seenLast + 1
)

type seenKey struct {
	ns seenNS
	h  ecash.Hash
}

type seenVal struct {
	index int64  // the entry that used it
	value uint64 // the coin's value, the deposit's amount; 0 otherwise
	// ref is what a refund must match: a payment's merchant, a coin's
	// denomination (denomState.ordinal); 0 otherwise. A coin's payment is
	// the one its index names (a deposit entry records one payment and its
	// coins). The auditor keeps one seenVal for every coin ever spent, so
	// these stand in for a 32-byte payment hash and denomination id per
	// coin: 8 bytes instead of 64, in memory and in the saved state.
	ref uint64
}

// hasRef reports whether seenVals of namespace ns carry a ref (saved only
// for those).
func (ns seenNS) hasRef() bool { return ns == seenCoin || ns == seenPayment }

type accountState struct {
	merchant bool
	key      [32]byte
	balance  uint64
	opened   int64 // index of the AccountOpened entry
}

// acctDenom is an account and a denomination.
type acctDenom struct {
	account uint64
	denom   ecash.Hash
}

type denomState struct {
	value         ecash.Amount
	withdrawStart int64 // Unix seconds: the earliest start and latest ends
	withdrawEnd   int64 // of every key set that listed it
	depositEnd    int64
	revoked       bool
	listed        int64  // index of the first key set that listed it
	ordinal       uint64 // 1, 2, …: the order key sets first listed the denominations in (seenVal.ref of its coins)
	issuedCount   uint64
	issuedValue   uint64
	redeemedCount uint64
	redeemedValue uint64
	fees          [numFees]uint64 // per coin, from the first key set that listed it
}

// Fees of a denomination, in denomState.fees.
const (
	feeWithdraw = iota
	feeDeposit
	feeSwap
	feeRefund
	numFees
)

func feesOf(f ecash.Fees) [numFees]uint64 {
	return [numFees]uint64{f.Withdraw.Value, f.Deposit.Value, f.Swap.Value, f.Refund.Value}
}

// Auditor replays a log entry by entry and checks the bank's invariants.
// Make one with NewAuditor; it is not safe for concurrent use.
type Auditor struct {
	master   ed25519.PublicKey // pinned, or from the first key set logged
	size     int64
	frontier map[int64]tlog.Hash // stored-hash index → hash: the maximal complete subtrees of size
	currency string
	kinds    [len(kindNames)]int64

	totals      [numTotals]uint64
	outstanding uint64 // e-cash in circulation
	balances    uint64 // sum of all account balances
	approved    int64  // checks approved
	declined    int64  // checks declined
	keySets     int64
	// keySetIssued is the issue time (Unix seconds) of the key set logged
	// last; keySetIssuedKnown is false before the first.
	keySetIssued      int64
	keySetIssuedKnown bool
	// keySetEntries are the KeySet entries applied at or after
	// keySetsFrom, in log order: the newest below a size is what the
	// keyset line of a checkpoint of that size must name. keySetsFrom is 0
	// (every one) except in an auditor restored from a v4 or v3 state,
	// which did not record them: the size it was restored at.
	keySetEntries []KeySetLine
	keySetsFrom   int64

	accounts map[uint64]*accountState
	keys     map[[32]byte]uint64 // account key → account
	denoms   map[ecash.Hash]*denomState
	signing  []ed25519.PublicKey // every signing key a logged key set named
	seen     map[seenKey]seenVal
	refunded map[seenKey]uint64 // coin or payment → value refunded; creditSpent coin → credit spent again
	// withdrawn counts the coins of a denomination an account withdrew and
	// was not yet paid back by a recoup: a credited recoup pays the
	// account that withdrew the coin, so never more coins than this. A
	// bound only: a coin the account spent since still counts (the log
	// cannot tell which coins were spent), so a bank could pay such an
	// account for made-up coins within the denomination's outstanding.
	withdrawn map[acctDenom]uint64

	warnings      []AuditWarning
	warningsTotal int64
}

// NewAuditor returns an auditor of an empty log. If master is not nil,
// every key set in the log must be signed by it; otherwise the first key
// set logged pins its master key for the rest.
func NewAuditor(master ed25519.PublicKey) *Auditor {
	a := &Auditor{
		frontier:  map[int64]tlog.Hash{},
		accounts:  map[uint64]*accountState{},
		keys:      map[[32]byte]uint64{},
		denoms:    map[ecash.Hash]*denomState{},
		seen:      map[seenKey]seenVal{},
		refunded:  map[seenKey]uint64{},
		withdrawn: map[acctDenom]uint64{},
	}
	if master != nil {
		a.master = slices.Clone(master)
	}
	return a
}

// Size is the number of entries applied: the index of the next.
func (a *Auditor) Size() int64 { return a.size }

// Master is the bank's master key: pinned, or taken from the first key set
// logged (nil before).
func (a *Auditor) Master() ed25519.PublicKey { return slices.Clone(a.master) }

// Currency is the bank's currency ("" before the first key set or amount).
func (a *Auditor) Currency() string { return a.currency }

// SigningKeys are the online signing keys the logged key sets name
// (current and retired), each vouched for by the master key: the keys a
// checkpoint of this log may carry.
func (a *Auditor) SigningKeys() []ed25519.PublicKey {
	out := make([]ed25519.PublicKey, len(a.signing))
	for i, k := range a.signing {
		out[i] = slices.Clone(k)
	}
	return out
}

// Root is the root hash of the entries applied.
func (a *Auditor) Root() (tlog.Hash, error) {
	return tlog.TreeHash(a.size, frontierReader(a.frontier))
}

// Checkpoint is the checkpoint, under origin, of the entries applied.
func (a *Auditor) Checkpoint(origin string) (Checkpoint, error) {
	root, err := a.Root()
	if err != nil {
		return Checkpoint{}, err
	}
	ks, known := a.NewestKeySet(a.size)
	return Checkpoint{Origin: origin, Size: a.size, Root: root, KeySet: ks, HasKeySet: known && ks != (KeySetLine{})}, nil
}

// NewestKeySet returns the newest KeySet entry below size (at most the
// size applied): what the keyset line of a checkpoint of that size must
// name; the zero KeySetLine if the log has none below it. known is false
// when the auditor cannot say: restored from a v4 or v3 state (which did
// not record key sets) and no key set applied since lies below size.
func (a *Auditor) NewestKeySet(size int64) (ks KeySetLine, known bool) {
	if size > a.size {
		return KeySetLine{}, false
	}
	i := sort.Search(len(a.keySetEntries), func(i int) bool { return a.keySetEntries[i].Index >= size })
	if i > 0 {
		return a.keySetEntries[i-1], true
	}
	return KeySetLine{}, a.keySetsFrom == 0
}

// VerifyKeySetLine checks the keyset line of cp, a checkpoint of a tree
// the auditor has applied (cp.Size at most its size; the caller checks
// cp's root, by Verify or a consistency proof): it must name the newest
// KeySet entry below cp.Size. checked is false when cp has no line (signed
// before banks committed to their key sets) and when the auditor cannot
// say (NewestKeySet). A false line wraps ErrBadProof and ErrKeySetLine.
func (a *Auditor) VerifyKeySetLine(cp Checkpoint) (checked bool, err error) {
	if cp.Size > a.size {
		return false, fmt.Errorf("%w: %d entries replayed, the checkpoint has %d", ErrBadProof, a.size, cp.Size)
	}
	if !cp.HasKeySet {
		return false, nil
	}
	want, known := a.NewestKeySet(cp.Size)
	switch {
	case !known:
		return false, nil
	case want == (KeySetLine{}):
		return true, fmt.Errorf("%w: %w: the checkpoint of %d entries names key set %s… at entry %d, but no key set is logged below it",
			ErrBadProof, ErrKeySetLine, cp.Size, short(cp.KeySet.Hash), cp.KeySet.Index)
	case cp.KeySet != want:
		return true, fmt.Errorf("%w: %w: the checkpoint of %d entries names key set %s… at entry %d as the newest logged, but the newest is %s… at entry %d: the bank hides a key set from whoever it serves an older one",
			ErrBadProof, ErrKeySetLine, cp.Size, short(cp.KeySet.Hash), cp.KeySet.Index, short(want.Hash), want.Index)
	}
	return true, nil
}

// Verify checks that the entries applied are exactly the log cp describes:
// the same size and the same root, and, if cp has a keyset line, that it
// names the newest KeySet entry applied (not checkable by an auditor
// restored from a v4 or v3 state that has applied no key set since). A
// checkpoint without a keyset line is one signed before banks committed to
// their key sets: Verify accepts it, and a caller that fetched it fresh
// from a bank refuses it (RequireKeySet). A failure wraps ErrBadProof.
func (a *Auditor) Verify(cp Checkpoint) error {
	if cp.Size != a.size {
		return fmt.Errorf("%w: %d entries replayed, the checkpoint has %d", ErrBadProof, a.size, cp.Size)
	}
	root, err := a.Root()
	if err != nil {
		return err
	}
	if root != cp.Root {
		return fmt.Errorf("%w: %d entries make root %s, the checkpoint says %s", ErrBadProof, a.size, root, cp.Root)
	}
	_, err = a.VerifyKeySetLine(cp)
	return err
}

// ErrKeySetLine is wrapped (with ErrBadProof) by a checkpoint whose keyset
// line does not name the newest key set of its tree.
var ErrKeySetLine = errors.New("auditlog: the checkpoint's keyset line is false")

// RequireKeySet refuses a checkpoint of a non-empty log without a keyset
// line: one a bank of this version serves always has one, so a fresh one
// without it hides which key set is newest (ErrMalformedCheckpoint).
// Checkpoints saved earlier are read without it.
func RequireKeySet(cp Checkpoint) error {
	if cp.Size > 0 && !cp.HasKeySet {
		return fmt.Errorf("%w: the checkpoint of %d entries has no keyset line naming the newest key set logged", ErrMalformedCheckpoint, cp.Size)
	}
	return nil
}

// RootsAfter returns the roots the tree would have after each of entries
// (encoded, the next ones in order) were appended: roots[i] is the root of
// the first Size()+i+1 entries. It changes nothing, decodes nothing, and
// lets a caller check a batch against a checkpoint before applying it.
func (a *Auditor) RootsAfter(entries [][]byte) ([]tlog.Hash, error) {
	front := a.frontier
	roots := make([]tlog.Hash, len(entries))
	for i, b := range entries {
		n := a.size + int64(i)
		next, err := grow(front, n, b)
		if err != nil {
			return nil, err
		}
		front = next
		if roots[i], err = tlog.TreeHash(n+1, frontierReader(front)); err != nil {
			return nil, err
		}
	}
	return roots, nil
}

// frontierIndexes lists the stored-hash indexes of the maximal complete
// subtrees of a tree of n leaves, left to right: all TreeHash(n) reads, and
// all that appending leaf n reads.
func frontierIndexes(n int64) []int64 {
	var out []int64
	var start int64
	for level := 62; level >= 0; level-- {
		if n>>level&1 == 1 {
			out = append(out, tlog.StoredHashIndex(level, start>>level))
			start += 1 << level
		}
	}
	return out
}

func frontierReader(front map[int64]tlog.Hash) tlog.HashReader {
	return tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			h, ok := front[x]
			if !ok {
				return nil, fmt.Errorf("auditlog: auditor: tree hash %d not kept", x)
			}
			out[i] = h
		}
		return out, nil
	})
}

// grow returns the frontier after appending entry b as leaf n to the tree
// whose frontier is front.
func grow(front map[int64]tlog.Hash, n int64, b []byte) (map[int64]tlog.Hash, error) {
	hs, err := tlog.StoredHashes(n, b, frontierReader(front))
	if err != nil {
		return nil, err
	}
	first := tlog.StoredHashIndex(0, n)
	next := make(map[int64]tlog.Hash, 64)
	for _, x := range frontierIndexes(n + 1) {
		switch {
		case x >= first && x < first+int64(len(hs)):
			next[x] = hs[x-first]
		default:
			h, ok := front[x]
			if !ok {
				return nil, fmt.Errorf("auditlog: auditor: tree hash %d not kept", x)
			}
			next[x] = h
		}
	}
	return next, nil
}

// change is what one entry does to the state, gathered before anything is
// applied, so a refused entry changes nothing.
type change struct {
	a        *Auditor
	e        *Entry
	debit    map[uint64]uint64 // account → value taken
	credit   map[uint64]uint64 // account → value given
	outIn    uint64            // e-cash issued (outstanding grows)
	outOut   uint64            // e-cash redeemed (outstanding shrinks)
	totals   [numTotals]uint64
	issue    map[ecash.Hash][2]uint64 // denomination → count, value issued
	redeem   map[ecash.Hash][2]uint64 // denomination → count, value redeemed
	seen     []seenAddition
	refunded map[seenKey]uint64
	withdraw map[acctDenom]uint64 // coins withdrawn by an account (Auditor.withdrawn)
	recoup   *acctDenom           // a coin recouped to the account that withdrew it
	open     *accountState
	openID   uint64
	keySet   *ecash.KeySet
	keySetH  ecash.Hash // SHA-256 of keySet's signed bytes
	currency string
	approved bool
	declined bool
	warnings []string
	unsaid   int64 // warnings counted but not kept: MaxAuditWarnings reached
}

type seenAddition struct {
	k seenKey
	v seenVal
}

func (c *change) fail(check, format string, args ...any) error {
	return &AuditError{Index: c.e.Index, Kind: c.e.Kind(), Check: check, Msg: fmt.Sprintf(format, args...)}
}

// warn records a warning. Only the first MaxAuditWarnings of an audit are
// kept, and those past it are counted, not written: a log can make many.
func (c *change) warn(format string, args ...any) {
	if len(c.a.warnings)+len(c.warnings) >= MaxAuditWarnings {
		c.unsaid++
		return
	}
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

func (c *change) amount(v uint64) ecash.Amount {
	cur := c.currency
	if cur == "" {
		cur = c.a.currency
	}
	return ecash.Amount{Currency: cur, Value: v}
}

// money checks the entry's currency (all amounts of one entry share it).
func (c *change) money(amt ecash.Amount) error {
	if c.a.currency != "" && amt.Currency != c.a.currency {
		return c.fail(CheckCurrency, "an amount in %s, the bank's currency is %s", amt.Currency, c.a.currency)
	}
	c.currency = amt.Currency
	return nil
}

// opened returns the account, which an earlier entry must have opened.
func (c *change) opened(id uint64, role string) (*accountState, error) {
	acc, ok := c.a.accounts[id]
	if !ok {
		return nil, c.fail(CheckAccount, "%s account %d was never opened", role, id)
	}
	return acc, nil
}

// fresh checks that a hash of namespace ns was not used before, by an
// earlier entry or this one, and records it with v (at this entry's index).
func (c *change) fresh(ns seenNS, h ecash.Hash, v seenVal, what string) error {
	k := seenKey{ns, h}
	if prev, ok := c.a.seen[k]; ok {
		return c.fail(CheckReplay, "%s %s… was already used by entry %d", what, short(h), prev.index)
	}
	for _, s := range c.seen {
		if s.k == k {
			return c.fail(CheckReplay, "%s %s… appears twice", what, short(h))
		}
	}
	v.index = c.e.Index
	c.seen = append(c.seen, seenAddition{k, v})
	return nil
}

func short(h ecash.Hash) string { return hex.EncodeToString(h[:8]) }

// denom returns a denomination of a logged key set whose value is v.
func (c *change) denom(id ecash.Hash, v ecash.Amount, what string) (*denomState, error) {
	d, ok := c.a.denoms[id]
	if !ok {
		return nil, c.fail(CheckDenomination, "%s of denomination %s…, which no earlier key set lists", what, short(id))
	}
	if d.value != v {
		return nil, c.fail(CheckDenomination, "%s of denomination %s… at %s, the key set values it %s", what, short(id), v, d.value)
	}
	return d, nil
}

func addTo(m map[ecash.Hash][2]uint64, id ecash.Hash, count, value uint64) {
	x := m[id]
	x[0] += count
	x[1] += value
	m[id] = x
}

// checkFee checks that an entry charged exactly the fee its coins' key set
// fees add up to: fee kind k of each denomination, count times.
func (c *change) checkFee(charged ecash.Amount, k int, coins func(yield func(denom ecash.Hash, count uint64) bool)) error {
	var want uint64
	for id, n := range coins {
		d, ok := c.a.denoms[id]
		if !ok {
			return c.fail(CheckDenomination, "a fee for a coin of denomination %s…, which no earlier key set lists", short(id))
		}
		f := d.fees[k] * n // fees are below 2^53, counts at most 1024
		if want += f; want < f {
			return c.fail(CheckOverflow, "fees overflow")
		}
	}
	if charged.Value != want {
		return c.fail(CheckFees, "charged %s of fees, the key set's fees of its coins are %s", c.amount(charged.Value), c.amount(want))
	}
	return nil
}

// coinsBy iterates an entry's coins by denomination, for checkFee: each
// element's denomination and how many coins of it the element stands for.
func coinsBy[T any](xs []T, of func(T) (ecash.Hash, uint64)) func(func(ecash.Hash, uint64) bool) {
	return func(yield func(ecash.Hash, uint64) bool) {
		for _, x := range xs {
			if !yield(of(x)) {
				return
			}
		}
	}
}

func issuedCoins(ds []DenomCount) func(func(ecash.Hash, uint64) bool) {
	return coinsBy(ds, func(d DenomCount) (ecash.Hash, uint64) { return d.Denom, uint64(d.Count) })
}

func spentCoinsOf(cs []SpentCoin) func(func(ecash.Hash, uint64) bool) {
	return coinsBy(cs, func(c SpentCoin) (ecash.Hash, uint64) { return c.Denom, 1 })
}

func refundedCoinsOf(cs []RefundedCoin) func(func(ecash.Hash, uint64) bool) {
	return coinsBy(cs, func(c RefundedCoin) (ecash.Hash, uint64) { return c.Denom, 1 })
}

// issueCoins checks and records coins issued (withdraw, swap).
func (c *change) issueCoins(ds []DenomCount) error {
	ms := c.e.Time.UnixMilli()
	for _, dc := range ds {
		d, err := c.denom(dc.Denom, dc.Value, "coins issued")
		if err != nil {
			return err
		}
		if d.revoked {
			return c.fail(CheckRevoked, "coins issued of denomination %s… (%s), which was revoked", short(dc.Denom), d.value)
		}
		if ms < d.withdrawStart*1000 || ms >= d.withdrawEnd*1000 {
			c.warn("%d coins of %s (%s…) issued outside the denomination's withdraw window", dc.Count, d.value, short(dc.Denom))
		}
		addTo(c.issue, dc.Denom, uint64(dc.Count), uint64(dc.Count)*dc.Value.Value)
	}
	return nil
}

// spendCoins checks and records coins redeemed (deposit, swap).
func (c *change) spendCoins(cs []SpentCoin) error {
	ms := c.e.Time.UnixMilli()
	for _, sc := range cs {
		d, err := c.denom(sc.Denom, sc.Value, "a coin spent")
		if err != nil {
			return err
		}
		if prev, ok := c.a.seen[seenKey{seenCoin, sc.ID}]; ok {
			return c.fail(CheckDoubleSpend, "coin %s… (%s) was already spent in entry %d", short(sc.ID), sc.Value, prev.index)
		}
		if d.revoked {
			return c.fail(CheckRevoked, "coin %s… spent of denomination %s (%s…), which was revoked", short(sc.ID), d.value, short(sc.Denom))
		}
		if ms >= d.depositEnd*1000 {
			c.warn("coin %s… of %s accepted after its denomination's deposit window closed", short(sc.ID), d.value)
		}
		addTo(c.redeem, sc.Denom, 1, sc.Value.Value)
		c.seen = append(c.seen, seenAddition{seenKey{seenCoin, sc.ID}, seenVal{c.e.Index, sc.Value.Value, d.ordinal}})
	}
	return nil
}

// spendCredits checks that each credit a swap spends is all the refund
// credit its coin has left, and records it spent.
func (c *change) spendCredits(cs []RefundedCoin) error {
	for _, rc := range cs {
		refunded := c.a.refunded[seenKey{seenCoin, rc.ID}]
		used := seenKey{creditSpent, rc.ID}
		if left := refunded - c.a.refunded[used]; left != rc.Value.Value {
			return c.fail(CheckDoubleSpend, "the swap spends %s of refund credit of coin %s…, which has %s left", rc.Value, short(rc.ID), c.amount(left))
		}
		c.refunded[used] = refunded
		c.totals[totRedeemed] += rc.Value.Value
	}
	return nil
}

// Apply decodes the next entry (index Size()), checks it against the log so
// far and applies it. It returns the decoded entry, or an *AuditError (and
// changes nothing).
func (a *Auditor) Apply(b []byte) (*Entry, error) {
	idx := a.size
	e, err := DecodeEntry(b)
	if err != nil {
		k, _ := PeekKind(b)
		return nil, &AuditError{Index: idx, Kind: k, Check: CheckDecode, Msg: err.Error(), Err: err}
	}
	if e.Index != idx {
		return nil, &AuditError{Index: idx, Kind: e.Kind(), Check: CheckIndex, Msg: fmt.Sprintf("the entry at position %d says it is entry %d", idx, e.Index)}
	}
	front, err := grow(a.frontier, idx, b)
	if err != nil {
		return nil, &AuditError{Index: idx, Kind: e.Kind(), Check: CheckTree, Msg: err.Error(), Err: err}
	}
	c := &change{
		a: a, e: e, debit: map[uint64]uint64{}, credit: map[uint64]uint64{},
		issue: map[ecash.Hash][2]uint64{}, redeem: map[ecash.Hash][2]uint64{}, refunded: map[seenKey]uint64{},
		withdraw: map[acctDenom]uint64{},
	}
	if err := c.gather(); err != nil {
		return nil, err
	}
	if err := c.commit(); err != nil {
		return nil, err
	}
	a.frontier = front
	a.size++
	a.kinds[e.Kind()]++
	return e, nil
}

// authorised checks that sig is the signature of account id's key over
// signed: the account holder's authorisation of a debit.
func (c *change) authorised(acc *accountState, id uint64, signed, sig []byte, what string) error {
	if ecash.VerifyBody(acc.key[:], signed, sig, what) != nil {
		return c.fail(CheckAuthorised, "the %s is not signed by the key of account %d: a debit the account holder did not authorise", what, id)
	}
	return nil
}

// gather checks the entry's own rules and collects what it changes.
func (c *change) gather() error {
	a := c.a
	switch o := c.e.Op.(type) {
	case AccountOpened:
		if acc, ok := a.accounts[o.Account]; ok {
			return c.fail(CheckAccount, "account %d opened twice (first in entry %d)", o.Account, acc.opened)
		}
		var key [32]byte
		copy(key[:], o.Key)
		if other, ok := a.keys[key]; ok {
			return c.fail(CheckAccount, "account %d opened for the key of account %d", o.Account, other)
		}
		c.open, c.openID = &accountState{merchant: o.Merchant, key: key, opened: c.e.Index}, o.Account

	case Credit:
		if err := c.money(o.Amount); err != nil {
			return err
		}
		if _, err := c.opened(o.Account, "credited"); err != nil {
			return err
		}
		if o.Reference != (ecash.Hash{}) {
			if err := c.fresh(seenCredit, o.Reference, seenVal{}, "credit reference"); err != nil {
				return err
			}
		}
		c.credit[o.Account] += o.Amount.Value
		c.totals[totCredited] += o.Amount.Value

	case Withdraw:
		if err := c.money(o.Amount); err != nil {
			return err
		}
		acc, err := c.opened(o.Account, "debited")
		if err != nil {
			return err
		}
		if err := c.authorised(acc, o.Account, ecash.WithdrawSignatureInput(o.Account, o.Debit(), o.RequestHash), o.AccountSig, "withdrawal"); err != nil {
			return err
		}
		if err := c.fresh(seenWithdraw, o.RequestHash, seenVal{}, "withdraw request"); err != nil {
			return err
		}
		if err := c.issueCoins(o.Issued); err != nil {
			return err
		}
		if err := c.checkFee(o.Fee, feeWithdraw, issuedCoins(o.Issued)); err != nil {
			return err
		}
		for _, dc := range o.Issued {
			c.withdraw[acctDenom{o.Account, dc.Denom}] += uint64(dc.Count) // the decoder bounds the counts
		}
		c.debit[o.Account] += o.Debit().Value
		c.outIn += o.Amount.Value
		c.totals[totWithdrawn] += o.Amount.Value
		c.totals[totFees] += o.Fee.Value

	case Deposit:
		if err := c.money(o.Amount); err != nil {
			return err
		}
		if _, err := c.opened(o.Merchant, "credited"); err != nil {
			return err
		}
		// A payment's refunds are bounded by what the merchant got, and
		// only that merchant refunds it.
		if err := c.fresh(seenPayment, o.PaymentHash, seenVal{value: o.Credited().Value, ref: o.Merchant}, "payment"); err != nil {
			return err
		}
		if err := c.spendCoins(o.Coins); err != nil {
			return err
		}
		if err := c.checkFee(o.Fee, feeDeposit, spentCoinsOf(o.Coins)); err != nil {
			return err
		}
		c.credit[o.Merchant] += o.Credited().Value
		c.outOut += o.Amount.Value
		c.totals[totDeposited] += o.Credited().Value
		c.totals[totFees] += o.Fee.Value

	case Swap:
		if err := c.money(o.AmountIn); err != nil {
			return err
		}
		if err := c.fresh(seenSwap, o.RequestHash, seenVal{}, "swap request"); err != nil {
			return err
		}
		if o.AmountOut.Value > o.AmountIn.Value { // DecodeEntry refuses it too
			return c.fail(CheckOutstanding, "the swap issues %s for %s", o.AmountOut, o.AmountIn)
		}
		if err := c.spendCoins(o.Spent); err != nil {
			return err
		}
		if err := c.spendCredits(o.Credits); err != nil {
			return err
		}
		if err := c.issueCoins(o.Issued); err != nil {
			return err
		}
		// Coins pay their swap fee, refund credit none.
		if err := c.checkFee(ecash.Amount{Currency: o.AmountIn.Currency, Value: o.AmountIn.Value - o.AmountOut.Value}, feeSwap, spentCoinsOf(o.Spent)); err != nil {
			return err
		}
		c.outOut += o.AmountIn.Value
		c.outIn += o.AmountOut.Value
		c.totals[totSwappedIn] += o.AmountIn.Value
		c.totals[totSwappedOut] += o.AmountOut.Value
		c.totals[totFees] += o.AmountIn.Value - o.AmountOut.Value

	case Check:
		if err := c.money(o.Amount); err != nil {
			return err
		}
		cust, err := c.opened(o.Customer, "customer")
		if err != nil {
			return err
		}
		if _, err := c.opened(o.Merchant, "merchant"); err != nil {
			return err
		}
		if err := c.authorised(cust, o.Customer, ecash.EPOSignatureInput(o.EPOID, o.Amount, o.Merchant, o.PartsHash), o.CustomerSig, "payment order "+o.EPOID); err != nil {
			return err
		}
		id := ecash.HashOf([]byte(o.EPOID))
		if prev, ok := a.seen[seenKey{seenEPOID, id}]; ok {
			return c.fail(CheckEPOID, "EPOID %s was already decided in entry %d", o.EPOID, prev.index)
		}
		c.seen = append(c.seen, seenAddition{seenKey{seenEPOID, id}, seenVal{index: c.e.Index}})
		if o.Outcome == OutcomeApproved {
			c.debit[o.Customer] += o.Amount.Value
			c.credit[o.Merchant] += o.Amount.Value
			c.totals[totChecks] += o.Amount.Value
			c.approved = true
		} else {
			c.declined = true
			if o.Outcome == OutcomeInsufficientFunds && cust.balance >= o.Amount.Value {
				c.warn("EPOID %s declined for insufficient funds, but account %d held %s for %s", o.EPOID, o.Customer, c.amount(cust.balance), o.Amount)
			}
		}

	case KeySet:
		ks, err := ecash.DecodeKeySet(o.Signed, a.master)
		if err != nil {
			return &AuditError{Index: c.e.Index, Kind: KindKeySet, Check: CheckKeySet, Msg: fmt.Sprintf("the key set does not verify: %v", err), Err: err}
		}
		if a.currency != "" && ks.Currency != a.currency {
			return c.fail(CheckCurrency, "a key set in %s, the bank's currency is %s", ks.Currency, a.currency)
		}
		c.currency = ks.Currency
		c.keySet, c.keySetH = ks, sha256.Sum256(o.Signed)
		c.warnParallelKeys(ks)
		c.warnKeySetHistory(ks)

	case Payout:
		if err := c.money(o.Amount); err != nil {
			return err
		}
		acc, err := c.opened(o.Account, "debited")
		if err != nil {
			return err
		}
		if !acc.merchant {
			// A payout carries no signature of the holder: it settles a
			// merchant, and a customer's balance leaves only by the
			// holder's own (a withdrawal, a check).
			return c.fail(CheckAuthorised, "payout of %s from account %d, a customer's: payouts settle merchant accounts", o.Amount, o.Account)
		}
		if o.Reference != (ecash.Hash{}) {
			if err := c.fresh(seenPayout, o.Reference, seenVal{}, "payout reference"); err != nil {
				return err
			}
		}
		c.debit[o.Account] += o.Amount.Value
		c.totals[totPaidOut] += o.Amount.Value

	case Refund:
		if err := c.money(o.Amount); err != nil {
			return err
		}
		m, err := c.opened(o.Merchant, "debited")
		if err != nil {
			return err
		}
		if err := c.authorised(m, o.Merchant, o.Request().Body(), o.MerchantSig, "refund"); err != nil {
			return err
		}
		if err := c.fresh(seenRefund, o.RefundHash, seenVal{}, "refund"); err != nil {
			return err
		}
		pk := seenKey{seenPayment, o.PaymentHash}
		paid, ok := a.seen[pk]
		if !ok {
			return c.fail(CheckRefund, "refund of payment %s…, which was never deposited", short(o.PaymentHash))
		}
		if paid.ref != o.Merchant {
			return c.fail(CheckRefund, "refund by account %d of payment %s…, which paid account %d", o.Merchant, short(o.PaymentHash), paid.ref)
		}
		if a.refunded[pk]+o.Amount.Value > paid.value {
			return c.fail(CheckRefund, "refunds of payment %s… exceed the %s deposited in entry %d", short(o.PaymentHash), c.amount(paid.value), paid.index)
		}
		c.refunded[pk] = a.refunded[pk] + o.Amount.Value
		for _, rc := range o.Coins {
			ck := seenKey{seenCoin, rc.ID}
			spent, ok := a.seen[ck]
			if !ok {
				return c.fail(CheckRefund, "refund to coin %s…, which was never spent", short(rc.ID))
			}
			// Only the payment's coins, each as the denomination it was
			// deposited as: its fees bound the credit and price the refund.
			if spent.index != paid.index {
				return c.fail(CheckRefund, "refund to coin %s…, which payment %s… did not spend (entry %d spent it)", short(rc.ID), short(o.PaymentHash), spent.index)
			}
			d := a.denoms[rc.Denom]
			if d == nil || d.ordinal != spent.ref {
				return c.fail(CheckRefund, "refund to coin %s… as a coin of denomination %s…, not the one it was deposited as", short(rc.ID), short(rc.Denom))
			}
			worth := spent.value // what the coin paid: its value less its deposit fee
			if d.fees[feeDeposit] < worth {
				worth -= d.fees[feeDeposit]
			}
			if a.refunded[ck]+rc.Value.Value > worth {
				return c.fail(CheckRefund, "refunds to coin %s… exceed what it paid, %s", short(rc.ID), c.amount(worth))
			}
			c.refunded[ck] = a.refunded[ck] + rc.Value.Value
		}
		if err := c.checkFee(o.Fee, feeRefund, refundedCoinsOf(o.Coins)); err != nil {
			return err
		}
		c.debit[o.Merchant] += o.Amount.Value + o.Fee.Value
		c.outIn += o.Amount.Value
		c.totals[totRefunded] += o.Amount.Value
		c.totals[totFees] += o.Fee.Value

	case Recoup:
		if err := c.money(o.Amount); err != nil {
			return err
		}
		if len(o.Issued) == 0 {
			if _, err := c.opened(o.Account, "credited"); err != nil {
				return err
			}
		}
		if err := c.fresh(seenRecoup, o.RequestHash, seenVal{}, "recoup request"); err != nil {
			return err
		}
		d, ok := a.denoms[o.Denom]
		if !ok {
			return c.fail(CheckDenomination, "recoup of a coin of denomination %s…, which no earlier key set lists", short(o.Denom))
		}
		if !d.revoked {
			return c.fail(CheckRevoked, "recoup of a coin of denomination %s (%s…), which was not revoked", d.value, short(o.Denom))
		}
		if o.Amount.Value > d.value.Value {
			return c.fail(CheckDenomination, "recoup of %s for a coin worth %s", o.Amount, d.value)
		}
		if prev, ok := a.seen[seenKey{seenCoin, o.Coin}]; ok {
			return c.fail(CheckDoubleSpend, "coin %s… recouped, but it was already spent in entry %d", short(o.Coin), prev.index)
		}
		c.seen = append(c.seen, seenAddition{seenKey{seenCoin, o.Coin}, seenVal{c.e.Index, d.value.Value, d.ordinal}})
		addTo(c.redeem, o.Denom, 1, o.Amount.Value)
		c.outOut += o.Amount.Value
		c.totals[totRecouped] += o.Amount.Value
		if len(o.Issued) == 0 {
			// Paid back to the account that withdrew the coin (a coin
			// that came from a swap is re-issued instead): one that never
			// withdrew a coin of the denomination, or whose coins of it
			// were all paid back, is not that account.
			k := acctDenom{o.Account, o.Denom}
			if a.withdrawn[k] == 0 {
				return c.fail(CheckRevoked, "recoup of a coin of %s (%s…) credited to account %d, which withdrew no coin of that denomination not already recouped", d.value, short(o.Denom), o.Account)
			}
			c.recoup = &k
			c.credit[o.Account] += o.Amount.Value
		} else { // re-issued: the value stays outstanding, in new coins
			if err := c.issueCoins(o.Issued); err != nil {
				return err
			}
			c.outIn += o.Amount.Value
		}

	default:
		return c.fail(CheckDecode, "an entry of unknown kind")
	}
	for _, v := range c.issue {
		c.totals[totIssued] += v[1]
	}
	for _, v := range c.redeem {
		c.totals[totRedeemed] += v[1]
	}
	return nil
}

func add64(x, y uint64) (uint64, bool) {
	s, carry := bits.Add64(x, y, 0)
	return s, carry == 0
}

// commit checks the money invariants of the change against the state and,
// if they hold, applies it.
func (c *change) commit() error {
	a := c.a
	// Accounts: none below zero. Debits come before credits: a credit in
	// the same entry does not fund a debit.
	newBal := map[uint64]uint64{}
	for _, id := range sortedKeys(c.debit) {
		v := c.debit[id]
		acc := a.accounts[id]
		if acc.balance < v {
			return c.fail(CheckBalance, "account %d would go below zero: it holds %s and is debited %s", id, c.amount(acc.balance), c.amount(v))
		}
		newBal[id] = acc.balance - v
	}
	for _, id := range sortedKeys(c.credit) {
		v := c.credit[id]
		bal, ok := newBal[id]
		if !ok {
			bal = a.accounts[id].balance
		}
		var fits bool
		if newBal[id], fits = add64(bal, v); !fits {
			return c.fail(CheckOverflow, "account %d's balance overflows", id)
		}
	}
	balances := a.balances
	for id, nb := range newBal {
		balances = balances - a.accounts[id].balance + nb // modular: exact when the sum fits
	}
	// Per denomination: redeemed ≤ issued, by count and by value, counting
	// only coins issued before this entry.
	for _, id := range sortedHashKeys(c.redeem) {
		r, d := c.redeem[id], a.denoms[id]
		if d.redeemedCount+r[0] > d.issuedCount || d.redeemedValue+r[1] > d.issuedValue {
			return c.fail(CheckEmergency, "denomination %s (%s…): %d coins worth %s redeemed, only %d worth %s issued",
				d.value, short(id), d.redeemedCount+r[0], c.amount(d.redeemedValue+r[1]), d.issuedCount, c.amount(d.issuedValue))
		}
	}
	// E-cash outstanding: never below zero.
	if a.outstanding < c.outOut {
		return c.fail(CheckOutstanding, "redeems %s of e-cash, only %s is outstanding", c.amount(c.outOut), c.amount(a.outstanding))
	}
	outstanding, fits := add64(a.outstanding-c.outOut, c.outIn)
	if !fits {
		return c.fail(CheckOverflow, "the e-cash outstanding overflows")
	}
	for id, x := range c.issue {
		d := a.denoms[id]
		if _, ok := add64(d.issuedCount, x[0]); !ok {
			return c.fail(CheckOverflow, "coins issued of %s overflow", d.value)
		}
		if _, ok := add64(d.issuedValue, x[1]); !ok {
			return c.fail(CheckOverflow, "value issued of %s overflows", d.value)
		}
	}
	var totals [numTotals]uint64
	for i := range totals {
		var ok bool
		if totals[i], ok = add64(a.totals[i], c.totals[i]); !ok {
			return c.fail(CheckOverflow, "a ledger total overflows")
		}
	}
	// Conservation: what came in from outside and did not leave is in the
	// accounts, in circulation, or taken as fees; and what circulates is
	// what was issued, less what was redeemed, plus what refunds restored.
	if totals[totCredited]-totals[totPaidOut] != balances+outstanding+totals[totFees] ||
		outstanding != totals[totIssued]-totals[totRedeemed]+totals[totRefunded] {
		return c.fail(CheckConservation, "the ledger does not add up: in %s, out %s, accounts %s, outstanding %s, fees %s",
			c.amount(totals[totCredited]), c.amount(totals[totPaidOut]), c.amount(balances), c.amount(outstanding), c.amount(totals[totFees]))
	}

	// Everything holds: apply.
	if c.currency != "" && a.currency == "" {
		a.currency = c.currency
	}
	for id, nb := range newBal {
		a.accounts[id].balance = nb
	}
	a.balances, a.outstanding, a.totals = balances, outstanding, totals
	for id, x := range c.issue {
		d := a.denoms[id]
		d.issuedCount += x[0]
		d.issuedValue += x[1]
	}
	for id, x := range c.redeem {
		d := a.denoms[id]
		d.redeemedCount += x[0]
		d.redeemedValue += x[1]
	}
	for _, s := range c.seen {
		a.seen[s.k] = s.v
	}
	for k, v := range c.refunded {
		a.refunded[k] = v
	}
	for k, n := range c.withdraw {
		a.withdrawn[k] += n // at most the coins issued, which fit
	}
	if k := c.recoup; k != nil {
		if a.withdrawn[*k]--; a.withdrawn[*k] == 0 {
			delete(a.withdrawn, *k)
		}
	}
	if c.open != nil {
		a.accounts[c.openID] = c.open
		a.keys[c.open.key] = c.openID
	}
	if ks := c.keySet; ks != nil {
		a.addKeySet(ks, c.e.Index)
		a.keySetEntries = append(a.keySetEntries, KeySetLine{Index: c.e.Index, Hash: c.keySetH})
		// A master-signed key set that lists a denomination as revoked
		// revokes it: the only way one is revoked, so that the key set
		// wallets are served says so too (no entry revokes under the
		// log's key alone).
		for _, id := range ks.Revoked() {
			if d := a.denoms[id]; d != nil {
				d.revoked = true
			}
		}
	}
	if c.approved {
		a.approved++
	}
	if c.declined {
		a.declined++
	}
	for _, w := range c.warnings {
		a.warnings = append(a.warnings, AuditWarning{Index: c.e.Index, Kind: c.e.Kind(), Msg: w})
	}
	a.warningsTotal += int64(len(c.warnings)) + c.unsaid
	return nil
}

// warnParallelKeys warns of a denomination a key set adds that is
// withdrawable beside another of the same value other than as its
// predecessor or successor: two live keys for one value let a bank serve
// some wallets one of them and recognise their coins. A successor starts
// in the second half of its predecessor's withdraw window and ends after
// it (a bank's schedule overlaps keys by a twelfth of a period by default,
// KeyConfig.Overlap; an overlap of half a period or more is warned of).
func (c *change) warnParallelKeys(ks *ecash.KeySet) {
	type window struct {
		id     ecash.Hash
		value  ecash.Amount
		ws, we int64
	}
	// The denominations known and not revoked, by an earlier key set or
	// this one (a key revoked and its replacement made in one change),
	// then those added.
	revokedNow := map[ecash.Hash]bool{}
	for _, id := range ks.Revoked() {
		revokedNow[id] = true
	}
	var live []window
	for _, id := range sortedHashKeys(c.a.denoms) {
		if d := c.a.denoms[id]; !d.revoked && !revokedNow[id] {
			live = append(live, window{id, d.value, d.withdrawStart, d.withdrawEnd})
		}
	}
	known := len(live)
	for _, d := range ks.Denominations {
		if _, ok := c.a.denoms[d.ID]; !ok {
			live = append(live, window{d.ID, d.Value, d.WithdrawStart.Unix(), d.WithdrawEnd.Unix()})
		}
	}
	succeeds := func(next, prev window) bool {
		return next.ws >= prev.ws+(prev.we-prev.ws)/2 && next.we > prev.we
	}
	// One warning for each denomination added, naming the first it runs
	// beside and how many: a warning per pair grows with the square of the
	// keys a log lists.
	for i := known; i < len(live); i++ {
		n := live[i]
		var first *window
		clashes := 0
		for j, o := range live[:i] {
			if o.value != n.value || o.we <= n.ws || n.we <= o.ws || succeeds(n, o) || succeeds(o, n) {
				continue
			}
			if clashes++; first == nil {
				first = &live[j]
			}
		}
		switch {
		case clashes == 1:
			c.warn("denomination %s… of %s is withdrawable beside %s… of the same value, not as its successor: two live keys for one value let a bank recognise the coins of wallets it served one of them",
				short(n.id), n.value, short(first.id))
		case clashes > 1:
			c.warn("denomination %s… of %s is withdrawable beside %s… and %d more of the same value, not as their successor: two live keys for one value let a bank recognise the coins of wallets it served one of them",
				short(n.id), n.value, short(first.id), clashes-1)
		}
	}
}

// warnKeySetHistory warns of a key set that no honest bank logs after the
// ones before it: issued at or before the key set logged last, listing a
// known denomination with other windows or fees than before (a
// denomination's id covers its value and key, not its windows), listing a
// revoked one as valid, or dropping one whose coins are still accepted at
// its issue time. An honest bank issues each changed key set later than
// the last, never changes a listed key's windows or fees, never
// un-revokes (the store refuses it) and drops a key only at its deposit
// end (Keys.Prune). Any of these lets a bank serve groups of wallets
// different key sets, all logged, and tell their coins apart. They are
// warnings: no money moves wrongly, and a bank's replica restarted on an
// old key file logs such a set too.
func (c *change) warnKeySetHistory(ks *ecash.KeySet) {
	a := c.a
	issued := ks.IssuedAt.Unix()
	if a.keySets > 0 && a.keySetIssuedKnown && issued <= a.keySetIssued {
		c.warn("the key set is issued %s, not after the key set logged before it (issued %s): an honest bank issues each changed key set later, and wallets holding the later-issued one keep it, so two key sets may be in use at once",
			unixTime(issued), unixTime(a.keySetIssued))
	}
	listed := make(map[ecash.Hash]bool, len(ks.Denominations))
	for _, den := range ks.Denominations {
		listed[den.ID] = true
		d, ok := a.denoms[den.ID]
		if !ok {
			continue
		}
		ws, we, de := den.WithdrawStart.Unix(), den.WithdrawEnd.Unix(), den.DepositEnd.Unix()
		switch {
		case ws != d.withdrawStart || we != d.withdrawEnd || de != d.depositEnd:
			c.warn("denomination %s… of %s is listed withdrawable %s to %s and accepted until %s, other windows than earlier key sets gave it (%s to %s, until %s): a key served with other windows to some wallets tells their coins apart",
				short(den.ID), d.value, unixTime(ws), unixTime(we), unixTime(de), unixTime(d.withdrawStart), unixTime(d.withdrawEnd), unixTime(d.depositEnd))
		case feesOf(den.Fees) != d.fees:
			c.warn("denomination %s… of %s is listed with other fees than the key set that first listed it", short(den.ID), d.value)
		case d.revoked && !den.Revoked:
			c.warn("denomination %s… of %s is listed as valid, though revoked before", short(den.ID), d.value)
		}
	}
	var dropped []ecash.Hash
	for _, id := range sortedHashKeys(a.denoms) {
		if d := a.denoms[id]; !listed[id] && d.depositEnd > issued {
			dropped = append(dropped, id)
		}
	}
	if len(dropped) > 0 {
		d := a.denoms[dropped[0]]
		c.warn("the key set drops %d denominations still accepted when it was issued (%s), first %s… of %s, accepted until %s: an honest bank drops a key only at its deposit end, and wallets holding the earlier key set refuse this one",
			len(dropped), unixTime(issued), short(dropped[0]), d.value, unixTime(d.depositEnd))
	}
}

func unixTime(sec int64) string { return time.Unix(sec, 0).UTC().Format(time.RFC3339) }

func (a *Auditor) addKeySet(ks *ecash.KeySet, index int64) {
	if a.master == nil {
		a.master = slices.Clone(ks.MasterPub)
	}
	a.keySets++
	a.keySetIssued, a.keySetIssuedKnown = ks.IssuedAt.Unix(), true
	for _, den := range ks.Denominations {
		ws, we, de := den.WithdrawStart.Unix(), den.WithdrawEnd.Unix(), den.DepositEnd.Unix()
		d, ok := a.denoms[den.ID]
		if !ok {
			a.denoms[den.ID] = &denomState{value: den.Value, withdrawStart: ws, withdrawEnd: we, depositEnd: de, listed: index,
				ordinal: uint64(len(a.denoms)) + 1, fees: feesOf(den.Fees)}
			continue
		}
		d.withdrawStart = min(d.withdrawStart, ws)
		d.withdrawEnd = max(d.withdrawEnd, we)
		d.depositEnd = max(d.depositEnd, de)
	}
	for _, k := range ks.SigningKeys() {
		if !slices.ContainsFunc(a.signing, func(x ed25519.PublicKey) bool { return x.Equal(k) }) {
			a.signing = append(a.signing, slices.Clone(k))
		}
	}
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sortedHashKeys[V any](m map[ecash.Hash]V) []ecash.Hash {
	ks := make([]ecash.Hash, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, hashLess)
	return ks
}

// ---- the report ----

// AuditTotals are the ledger's totals, in minor units of the currency.
type AuditTotals struct {
	Credited    uint64 // money in from outside (Credit)
	PaidOut     uint64 // money out to the outside (Payout)
	Withdrawn   uint64 // accounts → e-cash
	Deposited   uint64 // e-cash → accounts
	SwappedIn   uint64 // e-cash spent in swaps
	SwappedOut  uint64 // e-cash issued by swaps
	Fees        uint64 // swaps' in − out
	Checks      uint64 // moved by approved checks, customer → merchant
	Refunded    uint64 // merchants → e-cash
	Recouped    uint64 // e-cash → accounts, for revoked denominations
	Outstanding uint64 // e-cash in circulation: the bank's liability to coin holders
	Balances    uint64 // the sum of all account balances
}

// DenomReport is one denomination's issue and redemption.
type DenomReport struct {
	ID            ecash.Hash
	Value         ecash.Amount
	Revoked       bool
	IssuedCount   uint64
	IssuedValue   uint64
	RedeemedCount uint64
	RedeemedValue uint64
}

// AuditReport sums up the log as replayed so far.
type AuditReport struct {
	Entries       int64
	Currency      string
	Master        ed25519.PublicKey
	KeySets       int64
	SigningKeys   int
	ByKind        map[Kind]int64 // kinds with at least one entry
	Accounts      int            // accounts opened, merchants included
	Merchants     int
	CoinsSpent    int      // coins spent or recouped
	Checks        [2]int64 // approved, declined
	Totals        AuditTotals
	Denominations []DenomReport // by value, then id
	Warnings      []AuditWarning
	WarningsTotal int64
}

// Report sums up the log replayed so far.
func (a *Auditor) Report() *AuditReport {
	r := &AuditReport{
		Entries: a.size, Currency: a.currency, Master: a.Master(), KeySets: a.keySets, SigningKeys: len(a.signing),
		ByKind: map[Kind]int64{}, Accounts: len(a.accounts), Checks: [2]int64{a.approved, a.declined},
		Warnings: slices.Clone(a.warnings), WarningsTotal: a.warningsTotal,
	}
	for _, k := range Kinds() {
		if a.kinds[k] > 0 {
			r.ByKind[k] = a.kinds[k]
		}
	}
	for _, acc := range a.accounts {
		if acc.merchant {
			r.Merchants++
		}
	}
	for k := range a.seen {
		if k.ns == seenCoin {
			r.CoinsSpent++
		}
	}
	t := a.totals
	r.Totals = AuditTotals{
		Credited: t[totCredited], PaidOut: t[totPaidOut], Withdrawn: t[totWithdrawn], Deposited: t[totDeposited],
		SwappedIn: t[totSwappedIn], SwappedOut: t[totSwappedOut], Fees: t[totFees], Checks: t[totChecks],
		Refunded: t[totRefunded], Recouped: t[totRecouped], Outstanding: a.outstanding, Balances: a.balances,
	}
	for _, id := range sortedHashKeys(a.denoms) {
		d := a.denoms[id]
		r.Denominations = append(r.Denominations, DenomReport{
			ID: id, Value: d.value, Revoked: d.revoked,
			IssuedCount: d.issuedCount, IssuedValue: d.issuedValue, RedeemedCount: d.redeemedCount, RedeemedValue: d.redeemedValue,
		})
	}
	slices.SortStableFunc(r.Denominations, func(x, y DenomReport) int { return cmp.Compare(x.Value.Value, y.Value.Value) })
	return r
}

// Amount is v minor units of the report's currency.
func (r *AuditReport) Amount(v uint64) ecash.Amount {
	return ecash.Amount{Currency: r.Currency, Value: v}
}

// ---- saving and resuming ----

// auditorPurpose is the tag of a saved auditor. The version is in the tag:
// a state of another layout never decodes as this one.
const auditorPurpose = "auditlog/auditor/v5"

// auditorPurposeV4 tagged states saved before the newest key set entry was
// recorded (checkpoints' keyset lines are checked against it). One is read
// without it: the lines are checked once the auditor applies a key set.
const auditorPurposeV4 = "auditlog/auditor/v4"

// auditorPurposeV3 tagged states saved while the retired kind revocation
// (11) was honoured; they count its entries after the others'. One that
// counts none means what a v4 state does and is read (as a v4 one is); one that counts some
// revoked without the master key and is refused.
const auditorPurposeV3 = "auditlog/auditor/v3"

// auditorPurposeV2 tagged states saved before the coins each account
// withdrew of each denomination were counted (recoups are checked against
// them); they cannot be upgraded either.
const auditorPurposeV2 = "auditlog/auditor/v2"

// auditorPurposeV1 tagged states saved before each payment's merchant and
// each coin's denomination were recorded. They cannot be upgraded: the
// refund checks need what only the entries say.
const auditorPurposeV1 = "auditlog/auditor"

// ErrAuditorStateVersion is returned (wrapped) by UnmarshalBinary for a
// state an earlier auditor saved: audit the log again from its start.
var ErrAuditorStateVersion = errors.New("auditlog: the saved auditor is of an earlier version")

// MarshalBinary is the auditor's saved form (tag "auditlog/auditor/v5"):
// the size and the tree's right edge, the pinned master key, and the
// replayed ledger (docs/AUDIT.md). Maps are written sorted, so equal states
// save equal bytes.
func (a *Auditor) MarshalBinary() ([]byte, error) {
	e := ecash.NewEncoder(auditorPurpose)
	e.U64(uint64(a.size))
	fi := frontierIndexes(a.size)
	e.U32(uint32(len(fi)))
	for _, x := range fi {
		h := a.frontier[x]
		e.Fixed(h[:])
	}
	e.VarBytes(a.master)
	e.String(a.currency)
	e.U32(uint32(len(Kinds())))
	for _, k := range Kinds() {
		e.U64(uint64(a.kinds[k]))
	}
	e.U32(numTotals)
	for _, t := range a.totals {
		e.U64(t)
	}
	e.U64(a.outstanding)
	e.U64(uint64(a.approved))
	e.U64(uint64(a.declined))
	e.U64(uint64(a.keySets))
	e.U8(boolByte(a.keySetIssuedKnown))
	e.I64(a.keySetIssued)
	e.U64(uint64(a.keySetsFrom))
	e.U32(uint32(len(a.keySetEntries)))
	for _, ks := range a.keySetEntries {
		e.U64(uint64(ks.Index))
		e.Fixed(ks.Hash[:])
	}
	e.U32(uint32(len(a.signing)))
	for _, k := range a.signing {
		e.Fixed(k)
	}
	e.U32(uint32(len(a.accounts)))
	for _, id := range sortedKeys(a.accounts) {
		acc := a.accounts[id]
		e.U64(id)
		e.U8(boolByte(acc.merchant))
		e.Fixed(acc.key[:])
		e.U64(acc.balance)
		e.U64(uint64(acc.opened))
	}
	e.U32(uint32(len(a.denoms)))
	for _, id := range sortedHashKeys(a.denoms) {
		d := a.denoms[id]
		e.Fixed(id[:])
		e.Amount(d.value)
		e.I64(d.withdrawStart)
		e.I64(d.withdrawEnd)
		e.I64(d.depositEnd)
		e.U8(boolByte(d.revoked))
		e.U64(uint64(d.listed))
		e.U64(d.ordinal)
		e.U64(d.issuedCount)
		e.U64(d.issuedValue)
		e.U64(d.redeemedCount)
		e.U64(d.redeemedValue)
		for _, f := range d.fees {
			e.U64(f)
		}
	}
	seen := sortedSeen(a.seen)
	e.U32(uint32(len(seen)))
	for _, k := range seen {
		v := a.seen[k]
		e.U8(uint8(k.ns))
		e.Fixed(k.h[:])
		e.U64(uint64(v.index))
		e.U64(v.value)
		if k.ns.hasRef() {
			e.U64(v.ref)
		}
	}
	ref := sortedSeen(a.refunded)
	e.U32(uint32(len(ref)))
	for _, k := range ref {
		e.U8(uint8(k.ns))
		e.Fixed(k.h[:])
		e.U64(a.refunded[k])
	}
	wd := sortedAcctDenoms(a.withdrawn)
	e.U32(uint32(len(wd)))
	for _, k := range wd {
		e.U64(k.account)
		e.Fixed(k.denom[:])
		e.U64(a.withdrawn[k])
	}
	e.U64(uint64(a.warningsTotal))
	e.U32(uint32(len(a.warnings)))
	for _, w := range a.warnings {
		e.U64(uint64(w.Index))
		e.U8(uint8(w.Kind))
		e.String(w.Msg)
	}
	return e.Bytes(), nil
}

func acctDenomLess(x, y acctDenom) int {
	if c := cmp.Compare(x.account, y.account); c != 0 {
		return c
	}
	return hashLess(x.denom, y.denom)
}

func sortedAcctDenoms(m map[acctDenom]uint64) []acctDenom {
	ks := make([]acctDenom, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, acctDenomLess)
	return ks
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func seenLess(x, y seenKey) int {
	if c := cmp.Compare(x.ns, y.ns); c != 0 {
		return c
	}
	return bytes.Compare(x.h[:], y.h[:])
}

func sortedSeen[V any](m map[seenKey]V) []seenKey {
	ks := make([]seenKey, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, seenLess)
	return ks
}

// UnmarshalBinary restores a saved auditor into a, which NewAuditor made.
// The saved state must be self-consistent (its ledger must add up and its
// tree edge must give a root); if a was made with a master key, the saved
// one must be the same. On error a is unchanged.
func (a *Auditor) UnmarshalBinary(b []byte) error {
	n, err := decodeAuditor(b)
	if err != nil {
		return fmt.Errorf("auditlog: saved auditor: %w", err)
	}
	if a.master != nil {
		switch {
		case n.master == nil:
			n.master = slices.Clone(a.master)
		case !n.master.Equal(a.master):
			return fmt.Errorf("auditlog: saved auditor: %w: the saved audit pins master key %x, not %x", ErrInvariant, []byte(n.master), []byte(a.master))
		}
	}
	*a = *n
	return nil
}

const maxSaved = math.MaxInt32

func decodeAuditor(b []byte) (*Auditor, error) {
	if bytes.HasPrefix(b, ecash.NewEncoder(auditorPurposeV1).Bytes()) {
		return nil, fmt.Errorf("%w, which did not record each payment's merchant and coins that refunds are checked against; audit the log again from its start, without this saved state", ErrAuditorStateVersion)
	}
	if bytes.HasPrefix(b, ecash.NewEncoder(auditorPurposeV2).Bytes()) {
		return nil, fmt.Errorf("%w, which did not count the coins each account withdrew that recoups are checked against; audit the log again from its start, without this saved state", ErrAuditorStateVersion)
	}
	a := NewAuditor(nil)
	v3 := bytes.HasPrefix(b, ecash.NewEncoder(auditorPurposeV3).Bytes())
	v4 := bytes.HasPrefix(b, ecash.NewEncoder(auditorPurposeV4).Bytes())
	purpose, nkinds := auditorPurpose, len(Kinds())
	switch {
	case v3:
		purpose, nkinds = auditorPurposeV3, nkinds+1
	case v4:
		purpose = auditorPurposeV4
	}
	d := ecash.NewDecoder(purpose, b)
	size := d.U64()
	nf := d.Count(64)
	var hs []tlog.Hash
	for i := 0; i < nf && d.Err() == nil; i++ {
		hs = append(hs, tlog.Hash(fixedHash(d)))
	}
	if m := d.VarBytes(ed25519.PublicKeySize); len(m) > 0 {
		a.master = m
	}
	a.currency = d.String()
	if nk := d.Count(nkinds); d.Err() == nil && nk != nkinds {
		return nil, malformed("%d kinds, want %d", nk, nkinds)
	}
	for _, k := range Kinds() {
		a.kinds[k] = int64(d.U64())
	}
	if v3 {
		if n := d.U64(); d.Err() == nil && n != 0 {
			return nil, fmt.Errorf("%w, which honoured revocation entries (%d), revocations the master key did not sign; audit the log again from its start, without this saved state (it fails at the first of them)", ErrAuditorStateVersion, n)
		}
	}
	if nt := d.Count(numTotals); d.Err() == nil && nt != numTotals {
		return nil, malformed("%d totals, want %d", nt, numTotals)
	}
	for i := range a.totals {
		a.totals[i] = d.U64()
	}
	a.outstanding = d.U64()
	a.approved = int64(d.U64())
	a.declined = int64(d.U64())
	a.keySets = int64(d.U64())
	known := d.U8()
	a.keySetIssued = d.I64()
	if d.Err() == nil && (known > 1 || (known == 0 && (a.keySetIssued != 0 || a.keySets > 0)) || (known == 1 && a.keySets == 0)) {
		return nil, malformed("the last key set's issue time")
	}
	a.keySetIssuedKnown = known == 1
	keySetsFrom := int64(-1) // v4, v3: the size restored at, below
	if !v3 && !v4 {
		keySetsFrom = int64(d.U64())
		nks := d.Count(maxSaved)
		for i := 0; i < nks && d.Err() == nil; i++ {
			ks := KeySetLine{Index: int64(d.U64()), Hash: fixedHash(d)}
			if d.Err() == nil && (ks.Index < keySetsFrom || (i > 0 && ks.Index <= a.keySetEntries[i-1].Index)) {
				return nil, malformed("key set entry %d out of order", ks.Index)
			}
			a.keySetEntries = append(a.keySetEntries, ks)
		}
		if d.Err() == nil && (keySetsFrom < 0 || int64(len(a.keySetEntries)) > a.keySets || (keySetsFrom == 0 && int64(len(a.keySetEntries)) != a.keySets)) {
			return nil, malformed("%d key set entries from %d, of %d key sets", len(a.keySetEntries), keySetsFrom, a.keySets)
		}
	}
	ns := d.Count(maxSaved)
	for i := 0; i < ns && d.Err() == nil; i++ {
		a.signing = append(a.signing, ed25519.PublicKey(d.Fixed(ed25519.PublicKeySize)))
	}
	na := d.Count(maxSaved)
	var last uint64
	for i := 0; i < na && d.Err() == nil; i++ {
		id := d.U64()
		m := d.U8()
		acc := &accountState{merchant: m == 1}
		copy(acc.key[:], d.Fixed(32))
		acc.balance = d.U64()
		acc.opened = int64(d.U64())
		if d.Err() != nil {
			break
		}
		if m > 1 || (i > 0 && id <= last) || id == 0 {
			return nil, malformed("account %d out of order or malformed", id)
		}
		if _, dup := a.keys[acc.key]; dup {
			return nil, malformed("two accounts with one key")
		}
		last = id
		a.accounts[id] = acc
		a.keys[acc.key] = id
		var ok bool
		if a.balances, ok = add64(a.balances, acc.balance); !ok {
			return nil, malformed("balances overflow")
		}
	}
	nd := d.Count(maxSaved)
	var lastID ecash.Hash
	ordinals := map[uint64]bool{}
	for i := 0; i < nd && d.Err() == nil; i++ {
		id := fixedHash(d)
		den := &denomState{value: d.Amount(), withdrawStart: d.I64(), withdrawEnd: d.I64(), depositEnd: d.I64()}
		r := d.U8()
		den.revoked = r == 1
		den.listed = int64(d.U64())
		den.ordinal = d.U64()
		den.issuedCount, den.issuedValue, den.redeemedCount, den.redeemedValue = d.U64(), d.U64(), d.U64(), d.U64()
		for j := range den.fees {
			den.fees[j] = d.U64()
		}
		if d.Err() != nil {
			break
		}
		if r > 1 || (i > 0 && hashLess(lastID, id) >= 0) || den.ordinal == 0 || den.ordinal > uint64(nd) || ordinals[den.ordinal] {
			return nil, malformed("denomination %s… out of order or malformed", short(id))
		}
		ordinals[den.ordinal] = true
		if den.redeemedCount > den.issuedCount || den.redeemedValue > den.issuedValue {
			return nil, malformed("denomination %s… redeemed more than issued", short(id))
		}
		lastID = id
		a.denoms[id] = den
	}
	nseen := d.Count(maxSaved)
	var lastSeen seenKey
	for i := 0; i < nseen && d.Err() == nil; i++ {
		k := seenKey{ns: seenNS(d.U8()), h: fixedHash(d)}
		v := seenVal{index: int64(d.U64()), value: d.U64()}
		if k.ns.hasRef() {
			v.ref = d.U64()
		}
		if d.Err() != nil {
			break
		}
		if k.ns < seenCoin || k.ns > seenLast || (i > 0 && seenLess(lastSeen, k) >= 0) {
			return nil, malformed("used hashes out of order or malformed")
		}
		switch {
		case k.ns == seenPayment && a.accounts[v.ref] == nil:
			return nil, malformed("payment %s… to account %d, which is not", short(k.h), v.ref)
		case k.ns == seenCoin && (v.ref == 0 || v.ref > uint64(len(a.denoms))):
			return nil, malformed("coin %s… of denomination ordinal %d, which is not", short(k.h), v.ref)
		}
		lastSeen = k
		a.seen[k] = v
	}
	nref := d.Count(maxSaved)
	var lastRef seenKey
	for i := 0; i < nref && d.Err() == nil; i++ {
		k := seenKey{ns: seenNS(d.U8()), h: fixedHash(d)}
		v := d.U64()
		if d.Err() != nil {
			break
		}
		if (k.ns != seenCoin && k.ns != seenPayment && k.ns != creditSpent) || (i > 0 && seenLess(lastRef, k) >= 0) {
			return nil, malformed("refunds out of order or malformed")
		}
		lastRef = k
		a.refunded[k] = v
	}
	nwd := d.Count(maxSaved)
	var lastWd acctDenom
	for i := 0; i < nwd && d.Err() == nil; i++ {
		k := acctDenom{account: d.U64(), denom: fixedHash(d)}
		n := d.U64()
		if d.Err() != nil {
			break
		}
		if n == 0 || a.accounts[k.account] == nil || a.denoms[k.denom] == nil || (i > 0 && acctDenomLess(lastWd, k) >= 0) {
			return nil, malformed("coins withdrawn out of order or malformed")
		}
		if n > a.denoms[k.denom].issuedCount {
			return nil, malformed("account %d withdrew %d coins of denomination %s…, more than were issued", k.account, n, short(k.denom))
		}
		lastWd = k
		a.withdrawn[k] = n
	}
	a.warningsTotal = int64(d.U64())
	nw := d.Count(MaxAuditWarnings)
	for i := 0; i < nw && d.Err() == nil; i++ {
		a.warnings = append(a.warnings, AuditWarning{Index: int64(d.U64()), Kind: Kind(d.U8()), Msg: d.String()})
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if size > math.MaxInt64 {
		return nil, malformed("size %d", size)
	}
	a.size = int64(size)
	if keySetsFrom < 0 {
		keySetsFrom = a.size
	}
	a.keySetsFrom = keySetsFrom
	if a.keySetsFrom > a.size || (len(a.keySetEntries) > 0 && a.keySetEntries[len(a.keySetEntries)-1].Index >= a.size) {
		return nil, malformed("key set entries past the log of %d", a.size)
	}
	fi := frontierIndexes(a.size)
	if len(fi) != len(hs) {
		return nil, malformed("%d tree hashes for a log of %d, want %d", len(hs), a.size, len(fi))
	}
	for i, x := range fi {
		a.frontier[x] = hs[i]
	}
	if a.master != nil && len(a.master) != ed25519.PublicKeySize {
		return nil, malformed("master key of %d bytes", len(a.master))
	}
	if a.warningsTotal < int64(len(a.warnings)) {
		return nil, malformed("warnings")
	}
	var total int64
	for _, k := range Kinds() {
		total += a.kinds[k]
	}
	t := a.totals
	switch {
	case total != a.size:
		return nil, fmt.Errorf("%w: %d entries counted by kind in a log of %d", ErrInvariant, total, a.size)
	case t[totCredited]-t[totPaidOut] != a.balances+a.outstanding+t[totFees],
		a.outstanding != t[totIssued]-t[totRedeemed]+t[totRefunded]:
		return nil, fmt.Errorf("%w: the saved ledger does not add up", ErrInvariant)
	}
	return a, nil
}
