package wallet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// The wallet checks that the bank logged what it did with the wallet's
// coins and account: each settled payment, return, swap and payment order
// (check or purchase) leaves a check due
// (v/<payment or swap request hash>); VerifyLog finds the entry in the
// bank's audit log, verifies its inclusion proof against a checkpoint the
// wallet's witness accepted (m/witness, the newest checkpoint seen, so a
// bank that shows two inconsistent logs is caught), and that the entry
// names the payment or swap and exactly the wallet's coins. Each
// withdrawal leaves one too (v/<withdraw request hash>), whose entry must
// debit the wallet's account what it signed for, for coins of exactly the
// denominations it asked for: a withdrawal the log lacks is issuance the
// auditor does not see, and a debit it cannot check. Each key set
// the wallet accepts leaves one too (v/<SHA-256 of its signed bytes>): a
// bank logs its key set before it serves it, so one the log lacks was made
// for this wallet (keys to recognise its coins by), and VerifyLog says so.

var keyWitness = []byte("m/witness")

func logCheckKey(ref ecash.Hash) []byte { return append([]byte("v/"), ref[:]...) }

const (
	logDeposit     = 1
	logSwap        = 2
	logEPOApproved = 3 // a check or purchase the bank approved
	logEPODeclined = 4
	logKeySet      = 5
	logWithdraw    = 6
)

// logCheck is a log entry the wallet expects.
type logCheck struct {
	Kind  uint8
	Index int64 // 0: ask the bank (FindEntry)
	// The coins spent; for a withdrawal, the denomination of each coin
	// asked for.
	Coins []ecash.Hash
	// For a deposit: the merchant account the receipt says was credited,
	// and what with (its Total), so that a log entry crediting another
	// account or amount does not match; for a withdrawal, the wallet's
	// account and what it signed to be debited. Trailing, written only
	// when set: records written before them decode as they were, and
	// check less.
	Merchant uint64
	Credited ecash.Amount
	// Answered: the bank's time on its answer (a deposit receipt's
	// DepositedAt, a check receipt's DecidedAt), unix milliseconds; 0 for
	// a withdrawal, whose answer carries none. Trailing, written by builds
	// that report an answer the log lacks; 0 on older records, which
	// cannot tell an answer from before the bank kept its log, and only
	// wait.
	Answered int64
	// Asked: the time on the request the answer answers, which the bank
	// refuses when dated further ahead of its clock than the skew (a
	// payment request's CreatedAt, an EPOID's time, a withdraw request's
	// CreatedAt, the wallet's own), unix milliseconds: it bounds
	// Answered, the bank's alone, and dates a withdrawal's answer
	// (logclient.Start.Unlogged). Trailing; 0 on records of builds before
	// it, which take the bank's date as it is.
	Asked int64
}

func (c *logCheck) encode() []byte {
	e := ecash.NewEncoder("wallet/log-check")
	e.U8(c.Kind)
	e.I64(c.Index)
	e.U32(uint32(len(c.Coins)))
	for _, h := range c.Coins {
		e.Fixed(h[:])
	}
	// Merchant is 0 (and Credited absent) before Answered on a check's
	// record: records written before Answered never hold a 0 there.
	// Answered is written, even 0 (a receipt the bank dated at the epoch),
	// before Asked.
	if c.Merchant != 0 || c.Answered != 0 || c.Asked != 0 {
		e.U64(c.Merchant)
		if c.Merchant != 0 {
			e.Amount(c.Credited)
		}
	}
	if c.Answered != 0 || c.Asked != 0 {
		e.I64(c.Answered)
	}
	if c.Asked != 0 {
		e.I64(c.Asked)
	}
	return e.Bytes()
}

func decodeLogCheck(b []byte) (*logCheck, error) {
	d := ecash.NewDecoder("wallet/log-check", b)
	c := &logCheck{Kind: d.U8(), Index: d.I64()}
	n := d.Count(ecash.MaxCoinsPerRequest)
	for range n {
		var h ecash.Hash
		copy(h[:], d.Fixed(32))
		c.Coins = append(c.Coins, h)
	}
	if d.More() {
		if c.Merchant = d.U64(); c.Merchant != 0 {
			c.Credited = d.Amount()
		}
	}
	if d.More() {
		c.Answered = d.I64()
	}
	if d.More() {
		c.Asked = d.I64()
	}
	return c, d.Finish()
}

