package pgstore

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/ecash"
)

// TestAnswerLost: every mutation keyed by what its retry carries commits
// and loses its answer (its session is terminated while its COMMIT waits
// for a synchronous standby that never comes: committed on the primary,
// as a crash right after the commit's flush leaves it), returns
// ErrCommitUnknown, and retried once commits go through again is
// answered as it would have been, from its record: money moves once and
// the log holds one entry for it. TestCrash kills the server at random;
// this loses the answer of each kind of operation on purpose.
func TestAnswerLost(t *testing.T) {
	srv := pgtest.New(t)
	dsn := srv.NewDatabase(t)
	s := mustOpen(t, dsn)
	defer s.Close()
	admin, err := pgx.Connect(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(bg)
	if _, err := admin.Exec(bg, `CREATE TABLE sync_probe (n int)`); err != nil {
		t.Fatal(err)
	}
	c := openAccount(t, s, "customer", false)
	m := openAccount(t, s, "merchant", true)
	if _, err := s.Credit(bg, loggedCredit(c, 1000, "fund")); err != nil {
		t.Fatal(err)
	}
	size, err := s.LogSize(bg)
	if err != nil {
		t.Fatal(err)
	}

	deposit := loggedDeposit(m, 60, "p", hashOf("coin 1"), hashOf("coin 2"))
	swap := bank.SwapOp{RequestHash: hashOf("swap"), Value: 20, BlindSigs: [][]byte{[]byte("swap sig")}, Time: epoch,
		Coins: []bank.SpentCoin{{ID: hashOf("coin 3"), Permission: []byte("permission swap")}}}
	refund := bank.RefundOp{RequestHash: hashOf("refund"), PaymentHash: deposit.PaymentHash, Merchant: m, Amount: 10,
		Coins: []bank.CoinRefund{{ID: hashOf("coin 1"), Value: 10, Cap: 30}}, Receipt: []byte("refund receipt"), Time: epoch}
	withdraw, check := loggedWithdraw(c, 100, "w"), loggedCheck("lost", c, m, 70)
	keySet := testKeySet(1)
	calls := []struct {
		name   string
		logged bool
		call   func() (any, error)
		want   any
	}{
		{"open account", true, func() (any, error) { return s.OpenAccount(bg, "late", key("late"), false, epoch) }, m + 1},
		{"credit", true, func() (any, error) { return s.Credit(bg, loggedCredit(c, 50, "wire")) }, int64(1050)},
		{"withdraw", true, func() (any, error) { return s.Withdraw(bg, withdraw) }, withdraw.BlindSigs},
		{"deposit", true, func() (any, error) { return s.Deposit(bg, deposit) }, deposit.Receipt},
		{"swap", false, func() (any, error) { return s.Swap(bg, swap) }, swap.BlindSigs},
		{"refund", false, func() (any, error) { return s.Refund(bg, refund) }, refund.Receipt},
		{"check", true, func() (any, error) {
			out, err := s.Check(bg, check)
			return out.Receipt, err
		}, check.Approved},
		{"key set", true, func() (any, error) { return nil, s.PublishKeySet(bg, keySet, epoch) }, nil},
	}
	for _, tc := range calls {
		if _, err := answerLost(t, admin, dsn, tc.call); !errors.Is(err, bank.ErrOutcomeUnknown) {
			t.Fatalf("%s, its session ended while its commit waited: %v, want ErrOutcomeUnknown", tc.name, err)
		}
		got, err := tc.call()
		if err != nil || !same(got, tc.want) {
			t.Errorf("%s retried: %v, %v; want %v", tc.name, got, err, tc.want)
		}
		if tc.logged {
			size++
		}
		if got, err := s.LogSize(bg); err != nil || got != size {
			t.Errorf("after %s: log size %d, %v; want %d", tc.name, got, err, size)
		}
	}
	for _, ref := range []ecash.Hash{withdraw.RequestHash, deposit.PaymentHash, check.EPOHash, ecash.HashOf(keySet)} {
		if _, found, err := s.LogIndex(bg, ref); err != nil || !found {
			t.Errorf("LogIndex(%x) = %v, %v", ref[:4], found, err)
		}
	}
	totals, err := s.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]int64{c: 1000 + 50 - 100 - 70, m: 60 - 10 + 70, m + 1: 0,
		bank.AccountOutstanding: 100 - 60 + 10, bank.AccountFunding: -1050, bank.AccountFees: 0}
	if !mapsEqual(totals, want) {
		t.Errorf("Totals = %v, want %v", totals, want)
	}
	checkLog(t, s)
}

