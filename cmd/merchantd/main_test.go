package main

import (
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/blindbank/blindbank/cmd/internal/cli/clitest"
)

// TestMain lets the test binary run as bankd, merchantd or wallet inside the
// scripts.
func TestMain(m *testing.M) { testscript.Main(m, clitest.Commands()) }

// TestScript runs testdata/script/*.txtar: merchantd typed as a user types it.
func TestScript(t *testing.T) { testscript.Run(t, clitest.Params("testdata/script")) }
