package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/blindbank/blindbank/proto"
)

// TestOperationsLogAtDebug: the bank logs each withdrawal, deposit, swap,
// check and refund once, at Debug (at thousands a second, one Info line
// each would be a log storm), and its admin events (an account opened, a
// credit) at Info: a bank at the default level (info) logs none of the
// former and all of the latter.
func TestOperationsLogAtDebug(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	var logs safeBuffer
	e.log = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.restartBank(t)
	bankc := e.dialBank()
	shop := e.startMerchant("shop")
	w := e.newWallet(filepath.Join(t.TempDir(), "w"), "EUR:20.00")
	defer w.Close()
	if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:10.00"), nil); err != nil {
		t.Fatal(err)
	}
	order := shop.order(t, "EUR:3.50")
	if _, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, order, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := shop.admin.RefundOrder(ctx, &pb.RefundOrderRequest{OrderId: order, Amount: "EUR:1.00"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.CollectRefunds(ctx, bankc); err != nil { // a swap spends the credit
		t.Fatal(err)
	}
	if _, err := w.WriteCheck(ctx, bankc, shop.client, mustAmount(t, "EUR:1.00"), "rent"); err != nil {
		t.Fatal(err)
	}

	levels := map[string][]string{} // message -> the level of each line
	for _, line := range strings.Split(strings.TrimSpace(string(logs.Bytes())), "\n") {
		var l struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		levels[l.Msg] = append(levels[l.Msg], l.Level)
	}
	for msg, want := range map[string]string{
		"withdraw": "DEBUG", "deposit": "DEBUG", "swap": "DEBUG", "check": "DEBUG", "refund": "DEBUG",
		"account opened": "INFO", "credit": "INFO",
	} {
		got := levels[msg]
		if len(got) == 0 {
			t.Errorf("no %q line in the bank's log", msg)
		}
		for _, l := range got {
			if l != want {
				t.Errorf("%q logged at %s, want %s", msg, l, want)
			}
		}
	}
}
