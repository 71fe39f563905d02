package bank

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// errorCodes is the one table from the protocol's error vocabulary to gRPC
// codes. Errors not listed become Internal, with no detail sent to the peer.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{ecash.ErrDoubleSpend, codes.FailedPrecondition},
	{ecash.ErrDenominationExpired, codes.FailedPrecondition},
	{ecash.ErrDenominationRevoked, codes.FailedPrecondition},
	{ErrNotRevoked, codes.FailedPrecondition},
	{ErrRecoupNeedsOutputs, codes.FailedPrecondition},
	{ErrRecoupUnknown, codes.NotFound},
	{ErrInsufficientFunds, codes.FailedPrecondition},
	{ErrNotDeposited, codes.FailedPrecondition},
	{ErrMasterOffline, codes.FailedPrecondition},
	{ErrNoKeyFile, codes.FailedPrecondition},
	{ErrUnrevoked, codes.FailedPrecondition},
	{ErrRefundExceeds, codes.FailedPrecondition},
	{ErrTooManyRefunds, codes.FailedPrecondition},
	{ErrNoCredit, codes.FailedPrecondition},
	{ErrNotMerchant, codes.FailedPrecondition},
	{ErrPaymentExpired, codes.FailedPrecondition},
	{ErrTooLate, codes.FailedPrecondition},
	{ErrAccountLocked, codes.FailedPrecondition},
	{ErrOverLimit, codes.FailedPrecondition},
	{echeck.ErrExpired, codes.FailedPrecondition},
	{ErrEPOIDConflict, codes.AlreadyExists},
	{ErrNoCheck, codes.NotFound},
	{echeck.ErrStale, codes.InvalidArgument},
	{echeck.ErrMismatch, codes.InvalidArgument},
	{echeck.ErrKeyMismatch, codes.InvalidArgument},
	{echeck.ErrNoKey, codes.InvalidArgument},
	{echeck.ErrDecrypt, codes.InvalidArgument},
	{ecash.ErrUnknownDenomination, codes.NotFound},
	{ErrNoAccount, codes.NotFound},
	{ErrKeyInUse, codes.AlreadyExists},
	{ErrPaymentConflict, codes.AlreadyExists},
	{ErrReferenceConflict, codes.AlreadyExists},
	{ErrRequestConflict, codes.AlreadyExists},
	{ErrNonceReused, codes.AlreadyExists},
	{ErrAlreadyIssued, codes.AlreadyExists},
	{ErrInvalidOp, codes.InvalidArgument},
	{ErrBalanceOverflow, codes.InvalidArgument},
	{ErrStoreClosed, codes.Unavailable},
	{ErrOutcomeUnknown, codes.Unavailable},
	{ErrNotServed, codes.Unavailable},
	{ErrStoreUnavailable, codes.Unavailable},
	{ErrUnauthorized, codes.Unauthenticated},
	{ecash.ErrMalformed, codes.InvalidArgument},
	{ecash.ErrBadAmount, codes.InvalidArgument},
	{ecash.ErrOverflow, codes.InvalidArgument},
	{ecash.ErrUnderflow, codes.InvalidArgument},
	{ecash.ErrCurrencyMismatch, codes.InvalidArgument},
	{ecash.ErrBadKey, codes.InvalidArgument},
	{ecash.ErrBadSignature, codes.InvalidArgument},
	{ecash.ErrUnknownCipher, codes.InvalidArgument},
	{ErrWrongBank, codes.InvalidArgument},
	{ErrWrongCurrency, codes.InvalidArgument},
	{ErrAmountMatch, codes.InvalidArgument},
	{ErrDuplicateCoin, codes.InvalidArgument},
	{ErrBadTimestamp, codes.InvalidArgument},
	{ErrTooOld, codes.InvalidArgument},
	{ErrRateLimited, codes.ResourceExhausted},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// Definitive reports whether an error a client got over gRPC is a refusal
// (the bank or merchant decided, and did nothing of what was asked; a
// withdraw request refused so is never taken later: its refusal is
// recorded, WithdrawRefusal) rather than a failure
// to get an answer, after which the outcome is unknown and the same request
// must be retried.
func Definitive(err error) bool { return definitiveCode(status.Code(err)) }

// definitiveCode reports whether a gRPC code is a refusal (Definitive).
func definitiveCode(c codes.Code) bool {
	switch c {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists,
		codes.Unauthenticated, codes.PermissionDenied, codes.OutOfRange:
		return true
	}
	return false
}

// AlreadyIssued reports whether an error a client got over gRPC is the
// bank's ErrAlreadyIssued: a refusal (Definitive) that tells the wallet its
// planchet counter is behind the planchets the bank signed. The code alone
// does not tell it from ErrNonceReused and the other conflicts, so the
// message is matched, as ToStatus sends it (the sentinel's text, wrapped or
// not).
func AlreadyIssued(err error) bool { return sentAs(err, codes.AlreadyExists, ErrAlreadyIssued) }

