package node

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/bank/pgstore"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// clock is a settable test clock.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) Advance(d time.Duration) { c.t.Add(int64(d)) }

var (
	keysOnce sync.Once
	keysFile []byte
	keysErr  error
)

// testKeys returns a key file generated once per test binary: RSA keygen is
// the slow part of starting a bank.
func testKeys(t *testing.T) []byte {
	keysOnce.Do(func() {
		// Both ciphers side by side, as an operator may configure them:
		// CS below one euro, RSA from 1.28 up.
		var specs []bank.DenomSpec
		for v := uint64(1); v <= 1024; v *= 2 {
			c := ecash.CipherRSA
			if v < 100 {
				c = ecash.CipherCS
			}
			specs = append(specs, bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: c})
		}
		k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs}, time.Now().Add(-time.Minute), rand.Reader)
		if err != nil {
			keysErr = err
			return
		}
		dir, err := os.MkdirTemp("", "blindbank-keys")
		if err != nil {
			keysErr = err
			return
		}
		defer os.RemoveAll(dir)
		if keysErr = k.Save(filepath.Join(dir, bank.KeysFile)); keysErr == nil {
			keysFile, keysErr = os.ReadFile(filepath.Join(dir, bank.KeysFile))
		}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return keysFile
}

type env struct {
	t     *testing.T
	clock *clock
	dir   string
	store string       // "" for Pebble, else a PostgreSQL DSN
	log   *slog.Logger // the bank's log; nil discards it
	bank  *Bank
	admin pb.BankAdminClient
	ks    *ecash.KeySet
}

// startEnv starts a bank node over TLS on loopback with the shared test keys.
func startEnv(t *testing.T) *env { return startEnvOn(t, "") }

// startEnvOn starts a bank on the given store ("" for Pebble).
func startEnvOn(t *testing.T, store string) *env { return startEnvKeys(t, store, testKeys(t)) }

// startEnvKeys starts a bank with the given key file.
func startEnvKeys(t *testing.T, store string, keys []byte) *env {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), keys, 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, clock: newClock(), dir: dir, store: store}
	// Registered first, so it runs last, once the bank is closed: every
	// integration test's history must pass the audit.
	t.Cleanup(e.audit)
	e.startBank()
	return e
}

// audit replays the bank's whole audit log through the Auditor: money
// conserved, each coin spent once, redeemed ≤ issued, one outcome per
// EPOID, key sets signed by the bank's master key.
func (e *env) audit() {
	t := e.t
	if t.Failed() || e.ks == nil {
		return
	}
	var s bank.Store
	var err error
	if e.store == "" {
		s, err = pebblestore.Open(filepath.Join(e.dir, "ledger"), pebblestore.Options{})
	} else {
		s, err = pgstore.Open(context.Background(), e.store, pgstore.Options{})
	}
	if err != nil {
		t.Errorf("audit: opening the ledger: %v", err)
		return
	}
	defer s.Close()
	a := auditlog.NewAuditor(e.ks.MasterPub)
	ctx := context.Background()
	size, err := s.LogSize(ctx)
	for from := int64(0); err == nil && from < size; {
		var es [][]byte
		if es, err = s.LogEntries(ctx, from, bank.MaxLogRead, bank.MaxLogReadBytes); err == nil {
			for _, b := range es {
				if _, err = a.Apply(b); err != nil {
					break
				}
			}
			from += int64(len(es))
		}
	}
	if err != nil {
		t.Errorf("audit of the test's history: %v", err)
		return
	}
	t.Logf("audit: the test's history of %d log entries passes", size)
}

func (e *env) startBank() {
	e.t.Helper()
	b, err := StartBank(BankConfig{Dir: e.dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Now: e.clock.Now, Store: e.store, Log: e.log})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { b.Close() })
	conn, err := transport.DialAdmin(b.AdminAddr, b.Token)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	e.bank, e.admin = b, pb.NewBankAdminClient(conn)
	e.ks, _ = b.Bank.KeySet()
}

