package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// TestPayoutRefusedBeforePaying: an admin payout whose statement could
// not be made is refused (a definitive InvalidArgument) before anything is
// paid, not after: a period holding more postings than a statement does,
// the payout's own included (a shop with ~35 sales a day over the default
// 30 days), and a period starting after the bank's clock. An operator who
// took the refusal at its word and paid again under a new reference paid
// twice. A period that fits pays, with the statement.
func TestPayoutRefusedBeforePaying(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	acct := e.openAccount("busy shop", pub, true)
	// Exactly as many postings as a statement holds: the payout's would be
	// one too many.
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < echeck.MaxStatementLines; i += 16 {
				if _, err := e.admin.Credit(ctx, &pb.CreditRequest{Account: acct, Amount: "EUR:1.00"}); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	before := e.raw(acct)
	now := e.clock.Now()
	for _, c := range []struct {
		what string
		from time.Time
	}{
		{"the default 30 days", now.Add(-30 * 24 * time.Hour)},
		{"a period starting after the bank's clock", now.Add(time.Hour)},
	} {
		// ToUnixMs 0, as "bankd admin payout" sends without --to.
		_, err := e.admin.Payout(ctx, &pb.PayoutRequest{Account: acct, Amount: "EUR:100.00", Reference: "wire-2026-11", FromUnixMs: c.from.UnixMilli()})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", c.what, err)
		}
		if after := e.raw(acct); after != before {
			t.Fatalf("%s: refused with %v, yet paid: balance %d -> %d", c.what, err, before, after)
		}
	}
	e.clock.Advance(time.Minute)
	resp, err := e.admin.Payout(ctx, &pb.PayoutRequest{Account: acct, Amount: "EUR:100.00", Reference: "wire-2026-11", FromUnixMs: e.clock.Now().UnixMilli()})
	if err != nil || resp.StatementError != "" || len(resp.Statement) == 0 {
		t.Fatalf("a period holding only the payout: %v, %v", resp, err)
	}
	st, err := echeck.DecodeStatement(resp.Statement)
	if err != nil || len(st.Lines) != 1 || resp.Balance != "EUR:924.00" {
		t.Fatalf("statement %+v (%v), balance %s; want the payout alone, EUR:924.00", st, err, resp.Balance)
	}
}
