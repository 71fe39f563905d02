package pgstore

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/blindbank/blindbank/bank"
)

// TestDeadlineCountsLockWaits: a deposit (or withdrawal) whose checks are
// done waits for the audit log's lock, which another replica holds (its
// process paused mid-commit), until past its NotAfter. When the store read
// the database's clock early in the transaction, the wait was not
// counted and the operation committed late: a deposit after the merchant
// and the wallet gave it up. The deadline is judged by the server just
// before COMMIT, after the lock: it is refused (bank.ErrTooLate) and
// nothing moves.
func TestDeadlineCountsLockWaits(t *testing.T) {
	dsn := freshDSN(t)
	s := mustOpen(t, dsn)
	defer s.Close()
	c, err := s.OpenAccount(bg, "customer", key("customer"), false, epoch)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.OpenAccount(bg, "shop", key("shop"), true, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Credit(bg, loggedCredit(c, 1000, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Withdraw(bg, loggedWithdraw(c, 500, "funds")); err != nil {
		t.Fatal(err)
	}
	dep := loggedDeposit(m, 100, "late", hashOf("coin late"))
	wd := loggedWithdraw(c, 200, "late")
	for _, tc := range []struct {
		name   string
		commit func(notAfter time.Time) error
	}{
		{"deposit", func(notAfter time.Time) error { dep.NotAfter = notAfter; _, err := s.Deposit(bg, dep); return err }},
		{"withdraw", func(notAfter time.Time) error { wd.NotAfter = notAfter; _, err := s.Withdraw(bg, wd); return err }},
	} {
		holder, err := pgx.Connect(bg, dsn)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := holder.Begin(bg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(bg, `SELECT size FROM log_state FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		notAfter := time.Now().Add(200 * time.Millisecond)
		done := make(chan error)
		go func() { done <- tc.commit(notAfter) }()
		// Until the operation waits for the log's lock, and past its
		// deadline.
		for waiting, give := 0, time.Now().Add(30*time.Second); waiting == 0; {
			if err := holder.QueryRow(bg, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
				WHERE NOT l.granted AND a.query LIKE '%log_state%'`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(give) {
				t.Fatalf("%s: no wait for the log's lock after 30 s", tc.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Until(notAfter) + 100*time.Millisecond)
		if err := tx.Rollback(bg); err != nil {
			t.Fatal(err)
		}
		holder.Close(bg)
		if err := <-done; !errors.Is(err, bank.ErrTooLate) {
			t.Fatalf("%s that waited for the log's lock past its NotAfter: %v, want ErrTooLate", tc.name, err)
		}
	}
	if a, err := s.Account(bg, m); err != nil || a.Balance != 0 {
		t.Errorf("merchant balance %d, %v; want 0", a.Balance, err)
	}
	if a, err := s.Account(bg, c); err != nil || a.Balance != 500 {
		t.Errorf("customer balance %d, %v; want 500", a.Balance, err)
	}
	if _, found, err := s.Withdrawal(bg, wd.RequestHash); found || err != nil {
		t.Errorf("Withdrawal(late) = found %v, %v; want none", found, err)
	}
	// Nothing held up: the same operations commit before their deadline.
	far := time.Now().Add(time.Hour)
	dep.NotAfter, wd.NotAfter = far, far
	if _, err := s.Deposit(bg, dep); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Withdraw(bg, wd); err != nil {
		t.Fatal(err)
	}
}
