package pebblestore

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/blindbank/blindbank/bank"
)

// TestSpentCoinUnderReadErrors: with reads of sstables failing at random,
// a request that looks up a spent coin among absent ones, all on one
// iterator, never succeeds: it reports the coin or the read error. (A
// lookup's error is reported by its seek alone: the next seek on the
// iterator clears it, so Close would not.)
func TestSpentCoinUnderReadErrors(t *testing.T) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	tog := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind != errorfs.OpFileReadAt || !strings.HasSuffix(op.Path, ".sst") {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if rng.IntN(4) == 0 {
			return errorfs.ErrInjected
		}
		return nil
	})}
	s, err := Open("bank", Options{Logger: quiet, FS: errorfs.Wrap(vfs.NewMem(), tog), CacheSize: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const spent = 20000
	for c := 0; c < spent; c += 500 {
		if err := s.submit(bg, func(t *txn) error {
			for i := c; i < c+500; i++ {
				t.set(hashKey(prefixCoin, hashOf("spent %d", i)), encodeCoin(&coinRecord{Permission: []byte("p")}))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Into sstables, which are what the injected errors fail to read.
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatal(err)
	}
	tog.On()
	var spentErrs, readErrs int
	for i := range 3000 {
		coins := make([]bank.SpentCoin, 12)
		for j := range coins {
			coins[j].ID = hashOf("fresh %d %d", i, j)
		}
		coins[rng.IntN(len(coins))].ID = hashOf("spent %d", rng.IntN(spent))
		err := s.submit(bg, func(t *txn) error { return t.checkUnspent(coins) })
		var se *bank.SpentError
		switch {
		case err == nil:
			t.Fatalf("attempt %d: a spent coin passed checkUnspent", i)
		case errors.As(err, &se):
			spentErrs++
		case errors.Is(err, errorfs.ErrInjected):
			readErrs++
		default:
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	t.Logf("spent coin reported %d times, read error %d times", spentErrs, readErrs)
	if readErrs == 0 {
		t.Fatal("no read error injected")
	}
	tog.Off()
}
