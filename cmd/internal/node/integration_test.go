package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// TestEndToEnd drives wallet -> merchant -> bank over real gRPC with TLS on
// loopback and checks that every balance moves exactly.
func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	shop := e.startMerchant("shop")
	bankc := e.dialBank()

	var transcript safeBuffer
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: e.clock.Now, Transcript: &transcript})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	acct := e.openAccount("alice", w.AccountKey(), false)
	if err := w.SetAccount(acct); err != nil {
		t.Fatal(err)
	}
	e.credit(acct, "EUR:100.00")

	var progress []int
	coins, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:10.00"), func(done, total int) { progress = append(progress, done) })
	if err != nil {
		t.Fatal(err)
	}
	if len(progress) == 0 || progress[len(progress)-1] != len(coins) {
		t.Fatalf("progress %v for %d coins", progress, len(coins))
	}
	if got := e.balance(acct); got != "EUR:90.00" {
		t.Fatalf("customer balance after withdraw %s, want EUR:90.00", got)
	}
	if got := e.raw(bank.AccountOutstanding); got != 1000 {
		t.Fatalf("outstanding e-cash %d, want 1000", got)
	}
	bal, err := w.Balance()
	if err != nil || bal.Fresh.String() != "EUR:10.00" {
		t.Fatalf("wallet balance %v %v", bal.Fresh, err)
	}
	for _, c := range coins {
		d, err := e.ks.Denomination(c.Denom)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Verify(d.Key); err != nil {
			t.Fatalf("withdrawn coin does not verify: %v", err)
		}
	}

	order := shop.order(t, "EUR:3.50")
	var shown *wallet.Offer
	rcpt, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, order, func(o *wallet.Offer) error { shown = o; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if shown == nil || shown.Request.Amount.String() != "EUR:3.50" || shown.Summary != "test order EUR:3.50" {
		t.Fatalf("offer shown to the user: %+v", shown)
	}
	if rcpt.Total.String() != "EUR:3.50" || rcpt.MerchantAccount != shop.account {
		t.Fatalf("receipt %+v", rcpt)
	}
	if got := e.balance(shop.account); got != "EUR:3.50" {
		t.Fatalf("merchant balance %s, want EUR:3.50", got)
	}
	if got := e.raw(bank.AccountOutstanding); got != 650 {
		t.Fatalf("outstanding e-cash %d, want 650", got)
	}
	if st := shop.status(t, order); st.Status != "paid" || len(st.Receipt) == 0 {
		t.Fatalf("order status %q", st.Status)
	}
	bal, _ = w.Balance()
	if bal.Fresh.String() != "EUR:6.50" || !bal.Pending.IsZero() {
		t.Fatalf("wallet after paying: fresh %s pending %s", bal.Fresh, bal.Pending)
	}
	// Paying the same order again answers with the stored receipt: nothing
	// is sent and no coin moves.
	again, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, order, nil)
	if err != nil || string(again.Encode()) != string(rcpt.Encode()) {
		t.Fatalf("paying a paid order again: %v", err)
	}
	bal, _ = w.Balance()
	if bal.Fresh.String() != "EUR:6.50" {
		t.Fatalf("wallet moved coins re-paying a paid order: %s", bal.Fresh)
	}
	if got := e.balance(shop.account); got != "EUR:3.50" {
		t.Fatalf("merchant balance %s after re-paying", got)
	}
	// A copy of the same order paid from another wallet conflicts at the
	// bank (the request is paid with other coins), and that wallet keeps
	// its coins.
	other := e.newWallet(t.TempDir(), "EUR:5.00")
	defer other.Close()
	if _, err := other.Withdraw(ctx, bankc, mustAmount(t, "EUR:3.50"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Pay(ctx, bankc, shop.client, shop.node.Addr, order, nil); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second payer of a paid order: %v, want AlreadyExists", err)
	}
	if bal, _ := other.Balance(); bal.Fresh.String() != "EUR:3.50" {
		t.Fatalf("refused payer lost coins: %s", bal.Fresh)
	}
	if got := e.balance(shop.account); got != "EUR:3.50" {
		t.Fatalf("merchant balance %s after a refused second payment", got)
	}
	// Money is conserved: funding = -(customer + merchant + outstanding).
	totals, err := e.bank.store.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, v := range totals {
		sum += v
	}
	if sum != 0 {
		t.Fatalf("ledger does not balance: %d", sum)
	}
	if transcript.Len() == 0 {
		t.Fatal("transcript empty")
	}
}

