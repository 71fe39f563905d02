package merchantdcmd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
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

// kindless is a link to a bank that does not say whether an account is a
// merchant's, as banks before GetStatementResponse.merchant.
type kindless struct{ pb.BankClient }

func (k kindless) GetStatement(ctx context.Context, in *pb.GetStatementRequest, opts ...grpc.CallOption) (*pb.GetStatementResponse, error) {
	resp, err := k.BankClient.GetStatement(ctx, in, opts...)
	if resp != nil {
		resp.Merchant = nil
	}
	return resp, err
}

// loopbackBank starts a bank on loopback, in plaintext, with one
// denomination (EUR:1.00) of cipher (0: the default), and dials it.
func loopbackBank(t *testing.T, cipher ecash.Cipher) (*node.Bank, *grpc.ClientConn) {
	t.Helper()
	b, err := node.StartBank(node.BankConfig{
		Dir: t.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Plaintext: true,
		Keys: bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{ecash.MustParseAmount("EUR:1.00")}, Cipher: cipher},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	conn, err := transport.Dial(b.Addr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return b, conn
}

// shopDir makes a merchant in a new data directory (merchant.Init) and
// opens its merchant account at b: the directory and the account.
func shopDir(t *testing.T, b *node.Bank) (string, uint64) {
	t.Helper()
	dir := t.TempDir()
	pub, err := merchant.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := b.Bank.OpenAccount(context.Background(), "shop", pub, true)
	if err != nil {
		t.Fatal(err)
	}
	return dir, acct
}

// serve's reconcile loop settles deposits in flight as soon as it starts,
// and logs what it did: here it drops the mark of a deposit the bank never
// got (the merchant cannot know that), once the order can no longer be
// paid.
func TestReconcileLoopSettlesAtStart(t *testing.T) {
	ctx := context.Background()
	b, conn := loopbackBank(t, 0)
	dir, acct := shopDir(t, b)
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

// serve checks that --account is the merchant key's, and a merchant
// account, before it starts: the merchant's own account passes; a
// customer's account, one that does not exist, or a customer's account
// opened for the merchant key, is refused with the account named; a bank that cannot
// answer, or does not say the account's kind, only gives a warning.
func TestCheckAccount(t *testing.T) {
	ctx := context.Background()
	b, conn := loopbackBank(t, ecash.CipherCS)
	dir := t.TempDir()
	if _, err := merchant.Init(dir); err != nil {
		t.Fatal(err)
	}
	key, err := merchant.LoadKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	shop, err := b.Bank.OpenAccount(ctx, "shop", key.Public().(ed25519.PublicKey), true)
	if err != nil {
		t.Fatal(err)
	}
	customerPub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	customer, err := b.Bank.OpenAccount(ctx, "alice", customerPub, false)
	if err != nil {
		t.Fatal(err)
	}
	bc := pb.NewBankClient(conn)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	if err := checkAccount(ctx, bc, shop, key, time.Now(), log); err != nil {
		t.Errorf("the merchant's own account: %v", err)
	}
	for _, acct := range []uint64{customer, 987654} {
		err := checkAccount(ctx, bc, acct, key, time.Now(), log)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("account %d is not this merchant's", acct)) || strings.Contains(err.Error(), "\n") {
			t.Errorf("account %d: %v, want a one-line refusal naming it", acct, err)
		}
	}
	// A customer's account opened for another shop's merchant key: the bank
	// would take that merchant's deposits into it and never pay them out.
	shop2Pub, shop2, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	asCustomer, err := b.Bank.OpenAccount(ctx, "shop 2", shop2Pub, false)
	if err != nil {
		t.Fatal(err)
	}
	err = checkAccount(ctx, bc, asCustomer, shop2, time.Now(), log)
	if want := fmt.Sprintf("account %d is not a merchant account", asCustomer); err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("a customer's account opened for the merchant key: %v, want a one-line refusal saying %q", err, want)
	}
	if logs.String() != "" {
		t.Errorf("warnings where the bank answered:\n%s", logs.String())
	}

	// A bank that does not say the account's kind (one before it): a
	// warning, and serve starts.
	var oldLogs syncBuffer
	if err := checkAccount(ctx, kindless{bc}, asCustomer, shop2, time.Now(), slog.New(slog.NewTextHandler(&oldLogs, nil))); err != nil {
		t.Errorf("a bank that does not say the account's kind: %v", err)
	}
	if !strings.Contains(oldLogs.String(), "starting anyway") {
		t.Errorf("no warning for a bank that does not say the account's kind; log:\n%s", oldLogs.String())
	}

	// A clock far off: the bank refuses the request as stale, which says
	// nothing of the account; a warning, and serve starts.
	if err := checkAccount(ctx, bc, shop, key, time.Now().Add(time.Hour), log); err != nil {
		t.Errorf("a stale request: %v", err)
	}
	if !strings.Contains(logs.String(), "could not check with the bank") {
		t.Errorf("no warning for a stale request; log:\n%s", logs.String())
	}

	// No bank at the address: a warning, and serve starts.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := l.Addr().String()
	l.Close()
	down, err := transport.Dial(gone, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	var downLogs syncBuffer
	if err := checkAccount(ctx, pb.NewBankClient(down), shop, key, time.Now(), slog.New(slog.NewTextHandler(&downLogs, nil))); err != nil {
		t.Errorf("an unreachable bank: %v", err)
	}
	if !strings.Contains(downLogs.String(), "starting anyway") {
		t.Errorf("no warning for an unreachable bank; log:\n%s", downLogs.String())
	}
}

// TestOrderTTLDays: --ttl takes the commands' duration forms: 1d is a day,
// 31d is past the 30 days allowed; a bad one names the forms.
func TestOrderTTLDays(t *testing.T) {
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
		code := cli.Run(context.Background(), Command(), env, args)
		return code, errb.String()
	}
	dir := t.TempDir()
	base := []string{"order", "--data", dir, "create", "--amount", "EUR:1.00", "--summary", "tea", "--ttl"}
	if code, errs := run(append(base, "31d")...); code != 1 || !strings.Contains(errs, "bad --ttl 31d: want 1s to 30d") {
		t.Errorf("--ttl 31d: exit %d: %s", code, errs)
	}
	if code, errs := run(append(base, "1d")...); code == 0 || strings.Contains(errs, "ttl") {
		t.Errorf("--ttl 1d: exit %d: %s", code, errs)
	}
	if code, errs := run(append(base, "tomorrow")...); code != 2 || !strings.Contains(errs, "whole number of days (30d)") {
		t.Errorf("--ttl tomorrow: exit %d: %s", code, errs)
	}
}
