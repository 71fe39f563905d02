package wallet_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// laterClock is a wallet's clock that a test moves on past
// keyRefreshInterval from the wallet's last key-set fetch, well within
// KeySetMaxAge, so that only an unknown signer makes it fetch again.
type laterClock struct{ ahead atomic.Int64 }

func (c *laterClock) now() time.Time { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *laterClock) pastRefresh()   { c.ahead.Store(int64(10 * time.Second)) }

// countingKeys counts the bank's GetKeys calls.
type countingKeys struct {
	pb.BankClient
	n atomic.Int32
}

func (c *countingKeys) GetKeys(ctx context.Context, in *pb.GetKeysRequest, opts ...grpc.CallOption) (*pb.GetKeysResponse, error) {
	c.n.Add(1)
	return c.BankClient.GetKeys(ctx, in, opts...)
}

// rotatedWallet returns a fixture and a wallet of it holding withdraw in
// coins, the bank having rotated its signing key since the wallet fetched
// its key set, and the wallet's clock past keyRefreshInterval of that.
func rotatedWallet(t *testing.T, withdraw string) (*fixture, *wallet.Wallet, *laterClock) {
	t.Helper()
	k := rotatableKeys(t)
	f := newFixtureWith(t, k, time.Now)
	clk := new(laterClock)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:10.00", withdraw)
	f.rotateSigning(t, k)
	clk.pastRefresh()
	return f, w, clk
}

// The bank rotates its signing key and restarts while a wallet holds the
// key set it fetched within KeySetMaxAge. The receipt of its next payment
// is signed by the new key: the wallet called it a bad receipt and held
// the payment pending, its coins unspendable, until its key set aged out
// (an hour) and a Recover settled it. It now fetches the key set once the
// receipt names a key it does not know, and accepts the receipt; a second
// unknown signer within keyRefreshInterval of that fetch fetches nothing.
func TestWalletFollowsSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	f, w, _ := rotatedWallet(t, "EUR:5.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", 0)
	if err != nil {
		t.Fatal(err)
	}
	bankc := &countingKeys{BankClient: f.bankc}
	rcpt, err := w.Pay(ctx, bankc, f.shop, "shop", o.ID, nil)
	if err != nil {
		t.Fatalf("payment after the rotation: %v", err)
	}
	if ks, _ := f.bank.KeySet(); !rcpt.SignerPub.Equal(ks.SigningPub) {
		t.Fatalf("the receipt is not signed by the new key")
	}
	if n := bankc.n.Load(); n != 1 {
		t.Errorf("%d key set fetches for one receipt of a new signer, want 1", n)
	}
	if bal, err := w.Balance(); err != nil || bal.Pending.Value != 0 || bal.Fresh.Value != 400 {
		t.Errorf("balance after the payment: %+v, %v; want EUR:4.00 fresh, nothing pending", bal, err)
	}

	// A receipt naming a signer no key set lists, right after that fetch
	// (a merchant relaying made-up receipts): refused without asking the
	// bank again.
	o2, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pay(ctx, bankc, unknownSigner{f.shop}, "shop", o2.ID, nil); !errors.Is(err, ecash.ErrUnknownSigner) {
		t.Errorf("payment with a receipt of an unknown signer: %v, want ErrUnknownSigner", err)
	}
	if n := bankc.n.Load(); n != 1 {
		t.Errorf("%d key set fetches, want still 1 within keyRefreshInterval", n)
	}
}

// unknownSigner names a made-up signing key in the merchant's receipts.
type unknownSigner struct{ pb.MerchantClient }

func (m unknownSigner) Pay(ctx context.Context, in *pb.PayRequest, opts ...grpc.CallOption) (*pb.PayResponse, error) {
	resp, err := m.MerchantClient.Pay(ctx, in, opts...)
	if err != nil {
		return resp, err
	}
	resp.Receipt, err = unlistedSigner(resp.Receipt)
	return resp, err
}

// unlistedSigner returns the receipt raw signed again by a made-up key.
func unlistedSigner(raw []byte) ([]byte, error) {
	r, err := ecash.DecodeDepositReceipt(raw)
	if err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	r.SignerPub, r.Sig = pub, ecash.SignBody(priv, r.Body())
	return r.Encode(), nil
}

// The same for a check: its receipt, signed by the new key, was refused
// as the merchant's fault, and the check's decision left unknown to the
// wallet though the bank had moved the money.
func TestWalletCheckAfterSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	f, w, _ := rotatedWallet(t, "EUR:1.00")
	p, err := w.WriteCheck(ctx, f.bankc, f.shop, ecash.MustParseAmount("EUR:2.00"), "rent")
	if err != nil {
		t.Fatalf("check after the rotation: %v", err)
	}
	if p.State != wallet.PurchaseApproved {
		t.Errorf("check %s, want approved", p.State)
	}
}

// And for the wallet's statement, which the bank signs with its current
// key.
func TestWalletStatementAfterSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	f, w, _ := rotatedWallet(t, "EUR:1.00")
	if _, err := w.Statement(ctx, f.bankc, time.Now().Add(-time.Hour), time.Now()); err != nil {
		t.Fatalf("statement after the rotation: %v", err)
	}
}

