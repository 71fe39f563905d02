package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pgstore"
	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/cli/auditcmd"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// The replica tests (issue #8, item 4) run what an operator runs: three
// "bankd serve --store postgres://…" processes (this test binary, installed
// as bankd on $PATH by testscript.Main) over one throwaway PostgreSQL, each
// with its own data directory and a copy of one encrypted keys.json and its
// passphrase file (docs/OPERATIONS.md, "Scale-out on PostgreSQL"). The test
// process plays the wallets and the merchant, over the public gRPC API, and
// reads the database with a pgstore of its own to check the ledger.

// replicaDenoms: CS below 0.08, RSA from 0.08 (two RSA keys keep key
// generation quick), powers of two so that every coin splits in a swap.
const replicaDenoms = "EUR:0.01/cs,EUR:0.02/cs,EUR:0.04/cs,EUR:0.08/rsa,EUR:0.16/rsa"

// TestReplicasOverPostgres: three bankd processes over one PostgreSQL.
//
//   - SameCoins: wallets withdraw coins through the replicas, and deposits of
//     the same coins (each under its own payment request) are sprayed at all
//     three at once: exactly one deposit wins each coin, every other one gets
//     a double-spend proof naming the winner, and the merchant is credited
//     the coins' value exactly.
//   - KillMidLoad: withdrawals, deposits and swaps spread over the three;
//     one replica is killed (SIGKILL) while it has calls in flight, and later
//     restarted on the same address. Clients retry a call that got no
//     answer on the next replica, with the same bytes. Every acknowledged
//     operation is still there afterwards, seen alike through every replica;
//     the operations that never got an answer were applied completely or
//     not at all; the ledger sums to zero and the e-cash outstanding is
//     exactly the value of the issued coins not yet spent.
//   - Audit: "audit log" replays the whole log through each replica in turn
//     (one state file: each run checks that the replica's checkpoint extends
//     the previous replica's) and passes: one gap-free sequence.
//   - Revoke: a denomination revoked through one replica is refused at once
//     through another that still serves the old key set; the replicas
//     serve the revoked key set after their --revocation-poll, or at once
//     after such a refusal.
func TestReplicasOverPostgres(t *testing.T) {
	start := time.Now()
	pg := pgtest.New(t)
	c := startCluster(t, pg, 3)
	t.Logf("PostgreSQL, keys and 3 replicas up in %s", time.Since(start).Round(time.Millisecond))

	steps := []struct {
		name string
		fn   func(*testing.T, *cluster)
	}{
		{"SameCoins", testSameCoins},
		{"KillMidLoad", testKillMidLoad},
		{"Audit", testReplicaAudit},
		{"Revoke", testReplicaRevoke},
	}
	for _, s := range steps {
		t0 := time.Now()
		if !t.Run(s.name, func(t *testing.T) { s.fn(t, c) }) {
			// Later steps build on the earlier ones' ledger.
			break
		}
		t.Logf("%s: %s", s.name, time.Since(t0).Round(time.Millisecond))
	}
	c.stopAll(t)
	c.checkLogs(t)
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// cluster is the database and the bankd replicas over it.
type cluster struct {
	bin    string // the bankd binary
	url    string // the database as a postgres:// URL, for bankd
	pass   string // the key passphrase file
	logDir string
	reps   []*replica
	ks     *ecash.KeySet
	store  *pgstore.Store // the test's own view of the database

	// What the steps did, for the checks of later steps.
	mu          sync.Mutex
	credited    int64                   // credited to customers, minor units
	merchant    *merchantAcct           // the merchant every deposit pays
	settled     map[uint64]int64        // account → its balance, as each step's checks found it
	outstanding int64                   // e-cash outstanding, likewise
	universe    map[ecash.Hash]coinInfo // every coin the test may have been issued, by id
	logged      map[string]int64        // audit-log entries expected, by kind
}

// coinInfo is a coin (or a planchet that may have become one) the test
// knows of, for the outstanding check.
type coinInfo struct {
	value   int64
	blinded *ecash.Hash // nil: known issued (a wallet's acknowledged coin)
}

type merchantAcct struct {
	id  uint64
	key ed25519.PrivateKey
}

// replica is one bankd serve process and the test's connections to it.
type replica struct {
	n      int
	dir    string
	listen string   // fixed after the first start: a restart binds the same address
	flags  []string // more bankd serve flags

	mu     sync.RWMutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // from Wait, once exited is closed
	killed bool  // by kill (SIGKILL)
	info   cli.ServeInfo
	conns  []*grpc.ClientConn
	bank   pb.BankClient
	admin  pb.BankAdminClient
	starts int

	inflightMu sync.Mutex
	inflight   map[*loadOp]bool // calls the load has in flight on this replica
}

func (r *replica) track(op *loadOp, on bool) {
	r.inflightMu.Lock()
	defer r.inflightMu.Unlock()
	if on {
		r.inflight[op] = true
	} else {
		delete(r.inflight, op)
	}
}

// markInFlight marks the calls in flight on r, every other one to be
// given up if unanswered, and returns them.
func (r *replica) markInFlight() []*loadOp {
	r.inflightMu.Lock()
	defer r.inflightMu.Unlock()
	var ops []*loadOp
	for op := range r.inflight {
		ops = append(ops, op)
		op.atKill.Store(int32(atKillRetry + len(ops)%2))
	}
	return ops
}

func (r *replica) inFlight() int {
	r.inflightMu.Lock()
	defer r.inflightMu.Unlock()
	return len(r.inflight)
}

// client returns the replica's current public client (it changes when the
// replica restarts).
func (r *replica) client() pb.BankClient {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.bank
}

func (r *replica) adminClient() pb.BankAdminClient {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.admin
}

func (r *replica) serveInfo() cli.ServeInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.info
}

