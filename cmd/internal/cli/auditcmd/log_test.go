package auditcmd_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/cli/auditcmd"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

var (
	logKeysOnce sync.Once
	logKeys     []byte
	logKeysErr  error
)

// logTestKeys is a key file (CS denominations from EUR 0.01 to EUR 10.00)
// made once per test binary.
func logTestKeys(t *testing.T) []byte {
	t.Helper()
	logKeysOnce.Do(func() {
		var specs []bank.DenomSpec
		for _, v := range []uint64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000} {
			specs = append(specs, bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: ecash.CipherCS})
		}
		k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs}, time.Now().Add(-time.Minute), rand.Reader)
		if err != nil {
			logKeysErr = err
			return
		}
		dir, err := os.MkdirTemp("", "auditlog-keys")
		if err != nil {
			logKeysErr = err
			return
		}
		defer os.RemoveAll(dir)
		if logKeysErr = k.Save(filepath.Join(dir, bank.KeysFile)); logKeysErr == nil {
			logKeys, logKeysErr = os.ReadFile(filepath.Join(dir, bank.KeysFile))
		}
	})
	if logKeysErr != nil {
		t.Fatal(logKeysErr)
	}
	return logKeys
}

// logBank is a bank node on loopback (TLS, Pebble store in dir/ledger).
type logBank struct {
	dir   string
	node  *node.Bank
	conn  *grpc.ClientConn
	bankc pb.BankClient
	once  sync.Once
}

func startLogBank(t *testing.T, dir string) *logBank {
	t.Helper()
	b, err := node.StartBank(node.BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := transport.Dial(b.Addr, transport.ClientConfig{Pin: b.Fingerprint})
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	lb := &logBank{dir: dir, node: b, conn: conn, bankc: pb.NewBankClient(conn)}
	t.Cleanup(lb.stop)
	return lb
}

func (lb *logBank) stop() {
	lb.once.Do(func() {
		lb.conn.Close()
		lb.node.Close()
	})
}

// audit runs "audit log --json" against the bank (or addr with
// --plaintext, if given) and returns the exit code, the report and stderr.
func (lb *logBank) audit(t *testing.T, args ...string) (int, *auditcmd.LogReport, string) {
	t.Helper()
	return runLogAudit(t, append([]string{"--bank", lb.node.Addr, "--pin", lb.node.Fingerprint}, args...)...)
}

func runLogAudit(t *testing.T, args ...string) (int, *auditcmd.LogReport, string) {
	t.Helper()
	root := &cli.Command{Name: "audit", Sub: []*cli.Command{auditcmd.LogCommand()}}
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	code := cli.Run(context.Background(), root, env, append([]string{"log", "--json"}, args...))
	rep := &auditcmd.LogReport{}
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), rep); err != nil {
			t.Fatalf("the report is not JSON: %v\n%s", err, out.Bytes())
		}
	}
	return code, rep, errb.String()
}

func mustOK(t *testing.T, code int, rep *auditcmd.LogReport, stderr string) {
	t.Helper()
	if code != 0 || !rep.OK || rep.Failure != nil {
		t.Fatalf("audit failed: exit %d, failure %+v\n%s", code, rep.Failure, stderr)
	}
	if rep.Summary.WarningsTotal != 0 {
		t.Errorf("warnings: %v", rep.Summary.Warnings)
	}
}

// mustFail checks that the audit failed with check, at entry (if entry >=
// 0), its message holding want.
func mustFail(t *testing.T, code int, rep *auditcmd.LogReport, stderr string, check string, entry int64, want string) {
	t.Helper()
	if code != 1 || rep.OK || rep.Failure == nil {
		t.Fatalf("audit did not fail: exit %d, report %+v\n%s", code, rep, stderr)
	}
	t.Logf("as expected: %s", strings.TrimSpace(stderr))
	f := rep.Failure
	if f.Check != check || !strings.Contains(f.Error, want) || !strings.Contains(stderr, want) {
		t.Fatalf("failure %+v\nstderr %s\nwant check %s, %q", f, stderr, check, want)
	}
	switch {
	case entry >= 0 && (f.Entry == nil || *f.Entry != entry):
		t.Fatalf("failure %+v names entry %v, want %d", f, f.Entry, entry)
	case entry < 0 && f.Entry != nil:
		t.Fatalf("failure %+v names entry %d", f, *f.Entry)
	}
}

// shop is a merchant with an account, served on loopback.
type shop struct {
	m      *merchant.Merchant
	client pb.MerchantClient
	acct   uint64
}

