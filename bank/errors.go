package bank

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// errorCodes is the one table from the protocol's error vocabulary to gRPC
// codes and reasons (docs/PROTOCOL.md §6.1: each refusal carries its
// reason in a google.rpc.ErrorInfo of ErrorDomain, which stays when a
// sentinel's text changes). Errors not listed become Internal, with no
// detail sent to the peer. A sentinel's text is still read: a withdraw
// refusal recorded by an earlier build is answered with the reason its
// text finds (WithdrawRefusal), for a day, and banks before 2026-11-28
// send no reason. Reword one only by keeping the old text inside the new
// (TestErrorReasonsDocumented holds each text to docs/PROTOCOL.md).
var errorCodes = []errorCode{
	{ecash.ErrDoubleSpend, codes.FailedPrecondition, "DOUBLE_SPEND"},
	{ecash.ErrDenominationExpired, codes.FailedPrecondition, "DENOMINATION_EXPIRED"},
	{ecash.ErrDenominationRevoked, codes.FailedPrecondition, "DENOMINATION_REVOKED"},
	{ErrNotRevoked, codes.FailedPrecondition, "NOT_REVOKED"},
	{ErrRecoupNeedsOutputs, codes.FailedPrecondition, "RECOUP_NEEDS_OUTPUTS"},
	{ErrRecoupUnknown, codes.NotFound, "RECOUP_UNKNOWN"},
	{ErrInsufficientFunds, codes.FailedPrecondition, "INSUFFICIENT_FUNDS"},
	{ErrNotDeposited, codes.FailedPrecondition, "NOT_DEPOSITED"},
	{ErrMasterOffline, codes.FailedPrecondition, "MASTER_OFFLINE"},
	{ErrNoKeyFile, codes.FailedPrecondition, "NO_KEY_FILE"},
	{ErrUnrevoked, codes.FailedPrecondition, "KEYSET_OMITS_REVOCATION"},
	{ErrRefundExceeds, codes.FailedPrecondition, "REFUND_EXCEEDS"},
	{ErrTooManyRefunds, codes.FailedPrecondition, "TOO_MANY_REFUNDS"},
	{ErrNoCredit, codes.FailedPrecondition, "NO_CREDIT"},
	{ErrNotMerchant, codes.FailedPrecondition, "NOT_MERCHANT"},
	{ErrPaymentExpired, codes.FailedPrecondition, "PAYMENT_EXPIRED"},
	{ErrTooLate, codes.FailedPrecondition, "TOO_LATE"},
	{ErrAccountLocked, codes.FailedPrecondition, "ACCOUNT_LOCKED"},
	{ErrOverLimit, codes.FailedPrecondition, "OVER_LIMIT"},
	{echeck.ErrExpired, codes.FailedPrecondition, "ECHECK_EXPIRED"},
	{ErrEPOIDConflict, codes.AlreadyExists, "EPOID_CONFLICT"},
	{ErrNoCheck, codes.NotFound, "NO_CHECK"},
	{ErrNotPaid, codes.NotFound, "NOT_PAID"},
	{ErrNoLogEntry, codes.NotFound, "NO_LOG_ENTRY"},
	{echeck.ErrStale, codes.InvalidArgument, "ECHECK_STALE"},
	{echeck.ErrMismatch, codes.InvalidArgument, "ECHECK_MISMATCH"},
	{echeck.ErrKeyMismatch, codes.InvalidArgument, "GOODS_KEY_MISMATCH"},
	{echeck.ErrNoKey, codes.InvalidArgument, "NO_GOODS_KEY"},
	{echeck.ErrDecrypt, codes.InvalidArgument, "DECRYPT_FAILED"},
	{ecash.ErrUnknownDenomination, codes.NotFound, "UNKNOWN_DENOMINATION"},
	{ErrNoAccount, codes.NotFound, "NO_ACCOUNT"},
	{ErrKeyInUse, codes.AlreadyExists, "KEY_IN_USE"},
	{ErrPaymentConflict, codes.AlreadyExists, "PAYMENT_CONFLICT"},
	{ErrReferenceConflict, codes.AlreadyExists, "REFERENCE_CONFLICT"},
	{ErrRequestConflict, codes.AlreadyExists, "REQUEST_CONFLICT"},
	{ErrNonceReused, codes.AlreadyExists, "NONCE_REUSED"},
	{ErrAlreadyIssued, codes.AlreadyExists, "ALREADY_ISSUED"},
	// Before ErrInvalidOp: the store refuses a coin twice in one operation
	// with both (opcheck.go), and the bank's own check with this alone.
	{ErrDuplicateCoin, codes.InvalidArgument, "DUPLICATE_COIN"},
	{ErrInvalidOp, codes.InvalidArgument, "INVALID_OPERATION"},
	{ErrBalanceOverflow, codes.InvalidArgument, "BALANCE_OVERFLOW"},
	{ErrStoreClosed, codes.Unavailable, "STORE_CLOSED"},
	{ErrOutcomeUnknown, codes.Unavailable, "OUTCOME_UNKNOWN"},
	{ErrNotServed, codes.Unavailable, "NOT_SERVED"},
	{ErrStoreUnavailable, codes.Unavailable, "STORE_UNAVAILABLE"},
	{ErrUnauthorized, codes.Unauthenticated, "UNAUTHORIZED"},
	{ecash.ErrMalformed, codes.InvalidArgument, "MALFORMED"},
	{ecash.ErrBadAmount, codes.InvalidArgument, "BAD_AMOUNT"},
	{ecash.ErrOverflow, codes.InvalidArgument, "AMOUNT_OVERFLOW"},
	{ecash.ErrUnderflow, codes.InvalidArgument, "AMOUNT_UNDERFLOW"},
	{ecash.ErrCurrencyMismatch, codes.InvalidArgument, "CURRENCY_MISMATCH"},
	{ecash.ErrBadKey, codes.InvalidArgument, "BAD_KEY"},
	{ecash.ErrBadSignature, codes.InvalidArgument, "BAD_SIGNATURE"},
	{ecash.ErrUnknownCipher, codes.InvalidArgument, "UNKNOWN_CIPHER"},
	{ErrWrongBank, codes.InvalidArgument, "WRONG_BANK"},
	{ErrWrongCurrency, codes.InvalidArgument, "WRONG_CURRENCY"},
	{ErrAmountMatch, codes.InvalidArgument, "AMOUNT_MISMATCH"},
	{ErrBadTimestamp, codes.InvalidArgument, "BAD_TIMESTAMP"},
	{ErrTooOld, codes.InvalidArgument, "TOO_OLD"},
	{ErrRateLimited, codes.ResourceExhausted, "RATE_LIMITED"},
	{context.Canceled, codes.Canceled, "CANCELED"},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "DEADLINE_EXCEEDED"},
}

