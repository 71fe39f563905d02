package ecash_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ecash is pure protocol code (DESIGN.md §1): no gRPC, no storage, no files,
// no network, no clock, no ambient randomness. This test reads the package's
// own source and holds it to that.

// allowedModules are the only non-standard-library import prefixes.
var allowedModules = []string{
	"github.com/cloudflare/circl/",
	"golang.org/x/crypto/",
	// The Clause Blind Schnorr cipher (DESIGN.md §2) is to be built on it.
	"filippo.io/edwards25519",
	// Constant-time arithmetic for RSA signing with the CRT (rsacrt.go): the
	// standard library's crypto/rsa arithmetic, re-exported.
	"filippo.io/bigmod",
}

// deniedStd are standard-library packages (and their subtrees) that would
// give ecash I/O, a clock or randomness it must take as arguments.
var deniedStd = []string{
	"os", "net", "io/fs", "io/ioutil", "syscall", "plugin", "unsafe", "embed",
	"path/filepath", "database/sql", "log", "testing",
	"math/rand", "crypto/rand", // randomness is an io.Reader argument
	"runtime/cgo",
}

func denied(imp string) bool {
	for _, d := range deniedStd {
		if imp == d || strings.HasPrefix(imp, d+"/") {
			return true
		}
	}
	return false
}

func packageFiles(t *testing.T) (*token.FileSet, map[string]*ast.File) {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	if len(files) == 0 {
		t.Fatal("no package files found")
	}
	return fset, files
}

func TestImports(t *testing.T) {
	_, files := packageFiles(t)
	for name, f := range files {
		for _, spec := range f.Imports {
			imp, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			std := !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")
			switch {
			case std && denied(imp):
				t.Errorf("%s imports %q: ecash must not do I/O or use ambient clocks or randomness", name, imp)
			case std:
			case !allowed(imp):
				t.Errorf("%s imports %q: ecash may import only the standard library, circl and x/crypto", name, imp)
			}
		}
	}
}

func allowed(imp string) bool {
	for _, m := range allowedModules {
		if imp == strings.TrimSuffix(m, "/") || strings.HasPrefix(imp, m) {
			return true
		}
	}
	return false
}

// TestNoClock checks that no package file reads the clock: time is an argument.
func TestNoClock(t *testing.T) {
	fset, files := packageFiles(t)
	for name, f := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(src), "time.Now(") {
			t.Errorf("%s mentions time.Now(", name)
		}
		// Also catch renamed imports and the functions that read the clock
		// implicitly.
		timeName := ""
		for _, spec := range f.Imports {
			if spec.Path.Value == `"time"` {
				timeName = "time"
				if spec.Name != nil {
					timeName = spec.Name.Name
				}
			}
		}
		if timeName == "" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == timeName {
				switch sel.Sel.Name {
				case "Now", "Since", "Until", "Sleep", "After", "AfterFunc", "Tick", "NewTimer", "NewTicker":
					t.Errorf("%s: %s.%s reads the clock; take the time as an argument",
						fset.Position(sel.Pos()), timeName, sel.Sel.Name)
				}
			}
			return true
		})
	}
}
