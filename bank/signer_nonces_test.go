package bank

import (
	"bytes"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

func oneCSKey(t *testing.T, now time.Time, period time.Duration) *Keys {
	t.Helper()
	k, err := GenerateKeys(KeyConfig{Currency: "EUR", Values: []ecash.Amount{{Currency: "EUR", Value: 1}}, Cipher: ecash.CipherCS,
		WithdrawPeriod: period, DepositPeriod: 2 * period}, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signNonce asks s to sign a fresh challenge for nonce under d; the code
// of its refusal, or codes.OK.
func signNonce(t *testing.T, s *SignerServer, d *DenomKey, nonce [32]byte) codes.Code {
	t.Helper()
	_, err := s.BlindSign(t.Context(), &pb.SignerBlindSignRequest{Items: []*pb.SignerBlindSignItem{{Denomination: d.ID[:], Blinded: csChallenge(nonce)}}})
	return status.Code(err)
}

func signMany(t *testing.T, s *SignerServer, d *DenomKey, n int) [][32]byte {
	t.Helper()
	var nonces [][32]byte
	for range n {
		var nonce [32]byte
		rand.Read(nonce[:])
		if c := signNonce(t, s, d, nonce); c != codes.OK {
			t.Fatalf("signing: %s", c)
		}
		nonces = append(nonces, nonce)
	}
	return nonces
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestSignerNonceLogDropsRetiredKeys: every CS signature appends a record
// to the signer's nonce log, read whole into memory at every start. At
// start the log is rewritten without the records of keys the signer will
// never sign for again: those pruned from its key file (not in it, and the
// file issued after their deposit end, as bankd keys prune does). Not by
// its clock: a key past its window keeps its records until pruned, since a
// signer started once with its clock ahead would otherwise retire every
// current key. One tombstone stands for each key dropped, and the signer refuses to sign for
// it from then on, even if a later key file lists it (its records, which
// made answering safe, are gone). The records of keys still withdrawable
// are kept: a second challenge for one of their nonces is still refused.
func TestSignerNonceLogDropsRetiredKeys(t *testing.T) {
	now := time.Now()
	k := oneCSKey(t, now.Add(-time.Hour), 365*24*time.Hour)
	expired := oneCSKey(t, now.Add(-time.Hour), 30*time.Minute) // withdrawable until 30 min ago, deposits until now
	both := *k
	both.Denoms = append(append([]DenomKey(nil), k.Denoms...), expired.Denoms...)
	path := filepath.Join(t.TempDir(), SignerNoncesFile)
	s, err := NewSignerServer(&both, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return now.Add(-45 * time.Minute) } // both withdrawable
	live := signMany(t, s, &both.Denoms[0], 100)
	signMany(t, s, &both.Denoms[1], 100)
	s.Close()
	if got := fileSize(t, path); got != 203*int64(len(nonceRec{})) {
		t.Fatalf("%d bytes of records, want the key file's mark, the keys' two deposit ends and 200 records", got)
	}

	// Restarted now, the expired key still in the key file: every record
	// stays, and nothing is retired.
	s, err = NewSignerServer(&both, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fileSize(t, path), 203*int64(len(nonceRec{})); got != want || len(s.nonces.locks) != 200 || len(s.nonces.retired) != 0 {
		t.Errorf("restarted after a key's window: %d bytes, %d records loaded, %d retired; want %d bytes, 200, none", got, len(s.nonces.locks), len(s.nonces.retired), want)
	}
	s.Close()

	// The expired key pruned from the key file at its deposit end: its
	// records go, the live key's stay.
	pruned := both.clone()
	if gone, _ := pruned.Prune(expired.Denoms[0].DepositEnd, time.Time{}); len(gone) != 1 {
		t.Fatalf("pruned %d keys, want the expired one", len(gone))
	}
	s, err = NewSignerServer(pruned, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fileSize(t, path), 103*int64(len(nonceRec{})); got != want || len(s.nonces.locks) != 100 {
		t.Errorf("after a restart: %d bytes, %d records loaded; want %d bytes (the mark, a deposit end, 100 records and a tombstone), 100 loaded", got, len(s.nonces.locks), want)
	}
	if c := signNonce(t, s, &both.Denoms[0], live[0]); c != codes.AlreadyExists {
		t.Errorf("a second challenge for a kept nonce: %s, want AlreadyExists", c)
	}
	s.Close()

	// Both keys pruned: a key file issued after their deposit ends lacks
	// them.
	k2 := oneCSKey(t, now, 365*24*time.Hour)
	k2.IssuedAt = both.Denoms[0].DepositEnd
	s2, err := newSignerServer(k2, path, nil, func() time.Time { return k2.IssuedAt }) // the day of the prune
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fileSize(t, path), 4*int64(len(nonceRec{})); len(s2.nonces.locks) != 0 || got != want {
		t.Errorf("a signer holding none of the keys loads %d nonce records (%d bytes on disk, want %d: the mark, two tombstones and its key's deposit end) of keys it no longer has", len(s2.nonces.locks), got, want)
	}
	s2.Close()
	// Started again with the key file that lists them, it refuses both.
	s, err = NewSignerServer(&both, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.now = func() time.Time { return now.Add(-45 * time.Minute) }
	for i := range both.Denoms {
		var nonce [32]byte
		rand.Read(nonce[:])
		if c := signNonce(t, s, &both.Denoms[i], nonce); c != codes.FailedPrecondition {
			t.Errorf("key %d, whose records were dropped: %s, want FailedPrecondition", i, c)
		}
	}
	if got := fileSize(t, path); got != 4*int64(len(nonceRec{})) {
		t.Errorf("%d bytes after a start with nothing to drop, want the mark, the two tombstones and a deposit end", got)
	}
}

// TestSignerNonceLogRewriteCrash: the start's rewrite of the nonce log
// stopped at each step (a crash: the temporary file written, synced,
// renamed over the log, the directory synced) leaves a log from which the
// next start loads every record of the live key: none of its nonces can
// be answered for a second challenge. A torn final record is dropped as
// before.
func TestSignerNonceLogRewriteCrash(t *testing.T) {
	now := time.Now()
	k := oneCSKey(t, now.Add(-time.Hour), 365*24*time.Hour)
	gone := oneCSKey(t, now.Add(-3*time.Hour), 30*time.Minute) // deposits until 2 h ago: k prunes it
	both := *k
	both.Denoms = append(append([]DenomKey(nil), k.Denoms...), gone.Denoms...)
	for _, step := range []string{"written", "synced", "renamed", "dir-synced"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, SignerNoncesFile)
			s, err := NewSignerServer(&both, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			live := signMany(t, s, &both.Denoms[0], 20)
			s.now = func() time.Time { return now.Add(-170 * time.Minute) } // gone withdrawable
			signMany(t, s, &both.Denoms[1], 20)
			s.Close()
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(make([]byte, 50)) // a torn record
			f.Close()

			crashed := errors.New("crash")
			nonceLogCrash = func(at string) error {
				if at == step {
					return crashed
				}
				return nil
			}
			_, err = NewSignerServer(k, path, nil)
			nonceLogCrash = nil
			if !errors.Is(err, crashed) {
				t.Fatalf("the start crashed at %s: %v", step, err)
			}

			s, err = NewSignerServer(k, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if len(s.nonces.locks) != len(live) {
				t.Errorf("%d records loaded after the crash, want the live key's %d", len(s.nonces.locks), len(live))
			}
			for _, nonce := range live {
				if c := signNonce(t, s, &both.Denoms[0], nonce); c != codes.AlreadyExists {
					t.Fatalf("a second challenge for a nonce answered before the crash: %s, want AlreadyExists", c)
				}
			}
			if got, want := fileSize(t, path), int64(len(live)+3)*int64(len(nonceRec{})); got != want {
				t.Errorf("%d bytes after the crash and a start, want %d (the mark, the live key's deposit end, its records and a tombstone)", got, want)
			}
			if _, err := os.Stat(path + ".rewrite"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the temporary file of the crashed rewrite is still there: %v", err)
			}
			// A second signer is still kept out.
			if _, err := NewSignerServer(k, path, nil); err == nil {
				t.Error("a second signer opened the nonce log")
			}
		})
	}
}

// TestSignerOlderKeyFileKeepsRecords: a key made since (extend) is missing
// from an older copy of the key file; one start on that copy (a rollback,
// a standby's stale copy) must not drop the new key's records and retire
// it for good. The signer remembers the newest key file it dropped
// records by, and drops nothing by an older one.
func TestSignerOlderKeyFileKeepsRecords(t *testing.T) {
	now := time.Now()
	old := oneCSKey(t, now.Add(-time.Hour), 365*24*time.Hour)
	k2 := oneCSKey(t, now.Add(-time.Minute), 365*24*time.Hour)
	extended := *old
	extended.Denoms = append(append([]DenomKey(nil), old.Denoms...), k2.Denoms...)
	extended.IssuedAt = old.IssuedAt.Add(time.Minute) // extend issues the set anew
	path := filepath.Join(t.TempDir(), SignerNoncesFile)
	s, err := NewSignerServer(&extended, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	answered := signMany(t, s, &extended.Denoms[1], 3)
	s.Close()
	s, err = NewSignerServer(old, path, nil) // the older copy
	if err != nil {
		t.Fatal(err)
	}
	if len(s.nonces.retired) != 0 || s.nonces.older.IsZero() {
		t.Errorf("started on the older key file: %d keys retired, older %v; want none retired, and the newer file noted", len(s.nonces.retired), s.nonces.older)
	}
	s.Close()
	s, err = NewSignerServer(&extended, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var nonce [32]byte
	rand.Read(nonce[:])
	if c := signNonce(t, s, &extended.Denoms[1], nonce); c != codes.OK {
		t.Fatalf("the new key after one start on the older key file: %s", c)
	}
	if c := signNonce(t, s, &extended.Denoms[1], answered[0]); c != codes.AlreadyExists {
		t.Errorf("a second challenge for a nonce answered before: %s, want AlreadyExists (its record kept)", c)
	}
}

// TestSignerWrongKeyFileKeepsRecords: a key file of the same age or newer
// that lacks a key in use (a replica's stale copy changed since, another
// copy edited by hand) is no prune: bankd keys prune drops a key only at
// its deposit end and issues the file after it. One start on such a file
// must not drop the key's records and retire it for good (the signer would
// refuse it from then on, and the bank would have to revoke it): the
// records stay, the start says which key the file lacks, and with the
// right key file the key signs again, a second challenge for a nonce it
// answered still refused.
func TestSignerWrongKeyFileKeepsRecords(t *testing.T) {
	now := time.Now()
	k := oneCSKey(t, now.Add(-time.Hour), 365*24*time.Hour)
	other := oneCSKey(t, now.Add(-time.Hour), 365*24*time.Hour)
	both := *k
	both.Denoms = append(append([]DenomKey(nil), k.Denoms...), other.Denoms...)
	for _, tc := range []struct {
		name  string
		after time.Duration
	}{{"same age", 0}, {"newer", time.Minute}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), SignerNoncesFile)
			s, err := NewSignerServer(&both, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			answered := signMany(t, s, &both.Denoms[1], 3)
			s.Close()

			wrong := *k
			wrong.IssuedAt = both.IssuedAt.Add(tc.after)
			var logged bytes.Buffer
			s, err = NewSignerServer(&wrong, path, slog.New(slog.NewTextHandler(&logged, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.nonces.retired) != 0 || len(s.nonces.locks) != len(answered) {
				t.Errorf("started on a key file lacking a key in use: %d keys retired, %d records loaded; want none retired, %d loaded", len(s.nonces.retired), len(s.nonces.locks), len(answered))
			}
			if !strings.Contains(logged.String(), "denomination="+both.Denoms[1].ID.String()) {
				t.Errorf("the start did not name the key its key file lacks: %s", logged.String())
			}
			s.Close()

			s, err = NewSignerServer(&both, path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var nonce [32]byte
			rand.Read(nonce[:])
			if c := signNonce(t, s, &both.Denoms[1], nonce); c != codes.OK {
				t.Fatalf("the key after one start on a key file lacking it: %s", c)
			}
			if c := signNonce(t, s, &both.Denoms[1], answered[0]); c != codes.AlreadyExists {
				t.Errorf("a second challenge for a nonce answered before: %s, want AlreadyExists", c)
			}
		})
	}
}

// TestSignerAheadKeyFileKeepsRecords: a key file issued far ahead of the
// signer's clock (made on a machine whose clock ran ahead) that lacks a
// key in use looks like a prune by its issue time, after the key's deposit
// end. Its issue time is a clock's mistake: the start keeps the key's
// records and retires nothing, says why, and does not take that time as
// the newest key file's (a later file issued rightly drops records as
// before).
func TestSignerAheadKeyFileKeepsRecords(t *testing.T) {
	now := time.Now()
	k := oneCSKey(t, now.Add(-time.Hour), 365*24*time.Hour)
	other := oneCSKey(t, now.Add(-time.Hour), 365*24*time.Hour)
	both := *k
	both.Denoms = append(append([]DenomKey(nil), k.Denoms...), other.Denoms...)
	path := filepath.Join(t.TempDir(), SignerNoncesFile)
	s, err := NewSignerServer(&both, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	answered := signMany(t, s, &both.Denoms[1], 3)
	s.Close()

	ahead := *k
	ahead.IssuedAt = both.Denoms[1].DepositEnd.Add(time.Hour) // a year and more ahead
	var logged bytes.Buffer
	s, err = NewSignerServer(&ahead, path, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.nonces.retired) != 0 || len(s.nonces.locks) != len(answered) || s.nonces.ahead.IsZero() {
		t.Errorf("started on a key file issued ahead, lacking a key in use: %d keys retired, %d records loaded, ahead %v; want none retired, %d loaded, ahead noted", len(s.nonces.retired), len(s.nonces.locks), s.nonces.ahead, len(answered))
	}
	if !strings.Contains(logged.String(), "ahead of this signer's clock") {
		t.Errorf("the start did not say its key file was issued ahead: %s", logged.String())
	}
	s.Close()

	s, err = NewSignerServer(&both, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s.nonces.older.IsZero() {
		t.Errorf("the right key file after one issued ahead is taken for an older copy (mark %v)", s.nonces.older)
	}
	var nonce [32]byte
	rand.Read(nonce[:])
	if c := signNonce(t, s, &both.Denoms[1], nonce); c != codes.OK {
		t.Fatalf("the key after one start on a key file issued ahead: %s", c)
	}
	if c := signNonce(t, s, &both.Denoms[1], answered[0]); c != codes.AlreadyExists {
		t.Errorf("a second challenge for a nonce answered before: %s, want AlreadyExists", c)
	}
	s.Close()
}

// TestSignerNonceLogFromOlderBuild: testdata/signer-nonces-v1 holds a
// nonce log written by the build before deposit ends were recorded (its
// mark, three records of each of two live CS keys, the tombstone of a
// third key) with its key files. It opens: every record loads, the third
// key stays retired, and the start records the deposit ends of the keys
// in its key file, by which a later start on a key file lacking one keeps
// its records. A key whose deposit end was never recorded is dropped, as
// before, by a key file that lacks it.
func TestSignerNonceLogFromOlderBuild(t *testing.T) {
	const dir = "testdata/signer-nonces-v1"
	// Parsed, not LoadKeys: git keeps the fixture's mode 0644, which
	// LoadKeys refuses for a key file (OpenPrivate).
	load := func(name string) *Keys {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		k, err := parseKeys(b)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keys, all := load("keys.json"), load("keys-all.json")
	old, err := os.ReadFile(filepath.Join(dir, SignerNoncesFile))
	if err != nil {
		t.Fatal(err)
	}
	answered := map[ecash.Hash][][32]byte{}
	for _, r := range chunks(old) {
		if _, mark := r.mark(); !mark && !r.tombstone() {
			answered[ecash.Hash(r[:32])] = append(answered[ecash.Hash(r[:32])], [32]byte(r[32:64]))
		}
	}
	var tombstoned ecash.Hash
	for _, d := range all.Denoms {
		if !slices.ContainsFunc(keys.Denoms, func(e DenomKey) bool { return e.ID == d.ID }) {
			tombstoned = d.ID
		}
	}
	if len(keys.Denoms) != 2 || len(answered) != 2 || tombstoned == (ecash.Hash{}) {
		t.Fatalf("the fixture: %d keys, records of %d, want 2 and 2 and a third key", len(keys.Denoms), len(answered))
	}
	// The signer's clock inside the fixture keys' withdraw window, so that
	// the test does not depend on the machine's date.
	at := keys.Denoms[0].WithdrawStart.Add(time.Hour)
	open := func(k *Keys, path string) (*SignerServer, error) {
		s, err := NewSignerServer(k, path, nil)
		if err == nil {
			s.now = func() time.Time { return at }
		}
		return s, err
	}
	copyLog := func(t *testing.T) string {
		path := filepath.Join(t.TempDir(), SignerNoncesFile)
		if err := os.WriteFile(path, old, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	wrong := *keys // as old, lacking a key in use
	wrong.Denoms = keys.Denoms[:1]
	lacked := &keys.Denoms[1]

	t.Run("upgraded", func(t *testing.T) {
		path := copyLog(t)
		s, err := open(keys, path)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.nonces.locks) != 6 || !s.nonces.retired[tombstoned] || len(s.nonces.retired) != 1 {
			t.Errorf("the old log: %d records loaded, retired %v; want 6, the tombstoned key", len(s.nonces.locks), s.nonces.retired)
		}
		for i := range keys.Denoms {
			for _, nonce := range answered[keys.Denoms[i].ID] {
				if c := signNonce(t, s, &keys.Denoms[i], nonce); c != codes.AlreadyExists {
					t.Errorf("a second challenge for a nonce in the old log: %s, want AlreadyExists", c)
				}
			}
		}
		s.Close()
		s, err = open(&wrong, path)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.nonces.locks) != 6 || s.nonces.retired[lacked.ID] {
			t.Errorf("a key file lacking a key in use, after the upgrade: %d records loaded, the key retired %v; want 6, not retired", len(s.nonces.locks), s.nonces.retired[lacked.ID])
		}
		s.Close()
		s, err = open(keys, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if c := signNonce(t, s, lacked, answered[lacked.ID][0]); c != codes.AlreadyExists {
			t.Errorf("a second challenge for a nonce in the old log: %s, want AlreadyExists", c)
		}
	})
	t.Run("no deposit end recorded", func(t *testing.T) {
		s, err := open(&wrong, copyLog(t))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if len(s.nonces.locks) != 3 || !s.nonces.retired[lacked.ID] {
			t.Errorf("the first start on a key file lacking a key: %d records loaded, the key retired %v; want 3, retired (as before)", len(s.nonces.locks), s.nonces.retired[lacked.ID])
		}
	})
}
