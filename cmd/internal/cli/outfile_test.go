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

// TestReadFileLimited: a file of the limit's size is read whole; one byte
// more is refused by name, and so is a file that never ends.
func TestReadFileLimited(t *testing.T) {
	p := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(p, []byte("12345678"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFileLimited(p, 8); err != nil || string(b) != "12345678" {
		t.Fatalf("a file of the limit's size: %q, %v", b, err)
	}
	if _, err := ReadFileLimited(p, 7); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("a file one byte over the limit: %v, want an error naming it", err)
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := ReadFileLimited("/dev/zero", 1<<10); err == nil {
			t.Fatal("/dev/zero read whole")
		}
	}
}
