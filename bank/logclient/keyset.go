package logclient

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// ErrKeySetLine: the keyset line of a checkpoint the bank signed is
// provably false: the entry it names is not the key set it names (or not
// one the bank's master key signed), or the key set the client holds has
// an entry after it in the same tree. The checkpoint, the two entries and
// their inclusion proofs are the evidence.
var ErrKeySetLine = errors.New("the bank's checkpoint misstates its newest logged key set")

// LoggedKeySet is a key set the bank logged, verified: its entry's index,
// its signed bytes and the decoded set (signed by the master key of the
// set the client holds).
type LoggedKeySet struct {
	Index  int64
	Signed []byte
	KeySet *ecash.KeySet
}

// CheckKeySet compares the keyset line of cp, a checkpoint the client's
// witness holds, with held, the key set the bank served the client
// (heldSigned: its signed bytes). A bank that keeps serving one client an
// old logged key set, hiding a later one (that revokes a leaked
// denomination, or adds keys), must still name the later one here.
//
// It returns nil, nil when the line names held, when the log is empty, and
// when held has no entry in cp's tree (logged after it: a later checkpoint
// says more; or not logged at all, which the client's check of held's own
// entry reports). It returns the key set the line names, verified (its
// entry's inclusion proof against cp, the master key's signature), when
// it is logged after held: the client adopts it if it follows held, and
// reports it otherwise. A line naming an earlier entry than held's, or an
// entry that is not the key set it names, wraps ErrKeySetLine. A
// checkpoint of a non-empty log without a line is refused
// (auditlog.RequireKeySet).
func CheckKeySet(ctx context.Context, c pb.AuditLogClient, cp auditlog.Checkpoint, held *ecash.KeySet, heldSigned []byte) (*LoggedKeySet, error) {
	if err := auditlog.RequireKeySet(cp); err != nil {
		return nil, err
	}
	ref := sha256.Sum256(heldSigned)
	if cp.Size == 0 || cp.KeySet.Hash == ref {
		return nil, nil
	}
	e, err := Entry(ctx, c, cp, cp.KeySet.Index)
	if err != nil {
		return nil, err
	}
	op, ok := e.Op.(auditlog.KeySet)
	if !ok || sha256.Sum256(op.Signed) != cp.KeySet.Hash {
		return nil, fmt.Errorf("%w: the checkpoint of %d entries names key set %x… at entry %d, which is a %s of another key set or none",
			ErrKeySetLine, cp.Size, cp.KeySet.Hash[:8], cp.KeySet.Index, e.Kind())
	}
	ks, err := ecash.DecodeKeySet(op.Signed, held.MasterPub)
	if err != nil {
		return nil, fmt.Errorf("%w: the checkpoint of %d entries names as newest the key set at entry %d, which the bank's master key did not sign: %w",
			ErrKeySetLine, cp.Size, cp.KeySet.Index, err)
	}
	at, found, err := Find(ctx, c, ref)
	if err != nil || !found || at >= cp.Size {
		return nil, err
	}
	// The entry the bank names as held's must be held's: only then does
	// its index order the two.
	if at == cp.KeySet.Index {
		return nil, fmt.Errorf("%w: the bank finds key set %x… at entry %d, which holds key set %x…", ErrMismatch, ref[:8], at, cp.KeySet.Hash[:8])
	}
	he, err := Entry(ctx, c, cp, at)
	if err != nil {
		return nil, err
	}
	if err := (Expect{Kind: auditlog.KindKeySet, Ref: ref}).Match(he); err != nil {
		return nil, err
	}
	if at > cp.KeySet.Index {
		return nil, fmt.Errorf("%w: the checkpoint of %d entries names key set %x… at entry %d as the newest logged, but the key set the bank serves (%x…) is logged after it, at entry %d",
			ErrKeySetLine, cp.Size, cp.KeySet.Hash[:8], cp.KeySet.Index, ref[:8], at)
	}
	return &LoggedKeySet{Index: cp.KeySet.Index, Signed: op.Signed, KeySet: ks}, nil
}