// restartBank stops the bank node (gracefully) and starts it again on the
// same directory: what was acknowledged must still be there.
func (e *env) restartBank(t *testing.T) {
	t.Helper()
	if err := e.bank.Close(); err != nil {
		t.Fatal(err)
	}
	e.startBank()
}

// bankHPKE is the bank's HPKE private key (tests that act as the bank's
// auditor use it to open what only the bank can).
func (e *env) bankHPKE() *ecdh.PrivateKey { return e.bank.Bank.Keys().HPKE }

func (e *env) dialBank() pb.BankClient {
	e.t.Helper()
	conn, err := transport.Dial(e.bank.Addr, transport.ClientConfig{Pin: e.bank.Fingerprint})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return pb.NewBankClient(conn)
}

func (e *env) openAccount(name string, key []byte, isMerchant bool) uint64 {
	e.t.Helper()
	resp, err := e.admin.OpenAccount(context.Background(), &pb.OpenAccountRequest{Name: name, PublicKey: key, Merchant: isMerchant})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Account
}

func (e *env) credit(acct uint64, amount string) {
	e.t.Helper()
	if _, err := e.admin.Credit(context.Background(), &pb.CreditRequest{Account: acct, Amount: amount}); err != nil {
		e.t.Fatal(err)
	}
}

// balance returns an account balance as the admin service reports it.
func (e *env) balance(acct uint64) string {
	e.t.Helper()
	resp, err := e.admin.GetAccount(context.Background(), &pb.GetAccountRequest{Account: acct})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Balance
}

// raw returns a ledger balance straight from the store (system accounts too).
func (e *env) raw(acct uint64) int64 {
	e.t.Helper()
	a, err := e.bank.Bank.Store().Account(context.Background(), acct)
	if err != nil {
		e.t.Fatal(err)
	}
	return a.Balance
}

type shop struct {
	dir     string
	node    *Merchant
	account uint64
	admin   pb.MerchantAdminClient
	client  pb.MerchantClient
}

// startMerchant initialises a merchant, opens its bank account and serves it.
func (e *env) startMerchant(name string) *shop { return e.startMerchantTranscript(name, nil) }

