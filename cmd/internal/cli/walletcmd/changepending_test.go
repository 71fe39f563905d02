package walletcmd

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// swapLosingBank serves a real bank, but loses the answers to the next
// lose swaps after the bank committed them.
type swapLosingBank struct {
	pb.BankServer
	lose *atomic.Int32
}

func (b *swapLosingBank) Swap(ctx context.Context, in *pb.SwapRequest) (*pb.SwapResponse, error) {
	resp, err := b.BankServer.Swap(ctx, in)
	if err == nil && b.lose.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	return resp, err
}

// TestPayChangePending: 'wallet pay' makes change first, and the bank's
// answer to that swap is lost. Nothing was sent to the merchant, yet pay
// said "the payment of order ... was sent but not confirmed" (--json:
// "error": "pending"). It says making change is pending and nothing was
// sent (exit 1; --json: "error": "change-pending"), also when run again
// while the swap is still unanswered; run again once the bank answers, it
// settles the swap and pays, once.
func TestPayChangePending(t *testing.T) {
	b, m, _, shopAcct := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	var lose atomic.Int32
	bankRelay := record(t, func(s *grpc.Server) {
		pb.RegisterBankServer(s, &swapLosingBank{BankServer: b.Bank.PublicServer(), lose: &lose})
	})
	shop := record(t, func(s *grpc.Server) { pb.RegisterMerchantServer(s, m.Merchant.PublicServer()) })
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, bankRelay.Addr, "EUR:10.00")
	if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:3.50"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	// Spend the small coins: EUR:2.00 in one coin is left, which pays
	// EUR:0.50 only by making change.
	first, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:1.50"), "cake", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r := runWallet(t, env, "--wallet", dir, "pay", "--yes", "--merchant", shop.Addr, "--merchant-plaintext", "--order", first.ID); r.code != 0 || !strings.Contains(r.stdout, "fresh EUR:2.00") {
		t.Fatalf("first pay: %+v", r)
	}
	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:0.50"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pay := []string{"--wallet", dir, "pay", "--yes", "--merchant", shop.Addr, "--merchant-plaintext", "--order", o.ID}
	bankRelay.take()
	shop.take()

	lose.Store(1)
	r := runWallet(t, env, append(pay, "--json")...)
	var out struct{ Error string }
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Error != "change-pending" {
		t.Fatalf("pay --json with the change swap's answer lost: %+v; want \"error\": \"change-pending\"", r)
	}
	if countCalls(bankRelay.take(), "Swap") != 1 {
		t.Fatalf("no change was made: the test needs a payment that makes change")
	}
	checkChangePendingMessage(t, r)
	if calls := shop.take(); countCalls(calls, "Pay") != 0 {
		t.Fatalf("the merchant was sent %s; want no payment", calls)
	}
	if r := runWallet(t, env, "--wallet", dir, "balance", "--json"); !strings.Contains(r.stdout, `"pending": "EUR:2.00"`) {
		t.Fatalf("balance: %+v; want the swapped coin pending", r)
	}

	// Run again, the bank's answer lost again: the same, in words.
	lose.Store(1)
	r = runWallet(t, env, pay...)
	if r.code != 1 || r.stdout != "" {
		t.Fatalf("pay run again with the swap unanswered: %+v; want exit 1", r)
	}
	checkChangePendingMessage(t, r)
	if calls := shop.take(); countCalls(calls, "Pay") != 0 {
		t.Fatalf("the merchant was sent %s; want no payment", calls)
	}

	lose.Store(0)
	r = runWallet(t, env, pay...)
	if r.code != 0 || !strings.Contains(r.stdout, "paid EUR:0.50 for order "+o.ID) || !strings.Contains(r.stdout, "fresh EUR:1.50") {
		t.Fatalf("pay run once the bank answers: %+v", r)
	}
	if calls := shop.take(); countCalls(calls, "Pay") != 1 {
		t.Fatalf("the merchant was sent %s; want one payment", calls)
	}
	if r := runWallet(t, env, "--wallet", dir, "balance", "--json"); !strings.Contains(r.stdout, `"pending": "EUR:0.00"`) || !strings.Contains(r.stdout, `"fresh": "EUR:1.50"`) {
		t.Fatalf("balance after: %+v; want EUR:1.50 fresh, nothing pending", r)
	}
	got, err := m.Merchant.Order(o.ID)
	if err != nil || got.Status(time.Now()) != "paid" {
		t.Fatalf("order %v %v", got, err)
	}
	if a, err := b.Bank.Store().Account(context.Background(), shopAcct); err != nil || b.Bank.Money(a.Balance).String() != "EUR:2.00" {
		t.Fatalf("merchant balance %v %v", a, err)
	}
}

