// Package bank is the blindbank bank node: it issues blind-signed e-cash
// coins, accepts sealed deposits with double-spend detection, and keeps a
// double-entry ledger. State lives behind the Store interface (store.go);
// cryptography runs in the caller's goroutine, in parallel, before the
// store's serialised commit, and nothing is returned before it is durable.
//
// The gRPC edge is grpc.go (conversion) and errors.go (the one mapping of
// errors to gRPC codes).
package bank

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// Errors of the bank service (besides the store's and ecash's).
var (
	ErrWrongBank      = errors.New("bank: payment request is for another bank")
	ErrWrongCurrency  = errors.New("bank: wrong currency")
	ErrAmountMatch    = errors.New("bank: coins do not add up to the payment amount")
	ErrBadTimestamp   = errors.New("bank: timestamp outside what the bank accepts")
	ErrUnauthorized   = errors.New("bank: signature does not match the account key")
	ErrPaymentExpired = errors.New("bank: payment request expired")
	// ErrTooOld: a new withdraw or refund request dated further before
	// the bank's clock than it takes one (MaxWithdrawAge, RefundWindow).
	// Final: the store would not commit it either (ErrTooLate), and a
	// withdrawal's is recorded like any refusal after the signature. The
	// client makes a new request.
	ErrTooOld = errors.New("bank: request dated too long ago; make a new one")
)

// MaxWithdrawAge is how long after its date a withdraw request may first
// be taken. A request refused for good is recorded (WithdrawRefusal) and
// the record pruned after RefusalHorizon; by then its date is more than
// RefusalHorizon − ecash.MaxClockSkew past (it was not dated further
// ahead when refused), so a copy of it sent after that is refused for its
// age, not decided afresh: the wallet dropped the request, and a debit
// for signatures only it could unblind would be lost to the account. A
// wallet's retry of a request that committed is answered from the
// withdrawal's record, which is kept, however old the request. The store
// holds the commit to the same bound by its own clock (WithdrawOp.NotAfter),
// so a send stalled between these checks and its commit for longer does
// not commit after its retry's refusal was pruned.
const MaxWithdrawAge = 12 * time.Hour

// Bank is the bank node's protocol logic.
type Bank struct {
	store    Store
	keys     *Keys // the key material as the bank started; its denominations as the view says
	view     atomic.Pointer[keyView]
	now      func() time.Time
	log      *slog.Logger  // per-operation lines at Debug (thousands a second); admin events at Info
	metrics  *metrics      // nil unless Instrument was called
	editKeys KeyFileEditor // nil: no live key-set changes
	revoking sync.Mutex    // serialises live key-set changes
	limit    *RateLimiter  // per account: withdrawals, checks, statements
	refusals *RateLimiter  // per account: withdraw refusals recorded (RefuseWithdrawal)
	revoked  chan struct{} // a store refused a revoked denomination: wakes WatchRevocations
}

// LimitAccounts caps the operations each account may start per second
// (withdrawals, payment orders, statements, status queries); nil or a rate
// of 0: no cap.
func (b *Bank) LimitAccounts(l *RateLimiter) { b.limit = l }

// LimitRefusals caps the withdraw refusals each account may have recorded
// per second (Store.RefuseWithdrawal: a synced record each, kept for
// RefusalHorizon); nil or a rate of 0: no cap. A refusal over it is not
// recorded and is answered ErrRateLimited, which a wallet retries: an
// account holder cannot make the bank store records faster than this,
// however fast its rate (LimitAccounts) lets it send requests to refuse.
func (b *Bank) LimitRefusals(l *RateLimiter) { b.refusals = l }

// allow applies a per-account rate (b.limit, or b.refusals), once the
// request's signature has verified: a stranger's requests naming an
// account would otherwise use up its holder's rate (the transport's
// per-peer rates bound those).
func (b *Bank) allow(l *RateLimiter, account uint64) error {
	if !l.Allow(strconv.FormatUint(account, 10), b.now()) {
		return ErrRateLimited
	}
	return nil
}

// New creates a bank over a store with key material. now is the clock (use
// time.Now in production, a fake in tests).
func New(store Store, keys *Keys, now func() time.Time, log *slog.Logger) *Bank {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bank{store: store, keys: keys, now: now, log: log, revoked: make(chan struct{}, 1)}
	b.view.Store(newKeyView(keys))
	return b
}

// keyView is the key set the bank serves and the denomination keys behind
// it. It changes only as a whole (a live revocation, revoke.go), so a
// request sees one key set.
type keyView struct {
	keys   *Keys
	keyset *ecash.KeySet
	signed []byte // keyset.Encode(), served as is
	denoms map[ecash.Hash]*DenomKey
}

func newKeyView(keys *Keys) *keyView {
	ks := keys.KeySet()
	v := &keyView{keys: keys, keyset: ks, signed: ks.Encode(), denoms: make(map[ecash.Hash]*DenomKey, len(keys.Denoms))}
	for i := range keys.Denoms {
		v.denoms[keys.Denoms[i].ID] = &keys.Denoms[i]
	}
	return v
}

// keySet is the key set the bank serves now.
func (b *Bank) keySet() *ecash.KeySet { return b.view.Load().keyset }

// denom looks up a denomination key of the key set served now.
func (b *Bank) denom(id ecash.Hash) (*DenomKey, bool) {
	d, ok := b.view.Load().denoms[id]
	return d, ok
}

// KeySet returns the public key set and its signed encoding.
func (b *Bank) KeySet() (*ecash.KeySet, []byte) {
	v := b.view.Load()
	return v.keyset, v.signed
}

// Keys returns the bank's private key material (for admin tools and tests).
func (b *Bank) Keys() *Keys { return b.view.Load().keys }

// Store returns the underlying store (for admin tools and tests).
func (b *Bank) Store() Store { return b.store }

