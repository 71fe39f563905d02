package wallet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// till is a bank and a merchant with a catalogue, over loopback gRPC.
type till struct {
	clock    *clock
	bank     *bank.Bank
	bankc    pb.BankClient
	merchant *merchant.Merchant
	shop     pb.MerchantClient
	toShop   *flakyTill // the customer's link to the merchant
	shopAcct uint64
	goods    map[string][]byte
}

// newTill starts a bank and a merchant selling "song" (EUR:1.50) and
// "book" (EUR:4.00).
func newTill(t *testing.T) *till {
	t.Helper()
	c := newClock() // shared by the bank, the merchant and the wallet
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	b := bank.New(store, keys(t), c.now, nil)
	bankConn := serve(t, func(s *grpc.Server) { pb.RegisterBankServer(s, b.PublicServer()) })
	tl := &till{clock: c, bank: b, bankc: pb.NewBankClient(bankConn), goods: map[string][]byte{}}

	cat := t.TempDir()
	for name, size := range map[string]int{"song": 200 << 10, "book": 1000} {
		g := make([]byte, size)
		rand.Read(g)
		tl.goods[name] = g
		if err := os.WriteFile(filepath.Join(cat, name+".bin"), g, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err = os.WriteFile(filepath.Join(cat, merchant.CatalogueFile), []byte(`{"products": [
		{"id": "song", "file": "song.bin", "price": "EUR:1.50", "description": "a song"},
		{"id": "book", "file": "book.bin", "price": "EUR:4.00", "description": "a book"}]}`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pub, err := merchant.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tl.shopAcct, err = b.OpenAccount(context.Background(), "shop", pub, true); err != nil {
		t.Fatal(err)
	}
	m, err := merchant.Open(context.Background(), merchant.Config{
		Dir: dir, Account: tl.shopAcct, Bank: tl.bankc, FS: vfs.NewMem(), Now: c.now, Catalogue: cat,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tl.merchant = m
	tl.toShop = &flakyTill{MerchantClient: pb.NewMerchantClient(serve(t, func(s *grpc.Server) { pb.RegisterMerchantServer(s, m.PublicServer()) }))}
	tl.shop = tl.toShop
	return tl
}

func (tl *till) customer(t *testing.T, funds string) (*wallet.Wallet, uint64) {
	t.Helper()
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: tl.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	id, err := tl.bank.OpenAccount(context.Background(), "customer", w.AccountKey(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetAccount(id); err != nil {
		t.Fatal(err)
	}
	if funds != "" {
		if _, err := tl.bank.Credit(context.Background(), id, ecash.MustParseAmount(funds), "", ""); err != nil {
			t.Fatal(err)
		}
	}
	return w, id
}

func (tl *till) balance(t *testing.T, id uint64) int64 {
	t.Helper()
	a, err := tl.bank.Store().Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

// flakyTill is the customer's link to the merchant. dropAnswer loses the
// answer to SubmitEPO/WriteCheck after the merchant forwarded it (the
// merchant never sends K); neverSend fails SubmitEPO without sending it.
type flakyTill struct {
	pb.MerchantClient
	dropAnswer atomic.Bool
	neverSend  atomic.Bool
	beforeSend func() // called as SubmitEPO is sent
}

func (f *flakyTill) SubmitEPO(ctx context.Context, in *pb.SubmitEPORequest, opts ...grpc.CallOption) (*pb.SubmitEPOResponse, error) {
	if f.beforeSend != nil {
		f.beforeSend()
	}
	if f.neverSend.Load() {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	resp, err := f.MerchantClient.SubmitEPO(ctx, in, opts...)
	if err == nil && f.dropAnswer.Load() {
		return nil, status.Error(codes.Unavailable, "merchant went away with the key (simulated)")
	}
	return resp, err
}

func (f *flakyTill) WriteCheck(ctx context.Context, in *pb.SubmitEPORequest, opts ...grpc.CallOption) (*pb.SubmitEPOResponse, error) {
	resp, err := f.MerchantClient.WriteCheck(ctx, in, opts...)
	if err == nil && f.dropAnswer.Load() {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	return resp, err
}

// agree buys at the price quoted: the tests' own merchant quotes its
// catalogue, and Buy needs a confirm callback or a most price.
func agree(*echeck.Quote) error { return nil }

// deafBank fails every status query, as an unreachable bank would.
type deafBank struct{ pb.BankClient }

func (deafBank) CheckStatus(context.Context, *pb.CheckStatusRequest, ...grpc.CallOption) (*pb.CheckResult, error) {
	return nil, status.Error(codes.Unavailable, "bank unreachable (simulated)")
}

// TestBuy runs the eight steps: the goods arrive decrypted and equal to the
// merchant's file, the customer is debited and the merchant credited once,
// and the customer block carries the new balance.
func TestBuy(t *testing.T) {
	ctx := context.Background()
	tl := newTill(t)
	w, acct := tl.customer(t, "EUR:10.00")
	max := ecash.MustParseAmount("EUR:2.00")
	p, err := w.Buy(ctx, tl.bankc, tl.shop, "song", &max, "for the road", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.State != wallet.PurchaseApproved || !bytes.Equal(p.Goods, tl.goods["song"]) {
		t.Fatalf("state %s, goods equal %v", p.State, bytes.Equal(p.Goods, tl.goods["song"]))
	}
	if p.Price != ecash.MustParseAmount("EUR:1.50") || p.MerchantAccount != tl.shopAcct || p.EPOID.Merchant != tl.shopAcct {
		t.Fatalf("purchase %+v", p)
	}
	if p.Block == nil || p.Block.NewBalance != ecash.MustParseAmount("EUR:8.50") || p.Block.Account != acct {
		t.Fatalf("customer block %+v", p.Block)
	}
	if got := tl.balance(t, acct); got != 850 {
		t.Fatalf("customer balance %d, want 850", got)
	}
	if got := tl.balance(t, tl.shopAcct); got != 150 {
		t.Fatalf("merchant balance %d, want 150", got)
	}
	// The wallet keeps it: offline, the goods decrypt again from the records.
	again, err := w.Purchase(p.EPOID)
	if err != nil || !bytes.Equal(again.Goods, tl.goods["song"]) || again.Receipt == nil || again.Memo != "for the road" {
		t.Fatalf("stored purchase: %v %+v", err, again)
	}
	// A status query answers with the same receipt and moves nothing.
	st, err := w.CheckStatus(ctx, tl.bankc, p.EPOID)
	if err != nil || !bytes.Equal(st.Receipt.Encode(), p.Receipt.Encode()) || !bytes.Equal(st.Goods, tl.goods["song"]) {
		t.Fatalf("status: %v", err)
	}
	if got := tl.balance(t, acct); got != 850 {
		t.Fatalf("customer balance %d after status query", got)
	}
	// The merchant sees the sale approved, and the bank agrees.
	ms, err := tl.merchant.SaleStatus(ctx, p.EPOID)
	if err != nil || ms.State != merchant.StateApproved || !ms.FromBank || !ms.Local {
		t.Fatalf("merchant status %v %+v", err, ms)
	}
	list, err := w.Purchases()
	if err != nil || len(list) != 1 || !list[0].EPOID.Equal(p.EPOID) {
		t.Fatalf("purchases %v %d", err, len(list))
	}
}

// tillCalls relays to the merchant and records which NetBill steps the
// wallet sent: the price request, the goods request, the payment order.
type tillCalls struct {
	pb.MerchantClient
	sent []string
}

func (c *tillCalls) Quote(ctx context.Context, in *pb.QuoteRequest, opts ...grpc.CallOption) (*pb.QuoteResponse, error) {
	c.sent = append(c.sent, "quote")
	return c.MerchantClient.Quote(ctx, in, opts...)
}

func (c *tillCalls) GetGoods(ctx context.Context, in *pb.GetGoodsRequest, opts ...grpc.CallOption) (*pb.GetGoodsResponse, error) {
	c.sent = append(c.sent, "goods")
	return c.MerchantClient.GetGoods(ctx, in, opts...)
}

func (c *tillCalls) SubmitEPO(ctx context.Context, in *pb.SubmitEPORequest, opts ...grpc.CallOption) (*pb.SubmitEPOResponse, error) {
	c.sent = append(c.sent, "epo")
	return c.MerchantClient.SubmitEPO(ctx, in, opts...)
}

// TestBuyConfirmsQuote: the merchant's quote, not its unsigned product
// list, names the price charged, so Buy shows the verified quote to a
// confirm callback before the goods request and the EPO. A refusal leaves
// nothing signed, stored, sent or debited; with neither a callback nor a
// most price Buy refuses before the price request (the old silent
// behaviour); a most price is still checked first, as an extra bound.
func TestBuyConfirmsQuote(t *testing.T) {
	ctx := context.Background()
	tl := newTill(t)
	w, acct := tl.customer(t, "EUR:10.00")

	shop := &tillCalls{MerchantClient: tl.shop}
	if _, err := w.Buy(ctx, tl.bankc, shop, "book", nil, "", nil); !errors.Is(err, wallet.ErrNoConfirm) || len(shop.sent) != 0 {
		t.Fatalf("neither confirm nor a most price: %v, sent %v", err, shop.sent)
	}

	var seen *echeck.Quote
	no := func(q *echeck.Quote) error { seen = q; return wallet.ErrDeclined }
	if _, err := w.Buy(ctx, tl.bankc, shop, "book", nil, "", no); !errors.Is(err, wallet.ErrDeclined) {
		t.Fatalf("refused: got %v, want ErrDeclined", err)
	}
	if seen == nil || seen.Verify() != nil || seen.ProductID != "book" || seen.Price != ecash.MustParseAmount("EUR:4.00") || seen.MerchantAccount != tl.shopAcct {
		t.Fatalf("confirm saw %+v", seen)
	}
	if strings.Join(shop.sent, ",") != "quote" {
		t.Fatalf("refused, yet the wallet sent %v", shop.sent)
	}
	if list, _ := w.Purchases(); len(list) != 0 || tl.balance(t, acct) != 1000 || tl.balance(t, tl.shopAcct) != 0 {
		t.Fatalf("refused, yet %d purchases stored, balances %d and %d", len(list), tl.balance(t, acct), tl.balance(t, tl.shopAcct))
	}

	max := ecash.MustParseAmount("EUR:3.99")
	asked := false
	yes := func(*echeck.Quote) error { asked = true; return nil }
	if _, err := w.Buy(ctx, tl.bankc, shop, "book", &max, "", yes); !errors.Is(err, wallet.ErrPriceTooHigh) || asked {
		t.Fatalf("above the most price: %v, confirm asked %v", err, asked)
	}

	shop.sent = nil
	p, err := w.Buy(ctx, tl.bankc, shop, "book", nil, "", yes)
	if err != nil || !asked || p.Price != ecash.MustParseAmount("EUR:4.00") || tl.balance(t, acct) != 600 {
		t.Fatalf("confirmed: %v, asked %v, purchase %+v", err, asked, p)
	}
	if strings.Join(shop.sent, ",") != "quote,goods,epo" {
		t.Fatalf("confirmed, the wallet sent %v", shop.sent)
	}
}

// TestBuyAbovePrice refuses before signing anything.
func TestBuyAbovePrice(t *testing.T) {
	tl := newTill(t)
	w, acct := tl.customer(t, "EUR:10.00")
	max := ecash.MustParseAmount("EUR:3.99")
	if _, err := w.Buy(context.Background(), tl.bankc, tl.shop, "book", &max, "", nil); !errors.Is(err, wallet.ErrPriceTooHigh) {
		t.Fatalf("got %v, want ErrPriceTooHigh", err)
	}
	if got := tl.balance(t, acct); got != 1000 {
		t.Fatalf("balance %d", got)
	}
	if list, _ := w.Purchases(); len(list) != 0 {
		t.Fatalf("%d purchases recorded", len(list))
	}
	if _, err := w.Buy(context.Background(), tl.bankc, tl.shop, "no-such-thing", nil, "", agree); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown product: %v", err)
	}
}

// TestBuyDeclined: the bank's signed decline reaches the customer with its
// reason, and no money moves.
func TestBuyDeclined(t *testing.T) {
	tl := newTill(t)
	w, acct := tl.customer(t, "EUR:1.00")
	p, err := w.Buy(context.Background(), tl.bankc, tl.shop, "song", nil, "", agree)
	var de *wallet.DeclinedError
	if !errors.As(err, &de) || de.Reason != echeck.ReasonInsufficientFunds {
		t.Fatalf("got %v, want a decline for insufficient funds", err)
	}
	if p == nil || p.State != wallet.PurchaseDeclined || p.Goods != nil || de.Receipt.Decision != echeck.Declined {
		t.Fatalf("purchase %+v", p)
	}
	if tl.balance(t, acct) != 100 || tl.balance(t, tl.shopAcct) != 0 {
		t.Fatal("money moved on a decline")
	}
}

// forgetfulBank has no record of any payment order.
type forgetfulBank struct{ pb.BankClient }

func (forgetfulBank) CheckStatus(context.Context, *pb.CheckStatusRequest, ...grpc.CallOption) (*pb.CheckResult, error) {
	return nil, status.Error(codes.NotFound, "bank: no payment order recorded under this EPOID")
}

// TestCheckStatusKeepsTheDecision: a purchase the wallet holds the bank's
// signed receipt for stays decided when the bank later says it knows
// nothing of it (a bank restored from an old backup, or lying): the wallet
// does not call the purchase pending again, which would make it look
// chargeable.
func TestCheckStatusKeepsTheDecision(t *testing.T) {
	ctx := context.Background()
	tl := newTill(t)
	w, _ := tl.customer(t, "EUR:2.00")
	bought, err := w.Buy(ctx, tl.bankc, tl.shop, "song", nil, "", agree)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Buy(ctx, tl.bankc, tl.shop, "song", nil, "", agree)
	var de *wallet.DeclinedError
	if !errors.As(err, &de) {
		t.Fatalf("second purchase: %v, want a decline", err)
	}
	for id, want := range map[echeck.EPOID]string{bought.EPOID: wallet.PurchaseApproved, de.Receipt.EPOID: wallet.PurchaseDeclined} {
		p, err := w.CheckStatus(ctx, forgetfulBank{tl.bankc}, id)
		if err != nil || p == nil || p.State != want {
			state := ""
			if p != nil {
				state = p.State
			}
			t.Errorf("%s after the bank forgot it: %q, %v; want %s", id, state, err, want)
		}
	}
}

// TestBuyMerchantKeepsKey: the merchant forwards the EPO but never sends the
// receipt with K. The wallet asks the bank itself and decrypts.
func TestBuyMerchantKeepsKey(t *testing.T) {
	ctx := context.Background()
	tl := newTill(t)
	w, acct := tl.customer(t, "EUR:10.00")
	tl.toShop.dropAnswer.Store(true)
	p, err := w.Buy(ctx, tl.bankc, tl.shop, "book", nil, "", agree)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Goods, tl.goods["book"]) || p.Block == nil || p.Block.NewBalance != ecash.MustParseAmount("EUR:6.00") {
		t.Fatalf("recovered purchase %+v", p)
	}

	// Now the bank is unreachable too: the order stays pending, and a later
	// status query recovers the key.
	p2, err := w.Buy(ctx, deafBank{tl.bankc}, tl.shop, "song", nil, "", agree)
	if !errors.Is(err, wallet.ErrPending) || p2 == nil || p2.State != wallet.PurchasePending {
		t.Fatalf("got %v, want ErrPending", err)
	}
	if got := tl.balance(t, acct); got != 1000-400-150 {
		t.Fatalf("balance %d: the bank charged the second order, as the merchant forwarded it", got)
	}
	got, err := w.CheckStatus(ctx, tl.bankc, p2.EPOID)
	if err != nil || !bytes.Equal(got.Goods, tl.goods["song"]) || got.State != wallet.PurchaseApproved {
		t.Fatalf("status query: %v", err)
	}
}

// TestBuyNeverSent: the EPO never reaches the bank. The wallet cannot know
// that until the order expires; then it is marked expired and nothing was
// charged.
func TestBuyNeverSent(t *testing.T) {
	ctx := context.Background()
	tl := newTill(t)
	w, acct := tl.customer(t, "EUR:10.00")
	tl.toShop.neverSend.Store(true)
	p, err := w.Buy(ctx, tl.bankc, tl.shop, "song", nil, "", agree)
	if !errors.Is(err, wallet.ErrPending) || p == nil {
		t.Fatalf("got %v, want ErrPending", err)
	}
	if _, err := w.CheckStatus(ctx, tl.bankc, p.EPOID); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("status before expiry: %v", err)
	}
	tl.clock.add(wallet.EPOLifetime + 2*ecash.MaxClockSkew + time.Second)
	got, err := w.CheckStatus(ctx, tl.bankc, p.EPOID)
	if err != nil || got.State != wallet.PurchaseExpired {
		t.Fatalf("status after expiry: %v %+v", err, got)
	}
	// Sending it now is refused by the merchant: it expired.
	tl.toShop.neverSend.Store(false)
	if _, err := tl.shop.SubmitEPO(ctx, &pb.SubmitEPORequest{SignedEpo: got.EPO.Encode()}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("late EPO: %v", err)
	}
	if tl.balance(t, acct) != 1000 || tl.balance(t, tl.shopAcct) != 0 {
		t.Fatal("money moved")
	}
}

// TestWriteCheck pays an amount to the merchant's account by a plain check.
func TestWriteCheck(t *testing.T) {
	ctx := context.Background()
	tl := newTill(t)
	w, acct := tl.customer(t, "EUR:10.00")
	p, err := w.WriteCheck(ctx, tl.bankc, tl.shop, ecash.MustParseAmount("EUR:5.00"), "rent")
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != echeck.KindCheck || p.State != wallet.PurchaseApproved || p.EPOID.Serial < 1<<63 {
		t.Fatalf("check %+v", p)
	}
	if p.Block == nil || p.Block.NewBalance != ecash.MustParseAmount("EUR:5.00") {
		t.Fatalf("customer block %+v", p.Block)
	}
	if tl.balance(t, acct) != 500 || tl.balance(t, tl.shopAcct) != 500 {
		t.Fatal("balances did not move")
	}
	// A lost answer: the wallet learns the outcome from the bank.
	tl.toShop.dropAnswer.Store(true)
	p2, err := w.WriteCheck(ctx, tl.bankc, tl.shop, ecash.MustParseAmount("EUR:1.00"), "")
	if err != nil || p2.State != wallet.PurchaseApproved {
		t.Fatalf("check with lost answer: %v", err)
	}
	// More than the balance: a signed decline.
	tl.toShop.dropAnswer.Store(false)
	_, err = w.WriteCheck(ctx, tl.bankc, tl.shop, ecash.MustParseAmount("EUR:50.00"), "")
	var de *wallet.DeclinedError
	if !errors.As(err, &de) {
		t.Fatalf("got %v, want a decline", err)
	}
	if tl.balance(t, acct) != 400 || tl.balance(t, tl.shopAcct) != 600 {
		t.Fatal("balances wrong")
	}
}

// TestStatement: the signed statement lists the credit, the purchase and the
// check with their running balances.
func TestStatement(t *testing.T) {
	ctx := context.Background()
	tl := newTill(t)
	from := tl.clock.now().Add(-time.Minute)
	w, acct := tl.customer(t, "EUR:10.00")
	p, err := w.Buy(ctx, tl.bankc, tl.shop, "song", nil, "", agree)
	if err != nil {
		t.Fatal(err)
	}
	c, err := w.WriteCheck(ctx, tl.bankc, tl.shop, ecash.MustParseAmount("EUR:2.00"), "gift")
	if err != nil {
		t.Fatal(err)
	}
	tl.clock.add(time.Second)
	st, err := w.Statement(ctx, tl.bankc, from, tl.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Account != acct || st.Opening != 0 || st.Closing() != 1000-150-200 || len(st.Lines) != 3 {
		t.Fatalf("statement %+v", st)
	}
	if !st.Lines[1].EPOID.Equal(p.EPOID) || st.Lines[1].Amount != -150 || st.Lines[1].Counterparty != tl.shopAcct {
		t.Fatalf("purchase line %+v", st.Lines[1])
	}
	if !st.Lines[2].EPOID.Equal(c.EPOID) || st.Lines[2].Amount != -200 {
		t.Fatalf("check line %+v", st.Lines[2])
	}
	if _, err := w.Statement(ctx, tl.bankc, tl.clock.now(), from); !errors.Is(err, ecash.ErrMalformed) {
		t.Fatalf("reversed period: %v", err)
	}
}

// TestStatementAdminMemos: the memo of an admin credit or payout reaches
// the customer in a signed statement, which the wallet decodes with
// echeck's rules; the bank refuses at once a memo or reference the
// statement could not carry (a control character, invalid UTF-8, too long),
// rather than record it and leave the account's statements undecodable.
func TestStatementAdminMemos(t *testing.T) {
	ctx := context.Background()
	tl := newTill(t)
	from := tl.clock.now().Add(-time.Minute)
	w, acct := tl.customer(t, "")
	eur := ecash.MustParseAmount("EUR:1.00")
	for _, bad := range []struct{ memo, ref string }{
		{"salary\x1b[2J", ""}, {"bonus\rEUR:900.00", ""}, {"\u202e00.01", ""}, {"\xff", ""},
		{strings.Repeat("m", echeck.MaxMemoLen+1), ""}, {"", "wire\n42"}, {"", strings.Repeat("r", 129)},
	} {
		if _, err := tl.bank.Credit(ctx, acct, eur, bad.memo, bad.ref); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("credit with memo %q, reference %q: %v, want refused", bad.memo, bad.ref, err)
		}
		if _, err := tl.bank.Payout(ctx, tl.shopAcct, eur, bad.memo, bad.ref); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("payout with memo %q, reference %q: %v, want refused", bad.memo, bad.ref, err)
		}
	}
	memo := "Gehalt März 👨\u200d👩\u200d👧"
	if _, err := tl.bank.Credit(ctx, acct, eur, memo, "wire 42"); err != nil {
		t.Fatal(err)
	}
	tl.clock.add(time.Second)
	st, err := w.Statement(ctx, tl.bankc, from, tl.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Lines) != 1 || st.Lines[0].Memo != memo || st.Closing() != 100 {
		t.Fatalf("statement %+v, want the one credit with its memo", st)
	}
}

// TestBuyCrashAfterSending: the wallet's machine dies the moment the EPO
// leaves; the merchant and the bank complete the sale. What the wallet had
// synced before sending (the signed EPO, the ciphertext, the reply key) is
// enough to recover the goods and the balance from the bank alone.
func TestBuyCrashAfterSending(t *testing.T) {
	ctx := context.Background()
	tl := newTill(t)
	fs := vfs.NewCrashableMem()
	w, err := wallet.Create("w", wallet.Options{FS: fs, Now: tl.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	acct, err := tl.bank.OpenAccount(ctx, "customer", w.AccountKey(), false)
	if err != nil {
		t.Fatal(err)
	}
	w.SetAccount(acct)
	tl.bank.Credit(ctx, acct, ecash.MustParseAmount("EUR:10.00"), "", "")
	var crashed *vfs.MemFS
	tl.toShop.beforeSend = func() { crashed = fs.CrashClone(vfs.CrashCloneCfg{}) }
	tl.toShop.dropAnswer.Store(true)
	p, err := w.Buy(ctx, deafBank{tl.bankc}, tl.shop, "song", nil, "", agree)
	if !errors.Is(err, wallet.ErrPending) || crashed == nil {
		t.Fatalf("buy: %v", err)
	}
	w.Close()

	w2, err := wallet.Open("w", wallet.Options{FS: crashed, Now: tl.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	list, err := w2.Purchases()
	if err != nil || len(list) != 1 || !list[0].EPOID.Equal(p.EPOID) || list[0].State != wallet.PurchasePending {
		t.Fatalf("after the crash: %v %d", err, len(list))
	}
	got, err := w2.CheckStatus(ctx, tl.bankc, p.EPOID)
	if err != nil || !bytes.Equal(got.Goods, tl.goods["song"]) || got.Block == nil || got.Block.NewBalance != ecash.MustParseAmount("EUR:8.50") {
		t.Fatalf("recovery: %v", err)
	}
	if tl.balance(t, acct) != 850 || tl.balance(t, tl.shopAcct) != 150 {
		t.Fatal("balances")
	}
}

// statusDown fails the bank's CheckStatus.
type statusDown struct{ pb.BankClient }

func (statusDown) CheckStatus(context.Context, *pb.CheckStatusRequest, ...grpc.CallOption) (*pb.CheckResult, error) {
	return nil, status.Error(codes.Unavailable, "the bank is restarting")
}

// The merchant's answer is lost and the bank cannot be asked either: the
// error said "asking the bank: <nil>", the bank's own error overwritten
// by the read of the stored purchase.
func TestWriteCheckUnconfirmedSaysWhy(t *testing.T) {
	ctx := context.Background()
	tl := newTill(t)
	w, _ := tl.customer(t, "EUR:10.00")
	tl.toShop.dropAnswer.Store(true)
	_, err := w.WriteCheck(ctx, statusDown{tl.bankc}, tl.shop, ecash.MustParseAmount("EUR:1.00"), "")
	if !errors.Is(err, wallet.ErrPending) || !strings.Contains(err.Error(), "the bank is restarting") {
		t.Fatalf("got %v, want ErrPending naming the bank's error", err)
	}
}
