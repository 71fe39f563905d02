package pgstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// TestPruneKeepsRefusalsYoungByDatabaseClock: a replica whose clock runs
// two days ahead prunes with a cutoff a day ahead of the real time. It
// deleted the refusals the other replicas had just recorded, and a copy
// of such a request, still within bank.MaxWithdrawAge, could then be
// taken at a replica whose clock is right. The store keeps every refusal
// younger than bank.RefusalHorizon by the database's clock; one older
// goes.
func TestPruneKeepsRefusalsYoungByDatabaseClock(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	c, err := s.OpenAccount(bg, "customer", key("customer"), false, epoch)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	young := bank.RefuseWithdrawalOp{RequestHash: hashOf("young"), Account: c, Refusal: bank.WithdrawRefusal{Code: 9, Reason: "bank: insufficient funds"}, Time: now}
	old := young
	old.RequestHash, old.Time = hashOf("old"), now.Add(-bank.RefusalHorizon-time.Hour)
	for _, op := range []bank.RefuseWithdrawalOp{young, old} {
		if _, err := s.RefuseWithdrawal(bg, op); err == nil {
			t.Fatal("RefuseWithdrawal returned no refusal")
		}
	}
	aheadCutoff := now.Add(2*24*time.Hour - bank.RefusalHorizon)
	if n, err := s.PruneWithdrawRefusals(bg, aheadCutoff); err != nil || n != 1 {
		t.Fatalf("PruneWithdrawRefusals(a day ahead) = %d, %v; want only the refusal older than the horizon", n, err)
	}
	if _, _, err := s.Withdrawal(bg, young.RequestHash); err == nil {
		t.Fatal("the young refusal was pruned by a replica whose clock is ahead")
	}
	if _, found, err := s.Withdrawal(bg, old.RequestHash); found || err != nil {
		t.Fatalf("the old refusal: found %v, %v; want it pruned", found, err)
	}
}

// TestCheckClock: a replica whose clock is more than ecash.MaxClockSkew
// from the database server's is refused a session, saying by how much and
// which way; within the skew it is not.
func TestCheckClock(t *testing.T) {
	conn, err := pgx.Connect(bg, freshDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(bg)
	for _, tc := range []struct {
		off  time.Duration
		want string // "" for none
	}{
		{0, ""},
		{ecash.MaxClockSkew - time.Second, ""},
		{-ecash.MaxClockSkew + time.Second, ""},
		{ecash.MaxClockSkew + time.Minute, "6m0s ahead of the database server's"},
		{-2 * time.Hour, "2h0m0s behind the database server's"},
	} {
		err := checkClock(bg, conn, func() time.Time { return time.Now().Add(tc.off) })
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("a replica %v off: %v, want no refusal", tc.off, err)
		case tc.want != "" && (!errors.As(err, new(sessionError)) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("a replica %v off: %v, want a refusal saying %q", tc.off, err, tc.want)
		}
	}
}

// TestIdleInTransactionEnds: a replica frozen in the middle of a
// transaction (between two of its batches) held its row locks, the audit
// log's among them, until the server found its connection dead, hours
// later, and every replica's logged commit waited behind it. The server
// now ends a store session idle in a transaction after
// Options.IdleInTransaction: the transaction rolls back, nothing of it is
// committed, and another replica's commit goes through.
func TestIdleInTransactionEnds(t *testing.T) {
	dsn := freshDSN(t)
	s, err := Open(bg, dsn, Options{MaxConns: 4, Logger: quiet, IdleInTransaction: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.OpenAccount(bg, "customer", key("customer"), false, epoch)
	if err != nil {
		t.Fatal(err)
	}
	err = s.mutate(bg, "frozen", func(t *txn) error {
		b := begin()
		b.Queue(`SELECT size FROM log_state FOR UPDATE`)
		if err := t.send(b); err != nil {
			return err
		}
		time.Sleep(time.Second) // frozen, the log's lock held
		b = &pgx.Batch{}
		b.Queue(`UPDATE accounts SET balance = 1 WHERE id = $1`, int64(c))
		return t.commit(b)
	})
	if err == nil {
		t.Fatal("a transaction idle for a second past the timeout committed")
	}
	if errors.Is(err, ErrCommitUnknown) {
		t.Errorf("the frozen transaction, ended before its COMMIT: %v; want a failure, not an unknown outcome", err)
	}
	if _, err := s.Credit(bg, loggedCredit(c, 100, "after")); err != nil {
		t.Fatalf("a logged commit after the frozen transaction: %v", err)
	}
	if a, err := s.Account(bg, c); err != nil || a.Balance != 100 {
		t.Fatalf("balance %d, %v; want 100 (nothing of the frozen transaction)", a.Balance, err)
	}
	if _, err := Open(bg, dsn, Options{IdleInTransaction: -time.Second}); err == nil {
		t.Error("Open with a negative IdleInTransaction: no error")
	}
}
