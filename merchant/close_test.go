package merchant

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// heldBank holds the merchant's deposits until release is closed, having
// said so on entered.
type heldBank struct {
	*directBank
	entered, release chan struct{}
}

func (h *heldBank) Deposit(ctx context.Context, in *pb.DepositRequest, o ...grpc.CallOption) (*pb.DepositResponse, error) {
	close(h.entered)
	<-h.release
	return h.directBank.Deposit(ctx, in, o...)
}

// Close during a Pay (merchantd stops serving after ten seconds, a Pay's
// deposit keeps going up to payTimeout) waits for the deposit to end
// before it closes the store; later calls are refused. The Pay used to
// write to the closed store and panic.
func TestCloseWaitsForPay(t *testing.T) {
	s := newShop(t)
	o, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	held := &heldBank{directBank: s.bankc, entered: make(chan struct{}), release: make(chan struct{})}
	s.m.bank = held
	paid := make(chan string, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				paid <- fmt.Sprint("panic: ", p)
			}
		}()
		_, err := s.m.Pay(context.Background(), o.ID, []byte("junk"))
		paid <- fmt.Sprint(err)
	}()
	<-held.entered
	closed := make(chan error, 1)
	go func() { closed <- s.m.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a Pay's deposit was at the bank", err)
	case <-time.After(50 * time.Millisecond): // Close is waiting, or has not begun: both fine here
	}
	close(held.release)
	if got := <-paid; len(got) > 6 && got[:6] == "panic:" {
		t.Fatalf("Pay: %s", got)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Pay(context.Background(), o.ID, []byte("junk")); !errors.Is(err, ErrClosed) {
		t.Errorf("Pay after Close: %v, want ErrClosed", err)
	}
}

// heldCheckBank holds the till's endorsements until release is closed,
// having said so on entered.
type heldCheckBank struct {
	*directBank
	entered, release chan struct{}
}

func (h *heldCheckBank) SubmitCheck(ctx context.Context, in *pb.SubmitCheckRequest, o ...grpc.CallOption) (*pb.CheckResult, error) {
	close(h.entered)
	<-h.release
	return h.directBank.SubmitCheck(ctx, in, o...)
}

// Close during a SubmitEPO at the bank (merchantd stops its public server
// after ten seconds without waiting for its handlers) waits for it before
// it closes the store. SubmitEPO used to store the receipt in the closed
// store and panic.
func TestCloseWaitsForSubmitEPO(t *testing.T) {
	s := newShop(t)
	_, q, d := s.offer("song")
	raw := s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(time.Hour)))
	held := &heldCheckBank{directBank: s.bankc, entered: make(chan struct{}), release: make(chan struct{})}
	s.m.bank = held
	done := make(chan string, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Sprint("panic: ", p)
			}
		}()
		_, err := s.m.SubmitEPO(context.Background(), raw)
		done <- fmt.Sprint(err)
	}()
	<-held.entered
	closed := make(chan error, 1)
	go func() { closed <- s.m.Close() }()
	select {
	case err := <-closed:
		close(held.release)
		t.Fatalf("Close returned (%v) while a SubmitEPO was at the bank; SubmitEPO then: %s", err, <-done)
	case <-time.After(100 * time.Millisecond):
	}
	close(held.release)
	if got := <-done; got != "<nil>" {
		t.Fatalf("SubmitEPO: %s", got)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// Every call that uses the store is refused with ErrClosed after Close,
// rather than reaching the closed store (a panic).
func TestCallsAfterCloseRefused(t *testing.T) {
	s := newShop(t)
	req := &echeck.PriceRequest{Customer: s.customerPub(), ProductID: "song", Bid: ecash.Amount{Currency: "EUR"}}
	rawQ, err := s.m.Quote(req.Encode())
	if err != nil {
		t.Fatal(err)
	}
	_, q, d := s.offer("song")
	epo := s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(time.Hour)))
	id, _ := echeck.NewCheckEPOID(rand.Reader, s.account, s.clock.now())
	check := s.sign(echeck.EPO{
		Kind: echeck.KindCheck, Customer: s.customerPub(), ProductID: "x", Price: ecash.MustParseAmount("EUR:0.01"),
		MerchantAccount: s.account, MerchantPub: s.m.PublicKey(), EPOID: id, ExpiresAt: s.clock.now().Add(time.Hour),
	})
	o, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.m.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	eur := ecash.MustParseAmount("EUR:1.00")
	for name, call := range map[string]func() error{
		"CreateOrder":      func() error { _, err := s.m.CreateOrder(eur, "thing", time.Minute); return err },
		"Order":            func() error { _, err := s.m.Order(o.ID); return err },
		"CheckOrder":       func() error { _, err := s.m.CheckOrder(ctx, o.ID); return err },
		"Pay":              func() error { _, err := s.m.Pay(ctx, o.ID, []byte("junk")); return err },
		"Refund":           func() error { _, err := s.m.Refund(ctx, o.ID, 0, eur); return err },
		"Reconcile":        func() error { _, err := s.m.Reconcile(ctx); return err },
		"GetGoods":         func() error { _, err := s.m.GetGoods(ctx, rawQ); return err },
		"SubmitEPO":        func() error { _, err := s.m.SubmitEPO(ctx, epo); return err },
		"WriteCheck":       func() error { _, err := s.m.WriteCheck(ctx, check); return err },
		"SaleStatus":       func() error { _, err := s.m.SaleStatus(ctx, d.EPOID); return err },
		"VerifySettlement": func() error { _, err := s.m.VerifySettlement(ctx, nil); return err },
		"VerifyLog":        func() error { _, err := s.m.VerifyLog(ctx); return err },
	} {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, ErrClosed) {
				t.Errorf("after Close: %v, want ErrClosed", err)
			}
		})
	}
}
