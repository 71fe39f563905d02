package auditcmd

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// swapDuringWithdraw relays the bank; on the first Withdraw, before
// relaying it, it starts a swap (swap) and waits until that swap's
// request has reached the bank (swapSent closed).
type swapDuringWithdraw struct {
	pb.BankClient
	withdraws atomic.Int32
	swap      func()
	swapSent  chan struct{}
}

func (b *swapDuringWithdraw) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if b.withdraws.Add(1) == 1 {
		go b.swap()
		<-b.swapSent
	}
	return b.BankClient.Withdraw(ctx, in, opts...)
}

// slowSwapAnswer relays Swap and holds the first answer until release is
// closed (sent is closed once it holds it).
type slowSwapAnswer struct {
	pb.BankClient
	calls   atomic.Int32
	sent    chan struct{}
	release chan struct{}
}

func (b *slowSwapAnswer) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	resp, err := b.BankClient.Swap(ctx, in, opts...)
	if b.calls.Add(1) == 1 {
		close(b.sent)
		<-b.release
	}
	return resp, err
}

// TestPutBackCatchUpAudits: a wallet directory and its transcript are
// copied after a withdrawal of EUR:0.64; the original, then lost,
// withdraws EUR:0.64 twice more, at the planchet indices the copy will
// use next. The copy withdraws EUR:0.64 (R) and meanwhile swaps its
// EUR:0.64 (X) at the indices after R's: the bank refuses both (it signed
// those blinded messages for the lost wallet), X's refusal slow to come.
// R catches up while X is in flight: its scan takes in the lost wallet's
// coins, those at X's planchets among them. Then X's refusal comes, X
// catches up and swaps the same inputs again (X'), and the copy pays all
// it holds. 'audit transcript' passes the copy's transcript: a scan
// writes no coin line (TRANSCRIPTS.md §3, "coin"), so nothing tells the
// audit X went through. When the scan recorded the coins it found at a
// pending swap's planchets as that swap's outputs, X' failed the audit
// (its input "was already spent at line N (swap)"), and so did the
// payment.
func TestPutBackCatchUpAudits(t *testing.T) {
	ctx := context.Background()
	f := newFlowBank(t)
	ks, err := NewKeySets(f.keys.KeySet())
	if err != nil {
		t.Fatal(err)
	}
	var tr bytes.Buffer
	dir := t.TempDir()
	w := f.customer(t, dir, &tr, "EUR:10.00")
	withdraw(t, f, w, "EUR:0.64")
	w.Close()
	backup := t.TempDir()
	copyTree(t, dir, backup)
	copied := bytes.NewBuffer(bytes.Clone(tr.Bytes()))
	lost, err := wallet.Open(dir, wallet.Options{Transcript: &tr})
	if err != nil {
		t.Fatal(err)
	}
	withdraw(t, f, lost, "EUR:0.64")
	withdraw(t, f, lost, "EUR:0.64")
	lost.Close()

	r, err := wallet.Open(backup, wallet.Options{Transcript: copied})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	slow := &slowSwapAnswer{BankClient: f.bankc, sent: make(chan struct{}), release: make(chan struct{})}
	var swapErr error
	swapDone := make(chan struct{})
	b := &swapDuringWithdraw{BankClient: f.bankc, swapSent: slow.sent}
	b.swap = func() {
		defer close(swapDone)
		_, swapErr = r.Swap(ctx, slow, ecash.MustParseAmount("EUR:0.64"))
	}
	_, err = r.Withdraw(ctx, b, ecash.MustParseAmount("EUR:0.64"), nil)
	close(slow.release)
	<-swapDone
	if err != nil {
		t.Fatalf("withdrawal (caught up): %v", err)
	}
	if swapErr != nil {
		t.Fatalf("the swap, refused and sent again: %v", swapErr)
	}
	if n, err := r.PendingSwaps(); err != nil || n != 0 {
		t.Fatalf("%d swaps pending (%v)", n, err)
	}
	bal, err := r.Balance()
	if err != nil {
		t.Fatal(err)
	}
	// The lost wallet's EUR:1.28, R's 0.64, X''s 0.64.
	if bal.Fresh.Value != 128+64+64 || !bal.Pending.IsZero() {
		t.Fatalf("fresh %s, pending %s; want EUR:2.56 fresh", bal.Fresh, bal.Pending)
	}
	if _, err := f.pay(t, r, f.order(t, bal.Fresh.String(), "everything")); err != nil {
		t.Fatal(err)
	}
	have := steps(t, copied.Bytes())
	swaps := 0
	for _, s := range have {
		if s == "swap-request" {
			swaps++
		}
	}
	if swaps < 2 {
		t.Fatalf("%d swap requests in the transcript, want X's and X''s: %v", swaps, have)
	}
	// Not complete: the lost wallet's coins, paid, have no coin line here.
	mustPass(t, auditBytes(t, "put-back.jsonl", copied.Bytes(), ks, false))
}
