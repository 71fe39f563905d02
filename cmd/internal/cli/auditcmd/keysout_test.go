package auditcmd_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/cli/auditcmd"
)

// TestKeysOut: 'audit keys --out' saves the key set's exact bytes,
// replacing a file there (mode 0644 whatever the old one's, no temporary
// file left beside it), and a file it cannot write is an error that names
// --out, leaving nothing behind.
func TestKeysOut(t *testing.T) {
	src := filepath.Join("..", "..", "..", "..", "testdata", "transcripts", "keyset.signed")
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	keys := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
		return cli.Run(context.Background(), auditcmd.Command(), env, append([]string{"keys", "--keys", src}, args...)), errb.String()
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "ks.signed")
	if err := os.WriteFile(out, []byte("an older key set"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stderr := keys("--out", out); code != 0 {
		t.Fatalf("keys --out: exit %d: %s", code, stderr)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("--out holds %d bytes (%v), want the key set's %d", len(got), err, len(raw))
	}
	if fi, err := os.Stat(out); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o644) {
		t.Errorf("--out: %v, %v; want mode 0644", fi.Mode(), err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 {
		t.Errorf("beside --out: %v (%v); want the file alone", ents, err)
	}

	missing := filepath.Join(dir, "no-such-dir", "ks.signed")
	code, stderr := keys("--out", missing)
	if code != 1 || !strings.Contains(stderr, "--out") {
		t.Errorf("--out in a missing directory: exit %d, %q; want 1, naming --out", code, stderr)
	}
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Errorf("--out in a missing directory made it: %v", err)
	}
}
