package auditcmd

// "audit log": download the bank's audit log, verify it against the bank's
// signed checkpoint and replay it through auditlog.Auditor (docs/AUDIT.md).

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// Bounds of "audit log".
const (
	// logBatch is how many entries one GetLogEntries asks for (the bank
	// serves at most 1024). A batch too large for one message is halved.
	logBatch = 1024
	// logRPCTimeout bounds each call to the bank.
	logRPCTimeout = time.Minute
	// logSaveEvery saves the state while a long log downloads, so an
	// interrupted audit resumes near where it stopped.
	logSaveEvery = 30 * time.Second
	// logStateVersion is the version of the state file.
	logStateVersion = 1
)

// logNotChecked is what the log cannot show, printed with every report.
var logNotChecked = []string{
	"what each debit bought: each debit's signature is checked (authorised), but over digests; a withdraw entry carries only the hash of the signed request (its blinded coins must stay private) and a check entry only the hash of the payment order's parts; wallets and merchants check their own receipts against the log (inclusion proofs)",
	"that each coin spent was validly signed: a deposit or swap entry names the coin and the hash of its signed permission, not the coin's signature",
	"that the bank logged every operation: an operation missing from the log is found by the party holding its receipt, whose inclusion proof fails",
	"entries already audited, re-served differently: an incremental run downloads only new entries; a wallet's inclusion proof or a fresh audit without --state catches an old entry changed (a changed tree is a fork at the next checkpoint)",
}

type logFlags struct {
	bank   string
	tls    cli.TLSFlags
	master string
	state  string
	from   string
	batch  int
}

func logCommand() *cli.Command {
	f := &logFlags{tls: cli.TLSFlags{What: "bank"}}
	return &cli.Command{
		Name:  "log",
		Short: "download the bank's audit log, verify it and check the ledger's invariants",
		Long: `log audits the bank's public log of every state change (docs/AUDITLOG.md,
docs/AUDIT.md). It fetches the bank's key set (GetKeys) and a checkpoint of the
log signed by the bank's signing key, checks that the checkpoint extends the
one saved in --state (and the one in --from), downloads the entries it has
not audited yet and checks that they are exactly the entries the checkpoint
commits to, then replays them:

  - money is conserved: credits in, payouts out, and in between balances,
    e-cash outstanding and fees that add up; no account ever below zero;
  - per denomination, coins redeemed never exceed coins issued, by count or
    by value (else an EMERGENCY: the denomination's key leaked or the bank
    signed coins off the log);
  - each coin is spent once; each EPOID is decided once; each signed request,
    payment and credit reference takes effect once;
  - every account is opened before it is used;
  - every key set logged carries the master key's signature, and every coin
    issued or spent is of a denomination of an earlier key set, at its value.

The master key is pinned by --master, or by the state file; without either it
is trusted on first use and recorded in the state file. With --state FILE the
audit is incremental: the file keeps the newest checkpoint verified and the
replayed ledger, and the next run downloads only the new entries.

It prints a report (--json for a machine). Any failure names the entry and
the check that failed, and the command exits 1; an emergency says so.`,
		Example: `audit log --bank bank.example:7443 --ca bank.crt --state bank.audit
audit log --bank bank.example:7443 --pin 5f2c...e1 --master 3b6a...9f --state bank.audit --json
audit log --bank 127.0.0.1:7443 --plaintext --from wallet-checkpoint.txt`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.bank, "bank", "", "the bank's public `ADDR` (required)")
			f.tls.Register(fs)
			fs.StringVar(&f.master, "master", "", "the bank's master `KEY` (hex, as 'wallet init --json' prints bank_master_key); default: the one in --state, else trust on first use")
			fs.StringVar(&f.state, "state", "", "keep the audit's state in `FILE` (created if missing): the newest checkpoint verified and the replayed ledger, so the next run resumes")
			fs.StringVar(&f.from, "from", "", "a signed checkpoint `FILE` (as a wallet keeps it) that the bank's log must extend")
			fs.IntVar(&f.batch, "batch", logBatch, "entries per request, `N` from 1 to 1024")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error { return runLog(ctx, inv, f) },
	}
}

// held is a signed checkpoint and the key that signed it.
type held struct {
	what   string // where it comes from, for messages
	signed []byte
	key    ed25519.PublicKey
	cp     auditlog.Checkpoint
}

