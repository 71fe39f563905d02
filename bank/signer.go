package bank

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// The signer process.
//
// "bankd signer" holds the denomination private keys and answers the Signer
// service (proto/signer.proto) on a unix socket; "bankd serve --signer
// unix:///PATH" turns its own Keys into remote ones (RemoteKeys), whose
// DenomKey.Private call that service, so the rest of the bank is unchanged.
// bankd checks every request before it asks the signer; the signer is a
// signing oracle for whoever can connect to its socket (mode 0600: the
// user bankd runs as), but only for denominations withdrawable now by its
// own clock and key file (not revoked). What the separation buys: a
// compromise of the network process does not reveal the denomination
// private keys (it can still have coins signed while it lasts). For that to hold for CS keys, the
// signer keeps its own record of the nonces it answered (SignerNoncesFile)
// and never answers two different challenges for one nonce, which would
// reveal the key: bankd's ledger holds the same locks, but a compromised
// bankd would not consult them. The record keeps only what still matters:
// at each start the records of keys the signer will never sign for again
// (pruned from its key file) are dropped, and those keys retired
// (openNonceLog); not those of a key a wrong key file lacks.

// Errors of the remote signer, as its clients see them.
var (
	// ErrSignerUnavailable: the signer did not answer (down, restarting,
	// too slow). gRPC callers get Unavailable; nothing was committed.
	ErrSignerUnavailable = errors.New("bank: the denomination signer is unavailable")
	// ErrSignerMismatch: the signer holds other keys than the bank.
	ErrSignerMismatch = errors.New("bank: the denomination signer holds other keys than this bank")
)

// SignerNoncesFile is the signer's record of the CS nonces it answered,
// in its data directory beside keys.json.
const SignerNoncesFile = "signer-nonces.log"

// DefaultSignerTimeout bounds one call to the signer.
const DefaultSignerTimeout = 10 * time.Second

// SignerServer is the Signer service over a Keys' denomination private keys.
type SignerServer struct {
	pb.UnimplementedSignerServer
	keys   *Keys
	denoms map[ecash.Hash]*DenomKey
	nonces *nonceLog
	log    *slog.Logger
	now    func() time.Time // the signer's clock, for the withdraw windows
}

// NewSignerServer serves k's denomination keys. noncesPath is the file of
// answered CS nonces (created if missing; locked against a second signer).
// On opening it, the records of denominations the signer will never sign
// for again are dropped (see openNonceLog): those pruned from the key file,
// that is not in k although k was issued after their deposit end (which
// the record notes for every CS key the signer runs with). Each such
// denomination is retired: the signer refuses to sign for it from then on,
// whatever a later key file says. A key k lacks though issued before its
// deposit end (a wrong or stale key file: not a prune) keeps its records
// and is not retired, and so does every key when k is older than a key
// file the signer ran with, or issued ahead of the signer's clock. Not by
// the signer's clock otherwise: a signer started once with its clock ahead
// would retire every current key, and a key past its window costs only its
// records until it is pruned.
func NewSignerServer(k *Keys, noncesPath string, log *slog.Logger) (*SignerServer, error) {
	return newSignerServer(k, noncesPath, log, time.Now)
}

