package bank

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// Sentinel errors of the store. Service code maps them to gRPC codes in
// errors.go, the one place that does so.
var (
	ErrNoAccount         = errors.New("bank: no such account")
	ErrKeyInUse          = errors.New("bank: public key already has an account")
	ErrInsufficientFunds = errors.New("bank: insufficient funds")
	ErrNotMerchant       = errors.New("bank: account is not a merchant account")
	ErrPaymentConflict   = errors.New("bank: payment request already paid with other coins")
	ErrReferenceConflict = errors.New("bank: credit reference already used for another credit")
	ErrRequestConflict   = errors.New("bank: withdraw request hash recorded for another account or amount")
	ErrInvalidOp         = errors.New("bank: invalid operation")
	ErrBalanceOverflow   = errors.New("bank: balance overflow")
	ErrStoreClosed       = errors.New("bank: store is closed")
	ErrDuplicateCoin     = errors.New("bank: coin appears twice in one request")
	ErrNonceReused       = errors.New("bank: nonce already answered for another blinded message")
	// ErrAlreadyIssued: a blinded message of a new request was signed in
	// another request. A wallet sends one only when its planchet counter
	// went back (a wallet directory put back from a backup): signing it
	// again would debit or spend for a coin the wallet already had, and
	// perhaps spent. The wallet's answer is to scan forward from its
	// counter (see AlreadyIssued).
	ErrAlreadyIssued = errors.New("bank: blinded message already signed in another request; the planchet counter is stale")
	// ErrNotServed: a retry of a recorded withdrawal reached a replica
	// that does not serve one of its denominations (a key set another
	// replica published), so cannot check its signature over the debit
	// and answer it from the record. Not a refusal: a replica that serves
	// the key set answers it.
	ErrNotServed    = errors.New("bank: this replica does not serve the recorded request's denominations yet; retry")
	ErrNotDeposited = errors.New("bank: no such payment was deposited to this merchant")
	// ErrRefundExceeds: a refund would give a coin back more than it paid,
	// counting earlier refunds.
	ErrRefundExceeds = errors.New("bank: refund exceeds what the payment's coins paid")
	// ErrTooManyRefunds: a payment has been refunded MaxRefunds times, as
	// many receipts as RefundReceipts lists: credit beyond them would have
	// no receipt a wallet could check.
	ErrTooManyRefunds = fmt.Errorf("bank: a payment may be refunded at most %d times; refund the rest in one", MaxRefunds)
	// ErrNoCredit: a swap input claims refund credit the coin does not have
	// (never refunded, or its credit already spent).
	ErrNoCredit = errors.New("bank: the coin has no such refund credit")
	// ErrOutcomeUnknown: a networked store lost its connection during a
	// commit and cannot tell whether it happened. Retrying the same request
	// is safe for every mutation with a key (a request hash, an EPOID, a
	// credit's reference, an account's public key), which a retry finds;
	// not for the two without one (a credit without a reference, counting
	// a failed authentication), which a retry may apply twice.
	ErrOutcomeUnknown = errors.New("bank: the store cannot tell whether the operation committed; retry the same request (a credit only with its reference)")
	// ErrTooLate: the store's clock (the database's, for a shared store)
	// was past the operation's NotAfter when it came to commit it, and it
	// committed nothing. Every replica's commit is bounded so, however
	// long its process paused since the service's checks: a client that
	// gave up on a request after that time (plus the skew between the
	// clocks) has nothing still coming.
	ErrTooLate = errors.New("bank: too late to commit: the store's clock is past the request's deadline")
	// ErrStoreUnavailable: a networked store could not be reached, or lost
	// its connection before anything was committed: nothing was done, and
	// the same request may be retried later.
	ErrStoreUnavailable = errors.New("bank: the store is unreachable; nothing was done, retry later")
)

// Prober is a Store that can tell whether it can serve now: a networked
// store whose server is reachable and whose session checks pass (its
// clock, its durability settings). The node reports it in its gRPC health
// check, so that a load balancer sends the calls to another replica.
type Prober interface {
	Probe(ctx context.Context) error
}