// fromRecord, deferred by a handler once it has looked its request's
// record up and found none, answers a refusal from the record if there is
// one by then. A retry sent while its original was committing finds no
// record and may then be refused for what the original changed (the
// payment's refund room, a coin's credit) or for the clock passing an
// expiry meanwhile: its caller would take the refusal for "nothing
// recorded" (Definitive) and drop what the bank did. lookup fills the
// handler's results and reports whether it found the record; if it fails,
// its error (not a refusal) is the answer.
func fromRecord(err *error, lookup func() (bool, error)) {
	if *err == nil {
		return
	}
	// A lookup that fails leaves the refusal unsure: the caller retries.
	if found, lerr := lookup(); lerr != nil {
		*err = lerr
	} else if found {
		*err = nil
	}
}

// notAhead refuses a new request its signer dated (created) more than
// ecash.MaxClockSkew ahead of the bank's clock (ErrBadTimestamp), saying
// by how much, so that whoever runs that clock can set it right. Clients
// judging the bank's log take such a date, less the skew, as the earliest
// the bank can have answered (logclient.Unlogged). A date long past only
// makes that bound weaker; a withdraw or refund request's is refused all
// the same once its record is looked up (notTooOld), a payment request's
// is not (its expiry bounds it).
func notAhead(what string, created, now time.Time) error {
	if !created.After(now.Add(ecash.MaxClockSkew)) {
		return nil
	}
	// Sub saturates for a date centuries away: a huge figure, not a wrong one.
	return fmt.Errorf("%w: %s created at %s, %s ahead of the bank's clock (%s), more than the %s allowed", ErrBadTimestamp,
		what, created.UTC().Format(time.RFC3339), created.Sub(now).Round(time.Millisecond), now.UTC().Format(time.RFC3339), ecash.MaxClockSkew)
}

// MaxCommitDelay bounds when a swap or recoup, which carry no date (a
// wallet's clock would tell its anonymous requests apart), may commit:
// within this long of the replica's clock when it took the request
// (SwapOp.NotAfter, DepositOp.NotAfter, ErrTooLate at the store, by its
// clock: the replica's and the database server's must agree, which
// pgstore checks). A replica that paused between its checks and the
// commit for longer commits nothing; a wallet that keeps a refused swap
// pending for far longer (wallet.SwapRefusalHorizon, a day) knows nothing
// is still coming. (A pause before the replica reads its clock for the
// request is not counted: the request is taken only then.)
const MaxCommitDelay = time.Hour

// notTooOld refuses a new request (what) dated more than maxAge before
// the bank's clock (ErrTooOld), saying by how much.
func notTooOld(what string, created, now time.Time, maxAge time.Duration) error {
	if !created.Before(now.Add(-maxAge)) {
		return nil
	}
	return fmt.Errorf("%w: %s created at %s, %s before the bank's clock (%s), more than the %s allowed", ErrTooOld,
		what, created.UTC().Format(time.RFC3339), now.Sub(created).Round(time.Second), now.UTC().Format(time.RFC3339), maxAge)
}

// Withdraw handles a signed withdraw request: it verifies the account
// signature and denominations, blind-signs every planchet in parallel, then
// commits the debit, the signatures and the CS nonce locks atomically; an
// answer for a nonce locked to another challenge is computed but never
// released. A retry of the same
// request returns the same signatures and debits nothing. A new request
// dated more than ecash.MaxClockSkew ahead of the bank's clock is refused
// (ErrBadTimestamp); one dated more than MaxWithdrawAge before it, with
// no record, is refused (ErrTooOld). Any other refusal of a request whose
// signature verified, but the lock of its source (ErrAccountLocked), is recorded
// under its hash before it is answered, and is the answer to every later
// send of it whose signature verifies (a *WithdrawRefusal).
func (b *Bank) Withdraw(ctx context.Context, body, accountSig []byte) (sigs [][]byte, err error) {
	req, err := ecash.DecodeWithdrawRequest(body)
	if err != nil {
		return nil, err
	}
	// The account signs the amount and the request's hash (what the audit
	// log records), not the body.
	reqHash := ecash.HashOf(body)
	amount, err := ecash.WithdrawAmount(req, b.denomDebit)
	if err != nil {
		// A denomination this replica does not serve (yet: a key set
		// another one published) must not refuse a retry of a
		// withdrawal that committed, answered from the record only
		// after the signature this amount checks: its wallet would take
		// the refusal for "nothing recorded" and drop the coins it paid
		// for. It is told to retry (ErrNotServed, not a store error: a
		// replayed body must not fill the error log). A refusal recorded
		// under the hash (the lookup's error) is told the same, not
		// sent: its text (a balance, a limit) is for the account's
		// holder, and the signature is not checked yet.
		_, found, lerr := b.store.Withdrawal(ctx, reqHash)
		if _, refused := errors.AsType[*WithdrawRefusal](lerr); refused {
			found, lerr = true, nil
		}
		if lerr != nil {
			return nil, lerr
		} else if found {
			return nil, fmt.Errorf("%w (withdrawal %x…: %v)", ErrNotServed, reqHash[:8], err)
		}
		return nil, err
	}
	acct, err := b.authenticate(ctx, req.Account, ecash.WithdrawSignatureInput(req.Account, amount, reqHash), accountSig, "withdraw request")
	if err != nil {
		return nil, err
	}
	// A retry is answered from the record before anything that may have
	// changed since (validity windows, balance): the debit already
	// happened, or a refusal was recorded (the store returns it as the
	// error) and stands.
	recorded := func() (found bool, err error) {
		sigs, found, err = b.store.Withdrawal(ctx, reqHash)
		return found, err
	}
	if found, err := recorded(); err != nil || found {
		return sigs, err
	}
	now := b.now()
	// A new request dated ahead of the bank's clock is refused: a wallet's
	// log check takes its date, less the skew, as the earliest the bank
	// can have answered it. After the record, so that a retry is answered
	// however the clocks moved since; before the rate, since the refusal
	// costs nothing. Checked against the record once more, as the
	// refusals below are (fromRecord): a retry whose original committed
	// meanwhile, at a replica whose clock is further on, is answered.
	// One still committing there is not seen: the refusal says this
	// replica found no record, not that none is coming, and a wallet
	// keeps a request it may have sent before pending when refused so.
	if err = notAhead("withdraw request", req.CreatedAt, now); err != nil {
		fromRecord(&err, recorded)
		return sigs, err
	}
	// Charged after the record: a retry signs nothing, and a replay of a
	// captured request must not use up its holder's rate.
	if err := b.allow(b.limit, req.Account); err != nil {
		return nil, err
	}
	// From here on a refusal is recorded under the request's hash before
	// it is answered, or the record found instead is answered
	// (settleWithdrawal): a retry refused here while its original is
	// still committing, at another replica or in this store's pipeline,
	// must not be taken for "nothing recorded" while the original debits.
	defer b.settleWithdrawal(ctx, &sigs, &err, req.Account, reqHash, now, recorded)
	// After the record: a retry of a withdrawal that committed is
	// answered, whatever failed since.
	if err := b.checkLock(ctx, req.Account, Source(ctx)); err != nil {
		return nil, err
	}
	total, keys, blinded, locks, err := b.outputs(req.Planchets, now)
	if err != nil {
		return nil, err
	}
	fee, err := b.feeOf(keys, withdrawFee, nil)
	if err != nil {
		return nil, err
	}
	// Recorded, so that an original of the request still committing
	// somewhere is refused with it, as for any refusal here.
	if err := notTooOld("withdraw request", req.CreatedAt, now, MaxWithdrawAge); err != nil {
		return nil, err
	}
	// Refuse before the expensive signing; the store checks again at commit.
	if err := acct.CanSpend(int64(amount.Value), now); err != nil {
		return nil, b.inCurrency(err)
	}
	if acct.Balance < int64(amount.Value) {
		return nil, ErrInsufficientFunds
	}
	if err := b.unissued(ctx, reqHash, blinded, nil, now); err != nil {
		return nil, err
	}
	sigs, err = b.blindSign(ctx, req.Planchets, keys)
	if err != nil {
		return nil, err
	}
	sigs, err = b.store.Withdraw(ctx, WithdrawOp{
		RequestHash: reqHash, Account: req.Account, Amount: int64(total.Value), Fee: int64(fee.Value), BlindSigs: sigs, Blinded: blinded, Locks: locks, Time: now,
		NotAfter: req.CreatedAt.Add(MaxWithdrawAge),
		Log:      auditlog.Withdraw{Account: req.Account, Amount: total, Fee: fee, RequestHash: reqHash, AccountSig: accountSig, Issued: denomCounts(keys)},
	})
	if err != nil {
		return nil, b.inCurrency(b.refused(err))
	}
	b.log.Debug("withdraw", "account", req.Account, "amount", total.String(), "coins", len(sigs))
	b.countCoins(func(m *metrics) *prometheus.CounterVec { return m.coinsIssued }, keys)
	return sigs, nil
}

