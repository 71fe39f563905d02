package pgstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

// TestCorruptFixedBytes: a fixed-size value (a hash, a coin id, a public
// key) read from a bytea column that holds another length, a row changed
// behind the store's back, is refused with an error naming the table and
// column, never padded or cut to fit: a padded payment hash names another
// payment, a short public key makes ed25519.Verify panic.
func TestCorruptFixedBytes(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	c := openAccount(t, s, "customer", false)
	m := openAccount(t, s, "merchant", true)
	if _, err := s.Credit(bg, loggedCredit(c, 1000, "fund")); err != nil {
		t.Fatal(err)
	}
	w := loggedWithdraw(c, 100, "w")
	w.Blinded = []ecash.Hash{hashOf("blinded")}
	if _, err := s.Withdraw(bg, w); err != nil {
		t.Fatal(err)
	}
	coin := hashOf("coin")
	dep := loggedDeposit(m, 60, "p", coin)
	if _, err := s.Deposit(bg, dep); err != nil {
		t.Fatal(err)
	}
	check := loggedCheck("epo", c, m, 10)
	if _, err := s.Check(bg, check); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		col     string // table.column, as the error names it
		corrupt string // SQL that changes the column's length in place; %s is its new value
		read    func() error
	}{
		{"spent_coins.payment_hash", `UPDATE spent_coins SET payment_hash = %s`, func() error {
			_, err := s.CoinStates(bg, []ecash.Hash{coin})
			return err
		}},
		{"deposits.coins[1]", `UPDATE deposits SET coins[1] = %s`, func() error {
			_, _, _, err := s.DepositRecord(bg, dep.PaymentHash)
			return err
		}},
		// The withdrawal's too, or the join to its signatures finds none.
		{"issued.request_hash", `UPDATE issued SET request_hash = %s; UPDATE withdrawals SET request_hash = %s`, func() error {
			_, err := s.Issued(bg, w.Blinded)
			return err
		}},
		{"accounts.pubkey", `UPDATE accounts SET pubkey = %s WHERE pubkey IS NOT NULL`, func() error {
			_, err := s.Account(bg, c)
			return err
		}},
		{"checks.epo_hash", `UPDATE checks SET epo_hash = %s`, func() error {
			_, _, err := s.CheckRecord(bg, check.EPOID)
			return err
		}},
	} {
		col := c.col[strings.Index(c.col, ".")+1:] // coins[1]: an array's element
		for _, v := range []struct{ name, sql string }{
			{"short", "substring(" + col + " from 2)"}, // 31 bytes
			{"long", col + " || '\\x00'::bytea"},       // 33 bytes
		} {
			if _, err := s.pool.Exec(bg, strings.ReplaceAll(c.corrupt, "%s", v.sql)); err != nil {
				t.Fatal(err)
			}
			err := c.read()
			if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), c.col) {
				t.Errorf("%s %s: read = %v, want %v naming %s", c.col, v.name, err, errCorrupt, c.col)
			}
			undo := "substring(" + col + " from 1 for 32)"
			if v.name == "short" {
				undo = "'\\x00'::bytea || " + col
			}
			if _, err := s.pool.Exec(bg, strings.ReplaceAll(c.corrupt, "%s", undo)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestCorruptRevocation: a revocations.denom of another length (its
// CHECK dropped, and a row changed behind the store's back) is refused,
// naming the column, where the revocations are read: Revocations, and
// PublishKeySet's read of those recorded, which converted the value to
// a hash (a short one panicked, a long one was cut).
func TestCorruptRevocation(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	if err := s.PublishKeySet(bg, testKeySet(0), epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(bg, `ALTER TABLE revocations DROP CONSTRAINT revocations_denom_check`); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{31, 33} {
		if _, err := s.pool.Exec(bg, `DELETE FROM revocations`); err != nil {
			t.Fatal(err)
		}
		if _, err := s.pool.Exec(bg, `INSERT INTO revocations (denom, keyset_idx) VALUES ($1, 0)`, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Revocations(bg); !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "revocations.denom") {
			t.Errorf("%d bytes: Revocations = %v, want %v naming revocations.denom", n, err, errCorrupt)
		}
		err := s.PublishKeySet(bg, testKeySet(n), epoch)
		if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "revocations.denom") {
			t.Errorf("%d bytes: PublishKeySet = %v, want %v naming revocations.denom", n, err, errCorrupt)
		}
	}
}