// CheckNotAfter tests an operation's NotAfter against a store's clock
// (now), in a store that decides its commits in process (Pebble's commit
// pipeline): ErrTooLate, saying both, if now is past it. A shared store
// judges it on its server as the commit runs (pgstore's migrations 13, 14).
func CheckNotAfter(notAfter, now time.Time) error {
	if notAfter.IsZero() || !now.After(notAfter) {
		return nil
	}
	return fmt.Errorf("%w (%s, the store's clock %s)", ErrTooLate, notAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339Nano))
}

// MaxRefunds is the most refunds one payment may have: the receipts a
// wallet checks its coins' credit against are fetched in one answer.
const MaxRefunds = ecash.MaxCoinsPerRequest

// System ledger accounts. Every posting moves money between two accounts,
// so the sum of all balances is always zero.
const (
	AccountFunding     uint64 = 1    // money entering from outside: negative of all credits
	AccountOutstanding uint64 = 2    // e-cash in circulation (the bank's liability)
	AccountFees        uint64 = 3    // fees charged (the key set's per-coin fees)
	FirstUserAccount   uint64 = 1000 // the first customer or merchant account id
)

// Account is a ledger account. Customer and merchant accounts never go
// below zero; system accounts may.
type Account struct {
	ID       uint64
	Name     string
	Key      ed25519.PublicKey // nil for system accounts
	Merchant bool
	Balance  int64 // minor units of the bank's currency
	Created  time.Time

	// Policy state (policy.go): limits and today's spending. Failed
	// authentications are kept per source, apart (Store.AuthFailure).
	Limits     Limits
	SpentDay   int64
	SpentToday int64

	// LastPosted is the time of the account's latest posting (zero if
	// none, or if it predates this field): see PostingTime.
	LastPosted time.Time
}

// Posting kinds.
const (
	KindCredit   = "credit"
	KindWithdraw = "withdraw"
	KindDeposit  = "deposit"
	KindCheck    = "check"
	KindPayout   = "payout"
	KindRefund   = "refund"
	KindFee      = "fee"
)

// Posting is one line of an account's history.
type Posting struct {
	Seq     uint64
	Time    time.Time
	Kind    string
	Amount  int64 // signed: negative for debits
	Balance int64 // running balance after this posting
	Memo    string
	// For checks: the other account, the EPOID and the product.
	Counterparty uint64
	Ref          string
	Product      string
}

// CreditOp funds a customer or merchant account from outside or, with
// Payout, pays money out of it to the outside (a merchant's settlement):
// the same movement reversed, between the account and AccountFunding.
type CreditOp struct {
	Account   uint64
	Amount    int64 // > 0
	Payout    bool  // money leaves the account; refused beyond its balance
	Memo      string
	Reference string // idempotency key; empty: none
	Time      time.Time
	Log       auditlog.Op // the change's audit-log entry (see Store); nil: none
}

// WithdrawOp debits an account for blind signatures the service already made.
type WithdrawOp struct {
	RequestHash ecash.Hash
	Account     uint64
	Amount      int64 // total value of the planchets, > 0
	Fee         int64 // withdraw fees, ≥ 0: the account pays Amount + Fee
	BlindSigs   [][]byte
	Blinded     []ecash.Hash // SHA-256 of each planchet's blinded message, for Issued; may be nil
	Locks       []NonceLock  // CS planchets: each nonce locked to its blinded message
	Time        time.Time
	NotAfter    time.Time   // a new withdrawal commits only until then (ErrTooLate); zero: no bound
	Log         auditlog.Op // the change's audit-log entry (see Store); nil: none
}

// NonceLock binds a denomination's nonce to the one blinded message the bank
// answers for it: answering two different challenges for one CS nonce would
// reveal the denomination's private key.
type NonceLock struct {
	Denom   ecash.Hash
	Nonce   []byte     // at most 64 bytes
	Blinded ecash.Hash // SHA-256 of the blinded message
}

// SpentCoin is a coin presented in a deposit, with its full signed deposit
// permission (ecash.DepositPermission.Encode), kept to prove a later double spend.
type SpentCoin struct {
	ID         ecash.Hash
	Permission []byte
	// Credit > 0 (swaps only): the input spends the refund credit of a coin
	// already spent, all of it and exactly this much, not the coin itself.
	Credit int64
}