// settleWithdrawal, deferred by Withdraw once it found no record of its
// request and charged the account's rate, settles a failure: a refusal
// the wallet takes as final (withdrawRefusal) is recorded under the
// request's hash (Store.RefuseWithdrawal) and answered only once it is
// durable, as recorded; if the store found the request's withdrawal
// instead, its signatures are the answer, and if it found a refusal
// recorded before, that one. So a retry refused while its original was
// in flight and the original exclude each other: the original's commit
// finds the refusal and is refused with it, or the refusal finds the
// withdrawal. A refusal over the account's refusal budget
// (LimitRefusals), and any other failure (store, signer, context:
// retried), is answered from the record if there is one by then
// (fromRecord), or as ErrRateLimited, or as it is.
func (b *Bank) settleWithdrawal(ctx context.Context, sigs *[][]byte, err *error, account uint64, reqHash ecash.Hash, now time.Time, recorded func() (bool, error)) {
	if *err == nil {
		return
	}
	if _, ok := errors.AsType[*WithdrawRefusal](*err); ok {
		return // recorded already: the commit found it
	}
	r := withdrawRefusal(*err)
	if r == nil {
		fromRecord(err, recorded)
		return
	}
	// A record costs the bank a synced write and its space until pruned:
	// over the account's budget, the refusal is not recorded and not
	// sent (the wallet would drop the request while its original may
	// commit), but answered "slow down", which the wallet retries.
	if rerr := b.allow(b.refusals, account); rerr != nil {
		*err = rerr
		fromRecord(err, recorded)
		return
	}
	got, rerr := b.store.RefuseWithdrawal(ctx, RefuseWithdrawalOp{RequestHash: reqHash, Account: account, Refusal: *r, Time: now})
	if rerr == nil {
		*sigs, *err = got, nil
		return
	}
	*err = rerr
}

// denomDebit is what withdrawing a coin of the bank's denomination id
// debits: its value plus its withdraw fee.
func (b *Bank) denomDebit(id ecash.Hash) (ecash.Amount, bool) {
	d, ok := b.denom(id)
	if !ok {
		return ecash.Amount{}, false
	}
	v, err := d.WithdrawDebit()
	return v, err == nil
}

// feeOf sums one fee (picked from each key's fees) over keys, skipping the
// indexes skip reports; an Amount in the bank's currency.
func (b *Bank) feeOf(keys []*DenomKey, pick func(ecash.Fees) ecash.Amount, skip func(i int) bool) (ecash.Amount, error) {
	total := ecash.Amount{Currency: b.keys.Currency}
	for i, k := range keys {
		if skip != nil && skip(i) {
			continue
		}
		var err error
		if total, err = total.Add(ecash.Amount{Currency: total.Currency, Value: pick(k.Fees).Value}); err != nil {
			return ecash.Amount{}, err
		}
	}
	return total, nil
}

func withdrawFee(f ecash.Fees) ecash.Amount { return f.Withdraw }
func depositFee(f ecash.Fees) ecash.Amount  { return f.Deposit }
func swapFee(f ecash.Fees) ecash.Amount     { return f.Swap }
func refundFee(f ecash.Fees) ecash.Amount   { return f.Refund }

