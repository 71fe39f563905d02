package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteOutFile: a new file is written; an existing one is refused,
// naming the flag that replaces it, and left as it was; with replace it is
// replaced.
func TestWriteOutFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out")
	if err := WriteOutFile(p, []byte("one"), 0o600, false, "--overwrite"); err != nil {
		t.Fatal(err)
	}
	err := WriteOutFile(p, []byte("two"), 0o600, false, "--overwrite")
	if err == nil || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("existing file: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("refused write changed the file: %q", b)
	}
	if err := WriteOutFile(p, []byte("two"), 0o600, true, "--overwrite"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("replaced file: %q", b)
	}
	if err := WriteOutFile(filepath.Join(p, "x"), nil, 0o600, false, "--overwrite"); err == nil {
		t.Fatal("write under a file succeeded")
	}
}
