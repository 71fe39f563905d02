package walletcmd

import (
	"strings"
	"testing"

	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// TestPayHelpForScripts: pay --help's paragraph for scripts names every
// "error" kind payError prints with --json (add a new kind here and
// there), and does not call a pending payment unpaid: its coins were sent
// and the order may be paid.
func TestPayHelpForScripts(t *testing.T) {
	r := runWallet(t, cli.Env{}, "pay", "--help")
	if r.code != 0 {
		t.Fatalf("pay --help: %+v", r)
	}
	_, para, ok := strings.Cut(r.stdout, "For scripts:")
	if !ok {
		t.Fatalf("pay --help has no paragraph for scripts:\n%s", r.stdout)
	}
	para, _, _ = strings.Cut(para, "\n\n")
	for _, kind := range []string{"pending", "change-pending", "recoup-pending", "paid-with-other-coins", "double-spend", "denomination-revoked"} {
		if !strings.Contains(para, `"`+kind+`"`) {
			t.Errorf("the paragraph for scripts does not name the kind %q:\n%s", kind, para)
		}
	}
	if !strings.Contains(para, "may have gone through") {
		t.Errorf("the paragraph for scripts does not say a pending payment may be paid:\n%s", para)
	}
}