func checkChangePendingMessage(t *testing.T, r result) {
	t.Helper()
	for _, want := range []string{"making change is pending at the bank", "nothing was sent to the merchant", "run the same command again", "connection reset (simulated)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q lacks %q", r.stderr, want)
		}
	}
	if strings.Contains(r.stderr, "was sent but") {
		t.Errorf("stderr %q says the payment was sent", r.stderr)
	}
}

// countCalls counts the calls of method among those a recorder took.
func countCalls(calls, method string) int {
	n := 0
	for _, c := range strings.Split(calls, ",") {
		if c == method {
			n++
		}
	}
	return n
}

// TestReturnChangePending: 'wallet return' makes change first, and the
// bank's answer to that swap is lost. Nothing was deposited, yet return
// said the return "is saved in the wallet: run 'wallet recover' to finish
// it", which recover does not: it settles the swap only, and the return is
// never made. It says making change is pending, that nothing was
// deposited and to run the same command again; run again once the bank
// answers, it settles the swap and returns, once.
func TestReturnChangePending(t *testing.T) {
	b, _, _, _ := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	var lose atomic.Int32
	bankRelay := record(t, func(s *grpc.Server) {
		pb.RegisterBankServer(s, &swapLosingBank{BankServer: b.Bank.PublicServer(), lose: &lose})
	})
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, bankRelay.Addr, "EUR:10.00")
	if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:3.50"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	// Return the small coins: EUR:2.00 in one coin is left, which returns
	// EUR:0.50 only by making change.
	if r := runWallet(t, env, "--wallet", dir, "return", "EUR:1.50"); r.code != 0 || !strings.Contains(r.stdout, "fresh EUR:2.00") {
		t.Fatalf("first return: %+v", r)
	}
	bankRelay.take()

	lose.Store(1)
	r := runWallet(t, env, "--wallet", dir, "return", "EUR:0.50")
	if calls := bankRelay.take(); countCalls(calls, "Swap") != 1 {
		t.Fatalf("no change was made (%s; %+v): the test needs a return that makes change", calls, r)
	}
	if r.code != 1 || r.stdout != "" {
		t.Fatalf("return with the change swap's answer lost: %+v; want exit 1", r)
	}
	for _, want := range []string{"making change is pending at the bank", "nothing was deposited", "run the same command again"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q lacks %q", r.stderr, want)
		}
	}
	if strings.Contains(r.stderr, "recover' to finish it") {
		t.Errorf("stderr %q says 'wallet recover' finishes the return", r.stderr)
	}
	if calls := bankRelay.take(); countCalls(calls, "Deposit") != 0 {
		t.Fatalf("the bank was sent %s; want no deposit", calls)
	}

	// Run again, the bank's answer lost again (the swap left pending is
	// re-sent first): the same.
	lose.Store(1)
	r = runWallet(t, env, "--wallet", dir, "return", "EUR:0.50")
	if r.code != 1 || !strings.Contains(r.stderr, "making change is pending at the bank") || strings.Contains(r.stderr, "recover' to finish it") {
		t.Fatalf("return run again with the swap unanswered: %+v", r)
	}
	if calls := bankRelay.take(); countCalls(calls, "Deposit") != 0 {
		t.Fatalf("the bank was sent %s; want no deposit", calls)
	}

	lose.Store(0)
	r = runWallet(t, env, "--wallet", dir, "return", "EUR:0.50")
	if r.code != 0 || !strings.Contains(r.stdout, "returned EUR:0.50") || !strings.Contains(r.stdout, "fresh EUR:1.50") {
		t.Fatalf("return run once the bank answers: %+v", r)
	}
	if calls := bankRelay.take(); countCalls(calls, "Deposit") != 1 {
		t.Fatalf("the bank was sent %s; want one deposit", calls)
	}
	if r := runWallet(t, env, "--wallet", dir, "balance", "--json"); !strings.Contains(r.stdout, `"pending": "EUR:0.00"`) || !strings.Contains(r.stdout, `"fresh": "EUR:1.50"`) {
		t.Fatalf("balance after: %+v; want EUR:1.50 fresh, nothing pending", r)
	}
}

