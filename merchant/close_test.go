package merchant

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/ecash"
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
