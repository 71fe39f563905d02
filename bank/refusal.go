package bank

import (
	"context"
	"errors"
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
// and text as they were first sent (GRPCStatus); in process, errors.Is
// matches the sentinel it was made from, by its text as a client does
// (see AlreadyIssued).
type WithdrawRefusal struct {
	Code   codes.Code
	Reason string
}

func (r *WithdrawRefusal) Error() string { return r.Reason }

// GRPCStatus is the refusal as it was first answered (ToStatus sends it
// as it is).
func (r *WithdrawRefusal) GRPCStatus() *status.Status { return status.New(r.Code, r.Reason) }

// Is matches the sentinel of the error vocabulary the refusal was made
// from: one that maps to its code and whose text it carries.
func (r *WithdrawRefusal) Is(target error) bool {
	for _, e := range errorCodes {
		if e.err == target && e.code == r.Code && strings.Contains(r.Reason, target.Error()) {
			return true
		}
	}
	return false
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
