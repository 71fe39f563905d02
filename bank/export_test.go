package bank

import (
	"crypto/ecdh"
	"sync/atomic"
	"testing"

	"github.com/blindbank/blindbank/echeck"
)

// SetMaxStatementScan lowers how far back statements read, for the test.
func SetMaxStatementScan(t testing.TB, n int) {
	old := maxStatementScan
	maxStatementScan = n
	t.Cleanup(func() { maxStatementScan = old })
}

// CountPrivateOpens counts the EPO private parts SubmitCheck opens from
// here to the end of the test.
func CountPrivateOpens(t testing.TB) *atomic.Int64 {
	n, old := new(atomic.Int64), openPrivate
	openPrivate = func(epo *echeck.SignedEPO, k *ecdh.PrivateKey) (*echeck.EPOPrivate, error) {
		n.Add(1)
		return old(epo, k)
	}
	t.Cleanup(func() { openPrivate = old })
	return n
}
