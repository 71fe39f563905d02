package walletcmd

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// TestRecoverAccountLockedSaysSo: an interrupted withdrawal, sent again by
// 'wallet recover' after forged requests from this computer's address
// locked the account for it, stays unfinished. recover says the account is
// locked for this address and when that lifts; it is not "the bank did not
// answer", which would have the user retry at once to no avail.
func TestRecoverAccountLockedSaysSo(t *testing.T) {
	ctx := context.Background()
	b, err := node.StartBank(node.BankConfig{
		Dir: t.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Plaintext: true,
		Keys: bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{ecash.MustParseAmount("EUR:0.50"), ecash.MustParseAmount("EUR:1.00")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	env := cli.Env{}
	dir, acct := accountWallet(t, env, b, b.Addr, "EUR:2.00")
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
	_, err = w.Withdraw(ctx, unsentWithdraw{bankc}, ecash.MustParseAmount("EUR:1.00"), nil)
	w.Close()
	if !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want pending", err)
	}
	// Forged requests naming the account, from this address.
	ks, _ := b.Bank.KeySet()
	forged := &ecash.WithdrawRequest{Account: acct, CreatedAt: time.Now(), Planchets: []ecash.Planchet{{Denom: ks.Denominations[0].ID, Blinded: []byte{1}}}}
	for range bank.MaxAuthFailures {
		if _, err := bankc.Withdraw(ctx, &pb.WithdrawRequest{Body: forged.Body(), AccountSig: make([]byte, 64)}); err == nil {
			t.Fatal("a forged withdraw request was taken")
		}
	}
	r := runWallet(t, env, "--wallet", dir, "recover")
	t.Log(r.stdout, r.stderr)
	// The summary of what recover did comes first: it is not held back
	// for the lock's error.
	if r.code == 0 || !strings.Contains(r.stderr, "locked the account for this computer's address") || strings.Contains(r.stderr, "did not answer") ||
		!strings.Contains(r.stdout, "finished 0 of 1 interrupted withdrawal") {
		t.Fatalf("recover with the account locked for this address: %+v", r)
	}
	if err := b.Bank.Unlock(ctx, acct); err != nil {
		t.Fatal(err)
	}
	if r := runWallet(t, env, "--wallet", dir, "recover"); r.code != 0 || !strings.Contains(r.stdout, "finished 1 of 1 interrupted withdrawal") {
		t.Fatalf("recover once unlocked: %+v", r)
	}
}