// logRun is one run of "audit log".
type logRun struct {
	f         *logFlags
	inv       *cli.Invocation
	logc      pb.AuditLogClient
	ks        *ecash.KeySet
	origin    string
	aud       *auditlog.Auditor
	rep       *LogReport
	latest    *held     // the bank's checkpoint this run audits against
	saved     time.Time // when the state was last saved
	savedSize int64     // the auditor's size then
	batch     int64     // entries per request
}

func runLog(ctx context.Context, inv *cli.Invocation, f *logFlags) error {
	if err := cli.CheckAddr("bank", f.bank); err != nil {
		return err
	}
	if f.batch < 1 || f.batch > logBatch {
		return cli.Usagef("--batch must be from 1 to %d", logBatch)
	}
	tcfg, err := f.tls.Config(f.bank)
	if err != nil {
		return err
	}
	var pin ed25519.PublicKey
	source := "--master"
	if f.master != "" {
		b, err := hex.DecodeString(strings.TrimSpace(f.master))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return cli.Usagef("bad --master %q: want the 64 hex digits of an Ed25519 key", f.master)
		}
		pin = b
	}
	st, err := loadLogState(f.state)
	if err != nil {
		return err
	}
	if st != nil {
		if pin != nil && !pin.Equal(st.master) {
			return fmt.Errorf("--state %s audits the bank with master key %x, not the --master key %x", f.state, []byte(st.master), []byte(pin))
		}
		if pin == nil {
			pin, source = st.master, "--state "+f.state
		}
	}
	var fromSigned []byte
	if f.from != "" {
		if fromSigned, err = cli.ReadFileLimited(f.from, auditlog.MaxCheckpointSize); err != nil {
			return fmt.Errorf("--from: %w", err)
		}
	}

	conn, err := transport.Dial(f.bank, tcfg, f.tls.CertHint())
	if err != nil {
		return err
	}
	defer conn.Close()
	r := &logRun{f: f, inv: inv, logc: pb.NewAuditLogClient(conn), batch: int64(f.batch)}

	// The key set: the master key vouches for the signing key.
	kctx, cancel := context.WithTimeout(ctx, logRPCTimeout)
	keys, err := pb.NewBankClient(conn).GetKeys(kctx, &pb.GetKeysRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("fetching the key set from %s: %w", f.bank, err)
	}
	if r.ks, err = ecash.DecodeKeySet(keys.SignedKeyset, pin); err != nil {
		return fmt.Errorf("the key set of the bank at %s: %w", f.bank, err)
	}
	if pin == nil {
		pin, source = r.ks.MasterPub, "trusted on first use"
		inv.Notef("audit: trusting the bank's master key %x on first use; pin it with --master", []byte(pin))
	}
	r.origin = auditlog.Origin(r.ks.BankID())
	r.aud = auditlog.NewAuditor(pin)
	r.rep = &LogReport{
		Bank: f.bank, BankID: r.ks.BankID().String(), Origin: r.origin, MasterKey: hex.EncodeToString(pin), MasterFrom: source,
		NotChecked: logNotChecked, State: f.state,
	}

	// What this auditor verified before.
	var earlier []*held
	if st != nil {
		if err := r.aud.UnmarshalBinary(st.auditor); err != nil {
			return fmt.Errorf("--state %s: %w", f.state, err)
		}
		if st.signed != nil {
			h, err := r.open("the checkpoint saved in --state "+f.state, st.signed, st.key)
			if err != nil {
				return fmt.Errorf("--state %s: %w", f.state, err)
			}
			if r.aud.Size() > h.cp.Size {
				return fmt.Errorf("--state %s: %d entries audited beyond its checkpoint of %d", f.state, r.aud.Size(), h.cp.Size)
			}
			if r.aud.Size() == h.cp.Size {
				if err := r.aud.Verify(h.cp); err != nil {
					return fmt.Errorf("--state %s: the audited entries are not its checkpoint's: %w", f.state, err)
				}
			}
			r.rep.Previous = checkpointJSON(h)
			earlier = append(earlier, h)
		}
	}
	r.rep.ResumedAt = r.aud.Size()
	if fromSigned != nil {
		h, err := r.open("the checkpoint of --from "+f.from, fromSigned, nil)
		if err != nil {
			return fmt.Errorf("--from %s: %w", f.from, err)
		}
		r.rep.From = checkpointJSON(h)
		earlier = append(earlier, h)
	}

	// The bank's checkpoint now.
	cctx, cancel := context.WithTimeout(ctx, logRPCTimeout)
	resp, err := r.logc.GetCheckpoint(cctx, &pb.GetCheckpointRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("fetching the log's checkpoint from %s: %w", f.bank, err)
	}
	v, err := auditlog.NewVerifier(r.origin, r.ks.SigningPub)
	if err != nil {
		return err
	}
	cp, err := auditlog.OpenCheckpoint(resp.Checkpoint, r.origin, v)
	if err == nil {
		// Fresh from the bank: it must name its newest key set, which
		// Verify checks against the replay.
		err = auditlog.RequireKeySet(cp)
	}
	if err != nil {
		return r.fail(fmt.Errorf("the bank's checkpoint is refused: %w", err))
	}
	r.latest = &held{what: "the bank's checkpoint", signed: resp.Checkpoint, key: r.ks.SigningPub, cp: cp}
	r.rep.Checkpoint = checkpointJSON(r.latest)
	for _, h := range earlier {
		if err := r.extends(ctx, h, r.latest); err != nil {
			return r.fail(err)
		}
	}
	if err := r.download(ctx); err != nil {
		return err
	}
	if err := r.aud.Verify(cp); err != nil {
		return r.fail(fmt.Errorf("the replayed log is not the bank's checkpoint: %w", err))
	}
	// Every checkpoint given (--from, --state) is of a tree the replay
	// covers (it extends to cp): its keyset line must name the newest key
	// set below its size, as a wallet's targeted checkpoint reaches the
	// auditor this way.
	for _, h := range append(earlier, r.latest) {
		checked, err := r.aud.VerifyKeySetLine(h.cp)
		if err != nil {
			return r.fail(fmt.Errorf("%s: %w", h.what, err))
		}
		if !checked && h.cp.HasKeySet {
			r.rep.NotChecked = append(slices.Clone(r.rep.NotChecked), fmt.Sprintf(
				"the keyset line of %s (%d entries): the --state was saved by an earlier version, which did not record the key sets logged before entry %d, and none was replayed below that size since",
				h.what, h.cp.Size, r.rep.ResumedAt))
		}
	}
	if err := r.save(); err != nil {
		return err
	}
	r.rep.OK = true
	return r.print()
}

