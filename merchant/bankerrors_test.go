package merchant

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// TestBankClientErrorsHidden: the merchant relayed any status its bank
// client returned to the wallet unchanged, including the gRPC client's
// own, which name the bank's (internal) address and the merchant's
// connection or TLS failure. Those codes now reach the wallet with a
// fixed message (the code kept: none is a refusal, and the wallet
// retries), the detail in the merchant's log; the bank's deliberate
// answers, a double spend's proof included, pass unchanged.
func TestBankClientErrorsHidden(t *testing.T) {
	var logged strings.Builder
	m := &Merchant{log: slog.New(slog.NewTextHandler(&logged, nil))}
	ctx := bank.WithRequestID(context.Background(), "req-1")
	secret := `connection error: desc = "transport: Error while dialing: dial tcp 10.1.2.3:7443: connect: connection refused"`
	for _, code := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.Unknown, codes.Internal} {
		for _, err := range []error{status.Error(code, secret), fmt.Errorf("deposit: %w", status.Error(code, secret))} {
			got := m.toStatus(ctx, err)
			if status.Code(got) != code {
				t.Errorf("%v from the bank client: %v; want the code kept", code, got)
			}
			if msg := status.Convert(got).Message(); strings.Contains(msg, "10.1.2.3") || strings.Contains(msg, "dial") || !strings.Contains(msg, "retry") {
				t.Errorf("%v from the bank client: the wallet is told %q", code, msg)
			}
			if bank.Definitive(got) {
				t.Errorf("%v from the bank client made a refusal", code)
			}
		}
	}
	// The bank's own reason for such a code stays (it names nothing of
	// the merchant's); the text is the merchant's.
	fromBank := bank.NewStatus(codes.Unavailable, "STORE_UNAVAILABLE", "bank: the store is unreachable; nothing was done, retry later").Err()
	if got := m.toStatus(ctx, fmt.Errorf("deposit: %w", fromBank)); bank.Reason(got) != "STORE_UNAVAILABLE" || status.Code(got) != codes.Unavailable ||
		!strings.Contains(status.Convert(got).Message(), "merchant: the bank is unreachable") {
		t.Errorf("the bank's STORE_UNAVAILABLE reached the wallet as %v, reason %q", got, bank.Reason(got))
	}
	if !strings.Contains(logged.String(), "10.1.2.3") || !strings.Contains(logged.String(), "req-1") {
		t.Errorf("the detail is not in the merchant's log: %s", logged.String())
	}

	st, err := status.New(codes.FailedPrecondition, ecash.ErrDoubleSpend.Error()).WithDetails(&pb.DoubleSpendDetail{Proof: []byte("proof")})
	if err != nil {
		t.Fatal(err)
	}
	for _, deliberate := range []error{st.Err(), status.Error(codes.ResourceExhausted, "too many requests from this address; slow down"), status.Error(codes.NotFound, "bank: no such account")} {
		got := m.toStatus(ctx, deliberate)
		if status.Code(got) != status.Code(deliberate) || status.Convert(got).Message() != status.Convert(deliberate).Message() || len(status.Convert(got).Details()) != len(status.Convert(deliberate).Details()) {
			t.Errorf("the bank's answer %v reached the wallet as %v", deliberate, got)
		}
	}
}

// TestReasonsDocumented: the merchant's own refusals carry their reasons,
// each its own, with the codes docs/PROTOCOL.md §6.1 lists for them.
func TestReasonsDocumented(t *testing.T) {
	raw, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	m := &Merchant{log: slog.New(slog.DiscardHandler)}
	seen := map[string]bool{}
	own := []error{ErrBadBankAnswer, ErrGoodsChanged} // outside the table: their texts are toStatus's
	for _, e := range errorCodes {
		own = append(own, e.err)
	}
	for _, err := range own {
		got := m.toStatus(context.Background(), fmt.Errorf("detail: %w", err))
		reason := bank.Reason(got)
		if row := fmt.Sprintf("| `%s` | `%s` |", reason, bank.CodeName(status.Code(got))); reason == "" || !strings.Contains(string(raw), row) {
			t.Errorf("%v: §6.1 has no row %q", err, row)
		}
		if seen[reason] {
			t.Errorf("%v: reason %s given twice", err, reason)
		}
		seen[reason] = true
	}
}
