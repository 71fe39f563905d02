package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// TestBackupUnderLoad: a backup asked of the running bank through its admin
// listener while wallets keep withdrawing and paying holds every operation
// acknowledged before it was asked for; opened as a store, its ledger sums
// to zero; and a bank restored from it (the key file plus the backup as its
// ledger) serves.
func TestBackupUnderLoad(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	shop := e.startMerchant("shop")
	bankc := e.dialBank()

	// Some operations before the load.
	w0 := e.newWallet(t.TempDir(), "EUR:20.00")
	defer w0.Close()
	if _, err := w0.Withdraw(ctx, bankc, mustAmount(t, "EUR:5.00"), nil); err != nil {
		t.Fatal(err)
	}
	first, err := w0.Pay(ctx, bankc, shop.client, shop.node.Addr, shop.order(t, "EUR:1.50"), nil)
	if err != nil {
		t.Fatal(err)
	}

	// The load: each worker's wallet withdraws and pays small CS coins in
	// turn; what was acknowledged is recorded as it is.
	const workers = 4
	type worker struct {
		account   uint64
		withdraws int          // acknowledged withdrawals (one posting each)
		credits   []string     // references of acknowledged credits
		payments  []ecash.Hash // payment hashes of acknowledged deposits
		err       error
	}
	var (
		mu   sync.Mutex
		ws   [workers]worker
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	for i := range workers {
		w := e.newWallet(t.TempDir(), "")
		defer w.Close()
		if ws[i].account, err = w.Account(); err != nil {
			t.Fatal(err)
		}
		admin := e.admin
		wg.Go(func() {
			fail := func(err error) {
				mu.Lock()
				ws[i].err = err
				mu.Unlock()
			}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ref := fmt.Sprintf("load-%d-%d", i, n)
				if _, err := admin.Credit(ctx, &pb.CreditRequest{Account: ws[i].account, Amount: "EUR:0.03", Reference: ref}); err != nil {
					fail(err)
					return
				}
				mu.Lock()
				ws[i].credits = append(ws[i].credits, ref)
				mu.Unlock()
				if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:0.03"), nil); err != nil {
					fail(err)
					return
				}
				mu.Lock()
				ws[i].withdraws++
				mu.Unlock()
				order, err := shop.admin.CreateOrder(ctx, &pb.CreateOrderRequest{Amount: "EUR:0.03", Summary: ref})
				if err != nil {
					fail(err)
					return
				}
				r, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, order.OrderId, nil)
				if err != nil {
					fail(err)
					return
				}
				mu.Lock()
				ws[i].payments = append(ws[i].payments, r.PaymentHash)
				mu.Unlock()
			}
		})
	}
	// Let the load run, then note what was acknowledged and ask for the
	// backup while it carries on.
	progress := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, w := range ws {
			n += len(w.payments)
		}
		return n
	}
	for deadline := time.Now().Add(time.Minute); progress() < 2*workers && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	before := ws
	for i := range before {
		before[i].credits = append([]string(nil), ws[i].credits...)
		before[i].payments = append([]ecash.Hash(nil), ws[i].payments...)
	}
	mu.Unlock()
	backupDir := filepath.Join(t.TempDir(), "backup-1")
	client := AdminClient{Addr: e.bank.AdminAddr, Token: e.bank.Token}
	res, err := client.RequestBackup(ctx, backupDir)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	// The load goes on past the backup, then stops, and the bank stops.
	atBackup := progress()
	for deadline := time.Now().Add(time.Minute); progress() < atBackup+workers && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for i, w := range ws {
		if w.err != nil {
			t.Fatalf("worker %d: %v", i, w.err)
		}
	}
	if err := e.bank.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("backup %+v; %d payments acknowledged before it, %d after the load", res, atBackup, progress())
	if res.Path != backupDir || res.Files == 0 || res.Bytes == 0 || res.Accounts < 2+1+1+workers {
		t.Fatalf("backup result %+v", res)
	}

	r, err := pebblestore.Open(backupDir, pebblestore.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	totals, err := r.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, b := range totals {
		sum += b
	}
	if sum != 0 {
		t.Fatalf("the backup's ledger sums to %d", sum)
	}
	if _, _, ok, err := r.DepositRecord(ctx, first.PaymentHash); err != nil || !ok {
		t.Fatalf("the payment made before the load is missing: %v", err)
	}
	for i, w := range before {
		hist, err := r.History(ctx, w.account, 100_000)
		if err != nil {
			t.Fatal(err)
		}
		memos := map[string]bool{}
		withdraws := 0
		for _, p := range hist {
			memos[p.Memo] = true
			if p.Kind == "withdraw" {
				withdraws++
			}
		}
		if withdraws < w.withdraws {
			t.Fatalf("worker %d: %d withdrawals in the backup, %d acknowledged before it", i, withdraws, w.withdraws)
		}
		for _, h := range w.payments {
			if _, _, ok, err := r.DepositRecord(ctx, h); err != nil || !ok {
				t.Fatalf("worker %d: payment %x acknowledged before the backup is missing from it (%v)", i, h[:4], err)
			}
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// Restore: a new data directory with the key file and the backup as its
	// ledger. Every credit acknowledged before the backup is known to it: a
	// retry of one credits nothing.
	restored := t.TempDir()
	if err := os.WriteFile(filepath.Join(restored, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(backupDir, filepath.Join(restored, "ledger")); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: restored, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, err := transport.DialAdmin(b.AdminAddr, b.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin := pb.NewBankAdminClient(conn)
	for i, w := range before {
		acct, err := admin.GetAccount(ctx, &pb.GetAccountRequest{Account: w.account, HistoryLimit: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range w.credits {
			again, err := admin.Credit(ctx, &pb.CreditRequest{Account: w.account, Amount: "EUR:0.03", Reference: ref})
			if err != nil {
				t.Fatal(err)
			}
			if again.Balance != acct.Balance {
				t.Fatalf("worker %d: credit %s acknowledged before the backup was applied again after the restore: %s -> %s", i, ref, acct.Balance, again.Balance)
			}
		}
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestBackupRefusals: the endpoint wants the token, refuses an existing
// target and a relative path, and a bank on PostgreSQL refuses with a
// pointer to the database's own tools.
func TestBackupRefusals(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	client := AdminClient{Addr: e.bank.AdminAddr, Token: e.bank.Token}
	exists := t.TempDir()
	var be *BackupError
	if _, err := client.RequestBackup(ctx, exists); !errors.As(err, &be) || be.Status != http.StatusConflict {
		t.Fatalf("backup over an existing directory: %v", err)
	}
	if _, err := client.RequestBackup(ctx, filepath.Join(exists, "no", "parent")); !errors.As(err, &be) || be.Status != http.StatusInternalServerError {
		t.Fatalf("backup into a missing directory: %v", err)
	}
	bad := client
	bad.Token = strings.Repeat("0", 64)
	if _, err := bad.RequestBackup(ctx, filepath.Join(t.TempDir(), "b")); !errors.As(err, &be) || be.Status != http.StatusUnauthorized {
		t.Fatalf("backup with a wrong token: %v", err)
	}
	post := func(body string) int {
		req, _ := http.NewRequest("POST", "http://"+e.bank.AdminAddr+BackupPath, strings.NewReader(body))
		transport.SetToken(req, e.bank.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for body, want := range map[string]int{
		`{"to": "relative/dir"}`:   http.StatusBadRequest,
		`{"to": ""}`:               http.StatusBadRequest,
		`{"to": "/x", "extra": 1}`: http.StatusBadRequest,
		`not json`:                 http.StatusBadRequest,
	} {
		if got := post(body); got != want {
			t.Errorf("POST %s: %d, want %d", body, got, want)
		}
	}
	if resp, err := http.Get("http://" + e.bank.AdminAddr + BackupPath); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %v %v", BackupPath, resp.StatusCode, err)
	}

	// Over an admin listener with client certificates, the backup goes
	// through with the certificate.
	admins := newCA(t, "admins")
	cert, key := admins.issue(t, t.TempDir(), "operator", true)
	te := startTLSEnv(t, TLSOptions{AdminClientCAFile: admins.file})
	tc := AdminClient{Addr: te.bank.AdminAddr, Token: te.bank.Token, TLS: transport.ClientConfig{CAFile: te.bank.CertFile, CertFile: cert, KeyFile: key}}
	if _, err := tc.RequestBackup(ctx, filepath.Join(t.TempDir(), "b")); err != nil {
		t.Fatalf("backup over mutual TLS: %v", err)
	}
	tc.TLS.CertFile, tc.TLS.KeyFile = "", ""
	if _, err := tc.RequestBackup(ctx, filepath.Join(t.TempDir(), "b")); err == nil {
		t.Fatal("backup over TLS without a client certificate")
	}

	// A store that cannot checkpoint itself.
	rec := httptest.NewRecorder()
	(&Bank{}).backupHandler(quiet()).ServeHTTP(rec, httptest.NewRequest("POST", BackupPath, bytes.NewReader([]byte(`{"to": "/tmp/x"}`))))
	if rec.Code != http.StatusNotImplemented || !strings.Contains(rec.Body.String(), "pg_basebackup") {
		t.Fatalf("backup of a store without checkpoints: %d %s", rec.Code, rec.Body)
	}
}

// TestBackupPostgresRefused: a bank on PostgreSQL says to use the
// database's tools.
func TestBackupPostgresRefused(t *testing.T) {
	ctx := context.Background()
	dsn, err := pgtest.New(t).CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnvOn(t, dsn)
	_, err = AdminClient{Addr: e.bank.AdminAddr, Token: e.bank.Token}.RequestBackup(ctx, filepath.Join(t.TempDir(), "b"))
	var be *BackupError
	if !errors.As(err, &be) || be.Status != http.StatusNotImplemented || !strings.Contains(err.Error(), "pg_basebackup") || !strings.Contains(err.Error(), "pg_dump") {
		t.Fatalf("backup of a PostgreSQL bank: %v", err)
	}
}
