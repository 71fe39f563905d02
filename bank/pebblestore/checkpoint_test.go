package pebblestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// TestCheckpointUnderLoad: a checkpoint taken while withdrawals and deposits
// keep committing holds every one acknowledged before it started, opens as
// a store, and its ledger sums to zero; the live store is unaffected.
func TestCheckpointUnderLoad(t *testing.T) {
	root := t.TempDir()
	s, err := Open(filepath.Join(root, "ledger"), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const workers = 4
	var accts [workers]uint64
	for i := range accts {
		accts[i] = openAccount(t, s, "customer "+string(rune('a'+i)), false)
		if _, err := s.Credit(bg, bank.CreditOp{Account: accts[i], Amount: 1 << 40, Time: epoch}); err != nil {
			t.Fatal(err)
		}
	}
	shop := openAccount(t, s, "shop", true)

	// Each worker withdraws, then deposits what it withdrew, until told to
	// stop; acked records the request and payment hashes answered so far.
	type acked struct{ withdraws, deposits []ecash.Hash }
	var (
		mu   sync.Mutex
		done [workers]acked
		seq  atomic.Uint64
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := seq.Add(1)
				wh := hashOf("withdraw %d", n)
				if _, err := s.Withdraw(bg, bank.WithdrawOp{RequestHash: wh, Account: accts[w], Amount: 5, BlindSigs: [][]byte{{1}}, Time: epoch}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				done[w].withdraws = append(done[w].withdraws, wh)
				mu.Unlock()
				ph := hashOf("payment %d", n)
				op := bank.DepositOp{PaymentHash: ph, Merchant: shop, Amount: 5, Receipt: []byte("receipt"), Time: epoch,
					Coins: []bank.SpentCoin{{ID: hashOf("coin %d", n), Permission: []byte("perm")}}}
				if _, err := s.Deposit(bg, op); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				done[w].deposits = append(done[w].deposits, ph)
				mu.Unlock()
			}
		})
	}
	// Let some operations commit, then note what was acknowledged and
	// checkpoint while the workers carry on.
	for seq.Load() < 200 && !t.Failed() {
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	var before acked
	for _, d := range done {
		before.withdraws = append(before.withdraws, d.withdraws...)
		before.deposits = append(before.deposits, d.deposits...)
	}
	mu.Unlock()
	backup := filepath.Join(root, "backup")
	info, err := s.Checkpoint(bg, backup)
	during := seq.Load()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if info.Dir != backup || info.Files == 0 || info.Bytes == 0 || info.Accounts != 3+workers+1 { // funding, outstanding, fees
		t.Fatalf("checkpoint info %+v", info)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("checkpoint directory: %v %v", fi, err)
	}
	t.Logf("%d operations acknowledged before the checkpoint, %d begun by its end; %d files, %d bytes",
		len(before.withdraws)+len(before.deposits), 2*during, info.Files, info.Bytes)

	// Nothing partial is left beside it.
	entries, _ := os.ReadDir(root)
	if len(entries) != 2 {
		t.Fatalf("root holds %v", entries)
	}
	// A second checkpoint to the same place is refused; so is one whose
	// parent does not exist.
	if _, err := s.Checkpoint(bg, backup); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("checkpoint over an existing directory: %v", err)
	}
	if _, err := s.Checkpoint(bg, filepath.Join(root, "no", "such")); err == nil {
		t.Fatal("checkpoint into a missing parent succeeded")
	}

	if _, err := VerifyCheckpoint(backup); err != nil {
		t.Fatal(err)
	}
	r, err := Open(backup, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, h := range before.withdraws {
		if _, ok, err := r.Withdrawal(bg, h); err != nil || !ok {
			t.Fatalf("acknowledged withdrawal %x missing from the checkpoint: %v", h[:4], err)
		}
	}
	for _, h := range before.deposits {
		if _, _, ok, err := r.DepositRecord(bg, h); err != nil || !ok {
			t.Fatalf("acknowledged deposit %x missing from the checkpoint: %v", h[:4], err)
		}
	}
	totals, err := r.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, b := range totals {
		sum += b
	}
	if sum != 0 {
		t.Fatalf("checkpoint ledger sums to %d", sum)
	}
	// The live store still serves.
	if _, err := s.Credit(bg, bank.CreditOp{Account: accts[0], Amount: 1, Time: epoch}); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyCheckpointRefuses: a directory that is not a ledger, or whose
// balances do not sum to zero, fails verification.
func TestVerifyCheckpointRefuses(t *testing.T) {
	if _, err := VerifyCheckpoint(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("verified a missing directory")
	}
	empty := t.TempDir()
	if _, err := VerifyCheckpoint(empty); err == nil {
		t.Fatal("verified an empty directory")
	}
	dir := filepath.Join(t.TempDir(), "ledger")
	s, err := Open(dir, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	id := openAccount(t, s, "a", false)
	if _, err := s.Credit(bg, bank.CreditOp{Account: id, Amount: 7, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	// Unbalance the ledger behind the store's back.
	a, err := s.readAccount(s.db, id)
	if err != nil {
		t.Fatal(err)
	}
	a.Balance++
	if err := s.db.Set(accountKey(id), encodeAccount(a), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyCheckpoint(dir); err == nil {
		t.Fatal("verified an unbalanced ledger")
	}
}

// TestVerifyCheckpointFormat: verification reads the ledgers a bank opens,
// of format 1 and of this build's, and refuses, without a write, one of a
// newer format (which it could misread), a record that is not a version,
// and a ledger without the record (not a bank's).
func TestVerifyCheckpointFormat(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	s, err := Open(dir, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	set := func(v []byte) {
		t.Helper()
		db, err := OpenDB(dir, DBOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v == nil {
			err = db.Delete(keyFormat, pebble.Sync)
		} else {
			err = db.Set(keyFormat, v, pebble.Sync)
		}
		if err := errors.Join(err, db.Close()); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		v    []byte
		want error  // what the refusal wraps, if a sentinel
		says string // what the refusal says; "": it verifies
	}{
		{binary.BigEndian.AppendUint32(nil, 1), nil, ""},
		{binary.BigEndian.AppendUint32(nil, formatVersion), nil, ""},
		{binary.BigEndian.AppendUint32(nil, formatVersion+1), ErrStoreTooNew, "bank store format 3, this build reads formats up to 2"},
		{[]byte{0, 0, 2}, ErrBadFormat, "(3 bytes)"},
		{nil, nil, "no format record"},
	} {
		set(c.v)
		_, err := VerifyCheckpoint(dir)
		if c.says == "" {
			if err != nil {
				t.Errorf("format record %x: %v", c.v, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), c.says) || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("format record %x: %v, want %v saying %q", c.v, err, c.want, c.says)
		}
		if got := getFormat(t, dir); !bytes.Equal(got, c.v) {
			t.Errorf("format record %x after verification: %x", c.v, got)
		}
	}
}

// getFormat is the format record of the closed ledger in dir, read
// without writing (nil if there is none).
func getFormat(t *testing.T, dir string) []byte {
	t.Helper()
	db, err := OpenDB(dir, DBOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, _, err := Get(db, keyFormat)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// gateFS holds the first file a checkpoint creates until released, so
// that a test can end the checkpoint's context while it is copying.
type gateFS struct {
	vfs.FS
	once             sync.Once
	reached, release chan struct{}
	created          atomic.Int64 // files created in a checkpoint
}

func (g *gateFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.Contains(filepath.Base(filepath.Dir(name)), ".partial-") {
		g.created.Add(1)
		g.once.Do(func() {
			close(g.reached)
			<-g.release
		})
	}
	return g.FS.Create(name, category)
}

// TestCheckpointCancelled: a checkpoint whose context ends while it copies
// (its caller gave up, or a bank's forced stop cut the call off) ends at
// its next write with the context's error, rather than running to the end
// (which held the store's Close, so a bank's stop, as long as the copy
// took) and then putting the backup in place for a caller told it failed.
// Nothing of it is left, under the name asked for or beside it, and the
// store serves on and checkpoints again.
func TestCheckpointCancelled(t *testing.T) {
	root := t.TempDir()
	gate := &gateFS{FS: vfs.Default, reached: make(chan struct{}), release: make(chan struct{})}
	s, err := Open(filepath.Join(root, "ledger"), Options{FS: gate, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := openAccount(t, s, "a", false)
	ctx, cancel := context.WithCancel(bg)
	backup := filepath.Join(root, "backup")
	errc := make(chan error, 1)
	go func() {
		_, err := s.Checkpoint(ctx, backup)
		errc <- err
	}()
	select {
	case <-gate.reached:
	case err := <-errc:
		t.Fatalf("the checkpoint created no file: %v", err)
	}
	cancel()
	close(gate.release)
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a checkpoint whose context ended: %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the checkpoint did not end")
	}
	if n := gate.created.Load(); n != 1 {
		t.Errorf("the checkpoint created %d files, the last %d after its context ended", n, n-1)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 || entries[0].Name() != "ledger" {
		t.Fatalf("beside the ledger after a cancelled checkpoint: %v", entries)
	}
	if _, err := s.Credit(bg, bank.CreditOp{Account: id, Amount: 1, Time: epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Checkpoint(bg, backup); err != nil {
		t.Fatalf("a checkpoint after the cancelled one: %v", err)
	}
}