// open verifies a checkpoint kept earlier. key is the signing key that
// signed it, or nil to try every key the master key vouches for.
func (r *logRun) open(what string, signed []byte, key ed25519.PublicKey) (*held, error) {
	vouched := append(r.ks.SigningKeys(), r.aud.SigningKeys()...)
	var firstErr error
	for _, k := range vouched {
		if key != nil && !key.Equal(k) {
			continue
		}
		v, err := auditlog.NewVerifier(r.origin, k)
		if err != nil {
			return nil, err
		}
		cp, err := auditlog.OpenCheckpoint(signed, r.origin, v)
		if err == nil {
			return &held{what: what, signed: signed, key: k, cp: cp}, nil
		}
		if firstErr == nil || !errors.Is(err, auditlog.ErrCheckpointSignature) {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("%w: signed by key %x, which no key set of the bank vouches for", auditlog.ErrCheckpointSignature, []byte(key))
	}
	return nil, fmt.Errorf("%s is refused: %w", what, firstErr)
}

// extends checks that newer's log extends older's: a consistency proof from
// the bank, checked by an auditlog.Witness. A log that shrank, or a proof
// that fails, is a fork: an *auditlog.ForkError with both signed
// checkpoints as evidence.
func (r *logRun) extends(ctx context.Context, older, newer *held) error {
	if newer.cp.Size < older.cp.Size {
		gone := fmt.Sprintf("entries %d to %d are gone", newer.cp.Size, older.cp.Size-1)
		if newer.cp.Size == older.cp.Size-1 {
			gone = fmt.Sprintf("entry %d is gone", newer.cp.Size)
		}
		return &auditlog.ForkError{Older: newer.signed, Newer: older.signed, Reason: fmt.Errorf(
			"the bank's log has %d entries, %s has %d: %s", newer.cp.Size, older.what, older.cp.Size, gone)}
	}
	var proof tlog.TreeProof
	if older.cp.Size > 0 && older.cp.Size < newer.cp.Size {
		var err error
		if proof, err = r.consistency(ctx, older.cp.Size, newer.cp.Size); err != nil {
			return err
		}
	}
	// Each was signed by its own key (the bank may have rotated its
	// signing key in between): the witness knows both.
	var vs []note.Verifier
	for _, k := range []ed25519.PublicKey{older.key, newer.key} {
		v, err := auditlog.NewVerifier(r.origin, k)
		if err != nil {
			return err
		}
		vs = append(vs, v)
	}
	if older.key.Equal(newer.key) {
		vs = vs[:1]
	}
	w, err := auditlog.NewWitness(r.origin, vs...)
	if err != nil {
		return err
	}
	if _, err := w.Accept(older.signed, nil); err != nil {
		return err
	}
	_, err = w.Accept(newer.signed, proof)
	return withWhat(err, older)
}

func withWhat(err error, older *held) error {
	var fe *auditlog.ForkError
	if errors.As(err, &fe) {
		return fmt.Errorf("the bank's checkpoint is not consistent with %s: %w", older.what, err)
	}
	return err
}

func (r *logRun) consistency(ctx context.Context, oldSize, newSize int64) (tlog.TreeProof, error) {
	ctx, cancel := context.WithTimeout(ctx, logRPCTimeout)
	defer cancel()
	resp, err := r.logc.GetConsistencyProof(ctx, &pb.GetConsistencyProofRequest{OldSize: oldSize, NewSize: newSize})
	if err != nil {
		return nil, fmt.Errorf("fetching the consistency proof from %d to %d entries: %w", oldSize, newSize, err)
	}
	if len(resp.Hashes) > 2*64 {
		return nil, fmt.Errorf("%w: a consistency proof of %d hashes", auditlog.ErrBadProof, len(resp.Hashes))
	}
	proof := make(tlog.TreeProof, len(resp.Hashes))
	for i, h := range resp.Hashes {
		if len(h) != len(proof[i]) {
			return nil, fmt.Errorf("%w: a proof hash of %d bytes", auditlog.ErrBadProof, len(h))
		}
		copy(proof[i][:], h)
	}
	return proof, nil
}

// prefixOf reports whether root is the root of the first size entries of
// the log the bank's checkpoint describes.
func (r *logRun) prefixOf(ctx context.Context, size int64, root tlog.Hash) (bool, error) {
	cp := r.latest.cp
	if size == cp.Size {
		return root == cp.Root, nil
	}
	proof, err := r.consistency(ctx, size, cp.Size)
	if err != nil {
		return false, err
	}
	return auditlog.VerifyConsistency(auditlog.Checkpoint{Origin: r.origin, Size: size, Root: root}, cp, proof) == nil, nil
}

// download fetches the entries not audited yet, checks each batch against
// the bank's checkpoint and applies it to the auditor.
func (r *logRun) download(ctx context.Context) (err error) {
	end := r.latest.cp.Size
	start := r.aud.Size()
	r.savedSize = start
	defer func() {
		// Whatever stopped the download (a failed entry, a broken
		// connection, an interrupt), the entries applied are a verified
		// prefix of the checkpoint's log: keep them, so the next run
		// resumes there (and fails at once at an entry that fails).
		if err != nil && r.aud.Size() > r.savedSize {
			if serr := r.save(); serr != nil {
				r.inv.Notef("audit: saving the state: %v", serr)
			}
		}
	}()
	if start > 0 && start < end {
		// A state saved part way through a log: its entries must be a
		// prefix of this log too (the checkpoint check above covers only
		// the saved checkpoint's entries).
		root, err := r.aud.Root()
		if err != nil {
			return err
		}
		ok, err := r.prefixOf(ctx, start, root)
		if err != nil {
			return err
		}
		if !ok {
			return r.fail(fmt.Errorf("%w: the %d entries audited (saved in --state) are not the first %d entries of the bank's log", auditlog.ErrForked, start, start))
		}
	}
	r.saved = time.Now()
	bar := r.inv.NewProgress("audit log")
	defer bar.Finish()
	for r.aud.Size() < end {
		from := r.aud.Size()
		entries, err := r.entries(ctx, from, min(r.batch, end-from))
		if err != nil {
			return err
		}
		roots, err := r.aud.RootsAfter(entries)
		if err != nil {
			return err
		}
		to := from + int64(len(entries))
		ok, err := r.prefixOf(ctx, to, roots[len(roots)-1])
		if err != nil {
			return err
		}
		if !ok {
			bad, err := r.locate(ctx, from, roots)
			if err != nil {
				return err
			}
			k, _ := auditlog.PeekKind(entries[bad-from])
			return r.fail(&auditlog.AuditError{Index: bad, Kind: k, Check: auditlog.CheckTree, Msg: fmt.Sprintf(
				"the entry the bank serves is not the one its signed checkpoint of %d entries commits to: changed, inserted or removed under the log", end)})
		}
		for _, b := range entries {
			if _, err := r.aud.Apply(b); err != nil {
				return r.fail(err)
			}
		}
		r.rep.Downloaded += int64(len(entries))
		bar.Set(int(r.aud.Size()-start), int(end-start))
		if time.Since(r.saved) > logSaveEvery {
			if err := r.save(); err != nil {
				return err
			}
		}
	}
	return nil
}

// locate finds the first entry of a batch (from from, with roots as
// RootsAfter computed them) that the bank's checkpoint does not commit to:
// the entries before it are a prefix of the checkpoint's log, the prefix
// that ends with it is not.
func (r *logRun) locate(ctx context.Context, from int64, roots []tlog.Hash) (int64, error) {
	lo, hi := from+1, from+int64(len(roots)) // the first bad prefix size is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		ok, err := r.prefixOf(ctx, mid, roots[mid-from-1])
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo - 1, nil
}

// entries fetches up to n entries from index from, halving the request
// (and the batches after it) when the answer would be too large for one
// message.
func (r *logRun) entries(ctx context.Context, from, n int64) ([][]byte, error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, logRPCTimeout)
		resp, err := r.logc.GetLogEntries(cctx, &pb.GetLogEntriesRequest{From: from, Count: uint32(n)})
		cancel()
		if status.Code(err) == codes.ResourceExhausted && n > 1 {
			n /= 2
			r.batch = n
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("fetching log entries from %d: %w", from, err)
		}
		if len(resp.Entries) == 0 {
			return nil, fmt.Errorf("%w: the bank sent no entries from %d, though its checkpoint has %d", auditlog.ErrBadProof, from, r.latest.cp.Size)
		}
		es := resp.Entries
		if int64(len(es)) > n {
			es = es[:n] // entries past the checkpoint are for the next run
		}
		return es, nil
	}
}

