package merchantdcmd

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
)

// syncBuffer is a log destination safe for the loop's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lostDeposits is a link to the bank that loses every deposit on the way.
type lostDeposits struct{ pb.BankClient }

func (lostDeposits) Deposit(context.Context, *pb.DepositRequest, ...grpc.CallOption) (*pb.DepositResponse, error) {
	return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
}

// serve's reconcile loop settles deposits in flight as soon as it starts,
// and logs what it did: here it drops the mark of a deposit the bank never
// got (the merchant cannot know that), once the order can no longer be
// paid.
func TestReconcileLoopSettlesAtStart(t *testing.T) {
	ctx := context.Background()
	b, err := node.StartBank(node.BankConfig{
		Dir: t.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Plaintext: true,
		Keys: bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{ecash.MustParseAmount("EUR:1.00")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := t.TempDir()
	pub, err := merchant.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := b.Bank.OpenAccount(ctx, "shop", pub, true)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := transport.Dial(b.Addr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	m, err := merchant.Open(ctx, merchant.Config{Dir: dir, Account: acct, Bank: lostDeposits{pb.NewBankClient(conn)}, Now: now, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	o, err := m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Pay(ctx, o.ID, []byte("a sealed payment")); status.Code(err) != codes.Unavailable {
		t.Fatalf("a payment whose deposit was lost: %v", err)
	}
	skew.Store(int64(time.Minute + 2*ecash.MaxClockSkew + time.Second))

	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		reconcile(loopCtx, m, log)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "deposit in flight dropped"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("the loop did not settle the deposit in flight; log:\n%s", logs.String())
		}
	}
	stop()
	<-done
}