// TestCopiedWalletDoubleSpend: two wallets holding the same coins pay two
// merchants concurrently. Exactly one payment succeeds; the other gets a
// proof that verifies.
func TestCopiedWalletDoubleSpend(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	shopA, shopB := e.startMerchant("shop A"), e.startMerchant("shop B")
	bankc := e.dialBank()

	dirA := t.TempDir()
	w := e.newWallet(dirA, "EUR:10.00")
	if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:5.12"), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dirB := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(dirB, os.DirFS(dirA)); err != nil {
		t.Fatal(err)
	}
	wa, err := wallet.Open(dirA, wallet.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer wa.Close()
	wb, err := wallet.Open(dirB, wallet.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()

	orderA, orderB := shopA.order(t, "EUR:5.12"), shopB.order(t, "EUR:5.12")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { _, errs[0] = wa.Pay(ctx, bankc, shopA.client, shopA.node.Addr, orderA, nil) })
	wg.Go(func() { _, errs[1] = wb.Pay(ctx, bankc, shopB.client, shopB.node.Addr, orderB, nil) })
	wg.Wait()

	ok, refused := 0, 0
	for _, err := range errs {
		var ds *ecash.DoubleSpendError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &ds):
			refused++
			if verr := ds.Proof.Verify(e.ks); verr != nil {
				t.Fatalf("proof does not verify: %v", verr)
			}
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 1 || refused != 1 {
		t.Fatalf("%d payments succeeded, %d refused with proof; want 1 and 1", ok, refused)
	}
	paid := 0
	for _, s := range []*shop{shopA, shopB} {
		switch e.balance(s.account) {
		case "EUR:5.12":
			paid++
		case "EUR:0.00":
		default:
			t.Fatalf("merchant balance %s", e.balance(s.account))
		}
	}
	if paid != 1 || e.raw(bank.AccountOutstanding) != 0 {
		t.Fatalf("%d merchants paid, outstanding %d", paid, e.raw(bank.AccountOutstanding))
	}
}

// TestConcurrentDepositsOfOneCoin: 100 goroutines deposit the same coin for
// 100 different orders. Exactly one wins, and the merchant is credited once.
func TestConcurrentDepositsOfOneCoin(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	shop := e.startMerchant("shop")
	bankc := e.dialBank()
	coin, key := e.rawCoin(t, bankc, "EUR:0.01")
	const n = 100
	sealed := make([][]byte, n)
	orders := make([]string, n)
	for i := range n {
		orders[i] = shop.order(t, "EUR:0.01")
		o, err := shop.node.Merchant.Order(orders[i])
		if err != nil {
			t.Fatal(err)
		}
		sealed[i] = e.seal(t, o.Request, []ecash.Coin{coin}, []ed25519.PrivateKey{key})
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range n {
		wg.Go(func() {
			_, err := shop.node.Merchant.Pay(ctx, orders[i], sealed[i])
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if ds := wallet.DoubleSpendFromError(err); ds == nil {
				t.Errorf("deposit %d: %v, want a double-spend refusal", i, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d deposits of one coin succeeded", wins)
	}
	if got := e.balance(shop.account); got != "EUR:0.01" {
		t.Fatalf("merchant credited %s", got)
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

// Bytes returns a copy of what was written.
func (s *safeBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b)
}

func (s *safeBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.b)
}
