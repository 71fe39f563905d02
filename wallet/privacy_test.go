package wallet_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// seenBank records every blinded message and CS nonce the wallet sends,
// with the phase of the test that sent it.
type seenBank struct {
	pb.BankClient
	mu    sync.Mutex
	phase string
	sent  map[string]map[string]bool // blinded message or nonce -> phases
}

func (s *seenBank) saw(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent == nil {
		s.sent = map[string]map[string]bool{}
	}
	if s.sent[string(b)] == nil {
		s.sent[string(b)] = map[string]bool{}
	}
	s.sent[string(b)][s.phase] = true
}

func (s *seenBank) PrepareWithdraw(ctx context.Context, in *pb.PrepareWithdrawRequest, opts ...grpc.CallOption) (*pb.PrepareWithdrawResponse, error) {
	for _, it := range in.Items {
		s.saw(it.Request)
	}
	return s.BankClient.PrepareWithdraw(ctx, in, opts...)
}

func (s *seenBank) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if r, err := ecash.DecodeWithdrawRequest(in.Body); err == nil {
		for _, p := range r.Planchets {
			s.saw(p.Blinded)
		}
	}
	return s.BankClient.Withdraw(ctx, in, opts...)
}

func (s *seenBank) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	if r, err := ecash.DecodeSwapRequest(in.Body); err == nil {
		for _, p := range r.Outputs {
			s.saw(p.Blinded)
		}
	}
	return s.BankClient.Swap(ctx, in, opts...)
}