// newSignerServer is NewSignerServer on the clock now.
func newSignerServer(k *Keys, noncesPath string, log *slog.Logger, now func() time.Time) (*SignerServer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &SignerServer{keys: k, denoms: map[ecash.Hash]*DenomKey{}, log: log, now: now}
	for i := range k.Denoms {
		s.denoms[k.Denoms[i].ID] = &k.Denoms[i]
	}
	nl, err := openNonceLog(noncesPath, k, s.now())
	if err != nil {
		return nil, err
	}
	s.nonces = nl
	if !nl.older.IsZero() {
		log.Warn("signer: the key file is older than one this signer ran with; no nonce records dropped (a key it lacks may be newer, and in use)",
			"key_file_issued", k.IssuedAt.UTC(), "newest_seen", nl.older.UTC())
	}
	if !nl.ahead.IsZero() {
		log.Warn("signer: the key file was issued ahead of this signer's clock by more than the protocol's clock skew; no nonce records dropped (its issue time is a clock's mistake, here or where it was made); a start once this clock has passed that time drops those of pruned keys",
			"key_file_issued", nl.ahead.UTC(), "now", s.now().UTC())
	}
	for id, end := range nl.absent {
		log.Error("signer: the key file lacks a CS denomination this signer ran with, although it was issued before that denomination's deposit end: not a prune (a wrong or stale key file); its nonce records are kept and it is not retired; give the signer its bank's current key file",
			"denomination", id.String(), "deposit_end", end.UTC(), "key_file_issued", k.IssuedAt.UTC())
	}
	if nl.compacted > 0 {
		log.Info("signer: dropped the CS nonce records of denominations it will not sign for again (pruned: not in its key file, issued after their deposit end); they are retired",
			"records", nl.compacted, "retired", len(nl.retired))
	}
	for _, d := range k.Denoms {
		if nl.retired[d.ID] && s.withdrawable(0, &d) == nil {
			log.Error("signer: the key file lists a withdrawable denomination whose nonce records an earlier start dropped (it was not in that key file): the signer refuses to sign for it; revoke it and make a replacement",
				"denomination", d.ID.String(), "value", d.Value.String())
		}
	}
	return s, nil
}

// Register adds the Signer service to a gRPC server.
func (s *SignerServer) Register(g *grpc.Server) { pb.RegisterSignerServer(g, s) }

// Close closes the nonce record. Stop the gRPC server first.
func (s *SignerServer) Close() error { return s.nonces.close() }

// PublicKeys implements pb.SignerServer.
func (s *SignerServer) PublicKeys(context.Context, *pb.SignerPublicKeysRequest) (*pb.SignerPublicKeysResponse, error) {
	r := &pb.SignerPublicKeysResponse{Currency: s.keys.Currency, MasterPublicKey: s.keys.masterPub(), KeySetBody: s.keys.KeySetBody()}
	for _, d := range s.keys.Denoms {
		r.Denominations = append(r.Denominations, d.ID[:])
	}
	return r, nil
}

func (s *SignerServer) denom(id []byte) (*DenomKey, error) {
	if len(id) != len(ecash.Hash{}) {
		return nil, status.Error(codes.InvalidArgument, "denomination id of wrong length")
	}
	h := ecash.Hash(id)
	d, found := s.denoms[h]
	if !found {
		return nil, status.Errorf(codes.NotFound, "no denomination key %x", h[:8])
	}
	return d, nil
}

