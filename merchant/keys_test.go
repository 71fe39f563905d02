package merchant

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
)

// otherBank is a bank with keys of its own (another master key), as the
// merchant's bank link would reach if an attacker or a misconfiguration
// sent it elsewhere.
func otherBank(t *testing.T) *directBank {
	t.Helper()
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{
		{Value: ecash.MustParseAmount("EUR:1.00"), Cipher: ecash.CipherCS},
	}}, time.Now().Add(-time.Minute), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &directBank{srv: bank.New(store, k, time.Now, nil).PublicServer()}
}

// The merchant pins the bank's master key at its first Open (merchant
// review R6) and refuses, at a later Open, a bank whose key set another
// master key signs; a configured master key must match the pinned one, or
// on a first Open the bank's.
func TestOpenPinsBankMaster(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	ks, _ := s.bank.KeySet()
	if !s.m.BankMaster().Equal(ks.MasterPub) {
		t.Fatal("the bank's master key is not the one pinned")
	}
	s.m.Close()
	open := func(dir string, fs vfs.FS, b *directBank, master ed25519.PublicKey) error {
		m, err := Open(ctx, Config{Dir: dir, Account: s.account, Bank: b, FS: fs, BankMaster: master})
		if err == nil {
			m.Close()
		}
		return err
	}
	other := otherBank(t)
	otherKS, _ := ecash.DecodeKeySet(mustKeys(t, other), nil)
	if err := open(s.dir, s.fs, other, nil); !errors.Is(err, ErrMasterKey) {
		t.Fatalf("another bank after the first start: %v, want ErrMasterKey", err)
	}
	if err := open(s.dir, s.fs, other, otherKS.MasterPub); !errors.Is(err, ErrMasterKey) {
		t.Fatalf("configured key other than the pinned one: %v, want ErrMasterKey", err)
	}
	if err := open(s.dir, s.fs, s.bankc, ks.MasterPub); err != nil {
		t.Fatalf("the pinned bank, configured: %v", err)
	}
	if err := open(s.dir, s.fs, s.bankc, nil); err != nil {
		t.Fatalf("the pinned bank: %v", err)
	}

	// A first start with a configured key pins that one only.
	dir := t.TempDir()
	if _, err := Init(dir); err != nil {
		t.Fatal(err)
	}
	fs := vfs.NewMem()
	if err := open(dir, fs, s.bankc, otherKS.MasterPub); !errors.Is(err, ErrMasterKey) {
		t.Fatalf("first start, the bank is not the configured one: %v, want ErrMasterKey", err)
	}
	if err := open(dir, fs, other, otherKS.MasterPub); err != nil {
		t.Fatalf("first start, the configured bank: %v", err)
	}
	if err := open(dir, fs, s.bankc, nil); !errors.Is(err, ErrMasterKey) {
		t.Fatalf("after pinning the configured key, another bank: %v, want ErrMasterKey", err)
	}
}

func mustKeys(t *testing.T, b *directBank) []byte {
	t.Helper()
	resp, err := b.GetKeys(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.SignedKeyset
}