// TestRefusedPlanchetsNotReused: the planchets of withdrawals the bank
// refused (the account lacks the funds) go only to the account's next
// withdrawal, never to a swap, which they would link to the account; and
// refusals leave no hole a restore cannot cross.
func TestRefusedPlanchetsNotReused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:3.00")
	seen := &seenBank{BankClient: f.bankc, phase: "withdrawals"}
	if _, err := w.Withdraw(ctx, seen, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	// 6 × 64 indices, more than RestoreGap, were they skipped; the last
	// refusal takes fewer than the first parked, whose rest stays parked.
	for _, amount := range []string{"EUR:500.00", "EUR:500.00", "EUR:500.00", "EUR:500.00", "EUR:500.00", "EUR:500.00", "EUR:4.00"} {
		if _, err := w.Withdraw(ctx, seen, ecash.MustParseAmount(amount), nil); err == nil {
			t.Fatal("withdrawing more than the account holds succeeded")
		}
	}
	seen.phase = "swap"
	if _, err := w.Swap(ctx, seen, ecash.MustParseAmount("EUR:0.50")); err != nil {
		t.Fatal(err)
	}
	seen.phase = "withdrawals"
	if _, err := w.Withdraw(ctx, seen, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	for b, phases := range seen.sent {
		if len(phases) > 1 {
			t.Errorf("sent in a withdrawal and in a swap: %x…", b[:8])
		}
	}
	want, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	r, rep, err := wallet.Restore(ctx, t.TempDir(), w.Seed(), f.bankc, wallet.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if rep.Fresh != want.Fresh {
		t.Errorf("restore found %s, the wallet holds %s: refusals left a hole", rep.Fresh, want.Fresh)
	}
}

// TestNoClockInAnonymousRequests: a payment's permissions carry the
// payment request's time and a swap carries time 0, not the wallet's clock,
// whose offset (to the millisecond, in every signed withdrawal) would let
// the bank match anonymous requests to the account.
func TestNoClockInAnonymousRequests(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := newWallet(t, f, "EUR:10.00", "EUR:5.12")
	var swaps []*ecash.SwapRequest
	spy := &swapSpy{BankClient: f.bankc, got: &swaps}
	if _, err := w.Swap(ctx, spy, ecash.MustParseAmount("EUR:0.50")); err != nil {
		t.Fatal(err)
	}
	if len(swaps) == 0 {
		t.Fatal("no swap sent")
	}
	for _, r := range swaps {
		if r.CreatedAt.UnixMilli() != 0 {
			t.Errorf("a swap sent with the wallet's clock %v", r.CreatedAt)
		}
	}
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.03"), "clock", 0)
	if err != nil {
		t.Fatal(err)
	}
	capture := &capturingMerchant{MerchantClient: f.shop}
	if _, err := w.Pay(ctx, spy, capture, "shop", o.ID, nil); err == nil {
		t.Fatal("the capturing merchant answered")
	}
	pr, err := ecash.DecodePaymentRequest(o.Request)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ecash.OpenPayment(keys(t).HPKE, pr, capture.got.SealedPayment)
	if err != nil {
		t.Fatal(err)
	}
	for _, dp := range p.Permissions {
		if !dp.Timestamp.Equal(pr.CreatedAt) {
			t.Errorf("a permission timestamped %v, want the request's %v", dp.Timestamp, pr.CreatedAt)
		}
	}
}

// swapSpy forwards swaps and keeps their requests.
type swapSpy struct {
	pb.BankClient
	got *[]*ecash.SwapRequest
}

func (s *swapSpy) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	if r, err := ecash.DecodeSwapRequest(in.Body); err == nil {
		*s.got = append(*s.got, r)
	}
	return s.BankClient.Swap(ctx, in, opts...)
}

// sealedSpy keeps the sealed payments a merchant is handed, by order.
type sealedSpy struct {
	pb.MerchantClient
	sealed map[string][]byte
}

func (s *sealedSpy) Pay(ctx context.Context, in *pb.PayRequest, opts ...grpc.CallOption) (*pb.PayResponse, error) {
	s.sealed[in.OrderId] = in.SealedPayment
	return s.MerchantClient.Pay(ctx, in, opts...)
}

// shown opens, with the bank's key, the sealed payment of order o that the
// spy kept: the coins the bank sees when the merchant deposits it.
func (s *sealedSpy) shown(t *testing.T, o *merchant.Order) []ecash.Hash {
	t.Helper()
	pr, err := ecash.DecodePaymentRequest(o.Request)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ecash.OpenPayment(keys(t).HPKE, pr, s.sealed[o.ID])
	if err != nil {
		t.Fatal(err)
	}
	var ids []ecash.Hash
	for _, dp := range p.Permissions {
		ids = append(ids, dp.Coin.ID())
	}
	return ids
}

// refusedDeposit has a copy of a wallet holding coins of EUR:0.01 and
// EUR:0.02 spend the first, then the wallet pay EUR:0.03 with both, through
// bank: the bank opens the deposit and refuses it with a double-spend
// proof. It returns the wallet and the coins the bank saw.
func refusedDeposit(t *testing.T, f *fixture, bank pb.BankClient) (*wallet.Wallet, []ecash.Hash) {
	t.Helper()
	ctx := context.Background()
	a, b := copiedWallet(t, f, "EUR:0.03") // 0.01 + 0.02
	o1, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.01"), "one", 0)
	if _, err := b.Pay(ctx, f.bankc, f.shop, "shop", o1.ID, nil); err != nil {
		t.Fatal(err)
	}
	spy := &sealedSpy{MerchantClient: f.shop, sealed: map[string][]byte{}}
	o2, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.03"), "two", 0)
	if _, err := a.Pay(ctx, bank, spy, "shop", o2.ID, nil); !errors.Is(err, ecash.ErrDoubleSpend) {
		t.Fatalf("paying with a coin the copy spent: %v", err)
	}
	return a, spy.shown(t, o2)
}

// TestRefusedDepositCoinsNotReused: a deposit refused for one double-spent
// coin still showed the bank every other coin of it, bound to that
// merchant and order. Were they paid again as they are, the bank would
// link that payment to the next, to any merchant: the wallet swaps them
// first, so the next payment pays with coins the bank has not seen.
func TestRefusedDepositCoinsNotReused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, shown := refusedDeposit(t, f, f.bankc)
	o3, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.02"), "three", 0)
	rcpt, err := a.Pay(ctx, f.bankc, f.shop, "shop", o3.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range rcpt.Coins {
		if slices.Contains(shown, id) {
			t.Fatalf("coin %x, shown to the bank in the refused deposit, pays the next order as is: the bank links the two payments", id[:8])
		}
	}
	f.checkConservation(t, a)
}

// noSwaps is a bank that can no longer be reached for a swap (its first
// round, for CS coins, included): the wallet cannot swap its revealed
// coins right after the refusal.
type noSwaps struct {
	pb.BankClient
	cut func() // called as each swap is attempted; may be nil
}

func (n noSwaps) PrepareWithdraw(context.Context, *pb.PrepareWithdrawRequest, ...grpc.CallOption) (*pb.PrepareWithdrawResponse, error) {
	return nil, n.unreachable()
}

func (n noSwaps) Swap(context.Context, *pb.SwapRequest, ...grpc.CallOption) (*pb.SwapResponse, error) {
	return nil, n.unreachable()
}

func (n noSwaps) unreachable() error {
	if n.cut != nil {
		n.cut()
	}
	return status.Error(codes.Unavailable, "bank unreachable (simulated)")
}

// wantBalance fails the test unless w holds fresh, revealed of it, and
// nothing pending; it returns the balance.
func wantBalance(t *testing.T, w *wallet.Wallet, when, fresh, revealed string) wallet.Balance {
	t.Helper()
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if bal.Fresh.String() != fresh || bal.Revealed.String() != revealed || !bal.Pending.IsZero() {
		t.Fatalf("%s: fresh %s, revealed %s, pending %s; want fresh %s, revealed %s, none pending", when, bal.Fresh, bal.Revealed, bal.Pending, fresh, revealed)
	}
	return bal
}

// TestRevealedCoinsInBalance: coins a refused deposit revealed, not swapped
// yet (the bank out of reach), are still the wallet's money: the balance
// counts them in Fresh and says how much of it is revealed, and the
// e-cash the bank has out is what the wallet holds. They do not pay as
// they are.
func TestRevealedCoinsInBalance(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, _ := refusedDeposit(t, f, noSwaps{BankClient: f.bankc})
	wantBalance(t, a, "after the refusal", "EUR:0.02", "EUR:0.02")
	f.checkConservation(t, a)
	o3, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.02"), "three", 0)
	if _, err := a.Pay(ctx, f.bankc, f.shop, "shop", o3.ID, nil); !errors.Is(err, wallet.ErrNoExactChange) {
		t.Fatalf("paying with only a revealed coin: %v, want no exact change", err)
	}
}

// TestRefreshSwapsRevealedCoins: a refresh swaps the revealed coins, new as
// they are, for new ones: the swap spends exactly the coins the bank saw,
// and the wallet then holds their value less their swap fees, none of it
// revealed.
func TestRefreshSwapsRevealedCoins(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, shown := refusedDeposit(t, f, noSwaps{BankClient: f.bankc})
	before := wantBalance(t, a, "after the refusal", "EUR:0.02", "EUR:0.02")
	var swaps []*ecash.SwapRequest
	res, err := a.RefreshCoins(ctx, &swapSpy{BankClient: f.bankc, got: &swaps}, 0)
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("refresh: %v %v", err, res)
	}
	if len(swaps) != 1 {
		t.Fatalf("%d swaps, want one", len(swaps))
	}
	var inputs []ecash.Hash
	for _, in := range swaps[0].Inputs {
		if !slices.Contains(shown, in.Coin.ID()) {
			t.Errorf("the refresh swapped coin %x, which the bank had not seen", in.Coin.ID().String()[:16])
		}
		inputs = append(inputs, in.Coin.ID())
	}
	value, fees, err := a.CoinFees(inputs, func(f ecash.Fees) ecash.Amount { return f.Swap })
	if err != nil {
		t.Fatal(err)
	}
	net, err := value.Sub(fees)
	if err != nil {
		t.Fatal(err)
	}
	if value != before.Revealed || res.Renewed != net {
		t.Errorf("swapped %s of revealed %s, renewed %s, want %s", value, before.Revealed, res.Renewed, net)
	}
	want, err := before.Fresh.Sub(fees)
	if err != nil {
		t.Fatal(err)
	}
	wantBalance(t, a, "after the refresh", want.String(), "EUR:0.00")
	f.checkConservation(t, a)
}