// A double-spend proof the bank signs after rotating its signing key,
// within the hour the wallet keeps its key set: the wallet took it for a
// claim that does not hold. A swap so refused stayed pending, and every
// Pay, Return, CollectRefunds and Recoup after it failed recovering it
// until the key set aged out; a payment so refused kept its coins pending.
// The wallet now fetches the key set and verifies the proof once more.
func TestWalletDoubleSpendProofAfterSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	// A wallet and its copy, and the bank rotated since they fetched its
	// key set, past keyRefreshInterval.
	setup := func(t *testing.T) (f *fixture, a, b *wallet.Wallet) {
		k := rotatableKeys(t)
		f = newFixtureWith(t, k, time.Now)
		clk := new(laterClock)
		opts := wallet.Options{Now: clk.now}
		a, b = copiedWalletWith(t, f, opts, "EUR:0.03")
		f.rotateSigning(t, k)
		clk.pastRefresh()
		return f, a, b
	}
	t.Run("swap", func(t *testing.T) {
		f, a, b := setup(t)
		if _, err := b.Swap(ctx, f.bankc, ecash.MustParseAmount("EUR:0.02")); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Swap(ctx, f.bankc, ecash.MustParseAmount("EUR:0.03")); !errors.Is(err, ecash.ErrDoubleSpend) {
			t.Fatalf("swapping coins a copy swapped, after a rotation: %v, want a double spend", err)
		}
		if got := fresh(t, a); got != "EUR:0.01" {
			t.Errorf("original after the refusal: fresh %s, want EUR:0.01 (the coin the copy kept)", got)
		}
		o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.01"), "thing", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
			t.Errorf("paying with the coin left: %v", err)
		}
	})
	t.Run("payment", func(t *testing.T) {
		f, a, b := setup(t)
		o1, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.02"), "one", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Pay(ctx, f.bankc, f.shop, "shop", o1.ID, nil); err != nil {
			t.Fatal(err)
		}
		o2, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.03"), "two", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Pay(ctx, f.bankc, f.shop, "shop", o2.ID, nil); !errors.Is(err, ecash.ErrDoubleSpend) || errors.Is(err, wallet.ErrPending) {
			t.Fatalf("paying with a coin the copy spent, after a rotation: %v, want a double spend, not pending", err)
		}
		if bal, err := a.Balance(); err != nil || !bal.Pending.IsZero() {
			t.Errorf("original after the refusal: %+v, %v; want nothing pending", bal, err)
		}
	})
}

// And for the bank's audit-log checkpoint, which it signs with its current
// key: the wallet's VerifyLog failed with a bad checkpoint signature, as a
// forgery would, until its key set aged out.
func TestWalletVerifyLogAfterSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	k := rotatableKeys(t)
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	bankc, logc := hiddenKeySetBank(t, store, k)
	clk := new(laterClock)
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.VerifyLog(ctx, bankc, logc); err != nil {
		t.Fatal(err)
	}
	if _, err := k.RotateSigning(time.Now(), time.Minute, rand.Reader); err != nil {
		t.Fatal(err)
	}
	bankc, logc = hiddenKeySetBank(t, store, k) // restarted on the rotated keys
	clk.pastRefresh()
	if rep, err := w.VerifyLog(ctx, bankc, logc); err != nil {
		t.Fatalf("verify-log after the rotation: %+v, %v", rep, err)
	}
	ks, err := w.KeySet()
	if err != nil || !ks.SigningPub.Equal(k.Signing.Public().(ed25519.PublicKey)) {
		t.Errorf("the wallet's key set after verify-log: signing key %x, %v; want the rotated one", ks.SigningPub, err)
	}
}

// downKeys fails every GetKeys, counting them.
type downKeys struct {
	pb.BankClient
	n atomic.Int32
}

func (d *downKeys) GetKeys(context.Context, *pb.GetKeysRequest, ...grpc.CallOption) (*pb.GetKeysResponse, error) {
	d.n.Add(1)
	return nil, status.Error(codes.Unavailable, "the bank's key service is down")
}

// A fetch that fails stores nothing, so it did not bound the next: every
// receipt of an unknown signer fetched again. The attempt now counts as a
// fetch for keyRefreshInterval, and the failure is in the error.
func TestWalletKeyFetchFailureThrottled(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	clk := new(laterClock)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:10.00", "EUR:5.00")
	clk.pastRefresh()
	bankc := &downKeys{BankClient: f.bankc}
	for i := range 2 {
		o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.Pay(ctx, bankc, unknownSigner{f.shop}, "shop", o.ID, nil)
		if !errors.Is(err, ecash.ErrUnknownSigner) {
			t.Errorf("payment %d: %v, want ErrUnknownSigner", i, err)
		}
		if i == 0 && !strings.Contains(fmt.Sprint(err), "key service is down") {
			t.Errorf("payment %d: %v does not say the fetch failed", i, err)
		}
	}
	if n := bankc.n.Load(); n != 1 {
		t.Errorf("%d key set fetches for two receipts within keyRefreshInterval, want 1", n)
	}
}
