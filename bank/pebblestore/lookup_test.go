package pebblestore

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestSharedIterMatchesFreshGet: one iterator serving many lookups (as a
// request's in the commit path do), in any order, on an indexed batch over data in L6, L0, the memtable and the batch
// (sets, point deletes, range deletes), answers as a fresh Get each lookup
// and as a model does.
func TestSharedIterMatchesFreshGet(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { sharedIterRound(t, seed) })
	}
}

func sharedIterRound(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	db, err := OpenDB("db", DBOptions{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 6000
	key := func(i int) []byte { return fmt.Appendf(nil, "c/%d", i) } // c/1 is a byte prefix of c/10..
	model := map[string]string{}
	val := func(stage string, i int) string { return fmt.Sprintf("%s %d", stage, i) }
	// write applies stage to roughly frac of the keys via w.
	write := func(w pebble.Writer, stage string, frac float64) {
		for i := range n {
			if rng.Float64() >= frac {
				continue
			}
			k := key(i)
			if rng.IntN(5) == 0 {
				if err := w.Delete(k, nil); err != nil {
					t.Fatal(err)
				}
				delete(model, string(k))
			} else {
				if err := w.Set(k, []byte(val(stage, i)), nil); err != nil {
					t.Fatal(err)
				}
				model[string(k)] = val(stage, i)
			}
		}
	}
	rangeDel := func(w pebble.Writer) {
		a := rng.IntN(n - 100)
		lo, hi := key(a), key(a+50)
		if bytes.Compare(lo, hi) > 0 {
			lo, hi = hi, lo
		}
		if err := w.DeleteRange(lo, hi, nil); err != nil {
			t.Fatal(err)
		}
		for k := range model {
			if bytes.Compare([]byte(k), lo) >= 0 && bytes.Compare([]byte(k), hi) < 0 {
				delete(model, k)
			}
		}
	}
	commit := func(stage string, frac float64, rd bool) {
		b := db.NewBatch()
		write(b, stage, frac)
		if rd {
			rangeDel(b)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	commit("l6", 0.6, false)
	if err := db.Compact(context.Background(), []byte("c/"), []byte("c0"), false); err != nil {
		t.Fatal(err)
	}
	commit("l0", 0.2, true)
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	commit("mem", 0.1, true)
	ib := db.NewIndexedBatch()
	defer ib.Close()
	write(ib, "batch", 0.05)
	rangeDel(ib)
	if db.Metrics().Levels[6].TablesCount == 0 || db.Metrics().Levels[0].TablesCount == 0 {
		t.Fatalf("levels not populated:\n%s", db.Metrics())
	}

	for round := range 300 {
		it, err := newLookupIter(ib)
		if err != nil {
			t.Fatal(err)
		}
		var ks [][]byte
		switch round % 3 {
		case 0: // random order
			for range 40 {
				ks = append(ks, key(rng.IntN(n+200)))
			}
		case 1: // ascending runs: the trySeekUsingNext path
			a := rng.IntN(n)
			for j := range 40 {
				ks = append(ks, key(a+j*rng.IntN(3)))
			}
			slices.SortFunc(ks, bytes.Compare)
		case 2: // repeats and neighbours
			a := rng.IntN(n)
			for range 40 {
				ks = append(ks, key(a+rng.IntN(4)))
			}
		}
		for _, k := range ks {
			v, ok, err := seek(it, k)
			fv, fok, ferr := Get(ib, k)
			if err != nil || ferr != nil {
				t.Fatalf("errors %v %v", err, ferr)
			}
			mv, mok := model[string(k)]
			if ok != fok || !bytes.Equal(v, fv) || ok != mok || (ok && string(v) != mv) {
				t.Fatalf("round %d key %s: shared %q,%v fresh %q,%v model %q,%v", round, k, v, ok, fv, fok, mv, mok)
			}
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