// fail records err in the report, prints it, and returns err.
func (r *logRun) fail(err error) error {
	lf := &logFailure{Error: cli.Message(err)}
	var ae *auditlog.AuditError
	if errors.As(err, &ae) {
		i := ae.Index
		lf.Entry, lf.Check, lf.Emergency = &i, ae.Check, ae.Emergency()
		if ae.Kind != 0 {
			lf.Kind = ae.Kind.String()
		}
	}
	var fe *auditlog.ForkError
	if errors.As(err, &fe) {
		lf.Check = "fork"
		lf.Fork = &forkJSON{Older: string(fe.Older), Newer: string(fe.Newer), Reason: fe.Reason.Error()}
		for _, h := range fe.Proof {
			lf.Fork.Proof = append(lf.Fork.Proof, base64.StdEncoding.EncodeToString(h[:]))
		}
	} else if errors.Is(err, auditlog.ErrForked) {
		lf.Check = "fork"
	}
	if lf.Check == "" {
		switch {
		case errors.Is(err, auditlog.ErrCheckpointSignature), errors.Is(err, auditlog.ErrWrongOrigin), errors.Is(err, auditlog.ErrMalformedCheckpoint):
			lf.Check = "checkpoint"
		}
	}
	r.rep.Failure = lf
	if perr := r.print(); perr != nil {
		return errors.Join(err, perr)
	}
	if lf.Emergency {
		return fmt.Errorf("EMERGENCY: %w", err)
	}
	return err
}