// withdrawable refuses, as a status for bankd, to sign for a denomination
// bankd could not be issuing coins of now: one revoked in the signer's key
// file (FailedPrecondition), or one outside its withdraw window by more than
// ecash.MaxClockSkew, the two processes' clocks being allowed to differ
// that much (OutOfRange). Withdrawals, swaps and recoups by re-issue sign
// only denominations withdrawable now. Prepare is not restricted: a recoup
// and a wallet restoring from its seed need the first round of keys no
// longer withdrawable, and it reveals nothing.
func (s *SignerServer) withdrawable(i int, d *DenomKey) error {
	if d.Revoked {
		return status.Errorf(codes.FailedPrecondition, "item %d: denomination %x… of %s is revoked", i, d.ID[:8], d.Value)
	}
	if s.nonces != nil && s.nonces.retired[d.ID] {
		return status.Errorf(codes.FailedPrecondition, "item %d: denomination %x… of %s is retired: the signer dropped its nonce records at an earlier start (it was not in the key file)", i, d.ID[:8], d.Value)
	}
	now := s.now()
	if now.Add(ecash.MaxClockSkew).Before(d.WithdrawStart) || !now.Add(-ecash.MaxClockSkew).Before(d.WithdrawEnd) {
		return status.Errorf(codes.OutOfRange, "item %d: denomination %x… of %s is withdrawable %s to %s, not at %s by the signer's clock", i, d.ID[:8], d.Value,
			d.WithdrawStart.UTC().Format(time.RFC3339), d.WithdrawEnd.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// Prepare implements pb.SignerServer.
func (s *SignerServer) Prepare(_ context.Context, req *pb.SignerPrepareRequest) (*pb.SignerPrepareResponse, error) {
	d, err := s.denom(req.Denomination)
	if err != nil {
		return nil, err
	}
	a, err := d.Private.Prepare(req.Request)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.SignerPrepareResponse{Answer: a}, nil
}

// BlindSign implements pb.SignerServer: every item is checked (its
// denomination withdrawable now, see withdrawable), the CS nonces are
// recorded durably, then all are signed; all or none.
func (s *SignerServer) BlindSign(_ context.Context, req *pb.SignerBlindSignRequest) (*pb.SignerBlindSignResponse, error) {
	if n := len(req.Items); n == 0 || n > 2*ecash.MaxCoinsPerRequest {
		return nil, status.Errorf(codes.InvalidArgument, "%d items, want 1 to %d", n, 2*ecash.MaxCoinsPerRequest)
	}
	keys := make([]*DenomKey, len(req.Items))
	var locks []nonceRec
	for i, it := range req.Items {
		d, err := s.denom(it.Denomination)
		if err != nil {
			return nil, err
		}
		if err := s.withdrawable(i, d); err != nil {
			s.log.Warn("signer: refused to sign for a denomination not withdrawable now", "err", status.Convert(err).Message())
			return nil, err
		}
		keys[i] = d
		lk, err := d.Private.LockKey(it.Blinded)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "item %d: %v", i, err)
		}
		if lk != nil {
			var r nonceRec
			copy(r[:32], d.ID[:])
			copy(r[32:64], lk)
			h := ecash.HashOf(it.Blinded)
			copy(r[64:], h[:])
			locks = append(locks, r)
		}
	}
	if err := s.nonces.take(locks); errors.Is(err, ErrNonceReused) {
		s.log.Warn("signer: refused a second challenge for an answered CS nonce")
		return nil, status.Error(codes.AlreadyExists, err.Error())
	} else if err != nil {
		s.log.Error("signer: recording CS nonces", "err", err)
		return nil, status.Error(codes.Internal, "recording CS nonces failed")
	}
	out := make([][]byte, len(req.Items))
	for i, it := range req.Items {
		sig, err := keys[i].Private.BlindSign(it.Blinded)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "item %d: %v", i, err)
		}
		out[i] = sig
	}
	return &pb.SignerBlindSignResponse{Signatures: out}, nil
}

// nonceRec is denomination id || nonce || SHA-256 of the blinded message.
// A record whose last 64 bytes are zero is a tombstone: the denomination
// is retired (openNonceLog). No record of an answer has them so (a
// SHA-256 of zero).
type nonceRec [96]byte

func (r *nonceRec) tombstone() bool { return [64]byte(r[32:]) == [64]byte{} }

// A mark record holds the issue time of the newest key file the signer has
// dropped records by: id all 0xff (no SHA-256 a denomination id is), the
// time in Unix seconds big-endian, then zeros and a last byte of 1 (so
// that it is no tombstone). A key file older than the mark is an old copy:
// a key it lacks may be one made since, still in use, whose records must
// stay.
var markID = [32]byte(bytes.Repeat([]byte{0xff}, 32))

func markRec(issued time.Time) nonceRec {
	var r nonceRec
	copy(r[:32], markID[:])
	binary.BigEndian.PutUint64(r[32:40], uint64(issued.Unix()))
	r[95] = 1
	return r
}

func (r *nonceRec) mark() (time.Time, bool) {
	if [32]byte(r[:32]) != markID {
		return time.Time{}, false
	}
	return time.Unix(int64(binary.BigEndian.Uint64(r[32:40])), 0), true
}

