package logclient

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// ErrKeySetLine: the keyset line of a checkpoint the bank signed is
// provably false: the entry it names is not the key set it names (or not
// one the bank's master key signed). The checkpoint, the entry and its
// inclusion proof are the evidence.
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
// The entry the line names is always fetched with its inclusion proof
// against cp and must be the key set the line names, signed by held's
// master key (else ErrKeySetLine). No other answer of the bank (FindEntry)
// is asked: none can end the check. It returns nil, nil when the log is
// empty and when the line names held. It returns the key set the line
// names, verified, when it is issued after held or in the same second:
// the client adopts it if it follows held, and reports it otherwise. One
// issued before held wraps ErrMismatch: the checkpoint names an older key set than the one
// the bank served this client, which an honest bank (that logs a key set
// before serving it, and never logs one again) never does. A checkpoint
// of a non-empty log without a line is refused (auditlog.RequireKeySet).
func CheckKeySet(ctx context.Context, c pb.AuditLogClient, cp auditlog.Checkpoint, held *ecash.KeySet, heldSigned []byte) (*LoggedKeySet, error) {
	if err := auditlog.RequireKeySet(cp); err != nil {
		return nil, err
	}
	if cp.Size == 0 {
		return nil, nil
	}
	ref := sha256.Sum256(heldSigned)
	e, err := Entry(ctx, c, cp, cp.KeySet.Index)
	if err != nil {
		return nil, err
	}
	op, ok := e.Op.(auditlog.KeySet)
	if !ok || sha256.Sum256(op.Signed) != cp.KeySet.Hash {
		return nil, fmt.Errorf("%w: the checkpoint of %d entries names key set %x… at entry %d, which is a %s of another key set or none",
			ErrKeySetLine, cp.Size, cp.KeySet.Hash[:8], cp.KeySet.Index, e.Kind())
	}
	if cp.KeySet.Hash == ref {
		return nil, nil
	}
	ks, err := ecash.DecodeKeySet(op.Signed, held.MasterPub)
	if err != nil {
		return nil, fmt.Errorf("%w: the checkpoint of %d entries names as newest the key set at entry %d, which the bank's master key did not sign: %w",
			ErrKeySetLine, cp.Size, cp.KeySet.Index, err)
	}
	// Issue times are whole seconds: a set issued in the same second as
	// held (two replicas revoking at once) is the client's to adopt if it
	// follows, as GetKeys would serve it.
	if ks.IssuedAt.Before(held.IssuedAt) {
		return nil, fmt.Errorf("%w: the checkpoint of %d entries names as the newest logged key set %x… (entry %d, issued %s), older than the one the bank served (%x…, issued %s)",
			ErrMismatch, cp.Size, cp.KeySet.Hash[:8], cp.KeySet.Index, ks.IssuedAt.UTC().Format(time.RFC3339), ref[:8], held.IssuedAt.UTC().Format(time.RFC3339))
	}
	return &LoggedKeySet{Index: cp.KeySet.Index, Signed: op.Signed, KeySet: ks}, nil
}