// ---- the state file ----

// logStateFile is the --state file: JSON, written atomically after every
// run that verified something (docs/AUDIT.md).
type logStateFile struct {
	Version int `json:"version"`
	// BankID and MasterKey name the bank audited: the master key is pinned
	// from then on.
	BankID    string `json:"bank_id"`
	MasterKey string `json:"master_key"`
	// Checkpoint is the newest checkpoint verified (a C2SP signed note),
	// signed by CheckpointKey, a signing key the master key vouched for.
	Checkpoint    string `json:"checkpoint"`
	CheckpointKey string `json:"checkpoint_key"`
	// Audited is the number of entries replayed: the first Audited entries
	// of the checkpoint's log (all of them, unless a run stopped early).
	Audited int64 `json:"audited"`
	// Auditor is the replayed ledger, auditlog.Auditor.MarshalBinary.
	Auditor []byte `json:"auditor"`
	// Bank and Saved are for people: the address last audited and when.
	Bank  string `json:"bank"`
	Saved string `json:"saved"`
}

type logState struct {
	master  ed25519.PublicKey
	signed  []byte
	key     ed25519.PublicKey
	auditor []byte
}

// loadLogState reads the state file; nil if name is empty or the file does
// not exist yet.
func loadLogState(name string) (*logState, error) {
	if name == "" {
		return nil, nil
	}
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--state: %w", err)
	}
	var f logStateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("--state %s is not an audit state file: %w", name, err)
	}
	if f.Version != logStateVersion {
		return nil, fmt.Errorf("--state %s is of version %d; this audit reads version %d", name, f.Version, logStateVersion)
	}
	st := &logState{auditor: f.Auditor}
	if st.master, err = hexKey(f.MasterKey); err != nil {
		return nil, fmt.Errorf("--state %s: master_key: %w", name, err)
	}
	if f.Checkpoint != "" {
		st.signed = []byte(f.Checkpoint)
		if st.key, err = hexKey(f.CheckpointKey); err != nil {
			return nil, fmt.Errorf("--state %s: checkpoint_key: %w", name, err)
		}
	}
	return st, nil
}

