package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// fakeRuns answers each "loadgen run" from a table keyed by the scenario
// arguments, in order, and records the calls: the verdict logic is tested
// here, the child processes in testdata/script/targets.txtar.
type fakeRuns struct {
	calls   [][]string
	answers map[string][]any // key: strings.Join(args, " ") without --duration; a *report or an error
}

func (f *fakeRuns) run(_ context.Context, args []string) (*report, []byte, error) {
	f.calls = append(f.calls, args)
	i := slices.Index(args, "--duration")
	key := strings.Join(args[:i], " ")
	q := f.answers[key]
	if len(q) == 0 {
		return nil, nil, errors.New("unexpected run " + key)
	}
	a := q[0]
	f.answers[key] = q[1:]
	if err, ok := a.(error); ok {
		return nil, nil, err
	}
	raw, err := json.Marshal(a)
	return a.(*report), raw, err
}

func byName(t *testing.T, names ...string) []target {
	t.Helper()
	ts, err := chooseTargets(strings.Join(names, ","))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func key(tg target) string { return strings.Join(tg.Args, " ") }

func TestTargetVerdicts(t *testing.T) {
	ts := byName(t, "pay-cs", "swap-cs", "latency", "size")
	pay, swap, lat, size := ts[0], ts[1], ts[2], ts[3]
	f := &fakeRuns{answers: map[string][]any{
		key(pay):                     {&report{Fraction: 0.52}, &report{Fraction: 0.48}, &report{Fraction: 0.55}},
		key(swap):                    {&report{OpsPerSec: 400}, errors.New("bank fell over"), &report{OpsPerSec: 420}},
		key(lat):                     {&report{Latency: latencyReport{P99: 4.9}}, &report{Latency: latencyReport{P99: 12}}, &report{Latency: latencyReport{P99: 4}}},
		strings.Join(size.Base, " "): {&report{CPU: cpuReport{ProcessUs: 400}}, &report{CPU: cpuReport{ProcessUs: 400}}, &report{CPU: cpuReport{ProcessUs: 400}}},
		key(size):                    {&report{CPU: cpuReport{ProcessUs: 440}}, &report{CPU: cpuReport{ProcessUs: 500}}, &report{CPU: cpuReport{ProcessUs: 480}}},
	}}
	rep := measureTargets(context.Background(), ts, 3, 15*time.Second, 2*time.Second, f.run, nil)

	// Interleaved: round by round, every target once a round, each round
	// starting one target further along; size's 1M run before its 10M
	// run; every run with the duration and limit time.
	var order []string
	for _, c := range f.calls {
		if !slices.Equal(c[len(c)-4:], []string{"--duration", "15s", "--limit-time", "2s"}) {
			t.Errorf("run %v: not the asked duration and limit time", c)
		}
		order = append(order, strings.Join(c[:len(c)-4], " "))
	}
	p, sw, l, sz := []string{key(pay)}, []string{key(swap)}, []string{key(lat)}, []string{strings.Join(size.Base, " "), key(size)}
	if want := slices.Concat(p, sw, l, sz, sw, l, sz, p, l, sz, p, sw); !slices.Equal(order, want) {
		t.Errorf("runs in order\n%q\nwant\n%q", order, want)
	}

	type want struct {
		median  float64
		met     int
		failed  int
		verdict string
		shown   string
	}
	for i, w := range []want{
		{0.52, 2, 0, "met", "0.520, 0.480, 0.550"},
		{410, 0, 1, "missed", "400, 420"},
		{4.9, 2, 0, "met", "4.9, 12.0, 4.0"},
		{0.2, 2, 0, "met", "+10%, +25%, +20%"},
	} {
		got := rep.Targets[i]
		if got.Median < w.median-1e-9 || got.Median > w.median+1e-9 || got.Met != w.met || got.Failed != w.failed ||
			got.Verdict != w.verdict || strings.Join(got.Shown, ", ") != w.shown {
			t.Errorf("%s: median %v, met %d, failed %d, verdict %s, shown %q; want %+v", got.Name, got.Median, got.Met, got.Failed, got.Verdict, got.Shown, w)
		}
		if len(got.Reports) != len(got.Values) {
			t.Errorf("%s: %d reports for %d values", got.Name, len(got.Reports), len(got.Values))
		}
	}
	if e := rep.Targets[1].Errors; len(e) != 1 || e[0] != "bank fell over" {
		t.Errorf("swap's errors: %q", e)
	}
	if n := len(rep.Targets[3].BaseReports); n != 3 {
		t.Errorf("size: %d base reports, want 3", n)
	}
	if c := rep.Targets[3].Command; !strings.Contains(c, "--prefill-spent 1000000") || !strings.Contains(c, "then loadgen run") {
		t.Errorf("size's command %q does not show both runs", c)
	}

	var text strings.Builder
	rep.writeText(&text)
	for _, s := range []string{"pay-cs", "0.520, 0.480, 0.550 (median 0.520; 2 of 3 met it)", "failed       1 runs: bank fell over",
		"verdict      missed", "p99 under 5 ms", "loadgen run --scenario swap --cipher cs --coins-per-op 4 --concurrency 16 --duration 15s"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("text report lacks %q:\n%s", s, text.String())
		}
	}
}

func TestTargetsAllFailed(t *testing.T) {
	ts := byName(t, "withdraw-cs")
	f := &fakeRuns{answers: map[string][]any{key(ts[0]): {errors.New("no disk")}}}
	rep := measureTargets(context.Background(), ts, 1, time.Second, time.Second, f.run, nil)
	if got := rep.Targets[0]; got.Verdict != "failed" || got.Failed != 1 || len(got.Values) != 0 {
		t.Errorf("got %+v, want a failed target", got)
	}
}

// TestTargetsDefault: without --only, every target but the long size one,
// in the order; --only keeps the table's order, not the flag's.
func TestTargetsDefault(t *testing.T) {
	all, err := chooseTargets("")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range all {
		names = append(names, tg.Name)
	}
	if want := slices.DeleteFunc(targetNames(), func(n string) bool { return n == "size" }); !slices.Equal(names, want) {
		t.Errorf("default targets %v, want %v", names, want)
	}
	two, err := chooseTargets("latency, pay-cs")
	if err != nil || len(two) != 2 || two[0].Name != "pay-cs" || two[1].Name != "latency" {
		t.Errorf("--only latency,pay-cs: %v, %v", two, err)
	}
}

// TestTargetsNeedTheBinary: in-process (this test binary), targets refuses
// to run itself as a child rather than running the tests again.
func TestTargetsNeedTheBinary(t *testing.T) {
	_, stderr, code := loadgen(t, "targets", "--only", "withdraw-cs", "--runs", "1", "--duration", "1s")
	if code == cli.ExitOK || !strings.Contains(stderr, "test binary") {
		t.Errorf("exit %d, stderr %q: want a refusal", code, stderr)
	}
}

func TestTargetsETA(t *testing.T) {
	started := time.Now().Add(-10 * time.Minute)
	if got := eta(started, 3, 9, 4); got != "" {
		t.Errorf("before a whole round: %q, want none", got)
	}
	// 4 runs in 10 minutes, 8 to go: about 20 minutes.
	if got := eta(started, 4, 12, 4); got != ", about 20m0s left" {
		t.Errorf("after a round: %q", got)
	}
}
