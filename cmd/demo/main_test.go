package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

func runDemo(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	code = cli.Run(context.Background(), command(), env, args)
	return code, out.String(), errb.String()
}

// demo follows the other tools' conventions: a mistake is one line on
// stderr and exit 2, not the whole usage.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--nope"}, {"-dirr", "x"}, {"extra"}} {
		code, stdout, stderr := runDemo(args...)
		if code != cli.ExitUsage || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q", args, code, stdout)
		}
		if !strings.HasPrefix(stderr, "demo: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "(see 'demo --help')") {
			t.Errorf("%q: stderr is not one line: %q", args, stderr)
		}
	}
	code, stdout, _ := runDemo("--help")
	if code != cli.ExitOK || !strings.Contains(stdout, "Usage: demo [flags]") || !strings.Contains(stdout, "--json") {
		t.Errorf("--help: exit %d\n%s", code, stdout)
	}
}

// With --json the narration goes to stderr and stdout is the outcome;
// --verbose adds the daemons' logs there, each operation included (the
// bank logs those at Debug).
func TestJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a bank's RSA keys")
	}
	code, stdout, stderr := runDemo("--json", "--verbose", "--dir", t.TempDir())
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if !res.DoubleSpendRefused || !res.ProofVerified || len(res.Accounts) != 3 || len(res.Wallets) != 2 || res.Outstanding == "" || res.Dir == "" {
		t.Errorf("outcome %+v", res)
	}
	if !strings.Contains(stderr, "refused:") {
		t.Errorf("no narration on stderr:\n%s", stderr)
	}
	for _, op := range []string{"msg=withdraw", "msg=deposit"} {
		if !strings.Contains(stderr, op) {
			t.Errorf("--verbose: no %s line on stderr:\n%s", op, stderr)
		}
	}
}

// TestPayErrorChangePending: a payment whose change swap the bank did not
// answer sent nothing to the merchant. The demo passed the wallet's error
// on as it was, which says to retry (the demo does not) and names no payer
// or order; it says whose order was not paid, that nothing was sent, and
// which swap is pending. Other errors pass unchanged: the double spend the
// demo expects is still found in the error.
func TestPayErrorChangePending(t *testing.T) {
	lost := fmt.Errorf("%w: swap: connection reset", wallet.ErrPending)
	for _, c := range []struct {
		recoup bool
		want   string
	}{{false, "the swap making change"}, {true, "a recoup of a revoked coin"}} {
		err := payError("alice", "ord-1", &wallet.ChangePendingError{Err: lost, Recoup: c.recoup})
		msg := err.Error()
		for _, want := range []string{"alice's order ord-1 was not paid", "nothing was sent to the merchant", c.want, "connection reset", "the demo stops"} {
			if !strings.Contains(msg, want) {
				t.Errorf("recoup %v: %q lacks %q", c.recoup, msg, want)
			}
		}
		if strings.Contains(msg, "retry, which settles") || !errors.Is(err, wallet.ErrPending) {
			t.Errorf("recoup %v: %q gives the wallet's advice to retry, or no longer wraps ErrPending", c.recoup, msg)
		}
	}
	ds := &ecash.DoubleSpendError{}
	if err := payError("alice", "ord-1", ds); err != error(ds) {
		t.Errorf("a double spend explained as %v, want it unchanged", err)
	}
}