func hexKey(s string) (ed25519.PublicKey, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%q is not an Ed25519 key in hex", s)
	}
	return b, nil
}

// save writes the state: the bank's checkpoint of this run and the ledger
// replayed so far (its entries are a verified prefix of that checkpoint's
// log).
func (r *logRun) save() error {
	r.saved, r.savedSize = time.Now(), r.aud.Size()
	if r.f.state == "" {
		return nil
	}
	aud, err := r.aud.MarshalBinary()
	if err != nil {
		return err
	}
	f := logStateFile{
		Version: logStateVersion, BankID: r.rep.BankID, MasterKey: hex.EncodeToString(r.aud.Master()),
		Checkpoint: string(r.latest.signed), CheckpointKey: hex.EncodeToString(r.latest.key),
		Audited: r.aud.Size(), Auditor: aud, Bank: r.f.bank, Saved: time.Now().UTC().Format(time.RFC3339),
	}
	if f.MasterKey == "" { // a log without a key set yet: keep the pin
		f.MasterKey = r.rep.MasterKey
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := cli.WriteOutFile(r.f.state, append(b, '\n'), 0o644, true, ""); err != nil {
		return fmt.Errorf("saving --state: %w", err)
	}
	return nil
}

// ---- the report ----

// LogReport is what "audit log --json" prints.
type LogReport struct {
	OK         bool            `json:"ok"`
	Bank       string          `json:"bank"`
	BankID     string          `json:"bank_id"`
	Origin     string          `json:"origin"`
	MasterKey  string          `json:"master_key"`
	MasterFrom string          `json:"master_key_from"` // --master, --state FILE, or trusted on first use
	Checkpoint *checkpointInfo `json:"checkpoint,omitempty"`
	Previous   *checkpointInfo `json:"previous,omitempty"` // saved in --state
	From       *checkpointInfo `json:"from,omitempty"`     // --from
	ResumedAt  int64           `json:"resumed_at"`         // entries audited before this run
	Downloaded int64           `json:"downloaded"`         // entries downloaded and replayed by this run
	Failure    *logFailure     `json:"failure,omitempty"`
	Summary    *logSummary     `json:"summary,omitempty"`
	NotChecked []string        `json:"not_checked"`
	State      string          `json:"state,omitempty"`
}

type checkpointInfo struct {
	Size   int64  `json:"size"`
	Root   string `json:"root"` // base64, as in the note
	Signed string `json:"signed"`
}

func checkpointJSON(h *held) *checkpointInfo {
	return &checkpointInfo{Size: h.cp.Size, Root: base64.StdEncoding.EncodeToString(h.cp.Root[:]), Signed: string(h.signed)}
}

type logFailure struct {
	Entry     *int64    `json:"entry,omitempty"` // the entry at fault, when one is
	Kind      string    `json:"kind,omitempty"`
	Check     string    `json:"check,omitempty"` // an auditlog.Check* name, "fork" or "checkpoint"
	Emergency bool      `json:"emergency,omitempty"`
	Error     string    `json:"error"`
	Fork      *forkJSON `json:"fork,omitempty"` // the evidence: two signed checkpoints no proof joins
}

type forkJSON struct {
	Older  string   `json:"older"`
	Newer  string   `json:"newer"`
	Proof  []string `json:"proof,omitempty"`
	Reason string   `json:"reason"`
}

type logSummary struct {
	Entries       int64             `json:"entries"`
	Currency      string            `json:"currency"`
	ByKind        map[string]int64  `json:"by_kind"`
	KeySets       int64             `json:"key_sets"`
	SigningKeys   int               `json:"signing_keys"`
	Accounts      int               `json:"accounts"`
	Merchants     int               `json:"merchants"`
	CoinsSpent    int               `json:"coins_spent"`
	ChecksOK      int64             `json:"checks_approved"`
	ChecksNo      int64             `json:"checks_declined"`
	Totals        map[string]string `json:"totals"`
	Denominations []denomInfo       `json:"denominations"`
	Warnings      []string          `json:"warnings,omitempty"`
	WarningsTotal int64             `json:"warnings_total"`
}

type denomInfo struct {
	ID               string `json:"id"`
	Value            string `json:"value"`
	Revoked          bool   `json:"revoked,omitempty"`
	Issued           uint64 `json:"issued"`
	IssuedValue      string `json:"issued_value"`
	Redeemed         uint64 `json:"redeemed"`
	RedeemedValue    string `json:"redeemed_value"`
	Outstanding      uint64 `json:"outstanding"`
	OutstandingValue string `json:"outstanding_value"`
}

// The totals, in the order the text report prints them.
var totalNames = []string{"credited", "paid_out", "withdrawn", "deposited", "swapped_in", "swapped_out", "fees", "checks", "refunded", "recouped", "balances", "outstanding"}

func summarize(a *auditlog.Auditor) *logSummary {
	r := a.Report()
	s := &logSummary{
		Entries: r.Entries, Currency: r.Currency, ByKind: map[string]int64{}, KeySets: r.KeySets, SigningKeys: r.SigningKeys,
		Accounts: r.Accounts, Merchants: r.Merchants, CoinsSpent: r.CoinsSpent, ChecksOK: r.Checks[0], ChecksNo: r.Checks[1],
		Denominations: []denomInfo{}, WarningsTotal: r.WarningsTotal,
	}
	for k, n := range r.ByKind {
		s.ByKind[k.String()] = n
	}
	t := r.Totals
	vals := []uint64{t.Credited, t.PaidOut, t.Withdrawn, t.Deposited, t.SwappedIn, t.SwappedOut, t.Fees, t.Checks, t.Refunded, t.Recouped, t.Balances, t.Outstanding}
	s.Totals = map[string]string{}
	for i, name := range totalNames {
		s.Totals[name] = r.Amount(vals[i]).String()
	}
	for _, d := range r.Denominations {
		s.Denominations = append(s.Denominations, denomInfo{
			ID: d.ID.String(), Value: d.Value.String(), Revoked: d.Revoked,
			Issued: d.IssuedCount, IssuedValue: r.Amount(d.IssuedValue).String(),
			Redeemed: d.RedeemedCount, RedeemedValue: r.Amount(d.RedeemedValue).String(),
			Outstanding: d.IssuedCount - d.RedeemedCount, OutstandingValue: r.Amount(d.IssuedValue - d.RedeemedValue).String(),
		})
	}
	for _, w := range r.Warnings {
		s.Warnings = append(s.Warnings, w.String())
	}
	return s
}

func (r *logRun) print() error {
	r.rep.Summary = summarize(r.aud)
	return r.inv.Print(r.rep, func(w io.Writer) { writeLogReport(w, r.rep) })
}

var totalLabels = map[string]string{
	"credited": "credited (in)", "paid_out": "paid out (out)", "withdrawn": "withdrawn", "deposited": "deposited",
	"swapped_in": "swapped in", "swapped_out": "swapped out", "fees": "fees", "checks": "paid by checks",
	"refunded": "refunded", "recouped": "recouped", "balances": "in accounts", "outstanding": "e-cash outstanding",
}

// writeLogReport prints the report for people.
func writeLogReport(w io.Writer, rep *LogReport) {
	s := rep.Summary
	fmt.Fprintf(w, "bank %s (%s) at %s\n", rep.BankID, orNone(s.Currency), rep.Bank)
	fmt.Fprintf(w, "master key %s (%s)\n", rep.MasterKey, rep.MasterFrom)
	if c := rep.Checkpoint; c != nil {
		fmt.Fprintf(w, "checkpoint %d entries, root %s\n", c.Size, c.Root)
	}
	if c := rep.Previous; c != nil {
		fmt.Fprintf(w, "  extends  %d entries saved in %s\n", c.Size, rep.State)
	}
	if c := rep.From; c != nil {
		fmt.Fprintf(w, "  extends  %d entries of --from\n", c.Size)
	}
	fmt.Fprintf(w, "audited    %d entries (%d before this run, %d downloaded now)\n\n", s.Entries, rep.ResumedAt, rep.Downloaded)

	kinds := make([]string, 0, len(s.ByKind))
	for _, k := range auditlog.Kinds() {
		if n := s.ByKind[k.String()]; n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
	}
	fmt.Fprintf(w, "entries: %s\n", orNone(strings.Join(kinds, ", ")))
	fmt.Fprintf(w, "accounts: %d (merchants: %d); key sets: %d; coins spent: %d; checks: %d approved, %d declined\n\n",
		s.Accounts, s.Merchants, s.KeySets, s.CoinsSpent, s.ChecksOK, s.ChecksNo)
	t := cli.NewTable(w)
	for _, name := range totalNames {
		t.Row(totalLabels[name], s.Totals[name])
	}
	t.Flush()
	if len(s.Denominations) > 0 {
		fmt.Fprintln(w)
		t := cli.NewTable(w)
		t.Row("DENOMINATION", "ISSUED", "REDEEMED", "OUTSTANDING", "ID")
		for _, d := range s.Denominations {
			value := d.Value
			if d.Revoked {
				value += " (revoked)"
			}
			t.Row(value, d.Issued, d.Redeemed, fmt.Sprintf("%d (%s)", d.Outstanding, d.OutstandingValue), d.ID[:16]+"…")
		}
		t.Flush()
	}
	if s.WarningsTotal > 0 {
		fmt.Fprintf(w, "\n%d warning(s):\n", s.WarningsTotal)
		for _, x := range s.Warnings {
			fmt.Fprintf(w, "  - %s\n", x)
		}
		if int64(len(s.Warnings)) < s.WarningsTotal {
			fmt.Fprintf(w, "  … and %d more\n", s.WarningsTotal-int64(len(s.Warnings)))
		}
	}
	fmt.Fprintf(w, "\nnot checkable from the log:\n")
	for _, x := range rep.NotChecked {
		fmt.Fprintf(w, "  - %s\n", x)
	}
	fmt.Fprintln(w)
	switch f := rep.Failure; {
	case f == nil:
		fmt.Fprintf(w, "OK: %d entries verified against the bank's signed checkpoint; every invariant holds\n", s.Entries)
	case f.Emergency:
		fmt.Fprintf(w, "EMERGENCY: %s\n", f.Error)
	default:
		fmt.Fprintf(w, "FAILED: %s\n", f.Error)
	}
	if f := rep.Failure; f != nil && f.Fork != nil {
		fmt.Fprintf(w, "\nevidence (two checkpoints signed by the bank that no consistency proof joins):\n%s\n%s", f.Fork.Older, f.Fork.Newer)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
