package bank_test

import (
	"bytes"
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

// keyFile is an in-memory key file: what a KeyFileEditor saves.
type keyFile struct{ k *bank.Keys }

func (f *keyFile) edit(change func(*bank.Keys) error) error {
	next := *f.k
	next.Denoms = append([]bank.DenomKey(nil), f.k.Denoms...)
	if err := change(&next); err != nil {
		return err
	}
	f.k = &next
	return nil
}

// TestAdoptRevocationOfflineMaster: a replica whose master key is offline
// adopts a revocation another replica (master online) logged, signature
// included, and saves it; one whose key set differs otherwise cannot sign
// the revocation and says so, and the store refuses its stale key set.
func TestAdoptRevocationOfflineMaster(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	online, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{{Currency: "EUR", Value: 1}, {Currency: "EUR", Value: 2}}, Cipher: ecash.CipherCS}, now.Add(-time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	offline := *online
	seed, err := offline.TakeMasterOffline()
	if err != nil {
		t.Fatal(err)
	}
	s, err := pebblestore.Open("bank", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := bank.New(s, online, clock, nil), bank.New(s, &offline, clock, nil)
	fa, fb := &keyFile{online}, &keyFile{&offline}
	a.SetKeyFileEditor(fa.edit)
	b.SetKeyFileEditor(fb.edit)
	for _, x := range []*bank.Bank{a, b} {
		if err := x.PublishKeySet(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	now = now.Add(time.Minute)
	d := online.Denoms[0].ID
	if _, err := a.RevokeDenomination(t.Context(), d.String()); err != nil {
		t.Fatal(err)
	}
	_, revoked := a.KeySet()
	if err := b.SyncRevocations(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, got := b.KeySet(); !bytes.Equal(got, revoked) {
		t.Fatal("the offline-master replica does not serve the logged revoked key set")
	}
	if !bytes.Equal(fb.k.KeySet().Encode(), revoked) {
		t.Fatal("its key file does not hold the revoked key set with its signature")
	}

	// A key set from before the revocation that differs otherwise (the
	// other denomination pruned, signed offline) cannot be adopted, nor
	// revoked without the master: refused, and never logged.
	stale := offline
	stale.Denoms = stale.Denoms[:1:1]
	stale.IssuedAt = stale.IssuedAt.Add(time.Second)
	stale.MasterSig = ed25519.Sign(ed25519.NewKeyFromSeed(seed), stale.KeySetBody())
	c := bank.New(s, &stale, clock, nil)
	if err := c.SyncRevocations(t.Context()); !errors.Is(err, bank.ErrMasterOffline) {
		t.Errorf("adopting into a key set that differs otherwise, master offline: %v, want ErrMasterOffline", err)
	}
	if _, signed := c.KeySet(); bytes.Equal(signed, revoked) {
		t.Error("served a key set it could not adopt")
	}
	if err := c.PublishKeySet(t.Context()); !errors.Is(err, bank.ErrUnrevoked) {
		t.Errorf("logging a key set that un-revokes: %v, want ErrUnrevoked", err)
	}
}

// TestRevocationOnASlowerReplicaIssuedLater: two replicas over one store,
// B's clock 30 s behind A's (within the protocol's skew). A revokes d1;
// then B revokes d2, in a key set made from A's, which B adopted first.
// That set must be issued after A's: wallets keep the later-issued of two
// key sets, and one issued by B's clock would be ignored by every wallet
// holding A's, d2's revocation with it.
func TestRevocationOnASlowerReplicaIssuedLater(t *testing.T) {
	nowA := time.Unix(1_800_000_000, 0)
	nowB := nowA.Add(-30 * time.Second)
	ka, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{{Currency: "EUR", Value: 1}, {Currency: "EUR", Value: 2}}, Cipher: ecash.CipherCS}, nowA.Add(-time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kb := *ka
	kb.Denoms = append([]bank.DenomKey(nil), ka.Denoms...)
	s, err := pebblestore.Open("bank", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := bank.New(s, ka, func() time.Time { return nowA }, nil)
	b := bank.New(s, &kb, func() time.Time { return nowB }, nil)
	a.SetKeyFileEditor((&keyFile{ka}).edit)
	b.SetKeyFileEditor((&keyFile{&kb}).edit)
	for _, x := range []*bank.Bank{a, b} {
		if err := x.PublishKeySet(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.RevokeDenomination(t.Context(), ka.Denoms[0].ID.String()); err != nil {
		t.Fatal(err)
	}
	first, _ := a.KeySet()

	nowA, nowB = nowA.Add(10*time.Second), nowB.Add(10*time.Second)
	if _, err := b.RevokeDenomination(t.Context(), ka.Denoms[1].ID.String()); err != nil {
		t.Fatal(err)
	}
	if err := a.SyncRevocations(t.Context()); err != nil {
		t.Fatal(err)
	}
	second, _ := a.KeySet()
	if len(second.Revoked()) != 2 {
		t.Fatalf("replica A serves %d revocations, want 2", len(second.Revoked()))
	}
	if !second.IssuedAt.After(first.IssuedAt) {
		t.Errorf("the key set revoking both keys is issued %s, not after the one revoking the first (%s): wallets holding that one keep it", second.IssuedAt.UTC(), first.IssuedAt.UTC())
	}
}
