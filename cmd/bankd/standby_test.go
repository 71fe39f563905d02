package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pgstore"
	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// standbyName is the standby's application_name and replication slot.
const standbyName = "standby1"

// TestStandbyFailover (issue #8, item 6) deploys the bank over PostgreSQL
// with a synchronous streaming replica, as docs/OPERATIONS.md ("Streaming
// replica and failover") tells an operator to, and fails over:
//
//   - A primary with wal_level=replica and a pg_hba replication line; a hot
//     standby made with pg_basebackup -R -X stream -C -S standby1, started;
//     then synchronous_standby_names = 'FIRST 1 (standby1)' on the primary,
//     so that every COMMIT returns only once the standby has flushed it.
//   - Three "bankd serve --store postgres://…" replicas over the primary:
//     the SameCoins step of TestReplicasOverPostgres (withdrawals, then
//     deposits of the same coins sprayed over the three: one wins each),
//     then withdrawals, deposits and swaps from six clients. The standby
//     catches up (pg_stat_replication.replay_lsn and the standby's
//     pg_last_wal_replay_lsn reach the primary's WAL position), and
//     "audit log" passes and saves its --state.
//   - More load, and in its middle, with calls in flight, the primary is
//     stopped hard (pg_ctl stop -m immediate: no checkpoint, no goodbye to
//     the standby), without waiting for the standby. The bankd replicas
//     are stopped.
//   - The standby, still in recovery, has received at least what the
//     primary last reported it had flushed; pg_ctl promote makes it the
//     primary. The bankd replicas start again with --store naming it. Half
//     the calls the crash left unanswered are retried with the same bytes
//     (they take effect once); the other half are given up. More load runs
//     over the new primary.
//
// Then every operation the bank acknowledged before the crash is in the
// promoted database with the answer the client got; every unanswered one
// was applied whole or not at all; every account holds what the applied
// operations say, the ledger sums to zero and the e-cash outstanding is
// the value of the coins issued and not spent; every coin spent before the
// crash is refused as a double spend (with a proof naming the first
// payment) when deposited again; "audit log" with the --state saved before
// the crash passes, so the log after the failover extends the checkpoint
// audited before it, and fresh audits through each replica replay the
// whole log and add up to what the test did (SameCoins's and the load's
// operations, the credits, the outstanding e-cash).
//
// What makes it hold is synchronous replication: with
// synchronous_standby_names empty, the same crash may lose the last
// commits the primary acknowledged but had not yet sent, and this test
// would then find acknowledged operations missing (on one machine, over
// unix sockets, the standby is rarely behind, so that loss is rare here,
// not impossible).
func TestStandbyFailover(t *testing.T) {
	start := time.Now()
	ctx := t.Context()
	primary := pgtest.New(t)
	if err := primary.EnableReplication(ctx); err != nil {
		t.Fatal(err)
	}
	standby := primary.NewStandby(t, standbyName)
	if err := primary.SetConfig(ctx, "synchronous_standby_names", "FIRST 1 ("+standbyName+")"); err != nil {
		t.Fatal(err)
	}
	waitReplication(t, primary, "sync")
	c := startCluster(t, primary, 3)
	t.Logf("primary, synchronous standby, keys and 3 replicas up in %s", time.Since(start).Round(time.Millisecond))

	if !t.Run("SameCoins", func(t *testing.T) { testSameCoins(t, c) }) {
		return
	}

	// The load, over the primary, until it is stopped hard.
	const (
		workers   = 6
		credit    = 5000 // EUR:50.00 each: the load never runs short
		perWorker = 8    // operations of each worker before the audit, and over the new primary
		minDuring = 12   // operations answered after the audit before the crash
	)
	ws := make([]*loadWorker, workers)
	for i := range ws {
		seed := make([]byte, 32)
		rand.Read(seed)
		key, err := ecash.DeriveAccountKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = &loadWorker{n: i, c: c, t: t, seed: seed, key: key, rr: i, rng: mrand.New(mrand.NewPCG(uint64(i), 9)), credit: credit}
		ws[i].acct = c.openAccount(t, i, fmt.Sprintf("load %d", i), key.Public().(ed25519.PublicKey), false, c.amount(credit))
	}
	l := &standbyLoad{c: c}
	l.run(ws, 0, func(_ *loadWorker, done int) bool { return done < perWorker })
	l.wait()
	if n := l.unanswered(); n > 0 {
		t.Fatalf("%d calls unanswered over a healthy primary", n)
	}

	// The standby has caught up: the primary's pg_stat_replication shows
	// it replayed up to the primary's WAL position, and so does the
	// standby's pg_last_wal_replay_lsn.
	pconn := connect(t, primary.DSN("postgres"))
	sconn := connect(t, standby.DSN("postgres"))
	var walPos string
	if err := pconn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&walPos); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the standby to replay up to "+walPos, func() bool {
		r := replicationRow(t, primary)
		return r.replay != "" && !lsnLess(t, r.replay, walPos)
	})
	var replayed string
	if err := sconn.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn()::text`).Scan(&replayed); err != nil {
		t.Fatal(err)
	}
	if lsnLess(t, replayed, walPos) {
		t.Errorf("pg_stat_replication says the standby replayed up to %s, the standby says %s", walPos, replayed)
	}
	t.Logf("%d operations over the primary; the standby replayed up to %s, the primary's WAL position when they were done", len(l.ops), walPos)

	// An auditor checks the log, and keeps its state.
	state := filepath.Join(t.TempDir(), "bank.audit")
	info := c.reps[0].serveInfo()
	auditArgs := []string{"--bank", info.Addr, "--pin", info.Fingerprint, "--master", fmt.Sprintf("%x", c.ks.MasterPub), "--state", state}
	code, rep, stderr := runAudit(t, auditArgs...)
	if code != 0 || !rep.OK || rep.Checkpoint == nil {
		t.Fatalf("audit before the crash failed: exit %d, failure %+v\n%s", code, rep.Failure, stderr)
	}
	audited := *rep.Checkpoint
	t.Logf("audit before the crash: checkpoint of %d entries", audited.Size)

	// More load, and in its middle the primary stops hard, without
	// waiting for the standby.
	crashed := &atomic.Bool{}
	ackedBefore := l.acked.Load()
	l.run(ws, 0, func(*loadWorker, int) bool { return !crashed.Load() })
	waitUntil(t, "the load to run", func() bool { return l.acked.Load() >= ackedBefore+minDuring })
	waitUntil(t, "calls in flight", func() bool { return l.inflight.Load() > 0 })
	last := replicationRow(t, primary) // the operator's view, just before
	if last.state != "streaming" || last.syncState != "sync" {
		t.Fatalf("the standby is %s/%s, want streaming/sync", last.state, last.syncState)
	}
	inflight := l.inflight.Load()
	if err := primary.Crash(); err != nil {
		t.Fatal(err)
	}
	crashed.Store(true)
	l.wait()
	var ackedAtCrash []*loadOp // what the old primary acknowledged
	for _, op := range l.ops {
		if op.acked {
			ackedAtCrash = append(ackedAtCrash, op)
		}
	}
	t.Logf("pg_stat_replication just before the crash: %+v", last)
	t.Logf("primary stopped hard (pg_ctl stop -m immediate) with %d calls in flight; %d operations, %d answered, %d unanswered",
		inflight, len(l.ops), l.acked.Load(), l.unanswered())
	for _, r := range c.reps {
		if err := r.stop(); err != nil {
			t.Errorf("replica %d: bankd serve exited with %v\n%s", r.n, err, c.logTail(r))
		}
	}
	c.store.Close()

	// The standby, still in recovery, holds at least what the primary
	// last reported it had flushed; pg_ctl promote replays the rest of
	// what it received and ends recovery.
	var inRecovery bool
	var received, replayedBefore string
	if err := sconn.QueryRow(ctx, `SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text`).Scan(&inRecovery, &received, &replayedBefore); err != nil {
		t.Fatal(err)
	}
	if !inRecovery {
		t.Fatal("the standby is not in recovery")
	}
	if lsnLess(t, received, last.flush) {
		t.Errorf("the standby received up to %s, but the primary reported it had flushed %s", received, last.flush)
	}
	t0 := time.Now()
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	if err := sconn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil || inRecovery {
		t.Fatalf("after pg_ctl promote, in recovery %v (%v)", inRecovery, err)
	}
	t.Logf("standby received up to %s (replayed %s), promoted in %s", received, replayedBefore, time.Since(t0).Round(time.Millisecond))

	// bankd over the new primary: the same replicas, --store naming it.
	u, err := url.Parse(c.url)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("host", standby.Dir)
	q.Set("port", strconv.Itoa(standby.Port))
	u.RawQuery = q.Encode()
	c.url = u.String()
	if c.store, err = pgstore.Open(ctx, standby.DSN(u.Path[1:]), pgstore.Options{MaxConns: 4}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.store.Close() })
	for _, r := range c.reps {
		if err := c.start(r); err != nil {
			t.Fatal(err)
		}
	}

	// Half the calls the crash left unanswered are retried, the same
	// bytes; the other half are given up.
	var retried, givenUp int
	for _, op := range l.ops {
		if op.acked || op.refused != nil {
			continue
		}
		if retried > givenUp {
			givenUp++
			continue
		}
		retried++
		l.call(ws[l.owner[op]], op, len(c.reps))
		if !op.acked {
			t.Errorf("%s %x retried after the failover: not answered (%v, %v)", op.kind, op.key[:6], op.unanswered, op.refused)
		}
	}
	t.Logf("after the failover: %d unanswered calls retried (all answered), %d given up", retried, givenUp)

	// More load over the new primary.
	afterOps := len(l.ops)
	l.run(ws, 1, func(_ *loadWorker, done int) bool { return done < perWorker })
	l.wait()
	for _, op := range l.ops[afterOps:] {
		if !op.acked {
			t.Errorf("%s %x over the new primary: not answered (%v, %v)", op.kind, op.key[:6], op.unanswered, op.refused)
		}
	}
	t.Logf("%d more operations over the new primary", len(l.ops)-afterOps)
	for _, op := range l.ops {
		if op.refused != nil {
			t.Errorf("%s %x refused: %v", op.kind, op.key[:6], op.refused)
		}
	}
	if t.Failed() {
		return
	}

	// Every acknowledged operation is there, nothing is half applied, and
	// the ledger adds up.
	c.checkLoad(t, ws, l.ops)
	lost := 0
	for _, op := range ackedAtCrash {
		if !op.applied {
			lost++
		}
	}
	var applied, notApplied int
	for _, op := range l.ops[:afterOps] {
		if !op.acked && op.refused == nil {
			if op.applied {
				applied++
			} else {
				notApplied++
			}
		}
	}
	t.Logf("calls given up: %d applied (committed and replicated, the answer lost), %d not applied", applied, notApplied)
	if lost > 0 {
		t.Errorf("%d of the %d operations acknowledged by the old primary are missing from the promoted standby", lost, len(ackedAtCrash))
	} else {
		t.Logf("all %d operations acknowledged by the old primary are in the promoted standby", len(ackedAtCrash))
	}
	for _, r := range c.reps {
		a, err := r.adminClient().GetAccount(ctx, &pb.GetAccountRequest{Account: c.merchant.id})
		if err != nil {
			t.Fatal(err)
		}
		if want := c.amount(c.settled[c.merchant.id]); a.Balance != want {
			t.Errorf("merchant balance through replica %d: %s, want %s", r.n, a.Balance, want)
		}
	}

	// Every coin spent before the crash is a double spend now.
	refused := 0
	for i, op := range ackedAtCrash {
		if op.kind == "withdraw" {
			continue
		}
		var value int64
		var ids [][]byte
		for _, hc := range op.inputs {
			value += hc.value
			id := hc.coin.ID()
			ids = append(ids, id[:])
		}
		r := c.reps[i%len(c.reps)]
		sp, err := r.client().CoinsSpent(ctx, &pb.CoinsSpentRequest{CoinIds: ids})
		if err != nil {
			t.Fatal(err)
		}
		for j, s := range sp.Spent {
			if !s {
				t.Errorf("%s %x: input %d is not spent after the failover", op.kind, op.key[:6], j)
			}
		}
		pr, body, sig := c.paymentRequest(c.merchant, fmt.Sprintf("again-%d", i), value)
		sealed, err := c.sealPayment(pr, op.inputs)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.client().Deposit(ctx, &pb.DepositRequest{PaymentRequest: body, MerchantSig: sig, SealedPayment: sealed})
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("coins of %s %x (acknowledged before the crash) deposited again: %v, want a double-spend refusal", op.kind, op.key[:6], err)
			continue
		}
		ds := wallet.DoubleSpendFromError(err)
		if ds == nil {
			t.Errorf("coins of %s %x deposited again: refusal without a proof: %v", op.kind, op.key[:6], err)
			continue
		}
		if err := ds.Proof.Verify(c.ks); err != nil {
			t.Errorf("coins of %s %x: the proof does not verify: %v", op.kind, op.key[:6], err)
		}
		if op.kind == "deposit" && ds.Proof.Earlier.PaymentHash != op.key {
			t.Errorf("coins of deposit %x: the proof names payment %x", op.key[:6], ds.Proof.Earlier.PaymentHash[:6])
		}
		refused++
	}
	if refused == 0 {
		t.Error("no deposit or swap was acknowledged before the crash")
	}
	t.Logf("%d deposits of coins spent before the crash refused as double spends", refused)

	// The auditor's state from before the crash: the log extends it.
	size, err := c.store.LogSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info = c.reps[1].serveInfo()
	auditArgs[1], auditArgs[3] = info.Addr, info.Fingerprint
	code, rep, stderr = runAudit(t, auditArgs...)
	switch {
	case code != 0 || !rep.OK || rep.Checkpoint == nil || rep.Previous == nil:
		t.Fatalf("audit after the failover, with the state saved before the crash, failed: exit %d, failure %+v\n%s", code, rep.Failure, stderr)
	case rep.Previous.Size != audited.Size || rep.Previous.Root != audited.Root || rep.ResumedAt != audited.Size:
		t.Errorf("audit after the failover resumed at %d from %+v; the audit before the crash saved %+v", rep.ResumedAt, rep.Previous, audited)
	case rep.Checkpoint.Size != size:
		t.Errorf("audit after the failover: checkpoint of %d entries, the database holds %d", rep.Checkpoint.Size, size)
	}
	t.Logf("audit after the failover: resumed at %d, checkpoint of %d entries", rep.ResumedAt, rep.Checkpoint.Size)
	t.Run("Audit", func(t *testing.T) { testReplicaAudit(t, c) })

	c.stopAll(t)
	c.checkLogs(t)
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// standbyLoad is the load of TestStandbyFailover: the workers of
// TestReplicasOverPostgres's load, each call tried once per replica.
type standbyLoad struct {
	c        *cluster
	acked    atomic.Int64
	inflight atomic.Int64

	wg    sync.WaitGroup
	mu    sync.Mutex
	ops   []*loadOp
	owner map[*loadOp]int // the worker of each op
}

// run starts the workers; each goes on while more(w, operations it did in
// this run) holds, and stops after a call left without an answer. wait
// waits for them.
func (l *standbyLoad) run(ws []*loadWorker, phase int, more func(w *loadWorker, done int) bool) {
	if l.owner == nil {
		l.owner = map[*loadOp]int{}
	}
	for i, w := range ws {
		l.wg.Go(func() {
			for done := 0; more(w, done) && !w.broken && w.t.Context().Err() == nil; done++ {
				var op *loadOp
				switch x := w.rng.IntN(100); {
				case len(w.pool) < 3 || x < 30:
					op = w.withdrawOp()
				case x < 65:
					op = w.depositOp()
				default:
					op = w.swapOp()
				}
				if op == nil {
					return // w.broken says why
				}
				op.phase = phase
				l.mu.Lock()
				l.ops = append(l.ops, op)
				l.owner[op] = i
				l.mu.Unlock()
				l.call(w, op, 1)
				if !op.acked && op.refused == nil {
					return // a client without an answer waits for the failover
				}
			}
		})
	}
}

func (l *standbyLoad) wait() { l.wg.Wait() }

func (l *standbyLoad) unanswered() int {
	n := 0
	for _, op := range l.ops {
		if !op.acked && op.refused == nil {
			n++
		}
	}
	return n
}

// call sends op to up to tries replicas in turn, from w's next, until one
// answers. An error that is not a definitive refusal (bank.Definitive:
// UNAVAILABLE, whether a COMMIT's outcome is unknown or the database
// cannot be reached) leaves the outcome unknown: the attempt is
// recorded and the next replica tried; after the last, op stays
// unanswered, for a retry with the same bytes or for good.
func (l *standbyLoad) call(w *loadWorker, op *loadOp, tries int) {
	ctx := w.t.Context()
	for range tries {
		r := l.c.reps[w.rr%len(l.c.reps)]
		w.rr++
		bc := r.client()
		l.inflight.Add(1)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var err error
		switch op.kind {
		case "withdraw":
			var resp *pb.WithdrawResponse
			if resp, err = bc.Withdraw(cctx, op.withdraw); err == nil {
				op.sigs = resp.BlindSignatures
			}
		case "deposit":
			var resp *pb.DepositResponse
			if resp, err = bc.Deposit(cctx, op.deposit); err == nil {
				op.receipt, op.logIndex = resp.Receipt, resp.LogIndex
			}
		case "swap":
			var resp *pb.SwapResponse
			if resp, err = bc.Swap(cctx, op.swap); err == nil {
				op.sigs, op.logIndex = resp.BlindSignatures, resp.LogIndex
			}
		}
		cancel()
		l.inflight.Add(-1)
		switch {
		case err == nil:
			op.acked, op.by = true, r.n
			l.acked.Add(1)
			if op.kind != "deposit" {
				w.unblind(op)
			}
			return
		case ctx.Err() != nil:
			return
		case !bank.Definitive(err):
			op.unanswered = append(op.unanswered, fmt.Sprintf("replica %d: %v", r.n, err))
		default:
			op.refused = fmt.Errorf("replica %d: %w", r.n, err)
			return
		}
	}
}

// waitUntil polls cond until it holds; it gives up (failing t) after a
// minute, or as soon as t has failed.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) || t.Failed() {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// replicaStatus is the primary's pg_stat_replication row of the standby.
type replicaStatus struct {
	state, syncState            string
	sent, flush, replay         string // LSNs
	lagBytes                    int64  // pg_current_wal_lsn() - replay_lsn
	writeLag, flushLag, replLag string // intervals; "" while idle
}

// replicationRow reads the standby's row of pg_stat_replication on the
// primary: the query docs/OPERATIONS.md tells operators to watch.
func replicationRow(t *testing.T, primary *pgtest.Server) replicaStatus {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var r replicaStatus
	err = conn.QueryRow(t.Context(), `SELECT state, sync_state,
			coalesce(sent_lsn::text, ''), coalesce(flush_lsn::text, ''), coalesce(replay_lsn::text, ''),
			coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, -1),
			coalesce(write_lag::text, ''), coalesce(flush_lag::text, ''), coalesce(replay_lag::text, '')
		FROM pg_stat_replication WHERE application_name = $1`, standbyName).Scan(
		&r.state, &r.syncState, &r.sent, &r.flush, &r.replay, &r.lagBytes, &r.writeLag, &r.flushLag, &r.replLag)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return r
}

// waitReplication waits until the primary streams to the standby, and
// sees it as syncState ("sync" or "async").
func waitReplication(t *testing.T, primary *pgtest.Server, syncState string) {
	t.Helper()
	waitUntil(t, "the standby to stream, "+syncState, func() bool {
		r := replicationRow(t, primary)
		return r.state == "streaming" && r.syncState == syncState
	})
}

// lsnLess reports whether LSN a ("16/B374D848") is below b.
func lsnLess(t *testing.T, a, b string) bool {
	t.Helper()
	return parseLSN(t, a) < parseLSN(t, b)
}

func parseLSN(t *testing.T, s string) uint64 {
	t.Helper()
	var hi, lo uint64
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		t.Fatalf("LSN %q: %v", s, err)
	}
	return hi<<32 | lo
}