// ErrLogMismatch: the bank's log does not record what its answer said.
var ErrLogMismatch = errors.New("wallet: the bank's audit log does not match its answer")

// LogReport is what VerifyLog found.
type LogReport struct {
	Checkpoint auditlog.Checkpoint // the newest checkpoint accepted
	Signed     []byte              // Checkpoint as the bank signed it: what "audit log --from" reads
	Verified   int                 // entries found and matching
	Waiting    int                 // checks not possible yet (not logged, or not in the checkpoint)
	// AdoptedKeySet: the checkpoint named a newer logged key set than the
	// bank served, which follows the one held, and the wallet took it.
	AdoptedKeySet bool
}

// VerifyLog checks every due log entry against the bank's log, and keeps
// the newest checkpoint. A fork (a checkpoint inconsistent with one seen
// before) is an *auditlog.ForkError carrying both signed checkpoints: the
// evidence to publish. A logged entry that does not match is
// ErrLogMismatch, returned with the report (its Signed checkpoint is
// saved and verified); so is a key set the log lacks, a newer logged key set
// (the checkpoint's keyset line names it) the wallet does not take, and a
// false keyset line, reported (with the report) once every other check
// was made. A newer logged key set that follows the one held is adopted
// (LogReport.AdoptedKeySet), and its entry checked with the others. A
// checkpoint of a non-empty log without a keyset line is ErrLogMismatch,
// and not saved.
func (w *Wallet) VerifyLog(ctx context.Context, bank pb.BankClient, logc pb.AuditLogClient) (*LogReport, error) {
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return nil, err
	}
	saved, err := get(w.db, keyWitness)
	if err != nil {
		return nil, err
	}
	// The checks recorded before the checkpoint is fetched: the answers
	// behind them were given before it was signed, so an honest bank's
	// checkpoint covers their entries (it commits an entry before it
	// answers). One recorded meanwhile is not evidence yet.
	before, err := w.dueChecks()
	if err != nil {
		return nil, err
	}
	// The checkpoint is signed by the bank's current key: one the key set
	// does not list may be of a rotation since it was fetched (verifyBank).
	var cp auditlog.Checkpoint
	err = w.verifyBank(ctx, bank, ks, func(ks *ecash.KeySet) error {
		var err error
		var next []byte
		cp, next, err = logclient.Refresh(ctx, logc, ks, saved)
		if errors.Is(err, auditlog.ErrCheckpointSignature) {
			err = fmt.Errorf("%w: %w", ecash.ErrUnknownSigner, err)
		} else if err == nil {
			saved = next
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if ks, err = w.KeySet(); err != nil { // the one verifyBank fetched, if it did
		return nil, err
	}
	// A checkpoint of a non-empty log without a keyset line is not one an
	// honest bank of this version signs: refused before it is saved.
	if err := auditlog.RequireKeySet(cp); err != nil {
		return &LogReport{Checkpoint: cp}, fmt.Errorf("%w: %w", ErrLogMismatch, err)
	}
	if err := w.db.Set(keyWitness, saved, pebble.Sync); err != nil {
		return nil, err
	}
	signed, err := auditlog.SavedCheckpoint(saved)
	if err != nil {
		return nil, err
	}
	rep := &LogReport{Checkpoint: cp, Signed: signed}
	// Before the due checks, so that a key set adopted is checked with them.
	unlogged, err := w.checkKeySetLine(ctx, logc, cp, ks, rep)
	if err != nil {
		return nil, err
	}
	due, err := w.dueChecks()
	if err != nil {
		return nil, err
	}
	// unlogged: a key set the log lacks, or one it hides, and an answer
	// the checkpoint should cover and does not: reported after the other
	// checks
	began := logclient.NewStart(ctx, logc, cp)
	for ref, c := range due {
		found := c.Index > 0 // known from the bank's answer
		if !found {
			if c.Index, found, err = logclient.Find(ctx, logc, ref); err != nil {
				return nil, err
			}
			if !found && c.Kind == logKeySet {
				unlogged = errors.Join(unlogged, fmt.Errorf("%w: the key set %x… the bank served this wallet is not in its audit log: keys made for this wallet alone would let the bank recognise its coins", ErrLogMismatch, ref[:8]))
				continue
			}
		}
		// Entry 0 is the bank's first key set: found there, it is logged.
		if !found || c.Index < 0 || c.Index >= cp.Size {
			missing, err := c.missing(ref, before[ref] != nil, found, began)
			if err != nil {
				return nil, err
			}
			if missing != nil {
				unlogged = errors.Join(unlogged, missing)
			} else {
				rep.Waiting++
			}
			continue
		}
		e, err := logclient.Entry(ctx, logc, cp, c.Index)
		if err != nil {
			return nil, err
		}
		x := logclient.Expect{Kind: auditlog.KindDeposit, Ref: ref, Coins: c.Coins, Merchant: c.Merchant, Amount: c.Credited}
		switch c.Kind {
		case logSwap:
			x.Kind = auditlog.KindSwap
			// A recoup that re-issues coins is settled as a swap and
			// checked as one; the bank logs it as a recoup, whose request
			// hash and coin must match all the same.
			if e.Kind() == auditlog.KindRecoup {
				x.Kind = auditlog.KindRecoup
			}
		case logEPOApproved, logEPODeclined:
			x.Kind, x.Approved = auditlog.KindCheck, c.Kind == logEPOApproved
		case logKeySet:
			x.Kind = auditlog.KindKeySet
		case logWithdraw:
			x.Kind = auditlog.KindWithdraw
		}
		if err := x.Match(e); err != nil {
			// With the report: its checkpoint, saved and verified, is
			// the evidence (verify-log --checkpoint-out).
			return rep, fmt.Errorf("%w: %w", ErrLogMismatch, err)
		}
		if err := w.db.Delete(logCheckKey(ref), pebble.Sync); err != nil {
			return nil, err
		}
		rep.Verified++
	}
	if unlogged != nil {
		return rep, unlogged
	}
	return rep, nil
}

// missing says whether the entry of check c (for ref), not found in the
// log or not in the checkpoint, is one the checkpoint must hold: an
// ErrLogMismatch naming it if so, nil if it may yet be logged. An honest
// bank commits an entry before it answers, so the checkpoint signed after
// the answer holds it, if the check was recorded before the checkpoint was
// fetched (recordedBefore) and the answer is not one from before the bank
// kept its log: a deposit or check answered after the log's first entry
// (by more than clock skew: a replica's clock may differ; by the bank's
// date, but no earlier than its request's time less the skew, so that a
// backdated answer is judged all the same), a withdrawal whose request is
// dated after it (by more than twice the skew: its answer has no date),
// or one whose entry the bank named in its answer (a swap). Records of
// older builds carry no time; a
// key set's entry moves when a replica logs it again.
func (c *logCheck) missing(ref ecash.Hash, recordedBefore, found bool, began *logclient.Start) (mismatch, err error) {
	if !recordedBefore || c.Kind == logKeySet {
		return nil, nil
	}
	what := map[uint8]string{logDeposit: "the deposit of payment", logSwap: "the swap of request",
		logEPOApproved: "the approval of payment order", logEPODeclined: "the decline of payment order",
		logWithdraw: "the withdrawal of request"}[c.Kind]
	if c.Answered == 0 && c.Asked == 0 {
		// A swap's entry the bank named in its answer: it said it is logged.
		if c.Kind != logSwap || c.Index <= 0 {
			return nil, nil
		}
		return fmt.Errorf("%w: %s %x… is at entry %d, the bank answered, and the checkpoint it signed after that holds %d entries", ErrLogMismatch, what, ref[:8], c.Index, began.Checkpoint().Size), nil
	}
	index := int64(0)
	if found {
		index = c.Index
	}
	var asked, answered time.Time // zero: none held
	if c.Asked != 0 {
		asked = time.UnixMilli(c.Asked)
	}
	if c.Kind != logWithdraw { // whose answer carries no date
		answered = time.UnixMilli(c.Answered)
	}
	finding, err := began.Unlogged(what, ref, answered, asked, index)
	if err != nil || finding == "" {
		return nil, err
	}
	return fmt.Errorf("%w: %s", ErrLogMismatch, finding), nil
}

func (w *Wallet) dueChecks() (map[ecash.Hash]*logCheck, error) {
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte("v/"), UpperBound: prefixEnd([]byte("v/"))})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[ecash.Hash]*logCheck{}
	for it.First(); it.Valid(); it.Next() {
		c, err := decodeLogCheck(it.Value())
		if err != nil {
			return nil, fmt.Errorf("wallet: corrupt log check: %w", err)
		}
		var ref ecash.Hash
		copy(ref[:], it.Key()[2:])
		out[ref] = c
	}
	return out, it.Error()
}