// startCluster starts n replicas over a new database of pg: keys made once
// with "bankd keys generate" (encrypted), copied to every data directory.
func startCluster(t *testing.T, pg *pgtest.Server, n int) *cluster {
	t.Helper()
	bin, err := exec.LookPath("bankd")
	if err != nil {
		t.Fatalf("the bankd command testscript.Main installs: %v", err)
	}
	dsn := pg.NewDatabase(t)
	c := &cluster{bin: bin, url: pgURL(t, dsn), logDir: t.TempDir(), settled: map[uint64]int64{}, universe: map[ecash.Hash]coinInfo{},
		logged: map[string]int64{"keyset": 1}}
	c.pass = filepath.Join(t.TempDir(), "keys.passphrase")
	if err := os.WriteFile(c.pass, []byte("replicas share one passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	for i := range n {
		c.reps = append(c.reps, &replica{n: i, dir: filepath.Join(base, fmt.Sprintf("replica%d", i)), listen: "127.0.0.1:0", inflight: map[*loadOp]bool{}})
	}
	// Revoke's polls: replica 0 the default, 1 quick, 2 never in the test.
	if n >= 3 {
		c.reps[1].flags = []string{"--revocation-poll", "200ms"}
		c.reps[2].flags = []string{"--revocation-poll", "1h"}
	}
	// Whatever happens, no bankd outlives the test (nor the database,
	// whose cleanup runs after this one).
	t.Cleanup(func() {
		for _, r := range c.reps {
			r.kill()
			r.closeConns()
		}
	})
	gen := exec.Command(bin, "keys", "generate", "--data", c.reps[0].dir, "--key-passphrase-file", c.pass, "--denominations", replicaDenoms)
	gen.Env = childEnv()
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("bankd keys generate: %v\n%s", err, out)
	}
	keys, err := os.ReadFile(filepath.Join(c.reps[0].dir, bank.KeysFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range c.reps[1:] {
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.dir, bank.KeysFile), keys, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Started together: they migrate the schema and publish the key set
	// at once.
	errs := make(chan error, n)
	for _, r := range c.reps {
		go func() { errs <- c.start(r) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	resp, err := c.reps[0].client().GetKeys(t.Context(), &pb.GetKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c.ks, err = ecash.DecodeKeySet(resp.SignedKeyset, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range c.reps[1:] {
		other, err := r.client().GetKeys(t.Context(), &pb.GetKeysRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(other.SignedKeyset, resp.SignedKeyset) {
			t.Fatalf("replica %d serves another key set than replica 0", r.n)
		}
	}
	if c.store, err = pgstore.Open(t.Context(), dsn, pgstore.Options{MaxConns: 4}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.store.Close() })
	return c
}

// pgURL turns pgtest's keyword/value DSN into the postgres:// URL an
// operator gives bankd (the unix socket directory as the host parameter).
func pgURL(t *testing.T, dsn string) string {
	t.Helper()
	kv := map[string]string{}
	for _, f := range strings.Fields(dsn) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("DSN %q: field %q", dsn, f)
		}
		kv[k] = v
	}
	q := url.Values{}
	q.Set("host", kv["host"])
	q.Set("port", kv["port"])
	q.Set("sslmode", kv["sslmode"])
	u := url.URL{Scheme: "postgres", User: url.User(kv["user"]), Host: "", Path: "/" + kv["dbname"], RawQuery: q.Encode()}
	return u.String()
}

// childEnv is the environment of the bankd processes: without the
// race detector's one-second sleep at exit.
func childEnv() []string {
	return append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=10"))
}

// start runs "bankd serve" for r and waits until it serves, then dials it.
func (c *cluster) start(r *replica) error {
	addrFile := filepath.Join(r.dir, cli.AddressesFile)
	os.Remove(addrFile) // a killed bankd leaves its own behind
	logf, err := os.OpenFile(filepath.Join(c.logDir, fmt.Sprintf("bankd%d.log", r.n)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child holds its own descriptor
	fmt.Fprintf(logf, "=== start %d at %s\n", r.starts+1, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.bin, append([]string{"serve", "--data", r.dir, "--store", c.url,
		"--listen", r.listen, "--admin-listen", "127.0.0.1:0", "--key-passphrase-file", c.pass}, r.flags...)...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.exited, r.err, r.killed = cmd, exited, nil, false
	r.starts++
	r.mu.Unlock()
	go func() {
		err := cmd.Wait()
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		close(exited)
	}()
	deadline := time.Now().Add(90 * time.Second)
	var info cli.ServeInfo
	for {
		b, err := os.ReadFile(addrFile)
		if err == nil && json.Unmarshal(b, &info) == nil && info.PID == cmd.Process.Pid {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("replica %d exited before serving: %v\n%s", r.n, r.err, c.logTail(r))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %d did not serve within 90s\n%s", r.n, c.logTail(r))
		}
	}
	token, err := os.ReadFile(info.TokenFile)
	if err != nil {
		return err
	}
	conn, err := transport.Dial(info.Addr, transport.ClientConfig{Pin: info.Fingerprint})
	if err != nil {
		return err
	}
	adminConn, err := transport.DialAdmin(info.AdminAddr, strings.TrimSpace(string(token)))
	if err != nil {
		conn.Close()
		return err
	}
	r.closeConns() // to the process before a restart
	r.mu.Lock()
	r.listen, r.info = info.Addr, info
	r.conns = []*grpc.ClientConn{conn, adminConn}
	r.bank, r.admin = pb.NewBankClient(conn), pb.NewBankAdminClient(adminConn)
	r.mu.Unlock()
	return nil
}

// closeConns closes the test's connections to r.
func (r *replica) closeConns() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cc := range r.conns {
		cc.Close()
	}
	r.conns = nil
}

// kill SIGKILLs r's process, if it runs, and waits for it.
func (r *replica) kill() {
	r.mu.RLock()
	cmd, exited := r.cmd, r.exited
	r.mu.RUnlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	r.mu.Lock()
	r.killed = true
	r.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop stops r gracefully (SIGTERM) and returns how it exited: nil for
// status 0 (a data race found under -race exits 66).
func (r *replica) stop() error {
	r.mu.RLock()
	cmd, exited, killed := r.cmd, r.exited, r.killed
	r.mu.RUnlock()
	select {
	case <-exited:
		r.closeConns()
		if killed { // and not restarted: a step failed
			return nil
		}
		return fmt.Errorf("exited by itself: %v", r.err)
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		r.kill()
		return errors.New("no exit within 30s of SIGTERM")
	}
	r.closeConns()
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.err
}

func (c *cluster) stopAll(t *testing.T) {
	t.Helper()
	var wg sync.WaitGroup
	for _, r := range c.reps {
		wg.Go(func() {
			if err := r.stop(); err != nil {
				t.Errorf("replica %d: bankd serve exited with %v\n%s", r.n, err, c.logTail(r))
			}
		})
	}
	wg.Wait()
}

// checkLogs fails the test on a data race reported by any bankd (a killed
// one never reaches its exit status).
func (c *cluster) checkLogs(t *testing.T) {
	t.Helper()
	for _, r := range c.reps {
		b, _ := os.ReadFile(filepath.Join(c.logDir, fmt.Sprintf("bankd%d.log", r.n)))
		if bytes.Contains(b, []byte("WARNING: DATA RACE")) || bytes.Contains(b, []byte("panic:")) {
			t.Errorf("replica %d's log reports a data race or a panic:\n%s", r.n, b)
		}
	}
}

func (c *cluster) logTail(r *replica) string {
	b, _ := os.ReadFile(filepath.Join(c.logDir, fmt.Sprintf("bankd%d.log", r.n)))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return fmt.Sprintf("--- bankd%d.log (tail)\n%s", r.n, b)
}

// openAccount opens an account through replica via and credits it
// through the next replica.
func (c *cluster) openAccount(t *testing.T, via int, name string, key ed25519.PublicKey, merchant bool, credit string) uint64 {
	t.Helper()
	ctx := t.Context()
	resp, err := c.reps[via%len(c.reps)].adminClient().OpenAccount(ctx, &pb.OpenAccountRequest{Name: name, PublicKey: key, Merchant: merchant})
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.logged["account-opened"]++
	c.mu.Unlock()
	if credit != "" {
		a, err := ecash.ParseAmount(credit)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.reps[(via+1)%len(c.reps)].adminClient().Credit(ctx, &pb.CreditRequest{Account: resp.Account, Amount: credit, Reference: "fund " + name}); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		c.credited += int64(a.Value)
		c.logged["credit"]++
		c.mu.Unlock()
	}
	return resp.Account
}

// newMerchant opens the merchant account the test deposits to: the test
// signs its payment requests itself.
func (c *cluster) newMerchant(t *testing.T) *merchantAcct {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &merchantAcct{id: c.openAccount(t, 0, "replica shop", pub, true, ""), key: priv}
}

// paymentRequest is a signed payment request of the merchant for amount.
func (c *cluster) paymentRequest(m *merchantAcct, order string, amount int64) (*ecash.PaymentRequest, []byte, []byte) {
	now := time.Now()
	pr := &ecash.PaymentRequest{
		BankID: c.ks.BankID(), MerchantAccount: m.id, MerchantPub: m.key.Public().(ed25519.PublicKey), OrderID: order,
		Amount: ecash.Amount{Currency: c.ks.Currency, Value: uint64(amount)}, SummaryHash: ecash.HashOf([]byte(order)),
		CreatedAt: now, ExpiresAt: now.Add(time.Hour),
	}
	body := pr.Body()
	return pr, body, ed25519.Sign(m.key, body)
}

// sealPayment signs a deposit permission for each coin and seals the
// payment to the bank.
func (c *cluster) sealPayment(pr *ecash.PaymentRequest, coins []heldCoin) ([]byte, error) {
	var (
		cs     []ecash.Coin
		keys   []ed25519.PrivateKey
		values []ecash.Amount
	)
	for _, hc := range coins {
		cs, keys = append(cs, hc.coin), append(keys, hc.key)
		values = append(values, ecash.Amount{Currency: c.ks.Currency, Value: uint64(hc.value)})
	}
	p, err := ecash.NewPayment(pr, cs, keys, values, time.Now())
	if err != nil {
		return nil, err
	}
	return ecash.SealPayment(c.ks.HPKEPub, pr, p)
}

// heldCoin is a coin with its key.
type heldCoin struct {
	coin  ecash.Coin
	key   ed25519.PrivateKey
	value int64
}

// amount formats minor units of the bank's currency: "EUR:0.31".
func (c *cluster) amount(v int64) string {
	return ecash.Amount{Currency: c.ks.Currency, Value: uint64(v)}.String()
}

func (c *cluster) denom(t *testing.T, id ecash.Hash) ecash.Denomination {
	t.Helper()
	d, err := c.ks.Denomination(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// testSameCoins: wallets withdraw, then every coin is deposited six times
// at once, under six payment requests, two through each replica.
func testSameCoins(t *testing.T, c *cluster) {
	ctx := t.Context()
	c.merchant = c.newMerchant(t)
	const (
		wallets = 3
		tries   = 6   // deposits of each coin, two through each replica
		fund    = 100 // EUR:1.00 credited to each wallet
		take    = 31  // EUR:0.31 withdrawn by each: one coin of each denomination
	)
	var coins []heldCoin
	for i := range wallets {
		w, err := wallet.Create(t.TempDir(), wallet.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		acct := c.openAccount(t, i, fmt.Sprintf("wallet %d", i), w.AccountKey(), false, c.amount(fund))
		if err := w.SetAccount(acct); err != nil {
			t.Fatal(err)
		}
		got, err := w.Withdraw(ctx, c.reps[i].client(), ecash.Amount{Currency: c.ks.Currency, Value: take}, nil)
		if err != nil {
			t.Fatalf("wallet %d withdraws through replica %d: %v", i, i, err)
		}
		// The wallet library keeps coin keys to itself: re-derive them
		// from its seed, as a restore would.
		keys := map[string]ed25519.PrivateKey{}
		for idx := range uint64(4 * len(got)) {
			ps, err := ecash.DerivePlanchet(w.Seed(), idx)
			if err != nil {
				t.Fatal(err)
			}
			keys[string(ps.CoinPub())] = ps.CoinKey
		}
		for _, coin := range got {
			key, ok := keys[string(coin.Pub)]
			if !ok {
				t.Fatalf("coin %x of wallet %d: no key under the seed", coin.ID(), i)
			}
			coins = append(coins, heldCoin{coin: coin, key: key, value: int64(c.denom(t, coin.Denom).Value.Value)})
		}
		c.settled[acct] = fund - take
	}

	type try struct {
		coin int
		via  int
		pr   *ecash.PaymentRequest
		req  *pb.DepositRequest
		resp *pb.DepositResponse
		err  error
	}
	var all []*try
	for i, hc := range coins {
		for k := range tries {
			pr, body, sig := c.paymentRequest(c.merchant, fmt.Sprintf("same-coin-%d-try-%d", i, k), hc.value)
			sealed, err := c.sealPayment(pr, []heldCoin{hc})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, &try{coin: i, via: k % len(c.reps), pr: pr,
				req: &pb.DepositRequest{PaymentRequest: body, MerchantSig: sig, SealedPayment: sealed}})
		}
	}
	// Everything is built: release every deposit at once.
	mrand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for _, tr := range all {
		bc := c.reps[tr.via].client()
		wg.Go(func() {
			<-gate
			tr.resp, tr.err = bc.Deposit(ctx, tr.req)
		})
	}
	t0 := time.Now()
	close(gate)
	wg.Wait()
	t.Logf("%d coins from %d wallets, %d deposits sprayed over %d replicas in %s", len(coins), wallets, len(all), len(c.reps), time.Since(t0).Round(time.Millisecond))

	winners := make([]*try, len(coins))
	var total int64
	winsByReplica := make([]int, len(c.reps))
	for _, tr := range all {
		if tr.err == nil {
			if w := winners[tr.coin]; w != nil {
				t.Errorf("coin %d deposited twice: through replica %d and replica %d", tr.coin, w.via, tr.via)
				continue
			}
			winners[tr.coin] = tr
			winsByReplica[tr.via]++
			total += coins[tr.coin].value
			rc, err := ecash.DecodeDepositReceipt(tr.resp.Receipt)
			if err != nil {
				t.Fatal(err)
			}
			if err := rc.Verify(c.ks, tr.pr); err != nil || len(rc.Coins) != 1 || rc.Coins[0] != coins[tr.coin].coin.ID() {
				t.Errorf("coin %d: winning receipt %+v: %v", tr.coin, rc, err)
			}
		}
	}
	for _, tr := range all {
		w := winners[tr.coin]
		if w == nil {
			t.Errorf("coin %d: no deposit won (one: %v)", tr.coin, tr.err)
			continue
		}
		if tr == w {
			continue
		}
		if status.Code(tr.err) != codes.FailedPrecondition {
			t.Errorf("coin %d through replica %d: %v, want a double-spend refusal", tr.coin, tr.via, tr.err)
			continue
		}
		ds := wallet.DoubleSpendFromError(tr.err)
		if ds == nil {
			t.Errorf("coin %d through replica %d: refusal without a double-spend proof: %v", tr.coin, tr.via, tr.err)
			continue
		}
		if err := ds.Proof.Verify(c.ks); err != nil {
			t.Errorf("coin %d: proof from replica %d does not verify: %v", tr.coin, tr.via, err)
		}
		// The proof carries the winner's permission, whichever replica
		// decided either deposit.
		if wh := w.pr.Hash(); ds.Proof.Earlier.Coin.ID() != coins[tr.coin].coin.ID() || ds.Proof.Earlier.PaymentHash != wh {
			t.Errorf("coin %d: proof from replica %d names payment %x, the winner was %x (replica %d)",
				tr.coin, tr.via, ds.Proof.Earlier.PaymentHash[:8], wh[:8], w.via)
		}
	}
	t.Logf("winners by replica: %v", winsByReplica)

	// Every replica tells the same story.
	var (
		ids   [][]byte
		value int64
	)
	for _, hc := range coins {
		id := hc.coin.ID()
		ids = append(ids, id[:])
		value += hc.value
	}
	want := c.amount(value)
	for _, r := range c.reps {
		a, err := r.adminClient().GetAccount(ctx, &pb.GetAccountRequest{Account: c.merchant.id})
		if err != nil {
			t.Fatal(err)
		}
		if a.Balance != want {
			t.Errorf("merchant balance through replica %d: %s, want %s (the coins' value)", r.n, a.Balance, want)
		}
		sp, err := r.client().CoinsSpent(ctx, &pb.CoinsSpentRequest{CoinIds: ids})
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(sp.Spent, false) {
			t.Errorf("replica %d: coins unspent: %v", r.n, sp.Spent)
		}
		for _, tr := range all {
			h := tr.pr.Hash()
			st, err := r.client().DepositStatus(ctx, &pb.DepositStatusRequest{PaymentHash: h[:]})
			switch {
			case tr == winners[tr.coin] && (err != nil || !bytes.Equal(st.Receipt, tr.resp.Receipt)):
				t.Errorf("replica %d: status of coin %d's winning deposit: %v", r.n, tr.coin, err)
			case tr != winners[tr.coin] && status.Code(err) != codes.NotFound:
				t.Errorf("replica %d: status of a refused deposit of coin %d: %v, want NOT_FOUND", r.n, tr.coin, err)
			}
		}
	}
	c.settled[c.merchant.id] = total
	for _, hc := range coins {
		c.universe[hc.coin.ID()] = coinInfo{value: hc.value}
	}
	c.outstanding = value - total
	c.logged["withdraw"] += wallets // one request each: fewer than 64 coins
	c.logged["deposit"] += int64(len(coins))
}

// loadOp is one operation of the load: its request, every attempt that got
// no answer, and the answer.
type loadOp struct {
	kind    string     // "withdraw", "deposit" or "swap"
	key     ecash.Hash // request hash (withdraw, swap) or payment hash (deposit)
	account uint64     // withdraw: the account debited
	amount  int64      // value withdrawn, deposited or swapped
	inputs  []heldCoin // deposit, swap
	outputs []*planchet

	withdraw *pb.WithdrawRequest
	deposit  *pb.DepositRequest
	swap     *pb.SwapRequest

	unanswered []string // "replica N: error" of each attempt without an answer
	acked      bool
	by         int      // the replica that answered
	sigs       [][]byte // withdraw, swap
	receipt    []byte   // deposit
	logIndex   int64    // deposit, swap: the entry the answer names
	phase      int      // when it was answered: before the kill, while down, after the restart
	refused    error    // an answer other than success (none expected)
	applied    bool     // found in the database afterwards

	// atKill is set on the calls in flight on the victim when it is
	// killed: atKillRetry, or atKillGiveUp for a client that gives up
	// instead of retrying (its call then stays unanswered).
	atKill atomic.Int32
}

const (
	atKillRetry = 1 + iota
	atKillGiveUp
)

// Phases of the load.
const (
	beforeKill = iota
	victimDown
	afterRestart
)

var phaseNames = [...]string{"before the kill", "while down", "after the restart"}

// planchet is a blinded coin-to-be and what turns its signature into a coin.
type planchet struct {
	ps      ecash.PlanchetSecret
	denom   ecash.Denomination
	p       ecash.Planchet
	st      ecash.BlindState
	blinded ecash.Hash
}

// noAnswer reports whether err means the call got no answer: the replica
// may or may not have applied it, and the client retries the same bytes.
func noAnswer(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted, codes.ResourceExhausted, codes.Unknown:
		return true
	}
	return false
}

// loadWorker is one client of the load: its own account and coins.
type loadWorker struct {
	n      int
	c      *cluster
	t      *testing.T
	seed   []byte
	key    ed25519.PrivateKey
	acct   uint64
	next   uint64 // next planchet index
	pool   []heldCoin
	rng    *mrand.Rand
	rr     int // round-robin position over the replicas
	order  int
	credit int64 // credited to acct before the load
	broken bool  // an error the load cannot go on after
}

// call sends op to replicas in turn until one answers (at most two
// rounds), or, for a call in flight at the kill marked so, until it is
// left without an answer.
func (w *loadWorker) call(op *loadOp, onAck func(op *loadOp)) {
	ctx := w.t.Context()
	for attempt := range 2 * len(w.c.reps) {
		r := w.c.reps[w.rr%len(w.c.reps)]
		w.rr++
		bc := r.client()
		r.track(op, true)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var err error
		switch op.kind {
		case "withdraw":
			var resp *pb.WithdrawResponse
			if resp, err = bc.Withdraw(cctx, op.withdraw); err == nil {
				op.sigs = resp.BlindSignatures
			}
		case "deposit":
			var resp *pb.DepositResponse
			if resp, err = bc.Deposit(cctx, op.deposit); err == nil {
				op.receipt, op.logIndex = resp.Receipt, resp.LogIndex
			}
		case "swap":
			var resp *pb.SwapResponse
			if resp, err = bc.Swap(cctx, op.swap); err == nil {
				op.sigs, op.logIndex = resp.BlindSignatures, resp.LogIndex
			}
		}
		cancel()
		r.track(op, false)
		switch {
		case err == nil:
			op.acked, op.by = true, r.n
			onAck(op)
			return
		case ctx.Err() != nil:
			return
		case noAnswer(err):
			op.unanswered = append(op.unanswered, fmt.Sprintf("replica %d: %v", r.n, err))
			if op.atKill.Load() == atKillGiveUp {
				return
			}
			time.Sleep(time.Duration(10*(attempt+1)) * time.Millisecond)
		default:
			op.refused = fmt.Errorf("replica %d: %w", r.n, err)
			return
		}
	}
}

// newPlanchets derives planchets of the given denominations and blinds
// them, running the first round of CS through any replica that answers
// (it is stateless: every replica answers alike). False if none did.
func (w *loadWorker) newPlanchets(denoms []ecash.Denomination) ([]*planchet, bool) {
	var (
		out   []*planchet
		prep  = &pb.PrepareWithdrawRequest{}
		asked []int
	)
	for i, d := range denoms {
		ps, err := ecash.DerivePlanchet(w.seed, w.next)
		if !w.ok(err) {
			return nil, false
		}
		w.next++
		out = append(out, &planchet{ps: ps, denom: d})
		if req := ps.PrepareRequest(d); req != nil {
			prep.Items = append(prep.Items, &pb.PrepareWithdrawRequest_Item{Denomination: d.ID[:], Request: req})
			asked = append(asked, i)
		}
	}
	answers := make([][]byte, len(out))
	if len(asked) > 0 {
		var resp *pb.PrepareWithdrawResponse
		for range 2 * len(w.c.reps) {
			r := w.c.reps[w.rr%len(w.c.reps)]
			w.rr++
			ctx, cancel := context.WithTimeout(w.t.Context(), 30*time.Second)
			var err error
			resp, err = r.client().PrepareWithdraw(ctx, prep)
			cancel()
			if err == nil {
				break
			}
			if !noAnswer(err) {
				w.t.Errorf("worker %d: PrepareWithdraw through replica %d: %v", w.n, r.n, err)
				return nil, false
			}
			resp = nil
		}
		if resp == nil {
			return nil, false
		}
		for j, i := range asked {
			answers[i] = resp.Answers[j]
		}
	}
	for i, p := range out {
		var err error
		if p.p, p.st, err = p.ps.Blind(p.denom, answers[i]); !w.ok(err) {
			return nil, false
		}
		p.blinded = ecash.HashOf(p.p.Blinded)
	}
	return out, true
}

// unblind turns the answer to op's outputs into coins in the pool.
func (w *loadWorker) unblind(op *loadOp) {
	if len(op.sigs) != len(op.outputs) {
		w.t.Errorf("worker %d: %s answered %d signatures for %d planchets", w.n, op.kind, len(op.sigs), len(op.outputs))
		return
	}
	for i, p := range op.outputs {
		sig, err := p.st.Unblind(op.sigs[i])
		if err != nil {
			w.t.Errorf("worker %d: %s: signature %d: %v", w.n, op.kind, i, err)
			continue
		}
		coin := ecash.Coin{Denom: p.denom.ID, Pub: p.ps.CoinPub(), Sig: sig}
		w.pool = append(w.pool, heldCoin{coin: coin, key: p.ps.CoinKey, value: int64(p.denom.Value.Value)})
	}
}

// ok reports whether err is nil; if not, it fails the test and stops the
// worker (which runs on a goroutine of its own, where t.Fatal is not for
// calling).
func (w *loadWorker) ok(err error) bool {
	if err != nil {
		w.t.Errorf("worker %d: %v", w.n, err)
		w.broken = true
	}
	return err == nil
}

// take removes up to n coins, at random, from the pool.
func (w *loadWorker) take(n int) []heldCoin {
	n = min(n, len(w.pool))
	w.rng.Shuffle(len(w.pool), func(i, j int) { w.pool[i], w.pool[j] = w.pool[j], w.pool[i] })
	out := slices.Clone(w.pool[:n])
	w.pool = w.pool[n:]
	return out
}

func (w *loadWorker) withdrawOp() *loadOp {
	denoms := w.c.ks.Withdrawable(time.Now())
	var pick []ecash.Denomination
	for range 1 + w.rng.IntN(3) {
		pick = append(pick, denoms[w.rng.IntN(len(denoms))])
	}
	outs, ok := w.newPlanchets(pick)
	if !ok {
		return nil
	}
	req := &ecash.WithdrawRequest{Account: w.acct, CreatedAt: time.Now()}
	rand.Read(req.Nonce[:])
	op := &loadOp{kind: "withdraw", account: w.acct, outputs: outs}
	for _, p := range outs {
		req.Planchets = append(req.Planchets, p.p)
		op.amount += int64(p.denom.Value.Value)
	}
	body := req.Body()
	op.key = ecash.HashOf(body)
	amount := ecash.Amount{Currency: outs[0].denom.Value.Currency, Value: uint64(op.amount)}
	op.withdraw = &pb.WithdrawRequest{Body: body, AccountSig: ecash.SignWithdraw(w.key, req, amount)}
	return op
}

func (w *loadWorker) depositOp() *loadOp {
	coins := w.take(1 + w.rng.IntN(3))
	op := &loadOp{kind: "deposit", inputs: coins}
	for _, hc := range coins {
		op.amount += hc.value
	}
	w.order++
	pr, body, sig := w.c.paymentRequest(w.c.merchant, fmt.Sprintf("load-%d-%d", w.n, w.order), op.amount)
	op.key = pr.Hash()
	sealed, err := w.c.sealPayment(pr, coins)
	if !w.ok(err) {
		return nil
	}
	op.deposit = &pb.DepositRequest{PaymentRequest: body, MerchantSig: sig, SealedPayment: sealed}
	return op
}

// swapOp gives up one or two coins for change: each coin of value v > 0.01
// for two of v/2, a coin of 0.01 for another.
func (w *loadWorker) swapOp() *loadOp {
	coins := w.take(1 + w.rng.IntN(2))
	op := &loadOp{kind: "swap", inputs: coins}
	var pick []ecash.Denomination
	now := time.Now()
	for _, hc := range coins {
		op.amount += hc.value
		half, n := hc.value/2, 2
		if hc.value == 1 {
			half, n = 1, 1
		}
		d, err := w.c.ks.CurrentDenomination(ecash.Amount{Currency: w.c.ks.Currency, Value: uint64(half)}, now)
		if !w.ok(err) {
			return nil
		}
		for range n {
			pick = append(pick, d)
		}
	}
	outs, ok := w.newPlanchets(pick)
	if !ok {
		w.pool = append(w.pool, coins...) // nothing was sent
		return nil
	}
	op.outputs = outs
	var (
		cs      []ecash.Coin
		keys    []ed25519.PrivateKey
		values  []ecash.Amount
		outputs []ecash.Planchet
	)
	for _, hc := range coins {
		cs, keys = append(cs, hc.coin), append(keys, hc.key)
		values = append(values, ecash.Amount{Currency: w.c.ks.Currency, Value: uint64(hc.value)})
	}
	for _, p := range outs {
		outputs = append(outputs, p.p)
	}
	sr, err := ecash.NewSwapRequest(cs, keys, values, outputs, now)
	if !w.ok(err) {
		return nil
	}
	body := sr.Body()
	op.key = ecash.HashOf(body)
	op.swap = &pb.SwapRequest{Body: body}
	return op
}

// loadStats counts what the load got answered, for the controller.
type loadStats struct {
	phase       atomic.Int32 // beforeKill, victimDown, afterRestart
	acked       [3]atomic.Int64
	victimAcked atomic.Int64 // answered by the victim after its restart
}

// testKillMidLoad: a load over the three replicas; replica 1 is killed
// with calls in flight and restarted on its address; then nothing
// acknowledged is lost and nothing is half applied.
func testKillMidLoad(t *testing.T, c *cluster) {
	if c.merchant == nil {
		t.Fatal("SameCoins did not open the merchant")
	}
	const (
		workers      = 6
		credit       = 5000 // EUR:50.00 each: the load never runs short
		minBefore    = 30   // operations answered before the kill
		minDown      = 30   // ... while the victim is down
		minVictim    = 6    // ... by the victim after its restart
		phaseTimeout = 90 * time.Second
	)
	var stats loadStats
	victim := c.reps[1]

	ws := make([]*loadWorker, workers)
	for i := range ws {
		seed := make([]byte, 32)
		rand.Read(seed)
		key, err := ecash.DeriveAccountKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = &loadWorker{n: i, c: c, t: t, seed: seed, key: key, rr: i, rng: mrand.New(mrand.NewPCG(uint64(i), 8)), credit: credit}
		ws[i].acct = c.openAccount(t, i, fmt.Sprintf("load %d", i), key.Public().(ed25519.PublicKey), false, c.amount(credit))
	}

	var (
		mu   sync.Mutex
		ops  []*loadOp
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	for _, w := range ws {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if t.Context().Err() != nil || w.broken {
					return
				}
				var op *loadOp
				switch x := w.rng.IntN(100); {
				case len(w.pool) < 3 || x < 30:
					op = w.withdrawOp()
				case x < 65:
					op = w.depositOp()
				default:
					op = w.swapOp()
				}
				if op == nil { // no replica answered the first round
					time.Sleep(20 * time.Millisecond)
					continue
				}
				w.call(op, func(op *loadOp) {
					op.phase = int(stats.phase.Load())
					stats.acked[op.phase].Add(1)
					if op.by == victim.n && op.phase == afterRestart {
						stats.victimAcked.Add(1)
					}
					if op.kind != "deposit" {
						w.unblind(op)
					}
				})
				if op.refused != nil {
					t.Errorf("worker %d: %s refused: %v", w.n, op.kind, op.refused)
				}
				mu.Lock()
				ops = append(ops, op)
				mu.Unlock()
			}
		})
	}
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopLoad()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(phaseTimeout)
		for !cond() {
			if time.Now().After(deadline) || t.Failed() {
				t.Fatalf("gave up waiting for %s (answered: %d before the kill, %d while down, %d after the restart)",
					what, stats.acked[0].Load(), stats.acked[1].Load(), stats.acked[2].Load())
			}
			time.Sleep(time.Millisecond)
		}
	}

	t0 := time.Now()
	waitFor("the load to start", func() bool { return stats.acked[beforeKill].Load() >= minBefore })
	waitFor("calls in flight on the victim", func() bool { return victim.inFlight() > 0 })
	// Two or more, if they come soon: one retried, one given up.
	for end := time.Now().Add(2 * time.Second); victim.inFlight() < 2 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	atKill := victim.markInFlight()
	victim.kill()
	stats.phase.Store(victimDown)
	killedAt := time.Now()
	t.Logf("replica %d killed (SIGKILL) with %d calls in flight, after %d operations answered in %s",
		victim.n, len(atKill), stats.acked[beforeKill].Load(), killedAt.Sub(t0).Round(time.Millisecond))
	waitFor("the load to go on without the victim", func() bool { return stats.acked[victimDown].Load() >= minDown })
	if err := c.start(victim); err != nil {
		t.Fatal(err)
	}
	stats.phase.Store(afterRestart)
	t.Logf("replica %d restarted on %s after %s down",
		victim.n, victim.serveInfo().Addr, time.Since(killedAt).Round(time.Millisecond))
	waitFor("the restarted victim to answer", func() bool { return stats.victimAcked.Load() >= minVictim })
	stopLoad()

	answered := map[string]int{}
	var retried, unanswered int
	for _, op := range ops {
		switch {
		case op.acked:
			answered[fmt.Sprintf("%s %s", op.kind, phaseNames[op.phase])]++
			if len(op.unanswered) > 0 {
				retried++
			}
		case op.refused == nil:
			unanswered++
		}
	}
	t.Logf("%d operations in %s; answered: %v; %d answered after a retry; %d never answered",
		len(ops), time.Since(t0).Round(time.Millisecond), answered, retried, unanswered)
	if retried == 0 {
		t.Errorf("no operation lost its answer to the kill")
	}

	c.checkLoad(t, ws, ops)

	for _, op := range atKill {
		how := "retried"
		if op.atKill.Load() == atKillGiveUp {
			how = "given up"
		}
		answer := "never answered"
		if op.acked {
			answer = fmt.Sprintf("answered by replica %d", op.by)
		}
		t.Logf("in flight at the kill: %s %x (%s if unanswered): %s, applied %v; unanswered attempts %q",
			op.kind, op.key[:6], how, answer, op.applied, op.unanswered)
	}
}

// checkLoad checks every operation of the load against the database and
// the replicas, then the whole ledger.
func (c *cluster) checkLoad(t *testing.T, ws []*loadWorker, ops []*loadOp) {
	ctx := t.Context()
	st := c.store
	expect := maps.Clone(c.settled)
	for _, w := range ws {
		expect[w.acct] = w.credit
	}
	var (
		outstanding = c.outstanding // e-cash issued minus redeemed, by the records
		logIdx      = map[int64]string{}
		applied     = map[string]int{}
	)
	for i, op := range ops {
		// Every planchet sent, answered or not, for the outstanding check.
		for _, p := range op.outputs {
			c.universe[ecash.HashOf(p.ps.CoinPub())] = coinInfo{value: int64(p.denom.Value.Value), blinded: &p.blinded}
		}
		if op.refused != nil {
			continue
		}
		what := fmt.Sprintf("%s %d (%x, answered %v by replica %d, unanswered %v)", op.kind, i, op.key[:6], op.acked, op.by, op.unanswered)
		var found bool
		switch op.kind {
		case "withdraw":
			sigs, ok, err := st.Withdrawal(ctx, op.key)
			if err != nil {
				t.Fatal(err)
			}
			found = ok
			if op.acked && (!ok || !equalSigs(sigs, op.sigs)) {
				t.Errorf("%s: acknowledged, but the database holds %v %d signatures", what, ok, len(sigs))
			}
			c.checkIssued(t, what, op, ok, bank.KindWithdraw, sigs)
			if ok {
				expect[op.account] -= op.amount
				outstanding += op.amount
			}
			if op.acked {
				// Any replica finds the coins, as a restoring wallet asks.
				var hs [][]byte
				for _, p := range op.outputs {
					hs = append(hs, p.blinded[:])
				}
				resp, err := c.reps[i%len(c.reps)].client().IssuedSignatures(ctx, &pb.IssuedSignaturesRequest{BlindedHashes: hs})
				if err != nil || !equalSigs(resp.BlindSignatures, op.sigs) {
					t.Errorf("%s: replica %d's IssuedSignatures: %v", what, i%len(c.reps), err)
				}
			}
		case "deposit":
			receipt, coins, ok, err := st.DepositRecord(ctx, op.key)
			if err != nil {
				t.Fatal(err)
			}
			found = ok
			if op.acked && (!ok || !bytes.Equal(receipt, op.receipt)) {
				t.Errorf("%s: acknowledged, but the database holds %v another receipt", what, ok)
			}
			if ok && len(coins) != len(op.inputs) {
				t.Errorf("%s: recorded with %d coins, sent %d", what, len(coins), len(op.inputs))
			}
			c.checkSpent(t, what, op, ok)
			if ok {
				expect[c.merchant.id] += op.amount
				outstanding -= op.amount
			}
			if op.acked {
				// The receipt is served by every replica, the restarted
				// one too.
				for _, r := range c.reps {
					resp, err := r.client().DepositStatus(ctx, &pb.DepositStatusRequest{PaymentHash: op.key[:]})
					if err != nil || !bytes.Equal(resp.Receipt, op.receipt) || resp.LogIndex != op.logIndex {
						t.Errorf("%s: replica %d's DepositStatus: %v", what, r.n, err)
					}
				}
			}
		case "swap":
			sigs, ok, err := st.SwapRecord(ctx, op.key)
			if err != nil {
				t.Fatal(err)
			}
			found = ok
			if op.acked && (!ok || !equalSigs(sigs, op.sigs)) {
				t.Errorf("%s: acknowledged, but the database holds %v %d signatures", what, ok, len(sigs))
			}
			c.checkSpent(t, what, op, ok)
			c.checkIssued(t, what, op, ok, bank.KindSwap, sigs)
		}
		op.applied = found
		if !found {
			continue
		}
		applied[op.kind]++
		idx, ok, err := st.LogIndex(ctx, op.key)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case !ok:
			t.Errorf("%s: applied, but not in the audit log", what)
		case op.acked && op.logIndex != 0 && op.logIndex != idx:
			t.Errorf("%s: answered with log index %d, the log holds it at %d", what, op.logIndex, idx)
		case logIdx[idx] != "":
			t.Errorf("%s: log index %d already holds %s", what, idx, logIdx[idx])
		default:
			logIdx[idx] = what
		}
	}
	t.Logf("applied: %v", applied)
	for k, n := range applied {
		c.logged[k] += int64(n)
	}

	// The ledger: it sums to zero, every account holds what the applied
	// operations say, and the e-cash outstanding is exactly the value of
	// the coins issued and not spent.
	totals, err := st.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, b := range totals {
		sum += b
	}
	if sum != 0 {
		t.Errorf("the ledger sums to %d, not zero: %v", sum, totals)
	}
	if got := totals[bank.AccountFunding]; got != -c.credited {
		t.Errorf("funding %d, want %d (minus every credit)", got, -c.credited)
	}
	if got := totals[bank.AccountOutstanding]; got != outstanding {
		t.Errorf("outstanding %d, want %d (withdrawn minus deposited)", got, outstanding)
	}
	if got := totals[bank.AccountFees]; got != 0 {
		t.Errorf("fees %d, want 0: this bank's keys charge none", got)
	}
	for id, b := range totals {
		if id == bank.AccountFunding || id == bank.AccountOutstanding || id == bank.AccountFees {
			continue
		}
		if want, ok := expect[id]; !ok || b != want {
			t.Errorf("account %d holds %d, want %d (known %v)", id, b, want, ok)
		}
	}
	if got := c.unspentValue(t); got != totals[bank.AccountOutstanding] {
		t.Errorf("outstanding %d, but the coins issued and unspent are worth %d", totals[bank.AccountOutstanding], got)
	}
	c.settled = expect
	c.outstanding = outstanding
}

func equalSigs(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}

// checkIssued checks that op's outputs were all signed, under op, if op
// was applied (found), and none otherwise.
func (c *cluster) checkIssued(t *testing.T, what string, op *loadOp, found bool, kind string, sigs [][]byte) {
	t.Helper()
	var hs []ecash.Hash
	for _, p := range op.outputs {
		hs = append(hs, p.blinded)
	}
	issued, err := c.store.Issued(t.Context(), hs)
	if err != nil {
		t.Fatal(err)
	}
	for i, is := range issued {
		switch {
		case !found && is != nil:
			t.Errorf("%s: not applied, yet output %d is issued (%s %x): half applied", what, i, is.Kind, is.Request[:6])
		case found && is == nil:
			t.Errorf("%s: applied, yet output %d is not issued: half applied", what, i)
		case found && (is.Kind != kind || is.Request != op.key || !bytes.Equal(is.Sig, sigs[i]) || (kind == bank.KindWithdraw && is.Account != op.account)):
			t.Errorf("%s: output %d issued as %+v", what, i, is)
		}
	}
}

// checkSpent checks that op's inputs are all spent if op was applied
// (found), and none otherwise: the load never sends a coin twice.
func (c *cluster) checkSpent(t *testing.T, what string, op *loadOp, found bool) {
	t.Helper()
	var ids []ecash.Hash
	for _, hc := range op.inputs {
		ids = append(ids, hc.coin.ID())
	}
	spent, err := c.store.Spent(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	for i, sp := range spent {
		if sp != found {
			t.Errorf("%s: applied %v, but input %d spent %v: half applied", what, found, i, sp)
		}
	}
}

// unspentValue is the value of the coins the test knows of that the
// database holds issued and not spent.
func (c *cluster) unspentValue(t *testing.T) int64 {
	t.Helper()
	ctx := t.Context()
	var (
		ids   []ecash.Hash
		infos []coinInfo
	)
	for id, ci := range c.universe {
		ids, infos = append(ids, id), append(infos, ci)
	}
	var total int64
	for from := 0; from < len(ids); from += ecash.MaxCoinsPerRequest {
		to := min(from+ecash.MaxCoinsPerRequest, len(ids))
		spent, err := c.store.Spent(ctx, ids[from:to])
		if err != nil {
			t.Fatal(err)
		}
		var hs []ecash.Hash
		for _, ci := range infos[from:to] {
			if ci.blinded != nil {
				hs = append(hs, *ci.blinded)
			}
		}
		issued, err := c.store.Issued(ctx, hs)
		if err != nil {
			t.Fatal(err)
		}
		j := 0
		for i, ci := range infos[from:to] {
			isIssued := true // a wallet's acknowledged coin
			if ci.blinded != nil {
				isIssued = issued[j] != nil
				j++
			}
			if isIssued && !spent[i] {
				total += ci.value
			}
		}
	}
	return total
}

// runAudit runs "audit log --json" in this process and returns its exit
// code, report and stderr.
func runAudit(t *testing.T, args ...string) (int, *auditcmd.LogReport, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	code := cli.Run(t.Context(), auditcmd.Command(), env, append([]string{"log", "--json"}, args...))
	rep := &auditcmd.LogReport{}
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), rep); err != nil {
			t.Fatalf("the audit report is not JSON: %v\n%s", err, out.Bytes())
		}
	}
	return code, rep, errb.String()
}

// testReplicaAudit audits the log through each replica in turn, with one
// state file: the first run replays the whole log; each next one checks
// that its replica's checkpoint extends the previous one's and that there
// is nothing new. A fresh audit through the restarted replica replays it
// all again. Each must pass, and add up to what the steps did.
func testReplicaAudit(t *testing.T, c *cluster) {
	ctx := t.Context()
	size, err := c.store.LogSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	totals, err := c.store.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var balances int64
	for id, b := range totals {
		if id >= bank.FirstUserAccount {
			balances += b
		}
	}
	master := hex.EncodeToString(c.ks.MasterPub)
	state := filepath.Join(t.TempDir(), "bank.audit")
	var root string
	runs := []struct {
		replica int
		state   bool
	}{{0, true}, {1, true}, {2, true}, {1, false}}
	for i, run := range runs {
		info := c.reps[run.replica].serveInfo()
		args := []string{"--bank", info.Addr, "--pin", info.Fingerprint, "--master", master}
		if run.state {
			args = append(args, "--state", state)
		}
		t0 := time.Now()
		code, rep, stderr := runAudit(t, args...)
		what := fmt.Sprintf("audit %d through replica %d (state %v)", i, run.replica, run.state)
		if code != 0 || !rep.OK || rep.Failure != nil || rep.Summary == nil || rep.Checkpoint == nil {
			t.Fatalf("%s failed: exit %d, failure %+v\n%s", what, code, rep.Failure, stderr)
		}
		t.Logf("%s: %d entries, %d downloaded, in %s", what, rep.Checkpoint.Size, rep.Downloaded, time.Since(t0).Round(time.Millisecond))
		s := rep.Summary
		switch {
		case rep.Checkpoint.Size != size || s.Entries != size:
			t.Errorf("%s: checkpoint of %d entries, replayed %d; the database holds %d", what, rep.Checkpoint.Size, s.Entries, size)
		case root != "" && rep.Checkpoint.Root != root:
			t.Errorf("%s: root %s, another replica's was %s", what, rep.Checkpoint.Root, root)
		case i == 0 && rep.Downloaded != size:
			t.Errorf("%s downloaded %d entries of %d", what, rep.Downloaded, size)
		case run.state && i > 0 && (rep.ResumedAt != size || rep.Downloaded != 0):
			t.Errorf("%s resumed at %d and downloaded %d, want %d and 0", what, rep.ResumedAt, rep.Downloaded, size)
		}
		root = rep.Checkpoint.Root
		if s.WarningsTotal != 0 {
			t.Errorf("%s: warnings %v", what, s.Warnings)
		}
		for kind, n := range c.logged {
			if s.ByKind[kind] != n {
				t.Errorf("%s: %d %s entries, want %d (all: %v)", what, s.ByKind[kind], kind, n, s.ByKind)
			}
		}
		for name, want := range map[string]int64{
			"credited": c.credited, "outstanding": totals[bank.AccountOutstanding], "balances": balances,
		} {
			if s.Totals[name] != c.amount(want) {
				t.Errorf("%s: %s %s, the ledger says %s", what, name, s.Totals[name], c.amount(want))
			}
		}
	}
}

// testReplicaRevoke revokes the cent through replica 0. Replica 2, whose
// poll is an hour (startCluster), still serves the old key set; a
// withdrawal of a cent through it is refused all the same, since the
// database holds the revocation, and the refusal makes replica 2 adopt the
// revoked key set. Replica 1 (200 ms) adopts it by polling.
func testReplicaRevoke(t *testing.T, c *cluster) {
	ctx := t.Context()
	if len(c.reps) < 3 {
		t.Fatalf("%d replicas: the step needs three, with the polls startCluster gives them", len(c.reps))
	}
	var cent ecash.Hash
	found := false
	for _, d := range c.ks.Denominations {
		if d.Value.Value == 1 {
			cent, found = d.ID, true
		}
	}
	if !found {
		t.Fatalf("no one-cent denomination in %s", replicaDenoms)
	}
	serves := func(r *replica) bool {
		t.Helper()
		resp, err := r.client().GetKeys(ctx, &pb.GetKeysRequest{})
		if err != nil {
			t.Fatalf("replica %d: GetKeys: %v", r.n, err)
		}
		ks, err := ecash.DecodeKeySet(resp.SignedKeyset, c.ks.MasterPub)
		if err != nil {
			t.Fatalf("replica %d serves a key set that does not verify: %v", r.n, err)
		}
		return slices.Contains(ks.Revoked(), cent)
	}
	within := func(r *replica, d time.Duration) {
		t.Helper()
		for end := time.Now().Add(d); !serves(r); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("replica %d still serves the cent unrevoked after %s%s", r.n, d, c.logTail(r))
			}
		}
	}

	revoked := time.Now()
	if _, err := c.reps[0].adminClient().RevokeDenomination(ctx, &pb.RevokeDenominationRequest{Denomination: hex.EncodeToString(cent[:])}); err != nil {
		t.Fatalf("revoking the cent through replica 0: %v", err)
	}
	if !serves(c.reps[0]) {
		t.Fatal("replica 0 does not serve its own revocation")
	}
	within(c.reps[1], 10*time.Second)
	// Past the default poll: a replica 2 that ignored its flag would have
	// looked by now.
	time.Sleep(time.Until(revoked.Add(node.DefaultRevocationPoll + 500*time.Millisecond)))
	if serves(c.reps[2]) {
		t.Fatal("replica 2, polling hourly, serves the revocation before anything woke it: --revocation-poll is not applied")
	}

	w, err := wallet.Create(t.TempDir(), wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.SetAccount(c.openAccount(t, 2, "revoke wallet", w.AccountKey(), false, c.amount(1))); err != nil {
		t.Fatal(err)
	}
	_, err = w.Withdraw(ctx, c.reps[2].client(), ecash.Amount{Currency: c.ks.Currency, Value: 1}, nil)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "revoked") {
		t.Fatalf("withdrawing a revoked cent through replica 2: %v, want FAILED_PRECONDITION, denomination revoked", err)
	}
	within(c.reps[2], 10*time.Second)
}