// RefundOp gives back (part of) a deposited payment: it debits the merchant
// and restores value to coins of the payment, which their owner may then
// spend again in a swap (SpentCoin.Credit). The service allocates the
// amount to coins; the store checks the allocation against its state.
type RefundOp struct {
	RequestHash ecash.Hash // the signed refund request's hash: the idempotency key
	PaymentHash ecash.Hash // the payment refunded
	Merchant    uint64
	Amount      int64 // > 0: the sum of Coins' values
	Fee         int64 // refund fees, ≥ 0: the merchant pays Amount + Fee
	Coins       []CoinRefund
	Receipt     []byte // the signed refund receipt to store and return
	Time        time.Time
	NotAfter    time.Time   // a new refund commits only until then (ErrTooLate); zero: no bound
	Log         auditlog.Op // the change's audit-log entry (see Store); nil: none
}

// CoinRefund is the value a refund restores to one coin of the payment.
type CoinRefund struct {
	ID    ecash.Hash
	Value int64 // > 0
	Cap   int64 // what the coin paid: all refunds together restore at most this
}

// CoinState is what the store knows of a coin.
type CoinState struct {
	Permission []byte     // the permission that spent it; nil: unspent
	SpentBy    ecash.Hash // what spent it: a deposit's payment hash, a swap's or recoup's request hash
	Refunded   int64      // value restored to it by refunds, in all
	Credit     int64      // of which not yet spent again
}

// DepositOp credits a merchant for coins the service already verified.
type DepositOp struct {
	PaymentHash ecash.Hash
	Merchant    uint64
	Amount      int64 // credited to the merchant, > 0
	Fee         int64 // deposit fees, ≥ 0: the coins are worth Amount + Fee
	Coins       []SpentCoin
	Receipt     []byte // the signed receipt to store and return
	Time        time.Time
	NotAfter    time.Time   // a new deposit commits only until then (ErrTooLate); zero: no bound
	Log         auditlog.Op // the change's audit-log entry (see Store); nil: none
}

// SwapOp spends coins the service already verified and records blind
// signatures on new planchets of the same value: change. No money moves:
// the value stays with AccountOutstanding, in other coins.
type SwapOp struct {
	RequestHash ecash.Hash   // hash of the signed swap request: the idempotency key
	Coins       []SpentCoin  // inputs, each with its signed swap permission
	Value       int64        // value of the inputs, > 0
	Fee         int64        // swap fees, ≥ 0, < Value: the outputs are worth Value − Fee
	BlindSigs   [][]byte     // on the outputs, in request order
	Blinded     []ecash.Hash // SHA-256 of each output's blinded message, for Issued; may be nil
	Locks       []NonceLock  // CS outputs: shared with withdrawals
	Time        time.Time
	NotAfter    time.Time   // a new swap commits only until then (ErrTooLate); zero: no bound
	Log         auditlog.Op // the change's audit-log entry (see Store); nil: none
}

// Issued is a blind signature the bank issued, found by the hash of the
// blinded message it answered: what lets a wallet restored from its seed
// find its coins again, and a recoup find where a coin came from.
type Issued struct {
	Sig     []byte
	Kind    string     // KindWithdraw or KindSwap
	Request ecash.Hash // the withdraw or swap request hash
	Account uint64     // for withdrawals: the account debited
}

// Revocation is a denomination a logged key set revokes.
type Revocation struct {
	Denom  ecash.Hash
	KeySet int64 // index of the first KeySet log entry that revokes it
}

// MaxLogRead bounds the entries one LogEntries call returns, and
// MaxLogReadBytes their size: the bank's answer to GetLogEntries stays
// under gRPC's 4 MiB message limit however large the entries (a swap of
// 1024 coins logs some 110 KiB), and one short request cannot make the
// bank read and marshal a hundred megabytes.
const (
	MaxLogRead      = 1024
	MaxLogReadBytes = 2 << 20
)

// KindSwap names swaps in Issued (swaps post nothing to the ledger).
const KindSwap = "swap"

