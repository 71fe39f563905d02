package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/blindbank/blindbank/cmd/internal/cli/auditcmd"
	"github.com/blindbank/blindbank/cmd/internal/cli/clitest"
)

// TestMain lets the test binary run as audit, and as bankd, merchantd and
// wallet to make the transcripts it audits, inside the scripts.
func TestMain(m *testing.M) {
	cmds := clitest.Commands()
	cmds["audit"] = func() { os.Exit(auditcmd.Main()) }
	testscript.Main(m, cmds)
}

// TestScript runs testdata/script/*.txtar: audit typed as a user types it.
// $EXAMPLES is testdata/transcripts at the top of the module.
func TestScript(t *testing.T) {
	examples, err := filepath.Abs("../../testdata/transcripts")
	if err != nil {
		t.Fatal(err)
	}
	p := clitest.Params("testdata/script")
	setup := p.Setup
	p.Setup = func(env *testscript.Env) error {
		env.Setenv("EXAMPLES", examples)
		return setup(env)
	}
	testscript.Run(t, p)
}
