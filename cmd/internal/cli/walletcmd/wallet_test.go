package walletcmd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
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
	"github.com/blindbank/blindbank/wallet"
)

// flakyMerchant relays to a real merchant but drops the first Pay after
// the merchant has processed it, as a connection lost mid-call would.
type flakyMerchant struct {
	pb.UnimplementedMerchantServer
	inner   pb.MerchantServer
	dropped atomic.Bool
}

func (f *flakyMerchant) GetPaymentRequest(ctx context.Context, r *pb.GetPaymentRequestRequest) (*pb.GetPaymentRequestResponse, error) {
	return f.inner.GetPaymentRequest(ctx, r)
}

func (f *flakyMerchant) Pay(ctx context.Context, r *pb.PayRequest) (*pb.PayResponse, error) {
	resp, err := f.inner.Pay(ctx, r)
	if err == nil && f.dropped.CompareAndSwap(false, true) {
		return nil, status.Error(codes.Unavailable, "connection reset")
	}
	return resp, err
}

type result struct {
	code           int
	stdout, stderr string
}

func runWallet(t *testing.T, env cli.Env, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env.Stdout, env.Stderr = &out, &errb
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	code := cli.Run(context.Background(), Command(), &env, args)
	return result{code, out.String(), errb.String()}
}

// TestInteractivePay drives the wallet in-process against a real bank and
// merchant: the progress bar on a terminal, the "Pay? [y/N]" prompt answered
// no and yes, and a payment whose answer is lost, finished by re-running the
// same command.
func TestInteractivePay(t *testing.T) {
	ctx := context.Background()
	b, m, _, shopAcct := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00", "EUR:4.00")
	flaky := record(t, func(s *grpc.Server) { pb.RegisterMerchantServer(s, &flakyMerchant{inner: m.Merchant.PublicServer()}) })

	dir := filepath.Join(t.TempDir(), "w")
	tty := cli.Env{StdinTerminal: true, StderrTerminal: true}
	r := runWallet(t, tty, "--wallet", dir, "init", "--bank", b.Addr, "--plaintext")
	if r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	key, err := hex.DecodeString(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("init printed %q", r.stdout)
	}
	acct, err := b.Bank.OpenAccount(ctx, "alice", key, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Bank.Credit(ctx, acct, ecash.MustParseAmount("EUR:100.00"), "", ""); err != nil {
		t.Fatal(err)
	}
	if r := runWallet(t, tty, "--wallet", dir, "withdraw", "EUR:1.00"); r.code != 1 || !strings.Contains(r.stderr, "wallet set-account ID") {
		t.Fatalf("withdraw before set-account: %+v", r)
	}
	if r := runWallet(t, tty, "--wallet", dir, "set-account", "--json", strconv.FormatUint(acct, 10)); r.code != 0 || !strings.Contains(r.stdout, `"account": `) {
		t.Fatalf("set-account: %+v", r)
	}
	r = runWallet(t, tty, "withdraw", "EUR:10.00", "--wallet", dir)
	if r.code != 0 || r.stdout != "withdrew EUR:10.00 in 6 coins; fresh EUR:10.00\n" || !strings.Contains(r.stderr, "withdrawing [") {
		t.Fatalf("withdraw: %+v", r)
	}

	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:3.50"), "1 espresso", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pay := []string{"--wallet", dir, "pay", "--merchant", flaky.Addr, "--merchant-plaintext", "--order", o.ID}

	no := tty
	no.Stdin = strings.NewReader("n\n")
	r = runWallet(t, no, pay...)
	if r.code != 1 || !strings.Contains(r.stdout, "summary:           1 espresso") || !strings.Contains(r.stdout, "Pay? [y/N] ") ||
		r.stderr != "wallet: payment cancelled; nothing was paid\n" {
		t.Fatalf("pay answered no: %+v", r)
	}

	yes := tty
	yes.Stdin = strings.NewReader("y\n")
	// The merchant's answer is lost, but the wallet asks the bank, which
	// holds the receipt: the payment completes in the same command.
	r = runWallet(t, yes, pay...)
	if r.code != 0 || !strings.Contains(r.stdout, "paid EUR:3.50 for order "+o.ID) || !strings.Contains(r.stdout, "fresh EUR:6.50") {
		t.Fatalf("pay with the answer lost: %+v", r)
	}
	if r := runWallet(t, tty, "--wallet", dir, "balance", "--json"); !strings.Contains(r.stdout, `"pending": "EUR:0.00"`) {
		t.Fatalf("balance after the payment: %+v", r)
	}
	r = runWallet(t, tty, pay...) // no prompt: the wallet answers from the stored receipt
	if r.code != 0 || !strings.Contains(r.stdout, "order "+o.ID+" was already paid, EUR:3.50 with ") ||
		!strings.Contains(r.stdout, "nothing was paid now") || strings.Contains(r.stdout, "Pay?") || !strings.Contains(r.stdout, "fresh EUR:6.50") {
		t.Fatalf("pay re-run: %+v", r)
	}
	r = runWallet(t, tty, append(pay, "--json")...)
	var again struct {
		Paid        string `json:"paid"`
		AlreadyPaid bool   `json:"already_paid"`
		Fresh       string `json:"fresh"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &again); r.code != 0 || err != nil || !again.AlreadyPaid || again.Paid != "EUR:3.50" || again.Fresh != "EUR:6.50" {
		t.Fatalf("pay --json re-run: %+v", r)
	}
	got, err := m.Merchant.Order(o.ID)
	if err != nil || got.Status(time.Now()) != "paid" {
		t.Fatalf("order %v %v", got, err)
	}
	if a, err := b.Bank.Store().Account(ctx, shopAcct); err != nil || b.Bank.Money(a.Balance).String() != "EUR:3.50" {
		t.Fatalf("merchant balance %v %v", a, err)
	}
}

// accountWallet makes a wallet in a new directory on the bank at addr (b
// itself, or a relay to it), opens its account at b with funds, and sets
// it: what a user does before withdrawing.
func accountWallet(t *testing.T, env cli.Env, b *node.Bank, addr, funds string) (dir string, acct uint64) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "w")
	r := runWallet(t, env, "--wallet", dir, "init", "--bank", addr, "--plaintext")
	if r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	key, _ := hex.DecodeString(strings.TrimSpace(r.stdout))
	acct, err := b.Bank.OpenAccount(context.Background(), "alice", key, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Bank.Credit(context.Background(), acct, ecash.MustParseAmount(funds), "", ""); err != nil {
		t.Fatal(err)
	}
	if r := runWallet(t, env, "--wallet", dir, "set-account", strconv.FormatUint(acct, 10)); r.code != 0 {
		t.Fatalf("set-account: %+v", r)
	}
	return dir, acct
}

// answerLost relays Pay to a real merchant and loses its answer.
type answerLost struct{ pb.MerchantClient }

func (a answerLost) Pay(ctx context.Context, in *pb.PayRequest, opts ...grpc.CallOption) (*pb.PayResponse, error) {
	if _, err := a.MerchantClient.Pay(ctx, in, opts...); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
}

// bankAway answers no DepositStatus, as a bank out of reach would.
type bankAway struct{ pb.BankClient }

func (bankAway) DepositStatus(context.Context, *pb.DepositStatusRequest, ...grpc.CallOption) (*pb.DepositResponse, error) {
	return nil, status.Error(codes.Unavailable, "bank unreachable (simulated)")
}

// TestRecoverSettlesPendingPayment: a payment whose answer was lost while
// the bank was out of reach stays pending; 'wallet recover' asks the bank
// and settles it (it finished only interrupted withdrawals, and left such
// a payment pending until the same 'wallet pay' was run again).
func TestRecoverSettlesPendingPayment(t *testing.T) {
	ctx := context.Background()
	b, m, _, _ := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, b.Addr, "EUR:10.00")
	if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:3.50"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	if r := runWallet(t, env, "--wallet", dir, "recover"); r.code != 0 || r.stdout != "nothing to recover; fresh EUR:3.50\n" {
		t.Fatalf("recover with nothing pending: %+v", r)
	}
	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	bankConn, err := transport.Dial(b.Addr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bankConn.Close()
	shopConn, err := transport.Dial(m.Addr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer shopConn.Close()
	w, err := wallet.Open(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Pay(ctx, bankAway{pb.NewBankClient(bankConn)}, answerLost{pb.NewMerchantClient(shopConn)}, m.Addr, o.ID, nil)
	w.Close()
	if !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("pay with the answer lost and the bank away: %v, want pending", err)
	}
	r := runWallet(t, env, "--wallet", dir, "recover", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"pending": "EUR:0.00"`) || !strings.Contains(r.stdout, `"fresh": "EUR:2.50"`) {
		t.Fatalf("recover of the pending payment: %+v", r)
	}
	if r := runWallet(t, env, "--wallet", dir, "balance", "--json"); !strings.Contains(r.stdout, `"pending": "EUR:0.00"`) {
		t.Fatalf("balance after recover: %+v", r)
	}
}

// unsentWithdraw fails every Withdraw before it reaches the bank.
type unsentWithdraw struct{ pb.BankClient }

func (unsentWithdraw) Withdraw(context.Context, *pb.WithdrawRequest, ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	return nil, status.Error(codes.Unavailable, "bank unreachable (simulated)")
}

// TestRecoverReportsRefusedWithdrawal: an interrupted withdrawal of more
// than the account holds is sent again by the next 'wallet withdraw',
// which the bank refuses outright. That withdraw failed with the old
// request's refusal; it goes on now, notes the refusal, and 'wallet
// recover' lists it once. The withdraw after it met no refusal and notes
// none: the note counted every refusal not reported yet, so it came
// again with each withdraw until 'wallet recover'.
func TestRecoverReportsRefusedWithdrawal(t *testing.T) {
	ctx := context.Background()
	b, _, _, _ := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, b.Addr, "EUR:2.00")
	bankConn, err := transport.Dial(b.Addr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bankConn.Close()
	w, err := wallet.Open(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Withdraw(ctx, unsentWithdraw{pb.NewBankClient(bankConn)}, ecash.MustParseAmount("EUR:5.00"), nil)
	w.Close()
	if !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want pending", err)
	}
	r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:1.00")
	if r.code != 0 || !strings.Contains(r.stderr, "refused 1 interrupted withdrawal outright") {
		t.Fatalf("withdraw after an interrupted one the account does not cover: %+v", r)
	}
	r = runWallet(t, env, "--wallet", dir, "withdraw", "EUR:1.00")
	if r.code != 0 || strings.Contains(r.stderr, "refused") {
		t.Fatalf("the next withdraw, which met no refusal: %+v", r)
	}
	r = runWallet(t, env, "--wallet", dir, "recover", "--json")
	var out struct {
		Fresh   string `json:"fresh"`
		Refused []struct {
			Amount string `json:"amount"`
			Reason string `json:"reason"`
		} `json:"refused"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); r.code != 0 || err != nil {
		t.Fatalf("recover: %+v (%v)", r, err)
	}
	if out.Fresh != "EUR:2.00" || len(out.Refused) != 1 || out.Refused[0].Amount != "EUR:5.00" || !strings.Contains(out.Refused[0].Reason, "FailedPrecondition") {
		t.Fatalf("recover reports %+v", out)
	}
	if r := runWallet(t, env, "--wallet", dir, "recover"); r.code != 0 || r.stdout != "nothing to recover; fresh EUR:2.00\n" {
		t.Fatalf("recover again: %+v", r)
	}
}

// answerLostSwap relays Swap to the bank and loses its answer.
type answerLostSwap struct{ pb.BankClient }

func (a answerLostSwap) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	if _, err := a.BankClient.Swap(ctx, in, opts...); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
}

// TestRecoverFinishesRefundSwap: the swap collecting a merchant's refund
// is committed and its answer lost. Its inputs were spent before (they
// spend their refund credit), so no coin turned pending and 'wallet
// recover' found "nothing to recover": the refund stayed out of the
// wallet. The balance counts it pending, and recover finishes it.
func TestRecoverFinishesRefundSwap(t *testing.T) {
	ctx := context.Background()
	b, m, _, _ := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, b.Addr, "EUR:10.00")
	if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:3.00"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:2.00"), "a lamp", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	bankConn, err := transport.Dial(b.Addr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bankConn.Close()
	shopConn, err := transport.Dial(m.Addr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer shopConn.Close()
	w, err := wallet.Open(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Pay(ctx, pb.NewBankClient(bankConn), pb.NewMerchantClient(shopConn), m.Addr, o.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Merchant.Refund(ctx, o.ID, 0, ecash.MustParseAmount("EUR:1.00")); err != nil {
		t.Fatal(err)
	}
	_, err = w.CollectRefunds(ctx, answerLostSwap{pb.NewBankClient(bankConn)})
	w.Close()
	if !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("refunds with the swap's answer lost: %v, want pending", err)
	}
	if r := runWallet(t, env, "--wallet", dir, "balance", "--json"); !strings.Contains(r.stdout, `"pending": "EUR:1.00"`) {
		t.Fatalf("balance with the refund's swap stuck: %+v", r)
	}
	r := runWallet(t, env, "--wallet", dir, "recover", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"pending": "EUR:0.00"`) || !strings.Contains(r.stdout, `"fresh": "EUR:2.00"`) {
		t.Fatalf("recover of the refund's swap: %+v", r)
	}
}

// TestPrintOfferEscapesSummary: the confirmation prompt prints a summary
// that could rewrite the amount line (a carriage return and escape
// sequences, as the merchant review showed) quoted, on the summary's own
// line, so the amount shown is the one signed.
func TestPrintOfferEscapesSummary(t *testing.T) {
	evil := "coffee\r\x1b[1A\x1b[2K  amount:\tEUR:0.01\n"
	o := &wallet.Offer{Summary: evil, Fee: ecash.Amount{Currency: "EUR"}, Request: &ecash.PaymentRequest{
		Amount: ecash.MustParseAmount("EUR:500.00"), OrderID: "ord-1", MerchantPub: make([]byte, 32), ExpiresAt: time.Now().Add(time.Minute),
	}}
	var b bytes.Buffer
	printOffer(&b, "shop.example:7543", o)
	out := b.String()
	if strings.ContainsAny(out, "\r\x1b\t") || strings.Count(out, "\n") != 8 {
		t.Fatalf("control characters reach the terminal:\n%q", out)
	}
	if !strings.Contains(out, "amount:") || !strings.Contains(out, "EUR:500.00") || !strings.Contains(out, strconv.Quote(evil)) {
		t.Fatalf("prompt:\n%s", out)
	}
}

// startShop starts a bank issuing coins of values and a merchant with an
// account there, selling the products of the catalogue directory cat ("":
// none); both stop with the test.
func startShop(t *testing.T, cat string, values ...string) (*node.Bank, *node.Merchant, ed25519.PublicKey, uint64) {
	t.Helper()
	ctx := context.Background()
	var amounts []ecash.Amount
	for _, v := range values {
		amounts = append(amounts, ecash.MustParseAmount(v))
	}
	b, err := node.StartBank(node.BankConfig{
		Dir: t.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Plaintext: true,
		Keys: bank.KeyConfig{Currency: "EUR", Values: amounts},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	shopDir := t.TempDir()
	shopKey, err := merchant.Init(shopDir)
	if err != nil {
		t.Fatal(err)
	}
	shopAcct, err := b.Bank.OpenAccount(ctx, "shop", shopKey, true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := node.StartMerchant(ctx, node.MerchantConfig{
		Dir: shopDir, BankAddr: b.Addr, BankTLS: transport.ClientConfig{Plaintext: true}, Account: shopAcct,
		Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Plaintext: true, Catalogue: cat,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return b, m, shopKey, shopAcct
}

// recorder serves a real bank's or merchant's public API on its own
// listener and records the methods called, to show what a refused command
// sent.
type recorder struct {
	Addr  string
	mu    sync.Mutex
	calls []string
}

func record(t *testing.T, register func(*grpc.Server)) *recorder {
	t.Helper()
	r := &recorder{}
	note := func(method string) {
		r.mu.Lock()
		r.calls = append(r.calls, path.Base(method))
		r.mu.Unlock()
	}
	s := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			note(info.FullMethod)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			note(info.FullMethod)
			return h(srv, ss)
		}))
	register(s)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	r.Addr = lis.Addr().String()
	return r
}

// take returns the methods called since the last take.
func (r *recorder) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.Join(r.calls, ",")
	r.calls = nil
	return s
}

// TestBuyConfirmsQuotedPrice: "wallet buy" charges the price the merchant's
// signed quote names, which the unsigned "wallet products" list need not
// match (the review's case: listed EUR:1.50, quoted EUR:50.00). So, as
// "wallet pay" does, it shows the quote and asks "Buy? [y/N]"; a script
// (no terminal) is refused before anything is sent unless --yes or
// --max-price is given; on a terminal "n" stops after the price request
// with nothing signed or debited, and "y" buys.
func TestBuyConfirmsQuotedPrice(t *testing.T) {
	ctx := context.Background()
	cat := t.TempDir()
	if err := os.WriteFile(filepath.Join(cat, "song.bin"), []byte("la la la"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cat, merchant.CatalogueFile), []byte(`{"products": [
		{"id": "song", "file": "song.bin", "price": "EUR:50.00", "description": "a song"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	b, m, shopKey, shopAcct := startShop(t, cat, "EUR:1.00")
	toBank := record(t, func(s *grpc.Server) { pb.RegisterBankServer(s, b.Bank.PublicServer()) })
	toShop := record(t, func(s *grpc.Server) { pb.RegisterMerchantServer(s, m.Merchant.PublicServer()) })

	batch := cli.Env{} // a script: stdin is not a terminal
	dir, acct := accountWallet(t, batch, b, toBank.Addr, "EUR:150.00")
	balance := func() string {
		t.Helper()
		a, err := b.Bank.Store().Account(ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		return b.Bank.Money(a.Balance).String()
	}
	unsigned := func(when string) {
		t.Helper()
		if r := runWallet(t, batch, "--wallet", dir, "purchases"); r.stdout != "no payment orders\n" {
			t.Fatalf("%s: the wallet holds a payment order: %+v", when, r)
		}
	}
	toBank.take()
	buy := []string{"--wallet", dir, "buy", "--merchant", toShop.Addr, "--merchant-plaintext", "--product", "song", "--out", filepath.Join(t.TempDir(), "song.bin")}

	r := runWallet(t, batch, buy...)
	if r.code != 1 || !strings.Contains(r.stderr, "stdin is not a terminal, so the price cannot be confirmed: pass --yes") {
		t.Fatalf("a script without --yes or --max-price: %+v", r)
	}
	if left, sent := balance(), toBank.take()+toShop.take(); left != "EUR:150.00" || sent != "" {
		t.Fatalf("refused, yet the account holds %s and the wallet sent %q", left, sent)
	}
	unsigned("refused in a script")

	tty := cli.Env{StdinTerminal: true, Stdin: strings.NewReader("n\n")}
	r = runWallet(t, tty, buy...)
	if r.code != 1 || r.stderr != "wallet: purchase cancelled; nothing was paid\n" || !strings.Contains(r.stdout, "Buy? [y/N] ") {
		t.Fatalf("answered no: %+v", r)
	}
	for _, want := range []string{"product:           song", "price:             EUR:50.00",
		"merchant account:  " + strconv.FormatUint(shopAcct, 10), "merchant key:      " + hex.EncodeToString(shopKey)} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("the quote shown lacks %q:\n%s", want, r.stdout)
		}
	}
	if left, sent := balance(), toShop.take(); left != "EUR:150.00" || sent != "Quote" {
		t.Fatalf("answered no, yet the account holds %s and the merchant was sent %q", left, sent)
	}
	unsigned("answered no")

	tty.Stdin = strings.NewReader("y\n")
	r = runWallet(t, tty, buy...)
	if r.code != 0 || !strings.Contains(r.stdout, "Buy? [y/N] ") || balance() != "EUR:100.00" {
		t.Fatalf("answered yes: %+v, account %s", r, balance())
	}
	r = runWallet(t, batch, append(buy, "--yes")...)
	if r.code != 0 || strings.Contains(r.stdout, "Buy?") || !strings.Contains(r.stdout, "price:             EUR:50.00") || balance() != "EUR:50.00" {
		t.Fatalf("a script with --yes: %+v, account %s", r, balance())
	}
	// In a script --max-price is the agreement: the wallet holds the quote to it.
	if r := runWallet(t, batch, append(buy, "--max-price", "EUR:49.99")...); r.code != 1 || !strings.Contains(r.stderr, "above the most you agreed to pay") || balance() != "EUR:50.00" {
		t.Fatalf("a script with a lower --max-price: %+v, account %s", r, balance())
	}
	r = runWallet(t, batch, append(buy, "--max-price", "EUR:50.00")...)
	if r.code != 0 || strings.Contains(r.stdout, "Buy?") || balance() != "EUR:0.00" {
		t.Fatalf("a script with --max-price: %+v, account %s", r, balance())
	}
}

// The statement names the bank's own accounts rather than showing their
// internal numbers.
func TestStatementCounterparty(t *testing.T) {
	for id, want := range map[uint64]string{
		0:                         "-",
		bank.AccountFunding:       "funding",
		bank.AccountOutstanding:   "e-cash",
		bank.AccountFees:          "fees",
		bank.FirstUserAccount - 1: "-",
		bank.FirstUserAccount:     strconv.FormatUint(bank.FirstUserAccount, 10),
		4711:                      "4711",
	} {
		if got := counterparty(id); got != want {
			t.Errorf("counterparty(%d) = %q, want %q", id, got, want)
		}
	}
}

// TestRecoverSummary: 'wallet recover' reports the withdrawals it finished
// of those it found, and says what is left rather than calling every one
// finished: a withdrawal whose answer names a key the key set does not
// list stays pending (wallet.Recover returns without error).
func TestRecoverSummary(t *testing.T) {
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	for _, tc := range []struct {
		name          string
		before, after int
		bal           wallet.Balance
		want, not     []string
	}{
		{"all finished", 2, 0, wallet.Balance{Fresh: eur(500), Pending: eur(0), Revealed: eur(0)},
			[]string{"finished 2 of 2 interrupted withdrawals; fresh EUR:5.00"}, []string{"still"}},
		{"one left", 2, 1, wallet.Balance{Fresh: eur(300), Pending: eur(0), Revealed: eur(0)},
			[]string{"finished 1 of 2", "still unfinished: 1 withdrawal (", "does not list"}, nil},
		{"a swap left", 0, 0, wallet.Balance{Fresh: eur(300), Pending: eur(4), Revealed: eur(0)},
			[]string{"recovered; fresh EUR:3.00", "still pending: EUR:0.04"}, []string{"unfinished"}},
	} {
		var b bytes.Buffer
		recoverSummary(&b, true, tc.before, tc.after, tc.bal)
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, b.String(), w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(b.String(), n) {
				t.Errorf("%s: %q says %q", tc.name, b.String(), n)
			}
		}
	}
}

// TestBalanceShowsExpiredApart: coins past their deposit deadline are shown
// apart from the fresh total, in the text and in --json.
func TestBalanceShowsExpiredApart(t *testing.T) {
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	bal := wallet.Balance{Fresh: eur(100), Revealed: eur(0), Pending: eur(0), Coins: map[string]int{"EUR:1.00": 1}, Expired: eur(3), ExpiredCoins: 2}
	var text, js bytes.Buffer
	if err := showBalance(&cli.Invocation{Env: &cli.Env{Stdout: &text}}, bal, 0, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fresh:    EUR:1.00 (1 coin)", "expired:  EUR:0.03 (2 coins) past their deposit deadline"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("balance %q lacks %q", text.String(), want)
		}
	}
	if err := showBalance(&cli.Invocation{Env: &cli.Env{Stdout: &js}, JSON: true}, bal, 0, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"fresh": "EUR:1.00"`, `"expired": "EUR:0.03"`, `"expired_coins": 2`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("balance --json %q lacks %q", js.String(), want)
		}
	}
	text.Reset()
	bal.Expired, bal.ExpiredCoins = eur(0), 0
	if err := showBalance(&cli.Invocation{Env: &cli.Env{Stdout: &text}}, bal, 0, nil); err != nil || strings.Contains(text.String(), "expired") {
		t.Errorf("balance without expired coins: %q, %v", text.String(), err)
	}
}

// TestRefreshWithinDays: --within takes the commands' duration forms (a
// number of days too), and a bad one names them.
func TestRefreshWithinDays(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "none")
	r := runWallet(t, cli.Env{}, "--wallet", dir, "refresh", "--within", "30d")
	if r.code == 0 || r.code == 2 || strings.Contains(r.stderr, "--within") {
		t.Errorf("--within 30d: %+v", r)
	}
	r = runWallet(t, cli.Env{}, "--wallet", dir, "refresh", "--within", "a month")
	if r.code != 2 || !strings.Contains(r.stderr, "whole number of days (30d)") {
		t.Errorf("--within 'a month': %+v", r)
	}
}

// TestCertFailureNamesFlags: a peer whose certificate does not verify
// against the CA or pin given was reached; the error says so, with the
// reason, and names the flags to check, not "unreachable".
func TestCertFailureNamesFlags(t *testing.T) {
	ctx := context.Background()
	b, _, _, _ := startShop(t, "", "EUR:1.00")
	shopDir := t.TempDir()
	shopKey, err := merchant.Init(shopDir)
	if err != nil {
		t.Fatal(err)
	}
	shopAcct, err := b.Bank.OpenAccount(ctx, "tls-shop", shopKey, true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := node.StartMerchant(ctx, node.MerchantConfig{
		Dir: shopDir, BankAddr: b.Addr, BankTLS: transport.ClientConfig{Plaintext: true}, Account: shopAcct,
		Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if m.CertFile == "" {
		t.Fatal("the merchant serves no TLS")
	}
	other := t.TempDir() // a certificate that is not the merchant's
	if _, _, _, err := transport.LoadOrCreateCert(other); err != nil {
		t.Fatal(err)
	}
	wrongCA := filepath.Join(other, transport.CertFile)
	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := accountWallet(t, cli.Env{}, b, b.Addr, "EUR:5.00")
	if r := runWallet(t, cli.Env{}, "--wallet", dir, "withdraw", "EUR:2.00"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	for _, trust := range [][]string{{"--merchant-ca", wrongCA}, {"--merchant-pin", strings.Repeat("ab", 32)}} {
		args := append([]string{"--wallet", dir, "pay", "--merchant", m.Addr, "--order", o.ID, "--yes"}, trust...)
		r := runWallet(t, cli.Env{}, args...)
		reason := "x509: certificate signed by unknown authority"
		if trust[0] == "--merchant-pin" {
			reason = "does not match the pin"
		}
		if r.code != 1 || strings.Contains(r.stderr, "unreachable") || strings.Contains(r.stderr, "failed to verify") ||
			!strings.Contains(r.stderr, "the merchant's TLS certificate did not verify: ") || !strings.Contains(r.stderr, reason) || !strings.HasSuffix(r.stderr, "; check --merchant-ca or --merchant-pin\n") {
			t.Errorf("pay %v: %+v", trust, r)
		}
	}
	// The right CA pays: the hint is for a failed check only.
	r := runWallet(t, cli.Env{}, "--wallet", dir, "pay", "--merchant", m.Addr, "--order", o.ID, "--yes", "--merchant-ca", m.CertFile)
	if r.code != 0 || !strings.Contains(r.stdout, "paid EUR:1.00") {
		t.Fatalf("pay with the merchant's CA: %+v", r)
	}
	// The bank's flags are named for the bank.
	r = runWallet(t, cli.Env{}, "--wallet", filepath.Join(t.TempDir(), "w"), "init", "--bank", m.Addr, "--ca", wrongCA)
	if r.code != 1 || strings.Contains(r.stderr, "unreachable") ||
		!strings.Contains(r.stderr, "the bank's TLS certificate did not verify: x509: ") || !strings.Contains(r.stderr, "; check --ca or --pin") {
		t.Errorf("init with a wrong --ca: %+v", r)
	}
}

// TestPayAgainAtAnotherAddress: an order paid at 127.0.0.1:PORT and paid
// again at localhost:PORT is the same merchant's same signed request: pay
// says it was already paid (exit 0, "already_paid": true) and sends no
// coins. It reserved new coins, which the bank refused, the order paid.
func TestPayAgainAtAnotherAddress(t *testing.T) {
	b, m, _, _ := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, b.Addr, "EUR:10.00")
	if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:3.50"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(m.Addr)
	pay := func(addr string) result {
		return runWallet(t, env, "--wallet", dir, "--json", "pay", "--yes", "--merchant", addr, "--merchant-plaintext", "--order", o.ID)
	}
	if r := pay(net.JoinHostPort("127.0.0.1", port)); r.code != 0 || !strings.Contains(r.stdout, `"already_paid": false`) {
		t.Fatalf("pay: %+v", r)
	}
	r := pay(net.JoinHostPort("localhost", port))
	if r.code != 0 || !strings.Contains(r.stdout, `"already_paid": true`) || !strings.Contains(r.stdout, `"fresh": "EUR:2.50"`) {
		t.Fatalf("pay again at localhost: %+v", r)
	}
	if r := runWallet(t, env, "--wallet", dir, "balance", "--json"); !strings.Contains(r.stdout, `"revealed": "EUR:0.00"`) {
		t.Fatalf("balance after paying again: %+v", r)
	}
}

// TestRestoreFromWalletTakesItsAccount: a copy of a wallet directory knows
// its bank account; restore --from-wallet without --account sets it (it
// was ignored: the restored wallet could not withdraw until set-account),
// and its summary counts the coins found as unspent and spent.
func TestRestoreFromWalletTakesItsAccount(t *testing.T) {
	b, m, _, _ := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	env := cli.Env{}
	dir, acct := accountWallet(t, env, b, b.Addr, "EUR:10.00")
	if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:3.50"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r := runWallet(t, env, "--wallet", dir, "pay", "--yes", "--merchant", m.Addr, "--merchant-plaintext", "--order", o.ID); r.code != 0 {
		t.Fatalf("pay: %+v", r)
	}
	restored := filepath.Join(t.TempDir(), "r")
	r := runWallet(t, env, "--wallet", restored, "restore", "--from-wallet", dir, "--bank", b.Addr, "--plaintext")
	// EUR:3.50 as 2.00, 1.00 and 0.50; the 1.00 spent.
	want := fmt.Sprintf(" planchet indices: 2 unspent, 1 spent (3 not in this wallet before); fresh EUR:2.50\naccount %d set, from the copy\n", acct)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "found 3 coins of this seed at the bank in ") || !strings.HasSuffix(r.stdout, want) {
		t.Fatalf("restore --from-wallet: %+v\nwant stdout ending %q", r, want)
	}
	if r := runWallet(t, env, "--wallet", restored, "withdraw", "EUR:0.50"); r.code != 0 {
		t.Fatalf("withdraw from the restored wallet: %+v", r)
	}
}

// unsentSwap loses every swap before it reaches the bank.
type unsentSwap struct{ pb.BankClient }

func (unsentSwap) Swap(context.Context, *pb.SwapRequest, ...grpc.CallOption) (*pb.SwapResponse, error) {
	return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
}

// refusingSwap refuses every swap for good, as a replica whose clock is
// past the outputs' withdraw window does.
type refusingSwap struct{ pb.BankClient }

func (refusingSwap) Swap(context.Context, *pb.SwapRequest, ...grpc.CallOption) (*pb.SwapResponse, error) {
	return nil, status.Error(codes.FailedPrecondition, "denomination outside its validity window (simulated)")
}

// TestRecoverReportsSwapSettledElsewhere: an interrupted swap the bank
// refused when sent again, kept pending, is settled by the next command
// that sends it (here a swap), which notes it for 'wallet recover' to
// list. With nothing else left to do, recover found "nothing to
// recover" and never listed it: the swap it had said was kept pending
// was never said to be completed.
func TestRecoverReportsSwapSettledElsewhere(t *testing.T) {
	ctx := context.Background()
	b, _, _, _ := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, b.Addr, "EUR:10.00")
	if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:3.00"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	bankConn, err := transport.Dial(b.Addr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bankConn.Close()
	bankc := pb.NewBankClient(bankConn)
	w, err := wallet.Open(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Swap(ctx, unsentSwap{bankc}, ecash.MustParseAmount("EUR:1.00")); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("swap whose answer was lost: %v, want pending", err)
	}
	rep, err := w.Recover(ctx, refusingSwap{bankc})
	if err != nil || len(rep.Swaps) != 1 || rep.Swaps[0].Outcome != wallet.SwapKeptPending {
		t.Fatalf("recover at a bank refusing it: %+v, %v; want it kept pending", rep, err)
	}
	if _, err := w.Swap(ctx, bankc, ecash.MustParseAmount("EUR:0.50")); err != nil {
		t.Fatalf("a swap, the kept one sent again first: %v", err)
	}
	if n, err := w.PendingSwaps(); err != nil || n != 0 {
		t.Fatalf("%d swaps pending (%v), want the kept one completed", n, err)
	}
	w.Close()
	r := runWallet(t, env, "--wallet", dir, "recover", "--json")
	var out struct {
		Swaps []struct {
			Outcome string `json:"outcome"`
		} `json:"swaps"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); r.code != 0 || err != nil {
		t.Fatalf("recover: %+v (%v)", r, err)
	}
	if len(out.Swaps) != 1 || out.Swaps[0].Outcome != wallet.SwapCompleted.String() {
		t.Fatalf("recover lists %+v (%s); want the kept swap completed", out.Swaps, r.stdout)
	}
	if r := runWallet(t, env, "--wallet", dir, "recover"); r.code != 0 || !strings.HasPrefix(r.stdout, "nothing to recover") {
		t.Fatalf("recover again: %+v", r)
	}
}