// An end record holds the deposit end of a CS denomination in a key file
// the signer ran with: id all 0xfe (as the mark's, no SHA-256), the
// denomination id, the deposit end in Unix seconds big-endian, then zeros.
// A key file that lacks the denomination but was issued before that end
// is not a prune (bankd keys prune drops a key only once its deposit end
// has passed, and issues the file after): the denomination's records stay
// (openNonceLog). The deposit end rather than the withdraw end (after
// which the signer no longer signs for it): it is exactly what a prune
// goes by, so a genuine prune always drops, and keeping records longer
// costs only their room.
var endID = [32]byte(bytes.Repeat([]byte{0xfe}, 32))

func endRec(id ecash.Hash, end time.Time) nonceRec {
	var r nonceRec
	copy(r[:32], endID[:])
	copy(r[32:64], id[:])
	binary.BigEndian.PutUint64(r[64:72], uint64(end.Unix()))
	return r
}

func (r *nonceRec) end() (ecash.Hash, time.Time, bool) {
	if [32]byte(r[:32]) != endID {
		return ecash.Hash{}, time.Time{}, false
	}
	return ecash.Hash(r[32:64]), time.Unix(int64(binary.BigEndian.Uint64(r[64:72])), 0), true
}

// nonceLock is what the record of a (denomination, nonce) holds: the hash
// of the blinded message it is locked to, and the batch that writes it (0:
// read from the file).
type nonceLock struct {
	blinded [32]byte
	batch   uint64
}

// nonceLog is an append-only file of nonceRec, synced before the signer
// answers, with concurrent appends grouped into one sync.
type nonceLog struct {
	f         *os.File
	mu        sync.Mutex
	cond      *sync.Cond
	locks     map[[64]byte]nonceLock
	retired   map[ecash.Hash]bool      // read-only after openNonceLog
	compacted int                      // records openNonceLog dropped
	older     time.Time                // the mark, when the key file was older than it (nothing dropped)
	ahead     time.Time                // the key file's issue time, when it was ahead of the clock (nothing dropped)
	absent    map[ecash.Hash]time.Time // denominations not in the key file kept by their deposit end (not a prune)
	buf       []byte                   // records of batch next, not yet written
	next      uint64                   // the batch being filled
	done      uint64                   // the last batch written and synced
	busy      bool                     // a writer is syncing
	err       error                    // sticky: a failed write or sync
}

// nonceLogCrash, if set (by tests), is called at each step of the
// rewrite; an error stops openNonceLog there, leaving the files as a crash
// would.
var nonceLogCrash func(step string) error

func crashPoint(step string) error {
	if nonceLogCrash != nil {
		return nonceLogCrash(step)
	}
	return nil
}

