package storetest

import (
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
)

// testLogHead: LogHead names the newest key set entry below the size it
// returns, whatever was logged between key sets, after an older key set
// is published again (not logged again: the newer one stays named), and while key sets are published concurrently
// (size and key set read together).
func testLogHead(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	head := func() (int64, bank.KeySetRef, bool) {
		t.Helper()
		size, ks, found, err := s.LogHead(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return size, ks, found
	}
	if size, _, found := head(); found {
		t.Fatalf("a log of %d entries without key sets names one", size)
	}
	ks0, _ := RevocationKeySet(t, epoch)
	ks1, _ := RevocationKeySet(t, epoch.Add(time.Second), 0)
	ks2, _ := RevocationKeySet(t, epoch.Add(2*time.Second), 0)
	f.customer() // an entry before the first key set
	var newest bank.KeySetRef
	publish := func(signed []byte) {
		t.Helper()
		at, err := s.LogSize(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PublishKeySet(f.ctx, signed, epoch); err != nil {
			t.Fatal(err)
		}
		if n, err := s.LogSize(f.ctx); err != nil || n > at {
			newest = bank.KeySetRef{Ref: sha256.Sum256(signed), Index: at}
		}
	}
	want := func(what string) {
		t.Helper()
		size, ks, found := head()
		if n, err := s.LogSize(f.ctx); err != nil || n != size {
			t.Fatalf("%s: LogHead's size %d, LogSize %d (%v)", what, size, n, err)
		}
		if !found || ks != newest {
			t.Fatalf("%s: LogHead names %+v (found %t) in a log of %d, want %+v", what, ks, found, size, newest)
		}
	}
	// Two key sets, and sizes between and after them (each account
	// opened logs an entry).
	publish(ks0)
	want("the first key set")
	for range 3 {
		f.customer()
		want("an entry after the first key set")
	}
	first := newest
	publish(ks1)
	if newest == first {
		t.Fatal("the second key set was not logged")
	}
	want("the second key set")
	second := newest
	f.merchant()
	want("an entry after the second key set")
	publish(ks1) // the newest already: nothing logged
	want("the second key set published again")
	publish(ks2)
	f.customer()
	want("a third key set")
	third := newest
	// A replica restarting on an old key file publishes ks1 again: logged
	// before, it is not logged again, and ks2 stays the newest (else every
	// client holding ks2 would see the checkpoint name an older set).
	before, _, _ := head()
	publish(ks1)
	if n, err := s.LogSize(f.ctx); err != nil || n != before || newest != third {
		t.Fatalf("a key set logged before was logged again (%d entries, was %d; %v)", n, before, err)
	}
	want("an older key set published again")
	if idx, found, err := s.LogIndex(f.ctx, sha256.Sum256(ks1)); err != nil || !found || idx != second.Index {
		t.Fatalf("the older key set's entry: %d, %t, %v", idx, found, err)
	}
	f.customer()
	want("an entry after the older key set published again")

	// Concurrent key sets and heads: each head's key set is a key set
	// entry below its size with none after it.
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		heads [][2]int64 // size, key set index
	)
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			signed, _ := RevocationKeySet(t, epoch.Add(time.Duration(10+i)*time.Second), 0)
			if err := s.PublishKeySet(f.ctx, signed, epoch); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			for range 5 {
				size, ks, found, err := s.LogHead(f.ctx)
				if err != nil || !found {
					t.Error(found, err)
					return
				}
				mu.Lock()
				heads = append(heads, [2]int64{size, ks.Index})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	size, _, _ := head()
	raw := readLog(t, f, s, size)
	for _, h := range heads {
		for i := h[1]; i < h[0]; i++ {
			e, err := auditlog.DecodeEntry(raw[i])
			if err != nil {
				t.Fatal(err)
			}
			if isKS := e.Kind() == auditlog.KindKeySet; isKS != (i == h[1]) {
				t.Fatalf("a head of size %d names key set entry %d, but entry %d is a %s", h[0], h[1], i, e.Kind())
			}
		}
	}
}

// readLog reads the first size entries of s's log.
func readLog(t *testing.T, f *fixture, s bank.Store, size int64) [][]byte {
	t.Helper()
	var out [][]byte
	for int64(len(out)) < size {
		es, err := s.LogEntries(f.ctx, int64(len(out)), bank.MaxLogRead, bank.MaxLogReadBytes)
		if err != nil || len(es) == 0 {
			t.Fatalf("log entries from %d: %d, %v", len(out), len(es), err)
		}
		out = append(out, es...)
	}
	return out[:size]
}
