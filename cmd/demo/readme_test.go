//go:build unix

package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestREADMEWalkthrough runs the README's walkthrough, its two shell
// blocks (a bank, a shop and a customer; then the NetBill purchase) as a
// newcomer pastes them, in one bash with -e, against the clone it is in:
// a README that drifts from the commands fails here, not in front of a
// newcomer. It uses the daemons' default ports, as the README does, so it
// skips when one is taken.
func TestREADMEWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the commands and starts a bank and a merchant")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, port := range []string{"7443", "7444", "7543", "7544"} {
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Skipf("port %s is taken: the README's daemons listen there", port)
		}
		l.Close()
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	walk := shellBlocks(t, string(readme), "## Walkthrough: a bank, a shop and a customer", "## Measuring throughput")
	if len(walk) != 2 {
		t.Fatalf("the walkthrough has %d shell blocks, want 2 (the first steps, then NetBill)", len(walk))
	}
	const clone = "BLINDBANK=~/src/blindbank        # your clone"
	if !strings.Contains(walk[0], clone) {
		t.Fatalf("the walkthrough no longer starts with %q", clone)
	}
	script := strings.Replace(walk[0], clone, "BLINDBANK="+shellQuote(root), 1) + "\n" + walk[1]

	cmd := exec.Command(bash, "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The daemons are the script's children: stop whatever it leaves.
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Minute): // a hang, not a timing threshold
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
	}
	if err != nil {
		t.Fatalf("the walkthrough failed: %v\n%s", err, out.String())
	}
	// What the README's comments say the commands print.
	var missing []string
	for _, want := range []string{`(?m)^credited EUR:100\.00 to account 1000 \("alice"\); balance EUR:100\.00$`, `(?m)^balance: +EUR:5\.00$`, `(?m)^balance: +EUR:90\.00$`, `(?m)^OK: .*every invariant holds$`, `(?m)^goods decrypted$`} {
		if !regexp.MustCompile(want).Match(out.Bytes()) {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the walkthrough's output lacks %q:\n%s", missing, out.String())
	}
}

// shellBlocks returns the ```sh blocks of text between the headings from
// and to.
func shellBlocks(t *testing.T, text, from, to string) []string {
	t.Helper()
	i, j := strings.Index(text, from), strings.Index(text, to)
	if i < 0 || j < i {
		t.Fatalf("README: no section %q before %q", from, to)
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(text[i:j], -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// shellQuote quotes s for bash.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