func same(got, want any) bool {
	switch w := want.(type) {
	case [][]byte:
		g, ok := got.([][]byte)
		return ok && slices.EqualFunc(g, w, bytes.Equal)
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(g, w)
	}
	return got == want
}

// answerLost runs call while commits wait for a synchronous standby named
// "nobody", ends call's session once its COMMIT waits, lets commits through
// again, and returns what call returned. However it ends, commits go
// through again when it returns: a failure that left call waiting for the
// standby would hold the test's s.Close, which waits for calls in
// progress, until the test binary's timeout.
func answerLost(t *testing.T, admin *pgx.Conn, dsn string, call func() (any, error)) (any, error) {
	t.Helper()
	setStandby(t, dsn, "nobody")
	defer func() {
		if err := standby(dsn, ""); err != nil {
			t.Errorf("letting commits through again: %v", err)
		}
	}()
	// The server applies the setting when its checkpointer reloads: until
	// then commits go through. Probe until one waits.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("no commit waited for the standby: the server did not apply synchronous_standby_names")
		}
		probe, err := pgx.Connect(bg, dsn+" application_name=probe")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := probe.Exec(bg, `INSERT INTO sync_probe VALUES (1)`); done <- err }()
		waited := waitSyncRep(t, admin, probe.PgConn().PID(), done)
		if waited {
			terminate(t, admin, probe.PgConn().PID())
			<-done
		}
		probe.Close(bg)
		if waited {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	type answer struct {
		v   any
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		v, err := call()
		answered <- answer{v, err}
	}()
	var pid uint32
	deadline = time.Now().Add(30 * time.Second)
	for pid == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the call's commit never waited for the standby")
		}
		select {
		case a := <-answered:
			t.Fatalf("the call returned while commits wait for a standby: %v, %v", a.v, a.err)
		default:
		}
		err := admin.QueryRow(bg, `SELECT pid FROM pg_stat_activity WHERE application_name = 'blindbank' AND wait_event = 'SyncRep'`).Scan(&pid)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	terminate(t, admin, pid)
	a := <-answered
	return a.v, a.err
}

// waitSyncRep waits until session pid's commit waits for the standby (true)
// or its statement ends (done, false).
func waitSyncRep(t *testing.T, admin *pgx.Conn, pid uint32, done <-chan error) bool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return false
		default:
		}
		var n int
		if err := admin.QueryRow(bg, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'SyncRep'`, int32(pid)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the probe neither committed nor waited for the standby")
	return false
}

func setStandby(t *testing.T, dsn, names string) {
	t.Helper()
	if err := standby(dsn, names); err != nil {
		t.Fatal(err)
	}
}

// standby sets synchronous_standby_names and has the server reload it, on
// a connection of its own (it also runs after a failure, which may have
// left another connection unusable).
func standby(dsn, names string) error {
	c, err := pgx.Connect(bg, dsn)
	if err != nil {
		return err
	}
	defer c.Close(bg)
	if _, err := c.Exec(bg, `ALTER SYSTEM SET synchronous_standby_names = '`+names+`'`); err != nil {
		return err
	}
	_, err = c.Exec(bg, `SELECT pg_reload_conf()`)
	return err
}

func terminate(t *testing.T, admin *pgx.Conn, pid uint32) {
	t.Helper()
	var ok bool
	if err := admin.QueryRow(bg, `SELECT pg_terminate_backend($1)`, int32(pid)).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
}