// outputs checks planchets the bank is asked to sign now (a withdrawal's,
// a swap's or a recoup's): known denominations, withdrawable now. It
// returns their total, their keys, the hashes of their blinded messages
// and the CS nonce locks to take.
func (b *Bank) outputs(ps []ecash.Planchet, now time.Time) (ecash.Amount, []*DenomKey, []ecash.Hash, []NonceLock, error) {
	total := ecash.Amount{Currency: b.keys.Currency}
	keys := make([]*DenomKey, len(ps))
	blinded := make([]ecash.Hash, len(ps))
	var locks []NonceLock
	for i, p := range ps {
		d, ok := b.denom(p.Denom)
		if !ok {
			return total, nil, nil, nil, fmt.Errorf("%w: planchet %d", ecash.ErrUnknownDenomination, i)
		}
		if err := d.CanWithdraw(now); err != nil {
			return total, nil, nil, nil, err
		}
		var err error
		if total, err = total.Add(d.Value); err != nil {
			return total, nil, nil, nil, err
		}
		keys[i], blinded[i] = d, ecash.HashOf(p.Blinded)
		lk, err := d.Private.LockKey(p.Blinded)
		if err != nil {
			return total, nil, nil, nil, fmt.Errorf("planchet %d: %w", i, err)
		}
		if lk != nil {
			locks = append(locks, NonceLock{Denom: p.Denom, Nonce: lk, Blinded: blinded[i]})
		}
	}
	return total, keys, blinded, locks, nil
}

// blindSign signs planchets with their keys on all cores, before any
// commit: an answer computed for a nonce locked to another challenge is
// never released, since the store refuses the commit.
func (b *Bank) blindSign(ctx context.Context, ps []ecash.Planchet, keys []*DenomKey) ([][]byte, error) {
	sigs := make([][]byte, len(ps))
	err := parallel(len(sigs), func(i int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		s, err := keys[i].Private.BlindSign(ps[i].Blinded)
		sigs[i] = s
		return err
	})
	return sigs, err
}

// PrepareItem is one planchet's first-round request.
type PrepareItem struct {
	Denom   ecash.Hash
	Request []byte
}

// PrepareWithdraw answers first-round requests (CS: R0 || R1 for a nonce).
// It is stateless: nothing is recorded, and the same request always gets
// the same answer. The nonce is locked only when a withdrawal or swap is
// signed. It answers for every denomination in the key set, withdrawable
// or not: a wallet restoring from its seed re-derives the planchets of
// coins withdrawn under keys now past their withdraw window.
func (b *Bank) PrepareWithdraw(items []PrepareItem) ([][]byte, error) {
	if len(items) == 0 || len(items) > ecash.MaxCoinsPerRequest {
		return nil, fmt.Errorf("%w: %d items, want 1 to %d", ecash.ErrMalformed, len(items), ecash.MaxCoinsPerRequest)
	}
	out := make([][]byte, len(items))
	for i, it := range items {
		d, ok := b.denom(it.Denom)
		if !ok {
			return nil, fmt.Errorf("%w: item %d", ecash.ErrUnknownDenomination, i)
		}
		a, err := d.Private.Prepare(it.Request)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out[i] = a
	}
	return out, nil
}

// authenticate checks that body is signed by the key of a customer or
// merchant account. An unknown account and a wrong signature look alike to
// the caller, so the answer does not reveal which accounts exist. A wrong
// signature counts a failed authentication of the account from the call's
// source (Source); operations the lock refuses check it themselves
// (checkLock), once the signature verified, so that a forgery is answered
// ErrUnauthorized whether or not its source is locked out.
func (b *Bank) authenticate(ctx context.Context, id uint64, body, sig []byte, what string) (Account, error) {
	acct, err := b.store.Account(ctx, id)
	if errors.Is(err, ErrNoAccount) || (err == nil && acct.Key == nil) {
		return Account{}, fmt.Errorf("%w: %s", ErrUnauthorized, what)
	}
	if err != nil {
		return Account{}, err
	}
	if err := ecash.VerifyBody(acct.Key, body, sig, what); err != nil {
		b.authFailure(ctx, id, Source(ctx))
		return Account{}, fmt.Errorf("%w: %s", ErrUnauthorized, what)
	}
	return acct, nil
}