// BadTimestamp reports whether an error a client got over gRPC is the
// bank's ErrBadTimestamp. Answering a withdraw or refund request, it is a
// refusal (Definitive) made after the bank looked the request's record up
// and found none, of a request dated more than ecash.MaxClockSkew ahead of
// the bank's clock: the wallet's or merchant's clock is ahead (or the
// replica's behind).
// That settles a request never sent before; one sent before may still be
// committing at a replica whose clock is further on. Matched as
// AlreadyIssued is: InvalidArgument alone does not tell it from a
// malformed request.
func BadTimestamp(err error) bool { return sentAs(err, codes.InvalidArgument, ErrBadTimestamp) }

// TooOld reports whether an error a client got over gRPC is the bank's
// ErrTooOld: a withdraw or refund request dated further before the bank's
// clock than it takes one, refused for good. To a client that made the
// request just now, its clock is that far behind. Matched as
// AlreadyIssued is.
func TooOld(err error) bool { return sentAs(err, codes.InvalidArgument, ErrTooOld) }

// TooLate reports whether an error a client got over gRPC is the store's
// ErrTooLate: a new request refused at its commit, the store's clock past
// its deadline. To a client that made the request just now (a withdraw or
// refund request, whose deadline its date sets), its clock is behind.
// Matched as AlreadyIssued is.
func TooLate(err error) bool { return sentAs(err, codes.FailedPrecondition, ErrTooLate) }

// AccountLocked reports whether an error a client got over gRPC is the
// bank's ErrAccountLocked: failed authentications from the caller's
// source (its address) lock the account for that source. Answering a
// withdraw request it is a refusal (Definitive) about the source, not the
// request, and not recorded under the request's hash: a request sent
// before may still be committing, or be taken when sent from elsewhere or
// once the lock is lifted. Matched as AlreadyIssued is.
func AccountLocked(err error) bool {
	return sentAs(err, codes.FailedPrecondition, ErrAccountLocked)
}

// UnknownDenomination reports whether an error a client got over gRPC is
// ecash.ErrUnknownDenomination: the bank (this replica) does not serve a
// denomination the request names. A withdraw request is refused so before
// its signature is checked, and nothing is recorded: to a client whose
// key set lists the denomination, the replica is behind the key set
// another one published, and a request sent before may be committing
// there. Matched as AlreadyIssued is.
func UnknownDenomination(err error) bool {
	return sentAs(err, codes.NotFound, ecash.ErrUnknownDenomination)
}

// sentAs reports whether err is a gRPC status of code carrying sentinel's
// text, as ToStatus sends it (wrapped or not).
func sentAs(err error, code codes.Code, sentinel error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == code && strings.Contains(st.Message(), sentinel.Error())
}

// opaqueErrors are sent to the peer as the sentinel's own message only:
// what wraps them is the server's business, not the caller's. A store
// error's chain carries the driver's text (a PostgreSQL DSN's user,
// database name, host or socket path); a context error's, the store
// operation it interrupted. The full chain of a store error is logged.
var opaqueErrors = []error{ErrStoreClosed, ErrOutcomeUnknown, ErrStoreUnavailable, context.Canceled, context.DeadlineExceeded}

type requestIDCtx struct{}

// WithRequestID returns ctx carrying a call's request id, which ToStatus
// logs with the errors it hides.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDCtx{}, id)
}

// RequestID returns the request id WithRequestID put in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDCtx{}).(string)
	return id
}

type sourceCtx struct{}

// WithSource returns ctx carrying where a call comes from: the server's
// key for its peer's address (an IPv4 address, an IPv6 /64), set by the
// transport. Failed authentications are counted per account and source,
// and lock an account out for that source only (AuthFailure).
func WithSource(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, sourceCtx{}, source)
}

// Source returns the source WithSource put in ctx, or "": calls made in
// process (tests, tools) share the one source "".
func Source(ctx context.Context) string {
	s, _ := ctx.Value(sourceCtx{}).(string)
	return s
}

// ToStatus maps an error to a gRPC status error. A double spend carries its
// proof as a DoubleSpendDetail. Unknown errors are logged and hidden, and
// so is what wraps a store error (see opaqueErrors).
func ToStatus(ctx context.Context, err error, log *slog.Logger) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status, e.g. relayed from the bank by a merchant
	}
	for _, e := range errorCodes {
		if !errors.Is(err, e.err) {
			continue
		}
		if slices.Contains(opaqueErrors, e.err) {
			if log != nil && e.code == codes.Unavailable {
				log.Error("store error", "request_id", RequestID(ctx), "err", err)
			}
			return status.Error(e.code, e.err.Error())
		}
		st := status.New(e.code, err.Error())
		var ds *ecash.DoubleSpendError
		if errors.As(err, &ds) {
			if withProof, derr := st.WithDetails(&pb.DoubleSpendDetail{Proof: ds.Proof.Encode()}); derr == nil {
				st = withProof
			}
		}
		return st.Err()
	}
	if log != nil {
		log.Error("internal error", "request_id", RequestID(ctx), "err", err)
	}
	return status.Error(codes.Internal, "internal error")
}