func (lb *logBank) newShop(t *testing.T) *shop {
	t.Helper()
	dir := t.TempDir()
	pub, err := merchant.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := lb.node.Bank.OpenAccount(context.Background(), "shop", pub, true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := merchant.Open(context.Background(), merchant.Config{Dir: dir, Account: acct, Bank: lb.bankc, FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	conn := serveLoopback(t, func(s *grpc.Server) { pb.RegisterMerchantServer(s, m.PublicServer()) })
	return &shop{m: m, client: pb.NewMerchantClient(conn), acct: acct}
}

func serveLoopback(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (lb *logBank) customer(t *testing.T, funds string) (*wallet.Wallet, uint64) {
	t.Helper()
	w, err := wallet.Create(t.TempDir(), wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	id, err := lb.node.Bank.OpenAccount(context.Background(), "customer", w.AccountKey(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetAccount(id); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.node.Bank.Credit(context.Background(), id, ecash.MustParseAmount(funds), "", ""); err != nil {
		t.Fatal(err)
	}
	return w, id
}

func (lb *logBank) pay(t *testing.T, w *wallet.Wallet, s *shop, amount string) {
	t.Helper()
	o, err := s.m.CreateOrder(ecash.MustParseAmount(amount), "order "+amount, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pay(context.Background(), lb.bankc, s.client, "shop", o.ID, nil); err != nil {
		t.Fatal(err)
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// ledger opens a stopped bank's Pebble store directly, as an attacker
// with the disk would (bank/pebblestore/log.go: l/<index> entries,
// h/<index> stored hashes, m/log-size).
type ledger struct {
	t  *testing.T
	db *pebble.DB
}

func openLedger(t *testing.T, dir string) *ledger {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, "ledger"), &pebble.Options{Logger: quietPebble{t}})
	if err != nil {
		t.Fatal(err)
	}
	return &ledger{t: t, db: db}
}

// quietPebble keeps Pebble's chatter out of the test output.
type quietPebble struct{ t *testing.T }

func (quietPebble) Infof(string, ...any)                {}
func (q quietPebble) Errorf(format string, args ...any) { q.t.Logf("pebble: "+format, args...) }
func (q quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

func (l *ledger) close() {
	if err := l.db.Close(); err != nil {
		l.t.Fatal(err)
	}
}

func ledgerKey(prefix string, i int64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefix), uint64(i))
}

func (l *ledger) get(k []byte) []byte {
	l.t.Helper()
	v, closer, err := l.db.Get(k)
	if err != nil {
		l.t.Fatalf("%q: %v", k, err)
	}
	defer closer.Close()
	return bytes.Clone(v)
}

func (l *ledger) size() int64 { return int64(binary.BigEndian.Uint64(l.get([]byte("m/log-size")))) }

func (l *ledger) entries() [][]byte {
	var out [][]byte
	for i := range l.size() {
		out = append(out, l.get(ledgerKey("l/", i)))
	}
	return out
}

// ReadHashes serves the stored hashes: a tlog.HashReader.
func (l *ledger) ReadHashes(ix []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ix))
	for i, x := range ix {
		copy(out[i][:], l.get(ledgerKey("h/", x)))
	}
	return out, nil
}

// find returns the index of the first entry for which match is true.
func (l *ledger) find(match func(auditlog.Op) bool) int64 {
	l.t.Helper()
	for i, b := range l.entries() {
		e, err := auditlog.DecodeEntry(b)
		if err != nil {
			l.t.Fatal(err)
		}
		if match(e.Op) {
			return int64(i)
		}
	}
	l.t.Fatal("no such entry")
	return -1
}

func (l *ledger) decode(i int64) *auditlog.Entry {
	l.t.Helper()
	e, err := auditlog.DecodeEntry(l.get(ledgerKey("l/", i)))
	if err != nil {
		l.t.Fatal(err)
	}
	return e
}

func (l *ledger) encode(e auditlog.Entry) []byte {
	l.t.Helper()
	b, err := e.Encode()
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

// put overwrites entry i, leaving the stored hashes as they were.
func (l *ledger) put(i int64, b []byte) {
	l.t.Helper()
	if err := l.db.Set(ledgerKey("l/", i), b, pebble.Sync); err != nil {
		l.t.Fatal(err)
	}
}

// rewrite replaces the whole log with entries and recomputes every stored
// hash: a history rewritten with care.
func (l *ledger) rewrite(entries [][]byte) {
	l.t.Helper()
	a := auditlog.NewAppender(0, nil)
	for _, b := range entries {
		if _, err := a.AppendEncoded(b); err != nil {
			l.t.Fatal(err)
		}
	}
	first, hs := a.Pending()
	batch := l.db.NewBatch()
	for i, b := range entries {
		batch.Set(ledgerKey("l/", int64(i)), b, nil)
	}
	batch.DeleteRange(ledgerKey("l/", int64(len(entries))), ledgerKey("l/", 1<<62), nil)
	for i, h := range hs {
		batch.Set(ledgerKey("h/", first+int64(i)), h[:], nil)
	}
	batch.DeleteRange(ledgerKey("h/", first+int64(len(hs))), ledgerKey("h/", 1<<62), nil)
	batch.Set([]byte("m/log-size"), binary.BigEndian.AppendUint64(nil, uint64(len(entries))), nil)
	if err := batch.Commit(pebble.Sync); err != nil {
		l.t.Fatal(err)
	}
}

// appendOp appends an entry with its stored hashes, as the store would:
// an entry slipped in under the log.
func (l *ledger) appendOp(op auditlog.Op) int64 {
	l.t.Helper()
	n := l.size()
	b := l.encode(auditlog.Entry{Index: n, Time: time.Now(), Op: op})
	hs, err := auditlog.StoredHashes(n, b, l)
	if err != nil {
		l.t.Fatal(err)
	}
	batch := l.db.NewBatch()
	batch.Set(ledgerKey("l/", n), b, nil)
	for i, h := range hs {
		batch.Set(ledgerKey("h/", tlog.StoredHashIndex(0, n)+int64(i)), h[:], nil)
	}
	batch.Set([]byte("m/log-size"), binary.BigEndian.AppendUint64(nil, uint64(n+1)), nil)
	if err := batch.Commit(pebble.Sync); err != nil {
		l.t.Fatal(err)
	}
	return n
}

// TestLogAudit runs a real bank through withdrawals, payments, swaps,
// returns and NetBill checks, audits its log, audits it again incrementally
// after more operations, then tampers with the stored log in each way an
// operator with the disk could and sees every audit fail, naming the entry.
func TestLogAudit(t *testing.T) {
	ctx := context.Background()
	pristine := t.TempDir()
	if err := os.WriteFile(filepath.Join(pristine, bank.KeysFile), logTestKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	lb := startLogBank(t, pristine)
	sh := lb.newShop(t)
	alice, aliceID := lb.customer(t, "EUR:20.00")
	if _, err := alice.Withdraw(ctx, lb.bankc, ecash.MustParseAmount("EUR:8.00"), nil); err != nil {
		t.Fatal(err)
	}
	lb.pay(t, alice, sh, "EUR:1.50")
	if _, err := alice.Swap(ctx, lb.bankc, ecash.MustParseAmount("EUR:2.00")); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Return(ctx, lb.bankc, ecash.MustParseAmount("EUR:1.00")); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WriteCheck(ctx, lb.bankc, sh.client, ecash.MustParseAmount("EUR:3.00"), "rent"); err != nil {
		t.Fatal(err)
	}
	var declined *wallet.DeclinedError
	if _, err := alice.WriteCheck(ctx, lb.bankc, sh.client, ecash.MustParseAmount("EUR:500.00"), ""); !errors.As(err, &declined) {
		t.Fatalf("a check beyond the balance: %v", err)
	}

	// The first audit trusts the master key on first use and keeps it.
	state := filepath.Join(t.TempDir(), "bank.audit")
	code, rep, stderr := lb.audit(t, "--state", state)
	mustOK(t, code, rep, stderr)
	n1 := rep.Checkpoint.Size
	if rep.ResumedAt != 0 || rep.Downloaded != n1 || rep.Summary.Entries != n1 || rep.MasterFrom != "trusted on first use" ||
		!strings.Contains(stderr, "trusting the bank's master key") {
		t.Fatalf("first audit: %+v\n%s", rep, stderr)
	}
	s := rep.Summary
	for kind, want := range map[string]int64{"keyset": 1, "account-opened": 2, "credit": 1, "withdraw": 1, "deposit": 2, "swap": 1, "check": 2} {
		if s.ByKind[kind] != want {
			t.Errorf("%d %s entries, want %d (%v)", s.ByKind[kind], kind, want, s.ByKind)
		}
	}
	if s.ChecksOK != 1 || s.ChecksNo != 1 || s.Totals["credited"] != "EUR:20.00" || s.Totals["withdrawn"] != "EUR:8.00" ||
		s.Totals["checks"] != "EUR:3.00" || s.Totals["deposited"] != "EUR:2.50" || s.Totals["outstanding"] != "EUR:5.50" {
		t.Errorf("summary %+v", s)
	}
	state1 := copyFile(t, state)
	// Nothing new: nothing to download.
	code, rep, stderr = lb.audit(t, "--state", state)
	mustOK(t, code, rep, stderr)
	if rep.ResumedAt != n1 || rep.Downloaded != 0 || rep.MasterFrom != "--state "+state {
		t.Fatalf("audit with nothing new: %+v", rep)
	}
	cpFile := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.WriteFile(cpFile, []byte(rep.Checkpoint.Signed), 0o600); err != nil {
		t.Fatal(err)
	}

	// More operations: the next audit downloads only them.
	bob, _ := lb.customer(t, "EUR:15.00")
	if _, err := bob.Withdraw(ctx, lb.bankc, ecash.MustParseAmount("EUR:6.00"), nil); err != nil {
		t.Fatal(err)
	}
	lb.pay(t, bob, sh, "EUR:2.50")
	lb.pay(t, alice, sh, "EUR:0.75")
	code, rep, stderr = lb.audit(t, "--state", state)
	mustOK(t, code, rep, stderr)
	n2 := rep.Checkpoint.Size
	if rep.ResumedAt != n1 || rep.Downloaded != n2-n1 || rep.Summary.Entries != n2 || n2 <= n1 || rep.Previous.Size != n1 {
		t.Fatalf("incremental audit: %+v", rep)
	}
	state2 := copyFile(t, state)
	master := rep.MasterKey
	// A denomination without coins in circulation, for the forgery below.
	var idle *ecash.Amount
	for _, d := range rep.Summary.Denominations {
		if d.Outstanding == 0 {
			v := ecash.MustParseAmount(d.Value)
			idle = &v
			break
		}
	}
	if idle == nil {
		t.Fatal("every denomination has coins out")
	}
	// From scratch, pinned, in small batches, extending a kept checkpoint.
	code, rep, stderr = lb.audit(t, "--master", master, "--from", cpFile, "--batch", "3")
	mustOK(t, code, rep, stderr)
	if rep.Downloaded != n2 || rep.From.Size != n1 || rep.MasterFrom != "--master" {
		t.Fatalf("audit from scratch: %+v", rep)
	}
	// The text report.
	root := &cli.Command{Name: "audit", Sub: []*cli.Command{auditcmd.LogCommand()}}
	var out bytes.Buffer
	if code := cli.Run(ctx, root, &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out},
		[]string{"log", "--bank", lb.node.Addr, "--pin", lb.node.Fingerprint, "--master", master}); code != 0 {
		t.Fatalf("text report: exit %d\n%s", code, out.String())
	}
	t.Logf("the text report:\n%s", out.String())
	for _, want := range []string{"OK: ", "e-cash outstanding", "DENOMINATION", "not checkable from the log",
		"what each debit bought", "each coin spent", "every operation", "re-served differently"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the text report lacks %q:\n%s", want, out.String())
		}
	}
	// The authorised check verifies each debit's signature: the report must
	// not list it as beyond the log (docs/AUDIT.md, "What it cannot check").
	for _, x := range rep.NotChecked {
		if strings.Contains(x, "authorised by the account holder") {
			t.Errorf("not_checked lists a check the audit makes: %q", x)
		}
	}
	lb.stop()

	// Each tampering starts from a copy of the untouched bank directory.
	tampered := func(t *testing.T, edit func(l *ledger)) *logBank {
		t.Helper()
		dir := t.TempDir()
		copyTree(t, pristine, dir)
		l := openLedger(t, dir)
		edit(l)
		l.close()
		return startLogBank(t, dir)
	}
	isCredit := func(acct uint64) func(auditlog.Op) bool {
		return func(op auditlog.Op) bool { c, ok := op.(auditlog.Credit); return ok && c.Account == acct }
	}

	t.Run("changed amount", func(t *testing.T) {
		// Bob's credit, after the first audit, gains a euro; the stored
		// hashes still commit to the real one.
		var at int64
		b := tampered(t, func(l *ledger) {
			at = l.find(func(op auditlog.Op) bool { c, ok := op.(auditlog.Credit); return ok && c.Account != aliceID })
			e := l.decode(at)
			c := e.Op.(auditlog.Credit)
			c.Amount.Value += 100
			e.Op = c
			l.put(at, l.encode(*e))
		})
		if at < n1 {
			t.Fatalf("bob's credit is entry %d, before %d", at, n1)
		}
		want := "the entry the bank serves is not the one its signed checkpoint"
		code, rep, stderr := b.audit(t, "--state", copyFile(t, state1), "--batch", "4")
		mustFail(t, code, rep, stderr, auditlog.CheckTree, at, want)
		if !strings.Contains(stderr, "entry ") || rep.Failure.Kind != "credit" {
			t.Errorf("stderr %s, failure %+v", stderr, rep.Failure)
		}
		code, rep, stderr = b.audit(t, "--master", master)
		mustFail(t, code, rep, stderr, auditlog.CheckTree, at, want)
	})

	t.Run("rewritten history", func(t *testing.T) {
		// Alice's credit is changed and every hash recomputed: a log
		// consistent in itself, but not with what the auditor saw.
		b := tampered(t, func(l *ledger) {
			es := l.entries()
			at := l.find(isCredit(aliceID))
			e := l.decode(at)
			c := e.Op.(auditlog.Credit)
			c.Amount.Value += 100
			e.Op = c
			es[at] = l.encode(*e)
			l.rewrite(es)
		})
		for _, st := range []string{state1, state2} {
			code, rep, stderr := b.audit(t, "--state", copyFile(t, st))
			mustFail(t, code, rep, stderr, "fork", -1, "not consistent with the checkpoint saved in --state")
			f := rep.Failure.Fork
			if f == nil || !strings.Contains(f.Older, "\n\n— ") || !strings.Contains(f.Newer, "\n\n— ") {
				t.Fatalf("no evidence: %+v", rep.Failure)
			}
		}
	})

	t.Run("removed entry", func(t *testing.T) {
		// Alice's credit is removed, the later entries renumbered and every
		// hash recomputed.
		var withdrawAt int64
		b := tampered(t, func(l *ledger) {
			at := l.find(isCredit(aliceID))
			withdrawAt = l.find(func(op auditlog.Op) bool { w, ok := op.(auditlog.Withdraw); return ok && w.Account == aliceID })
			var es [][]byte
			for i, raw := range l.entries() {
				switch {
				case int64(i) < at:
					es = append(es, raw)
				case int64(i) > at:
					e := l.decode(int64(i))
					e.Index--
					es = append(es, l.encode(*e))
				}
			}
			l.rewrite(es)
		})
		code, rep, stderr := b.audit(t, "--state", copyFile(t, state2))
		mustFail(t, code, rep, stderr, "fork", -1, "entry "+strconv.FormatInt(n2-1, 10)+" is gone")
		// Audited afresh, the history no longer adds up where the money
		// was spent.
		code, rep, stderr = b.audit(t, "--master", master)
		mustFail(t, code, rep, stderr, auditlog.CheckBalance, withdrawAt-1, "would go below zero")
	})

	t.Run("second spend slipped in", func(t *testing.T) {
		var at, paidAt int64
		b := tampered(t, func(l *ledger) {
			paidAt = l.find(func(op auditlog.Op) bool { d, ok := op.(auditlog.Deposit); return ok && d.Merchant == sh.acct })
			d := l.decode(paidAt).Op.(auditlog.Deposit)
			d.PaymentHash = ecash.HashOf([]byte("another payment"))
			at = l.appendOp(d)
		})
		code, rep, stderr := b.audit(t, "--state", copyFile(t, state2))
		mustFail(t, code, rep, stderr, auditlog.CheckDoubleSpend, at, "was already spent in entry ")
		if rep.Downloaded != 0 || rep.ResumedAt != n2 || at != n2 || !strings.Contains(stderr, "already spent in entry "+strconv.FormatInt(paidAt, 10)) {
			t.Fatalf("report %+v\n%s", rep, stderr)
		}
	})

	t.Run("forged coin", func(t *testing.T) {
		var at int64
		b := tampered(t, func(l *ledger) {
			ks, err := ecash.DecodeKeySet(l.decode(0).Op.(auditlog.KeySet).Signed, nil)
			if err != nil {
				t.Fatal(err)
			}
			d, err := ks.CurrentDenomination(*idle, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			at = l.appendOp(auditlog.Deposit{Merchant: sh.acct, Amount: d.Value, PaymentHash: ecash.HashOf([]byte("forged payment")),
				Coins: []auditlog.SpentCoin{{ID: ecash.HashOf([]byte("forged coin")), Denom: d.ID, Value: d.Value, PermissionHash: ecash.HashOf([]byte("p"))}}})
		})
		code, rep, stderr := b.audit(t, "--state", copyFile(t, state2))
		mustFail(t, code, rep, stderr, auditlog.CheckEmergency, at, "redeemed, only")
		if !rep.Failure.Emergency || !strings.Contains(stderr, "audit: EMERGENCY: entry ") {
			t.Fatalf("not an emergency: %+v\n%s", rep.Failure, stderr)
		}
		// The state kept what was audited: the next run fails at once.
		st := copyFile(t, state2)
		b.audit(t, "--state", st)
		code, rep, stderr = b.audit(t, "--state", st)
		mustFail(t, code, rep, stderr, auditlog.CheckEmergency, at, "redeemed, only")
		if rep.ResumedAt != at || rep.Downloaded != 0 {
			t.Fatalf("rerun: %+v", rep)
		}
	})

	t.Run("forged debit", func(t *testing.T) {
		// A withdrawal from alice's account for a request she never
		// signed: her signature of another withdrawal, moved under
		// another request hash; then a check she never signed.
		var at int64
		b := tampered(t, func(l *ledger) {
			w := l.decode(l.find(func(op auditlog.Op) bool { w, ok := op.(auditlog.Withdraw); return ok && w.Account == aliceID })).Op.(auditlog.Withdraw)
			w.RequestHash = ecash.HashOf([]byte("a request alice never signed"))
			at = l.appendOp(w)
		})
		code, rep, stderr := b.audit(t, "--state", copyFile(t, state2))
		mustFail(t, code, rep, stderr, auditlog.CheckAuthorised, at, "withdrawal is not signed by the key of account "+strconv.FormatUint(aliceID, 10))
		if rep.Failure.Kind != "withdraw" || !strings.Contains(stderr, "entry "+strconv.FormatInt(at, 10)) {
			t.Fatalf("failure %+v\n%s", rep.Failure, stderr)
		}
		b = tampered(t, func(l *ledger) {
			at = l.appendOp(auditlog.Check{EPOID: strconv.FormatUint(sh.acct, 10) + "-1-1", EPOHash: ecash.HashOf([]byte("an order alice never signed")),
				CustomerSig: make([]byte, 64), Customer: aliceID, Merchant: sh.acct, Amount: ecash.MustParseAmount("EUR:0.01"), Outcome: auditlog.OutcomeApproved})
		})
		code, rep, stderr = b.audit(t, "--state", copyFile(t, state2))
		mustFail(t, code, rep, stderr, auditlog.CheckAuthorised, at, "payment order "+strconv.FormatUint(sh.acct, 10)+"-1-1 is not signed by the key of account")
	})

	t.Run("rewritten checkpoint", func(t *testing.T) {
		b := tampered(t, func(*ledger) {})
		other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
		rewrites := map[string]func(signed []byte) []byte{
			"signature bit flipped": func(signed []byte) []byte {
				text, name, sig := splitNote(t, signed)
				sig[len(sig)-1] ^= 1
				return joinNote(text, name, sig)
			},
			"size changed under the signature": func(signed []byte) []byte {
				text, name, sig := splitNote(t, signed)
				lines := strings.SplitN(text, "\n", 3)
				lines[1] += "0"
				return joinNote(strings.Join(lines, "\n"), name, sig)
			},
			"signed by another key": func(signed []byte) []byte {
				text, name, _ := splitNote(t, signed)
				s, err := auditlog.NewSigner(name, other)
				if err != nil {
					t.Fatal(err)
				}
				out, err := note.Sign(&note.Note{Text: text}, s)
				if err != nil {
					t.Fatal(err)
				}
				return out
			},
		}
		for name, rewrite := range rewrites {
			t.Run(name, func(t *testing.T) {
				addr := startProxy(t, b, rewrite)
				code, rep, stderr := runLogAudit(t, "--bank", addr, "--plaintext", "--state", copyFile(t, state2))
				mustFail(t, code, rep, stderr, "checkpoint", -1, "the bank's checkpoint is refused")
				if !strings.Contains(stderr, "not signed by the bank's log key") {
					t.Errorf("stderr %s", stderr)
				}
			})
		}
		// A checkpoint rewritten in the saved state or in a --from file.
		var sf map[string]any
		st := copyFile(t, state2)
		raw, _ := os.ReadFile(st)
		if err := json.Unmarshal(raw, &sf); err != nil {
			t.Fatal(err)
		}
		text, name, sig := splitNote(t, []byte(sf["checkpoint"].(string)))
		sig[len(sig)-1] ^= 1
		sf["checkpoint"] = string(joinNote(text, name, sig))
		raw, _ = json.Marshal(sf)
		os.WriteFile(st, raw, 0o600)
		code, _, stderr := b.audit(t, "--state", st)
		if code != 1 || !strings.Contains(stderr, "the checkpoint saved in --state") || !strings.Contains(stderr, "is refused") {
			t.Fatalf("a rewritten saved checkpoint: exit %d\n%s", code, stderr)
		}
		bad := filepath.Join(t.TempDir(), "cp")
		os.WriteFile(bad, joinNote(text, name, sig), 0o600)
		code, _, stderr = b.audit(t, "--from", bad)
		if code != 1 || !strings.Contains(stderr, "--from") || !strings.Contains(stderr, "not signed by the bank's log key") {
			t.Fatalf("a rewritten --from checkpoint: exit %d\n%s", code, stderr)
		}
	})
}

// splitNote splits a signed note with one signature into its text, the
// signer's name and the signature bytes (key hash first).
func splitNote(t *testing.T, signed []byte) (text, name string, sig []byte) {
	t.Helper()
	text, sigs, ok := strings.Cut(string(signed), "\n\n")
	if !ok {
		t.Fatalf("not a note: %q", signed)
	}
	fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sigs), "— "))
	if len(fields) != 2 {
		t.Fatalf("signature line %q", sigs)
	}
	sig, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		t.Fatal(err)
	}
	return text + "\n", fields[0], sig
}

func joinNote(text, name string, sig []byte) []byte {
	return []byte(text + "\n— " + name + " " + base64.StdEncoding.EncodeToString(sig) + "\n")
}

// startProxy serves the bank's key set and audit log on loopback, with
// every checkpoint passed through rewrite: a man in the middle, or a bank
// that edits its checkpoints.
func startProxy(t *testing.T, b *logBank, rewrite func([]byte) []byte) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterBankServer(s, &bankProxy{c: b.bankc})
	pb.RegisterAuditLogServer(s, &logProxy{c: pb.NewAuditLogClient(b.conn), rewrite: rewrite})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

type bankProxy struct {
	pb.UnimplementedBankServer
	c pb.BankClient
}

func (p *bankProxy) GetKeys(ctx context.Context, in *pb.GetKeysRequest) (*pb.GetKeysResponse, error) {
	return p.c.GetKeys(ctx, in)
}

type logProxy struct {
	pb.UnimplementedAuditLogServer
	c       pb.AuditLogClient
	rewrite func([]byte) []byte
}

func (p *logProxy) GetCheckpoint(ctx context.Context, in *pb.GetCheckpointRequest) (*pb.GetCheckpointResponse, error) {
	r, err := p.c.GetCheckpoint(ctx, in)
	if err != nil {
		return nil, err
	}
	return &pb.GetCheckpointResponse{Checkpoint: p.rewrite(r.Checkpoint)}, nil
}

func (p *logProxy) GetLogEntries(ctx context.Context, in *pb.GetLogEntriesRequest) (*pb.GetLogEntriesResponse, error) {
	return p.c.GetLogEntries(ctx, in)
}

func (p *logProxy) GetInclusionProof(ctx context.Context, in *pb.GetInclusionProofRequest) (*pb.LogProof, error) {
	return p.c.GetInclusionProof(ctx, in)
}

func (p *logProxy) GetConsistencyProof(ctx context.Context, in *pb.GetConsistencyProofRequest) (*pb.LogProof, error) {
	return p.c.GetConsistencyProof(ctx, in)
}

// fakeLogBank serves a key set and a log held in memory: what a test needs
// to change keys and history at will.
type fakeLogBank struct {
	pb.UnimplementedAuditLogServer
	mu     sync.Mutex
	log    *auditlog.MemLog
	keyset []byte
	origin string
	signer note.Signer
	// maxCount > 0 refuses larger reads as too large for one message;
	// breakAt > 0 fails reads from that index on, as a broken link.
	maxCount uint32
	breakAt  int64
}

type fakeKeys struct {
	pb.UnimplementedBankServer
	f *fakeLogBank
}

func (k fakeKeys) GetKeys(context.Context, *pb.GetKeysRequest) (*pb.GetKeysResponse, error) {
	k.f.mu.Lock()
	defer k.f.mu.Unlock()
	return &pb.GetKeysResponse{SignedKeyset: k.f.keyset}, nil
}

func (f *fakeLogBank) GetCheckpoint(context.Context, *pb.GetCheckpointRequest) (*pb.GetCheckpointResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp, err := f.log.Checkpoint(f.origin)
	if err != nil {
		return nil, err
	}
	signed, err := auditlog.SignCheckpoint(cp, f.signer)
	return &pb.GetCheckpointResponse{Checkpoint: signed}, err
}

func (f *fakeLogBank) GetLogEntries(_ context.Context, in *pb.GetLogEntriesRequest) (*pb.GetLogEntriesResponse, error) {
	f.mu.Lock()
	maxCount, breakAt := f.maxCount, f.breakAt
	f.mu.Unlock()
	if maxCount > 0 && in.Count > maxCount {
		return nil, status.Error(codes.ResourceExhausted, "message too large (simulated)")
	}
	if breakAt > 0 && in.From >= breakAt {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	out := &pb.GetLogEntriesResponse{}
	for i := in.From; i < f.log.Size() && len(out.Entries) < int(in.Count); i++ {
		b, err := f.log.Entry(i)
		if err != nil {
			return nil, err
		}
		out.Entries = append(out.Entries, b)
	}
	return out, nil
}

func (f *fakeLogBank) GetConsistencyProof(_ context.Context, in *pb.GetConsistencyProofRequest) (*pb.LogProof, error) {
	p, err := auditlog.ProveConsistency(in.OldSize, in.NewSize, f.log)
	if err != nil {
		return nil, err
	}
	out := &pb.LogProof{}
	for _, h := range p {
		out.Hashes = append(out.Hashes, bytes.Clone(h[:]))
	}
	return out, nil
}

// serve publishes ks (and logs it) and signs checkpoints with signing.
func (f *fakeLogBank) serve(t *testing.T, ks *ecash.KeySet, signing ed25519.PrivateKey, at time.Time) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keyset = ks.Encode()
	f.origin = auditlog.Origin(ks.BankID())
	s, err := auditlog.NewSigner(f.origin, signing)
	if err != nil {
		t.Fatal(err)
	}
	f.signer = s
	if _, err := f.log.Append(auditlog.KeySet{Signed: f.keyset}, at); err != nil {
		t.Fatal(err)
	}
}

// TestLogAuditKeyRotation: a checkpoint saved under the bank's previous
// signing key still anchors the next audit once the master key vouches for
// the new one, and a fork across the rotation is still a fork.
func TestLogAuditKeyRotation(t *testing.T) {
	seed := func(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)) }
	master, k1, k2 := seed(1), seed(2), seed(3)
	now := time.Now().Truncate(time.Second)
	dk, err := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	d := ecash.Denomination{ID: ecash.DenominationID(eur(100), dk.Public()), Value: eur(100), Key: dk.Public(),
		WithdrawStart: now.Add(-time.Hour), WithdrawEnd: now.Add(time.Hour), DepositEnd: now.Add(2 * time.Hour)}
	hpke := bytes.Repeat([]byte{9}, 32)
	ks1 := &ecash.KeySet{Currency: "EUR", MasterPub: master.Public().(ed25519.PublicKey), SigningPub: k1.Public().(ed25519.PublicKey),
		HPKEPub: hpke, IssuedAt: now, Denominations: []ecash.Denomination{d}}
	ks1.Sign(master)
	ks2 := *ks1
	ks2.SigningPub = k2.Public().(ed25519.PublicKey)
	ks2.PastSigning = []ecash.SigningKey{{Pub: k1.Public().(ed25519.PublicKey), ValidFrom: now.Add(-time.Hour), ValidUntil: now}}
	ks2.IssuedAt = now.Add(time.Second) // a changed key set is issued later (the auditor warns otherwise)
	ks2.Sign(master)

	f := &fakeLogBank{log: auditlog.NewMemLog()}
	f.serve(t, ks1, k1, now)
	ops := []auditlog.Op{
		auditlog.AccountOpened{Account: 1000, Key: seed(0x11).Public().(ed25519.PublicKey)},
		auditlog.Credit{Account: 1000, Amount: eur(500)},
		auditlog.Withdraw{Account: 1000, Amount: eur(300), RequestHash: ecash.HashOf([]byte("w")),
			AccountSig: ed25519.Sign(seed(0x11), ecash.WithdrawSignatureInput(1000, eur(300), ecash.HashOf([]byte("w")))),
			Issued:     []auditlog.DenomCount{{Denom: d.ID, Value: d.Value, Count: 3}}},
	}
	for _, op := range ops {
		if _, err := f.log.Append(op, now); err != nil {
			t.Fatal(err)
		}
	}
	conn := serveLoopback(t, func(s *grpc.Server) {
		pb.RegisterAuditLogServer(s, f)
		pb.RegisterBankServer(s, fakeKeys{f: f})
	})
	addr := conn.Target()
	state := filepath.Join(t.TempDir(), "state")
	args := []string{"--bank", addr, "--plaintext", "--master", hex.EncodeToString(ks1.MasterPub), "--state", state}
	code, rep, stderr := runLogAudit(t, args...)
	mustOK(t, code, rep, stderr)
	beforeRotation := copyFile(t, state)

	// The signing key rotates: the new key set is logged, more happens.
	f.serve(t, &ks2, k2, now)
	if _, err := f.log.Append(auditlog.Deposit{Merchant: 1000, Amount: eur(100), PaymentHash: ecash.HashOf([]byte("p")),
		Coins: []auditlog.SpentCoin{{ID: ecash.HashOf([]byte("c")), Denom: d.ID, Value: d.Value}}}, now); err != nil {
		t.Fatal(err)
	}
	code, rep, stderr = runLogAudit(t, args...)
	mustOK(t, code, rep, stderr)
	if rep.ResumedAt != 4 || rep.Downloaded != 2 || rep.Summary.KeySets != 2 || rep.Summary.SigningKeys != 2 {
		t.Fatalf("after the rotation: %+v", rep)
	}

	// A history rewritten after the rotation does not extend the checkpoint
	// signed before it.
	forked := auditlog.NewMemLog()
	for i := range f.log.Size() {
		b, _ := f.log.Entry(i)
		if i == 2 {
			e, _ := auditlog.DecodeEntry(b)
			c := e.Op.(auditlog.Credit)
			c.Amount = eur(600)
			e.Op = c
			b, _ = e.Encode()
		}
		if _, err := forked.AppendEncoded(b); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	f.log = forked
	f.mu.Unlock()
	code, rep, stderr = runLogAudit(t, append(args[:len(args)-1], beforeRotation)...)
	mustFail(t, code, rep, stderr, "fork", -1, "not consistent with the checkpoint saved in --state")
	if rep.Failure.Fork == nil || !strings.Contains(rep.Failure.Fork.Older, "\n4\n") {
		t.Fatalf("evidence %+v", rep.Failure.Fork)
	}

	// A saved checkpoint signed by a key no key set vouches for is refused.
	var sf map[string]any
	raw, _ := os.ReadFile(beforeRotation)
	json.Unmarshal(raw, &sf)
	sf["checkpoint_key"] = hex.EncodeToString(seed(4).Public().(ed25519.PublicKey))
	raw, _ = json.Marshal(sf)
	bad := filepath.Join(t.TempDir(), "state")
	os.WriteFile(bad, raw, 0o600)
	code, _, stderr = runLogAudit(t, append(args[:len(args)-1], bad)...)
	if code != 1 || !strings.Contains(stderr, "no key set of the bank vouches for") {
		t.Fatalf("exit %d: %s", code, stderr)
	}

	// Usage errors, and a pin that disagrees with the state.
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--plaintext"}, 2, "--bank"},
		{[]string{"--bank", addr}, 2, "say how to trust the bank"},
		{[]string{"--bank", addr, "--plaintext", "--batch", "2000"}, 2, "--batch must be from 1 to 1024"},
		{[]string{"--bank", addr, "--plaintext", "--master", "abcd"}, 2, "bad --master"},
		{[]string{"--bank", addr, "--plaintext", "--master", hex.EncodeToString(seed(5).Public().(ed25519.PublicKey)), "--state", state}, 1, "audits the bank with master key"},
		{[]string{"--bank", addr, "--plaintext", "--master", hex.EncodeToString(seed(5).Public().(ed25519.PublicKey))}, 1,
			fmt.Sprintf("unexpected master key %x (expected %x)", ks1.MasterPub, seed(5).Public())},
	} {
		code, _, stderr := runLogAudit(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %s; want %d, %q", c.args, code, stderr, c.code, c.want)
		}
	}
}