// Deposit handles a merchant's deposit of a sealed payment. It checks the
// merchant's signature on the payment request, opens the payment, verifies
// every coin and deposit permission, and commits all coins spent and the
// merchant credited in one step — or nothing. A spent coin yields an
// *ecash.DoubleSpendError carrying a proof signed by the bank.
func (b *Bank) Deposit(ctx context.Context, prBody, merchantSig, sealed []byte) (out *ecash.DepositReceipt, stored []byte, err error) {
	pr, err := ecash.DecodePaymentRequest(prBody)
	if err != nil {
		return nil, nil, err
	}
	if pr.BankID != b.keySet().BankID() {
		return nil, nil, ErrWrongBank
	}
	if pr.Amount.Currency != b.keys.Currency {
		return nil, nil, fmt.Errorf("%w: %s, this bank holds %s", ErrWrongCurrency, pr.Amount.Currency, b.keys.Currency)
	}
	merchant, err := b.authenticate(ctx, pr.MerchantAccount, prBody, merchantSig, "payment request")
	if err != nil {
		return nil, nil, err
	}
	// Any account may receive a deposit: a customer returning coins to
	// their own account signs the request with its account key.
	if !merchant.Key.Equal(ed25519.PublicKey(pr.MerchantPub)) {
		return nil, nil, fmt.Errorf("%w: payment request key is not the merchant account's", ErrUnauthorized)
	}
	pay, err := ecash.OpenPayment(b.keys.HPKE, pr, sealed)
	if err != nil {
		return nil, nil, err
	}
	prHash := pr.Hash()
	ids := make([]ecash.Hash, len(pay.Permissions))
	seen := make(map[ecash.Hash]bool, len(ids))
	for i := range pay.Permissions {
		ids[i] = pay.Permissions[i].Coin.ID()
		if seen[ids[i]] {
			return nil, nil, ErrDuplicateCoin
		}
		seen[ids[i]] = true
	}
	// A replay is answered from the record before any check of time: the
	// money moved when it was first accepted.
	recorded := func() (bool, error) {
		receipt, coins, found, err := b.store.DepositRecord(ctx, prHash)
		if err != nil || !found {
			return false, err
		}
		if !sameSet(coins, ids) {
			return false, ErrPaymentConflict
		}
		if out, err = ecash.DecodeDepositReceipt(receipt); err != nil {
			return false, err
		}
		stored = receipt
		return true, nil
	}
	if found, err := recorded(); err != nil || found {
		return out, stored, err
	}
	defer fromRecord(&err, recorded)
	now := b.now()
	if now.After(pr.ExpiresAt.Add(ecash.MaxClockSkew)) {
		return nil, nil, ErrPaymentExpired
	}
	// Nor before it is made, nor one that lives too long: either could hold
	// a wallet's coins pending for as long as its merchant chose.
	if err := notAhead("payment request", pr.CreatedAt, now); err != nil {
		return nil, nil, err
	}
	if err := pr.CheckLifetime(); err != nil {
		return nil, nil, err
	}
	total := ecash.Amount{Currency: b.keys.Currency}
	keys := make([]*DenomKey, len(pay.Permissions))
	for i := range pay.Permissions {
		dp := &pay.Permissions[i]
		d, ok := b.denom(dp.Coin.Denom)
		if !ok {
			return nil, nil, fmt.Errorf("%w: coin %d", ecash.ErrUnknownDenomination, i)
		}
		if err := d.CanDeposit(now); err != nil {
			return nil, nil, err
		}
		if dp.Timestamp.Before(pr.CreatedAt.Add(-ecash.MaxClockSkew)) || dp.Timestamp.After(pr.ExpiresAt) {
			return nil, nil, fmt.Errorf("%w: deposit permission %d signed outside the payment request's validity", ErrBadTimestamp, i)
		}
		dp.Value, keys[i] = d.Value, d
		if total, err = total.Add(d.Value); err != nil {
			return nil, nil, err
		}
	}
	fee, err := b.feeOf(keys, depositFee, nil)
	if err != nil {
		return nil, nil, err
	}
	// The coins pay the amount and their deposit fees: the merchant gets
	// exactly what it asked for.
	if net, err := total.Sub(fee); err != nil || net != pr.Amount {
		return nil, nil, fmt.Errorf("%w: coins worth %s less %s of deposit fees, request %s", ErrAmountMatch, total, fee, pr.Amount)
	}
	rechecked, err := VerifyCoins(pay.Permissions, keys, "coin", func(_ int, err error) error { return err })
	if err != nil {
		return nil, nil, err
	}
	if rechecked > 0 {
		b.log.Warn("a batch of coins failed verification but every coin passed one by one", "coins", rechecked)
	}
	coins := make([]SpentCoin, len(pay.Permissions))
	for i := range coins {
		coins[i] = SpentCoin{ID: ids[i], Permission: pay.Permissions[i].Encode()}
	}
	rcpt := &ecash.DepositReceipt{
		PaymentHash: prHash, MerchantAccount: pr.MerchantAccount, Total: pr.Amount, Coins: ids,
		DepositedAt: now, SignerPub: b.keySet().SigningPub,
	}
	rcpt.Sig = ecash.SignBody(b.keys.Signing, rcpt.Body())
	stored, err = b.store.Deposit(ctx, DepositOp{
		PaymentHash: prHash, Merchant: pr.MerchantAccount, Amount: int64(pr.Amount.Value), Fee: int64(fee.Value),
		Coins: coins, Receipt: rcpt.Encode(), Time: now, NotAfter: pr.ExpiresAt.Add(ecash.MaxClockSkew),
		Log: auditlog.Deposit{Merchant: pr.MerchantAccount, Amount: total, Fee: fee, PaymentHash: prHash, Coins: spentCoins(coins, keys)},
	})
	var spent *SpentError
	if errors.As(err, &spent) {
		return nil, nil, b.doubleSpend(spent, now)
	}
	if err != nil {
		return nil, nil, b.refused(err)
	}
	out, err = ecash.DecodeDepositReceipt(stored)
	if err != nil {
		return nil, nil, fmt.Errorf("bank: stored receipt unreadable: %w", err)
	}
	b.log.Debug("deposit", "merchant", pr.MerchantAccount, "amount", total.String(), "coins", len(ids), "payment", prHash.String()[:16])
	b.countCoins(func(m *metrics) *prometheus.CounterVec { return m.coinsRedeemed }, keys)
	return out, stored, nil
}