type errorCode struct {
	err    error
	code   codes.Code
	reason string
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
// refusal's reason is matched (ALREADY_ISSUED, docs/PROTOCOL.md §6.1), or
// the sentinel's text from a bank that sends no reason (sentAs).
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

// ErrorDomain is the domain of the google.rpc.ErrorInfo that carries a
// refusal's reason (docs/PROTOCOL.md §6.1).
const ErrorDomain = "github.com/blindbank/blindbank"

// Reason returns the reason a refusal got over gRPC carries
// (docs/PROTOCOL.md §6.1: "TOO_LATE", "DOUBLE_SPEND", …), or "" if it
// carries none: not a refusal of this protocol, or from a bank built
// before 2026-11-28, whose refusals are told apart by their text alone.
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// NewStatus is a refusal of code with its reason (docs/PROTOCOL.md
// §6.1) and text, for the answers made outside ToStatus's table.
func NewStatus(code codes.Code, reason, msg string) *status.Status {
	return withDetails(status.New(code, msg), errorInfo(reason))
}

// CodeName is a gRPC code's Go name in UPPER_SNAKE, as docs/PROTOCOL.md
// §6.1 writes codes: FAILED_PRECONDITION (google.rpc.Code spells one
// CANCELLED; this, CANCELED).
func CodeName(c codes.Code) string {
	var b strings.Builder
	prev := ' '
	for _, r := range c.String() {
		if r >= 'A' && r <= 'Z' && prev >= 'a' && prev <= 'z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
		prev = r
	}
	return strings.ToUpper(b.String())
}

func errorInfo(reason string) *errdetails.ErrorInfo {
	return &errdetails.ErrorInfo{Domain: ErrorDomain, Reason: reason}
}

// withDetails is st with details, or st as it is if they cannot be
// marshalled (never, for these messages).
func withDetails(st *status.Status, details ...protoadapt.MessageV1) *status.Status {
	if with, err := st.WithDetails(details...); err == nil {
		return with
	}
	return st
}

// DoubleSpent reports whether an error a client got over gRPC is a double
// spend's refusal (ecash.ErrDoubleSpend; its proof rides in the details):
// a coin of the request was spent by another operation, so the request
// can never commit, however often it is sent.
func DoubleSpent(err error) bool {
	return sentAs(err, codes.FailedPrecondition, ecash.ErrDoubleSpend)
}

// RecoupNeedsOutputs reports whether an error a client got over gRPC is
// the bank's ErrRecoupNeedsOutputs: the coin a recoup names came from a
// swap, and is re-issued only as blind signatures on outputs of its value.
func RecoupNeedsOutputs(err error) bool {
	return sentAs(err, codes.FailedPrecondition, ErrRecoupNeedsOutputs)
}

// sentAs reports whether err is a gRPC status of code that is sentinel's
// refusal: by the reason it carries, or, from a bank that sends none, by
// the sentinel's text in its message (wrapped or not).
func sentAs(err error, code codes.Code, sentinel error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		return false
	}
	if r := Reason(err); r != "" {
		return r == reasonOf(sentinel)
	}
	return strings.Contains(st.Message(), sentinel.Error())
}

// reasonOf is a sentinel's reason in errorCodes, or "".
func reasonOf(sentinel error) string {
	for _, e := range errorCodes {
		if e.err == sentinel {
			return e.reason
		}
	}
	return ""
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
		msg := err.Error()
		if slices.Contains(opaqueErrors, e.err) {
			if log != nil && e.code == codes.Unavailable {
				log.Error("store error", "request_id", RequestID(ctx), "err", err)
			}
			msg = e.err.Error()
		}
		details := []protoadapt.MessageV1{errorInfo(e.reason)}
		var ds *ecash.DoubleSpendError
		if errors.As(err, &ds) {
			details = append(details, &pb.DoubleSpendDetail{Proof: ds.Proof.Encode()})
		}
		return withDetails(status.New(e.code, msg), details...).Err()
	}
	if log != nil {
		log.Error("internal error", "request_id", RequestID(ctx), "err", err)
	}
	return status.Error(codes.Internal, "internal error")
}
