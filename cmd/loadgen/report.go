package main

import (
	"fmt"
	"io"
	"time"
)

// report is the result of "loadgen run".
type report struct {
	Scenario   string `json:"scenario"`
	Cipher     string `json:"cipher"`
	CoinsPerOp int    `json:"coins_per_op"`
	// Unit is what Coins and every per-coin figure count: "coin", or for
	// the check scenario "check" (one payment order per operation, no
	// coins).
	Unit string `json:"unit"`
	// EPOKind is the check scenario's kind of payment order: "check" or
	// "goods".
	EPOKind string `json:"epo_kind,omitempty"`
	// PayRequest is how the pay scenario's wallets get each payment
	// request: "fetch" (GetPaymentRequest) or "uri" (from the order's
	// payment URI, one RPC fewer).
	PayRequest  string  `json:"pay_request,omitempty"`
	Concurrency int     `json:"concurrency"`
	Duration    float64 `json:"duration_s"` // asked for
	// Rate is the paced rate asked for (--rate), in operations per second;
	// 0: back to back.
	Rate       float64 `json:"rate_ops_per_s,omitempty"`
	Elapsed    float64 `json:"elapsed_s"` // the timed phase, to the end of its last operation
	EndedEarly string  `json:"ended_early,omitempty"`

	Ops         int64         `json:"ops"`
	Coins       int64         `json:"coins"`
	OpsPerSec   float64       `json:"ops_per_s"`
	CoinsPerSec float64       `json:"coins_per_s"`
	Latency     latencyReport `json:"latency_ms"`
	// RPCsPerOp is the calls the bank and merchant served per operation
	// in the timed phase (a merchant's deposit counts at the bank); 0
	// when loadgen runs against daemons it did not start.
	RPCsPerOp float64 `json:"rpcs_per_op,omitempty"`

	// Limit is the crypto limit measured before the timed phase (the pay
	// scenario sizes its coins by it), LimitAfter the same once the
	// servers have stopped after it: the machine's speed drifts by 10%
	// and more over a minute, and the two bracket the phase.
	Limit      limitResult `json:"crypto_limit"`
	LimitAfter limitResult `json:"crypto_limit_after"`
	// Fraction is coins/s over the mean of the two limits' coins/s.
	Fraction float64 `json:"fraction_of_limit"`

	CPU  cpuReport  `json:"cpu"`
	Disk diskReport `json:"disk"`
	// Commits are the bank's synced group commits in the phase (nil but
	// for Pebble banks loadgen runs itself).
	Commits *commitReport `json:"commits,omitempty"`
	Setup   setupReport   `json:"setup"`
	Store   storeReport   `json:"store"`
	// Prefill is the spent coins written into the store before the
	// phase (--prefill-spent); nil without.
	Prefill *prefillReport `json:"prefill,omitempty"`

	// External names the running daemons measured (--bank-data,
	// --merchant-data); nil when loadgen started the servers itself.
	External *externalReport `json:"external,omitempty"`

	Keys    keyInfo     `json:"keys"`
	Machine machineInfo `json:"machine"`
}

// externalReport is the bankd (and merchantd) loadgen ran against.
type externalReport struct {
	BankData     string `json:"bank_data"`
	BankAddr     string `json:"bank_addr"`
	MerchantData string `json:"merchant_data,omitempty"` // "": pay and check started a merchant in loadgen
	MerchantAddr string `json:"merchant_addr,omitempty"`
}

func (e *externalReport) describe() string {
	s := fmt.Sprintf("the running bankd at %s (data %s)", e.BankAddr, e.BankData)
	if e.MerchantData != "" {
		s += fmt.Sprintf(", merchantd at %s (data %s)", e.MerchantAddr, e.MerchantData)
	}
	return s
}

