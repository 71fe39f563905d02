package bank

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
)

// docReasons reads the table of docs/PROTOCOL.md §6.1 that follows the
// line starting with intro: each row's reason, code and third column.
func docReasons(t *testing.T, path, intro string) map[string][2]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i := strings.Index(doc, "\n### 6.1 ")
	if i < 0 {
		t.Fatal("docs/PROTOCOL.md has no §6.1")
	}
	doc = doc[i:]
	j := strings.Index(doc, "\n"+intro)
	if j < 0 {
		t.Fatalf("§6.1 has no line starting %q", intro)
	}
	rows := map[string][2]string{}
	inTable := false
	for _, line := range strings.Split(doc[j+1:], "\n")[1:] {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 3 || !strings.HasPrefix(cells[0], " `") {
			continue // the header and its rule
		}
		reason := strings.Trim(cells[0], " `")
		if _, dup := rows[reason]; dup {
			t.Errorf("§6.1 lists %s twice", reason)
		}
		rows[reason] = [2]string{strings.Trim(cells[1], "`"), strings.TrimSpace(cells[2])}
	}
	return rows
}

var reasonForm = regexp.MustCompile(`^[A-Z][A-Z0-9_]+[A-Z0-9]$`)

// TestErrorReasonsDocumented: every refusal of the bank's vocabulary has
// a reason of google.rpc.ErrorInfo's form, its own, and docs/PROTOCOL.md
// §6.1 lists exactly these, each with its code and its sentinel's text.
func TestErrorReasonsDocumented(t *testing.T) {
	doc := docReasons(t, "../docs/PROTOCOL.md", "The bank's")
	seen := map[string]bool{}
	for _, e := range errorCodes {
		if !reasonForm.MatchString(e.reason) || len(e.reason) > 63 {
			t.Errorf("%v: reason %q is not UPPER_SNAKE_CASE of at most 63 characters", e.err, e.reason)
		}
		if seen[e.reason] {
			t.Errorf("reason %s given twice", e.reason)
		}
		seen[e.reason] = true
		row, ok := doc[e.reason]
		if !ok {
			t.Errorf("§6.1 does not list %s (%v)", e.reason, e.err)
			continue
		}
		if want := [2]string{CodeName(e.code), e.err.Error()}; row != want {
			t.Errorf("§6.1 lists %s as %q; want %q", e.reason, row, want)
		}
	}
	for reason := range doc {
		if !seen[reason] {
			t.Errorf("§6.1 lists %s, which the bank does not send", reason)
		}
	}
}

// TestReasonSent: ToStatus sends each refusal, wrapped or not, with its
// code and reason, and the matchers find it by the reason.
func TestReasonSent(t *testing.T) {
	ctx := context.Background()
	for _, e := range errorCodes {
		for _, err := range []error{e.err, fmt.Errorf("some detail: %w", e.err)} {
			st := ToStatus(ctx, err, nil)
			if status.Code(st) != e.code || Reason(st) != e.reason {
				t.Errorf("ToStatus(%v) = %v, reason %q; want %v, %q", err, status.Code(st), Reason(st), e.code, e.reason)
			}
			if !sentAs(st, e.code, e.err) {
				t.Errorf("%v not matched as itself", err)
			}
		}
	}
	// A double spend carries its proof beside its reason.
	ds := &ecash.DoubleSpendError{Proof: &ecash.DoubleSpendProof{}}
	if got := status.Convert(ToStatus(ctx, ds, nil)).Details(); len(got) != 2 || Reason(ToStatus(ctx, ds, nil)) != "DOUBLE_SPEND" {
		t.Errorf("a double spend's details: %v; want its reason and its proof", got)
	}
	if st := ToStatus(ctx, errors.New("something unforeseen"), nil); status.Code(st) != codes.Internal || Reason(st) != "" {
		t.Errorf("an internal error = %v, reason %q; want INTERNAL, none", st, Reason(st))
	}
}

// TestMatchersByReason: a matcher goes by the reason when there is one,
// whatever the text says (a later build may word it otherwise; another
// refusal's text may quote it), and by the text from a bank that sends
// none.
func TestMatchersByReason(t *testing.T) {
	late := status.Convert(ToStatus(context.Background(), ErrTooLate, nil))
	reworded := NewStatus(codes.FailedPrecondition, "TOO_LATE", "bank: the deadline passed").Err()
	quoting := NewStatus(codes.FailedPrecondition, "INSUFFICIENT_FUNDS", "bank: insufficient funds (not "+ErrTooLate.Error()+")").Err()
	older := status.New(codes.FailedPrecondition, "bank: x: "+ErrTooLate.Error()).Err()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{late.Err(), true},
		{reworded, true},
		{quoting, false},
		{older, true},
		{NewStatus(codes.InvalidArgument, "TOO_LATE", ErrTooLate.Error()).Err(), false}, // another code
		{errors.New(ErrTooLate.Error()), false},                                         // not a status
	} {
		if got := TooLate(tc.err); got != tc.want {
			t.Errorf("TooLate(%v, reason %q) = %v; want %v", tc.err, Reason(tc.err), got, tc.want)
		}
	}
}

// TestRecordedRefusalKeepsReason: a withdraw refusal answered from its
// record carries the reason of the refusal it records.
func TestRecordedRefusalKeepsReason(t *testing.T) {
	for _, e := range []error{ErrTooOld, ErrInsufficientFunds, ecash.ErrDenominationRevoked, ErrAlreadyIssued} {
		first := status.Convert(ToStatus(context.Background(), fmt.Errorf("%w (the detail)", e), nil))
		r := &WithdrawRefusal{Code: first.Code(), Reason: first.Message()}
		if got, want := Reason(r), Reason(first.Err()); got != want || got == "" {
			t.Errorf("recorded refusal of %v: reason %q; want %q, as first sent", e, got, want)
		}
	}
}

// TestCodeName: every code by the name other gRPC libraries give it.
func TestCodeName(t *testing.T) {
	for c, want := range map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELED", codes.InvalidArgument: "INVALID_ARGUMENT",
		codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.FailedPrecondition: "FAILED_PRECONDITION",
		codes.ResourceExhausted: "RESOURCE_EXHAUSTED", codes.Unauthenticated: "UNAUTHENTICATED",
		codes.OutOfRange: "OUT_OF_RANGE", codes.DataLoss: "DATA_LOSS", codes.AlreadyExists: "ALREADY_EXISTS",
	} {
		if got := CodeName(c); got != want {
			t.Errorf("CodeName(%v) = %q; want %q", c, got, want)
		}
	}
}
