package merchantdcmd

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRefundErrorSaysPending: merchantd answers a refund it keeps pending
// (its earlier send may still commit at the bank) UNAVAILABLE; the command
// must not call that refused, which tells an operator nothing was made.
func TestRefundErrorSaysPending(t *testing.T) {
	pending := refundError(status.Error(codes.Unavailable, "merchant: a pending refund may still be committing at the bank from an earlier send; it stays pending"))
	if msg := pending.Error(); strings.Contains(msg, "refused") || !strings.Contains(msg, "may still be made") {
		t.Errorf("pending refund: %q", msg)
	}
	refused := refundError(status.Error(codes.FailedPrecondition, "bank: refund exceeds what is left"))
	if msg := refused.Error(); !strings.HasPrefix(msg, "refund refused: ") {
		t.Errorf("refused refund: %q", msg)
	}
}