type latencyReport struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// cpuReport is CPU time per coin over the timed phase, in microseconds.
// ProcessUs is measured (getrusage: user and system time of the whole
// process, wallets included); the split by role applies the shares of a CPU
// profile of the phase to it.
type cpuReport struct {
	ProcessUs float64 `json:"process_us_per_coin"`
	CoresBusy float64 `json:"cores_busy"` // process CPU time over wall time
	// OtherCores is how many cores other processes kept busy during the
	// phase (Linux /proc/stat; -1 if unknown): a disturbed measurement
	// shows here.
	OtherCores float64 `json:"other_processes_cores"`

	BankUs     *float64 `json:"bank_us_per_coin,omitempty"`
	MerchantUs *float64 `json:"merchant_us_per_coin,omitempty"`
	WalletUs   *float64 `json:"wallets_us_per_coin,omitempty"`
	// StorageUs is Pebble's background work (writing and syncing the WAL,
	// flushes, compactions): the bank's store's, and for pay the
	// merchant's too. Pebble's own profiler labels hide whose.
	StorageUs *float64 `json:"storage_us_per_coin,omitempty"`
	RuntimeUs *float64 `json:"runtime_us_per_coin,omitempty"` // unlabelled: GC workers, scheduler, ...
	Samples   int64    `json:"profile_ms,omitempty"`          // CPU the profile saw, for its resolution
	Note      string   `json:"note,omitempty"`

	// BankdUs and MerchantdUs are the CPU per coin of the running bankd
	// and merchantd loadgen was pointed at (--bank-data, --merchant-data),
	// every thread of the process, read from /proc; DaemonCores is how
	// many cores they kept busy together. The process figures above are
	// then the wallets' (and a merchant loadgen started).
	BankdUs     *float64 `json:"bankd_us_per_coin,omitempty"`
	MerchantdUs *float64 `json:"merchantd_us_per_coin,omitempty"`
	DaemonCores float64  `json:"daemon_cores_busy,omitempty"`
	// Profiles are the CPU profiles of those daemons over the phase
	// (--cpuprofile FILE: FILE.bankd, FILE.merchantd).
	Profiles []string `json:"daemon_profiles,omitempty"`
}

// addNote adds a sentence to the note.
func (c *cpuReport) addNote(s string) {
	if c.Note != "" {
		c.Note += "; "
	}
	c.Note += s
}

// setDaemons records the daemons' CPU over the phase (t0 and t1 are their
// times before and after, nil if unreadable) and returns its total, and
// whether it is known.
func (c *cpuReport) setDaemons(ds []daemon, t0, t1 []time.Duration, elapsed float64, coins int64) (time.Duration, bool) {
	if len(ds) == 0 {
		return 0, true
	}
	if t0 == nil || t1 == nil {
		c.addNote("the CPU of the bankd and merchantd processes could not be read from /proc")
		return 0, false
	}
	var total time.Duration
	for i, d := range ds {
		used := t1[i] - t0[i]
		total += used
		v := perCoinUs(used, coins)
		if d.role == roleBank {
			c.BankdUs = &v
		} else {
			c.MerchantdUs = &v
		}
	}
	c.DaemonCores = total.Seconds() / elapsed
	return total, true
}

// setSplit divides total (the measured process CPU) by the profile's shares.
func (c *cpuReport) setSplit(byRole map[string]time.Duration, total time.Duration, coins int64) {
	var sum time.Duration
	for _, d := range byRole {
		sum += d
	}
	c.Samples = sum.Milliseconds()
	if sum == 0 || coins == 0 {
		c.addNote("the CPU profile saw no samples: no split by role")
		return
	}
	share := func(role string) *float64 {
		v := perCoinUs(time.Duration(float64(total)*float64(byRole[role])/float64(sum)), coins)
		return &v
	}
	c.BankUs, c.MerchantUs, c.WalletUs, c.StorageUs = share(roleBank), share(roleMerchant), share(roleClient), share(roleStorage)
	var other time.Duration
	for role, d := range byRole {
		if role != roleBank && role != roleMerchant && role != roleClient && role != roleStorage {
			other += d
		}
	}
	v := perCoinUs(time.Duration(float64(total)*float64(other)/float64(sum)), coins)
	c.RuntimeUs = &v
}

