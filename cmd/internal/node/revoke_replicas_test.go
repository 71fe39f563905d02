package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// TestRevocationAcrossReplicas: three replicas over one PostgreSQL
// database; the operator revokes a denomination through the first.
//
//   - The second, which would not look for revocations for an hour, at
//     once refuses a deposit and a withdrawal of the denomination with the
//     revoking replica's error: the store refused them. The refusal wakes
//     it, and it serves the revoked key set.
//   - The third serves the revoked key set, the very bytes the first
//     logged, within its poll interval, keeps it in its key file, and pays
//     a wallet's coin back by recoup.
//   - The third, restarted with its key file from before the revocation,
//     adopts the logged key set instead of logging its own.
func TestRevocationAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dsn, err := pgtest.New(t).CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnvOn(t, dsn)
	bankA := e.dialBank()
	b := startReplica(t, e, dsn, time.Hour)
	c := startReplica(t, e, dsn, 50*time.Millisecond)
	shop := e.startMerchant("shop")

	const value = "EUR:1.28"
	var d ecash.Denomination
	for _, x := range e.ks.Denominations {
		if x.Value.String() == value {
			d = x
		}
	}
	coin, coinKey := e.rawCoin(t, bankA, value)
	w := e.newWallet(filepath.Join(t.TempDir(), "w"), "EUR:5.00")
	// One coin of each value up to 1.28 (the wallet's split).
	if _, err := w.Withdraw(ctx, bankA, mustAmount(t, "EUR:2.55"), nil); err != nil {
		t.Fatal(err)
	}
	// A withdrawal of the denomination, signed before the revocation.
	withdraw, _, _ := e.rawWithdrawal(t, bankA, d)
	wreq, err := ecash.DecodeWithdrawRequest(withdraw.Body)
	if err != nil {
		t.Fatal(err)
	}
	spender := wreq.Account
	logSize := func() int64 {
		n, err := e.bank.Bank.Store().LogSize(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	r, err := e.admin.RevokeDenomination(ctx, &pb.RevokeDenominationRequest{Denomination: d.ID.String()})
	if err != nil {
		t.Fatal(err)
	}
	revoked := r.SignedKeyset
	keySets := countKeySets(t, e.bank.Bank.Store())

	// The second replica still serves the key set it started with: what
	// refuses the coins below is the store.
	if _, signed := b.node.Bank.KeySet(); bytes.Equal(signed, revoked) {
		t.Fatal("the second replica adopted the revocation before the test asked anything of it")
	}
	before, logged := e.raw(spender), logSize()
	o, err := shop.node.Merchant.Order(shop.order(t, value))
	if err != nil {
		t.Fatal(err)
	}
	sealed := e.seal(t, o.Request, []ecash.Coin{coin}, []ed25519.PrivateKey{coinKey})
	_, err = b.bank.Deposit(ctx, &pb.DepositRequest{PaymentRequest: o.Request, MerchantSig: o.Sig, SealedPayment: sealed})
	wantRevoked(t, "a deposit through the second replica", err)
	_, err = b.bank.Withdraw(ctx, withdraw)
	wantRevoked(t, "a withdrawal through the second replica", err)
	if e.raw(spender) != before || e.raw(shop.account) != 0 || logSize() != logged {
		t.Fatalf("the refusals moved money or logged entries: spender %d → %d, merchant %d, log %d → %d", before, e.raw(spender), e.raw(shop.account), logged, logSize())
	}
	if spent, err := e.bank.Bank.Store().Spent(ctx, []ecash.Hash{coin.ID()}); err != nil || spent[0] {
		t.Fatalf("the refused coin is spent: %v %v", spent, err)
	}
	waitServes(t, "the second replica, woken by the refusal", b.node.Bank, revoked)

	// The third found it by polling, and kept it in its key file.
	waitServes(t, "the third replica", c.node.Bank, revoked)
	k, err := bank.LoadKeys(filepath.Join(c.dir, bank.KeysFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.KeySet().Encode(), revoked) {
		t.Error("the third replica's key file does not hold the revoked key set")
	}
	rep, err := w.Recoup(ctx, c.bank)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Credited.String() != value || len(rep.Errors) != 0 {
		t.Errorf("recoup through the third replica: %+v", rep)
	}
	if n := countKeySets(t, e.bank.Bank.Store()); n != keySets {
		t.Errorf("adopting the revocation logged %d more key sets", n-keySets)
	}

	// Restarted with the key file from before the revocation, the third
	// adopts the logged key set (logging nothing) and refuses the coin.
	if err := c.node.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	c = restartReplica(t, e, dsn, c.dir, time.Hour)
	if _, signed := c.node.Bank.KeySet(); !bytes.Equal(signed, revoked) {
		t.Error("the third replica, restarted with a stale key file, does not serve the revoked key set")
	}
	if n := countKeySets(t, e.bank.Bank.Store()); n != keySets {
		t.Errorf("the restart with a stale key file logged %d more key sets", n-keySets)
	}
	if _, err := c.bank.Deposit(ctx, &pb.DepositRequest{PaymentRequest: o.Request, MerchantSig: o.Sig, SealedPayment: sealed}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("a deposit through the restarted replica: %v", err)
	}
}

// replicaNode is a bank node started beside the env's, over its database.
type replicaNode struct {
	dir  string
	node *Bank
	bank pb.BankClient
}

func startReplica(t *testing.T, e *env, dsn string, poll time.Duration) *replicaNode {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	return restartReplica(t, e, dsn, dir, poll)
}

func restartReplica(t *testing.T, e *env, dsn, dir string, poll time.Duration) *replicaNode {
	t.Helper()
	n, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Now: e.clock.Now, Store: dsn, RevocationPoll: poll})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	conn, err := transport.Dial(n.Addr, transport.ClientConfig{Pin: n.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &replicaNode{dir: dir, node: n, bank: pb.NewBankClient(conn)}
}

// wantRevoked checks that err is the refusal of a revoked denomination's
// coins, as the revoking replica answers it.
func wantRevoked(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "revoked") {
		t.Errorf("%s: %v, want FailedPrecondition: denomination revoked", what, err)
	}
}

// waitServes waits up to five seconds for b to serve the key set signed.
func waitServes(t *testing.T, who string, b *bank.Bank, signed []byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, got := b.KeySet(); bytes.Equal(got, signed) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not serve the revoked key set within 5s", who)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countKeySets counts the key-set entries of the audit log.
func countKeySets(t *testing.T, s bank.Store) int {
	t.Helper()
	ctx := context.Background()
	size, err := s.LogSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for from := int64(0); from < size; {
		es, err := s.LogEntries(ctx, from, bank.MaxLogRead, bank.MaxLogReadBytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range es {
			en, err := auditlog.DecodeEntry(raw)
			if err != nil {
				t.Fatal(err)
			}
			if en.Kind() == auditlog.KindKeySet {
				n++
			}
		}
		from += int64(len(es))
	}
	return n
}
