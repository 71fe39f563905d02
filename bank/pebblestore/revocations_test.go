package pebblestore

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/storetest"
	"github.com/blindbank/blindbank/ecash"
)

// TestScanRevocations: a store whose log holds revoking key sets but no
// record of them (written before it kept one) records them when opened.
func TestScanRevocations(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs)
	storetest.CheckScanRevocations(t, s, func(revoked ecash.Hash) {
		for _, k := range [][]byte{keyRevocations, hashKey(prefixRevoked, revoked)} {
			if err := s.db.Delete(k, nil); err != nil {
				t.Fatal(err)
			}
		}
	}, func() bank.Store { return mustOpen(t, fs) })
}

// TestIndexKeySets: a store whose log holds key sets it cannot find by
// hash (written before it indexed them) indexes them when opened.
func TestIndexKeySets(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs)
	storetest.CheckIndexKeySets(t, s, func(refs []ecash.Hash) {
		s.refs = bank.RecentLogRefs{} // what a restart forgets
		for _, k := range append([][]byte{keyKeySetRefs}, hashKey(prefixLogRef, refs[0]), hashKey(prefixLogRef, refs[1])) {
			if err := s.db.Delete(k, nil); err != nil {
				t.Fatal(err)
			}
		}
	}, func() bank.Store { return mustOpen(t, fs) })
}

// BenchmarkDepositLogged measures logged deposits on an in-memory file
// system: with no revocation (the check reads nothing) and with another
// denomination revoked (each deposit looks its denomination up).
func BenchmarkDepositLogged(b *testing.B) {
	for _, revoked := range []bool{false, true} {
		b.Run(fmt.Sprintf("revoked=%t", revoked), func(b *testing.B) {
			s := mustOpen(b, vfs.NewMem())
			defer s.Close()
			storetest.BenchLoggedDeposits(b, s, revoked, 16)
		})
	}
}
