package echeck_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProtocolDocVectors keeps the annotated hex in docs/PROTOCOL.md §9 in
// step with testdata/echeck/vectors.json (which TestVectors ties to the
// code): each block, read as the first hex word of every line, must equal
// the named vector field, and each hash shown must be the vector's.
func TestProtocolDocVectors(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "docs", "PROTOCOL.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i := strings.Index(doc, "\n## 9. Electronic checks (NetBill)")
	if i < 0 {
		t.Fatal("section 9 missing from docs/PROTOCOL.md")
	}
	doc = doc[i:]
	fields := map[string]string{}
	for _, v := range readVectorFile(t).Vectors {
		for k, h := range v.Fields {
			fields[v.Name+"/"+k] = h
		}
	}
	for _, tc := range []struct{ heading, field string }{
		{"EPOID `7-1741964966535-1`, tagged encoding", "epoid/encoding"},
		{"Key commitment preimage and commitment:", "goods/key_commit_preimage"},
		{"ciphertext (53 bytes) and hash:", "goods/ciphertext"},
		{"EPO body (goods, 249 bytes)", "epo (goods)/encoding"},
		{"Customer signature input", "signed epo (goods)/signature_input"},
		{"Receipt body (approved goods, 230 bytes)", "receipt (approved goods)/body"},
	} {
		got := annotatedHex(t, doc, tc.heading)
		if got != fields[tc.field] {
			t.Errorf("%s: docs\n %s\nvectors %s", tc.heading, got, fields[tc.field])
		}
	}
	for _, f := range []string{
		"goods/key_commit", "goods/goods_hash", "epo (goods)/body_hash", "signed epo (goods)/hash",
		"signed epo (goods)/customer_sig", "receipt (approved goods)/hash",
	} {
		h := fields[f]
		if h == "" || !strings.Contains(strings.ReplaceAll(doc, "\n", ""), h) {
			t.Errorf("docs do not show %s = %s", f, h)
		}
	}
	// The parts hash the customer signs covers the sealed private part by
	// its hash: the doc's must be that of the vector's sealed part.
	sealed, err := hex.DecodeString(fields["signed epo (goods)/sealed_private"])
	if err != nil || len(sealed) == 0 {
		t.Fatalf("vector signed epo (goods)/sealed_private: %v", err)
	}
	if h := sha256.Sum256(sealed); !strings.Contains(doc, "SHA-256(sealed private part) = "+hex.EncodeToString(h[:])+"\n") {
		t.Errorf("docs do not show SHA-256(sealed private part) = %x", h)
	}
	sig := fields["receipt (approved goods)/signature"]
	if !strings.Contains(doc, sig[:64]+"\n"+sig[64:]) {
		t.Error("docs do not show the receipt signature")
	}
}

// annotatedHex reads the fenced block after heading, up to a line that does
// not start with hex.
func annotatedHex(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, heading)
	if i < 0 {
		t.Fatalf("heading %q not found", heading)
	}
	rest := doc[i:]
	j := strings.Index(rest, "```\n")
	if j < 0 {
		t.Fatalf("no block after %q", heading)
	}
	var b strings.Builder
	for _, line := range strings.Split(rest[j+4:], "\n") {
		word, _, _ := strings.Cut(line, " ")
		if word == "" || strings.Trim(word, "0123456789abcdef") != "" {
			break
		}
		b.WriteString(word)
	}
	return b.String()
}
