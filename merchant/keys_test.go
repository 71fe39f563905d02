package merchant

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
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

// rotateSigning is "bankd keys rotate-signing" on the shop's bank keys k
// and a restart of the bank on the same ledger, under the running till.
func (s *shop) rotateSigning(k *bank.Keys) {
	s.t.Helper()
	if _, err := k.RotateSigning(s.clock.now(), time.Minute, rand.Reader); err != nil {
		s.t.Fatal(err)
	}
	s.bank = bank.New(s.bank.Store(), k, s.clock.now, nil)
	if err := s.bank.PublishKeySet(context.Background()); err != nil {
		s.t.Fatal(err)
	}
	s.bankc.srv = s.bank.PublicServer()
	s.logc.AuditLogClient = serveLog(s.t, s.bank)
}

// The bank rotates its signing key and restarts under a running till
// (merchant review R2): the receipts of payment orders, and the audit
// log's checkpoints, that the new key signs are accepted once the till has
// fetched the bank's new key set, which it does when it first meets the
// new key; the old key's earlier checkpoint and receipts stay valid.
func TestTillFollowsSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*shop, *bank.Keys) {
		k := oneCSKey(t)
		s := newShopOn(t, k, nil)
		s.writeCheck("EUR:1.00")
		if _, err := s.m.VerifyLog(ctx); err != nil {
			t.Fatal(err)
		}
		s.rotateSigning(k)
		return s, k
	}
	t.Run("receipt", func(t *testing.T) {
		s, _ := setup(t)
		a := s.writeCheck("EUR:2.00") // fails the test if the receipt is refused
		st, err := s.m.SaleStatus(ctx, a.Receipt.EPOID)
		if err != nil || st.State != StateApproved {
			t.Fatalf("status after the rotation: %+v, %v", st, err)
		}
	})
	t.Run("checkpoint", func(t *testing.T) {
		s, _ := setup(t)
		if rep, err := s.m.VerifyLog(ctx); err != nil || rep.Verified != 0 {
			t.Fatalf("log after the rotation: %+v, %v", rep, err)
		}
		s.writeCheck("EUR:2.00")
		if rep, err := s.m.VerifyLog(ctx); err != nil || rep.Verified != 1 {
			t.Fatalf("log after the rotation: %+v, %v", rep, err)
		}
	})
}

// A signature by a key the bank does not list either (a forgery, or a
// peer relaying garbage) makes the merchant fetch the bank's key set once,
// however many calls meet it at once, and not again for a while.
func TestKeyRefreshBounded(t *testing.T) {
	s := newShop(t)
	before := s.bankc.getKeys.Load()
	unknown := func(*ecash.KeySet) error { return ecash.ErrUnknownSigner }
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := s.m.verifyBank(context.Background(), unknown); !errors.Is(err, ecash.ErrUnknownSigner) {
				t.Errorf("got %v", err)
			}
		})
	}
	wg.Wait()
	if got := s.bankc.getKeys.Load() - before; got != 1 {
		t.Fatalf("%d fetches of the key set, want 1", got)
	}
}

// The merchant follows the bank's key set by the rules a wallet does
// (ecash.KeySet.Follows): a set issued ahead of its clock, taken, would
// make every correctly dated set after it look older until then, a
// revocation included; a set changing a known key's windows is not an
// honest bank's. Both are refused and the set held kept.
func TestKeyRefreshRefusesWhatNoHonestBankServes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(k *bank.Keys, now time.Time)
		why    string
	}{
		{"issued a year ahead", func(k *bank.Keys, now time.Time) { k.IssuedAt = now.AddDate(1, 0, 0).Truncate(time.Second) }, "ahead of this clock"},
		{"a key's window moved", func(k *bank.Keys, now time.Time) {
			k.IssuedAt = now.Truncate(time.Second)
			k.Denoms[0].WithdrawEnd = k.Denoms[0].WithdrawEnd.Add(24 * time.Hour)
		}, "withdrawable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := oneCSKey(t)
			s := newShopOn(t, k, nil)
			held := s.m.keySet()
			bad := *k
			bad.Denoms = append([]bank.DenomKey(nil), k.Denoms...)
			tc.change(&bad, s.clock.now())
			s.bankc.srv = bank.New(s.bank.Store(), &bad, s.clock.now, nil).PublicServer()
			if got, err := s.m.refreshKeys(ctx, held); err == nil || !strings.Contains(err.Error(), tc.why) || got != held || s.m.keySet() != held {
				t.Fatalf("refresh: %v, want a refusal saying %q (kept the set held: %v)", err, tc.why, s.m.keySet() == held)
			}
		})
	}
}

// oneCSKey makes a bank's keys of one CS denomination, EUR:1.00, issued an
// hour ago.
func oneCSKey(t *testing.T) *bank.Keys {
	t.Helper()
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{
		{Value: ecash.MustParseAmount("EUR:1.00"), Cipher: ecash.CipherCS},
	}}, time.Now().Add(-time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