// Swap handles a swap request (change): every input coin must be valid,
// depositable now and signed over the outputs; the outputs, withdrawable
// now, must add up to the inputs' value. It blind-signs the outputs in
// parallel, then commits the inputs spent, the signatures and the CS nonce
// locks (the same locks withdrawals take) in one step. A retry of the same
// request returns the same signatures; a spent input fails the whole swap
// with a double-spend proof.
func (b *Bank) Swap(ctx context.Context, body []byte) (sigs [][]byte, err error) {
	req, err := ecash.DecodeSwapRequest(body)
	if err != nil {
		return nil, err
	}
	reqHash := ecash.HashOf(body)
	recorded := func() (found bool, err error) {
		sigs, found, err = b.store.SwapRecord(ctx, reqHash)
		return found, err
	}
	if found, err := recorded(); err != nil || found {
		return sigs, err
	}
	defer fromRecord(&err, recorded)
	now := b.now()
	inKeys := make([]*DenomKey, len(req.Inputs))
	revoked := make([]error, len(req.Inputs)) // inputs that may only spend refund credit
	seen := make(map[ecash.Hash]bool, len(req.Inputs))
	for i, c := range req.Inputs {
		d, ok := b.denom(c.Coin.Denom)
		if !ok {
			return nil, fmt.Errorf("%w: input %d", ecash.ErrUnknownDenomination, i)
		}
		if err := d.CanDeposit(now); err != nil {
			if d.CanHoldCredit(now) != nil {
				return nil, err
			}
			revoked[i] = err // it must turn out to spend credit (swapInputs)
		}
		if seen[c.Coin.ID()] {
			return nil, ErrDuplicateCoin
		}
		seen[c.Coin.ID()] = true
		inKeys[i] = d
	}
	out, outKeys, blinded, locks, err := b.outputs(req.Outputs, now)
	if err != nil {
		return nil, err
	}
	// No input is worth more than its coin's value (refund credit is at
	// most that): outputs worth more are refused before any signature is
	// checked.
	most := ecash.Amount{Currency: b.keys.Currency}
	for _, d := range inKeys {
		if most, err = most.Add(d.Value); err != nil {
			return nil, err
		}
	}
	if out.Value > most.Value {
		return nil, fmt.Errorf("%w: outputs worth %s, inputs at most %s", ErrAmountMatch, out, most)
	}
	coins, err := b.swapInputs(ctx, req, inKeys)
	if err != nil {
		return nil, err
	}
	for i, err := range revoked {
		if err != nil && coins[i].Credit == 0 {
			return nil, err
		}
	}
	in := ecash.Amount{Currency: b.keys.Currency}
	var credits []auditlog.RefundedCoin
	for i, c := range coins {
		v := inKeys[i].Value
		if c.Credit > 0 {
			v = b.Money(c.Credit)
			credits = append(credits, auditlog.RefundedCoin{ID: c.ID, Denom: inKeys[i].ID, Value: v})
		}
		if in, err = in.Add(v); err != nil {
			return nil, err
		}
	}
	// Coins pay their swap fee; refund credit pays none (the refund fee
	// paid for it).
	fee, err := b.feeOf(inKeys, swapFee, func(i int) bool { return coins[i].Credit > 0 })
	if err != nil {
		return nil, err
	}
	if net, err := in.Sub(fee); err != nil || net != out {
		return nil, fmt.Errorf("%w: inputs worth %s less %s of swap fees, outputs %s", ErrAmountMatch, in, fee, out)
	}
	if err := b.unspentBeforeSigning(ctx, reqHash, coins, outKeys, now); err != nil {
		return nil, err
	}
	if err := b.unissued(ctx, reqHash, blinded, coins, now); err != nil {
		return nil, err
	}
	sigs, err = b.blindSign(ctx, req.Outputs, outKeys)
	if err != nil {
		return nil, err
	}
	sigs, err = b.store.Swap(ctx, SwapOp{
		RequestHash: reqHash, Coins: coins, Value: int64(in.Value), Fee: int64(fee.Value), BlindSigs: sigs, Blinded: blinded, Locks: locks, Time: now,
		NotAfter: now.Add(MaxCommitDelay),
		Log:      auditlog.Swap{RequestHash: reqHash, AmountIn: in, AmountOut: out, Spent: spentCoins(coins, inKeys), Issued: denomCounts(outKeys), Credits: credits},
	})
	var spent *SpentError
	if errors.As(err, &spent) {
		return nil, b.doubleSpend(spent, now)
	}
	if err != nil {
		return nil, b.refused(err)
	}
	b.log.Debug("swap", "value", in.String(), "in", len(coins), "out", len(sigs))
	b.countCoins(func(m *metrics) *prometheus.CounterVec { return m.coinsRedeemed }, inKeys)
	b.countCoins(func(m *metrics) *prometheus.CounterVec { return m.coinsIssued }, outKeys)
	return sigs, nil
}

// unissued refuses a request with a blinded message the bank signed in
// another request (ErrAlreadyIssued, which the store's commit checks
// again) before its planchets are signed: refused only at the commit, a
// replay of signed planchets would make the bank sign for nothing, again
// and again. One signed in this very request is a concurrent retry's: the
// commit answers it from the record. A swap's or recoup's input (coins)
// spent by another request answers first, as at the commit: its proof
// tells the wallet which coin it lost.
func (b *Bank) unissued(ctx context.Context, reqHash ecash.Hash, blinded []ecash.Hash, coins []SpentCoin, now time.Time) error {
	found, err := b.store.Issued(ctx, blinded)
	if err != nil {
		return err
	}
	for i, is := range found {
		if is != nil && is.Request != reqHash {
			if err := b.unspent(ctx, reqHash, coins, now); err != nil {
				return err
			}
			return fmt.Errorf("%w: planchet %d", ErrAlreadyIssued, i)
		}
	}
	return nil
}

// unspentBeforeSigning looks a swap's (or recoup's) inputs up before its
// outputs are signed, where signing them costs more than the inputs'
// verification did (more outputs than inputs, or RSA ones). A spent input
// fails the swap at its commit, after the signing: a spent coin replayed
// with fresh outputs would make the bank sign for nothing, again and again.
func (b *Bank) unspentBeforeSigning(ctx context.Context, reqHash ecash.Hash, coins []SpentCoin, outKeys []*DenomKey, now time.Time) error {
	if len(outKeys) <= len(coins) && !slices.ContainsFunc(outKeys, func(d *DenomKey) bool { return d.Key.Cipher() == ecash.CipherRSA }) {
		return nil
	}
	return b.unspent(ctx, reqHash, coins, now)
}