// startMerchantTranscript is startMerchant with a transcript.
func (e *env) startMerchantTranscript(name string, transcript io.Writer) *shop {
	e.t.Helper()
	dir := e.t.TempDir()
	pub, err := merchant.Init(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	acct := e.openAccount(name, pub, true)
	m, err := StartMerchant(context.Background(), MerchantConfig{
		Dir: dir, BankAddr: e.bank.Addr, BankTLS: transport.ClientConfig{CAFile: e.bank.CertFile},
		Account: acct, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Now: e.clock.Now, Transcript: transcript,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { m.Close() })
	adminConn, err := transport.DialAdmin(m.AdminAddr, m.Token)
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := transport.Dial(m.Addr, transport.ClientConfig{CAFile: m.CertFile})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { adminConn.Close(); conn.Close() })
	return &shop{dir: dir, node: m, account: acct, admin: pb.NewMerchantAdminClient(adminConn), client: pb.NewMerchantClient(conn)}
}

func (s *shop) order(t *testing.T, amount string) string {
	t.Helper()
	resp, err := s.admin.CreateOrder(context.Background(), &pb.CreateOrderRequest{Amount: amount, Summary: "test order " + amount})
	if err != nil {
		t.Fatal(err)
	}
	return resp.OrderId
}

func (s *shop) status(t *testing.T, id string) *pb.OrderStatusResponse {
	t.Helper()
	resp, err := s.admin.OrderStatus(context.Background(), &pb.OrderStatusRequest{OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// newWallet creates a wallet in dir with a funded account.
func (e *env) newWallet(dir, funds string) *wallet.Wallet {
	e.t.Helper()
	return e.newWalletWith(dir, funds, wallet.Options{Now: e.clock.Now})
}

// newWalletWith is newWallet with options (a transcript, say).
func (e *env) newWalletWith(dir, funds string, opts wallet.Options) *wallet.Wallet {
	e.t.Helper()
	w, err := wallet.Create(dir, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	acct := e.openAccount("customer "+filepath.Base(dir), w.AccountKey(), false)
	if err := w.SetAccount(acct); err != nil {
		e.t.Fatal(err)
	}
	if funds != "" {
		e.credit(acct, funds)
	}
	return w
}

func mustAmount(t *testing.T, s string) ecash.Amount {
	t.Helper()
	a, err := ecash.ParseAmount(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// rawCoin withdraws one coin of value through the protocol directly (not the
// wallet), so the test holds the coin key and can sign what it likes.
func (e *env) rawCoin(t *testing.T, bankc pb.BankClient, value string) (ecash.Coin, ed25519.PrivateKey) {
	t.Helper()
	var d ecash.Denomination
	for _, x := range e.ks.Denominations {
		if x.Value.String() == value {
			d = x
		}
	}
	req, ps, st := e.rawWithdrawal(t, bankc, d)
	resp, err := bankc.Withdraw(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := st.Unblind(resp.BlindSignatures[0])
	if err != nil {
		t.Fatal(err)
	}
	return ecash.Coin{Denom: d.ID, Pub: ps.CoinPub(), Sig: sig}, ps.CoinKey
}

// rawWithdrawal opens an account holding the value of one coin of d and
// signs a request withdrawing it, with the planchet's secret and blinding
// state.
func (e *env) rawWithdrawal(t *testing.T, bankc pb.BankClient, d ecash.Denomination) (*pb.WithdrawRequest, ecash.PlanchetSecret, ecash.BlindState) {
	t.Helper()
	seed := make([]byte, 32)
	rand.Read(seed)
	acctKey, _ := ecash.DeriveAccountKey(seed)
	acct := e.openAccount("raw", acctKey.Public().(ed25519.PublicKey), false)
	e.credit(acct, d.Value.String())
	ps, err := ecash.DerivePlanchet(seed, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, st, err := ps.Blind(d, e.prepare(t, bankc, d, ps))
	if err != nil {
		t.Fatal(err)
	}
	req := &ecash.WithdrawRequest{Account: acct, CreatedAt: e.clock.Now(), Planchets: []ecash.Planchet{p}}
	return &pb.WithdrawRequest{Body: req.Body(), AccountSig: ecash.SignWithdraw(acctKey, req, d.Value)}, ps, st
}

// seal builds a sealed payment of the given coins for a payment request body.
func (e *env) seal(t *testing.T, prBody []byte, coins []ecash.Coin, keys []ed25519.PrivateKey) []byte {
	t.Helper()
	pr, err := ecash.DecodePaymentRequest(prBody)
	if err != nil {
		t.Fatal(err)
	}
	values := make([]ecash.Amount, len(coins))
	for i, c := range coins {
		d, err := e.ks.Denomination(c.Denom)
		if err != nil {
			t.Fatal(err)
		}
		values[i] = d.Value
	}
	p, err := ecash.NewPayment(pr, coins, keys, values, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := ecash.SealPayment(e.ks.HPKEPub, pr, p)
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

func dialPlain(addr string) (*grpc.ClientConn, error) {
	return transport.Dial(addr, transport.ClientConfig{Plaintext: true})
}

// prepare runs the first round for a planchet if its cipher has one.
func (e *env) prepare(t *testing.T, bankc pb.BankClient, d ecash.Denomination, ps ecash.PlanchetSecret) []byte {
	t.Helper()
	req := ps.PrepareRequest(d)
	if req == nil {
		return nil
	}
	resp, err := bankc.PrepareWithdraw(context.Background(), &pb.PrepareWithdrawRequest{
		Items: []*pb.PrepareWithdrawRequest_Item{{Denomination: d.ID[:], Request: req}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Answers[0]
}
