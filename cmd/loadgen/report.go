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
	EPOKind     string  `json:"epo_kind,omitempty"`
	Concurrency int     `json:"concurrency"`
	Duration    float64 `json:"duration_s"` // asked for
	Elapsed     float64 `json:"elapsed_s"`  // the timed phase, to the end of its last operation
	EndedEarly  string  `json:"ended_early,omitempty"`

	Ops         int64         `json:"ops"`
	Coins       int64         `json:"coins"`
	OpsPerSec   float64       `json:"ops_per_s"`
	CoinsPerSec float64       `json:"coins_per_s"`
	Latency     latencyReport `json:"latency_ms"`

	Limit    limitResult `json:"crypto_limit"`
	Fraction float64     `json:"fraction_of_limit"` // coins/s over the crypto limit

	CPU   cpuReport   `json:"cpu"`
	Disk  diskReport  `json:"disk"`
	Setup setupReport `json:"setup"`

	Keys    keyInfo     `json:"keys"`
	Machine machineInfo `json:"machine"`
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
}

// setSplit divides total (the measured process CPU) by the profile's shares.
func (c *cpuReport) setSplit(byRole map[string]time.Duration, total time.Duration, coins int64) {
	var sum time.Duration
	for _, d := range byRole {
		sum += d
	}
	c.Samples = sum.Milliseconds()
	if sum == 0 || coins == 0 {
		c.Note = "the CPU profile saw no samples: no split by role"
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
}

type setupReport struct {
	Seconds            float64 `json:"setup_s"`
	PrewithdrawnCoins  int64   `json:"prewithdrawn_coins,omitempty"`
	PrewithdrawSeconds float64 `json:"prewithdraw_s,omitempty"`
	WarmupOpsPerSec    float64 `json:"warmup_ops_per_s,omitempty"`
	WarmupCoins        int64   `json:"warmup_coins,omitempty"`
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
	case r.CoinsPerOp > 1:
		scenario = fmt.Sprintf("%s, %s coins, %d coins per op", r.Scenario, r.Cipher, r.CoinsPerOp)
	default:
		scenario = fmt.Sprintf("%s, %s coins, 1 coin per op", r.Scenario, r.Cipher)
	}
	if r.Scenario == "swap" {
		scenario += fmt.Sprintf(" (%d in, %d out)", r.CoinsPerOp, r.CoinsPerOp)
	}
	fmt.Fprintf(w, "loadgen run: %s, %d wallets, %.0fs\n", scenario, r.Concurrency, r.Duration)
	fmt.Fprintf(w, "  machine       %s, GOMAXPROCS %d\n", r.Machine.describe(), r.Machine.GOMAXPROCS)
	fmt.Fprintf(w, "  keys          %s\n", r.Keys.describe())
	switch {
	case r.Setup.PrewithdrawnCoins > 0:
		fmt.Fprintf(w, "  setup         %.1fs, of which %.1fs to withdraw %d coins for the timed phase", r.Setup.Seconds, r.Setup.PrewithdrawSeconds, r.Setup.PrewithdrawnCoins)
		if r.Setup.WarmupOpsPerSec > 0 {
			fmt.Fprintf(w, " (warm-up: %.0f ops/s)", r.Setup.WarmupOpsPerSec)
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
	fmt.Fprintf(w, "  operations    %d: %.1f ops/s\n", r.Ops, r.OpsPerSec)
	if unit != "check" {
		fmt.Fprintf(w, "  coins         %d: %.1f coins/s\n", r.Coins, r.CoinsPerSec)
	}
	l := r.Latency
	fmt.Fprintf(w, "  latency       p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms\n", l.P50, l.P95, l.P99, l.Max)
	fmt.Fprintf(w, "  crypto limit  %.0f %s/s on %d cores, all parties' share (the bank's alone: %.0f %s/s)\n",
		r.Limit.CoinsPerSec, units, r.Limit.Workers, r.Limit.BankOnlyCoinsPerSec, units)
	fmt.Fprintf(w, "                per %s on one core: wallet %.0f µs, bank %.0f µs, merchant %.0f µs\n", unit, r.Limit.WalletUs, r.Limit.BankUs, r.Limit.MerchantUs)
	fmt.Fprintf(w, "  fraction      %.3f of the crypto limit\n", r.Fraction)
	c := r.CPU
	fmt.Fprintf(w, "  CPU per %-5s %.0f µs for the whole process (%.2f cores busy", unit, c.ProcessUs, c.CoresBusy)
	if c.OtherCores >= 0 {
		fmt.Fprintf(w, "; other processes: %.2f cores", c.OtherCores)
	}
	fmt.Fprint(w, ")")
	if c.BankUs != nil {
		fmt.Fprintf(w, ":\n                bank %.0f, merchant %.0f, wallets %.0f, Pebble background %.0f, runtime %.0f",
			*c.BankUs, *c.MerchantUs, *c.WalletUs, *c.StorageUs, *c.RuntimeUs)
	}
	fmt.Fprintln(w)
	if c.Note != "" {
		fmt.Fprintf(w, "                %s\n", c.Note)
	}
	d := r.Disk
	fmt.Fprintf(w, "  disk          bank store grew %.0f bytes per %s (%.1f MiB at the end); compacted: %.1f MiB, ",
		d.BytesPerCoin, unit, float64(d.StoreBytes)/(1<<20), float64(d.AtRestBytes)/(1<<20))
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
