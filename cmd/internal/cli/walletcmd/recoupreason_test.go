package walletcmd

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// resignedRecoup relays a real bank, but its recoup receipts come signed
// by a key the wallet's key set does not list (as after a rotation the
// wallet has not fetched), and the wallet's clock moves on past
// verifyBank's refetch bound meanwhile. With keysDown, fetching the key
// set after such a receipt fails as an unreachable bank does.
type resignedRecoup struct {
	pb.BankClient
	skew     *atomic.Int64 // the wallet's clock offset, ns
	keysDown atomic.Bool
	down     bool // set keysDown once a receipt is relayed
	once     bool // move the clock on at the first receipt only
	moved    bool
}

func (b *resignedRecoup) Recoup(ctx context.Context, in *pb.RecoupRequest, opts ...grpc.CallOption) (*pb.RecoupResponse, error) {
	resp, err := b.BankClient.Recoup(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	if resp.Receipt, err = unlistedSigner(resp.Receipt); err != nil {
		return nil, err
	}
	if !b.once || !b.moved {
		b.skew.Add(int64(time.Minute))
		b.moved = true
	}
	b.keysDown.Store(b.down)
	return resp, nil
}

// unlistedSigner returns the receipt raw signed again by a made-up key.
func unlistedSigner(raw []byte) ([]byte, error) {
	rcpt, err := ecash.DecodeDepositReceipt(raw)
	if err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	rcpt.SignerPub, rcpt.Sig = pub, ecash.SignBody(priv, rcpt.Body())
	return rcpt.Encode(), nil
}

func (b *resignedRecoup) GetKeys(ctx context.Context, in *pb.GetKeysRequest, opts ...grpc.CallOption) (*pb.GetKeysResponse, error) {
	if b.keysDown.Load() {
		return nil, status.Error(codes.Unavailable, "connection refused (simulated)")
	}
	return b.BankClient.GetKeys(ctx, in, opts...)
}

// TestRecoupReasonKeySetUnreachable: a recoup receipt signed by a key the
// wallet's key set does not list is checked against the bank's key set
// fetched again. If that fetch reaches the bank and the key is still not
// listed, the answer did not verify (bad_answer); if the bank could not be
// reached, nothing is known against the bank and the check is to be made
// again: failed, the temporary reason, not bad_answer.
func TestRecoupReasonKeySetUnreachable(t *testing.T) {
	ctx := context.Background()
	w, bc, skew := revokedCoins(t, 1)
	bank := &resignedRecoup{BankClient: bc, skew: skew}
	for _, c := range []struct {
		keysDown bool
		want     string
	}{{false, reasonBadAnswer}, {true, reasonFailed}} {
		bank.down = c.keysDown
		rep, err := w.Recoup(ctx, bank)
		if err != nil || len(rep.Errors) != 1 {
			t.Fatalf("key set fetch down %v: %+v, %v; want the coin not recouped", c.keysDown, rep, err)
		}
		if got := recoupReason(rep.Errors[0]); got != c.want {
			t.Errorf("key set fetch down %v: reason %q for %v, want %q", c.keysDown, got, rep.Errors[0], c.want)
		}
		if c.keysDown {
			checkUnfetchedMessage(t, rep.Errors[0])
		}
		bank.keysDown.Store(false)
	}
}

// revokedCoins makes a wallet holding n coins of EUR:1.00, whose
// denomination the bank then revokes, opened with a clock that runs skew
// ahead, and a client of that bank.
func revokedCoins(t *testing.T, n int) (*wallet.Wallet, pb.BankClient, *atomic.Int64) {
	t.Helper()
	ctx := context.Background()
	b, _, _, _ := startShop(t, "", "EUR:1.00", "EUR:2.00")
	dir, _ := accountWallet(t, cli.Env{}, b, b.Addr, "EUR:5.00")
	for range n {
		if r := runWallet(t, cli.Env{}, "--wallet", dir, "withdraw", "EUR:1.00"); r.code != 0 {
			t.Fatalf("withdraw: %+v", r)
		}
	}
	ks, _ := b.Bank.KeySet()
	for _, d := range ks.Denominations {
		if d.Value == ecash.MustParseAmount("EUR:1.00") {
			if _, err := b.Bank.RevokeDenomination(ctx, d.ID.String()); err != nil {
				t.Fatal(err)
			}
		}
	}
	var skew atomic.Int64
	w, err := wallet.Open(dir, wallet.Options{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	conn, err := transport.Dial(b.Addr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return w, pb.NewBankClient(conn), &skew
}

// TestRecoupReasonKeySetUnreachableEveryCoin: with the bank's key set out
// of reach, every coin whose receipt names an unlisted signer is failed,
// not only the first: the coins after it, within verifyBank's refetch
// bound, take the failed fetch's word and must not read as bad_answer.
func TestRecoupReasonKeySetUnreachableEveryCoin(t *testing.T) {
	ctx := context.Background()
	w, bc, skew := revokedCoins(t, 2)
	bank := &resignedRecoup{BankClient: bc, skew: skew, down: true, once: true}
	rep, err := w.Recoup(ctx, bank)
	if err != nil || len(rep.Errors) != 2 {
		t.Fatalf("%+v, %v; want both coins not recouped", rep, err)
	}
	for i, e := range rep.Errors {
		if got := recoupReason(e); got != reasonFailed {
			t.Errorf("coin %d: reason %q for %v, want %q", i+1, got, e, reasonFailed)
		}
		checkUnfetchedMessage(t, e)
	}
}

// checkUnfetchedMessage: a receipt not checked, for the bank's key set out
// of reach, is not said to have a bad signature (the message, in
// not_recouped, said so under the reason "failed"): the message says
// what happened.
func checkUnfetchedMessage(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, "bad signature") || !strings.Contains(msg, "not checked") || !strings.Contains(msg, "could not be fetched") || !strings.Contains(msg, "connection refused (simulated)") {
		t.Errorf("message %q; want it to say the receipt was not checked, the bank's key set could not be fetched, and why", msg)
	}
	if !errors.Is(err, ecash.ErrUnknownSigner) {
		t.Errorf("%v: want it to match ecash.ErrUnknownSigner still", err)
	}
}