// unspent refuses, with the double-spend proof the commit would give, a
// swap whose coin inputs (not those spending refund credit) are spent by
// another request. One spent by this very request (reqHash) is a
// concurrent retry's: the commit answers it from the record. (Not by the
// permission: the same inputs in another order sign the same ones, in a
// request of another hash that would be refused only after signing.)
func (b *Bank) unspent(ctx context.Context, reqHash ecash.Hash, coins []SpentCoin, now time.Time) error {
	var ids []ecash.Hash
	for _, c := range coins {
		if c.Credit == 0 {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	states, err := b.store.CoinStates(ctx, ids)
	if err != nil {
		return err
	}
	if len(states) != len(ids) {
		return fmt.Errorf("bank: the store reported %d coin states for %d coins", len(states), len(ids))
	}
	for j, st := range states {
		if st.Permission != nil && st.SpentBy != reqHash {
			return b.doubleSpend(&SpentError{Coin: ids[j], Permission: st.Permission}, now)
		}
	}
	return nil
}

// swapInputs verifies every input of a swap: the coin's signature and its
// permission over the outputs. An input whose swap permission does not
// verify may be spending a refund credit (a coin already spent whose
// payment was refunded): it must then sign the credit permission
// (ecash.CreditAccount) for exactly the coin's credit.
func (b *Bank) swapInputs(ctx context.Context, req *ecash.SwapRequest, keys []*DenomKey) ([]SpentCoin, error) {
	coins := make([]SpentCoin, len(req.Inputs))
	perms := make([]ecash.DepositPermission, len(req.Inputs))
	outputs := req.OutputsHash()
	for i := range perms {
		perms[i] = req.PermissionOver(outputs, i, keys[i].Value)
		coins[i] = SpentCoin{ID: perms[i].Coin.ID(), Permission: perms[i].Encode()}
	}
	// An input whose swap permission fails may be spending a refund
	// credit: its credit permission is checked below.
	permErr := make([]error, len(req.Inputs))
	if _, err := VerifyCoins(perms, keys, "input", func(i int, err error) error {
		permErr[i] = err
		return nil
	}); err != nil {
		return nil, err
	}
	var failed []int
	var ids []ecash.Hash
	for i, err := range permErr {
		if err != nil {
			failed = append(failed, i)
			ids = append(ids, coins[i].ID)
		}
	}
	if len(failed) == 0 {
		return coins, nil
	}
	states, err := b.store.CoinStates(ctx, ids)
	if err != nil {
		return nil, err
	}
	for j, i := range failed {
		credit := states[j].Credit
		if credit <= 0 {
			return nil, permErr[i]
		}
		dp := perms[i].ForCredit(b.Money(credit))
		if dp.Verify() != nil {
			return nil, permErr[i]
		}
		coins[i] = SpentCoin{ID: ids[j], Permission: dp.Encode(), Credit: credit}
	}
	return coins, nil
}

// IssuedSignatures returns the blind signatures the bank issued for the
// given blinded-message hashes (nil where none): a wallet restoring from
// its seed re-derives its planchets and asks for their signatures. Only the
// holder of the blinding secrets can turn an answer into a coin.
func (b *Bank) IssuedSignatures(ctx context.Context, blinded []ecash.Hash) ([][]byte, error) {
	if len(blinded) == 0 || len(blinded) > ecash.MaxCoinsPerRequest {
		return nil, fmt.Errorf("%w: %d blinded messages, want 1 to %d", ecash.ErrMalformed, len(blinded), ecash.MaxCoinsPerRequest)
	}
	found, err := b.store.Issued(ctx, blinded)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(found))
	for i, is := range found {
		if is != nil {
			out[i] = is.Sig
		}
	}
	return out, nil
}

// CoinsSpent reports for each coin id whether the bank holds it spent, the
// refund credit (minor units) a swap may spend from it and, for a coin
// with credit, the payment that spent it (zero otherwise): a wallet
// restored from its seed holds no receipt, and finds the payment's refund
// receipts by it. No secret of the coin's: the public audit log's deposit
// entry names the payment with the coin.
func (b *Bank) CoinsSpent(ctx context.Context, coins []ecash.Hash) (spent []bool, credit []uint64, payment []ecash.Hash, err error) {
	if len(coins) == 0 || len(coins) > ecash.MaxCoinsPerRequest {
		return nil, nil, nil, fmt.Errorf("%w: %d coins, want 1 to %d", ecash.ErrMalformed, len(coins), ecash.MaxCoinsPerRequest)
	}
	states, err := b.store.CoinStates(ctx, coins)
	if err != nil {
		return nil, nil, nil, err
	}
	spent, credit, payment = make([]bool, len(coins)), make([]uint64, len(coins)), make([]ecash.Hash, len(coins))
	for i, st := range states {
		spent[i], credit[i] = st.Permission != nil, uint64(max(st.Credit, 0))
		if credit[i] > 0 {
			payment[i] = st.SpentBy
		}
	}
	return spent, credit, payment, nil
}

// DepositStatus returns the signed receipt of a paid payment request, or
// found=false. The payment hash is known only to the merchant, the payer
// and the bank; a wallet whose payment went unanswered asks here.
func (b *Bank) DepositStatus(ctx context.Context, paymentHash ecash.Hash) ([]byte, bool, error) {
	receipt, _, found, err := b.store.DepositRecord(ctx, paymentHash)
	return receipt, found, err
}

func sameSet(a, b []ecash.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	set := make(map[ecash.Hash]bool, len(a))
	for _, h := range a {
		set[h] = true
	}
	for _, h := range b {
		if !set[h] {
			return false
		}
	}
	return true
}

// doubleSpend turns the store's record of the earlier spend into a proof.
func (b *Bank) doubleSpend(spent *SpentError, now time.Time) error {
	earlier, err := ecash.DecodeDepositPermission(spent.Permission)
	if err != nil {
		return fmt.Errorf("bank: stored permission unreadable: %w", err)
	}
	proof := &ecash.DoubleSpendProof{Earlier: *earlier, DetectedAt: now, SignerPub: b.keySet().SigningPub}
	proof.BankSig = ecash.SignBody(b.keys.Signing, proof.Body())
	b.log.Warn("double spend refused", "coin", spent.Coin.String()[:16])
	if b.metrics != nil {
		b.metrics.doubleSpends.Inc()
	}
	return &ecash.DoubleSpendError{Proof: proof}
}

// OpenAccount opens a customer or merchant account for an Ed25519 key.
func (b *Bank) OpenAccount(ctx context.Context, name string, key []byte, merchant bool) (uint64, error) {
	if err := ecash.CheckEd25519Key(key); err != nil {
		return 0, err
	}
	if name == "" || len(name) > 128 {
		return 0, fmt.Errorf("%w: account name must be 1 to 128 bytes", ecash.ErrMalformed)
	}
	// Admin tools print the name beside balances: no escape sequence or
	// bidi override may rewrite what is shown next to it.
	if err := ecash.CheckText(name, 128, "account name"); err != nil {
		return 0, err
	}
	id, err := b.store.OpenAccount(ctx, name, key, merchant, b.now())
	if err == nil {
		b.log.Info("account opened", "account", id, "merchant", merchant)
	}
	return id, err
}

// checkCredit checks an admin credit or payout before the store sees it.
// The memo is shown in the account's signed statement, where a customer's
// wallet refuses what echeck refuses (ecash.CheckText); the reference is
// printed by the admin tools.
func (b *Bank) checkCredit(amount ecash.Amount, memo, reference, what string) error {
	if amount.Currency != b.keys.Currency {
		return fmt.Errorf("%w: %s, this bank holds %s", ErrWrongCurrency, amount.Currency, b.keys.Currency)
	}
	if amount.IsZero() {
		return fmt.Errorf("%w: %s of zero", ecash.ErrBadAmount, what)
	}
	if err := ecash.CheckText(memo, echeck.MaxMemoLen, "memo"); err != nil {
		return err
	}
	return ecash.CheckText(reference, maxAdminReference, "reference")
}

// maxAdminReference bounds a credit's or payout's reference, in bytes: an
// operator's transfer id, well within what the store allows.
const maxAdminReference = 128

// Credit funds an account from outside (an admin operation).
func (b *Bank) Credit(ctx context.Context, account uint64, amount ecash.Amount, memo, reference string) (ecash.Amount, error) {
	if err := b.checkCredit(amount, memo, reference, "credit"); err != nil {
		return ecash.Amount{}, err
	}
	bal, err := b.store.Credit(ctx, CreditOp{Account: account, Amount: int64(amount.Value), Memo: memo, Reference: reference, Time: b.now(),
		Log: auditlog.Credit{Account: account, Amount: amount, Reference: auditlog.OptionalHash(reference)}})
	if err != nil {
		return ecash.Amount{}, err
	}
	b.log.Info("credit", "account", account, "amount", amount.String(), "reference", reference)
	return b.Money(bal), nil
}

// Money turns a ledger balance into an amount of the bank's currency
// (negative balances, which only system accounts have, show as zero).
func (b *Bank) Money(v int64) ecash.Amount {
	return ecash.Amount{Currency: b.keys.Currency, Value: uint64(max(v, 0))}
}

// BatchSize is the most coins the bank verifies in one batch: a larger request is
// split into batches checked in parallel, so that it is answered sooner on
// all cores (a batch costs little less per coin beyond some eight coins,
// ecash.BenchmarkVerifyPermissions) and a bad coin costs a re-check of its
// batch only.
const BatchSize = 16

// VerifyCoins checks that every coin in perms carries a valid signature
// under keys[i] and a valid permission: in batches (verifyBatches), then
// one by one, in order, in the batches that failed, to name what failed. A
// bad coin signature is the error ("what i: ..."); a bad permission goes to
// permFailed, which returns the error or nil to leave the permission to a
// later check (a swap input spending a refund credit). rechecked counts
// the coins of failed batches that then passed one by one.
func VerifyCoins(perms []ecash.DepositPermission, keys []*DenomKey, what string, permFailed func(i int, err error) error) (rechecked int, err error) {
	for _, r := range verifyBatches(perms, keys) {
		for i := r.lo; i < r.hi; i++ {
			dp := &perms[i]
			if err := dp.Coin.Verify(keys[i].Key); err != nil {
				return 0, fmt.Errorf("%s %d: %w", what, i, err)
			}
			if err := dp.Verify(); err != nil {
				if err := permFailed(i, fmt.Errorf("%s %d: %w", what, i, err)); err != nil {
					return 0, err
				}
				continue
			}
			rechecked++
		}
	}
	return rechecked, nil
}

// verifyBatches checks perms and their coins in batches of at most
// BatchSize coins (ecash.VerifyPermissions), in parallel, and returns the
// ranges of perms whose batch failed: nil if all passed. A failed batch
// says only that something in it failed.
func verifyBatches(perms []ecash.DepositPermission, keys []*DenomKey) []span {
	pks := make([]ecash.DenomPublicKey, len(keys))
	for i, k := range keys {
		pks[i] = k.Key
	}
	n := len(perms)
	chunks := (n + BatchSize - 1) / BatchSize
	failed := make([]bool, chunks)
	err := parallel(chunks, func(c int) error {
		lo, hi := c*n/chunks, (c+1)*n/chunks
		failed[c] = !ecash.VerifyPermissions(rand.Reader, perms[lo:hi], pks[lo:hi])
		return nil
	})
	if err != nil { // a panic: nothing passed
		return []span{{0, n}}
	}
	var out []span
	for c, f := range failed {
		if f {
			out = append(out, span{c * n / chunks, (c + 1) * n / chunks})
		}
	}
	return out
}

// span is the range [lo, hi) of a slice.
type span struct{ lo, hi int }

// parallel runs f(0..n-1) on up to GOMAXPROCS goroutines and returns the
// first error. After an error no further f starts, so a request whose last
// item is bad costs little more than one whose first is. A panic in f comes
// back as an error: on a goroutine of its own it would end the process,
// where a handler's is recovered by the RPC interceptor.
func parallel(n int, f func(i int) error) error {
	var (
		next   atomic.Int64
		failed atomic.Bool
		mu     sync.Mutex
		first  error
	)
	run := func() {
		for !failed.Load() {
			i := next.Add(1) - 1
			if i >= int64(n) {
				return
			}
			if err := recovered(f, int(i)); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				failed.Store(true)
			}
		}
	}
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		run()
		return first
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(run)
	}
	wg.Wait()
	return first
}

// recovered is f(i), a panic turned into an error.
func recovered(f func(int) error, i int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bank: panic in a parallel task: %v\n%s", r, debug.Stack())
		}
	}()
	return f(i)
}