// CheckOp applies a NetBill electronic payment order the service already
// verified: debit the customer, credit the merchant, record the EPO and the
// decision. The receipts are signed before the call, one per possible
// outcome; the store picks the one its atomic step decides.
type CheckOp struct {
	EPOID    string     // canonical EPOID, at most 128 bytes
	EPOHash  ecash.Hash // hash of the signed EPO: what was agreed
	Customer uint64
	Merchant uint64
	Amount   int64  // > 0
	Product  string // product id (empty for a plain check)
	Memo     string // the customer's memo, on the customer's posting
	// MerchantMemo is the merchant's endorsement memo, on the merchant's
	// posting, which names no counterparty: the merchant never learns the
	// customer's account or memo (PROTOCOL §9.9).
	MerchantMemo string
	// Receipts: approved, and declined for each reason decided at commit.
	Approved      []byte
	DeclinedFunds []byte // insufficient funds
	DeclinedLimit []byte // over a spending limit
	// Declined, if set, is a decline the bank decided before the commit
	// (CheckDeclinedExpired, CheckDeclinedBadKey),
	// with its receipt in DeclinedReceipt and none of the three above: the
	// store records it like a decision of its own, once per EPOID, and
	// moves no money.
	Declined        string
	DeclinedReceipt []byte
	Record          []byte // the endorsement (with the signed EPO): the evidence
	Time            time.Time
	// NotAfter: a new decision commits only until then (ErrTooLate; the
	// service then records the order as expired, SubmitCheck); zero: no
	// bound. Set for the orders the commit decides, which may move money.
	NotAfter time.Time
	Log      auditlog.Op // the change's audit-log entry (see Store); nil: none
}

// Check outcomes.
const (
	CheckApproved      = "approved"
	CheckDeclinedFunds = "insufficient-funds"
	CheckDeclinedLimit = "over-limit"
	// Declined before the commit, after both signatures verified.
	CheckDeclinedExpired = "expired" // the EPO expired before the bank decided
	CheckDeclinedBadKey  = "bad-key" // the merchant's goods key does not match its commitment
	// Recorded by builds before 2026-11-27, which declined the orders of
	// an account locked out; a payment order is no longer judged by the
	// lock (SubmitCheck).
	CheckDeclinedLocked = "account-locked"
)

// CheckOutcome is what the store recorded for an EPOID.
type CheckOutcome struct {
	EPOHash    ecash.Hash
	Outcome    string // one of the Check* constants
	Receipt    []byte
	Customer   uint64
	Merchant   uint64
	Amount     int64
	NewBalance int64 // the customer's balance after the decision
	Record     []byte
	Time       time.Time
}

// CheckLog fills in the outcome of a check's audit-log entry, which the
// store decides: log is nil or an auditlog.Check.
func CheckLog(log auditlog.Op, outcome string) auditlog.Op {
	c, ok := log.(auditlog.Check)
	if !ok {
		return log
	}
	// An unknown outcome leaves the zero Outcome, which the log refuses.
	c.Outcome, _ = auditlog.ParseOutcome(outcome)
	return c
}

// ErrEPOIDConflict refuses a different EPO under an EPOID already decided.
var ErrEPOIDConflict = errors.New("bank: EPOID already used for another payment order")

// SpentError reports a coin spent earlier; Permission is the earlier signed
// deposit permission (ecash.DepositPermission.Encode).
type SpentError struct {
	Coin       ecash.Hash
	Permission []byte
}

func (e *SpentError) Error() string {
	return fmt.Sprintf("bank: coin %x already spent", e.Coin[:8])
}

func (e *SpentError) Is(target error) bool { return target == ecash.ErrDoubleSpend }

