// Package clitest runs the blindbank commands under testscript, as a user
// types them: each cmd/<x> test registers bankd, merchantd and wallet as
// commands and runs its testdata/script/*.txtar.
//
// Besides testscript's built-ins, scripts get:
//
//	waitfile FILE [TIMEOUT]     wait until FILE exists and is not empty (default 60s)
//	jsonenv FILE VAR=field...   set $VAR to a top-level field of a JSON file (or "stdout")
//	stdoutenv VAR               set $VAR to the last command's stdout, trimmed
//	cpdir SRC DST               copy a directory tree
package clitest

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/blindbank/blindbank/cmd/internal/cli/bankdcmd"
	"github.com/blindbank/blindbank/cmd/internal/cli/merchantdcmd"
	"github.com/blindbank/blindbank/cmd/internal/cli/walletcmd"
)

// Commands are the commands for testscript.Main.
func Commands() map[string]func() {
	return map[string]func(){
		"bankd":     func() { os.Exit(bankdcmd.Main()) },
		"merchantd": func() { os.Exit(merchantdcmd.Main()) },
		"wallet":    func() { os.Exit(walletcmd.Main()) },
	}
}

// Params runs the scripts in dir with the extra commands.
func Params(dir string) testscript.Params {
	return testscript.Params{
		Dir: dir,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfile":  waitFile,
			"jsonenv":   jsonEnv,
			"stdoutenv": stdoutEnv,
			"cpdir":     cpDir,
		},
		Setup: func(env *testscript.Env) error {
			env.Setenv("BLINDBANK_WALLET", "")
			// Under -race every command would otherwise sleep a second at
			// exit (the race runtime's default atexit_sleep_ms=1000).
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=10"))
			return nil
		},
	}
}

func waitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waitfile FILE [TIMEOUT]")
	}
	timeout := 60 * time.Second
	if len(args) == 2 {
		d, err := time.ParseDuration(args[1])
		ts.Check(err)
		timeout = d
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(timeout)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within %s", args[0], timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jsonEnv(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: jsonenv FILE VAR=field...")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(ts.ReadFile(args[0])), &m); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
	for _, a := range args[1:] {
		name, field, ok := strings.Cut(a, "=")
		if !ok {
			ts.Fatalf("usage: jsonenv FILE VAR=field...")
		}
		raw, ok := m[field]
		if !ok {
			ts.Fatalf("%s has no field %q", args[0], field)
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			s = string(raw) // a number or a boolean, as written
		}
		ts.Setenv(name, s)
	}
}

func stdoutEnv(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: stdoutenv VAR")
	}
	ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile("stdout")))
}

func cpDir(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: cpdir SRC DST")
	}
	src, dst := ts.MkAbs(args[0]), ts.MkAbs(args[1])
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
	if err != nil {
		ts.Fatalf("cpdir: %v", fmt.Sprint(err))
	}
}