// TestLogAuditInterrupted: batches too large for one message are halved,
// and an audit cut off part way keeps what it verified and resumes there.
func TestLogAuditInterrupted(t *testing.T) {
	seed := func(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)) }
	master, signing := seed(1), seed(2)
	now := time.Now().Truncate(time.Second)
	ks := &ecash.KeySet{Currency: "EUR", MasterPub: master.Public().(ed25519.PublicKey), SigningPub: signing.Public().(ed25519.PublicKey),
		HPKEPub: bytes.Repeat([]byte{9}, 32), IssuedAt: now}
	ks.Sign(master)
	f := &fakeLogBank{log: auditlog.NewMemLog(), maxCount: 16, breakAt: 40}
	f.serve(t, ks, signing, now)
	for i := range 99 {
		id := uint64(1000 + i)
		for _, op := range []auditlog.Op{
			auditlog.AccountOpened{Account: id, Key: seed(byte(0x10 + i)).Public().(ed25519.PublicKey)},
			auditlog.Credit{Account: id, Amount: ecash.Amount{Currency: "EUR", Value: uint64(100 + i)}},
		} {
			if _, err := f.log.Append(op, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	conn := serveLoopback(t, func(s *grpc.Server) {
		pb.RegisterAuditLogServer(s, f)
		pb.RegisterBankServer(s, fakeKeys{f: f})
	})
	state := filepath.Join(t.TempDir(), "state")
	args := []string{"--bank", conn.Target(), "--plaintext", "--state", state}
	code, rep, stderr := runLogAudit(t, args...)
	// Batches of 199, 99, 49, 24 entries are too large; 12 fit, and are
	// kept: 0, 12, 24, 36, then the link breaks at 48.
	if code != 1 || !strings.Contains(stderr, "fetching log entries from 48: unreachable") || rep.Failure != nil {
		t.Fatalf("exit %d, %+v\n%s", code, rep.Failure, stderr)
	}
	f.mu.Lock()
	f.breakAt = 0
	f.mu.Unlock()
	code, rep, stderr = runLogAudit(t, args...)
	mustOK(t, code, rep, stderr)
	if rep.ResumedAt != 48 || rep.Downloaded != 199-48 || rep.Summary.Accounts != 99 || rep.Summary.Totals["credited"] != "EUR:147.51" {
		t.Fatalf("resumed audit: %+v", rep)
	}
}

// TestBadMasterIsUsage: a malformed --master is a usage error (exit 2), as
// docs/AUDIT.md says, in every command that takes one.
func TestBadMasterIsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"keys", "--keys", "ks.signed", "--master", "00"},
		{"transcript", "--keys", "ks.signed", "--master", "00", "t.jsonl"},
		{"log", "--bank", "127.0.0.1:1", "--plaintext", "--master", "00"},
	} {
		var out, errb bytes.Buffer
		env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
		if code := cli.Run(context.Background(), auditcmd.Command(), env, args); code != 2 || !strings.Contains(errb.String(), `bad --master "00"`) {
			t.Errorf("%v: exit %d, %s", args, code, errb.String())
		}
	}
}