// Store is the bank's durable state, with its audit log (bank/auditlog):
// an append-only Merkle log of every state change. Its contract:
//
//   - Every mutating call is atomic: it applies completely or not at all.
//   - A mutating call returns only after its effect is durable (synced);
//     a crash after return loses nothing, a crash before leaves no trace.
//   - Mutating calls are linearizable: concurrent calls behave as if run one
//     at a time in some order, so two deposits of one coin never both succeed.
//   - Read calls see every mutation that returned before they started, and
//     answer only from durable state: a mutation still syncing may be
//     visible (Pebble shows a batch before its sync ends), but a read that
//     found it returns once it is synced, or fails (Account, a pre-check
//     the commit repeats, is exempt).
//
// Implementations serialise state changes; callers do cryptography before
// calling, outside any lock. Further rules every implementation follows (and
// bank/storetest checks):
//
//   - Credit references are global: a reference names one credit, whatever
//     the account.
//   - A deposit replay must have the same coin set (any order), merchant and
//     amount; a withdraw replay the same account and amount
//     (ErrRequestConflict otherwise).
//   - Credits and withdrawals on system accounts, non-positive amounts,
//     malformed keys and oversized fields are ErrInvalidOp; a balance that
//     would leave int64 is ErrBalanceOverflow. Neither changes anything.
//   - A call whose ctx is done before the store takes it up changes nothing
//     and returns ctx.Err(); once taken up it completes, durably.
//   - Calls after Close return ErrStoreClosed.
//   - The audit log: a mutation whose op carries Log appends it as one
//     entry, in the same atomic commit as the change, at the next index;
//     OpenAccount always appends an AccountOpened entry, and Check fills in
//     its Check entry's outcome. A refusal or a replay appends nothing. A
//     Log the log refuses (auditlog.ErrInvalidEntry) refuses the op,
//     ErrInvalidOp, changing nothing. Entries and the stored Merkle hashes
//     never change once committed.
//   - Revocations: a denomination a logged key set revokes stays revoked
//     (PublishKeySet). A mutation whose Log issues or spends coins of one
//     (LogDenoms) is refused with ecash.ErrDenominationRevoked and changes
//     nothing. The check is ordered with PublishKeySet as the log's
//     appends are: a mutation that commits after PublishKeySet returned
//     was checked against its revocations, whichever replica runs it.
type Store interface {
	// OpenAccount creates an account for key. The same account asked for
	// again (name, key and kind) gets the id it was given, so a retry
	// whose answer was lost opens nothing more; another account for the
	// key is refused with ErrKeyInUse.
	OpenAccount(ctx context.Context, name string, key ed25519.PublicKey, merchant bool, now time.Time) (uint64, error)
	// Account returns an account, ErrNoAccount if absent.
	Account(ctx context.Context, id uint64) (Account, error)
	// History returns up to limit postings of an account, newest first.
	History(ctx context.Context, id uint64, limit int) ([]Posting, error)
	// Credit moves op.Amount from AccountFunding to op.Account (for a
	// payout, the other way: ErrInsufficientFunds beyond the balance) and
	// returns the new balance. A repeated non-empty Reference with the same
	// account, amount and direction moves nothing and returns the current
	// balance; with different ones, ErrReferenceConflict. References are
	// shared by credits and payouts.
	Credit(ctx context.Context, op CreditOp) (int64, error)
	// Withdraw applies the account's spending limits (ErrOverLimit), then
	// moves op.Amount from op.Account to AccountOutstanding and
	// records op.BlindSigs under op.RequestHash, and every nonce lock, in
	// one step. If the request hash is already recorded it moves nothing and
	// returns the recorded signatures. ErrNonceReused if a nonce is locked
	// to another blinded message (locking it again to the same one is
	// fine); ErrAlreadyIssued if a blinded message of op.Blinded is
	// indexed (Issued) for another request; ErrInsufficientFunds if the
	// balance is too low, ErrNoAccount. A refusal recorded under the
	// request hash (RefuseWithdrawal) refuses it, changing nothing: the
	// error is that *WithdrawRefusal (ErrRequestConflict if it was
	// recorded for another account).
	Withdraw(ctx context.Context, op WithdrawOp) ([][]byte, error)
	// RefuseWithdrawal records op.Refusal under op.RequestHash, in one
	// step with finding neither a withdrawal (Withdraw) nor a refusal
	// recorded under it, so that one of the two is ever recorded under a
	// hash: the withdrawal recorded (for the same account) returns its
	// signatures and records nothing; a refusal recorded returns it, the
	// first one, whatever op says; otherwise it records op's and returns
	// it. Either refusal is returned as the error, a *WithdrawRefusal
	// (ErrRequestConflict if the record is another account's). Durable on
	// return like any mutation; it appends nothing to the audit log.
	RefuseWithdrawal(ctx context.Context, op RefuseWithdrawalOp) (sigs [][]byte, err error)
	// PruneWithdrawRefusals deletes the withdraw refusals recorded with a
	// time (RefuseWithdrawalOp.Time) before before, and returns how many
	// it deleted; the bank calls it with RefusalHorizon behind its clock
	// (Bank.PruneRefusals); a shared store keeps those younger than
	// RefusalHorizon by its own clock, whatever before says. A request
	// whose refusal is gone is not found when sent again (the bank refuses
	// it for its age). It may delete in several transactions, each durable
	// on return; it appends nothing to the audit log.
	PruneWithdrawRefusals(ctx context.Context, before time.Time) (deleted int64, err error)
	// Deposit marks every coin spent, moves op.Amount from
	// AccountOutstanding to op.Merchant and records op.Receipt under
	// op.PaymentHash, all or nothing. If the payment hash is recorded with
	// the same coins, it moves nothing and returns the recorded receipt; with
	// other coins, ErrPaymentConflict. If any coin is already spent it
	// returns a *SpentError and changes nothing. Any user account may
	// receive a deposit (a customer returns coins to their own account);
	// ErrNoAccount, and ErrInvalidOp for a system account.
	Deposit(ctx context.Context, op DepositOp) ([]byte, error)
	// Swap marks every input coin spent and records op.BlindSigs under
	// op.RequestHash with every nonce lock, all or nothing. An input with
	// a Credit instead spends the refund credit of a spent coin: the coin's
	// credit must be exactly Credit (ErrNoCredit), and becomes zero. If the request
	// hash is recorded it changes nothing and returns the recorded
	// signatures (ErrRequestConflict if it was recorded with other coins or
	// value). A spent coin: *SpentError; a nonce locked to another blinded
	// message, by a withdrawal or a swap: ErrNonceReused; a blinded message
	// of op.Blinded indexed for another request: ErrAlreadyIssued.
	Swap(ctx context.Context, op SwapOp) ([][]byte, error)
	// Refund applies a refund in one step: the payment must be deposited to
	// op.Merchant (ErrNotDeposited) and every coin be one of its coins
	// (ErrInvalidOp); each coin's refunds in all stay within its Cap
	// (ErrRefundExceeds); the merchant's balance covers op.Amount
	// (ErrInsufficientFunds: the money was paid out). It moves op.Amount
	// from the merchant to AccountOutstanding, adds each coin's value to its
	// refunded total and its credit, and records op.Receipt under
	// op.RequestHash. A recorded request hash changes nothing and returns
	// the recorded receipt if payment, merchant and amount match
	// (ErrRequestConflict if not).
	Refund(ctx context.Context, op RefundOp) ([]byte, error)
	// RefundRecord returns the receipt recorded for a refund request hash;
	// found is false if there is none.
	RefundRecord(ctx context.Context, requestHash ecash.Hash) (receipt []byte, found bool, err error)
	// RefundReceipts returns the receipts of every refund of a payment, in
	// the order they were applied (at most MaxRefunds: Refund refuses one
	// more with ErrTooManyRefunds).
	RefundReceipts(ctx context.Context, paymentHash ecash.Hash) ([][]byte, error)
	// CoinStates reports the state of each coin (at most
	// ecash.MaxCoinsPerRequest).
	CoinStates(ctx context.Context, coins []ecash.Hash) ([]CoinState, error)
	// Issued looks up blind signatures by the SHA-256 of their blinded
	// messages (at most ecash.MaxCoinsPerRequest): out[i] is nil if none was
	// issued for blinded[i]. A blinded message is indexed for one request
	// only: Withdraw and Swap refuse one indexed for another
	// (ErrAlreadyIssued); the same one twice in a request keeps the first
	// position.
	Issued(ctx context.Context, blinded []ecash.Hash) ([]*Issued, error)
	// Spent reports, for each coin id (at most ecash.MaxCoinsPerRequest),
	// whether it is spent: deposited, swapped or recouped.
	Spent(ctx context.Context, coins []ecash.Hash) ([]bool, error)
	// SwapRecord returns the blind signatures recorded for a swap request
	// hash; found is false if there are none.
	SwapRecord(ctx context.Context, requestHash ecash.Hash) (sigs [][]byte, found bool, err error)
	// Withdrawal returns the blind signatures recorded for a withdraw
	// request hash; found is false if there are none. A refusal recorded
	// under it (RefuseWithdrawal) is returned as the error, a
	// *WithdrawRefusal. (A withdrawal recorded under a refused hash, by a
	// build older than refusal records, is returned as the record.)
	Withdrawal(ctx context.Context, requestHash ecash.Hash) (sigs [][]byte, found bool, err error)
	// DepositRecord returns the receipt and coin ids recorded for a payment
	// hash; found is false if the payment request is unpaid.
	DepositRecord(ctx context.Context, paymentHash ecash.Hash) (receipt []byte, coins []ecash.Hash, found bool, err error)
	// Check decides and records a payment order in one step: if op.EPOID is
	// recorded with op.EPOHash it returns the recorded outcome and moves
	// nothing; with another hash, ErrEPOIDConflict. Otherwise it declines
	// (op.Declined, limits, balance: in that order, recorded like an
	// approval) or approves (customer debited, merchant credited, spending
	// recorded). ErrNoAccount, ErrNotMerchant.
	Check(ctx context.Context, op CheckOp) (CheckOutcome, error)
	// CheckRecord returns the outcome recorded for an EPOID; found is false
	// if there is none.
	CheckRecord(ctx context.Context, epoid string) (out CheckOutcome, found bool, err error)
	// SetLimits sets an account's spending limits.
	SetLimits(ctx context.Context, id uint64, l Limits) error
	// AuthFailure counts a failed authentication of an account from
	// source (Source: the caller's address) at now, and
	// reports whether the account is now locked for that source
	// (AuthFailures.Record). Counts are kept per (account, source) and
	// shared by every replica; those of days before AuthKeptFrom(now) may
	// be dropped.
	// ErrNoAccount; ErrInvalidOp for a system account or a source longer
	// than MaxSourceLen.
	AuthFailure(ctx context.Context, id uint64, source string, now time.Time) (locked bool, err error)
	// AuthLocked reports whether failed authentications from source lock
	// the account out for that source at now (AuthFailures.Locked); false
	// for an account or source with none.
	AuthLocked(ctx context.Context, id uint64, source string, now time.Time) (bool, error)
	// LockedSources counts the sources an account is locked out for at now.
	LockedSources(ctx context.Context, id uint64, now time.Time) (int, error)
	// Unlock clears an account's failed authentications from every
	// source. ErrNoAccount; ErrInvalidOp for a system account.
	Unlock(ctx context.Context, id uint64) error
	// PublishKeySet appends a KeySet entry with signed, unless a KeySet
	// entry holds the same bytes already (a restart publishes nothing new;
	// a replica restarting on an old key file logs nothing either, so the
	// newest KeySet entry, which LogHead names, is never an older set
	// logged again), and records the denominations it revokes
	// (KeySetRevocations). A key set that lists as valid a denomination a
	// logged key set revoked is refused with ErrUnrevoked, logged before
	// or not: the log never un-revokes. LogIndex finds the entry by the
	// SHA-256 of signed.
	PublishKeySet(ctx context.Context, signed []byte, at time.Time) error
	// Revocations lists the denominations logged key sets revoke, each with
	// the index of the first KeySet entry that revoked it.
	Revocations(ctx context.Context) ([]Revocation, error)
	// LogIndex returns the index of the entry logged for a deposit (by
	// payment hash), a withdrawal or swap (by request hash), a recoup (by
	// request hash), a check (by EPO hash) or a key set (by the SHA-256 of
	// its signed bytes); found is false if there is none.
	LogIndex(ctx context.Context, ref ecash.Hash) (index int64, found bool, err error)
	// LogSize returns the number of committed log entries.
	LogSize(ctx context.Context) (int64, error)
	// LogHead returns the number of committed log entries and the newest
	// KeySet entry among them (found false if none), read together: the
	// key set is the newest below that size even while another replica
	// logs one. A checkpoint signs both.
	LogHead(ctx context.Context) (size int64, keySet KeySetRef, found bool, err error)
	// LogEntries returns up to n encoded entries from index from on (fewer
	// at the end of the log; n at most MaxLogRead), stopping after the
	// entry that brings their total size to maxBytes or more (so at least
	// one, if the log holds entry from).
	LogEntries(ctx context.Context, from int64, n, maxBytes int) ([][]byte, error)
	// LogHashes returns the committed stored hashes at the given tlog
	// stored-hash indexes (for tree hashes and proofs).
	LogHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// Totals returns every account's balance (for audits: they sum to zero).
	Totals(ctx context.Context) (map[uint64]int64, error)
	// Close waits for in-flight commits and releases the store.
	Close() error
}
