package bankdcmd

import (
	"strings"
	"testing"

	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// TestBackupTimeoutPositive: "bankd admin backup --timeout 0" was taken,
// and the backup gave up at once (its context already past its deadline)
// with an error that named no flag. A timeout that is not positive is a
// usage error, naming --timeout, before the bank is asked anything (the
// admin address here is one nothing listens on). A negative duration is
// refused by the flag's parser already.
func TestBackupTimeoutPositive(t *testing.T) {
	token := t.TempDir() + "/admin.token"
	for _, timeout := range []string{"0", "0s"} {
		code, _, stderr := bankd(t, "admin", "--admin", "127.0.0.1:1", "--token-file", token, "backup", "--to", t.TempDir()+"/b", "--timeout", timeout)
		if code != cli.ExitUsage || !strings.Contains(stderr, "--timeout must be positive") {
			t.Errorf("backup --timeout %s: exit %d, %q; want exit %d naming --timeout", timeout, code, stderr, cli.ExitUsage)
		}
	}
}
