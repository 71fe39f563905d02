package node

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// TestReplicasOverPostgres: two bankd nodes over one PostgreSQL database,
// sharing the key material. What one replica commits the other sees, and a
// coin deposited through both at once is accepted exactly once.
func TestReplicasOverPostgres(t *testing.T) {
	ctx := context.Background()
	dsn, err := pgtest.New(t).CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnvOn(t, dsn)
	shop := e.startMerchant("shop")
	bank1 := e.dialBank()

	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	r2, err := StartBank(BankConfig{Dir: dir2, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Now: e.clock.Now, Store: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	conn2, err := transport.Dial(r2.Addr, transport.ClientConfig{Pin: r2.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	bank2 := pb.NewBankClient(conn2)

	coin, key := e.rawCoin(t, bank1, "EUR:0.01") // withdrawn through replica 1
	const n = 40
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range n {
		id := shop.order(t, "EUR:0.01")
		o, err := shop.node.Merchant.Order(id)
		if err != nil {
			t.Fatal(err)
		}
		sealed := e.seal(t, o.Request, []ecash.Coin{coin}, []ed25519.PrivateKey{key})
		via := bank1
		if i%2 == 1 {
			via = bank2
		}
		wg.Go(func() {
			_, err := via.Deposit(ctx, &pb.DepositRequest{PaymentRequest: o.Request, MerchantSig: o.Sig, SealedPayment: sealed})
			mu.Lock()
			defer mu.Unlock()
			switch status.Code(err) {
			case codes.OK:
				wins++
			case codes.FailedPrecondition:
			default:
				t.Errorf("deposit %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d deposits of one coin succeeded across two replicas", wins)
	}
	// Replica 2 sees what replica 1 committed.
	a, err := r2.Bank.Store().Account(ctx, shop.account)
	if err != nil || a.Balance != 1 {
		t.Fatalf("merchant balance through replica 2: %d %v", a.Balance, err)
	}
}
