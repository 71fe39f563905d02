package wallet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

var testKeys *bank.Keys

func keys(t *testing.T) *bank.Keys {
	t.Helper()
	if testKeys == nil {
		// CS below one euro, RSA above: every flow runs over both ciphers.
		var specs []bank.DenomSpec
		for v := uint64(1); v <= 512; v *= 2 {
			c := ecash.CipherRSA
			if v < 100 {
				c = ecash.CipherCS
			}
			specs = append(specs, bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: c})
		}
		k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs}, time.Now().Add(-time.Minute), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		testKeys = k
	}
	return testKeys
}

// serve starts a gRPC server on loopback and returns a client connection.
func serve(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type fixture struct {
	bank     *bank.Bank
	bankc    pb.BankClient
	toBank   *lossyLink // the merchant's link to the bank
	merchant *merchant.Merchant
	shop     pb.MerchantClient
	shopAcct uint64
	shopCfg  merchant.Config // reopenMerchant opens it again
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, keys(t), time.Now) }

// newFixtureWith starts a bank with the given keys and clock (shared with
// the merchant), and a merchant, each on its own loopback gRPC server.
func newFixtureWith(t *testing.T, k *bank.Keys, now func() time.Time) *fixture {
	t.Helper()
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	b := bank.New(store, k, now, nil)
	bankConn := serve(t, func(s *grpc.Server) { pb.RegisterBankServer(s, b.PublicServer()) })
	f := &fixture{bank: b, bankc: pb.NewBankClient(bankConn)}

	dir := t.TempDir()
	pub, err := merchant.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.shopAcct, err = b.OpenAccount(context.Background(), "shop", pub, true); err != nil {
		t.Fatal(err)
	}
	f.shopCfg = merchant.Config{Dir: dir, Account: f.shopAcct, Bank: f.merchantBank(), FS: vfs.NewMem(), Now: now}
	f.openMerchant(t)
	return f
}

