package wallet_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// unlistedRecoupSigner relays a bank whose recoup receipts come signed by
// a key no key set lists, and calls relayed as it relays one.
type unlistedRecoupSigner struct {
	pb.BankClient
	relayed func()
}

func (b *unlistedRecoupSigner) Recoup(ctx context.Context, in *pb.RecoupRequest, opts ...grpc.CallOption) (*pb.RecoupResponse, error) {
	resp, err := b.BankClient.Recoup(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	if resp.Receipt, err = unlistedSigner(resp.Receipt); err != nil {
		return nil, err
	}
	b.relayed()
	return resp, nil
}

// TestRecoupKeySetNotTakenIn: a recoup receipt names a signer the key set
// held lacks; the wallet fetches the bank's key set to look for it, and
// the bank answers, but the wallet fails taking it in, for a fault of its
// own store. The receipt is then not checked, as when the bank is out of
// reach (*KeySetUnfetchedError, Local: wallet recoup says "failed"): it
// was an unknown signer "fetching the bank's key set again" failed, which
// wallet recoup reported as the bank's bad answer.
func TestRecoupKeySetNotTakenIn(t *testing.T) {
	ctx := context.Background()
	k := keys(t)
	f := newFixture(t)
	clk := new(laterClock)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:10.00", "EUR:0.01")
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	revokeValue(t, f, k, ks, 1, time.Now())
	bank := &unlistedRecoupSigner{BankClient: f.bankc, relayed: func() {
		clk.pastRefresh() // past the bound on fetching the key set again
		if err := wallet.CorruptMasterPin(w); err != nil {
			t.Error(err)
		}
	}}
	rep, err := w.Recoup(ctx, bank)
	if err != nil || len(rep.Errors) != 1 {
		t.Fatalf("%+v, %v; want the coin not recouped", rep, err)
	}
	var unfetched *wallet.KeySetUnfetchedError
	if !errors.As(rep.Errors[0], &unfetched) || !unfetched.Local {
		t.Fatalf("%v; want a *wallet.KeySetUnfetchedError, Local: the wallet's fault, not the bank's answer", rep.Errors[0])
	}
	if msg := rep.Errors[0].Error(); !strings.Contains(msg, "not checked") || !strings.Contains(msg, "could not be taken in") || !strings.Contains(msg, "corrupt master key pin") {
		t.Errorf("message %q; want it to say the receipt was not checked, the key set could not be taken in, and why", msg)
	}
}
