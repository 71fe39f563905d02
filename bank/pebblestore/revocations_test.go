package pebblestore

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/storetest"
	"github.com/blindbank/blindbank/ecash"
)

// TestScanRevocations: a store whose log holds revoking key sets but no
// record of them (written before it kept one) records them when opened.
func TestScanRevocations(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs)
	ks0, ids := storetest.RevocationKeySet(t, epoch)
	ks1, _ := storetest.RevocationKeySet(t, epoch.Add(time.Second), 1)
	for _, ks := range [][]byte{ks0, ks1} {
		if err := s.PublishKeySet(bg, ks, epoch); err != nil {
			t.Fatal(err)
		}
	}
	// Back to a store from before revocations were recorded.
	for _, k := range [][]byte{keyRevocations, hashKey(prefixRevoked, ids[1])} {
		if err := s.db.Delete(k, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, fs)
	defer s.Close()
	revs, err := s.Revocations(bg)
	if want := []bank.Revocation{{Denom: ids[1], KeySet: 1}}; err != nil || !slices.Equal(revs, want) {
		t.Fatalf("revocations after the scan: %+v, %v; want %+v", revs, err, want)
	}
	if err := s.PublishKeySet(bg, ks0, epoch); !errors.Is(err, bank.ErrUnrevoked) {
		t.Fatalf("a key set un-revoking a scanned revocation: %v, want ErrUnrevoked", err)
	}
}

// BenchmarkDepositLogged measures parallel logged deposits of four coins
// of one denomination, on an in-memory file system: with no revocation
// (the check costs nothing) and with another denomination revoked (each
// deposit looks its denomination up).
func BenchmarkDepositLogged(b *testing.B) {
	for _, revoked := range []bool{false, true} {
		b.Run(fmt.Sprintf("revoked=%t", revoked), func(b *testing.B) {
			s := mustOpen(b, vfs.NewMem())
			defer s.Close()
			ks, ids := storetest.RevocationKeySet(b, epoch)
			if revoked {
				ks, _ = storetest.RevocationKeySet(b, epoch.Add(time.Second), 1)
			}
			if err := s.PublishKeySet(bg, ks, epoch); err != nil {
				b.Fatal(err)
			}
			m, err := s.OpenAccount(bg, "shop", storetest.Key("shop"), true, epoch)
			if err != nil {
				b.Fatal(err)
			}
			var seq atomic.Uint64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					op := bank.DepositOp{PaymentHash: hashOf("p %d", n), Merchant: m, Amount: 4, Receipt: make([]byte, 200), Time: epoch}
					lg := auditlog.Deposit{Merchant: m, Amount: ecash.Amount{Currency: "EUR", Value: 4}, PaymentHash: op.PaymentHash}
					for i := range 4 {
						c := bank.SpentCoin{ID: hashOf("c %d %d", n, i), Permission: make([]byte, 180)}
						op.Coins = append(op.Coins, c)
						lg.Coins = append(lg.Coins, auditlog.SpentCoin{ID: c.ID, Denom: ids[0], Value: ecash.Amount{Currency: "EUR", Value: 1}, PermissionHash: ecash.HashOf(c.Permission)})
					}
					op.Log = lg
					if _, err := s.Deposit(bg, op); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
