package bank

import "testing"

// SetMaxStatementScan lowers how far back statements read, for the test.
func SetMaxStatementScan(t testing.TB, n int) {
	old := maxStatementScan
	maxStatementScan = n
	t.Cleanup(func() { maxStatementScan = old })
}