// diskReport is the bank's store on disk.
type diskReport struct {
	StoreBytes   int64   `json:"bank_store_bytes"`  // the bank's Pebble directory after the phase
	GrowthBytes  int64   `json:"bank_growth_bytes"` // its growth over the phase (mostly write-ahead log)
	BytesPerCoin float64 `json:"bytes_per_coin"`    // growth over the phase's coins (checks): bytes written per coin (check)
	// At rest: after the run, the store flushed and fully compacted; its
	// tables over the coins it issued. For pay, PaidCoins of those were
	// also deposited (warm-up included; the margin stays unspent): the
	// deposits' share per paid coin is (AtRestBytes - IssuedCoins × the
	// withdraw scenario's bytes per coin) / PaidCoins. For swap, the
	// coins issued are the few withdrawn before the phase and every
	// swap's outputs (SwappedCoins, warm-up included; as many inputs were
	// spent). For check, no coin is issued: the tables over Checks (warm-up
	// included) are AtRestBytesPerCheck.
	AtRestBytes         int64   `json:"at_rest_bytes"`
	IssuedCoins         int64   `json:"issued_coins"`
	PaidCoins           int64   `json:"paid_coins,omitempty"`
	SwappedCoins        int64   `json:"swapped_coins,omitempty"`
	Checks              int64   `json:"checks,omitempty"`
	AtRestBytesPerCoin  float64 `json:"at_rest_bytes_per_issued_coin,omitempty"`
	AtRestBytesPerCheck float64 `json:"at_rest_bytes_per_check,omitempty"`
	Note                string  `json:"note,omitempty"`
}

// storeReport is the bank's store and its replicas.
type storeReport struct {
	Kind     string    `json:"kind"` // pebble or postgres
	Replicas int       `json:"replicas"`
	Postgres *pgReport `json:"postgres,omitempty"`
}

func (s storeReport) describe() string {
	if s.Postgres == nil {
		return "Pebble, one bank"
	}
	p := s.Postgres
	reps := "one bank"
	if s.Replicas > 1 {
		reps = fmt.Sprintf("%d bank replicas", s.Replicas)
	}
	return fmt.Sprintf("PostgreSQL %s (%s server; fsync=%s, synchronous_commit=%s, shared_buffers %s), %s, %d connections each",
		p.Version, p.Server, p.Fsync, p.SynchronousCommit, p.SharedBuffers, reps, p.PoolPerReplica)
}

type setupReport struct {
	Seconds            float64 `json:"setup_s"`
	PrewithdrawnCoins  int64   `json:"prewithdrawn_coins,omitempty"`
	PrewithdrawSeconds float64 `json:"prewithdraw_s,omitempty"`
	WarmupOpsPerSec    float64 `json:"warmup_ops_per_s,omitempty"`
	WarmupCoins        int64   `json:"warmup_coins,omitempty"`
	// SettleSeconds is the wait, after a prefill, for the store to finish
	// the setup's compactions before the timed phase.
	SettleSeconds float64 `json:"settle_s,omitempty"`
}