// openMerchant opens the merchant and serves it.
func (f *fixture) openMerchant(t *testing.T) {
	t.Helper()
	m, err := merchant.Open(context.Background(), f.shopCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	f.merchant = m
	f.shop = pb.NewMerchantClient(serve(t, func(s *grpc.Server) { pb.RegisterMerchantServer(s, m.PublicServer()) }))
}

// reopenMerchant restarts the merchant on its store.
func (f *fixture) reopenMerchant(t *testing.T) {
	t.Helper()
	if err := f.merchant.Close(); err != nil {
		t.Fatal(err)
	}
	f.openMerchant(t)
}

// fund opens an account for w and credits it.
func (f *fixture) fund(t *testing.T, w *wallet.Wallet, amount string) uint64 {
	t.Helper()
	id, err := f.bank.OpenAccount(context.Background(), "customer", w.AccountKey(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetAccount(id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.bank.Credit(context.Background(), id, ecash.MustParseAmount(amount), "", ""); err != nil {
		t.Fatal(err)
	}
	return id
}

// walletWithCoins creates a wallet with opts, funds its account with funds
// and withdraws withdraw of it as coins. It is closed when the test ends.
func (f *fixture) walletWithCoins(t *testing.T, opts wallet.Options, funds, withdraw string) *wallet.Wallet {
	t.Helper()
	w, err := wallet.Create(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	f.fund(t, w, funds)
	if _, err := w.Withdraw(context.Background(), f.bankc, ecash.MustParseAmount(withdraw), nil); err != nil {
		t.Fatal(err)
	}
	return w
}

func (f *fixture) balance(t *testing.T, id uint64) int64 {
	t.Helper()
	a, err := f.bank.Store().Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

// merchantBank is the merchant's link to the bank, which tests can make
// lose the bank's answers to deposits and refunds.
func (f *fixture) merchantBank() pb.BankClient {
	f.toBank = &lossyLink{BankClient: f.bankc}
	return f.toBank
}

// lossyLink loses the answers to the next lose deposits and loseRefunds
// refunds: the bank committed, the merchant never learns it.
type lossyLink struct {
	pb.BankClient
	lose, loseRefunds atomic.Int32
}

func (l *lossyLink) Deposit(ctx context.Context, in *pb.DepositRequest, opts ...grpc.CallOption) (*pb.DepositResponse, error) {
	resp, err := l.BankClient.Deposit(ctx, in, opts...)
	if err = lost(&l.lose, err); err != nil {
		return nil, err
	}
	return resp, nil
}

func (l *lossyLink) Refund(ctx context.Context, in *pb.RefundRequest, opts ...grpc.CallOption) (*pb.RefundResponse, error) {
	resp, err := l.BankClient.Refund(ctx, in, opts...)
	if err = lost(&l.loseRefunds, err); err != nil {
		return nil, err
	}
	return resp, nil
}

// lost is a call's error, or, for an answer the counter n says to lose, the
// error of a connection lost after the bank committed.
func lost(n *atomic.Int32, err error) error {
	if err == nil && n.Add(-1) >= 0 {
		return status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	return err
}

// lossyBank forwards to the real bank but can lose responses, as a network
// failure after the bank committed would.
type lossyBank struct {
	pb.BankClient
	loseWithdraw atomic.Int32 // responses to drop
	beforeSend   func()       // called before each Withdraw is forwarded
}

func (l *lossyBank) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if l.beforeSend != nil {
		l.beforeSend()
	}
	resp, err := l.BankClient.Withdraw(ctx, in, opts...)
	if err == nil && l.loseWithdraw.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	return resp, err
}

type lossyMerchant struct {
	pb.MerchantClient
	lose atomic.Int32
}

func (l *lossyMerchant) Pay(ctx context.Context, in *pb.PayRequest, opts ...grpc.CallOption) (*pb.PayResponse, error) {
	resp, err := l.MerchantClient.Pay(ctx, in, opts...)
	if err == nil && l.lose.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	return resp, err
}

// TestWithdrawResponseLost: the bank commits but the answer is lost. The
// wallet keeps the request, and the retry gets the coins with one debit.
func TestWithdrawResponseLost(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, acct := fundedWallet(t, f, "EUR:10.00")
	lossy := &lossyBank{BankClient: f.bankc}
	if _, err := w.RefreshKeys(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	lossy.loseWithdraw.Store(1)
	if _, err := w.Withdraw(ctx, lossy, ecash.MustParseAmount("EUR:2.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("lost response: %v, want ErrPending", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 1 {
		t.Fatalf("%d pending withdrawals, want 1", n)
	}
	if got := f.balance(t, acct); got != 800 {
		t.Fatalf("bank balance %d after the lost answer, want 800", got)
	}
	if _, err := w.Recover(ctx, lossy); err != nil {
		t.Fatal(err)
	}
	bal, err := w.Balance()
	if err != nil || bal.Fresh.String() != "EUR:2.00" {
		t.Fatalf("wallet after recovery: %v %v", bal.Fresh, err)
	}
	if got := f.balance(t, acct); got != 800 {
		t.Fatalf("bank balance %d after the retry, want 800 (debited once)", got)
	}
}

// TestCrashMidWithdraw crashes the wallet's file system at the two points
// that matter: after the request is persisted but before it is sent, and
// after the bank answered but before the coins were stored. Reopening from
// the crashed state and recovering yields the coins, debited once.
func TestCrashMidWithdraw(t *testing.T) {
	for _, point := range []string{"before send", "after bank commit"} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			fs := vfs.NewCrashableMem()
			w, err := wallet.Create("w", wallet.Options{FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			acct := f.fund(t, w, "EUR:10.00")
			if _, err := w.RefreshKeys(ctx, f.bankc); err != nil {
				t.Fatal(err)
			}
			var crashed *vfs.MemFS
			lossy := &lossyBank{BankClient: f.bankc}
			if point == "before send" {
				lossy.beforeSend = func() { crashed = fs.CrashClone(vfs.CrashCloneCfg{}) }
				lossy.loseWithdraw.Store(1) // the process "dies": it never sees an answer
			} else {
				lossy.loseWithdraw.Store(1)
			}
			_, err = w.Withdraw(ctx, lossy, ecash.MustParseAmount("EUR:3.00"), nil)
			if !errors.Is(err, wallet.ErrPending) {
				t.Fatalf("withdraw: %v", err)
			}
			if crashed == nil {
				crashed = fs.CrashClone(vfs.CrashCloneCfg{})
			}
			w.Close()

			w2, err := wallet.Open("w", wallet.Options{FS: crashed})
			if err != nil {
				t.Fatal(err)
			}
			defer w2.Close()
			if _, err := w2.Recover(ctx, f.bankc); err != nil {
				t.Fatal(err)
			}
			bal, err := w2.Balance()
			if err != nil || bal.Fresh.String() != "EUR:3.00" {
				t.Fatalf("recovered wallet holds %v (%v), want EUR:3.00", bal.Fresh, err)
			}
			if got := f.balance(t, acct); got != 700 {
				t.Fatalf("bank balance %d, want 700", got)
			}
			// A later withdrawal uses fresh planchet indices: no coin is issued twice.
			if _, err := w2.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
				t.Fatal(err)
			}
			if bal, _ = w2.Balance(); bal.Fresh.String() != "EUR:4.00" {
				t.Fatalf("after a second withdrawal: %s", bal.Fresh)
			}
		})
	}
}

// TestPayResponseLost: the merchant deposits but its answer to the wallet is
// lost. The wallet asks the bank, which holds the receipt: the payment
// completes, and the merchant is credited once.
func TestPayResponseLost(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:5.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.50"), "a coffee", 0)
	if err != nil {
		t.Fatal(err)
	}
	lossy := &lossyMerchant{MerchantClient: f.shop}
	lossy.lose.Store(1)
	rcpt, err := w.Pay(ctx, f.bankc, lossy, "shop", o.ID, nil)
	if err != nil || rcpt.Total.String() != "EUR:1.50" {
		t.Fatalf("lost answer: %v, want the receipt from the bank", err)
	}
	bal, _ := w.Balance()
	if !bal.Pending.IsZero() || bal.Fresh.String() != "EUR:3.50" {
		t.Fatalf("after payment: fresh %s pending %s", bal.Fresh, bal.Pending)
	}
	if got := f.balance(t, f.shopAcct); got != 150 {
		t.Fatalf("merchant credited %d, want 150", got)
	}
}

// TestPayMerchantDown: the merchant is unreachable and the bank has no
// record: the coins stay pending, and the retry pays.
func TestPayMerchantDown(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:5.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.50"), "a coffee", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pay(ctx, f.bankc, downMerchant{f.shop}, "shop", o.ID, nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("merchant down: %v, want ErrPending", err)
	}
	bal, _ := w.Balance()
	if bal.Pending.String() != "EUR:1.50" || bal.Fresh.String() != "EUR:3.50" {
		t.Fatalf("while pending: fresh %s pending %s", bal.Fresh, bal.Pending)
	}
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatal(err)
	}
	bal, _ = w.Balance()
	if !bal.Pending.IsZero() || bal.Fresh.String() != "EUR:3.50" || f.balance(t, f.shopAcct) != 150 {
		t.Fatalf("after retry: fresh %s pending %s merchant %d", bal.Fresh, bal.Pending, f.balance(t, f.shopAcct))
	}
}

type downMerchant struct{ pb.MerchantClient }

func (downMerchant) Pay(context.Context, *pb.PayRequest, ...grpc.CallOption) (*pb.PayResponse, error) {
	return nil, status.Error(codes.Unavailable, "merchant down (simulated)")
}

// TestPayRefusals: the wallet refuses requests it cannot trust and keeps its
// coins when the user or the bank says no.
func TestPayRefusals(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{Now: clock}, "EUR:10.00", "EUR:1.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.50"), "gum", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, func(*wallet.Offer) error { return wallet.ErrDeclined }); !errors.Is(err, wallet.ErrDeclined) {
		t.Fatalf("declined: %v", err)
	}
	big, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:2.00"), "too dear", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", big.ID, nil); !errors.Is(err, wallet.ErrNoExactChange) {
		t.Fatalf("more than the wallet holds: %v", err)
	}
	// A merchant that alters its signed request after signing is caught.
	tampered := &tamperingMerchant{MerchantClient: f.shop}
	if _, err := w.Pay(ctx, f.bankc, tampered, "shop", o.ID, nil); !errors.Is(err, wallet.ErrBadRequest) {
		t.Fatalf("tampered request: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); !errors.Is(err, wallet.ErrExpired) {
		t.Fatalf("expired request: %v", err)
	}
	bal, _ := w.Balance()
	if bal.Fresh.String() != "EUR:1.00" || !bal.Pending.IsZero() {
		t.Fatalf("coins moved on refusals: fresh %s pending %s", bal.Fresh, bal.Pending)
	}
}

// TestPayOffer: a wallet pays from a payment URI without fetching the
// request, refuses a URI whose summary was changed, and a second call
// answers with the first receipt.
func TestPayOffer(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:2.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.50"), "gum", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if f.merchant.PaymentURI(o) != "" {
		t.Fatal("a URI without a public address")
	}
	if err := f.merchant.SetPublicAddr("shop.example:7543"); err != nil {
		t.Fatal(err)
	}
	offer, err := ecash.ParsePaymentURI(f.merchant.PaymentURI(o))
	if err != nil {
		t.Fatal(err)
	}
	if offer.Merchant != "shop.example:7543" {
		t.Fatalf("URI names %q", offer.Merchant)
	}
	shop := noFetchMerchant{f.shop}

	forged := *offer
	forged.Summary = "gum, and a surcharge"
	if _, err := w.PayOffer(ctx, f.bankc, shop, &forged, nil); !errors.Is(err, wallet.ErrBadRequest) {
		t.Fatalf("forged summary: %v", err)
	}
	if prev, err := w.PaidReceipt(offer.Merchant, o.ID); err != nil || prev != nil {
		t.Fatalf("a receipt before paying: %v, %v", prev, err)
	}
	var shown *wallet.Offer
	rcpt, err := w.PayOffer(ctx, f.bankc, shop, offer, func(o *wallet.Offer) error { shown = o; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if shown == nil || shown.Summary != "gum" || shown.Request.OrderID != o.ID {
		t.Fatalf("confirm saw %+v", shown)
	}
	if rcpt.Total.String() != "EUR:0.50" {
		t.Fatalf("paid %s", rcpt.Total)
	}
	if got, err := f.merchant.Order(o.ID); err != nil || got.Status(time.Now()) != "paid" {
		t.Fatalf("order: %v, %v", got, err)
	}
	if prev, err := w.PaidReceipt(offer.Merchant, o.ID); err != nil || prev == nil || !bytes.Equal(prev.Encode(), rcpt.Encode()) {
		t.Fatalf("the receipt kept: %v, %v", prev, err)
	}
	again, err := w.PayOffer(ctx, f.bankc, shop, offer, func(*wallet.Offer) error { return errors.New("asked twice") })
	if err != nil || !bytes.Equal(again.Encode(), rcpt.Encode()) {
		t.Fatalf("second call: %v", err)
	}
	bal, _ := w.Balance()
	if bal.Fresh.String() != "EUR:1.50" || !bal.Pending.IsZero() {
		t.Fatalf("fresh %s pending %s", bal.Fresh, bal.Pending)
	}
}

// noFetchMerchant fails the test's payment if the wallet fetches the request.
type noFetchMerchant struct{ pb.MerchantClient }

func (noFetchMerchant) GetPaymentRequest(context.Context, *pb.GetPaymentRequestRequest, ...grpc.CallOption) (*pb.GetPaymentRequestResponse, error) {
	return nil, errors.New("fetched a request the URI carries")
}

type tamperingMerchant struct{ pb.MerchantClient }

func (m *tamperingMerchant) GetPaymentRequest(ctx context.Context, in *pb.GetPaymentRequestRequest, opts ...grpc.CallOption) (*pb.GetPaymentRequestResponse, error) {
	resp, err := m.MerchantClient.GetPaymentRequest(ctx, in, opts...)
	if err == nil {
		resp.Summary += " (now with a surcharge)"
	}
	return resp, err
}
