package bank

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
)

// MaxRefusalLen bounds the text of a recorded withdraw refusal, in bytes.
const MaxRefusalLen = 1024

// WithdrawRefusal is a definitive refusal of a withdraw request as the
// bank answered it: the gRPC code and text. Recorded under the request's
// hash (Store.RefuseWithdrawal), in place of the withdrawal the request
// will now never be, it is the answer to every later send of the request,
// whatever changed since: a wallet drops a request refused so, and the
// original of a retry it refused, still committing elsewhere, is refused
// too (the store keeps one record under a hash, withdrawal or refusal).
//
// It is an error as a store returns it (Withdrawal, Withdraw,
// RefuseWithdrawal) and the bank answers it: gRPC callers get its code
// and text as they were first sent, and the reason of the sentinel it was
// made from (GRPCStatus); in process, errors.Is matches that sentinel.
// The sentinel is found by its text in the recorded one (entry).
type WithdrawRefusal struct {
	Code   codes.Code
	Reason string
}

func (r *WithdrawRefusal) Error() string { return r.Reason }

// GRPCStatus is the refusal as it was first answered (ToStatus sends it
// as it is).
func (r *WithdrawRefusal) GRPCStatus() *status.Status {
	st := status.New(r.Code, r.Reason)
	if e := r.entry(); e != nil {
		st = withDetails(st, errorInfo(e.reason))
	}
	return st
}

// Is matches the sentinel of the error vocabulary the refusal was made
// from: one that maps to its code and whose text it carries.
func (r *WithdrawRefusal) Is(target error) bool {
	return slices.ContainsFunc(errorCodes, func(e errorCode) bool { return e.err == target && r.madeFrom(e) })
}

// madeFrom reports whether the refusal may have been made from e: it maps
// to the refusal's code and the refusal carries its text.
func (r *WithdrawRefusal) madeFrom(e errorCode) bool {
	return e.code == r.Code && strings.Contains(r.Reason, e.err.Error())
}

// entry is the entry of errorCodes the refusal was made from, as Is finds
// one: the first (in ToStatus's order) it may have been made from; nil if
// none. Its reason is sent with the refusal (Reason is the refusal's
// text, not that).
func (r *WithdrawRefusal) entry() *errorCode {
	if i := slices.IndexFunc(errorCodes, r.madeFrom); i >= 0 {
		return &errorCodes[i]
	}
	return nil
}

// Validate checks a refusal's shape: a code a client takes for a refusal
// (Definitive) and a text of at most MaxRefusalLen bytes. Stores check
// what they record and what they read back.
func (r *WithdrawRefusal) Validate() error {
	switch {
	case !definitiveCode(r.Code):
		return invalidOp("withdraw refusal of code %d, not a refusal", uint32(r.Code))
	case len(r.Reason) > MaxRefusalLen:
		return invalidOp("withdraw refusal of %d bytes", len(r.Reason))
	}
	return nil
}

// RefuseWithdrawalOp records a definitive refusal of a withdraw request
// under its hash (Store.RefuseWithdrawal).
type RefuseWithdrawalOp struct {
	RequestHash ecash.Hash
	Account     uint64 // the request's account
	Refusal     WithdrawRefusal
	Time        time.Time
}

// Validate checks a refusal's shape.
func (op *RefuseWithdrawalOp) Validate() error {
	if IsSystem(op.Account) {
		return invalidOp("withdraw refusal for system account %d", op.Account)
	}
	return op.Refusal.Validate()
}

// withdrawRefusal is the one place that decides which of Withdraw's
// answers is recorded under the request's hash: a refusal a wallet takes
// as final (Definitive, of the code ToStatus gives it), as it is sent.
// Not the date (ErrBadTimestamp): that one holds only until the bank's
// clock reaches the request's date. Nor the lock (ErrAccountLocked): it
// is about the source the request came from, not the request; recorded,
// anyone holding a copy of a signed request could lock the account for
// their own address and have the request refused for every address,
// its wallet's too. A wallet keeps a request it may have sent before
// pending when refused for either. nil for everything that is no refusal
// (the store, the signer, a context, the rate: the request is retried)
// and for a refusal recorded already.
func withdrawRefusal(err error) *WithdrawRefusal {
	var recorded *WithdrawRefusal
	if err == nil || errors.As(err, &recorded) || errors.Is(err, ErrBadTimestamp) || errors.Is(err, ErrAccountLocked) {
		return nil
	}
	st := status.Convert(ToStatus(context.Background(), err, nil))
	if !definitiveCode(st.Code()) {
		return nil
	}
	return &WithdrawRefusal{Code: st.Code(), Reason: truncateText(st.Message(), MaxRefusalLen)}
}

// truncateText cuts s to at most n bytes, at a character boundary.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// RefusalHorizon is how long a recorded withdraw refusal is kept before
// PruneRefusals deletes it. A refusal excludes the withdrawal of its
// request still in flight when it was made: one in this process's commit
// pipeline (milliseconds), or one at another replica that looked the
// request up before the refusal and has yet to commit (seconds; a
// replica paused in between, longer: a commit's transaction that holds
// the account's lock already is waited for, not overtaken). One stalled
// for longer than MaxWithdrawAge is refused at its commit by the store's
// clock (WithdrawOp.NotAfter), and a send after the pruning by the
// bank's (notTooOld): the horizon must exceed that age and the skew.
// Apart from that the records only keep answering later sends the same,
// which a wallet does not need once it dropped the request. The horizon
// bounds what refusals occupy: their rate (LimitRefusals, per account)
// times it.
const RefusalHorizon = 24 * time.Hour

// PruneRefusals deletes the withdraw refusals recorded more than
// RefusalHorizon before the bank's clock (Store.PruneWithdrawRefusals),
// and returns how many. A request whose refusal is gone is older than
// MaxWithdrawAge by then, and refused for that when sent again.
func (b *Bank) PruneRefusals(ctx context.Context) (int64, error) {
	return b.store.PruneWithdrawRefusals(ctx, b.now().Add(-RefusalHorizon))
}

// WatchRefusals runs PruneRefusals at once and then every interval until
// ctx is done, logging what it deleted (at Info) and a failure (at Error;
// the next interval tries again). At once: a bank restarted more often
// than the interval prunes all the same.
func (b *Bank) WatchRefusals(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		n, err := b.PruneRefusals(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			b.log.Error("pruning withdraw refusals", "err", err, "deleted", n)
		case n > 0:
			b.log.Info("withdraw refusals pruned", "deleted", n, "horizon", RefusalHorizon.String())
		}
	}
}