func (r *report) writeText(w io.Writer) {
	unit := r.Unit
	if unit == "" {
		unit = "coin"
	}
	units := unit + "s"
	var scenario string
	switch {
	case r.EPOKind != "":
		scenario = fmt.Sprintf("%s (%s)", r.Scenario, r.EPOKind)
	case r.PayRequest == "uri":
		scenario = fmt.Sprintf("pay from payment URIs, %s coins, %d coins per op", r.Cipher, r.CoinsPerOp)
	case r.CoinsPerOp > 1:
		scenario = fmt.Sprintf("%s, %s coins, %d coins per op", r.Scenario, r.Cipher, r.CoinsPerOp)
	default:
		scenario = fmt.Sprintf("%s, %s coins, 1 coin per op", r.Scenario, r.Cipher)
	}
	if r.Scenario == "swap" {
		scenario += fmt.Sprintf(" (%d in, %d out)", r.CoinsPerOp, r.CoinsPerOp)
	}
	fmt.Fprintf(w, "loadgen run: %s, %d wallets, %.0fs\n", scenario, r.Concurrency, r.Duration)
	fmt.Fprintf(w, "  machine       %s, %d cores, GOMAXPROCS %d\n", r.Machine.describe(), r.Machine.Cores, r.Machine.GOMAXPROCS)
	fmt.Fprintf(w, "  keys          %s\n", r.Keys.describe())
	if r.External != nil {
		fmt.Fprintf(w, "  servers       %s\n", r.External.describe())
	} else {
		fmt.Fprintf(w, "  store         %s\n", r.Store.describe())
	}
	if p := r.Prefill; p != nil {
		fmt.Fprintf(w, "  prefill       %d spent coins in %.0fs (%.0f coins/s), settled in %.0fs: store %.2f GiB\n",
			p.SpentCoins, p.Seconds, p.CoinsPerSec, p.SettleSeconds, float64(p.StoreBytes)/(1<<30))
	}
	switch {
	case r.Setup.PrewithdrawnCoins > 0:
		fmt.Fprintf(w, "  setup         %.1fs, of which %.1fs to withdraw %d coins for the timed phase", r.Setup.Seconds, r.Setup.PrewithdrawSeconds, r.Setup.PrewithdrawnCoins)
		if r.Setup.WarmupOpsPerSec > 0 {
			fmt.Fprintf(w, " (warm-up: %.0f ops/s)", r.Setup.WarmupOpsPerSec)
		}
		if r.Setup.SettleSeconds > 0 {
			fmt.Fprintf(w, ", %.0fs for the store to settle", r.Setup.SettleSeconds)
		}
		fmt.Fprintln(w)
	case r.Setup.WarmupOpsPerSec > 0:
		fmt.Fprintf(w, "  setup         %.1fs (warm-up: %.0f ops/s)\n", r.Setup.Seconds, r.Setup.WarmupOpsPerSec)
	default:
		fmt.Fprintf(w, "  setup         %.1fs\n", r.Setup.Seconds)
	}
	fmt.Fprintf(w, "  timed phase   %.2fs", r.Elapsed)
	if r.EndedEarly != "" {
		fmt.Fprintf(w, " (ended early: %s)", r.EndedEarly)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  operations    %d: %.1f ops/s", r.Ops, r.OpsPerSec)
	if r.Rate > 0 {
		fmt.Fprintf(w, " (paced at %g ops/s)", r.Rate)
	}
	if r.RPCsPerOp > 0 {
		fmt.Fprintf(w, ", %.2f RPCs served per op", r.RPCsPerOp)
	}
	fmt.Fprintln(w)
	if unit != "check" {
		fmt.Fprintf(w, "  coins         %d: %.1f coins/s\n", r.Coins, r.CoinsPerSec)
	}
	l := r.Latency
	fmt.Fprintf(w, "  latency       p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms\n", l.P50, l.P95, l.P99, l.Max)
	fmt.Fprintf(w, "  crypto limit  %.0f %s/s on %d cores before the phase, %.0f %s/s after (%+.0f%%), all parties' share (the bank's alone: %.0f %s/s)\n",
		r.Limit.CoinsPerSec, units, r.Limit.Workers, r.LimitAfter.CoinsPerSec, units, 100*r.limitDrift(), r.Limit.BankOnlyCoinsPerSec, units)
	fmt.Fprintf(w, "                per %s on one core: wallet %.0f µs, bank %.0f µs, merchant %.0f µs\n", unit, r.Limit.WalletUs, r.Limit.BankUs, r.Limit.MerchantUs)
	fmt.Fprintf(w, "  fraction      %.3f of the crypto limit (the mean of the two)\n", r.Fraction)
	if d := r.limitDrift(); d > maxLimitDrift || d < -maxLimitDrift {
		fmt.Fprintf(w, "  note          the limit moved by %+.0f%% across the phase: the machine's speed changed, and the fraction is uncertain by about half as much\n", 100*d)
	}
	c := r.CPU
	fmt.Fprintf(w, "  CPU per %-5s %.0f µs for the whole process (%.2f cores busy", unit, c.ProcessUs, c.CoresBusy)
	if c.OtherCores >= 0 {
		fmt.Fprintf(w, "; other processes: %.2f cores", c.OtherCores)
	}
	fmt.Fprint(w, ")")
	if c.WalletUs != nil {
		// The split by role; against a bankd (and merchantd) the roles
		// not in this process are nil.
		fmt.Fprint(w, ":\n                ")
		if c.BankUs != nil {
			fmt.Fprintf(w, "bank %.0f, ", *c.BankUs)
		}
		if c.MerchantUs != nil {
			fmt.Fprintf(w, "merchant %.0f, ", *c.MerchantUs)
		}
		fmt.Fprintf(w, "wallets %.0f, Pebble background %.0f, runtime %.0f", *c.WalletUs, *c.StorageUs, *c.RuntimeUs)
	}
	fmt.Fprintln(w)
	if c.BankdUs != nil {
		fmt.Fprintf(w, "                bankd %.0f µs", *c.BankdUs)
		if c.MerchantdUs != nil {
			fmt.Fprintf(w, ", merchantd %.0f µs", *c.MerchantdUs)
		}
		fmt.Fprintf(w, " (%.2f cores busy), from /proc\n", c.DaemonCores)
	}
	for _, f := range c.Profiles {
		fmt.Fprintf(w, "                CPU profile over the phase: %s\n", f)
	}
	if c.Note != "" {
		fmt.Fprintf(w, "                %s\n", c.Note)
	}
	if p := r.Store.Postgres; p != nil {
		fmt.Fprintf(w, "  PostgreSQL    %d transactions (%.0f/s, reads included), %d WAL syncs (%.2f ops each), %.0f WAL bytes per op",
			p.Transactions, float64(p.Transactions)/r.Elapsed, p.WALSyncs, p.OpsPerSync, p.WALBytesPerOp)
		if p.CPUUs >= 0 {
			fmt.Fprintf(w, ";\n                server CPU %.0f µs per %s (%.2f cores busy)", p.CPUUs, unit, p.CoresBusy)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  backends      %.1f connected on average; busy:", p.Backends)
		if len(p.Waits) == 0 {
			fmt.Fprint(w, " none seen")
		}
		for i, ws := range p.Waits {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			if i%3 == 0 {
				fmt.Fprint(w, "\n               ")
			}
			fmt.Fprintf(w, " %s %.2f", ws.State, ws.Backends)
		}
		fmt.Fprintln(w)
	}
	if r.Commits != nil {
		fmt.Fprintf(w, "  commits       %s\n", r.Commits.describe())
	}
	d := r.Disk
	if r.Store.Postgres != nil {
		fmt.Fprintf(w, "  disk          %.0f WAL bytes per %s; database %.1f MiB at the end\n", d.BytesPerCoin, unit, float64(d.StoreBytes)/(1<<20))
		return
	}
	if r.External != nil && d.StoreBytes == 0 {
		fmt.Fprintf(w, "  disk          %s\n", d.Note)
		return
	}
	fmt.Fprintf(w, "  disk          bank store grew %.0f bytes per %s (%.1f MiB at the end)", d.BytesPerCoin, unit, float64(d.StoreBytes)/(1<<20))
	if d.Note != "" {
		fmt.Fprintf(w, "; %s\n", d.Note)
		return
	}
	fmt.Fprintf(w, "; compacted: %.1f MiB, ", float64(d.AtRestBytes)/(1<<20))
	switch {
	case d.Checks > 0:
		fmt.Fprintf(w, "%.0f bytes per check (%d checks)\n", d.AtRestBytesPerCheck, d.Checks)
	case d.PaidCoins > 0:
		fmt.Fprintf(w, "%.0f bytes per coin issued (%d, of which %d paid)\n", d.AtRestBytesPerCoin, d.IssuedCoins, d.PaidCoins)
	case d.SwappedCoins > 0:
		fmt.Fprintf(w, "%.0f bytes per coin issued (%d, of which %d by swaps)\n", d.AtRestBytesPerCoin, d.IssuedCoins, d.SwappedCoins)
	default:
		fmt.Fprintf(w, "%.0f bytes per coin issued (%d)\n", d.AtRestBytesPerCoin, d.IssuedCoins)
	}
}

// maxLimitDrift is how far the limits before and after the phase may differ
// before the text report warns. Even on a quiet machine they drift by 10%
// and more within a minute (docs/PERFORMANCE.md, "The limit drifts").
const maxLimitDrift = 0.10

// limitDrift is the change of the crypto limit across the timed phase, as a
// fraction of the limit before it.
func (r *report) limitDrift() float64 {
	return r.LimitAfter.CoinsPerSec/r.Limit.CoinsPerSec - 1
}

// meanLimit is the mean of the limits before and after the timed phase.
func (r *report) meanLimit() float64 {
	return (r.Limit.CoinsPerSec + r.LimitAfter.CoinsPerSec) / 2
}