// openNonceLog opens and locks the record at path and loads it, for the
// signer's key file k. A partial final record is from a crash mid-write
// (never answered) and is dropped. Records of denominations the signer
// will never sign for again are dropped too: those not in k whose deposit
// end, as recorded (endRec), k was issued at or after (pruned), or with no
// deposit end recorded (records from before end records were written).
// The file is rewritten without them, with one tombstone per such
// denomination instead, so that the signer refuses to sign for it even if
// a later key file lists it again or its clock goes back (the records
// that made that safe are gone). A denomination not in k whose recorded
// deposit end is after k's issue time keeps its records and is listed in
// absent: k is not a prune of a file that listed it. The deposit end of
// each CS denomination of k is recorded (the latest, if key files
// disagree) before the signer answers for it. The rewrite is atomic:
// a temporary file beside it is written, synced and locked, renamed over
// it, and the directory synced; a crash leaves the old file or the new one
// (and maybe a stale temporary file, removed at the next start), both of
// which hold every record of a denomination kept. Nothing is dropped if
// the key file, issued at issued, is older than one an earlier start
// dropped records by (the mark, see markRec): the signer then keeps every
// record and sets older. Nor if k was issued further ahead of now, the
// signer's clock, than the protocol's clock skew: its issue time is a
// clock's mistake, by which it would retire keys in use that it lacks;
// every record is kept, the mark stays, and ahead is set. (The clock only
// ever keeps records here, never drops them.)
func openNonceLog(path string, k *Keys, now time.Time) (*nonceLog, error) {
	f, err := lockNonceFile(path)
	if err != nil {
		return nil, err
	}
	tmpPath := path + ".rewrite"
	if err := os.Remove(tmpPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.Close()
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &nonceLog{f: f, locks: map[[64]byte]nonceLock{}, retired: map[ecash.Hash]bool{}, absent: map[ecash.Hash]time.Time{}, next: 1}
	l.cond = sync.NewCond(&l.mu)
	recs := chunks(b)
	var mark time.Time
	ends := map[ecash.Hash]time.Time{}
	for _, r := range recs {
		if t, ok := r.mark(); ok {
			if t.After(mark) {
				mark = t
			}
		} else if id, end, ok := r.end(); ok {
			if end.After(ends[id]) {
				ends[id] = end
			}
		} else if r.tombstone() {
			l.retired[ecash.Hash(r[:32])] = true
		}
	}
	inFile := map[ecash.Hash]bool{}
	for _, d := range k.Denoms {
		inFile[d.ID] = true
		if d.Key.Cipher() == ecash.CipherCS && !l.retired[d.ID] && d.DepositEnd.After(ends[d.ID]) {
			ends[d.ID] = d.DepositEnd
		}
	}
	issued := k.IssuedAt
	older := issued.Before(mark)
	ahead := issued.After(now.Add(ecash.MaxClockSkew))
	switch {
	case older:
		l.older = mark
	case ahead:
		l.ahead = issued
	default:
		mark = issued
	}
	keep := func(id ecash.Hash) bool {
		if inFile[id] || older || ahead {
			return true
		}
		end, ok := ends[id]
		if !ok || !issued.Before(end) {
			return false
		}
		l.absent[id] = end
		return true
	}
	kept := make(nonceRecs, 0, len(recs)+1)
	kept = append(kept, markRec(mark))
	tombstoned := map[ecash.Hash]bool{}
	endKept := map[ecash.Hash]bool{}
	for _, r := range recs {
		id := ecash.Hash(r[:32])
		if _, ok := r.mark(); ok {
			continue
		}
		if id, end, ok := r.end(); ok {
			// One per denomination kept: its latest end.
			if !l.retired[id] && keep(id) && end.Equal(ends[id]) && !endKept[id] {
				endKept[id] = true
				kept = append(kept, r)
			}
			continue
		}
		if r.tombstone() || l.retired[id] || !keep(id) {
			if !r.tombstone() {
				l.compacted++
			}
			if !tombstoned[id] {
				tombstoned[id] = true
				var t nonceRec
				copy(t[:32], id[:])
				kept = append(kept, t)
			}
			continue
		}
		l.locks[[64]byte(r[:64])] = nonceLock{blinded: [32]byte(r[64:])}
		kept = append(kept, r)
	}
	for id := range tombstoned {
		l.retired[id] = true
	}
	// The deposit ends k adds, on disk before the signer answers.
	for _, d := range k.Denoms {
		if end, ok := ends[d.ID]; ok && !l.retired[d.ID] && !endKept[d.ID] {
			endKept[d.ID] = true
			kept = append(kept, endRec(d.ID, end))
		}
	}
	if len(kept) != len(recs) || !slices.Equal(kept, recs) {
		nf, err := rewriteNonceFile(path, tmpPath, kept.bytes())
		f.Close() // the new file is locked: a signer starting now waits on it
		if err != nil {
			return nil, fmt.Errorf("bank: rewriting the signer's nonce record %s: %w", path, err)
		}
		l.f = nf
		return l, nil
	}
	n := len(recs)
	// A partial record is from a crash mid-write: it was never answered.
	if err := f.Truncate(int64(n * len(nonceRec{}))); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

type nonceRecs []nonceRec

func chunks(b []byte) nonceRecs {
	out := make(nonceRecs, len(b)/len(nonceRec{}))
	for i := range out {
		copy(out[i][:], b[i*len(nonceRec{}):])
	}
	return out
}

func (rs nonceRecs) bytes() []byte {
	out := make([]byte, 0, len(rs)*len(nonceRec{}))
	for _, r := range rs {
		out = append(out, r[:]...)
	}
	return out
}

// lockNonceFile opens path and takes its exclusive lock, refusing if
// another signer holds it. The lock must be on the file path names: a
// signer that opened the file another then replaced (openNonceLog's
// rewrite) and locked it after would hold a lock on a file no longer
// there, so it opens path again.
func lockNonceFile(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := tryLockFile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("bank: %s is in use by another signer: %w", path, err)
		}
		held, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		named, err := os.Stat(path)
		if err == nil && os.SameFile(held, named) {
			return f, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
}

// rewriteNonceFile writes recs to tmpPath, syncs and locks it, renames it
// over path and syncs the directory. It returns the new file, locked and
// positioned at its end.
func rewriteNonceFile(path, tmpPath string, recs []byte) (*os.File, error) {
	t, err := os.OpenFile(tmpPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	step := func(name string, err error) error {
		if err == nil {
			err = crashPoint(name)
		}
		return err
	}
	if err := tryLockFile(t); err != nil {
		t.Close()
		return nil, err
	}
	_, err = t.Write(recs)
	if err = step("written", err); err == nil {
		err = step("synced", t.Sync())
	}
	if err == nil {
		err = step("renamed", os.Rename(tmpPath, path))
	}
	if err == nil {
		err = step("dir-synced", syncDir(filepath.Dir(path)))
	}
	if err == nil {
		_, err = t.Seek(0, io.SeekEnd)
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// take records the locks, refusing one whose nonce is locked to another
// blinded message (ErrNonceReused), and returns once they are on disk. A
// lock already taken for the same blinded message (a retry) is not written
// again, but it may still wait for another call's write: take returns
// once that batch is synced too, as it does for that call.
func (l *nonceLog) take(recs []nonceRec) error {
	if len(recs) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	fresh := recs[:0:0]
	seen := map[[64]byte][32]byte{}
	var mine uint64 // the last batch these locks are written by
	for _, r := range recs {
		k, h := [64]byte(r[:64]), [32]byte(r[64:])
		if old, ok := l.locks[k]; ok {
			if old.blinded != h {
				return fmt.Errorf("%w: the signer answered another challenge for this CS nonce", ErrNonceReused)
			}
			mine = max(mine, old.batch)
			continue
		}
		if old, ok := seen[k]; ok {
			if old != h {
				return fmt.Errorf("%w: nonce twice in one request", ErrNonceReused)
			}
			continue
		}
		seen[k] = h
		fresh = append(fresh, r)
	}
	for _, r := range fresh {
		l.locks[[64]byte(r[:64])] = nonceLock{blinded: [32]byte(r[64:]), batch: l.next}
		l.buf = append(l.buf, r[:]...)
		mine = l.next
	}
	for l.done < mine && l.err == nil {
		if l.busy {
			l.cond.Wait()
			continue
		}
		l.busy = true
		buf, batch := l.buf, l.next
		l.buf, l.next = nil, l.next+1
		l.mu.Unlock()
		_, err := l.f.Write(buf)
		if err == nil {
			err = l.f.Sync()
		}
		l.mu.Lock()
		l.busy = false
		if err != nil {
			l.err = fmt.Errorf("bank: signer nonce record: %w", err)
		} else {
			l.done = batch
		}
		l.cond.Broadcast()
	}
	return l.err
}

func (l *nonceLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if l.err == nil {
		l.err = errors.New("bank: signer closed")
	}
	return err
}

// ListenSignerSocket listens on the unix socket path with mode 0600. It
// refuses if path exists and is not a socket, or is a socket something
// answers on; a stale socket (nothing listening) is replaced.
func ListenSignerSocket(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("bank: %s exists and is not a socket; not replacing it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("bank: %s is in use: another process listens on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// The caller set a umask of 077 (the signer command does): this closes
	// no window then, and is the one guard otherwise.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// SignerClient talks to a signer process.
type SignerClient struct {
	conn    *grpc.ClientConn
	c       pb.SignerClient
	Timeout time.Duration // of each call; zero: DefaultSignerTimeout
	Log     *slog.Logger  // signer failures are logged here; nil: discarded
}

// DialSigner connects to the signer at target, "unix:///abs/path" (or
// "unix:relative/path"), with extra dial options. It does not wait for the
// signer: calls fail with ErrSignerUnavailable while it is down and
// succeed once it is back.
func DialSigner(target string, extra ...grpc.DialOption) (*SignerClient, error) {
	if !strings.HasPrefix(target, "unix:") {
		return nil, fmt.Errorf("bank: signer address %q: want unix:///PATH", target)
	}
	conn, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("bank: signer address %q: %w", target, err)
	}
	return &SignerClient{conn: conn, c: pb.NewSignerClient(conn)}, nil
}

// Close closes the connection.
func (c *SignerClient) Close() error { return c.conn.Close() }

func (c *SignerClient) ctx() (context.Context, context.CancelFunc) {
	t := c.Timeout
	if t <= 0 {
		t = DefaultSignerTimeout
	}
	return context.WithTimeout(context.Background(), t)
}

// signerError is a failure to reach the signer: it unwraps to
// ErrSignerUnavailable and gives gRPC callers Unavailable. Its message
// leaves out the signer's detail (socket path, transport error), which
// the bank's peers would see: mapErr logs it.
type signerError struct{}

func (e *signerError) Error() string { return ErrSignerUnavailable.Error() }
func (e *signerError) Unwrap() error { return ErrSignerUnavailable }
func (e *signerError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, ErrSignerUnavailable.Error())
}

// mapErr turns a signer's answer into the bank's vocabulary.
func (c *SignerClient) mapErr(what string, err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.InvalidArgument:
		return fmt.Errorf("%w: %s", ecash.ErrMalformed, st.Message())
	case codes.AlreadyExists:
		return fmt.Errorf("%w: %s", ErrNonceReused, st.Message())
	case codes.NotFound:
		return fmt.Errorf("%w: %s", ErrSignerMismatch, st.Message())
	case codes.FailedPrecondition, codes.OutOfRange:
		// bankd found the denomination withdrawable: the two key files
		// (a revocation) or clocks differ.
		if c.Log != nil {
			c.Log.Error("denomination signer refused a denomination this bank issues: compare their key files and clocks", "call", what, "err", st.Message())
		}
		if st.Code() == codes.FailedPrecondition {
			return fmt.Errorf("%w: by the signer: %s", ecash.ErrDenominationRevoked, st.Message())
		}
		return fmt.Errorf("%w: by the signer: %s", ecash.ErrDenominationExpired, st.Message())
	}
	if c.Log != nil {
		c.Log.Error("denomination signer failed", "call", what, "code", st.Code().String(), "err", st.Message())
	}
	return &signerError{}
}

// Check compares the signer's keys with k: the same bank (master key and
// currency) and exactly k's denominations.
func (c *SignerClient) Check(k *Keys) error {
	ctx, cancel := c.ctx()
	defer cancel()
	r, err := c.c.PublicKeys(ctx, &pb.SignerPublicKeysRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return c.mapErr("PublicKeys", err)
	}
	if !bytes.Equal(r.MasterPublicKey, k.masterPub()) || r.Currency != k.Currency {
		return fmt.Errorf("%w: it holds the keys of bank %s (%s), this is bank %s (%s)", ErrSignerMismatch,
			ecash.HashOf(r.MasterPublicKey), r.Currency, k.BankID(), k.Currency)
	}
	var theirs, ours []string
	for _, id := range r.Denominations {
		theirs = append(theirs, fmt.Sprintf("%x", id))
	}
	for _, d := range k.Denoms {
		ours = append(ours, d.ID.String())
	}
	slices.Sort(theirs)
	slices.Sort(ours)
	if !slices.Equal(theirs, ours) {
		missing, extra := 0, 0
		for _, id := range ours {
			if !slices.Contains(theirs, id) {
				missing++
			}
		}
		for _, id := range theirs {
			if !slices.Contains(ours, id) {
				extra++
			}
		}
		return fmt.Errorf("%w: %d of this bank's %d denominations are missing from the signer, which holds %d others; start the signer with the same key file (after 'bankd keys extend', 'prune' or 'revoke', restart both)",
			ErrSignerMismatch, missing, len(ours), extra)
	}
	return nil
}

// RemoteKeys checks the signer against k and returns a copy of k whose
// denomination private keys are the signer's: every Prepare and BlindSign
// goes to it. (The copy still holds whatever else k holds; see
// docs/OPERATIONS.md, "Separate signing process".)
func (c *SignerClient) RemoteKeys(k *Keys) (*Keys, error) {
	if err := c.Check(k); err != nil {
		return nil, err
	}
	out := k.clone()
	for i := range out.Denoms {
		d := &out.Denoms[i]
		d.Private = &RemoteDenomKey{c: c, id: d.ID, pub: d.Key}
	}
	return out, nil
}

// RemoteDenomKey is an ecash.DenomPrivateKey whose private half is in the
// signer process.
type RemoteDenomKey struct {
	c   *SignerClient
	id  ecash.Hash
	pub ecash.DenomPublicKey
}

// Public implements ecash.DenomPrivateKey.
func (k *RemoteDenomKey) Public() ecash.DenomPublicKey { return k.pub }

// Bytes is nil: the private key is not here.
func (k *RemoteDenomKey) Bytes() []byte { return nil }

// LockKey is computed here, as by a key held here: it needs no private key
// (ecash.LockKeyOf).
func (k *RemoteDenomKey) LockKey(blinded []byte) ([]byte, error) {
	return ecash.LockKeyOf(k.pub, blinded)
}

// Prepare asks the signer.
func (k *RemoteDenomKey) Prepare(req []byte) ([]byte, error) {
	if k.pub.Cipher() != ecash.CipherCS {
		return nil, fmt.Errorf("%w: %s has no first round", ecash.ErrMalformed, k.pub.Cipher())
	}
	ctx, cancel := k.c.ctx()
	defer cancel()
	r, err := k.c.c.Prepare(ctx, &pb.SignerPrepareRequest{Denomination: k.id[:], Request: req})
	if err != nil {
		return nil, k.c.mapErr("Prepare", err)
	}
	return r.Answer, nil
}

// BlindSign asks the signer.
func (k *RemoteDenomKey) BlindSign(blinded []byte) ([]byte, error) {
	ctx, cancel := k.c.ctx()
	defer cancel()
	r, err := k.c.c.BlindSign(ctx, &pb.SignerBlindSignRequest{Items: []*pb.SignerBlindSignItem{{Denomination: k.id[:], Blinded: blinded}}})
	if err != nil {
		return nil, k.c.mapErr("BlindSign", err)
	}
	if len(r.Signatures) != 1 {
		if k.c.Log != nil {
			k.c.Log.Error("denomination signer failed", "call", "BlindSign", "err", fmt.Sprintf("%d signatures for 1 message", len(r.Signatures)))
		}
		return nil, &signerError{}
	}
	return r.Signatures[0], nil
}
