package bank_test

import (
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
)

// Failed authentications lock on the day they were counted, and the
// count starts again the next day.
func TestAuthFailuresByDay(t *testing.T) {
	now := time.Date(2030, 1, 1, 23, 0, 0, 0, time.UTC)
	var f bank.AuthFailures
	for i := 1; i <= bank.MaxAuthFailures; i++ {
		if locked := f.Record(now); locked != (i == bank.MaxAuthFailures) {
			t.Fatalf("failure %d: locked %v", i, locked)
		}
	}
	if !f.Locked(now.Add(59 * time.Minute)) {
		t.Error("not locked for the rest of the day")
	}
	tomorrow := now.Add(time.Hour)
	if f.Locked(tomorrow) {
		t.Error("still locked the next day")
	}
	if f.Record(tomorrow) || f.Count != 1 {
		t.Errorf("the next day's first failure: count %d", f.Count)
	}
}