// reissueLosingBank serves a real bank, but loses the answers to the next
// lose recoups by re-issue (those with outputs) after the bank committed
// them.
type reissueLosingBank struct {
	pb.BankServer
	lose *atomic.Int32
}

func (b *reissueLosingBank) Recoup(ctx context.Context, in *pb.RecoupRequest) (*pb.RecoupResponse, error) {
	resp, err := b.BankServer.Recoup(ctx, in)
	if err == nil && len(resp.BlindSignatures) > 0 && b.lose.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	return resp, err
}

// TestPayRecoupPending: the swap 'wallet pay' finds pending is a recoup's
// re-issue of a revoked coin, its answer lost: no change was made, yet pay
// said "making change is pending" (--json: "error": "change-pending"). It
// says a recoup is pending and nothing was sent (exit 1; --json: "error":
// "recoup-pending"); run again once the bank answers, it settles the
// recoup and pays, once.
func TestPayRecoupPending(t *testing.T) {
	ctx := context.Background()
	b, m, _, _ := startShop(t, "", "EUR:0.01", "EUR:0.02", "EUR:0.04")
	var lose atomic.Int32
	bankRelay := record(t, func(s *grpc.Server) {
		pb.RegisterBankServer(s, &reissueLosingBank{BankServer: b.Bank.PublicServer(), lose: &lose})
	})
	shop := record(t, func(s *grpc.Server) { pb.RegisterMerchantServer(s, m.Merchant.PublicServer()) })
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, bankRelay.Addr, "EUR:1.00")
	// EUR:0.04 swapped for EUR:0.01, EUR:0.02 and EUR:0.01: a coin of
	// EUR:0.02 that came from a swap, re-issued when its key is revoked.
	for _, args := range [][]string{{"withdraw", "EUR:0.07"}, {"swap", "EUR:0.04"}} {
		if r := runWallet(t, env, append([]string{"--wallet", dir}, args...)...); r.code != 0 {
			t.Fatalf("%s: %+v", args[0], r)
		}
	}
	ks, _ := b.Bank.KeySet()
	for _, d := range ks.Denominations {
		if d.Value.Value == 2 {
			if _, err := b.Bank.RevokeDenomination(ctx, d.ID.String()); err != nil {
				t.Fatal(err)
			}
		}
	}
	lose.Store(2)
	if r := runWallet(t, env, "--wallet", dir, "recoup"); r.code == 0 || lose.Load() != 1 {
		t.Fatalf("recoup with the re-issue's answer lost: %+v, %d answers left to lose; want it pending", r, lose.Load())
	}
	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:0.03"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pay := []string{"--wallet", dir, "pay", "--yes", "--merchant", shop.Addr, "--merchant-plaintext", "--order", o.ID}
	shop.take()

	r := runWallet(t, env, append(pay, "--json")...)
	var out struct{ Error string }
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Error != "recoup-pending" {
		t.Fatalf("pay --json with the recoup's answer lost: %+v; want \"error\": \"recoup-pending\"", r)
	}
	for _, want := range []string{"recoup of a revoked coin is pending at the bank", "nothing was sent to the merchant", "run the same command again", "connection reset (simulated)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q lacks %q", r.stderr, want)
		}
	}
	if strings.Contains(r.stderr, "change") {
		t.Errorf("stderr %q speaks of change", r.stderr)
	}
	if calls := shop.take(); countCalls(calls, "Pay") != 0 {
		t.Fatalf("the merchant was sent %s; want no payment", calls)
	}

	r = runWallet(t, env, pay...)
	if r.code != 0 || !strings.Contains(r.stdout, "paid EUR:0.03 for order "+o.ID) {
		t.Fatalf("pay run once the bank answers: %+v", r)
	}
	if calls := shop.take(); countCalls(calls, "Pay") != 1 {
		t.Fatalf("the merchant was sent %s; want one payment", calls)
	}
}