// TestCrashBeforeRevealedSwapped: the machine loses power after a failed
// payment released its coins as revealed, before their swap was persisted.
// Reopened, the wallet holds them still revealed (neither lost nor fresh
// to pay as they are), and Recover swaps them. The payment here expired
// unanswered: the bank keeps nothing of a deposit it refuses, even one it
// opened, so the wallet cannot know it never saw it, and reveals its coins
// too.
func TestCrashBeforeRevealedSwapped(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, keys(t), clk.now)
	fs := vfs.NewCrashableMem()
	w, err := wallet.Create("w", wallet.Options{FS: fs, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f.fund(t, w, "EUR:1.00")
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:0.03"), nil); err != nil {
		t.Fatal(err)
	}
	o, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.03"), "late", time.Minute)
	if _, err := w.Pay(ctx, f.bankc, downMerchant{f.shop}, "shop", o.ID, nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("paying a merchant that is down: %v", err)
	}
	clk.add(time.Hour) // the request expires unpaid: the retry releases the coins
	var crashed *vfs.MemFS
	cut := noSwaps{BankClient: f.bankc, cut: func() {
		if crashed == nil {
			crashed = fs.CrashClone(vfs.CrashCloneCfg{})
		}
	}}
	if _, err := w.Pay(ctx, cut, downMerchant{f.shop}, "shop", o.ID, nil); err == nil || errors.Is(err, wallet.ErrPending) {
		t.Fatalf("retrying an expired payment: %v", err)
	}
	if crashed == nil {
		t.Fatal("no swap of the released coins was attempted")
	}
	w.Close()

	w2, err := wallet.Open("w", wallet.Options{FS: crashed, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	wantBalance(t, w2, "after the crash", "EUR:0.03", "EUR:0.03")
	if _, err := w2.Recover(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	wantBalance(t, w2, "after Recover", "EUR:0.03", "EUR:0.00")
	f.checkConservation(t, w2)
}

// TestRevealedAfterRefusedSwap: the swap of revealed coins is refused, one
// of them spent meanwhile by a copy of the wallet: the others stay
// revealed (the bank saw them again, in the swap), not fresh to pay as
// they are, and the next refresh swaps them.
func TestRevealedAfterRefusedSwap(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, b := copiedWallet(t, f, "EUR:0.07") // 0.01 + 0.02 + 0.04
	pay := func(w *wallet.Wallet, bank pb.BankClient, amount string) error {
		o, _ := f.merchant.CreateOrder(ecash.MustParseAmount(amount), amount, 0)
		_, err := w.Pay(ctx, bank, f.shop, "shop", o.ID, nil)
		return err
	}
	if err := pay(b, f.bankc, "EUR:0.01"); err != nil {
		t.Fatal(err)
	}
	if err := pay(a, noSwaps{BankClient: f.bankc}, "EUR:0.07"); !errors.Is(err, ecash.ErrDoubleSpend) {
		t.Fatalf("paying with a coin the copy spent: %v", err)
	}
	if err := pay(b, f.bankc, "EUR:0.02"); err != nil {
		t.Fatal(err)
	}
	if res, err := a.RefreshCoins(ctx, f.bankc, 0); err != nil || len(res.Errors) != 1 || !errors.Is(res.Errors[0], ecash.ErrDoubleSpend) {
		t.Fatalf("swapping a revealed coin the copy spent: %v %v", res, err)
	}
	wantBalance(t, a, "after the refused swap", "EUR:0.04", "EUR:0.04")
	if err := pay(a, f.bankc, "EUR:0.04"); !errors.Is(err, wallet.ErrNoExactChange) {
		t.Fatalf("paying with only a revealed coin: %v, want no exact change", err)
	}
	if _, err := a.RefreshCoins(ctx, f.bankc, 0); err != nil {
		t.Fatal(err)
	}
	wantBalance(t, a, "after the refresh", "EUR:0.04", "EUR:0.00")
	f.checkConservation(t, a)
}

// TestRevealedSwapsKeepPaymentsApart: two payments fail (each refused
// for a coin a copy of the wallet spent), and the first one's revealed
// coins could not be swapped at once (the bank out of the wallet's reach).
// When the second fails, its revealed coins and the first's are swapped
// in swaps of their own: one swap of coins the bank saw in both refused
// deposits would tell it that the two orders were one payer's.
func TestRevealedSwapsKeepPaymentsApart(t *testing.T) {
	f := newFixture(t)
	a, b := copiedWallet(t, f, "EUR:0.15") // 0.01 + 0.02 + 0.04 + 0.08
	var swaps []*ecash.SwapRequest
	r := refuseTwice(t, f, a, b, noSwaps{BankClient: f.bankc}, &swapSpy{BankClient: f.bankc, got: &swaps})
	if bal, err := a.Balance(); err != nil || !bal.Revealed.IsZero() || len(swaps) < 2 {
		t.Fatalf("after the second refusal: %d swaps, revealed %s (%v); want both payments' coins swapped", len(swaps), bal.Revealed, err)
	}
	r.noSwapLinks(t, swaps)
}

// twoRefusals are two orders whose deposits the bank opened and refused,
// and the coins it saw in each.
type twoRefusals struct {
	o1, o2         *merchant.Order
	shown1, shown2 []ecash.Hash
}

// refuseTwice has wallet a pay two orders (EUR:0.03, then EUR:0.12) with
// coins its copy b spent just before each (the 0.01, then the 0.04), so
// the bank refuses both with a double-spend proof: the first paid through
// first, the second through second (bank links that may block or watch
// the swaps a refusal starts). a holds 0.01 + 0.02 + 0.04 + 0.08.
func refuseTwice(t *testing.T, f *fixture, a, b *wallet.Wallet, first, second pb.BankClient) *twoRefusals {
	t.Helper()
	ctx := context.Background()
	pay := func(amount string) {
		o, _ := f.merchant.CreateOrder(ecash.MustParseAmount(amount), amount, 0)
		if _, err := b.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	spy := &sealedSpy{MerchantClient: f.shop, sealed: map[string][]byte{}}
	r := &twoRefusals{}
	pay("EUR:0.01") // the copy spends the 0.01
	r.o1, _ = f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.03"), "first", 0)
	if _, err := a.Pay(ctx, first, spy, "shop", r.o1.ID, nil); !errors.Is(err, ecash.ErrDoubleSpend) {
		t.Fatalf("first payment: %v", err)
	}
	pay("EUR:0.04") // the copy spends the 0.04
	r.o2, _ = f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.12"), "second", 0)
	if _, err := a.Pay(ctx, second, spy, "shop", r.o2.ID, nil); !errors.Is(err, ecash.ErrDoubleSpend) {
		t.Fatalf("second payment: %v", err)
	}
	r.shown1, r.shown2 = spy.shown(t, r.o1), spy.shown(t, r.o2)
	return r
}

// noSwapLinks fails if one of swaps spends coins the bank saw in both
// refused payments: it would link the two orders.
func (r *twoRefusals) noSwapLinks(t *testing.T, swaps []*ecash.SwapRequest) {
	t.Helper()
	for _, s := range swaps {
		var from1, from2 bool
		for _, in := range s.Inputs {
			from1 = from1 || slices.Contains(r.shown1, in.Coin.ID())
			from2 = from2 || slices.Contains(r.shown2, in.Coin.ID())
		}
		if from1 && from2 {
			t.Fatalf("one swap of %d inputs spends coins the bank saw in both refused payments: it links order %s to order %s", len(s.Inputs), r.o1.ID, r.o2.ID)
		}
	}
}
