package auditlog_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// auditlog is pure (like ecash): no I/O, no clock, no ambient randomness,
// and only the standard library, ecash and the sumdb packages of
// golang.org/x/mod. A store wires it to its storage.

var allowedImports = []string{
	"github.com/blindbank/blindbank/ecash",
	"golang.org/x/mod/sumdb/tlog",
	"golang.org/x/mod/sumdb/note",
}

var deniedStd = []string{
	"os", "net", "io/fs", "io/ioutil", "syscall", "plugin", "unsafe", "embed",
	"path/filepath", "database/sql", "log", "testing", "math/rand", "crypto/rand", "runtime/cgo",
}

func TestImports(t *testing.T) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			std := !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")
			switch {
			case std:
				for _, d := range deniedStd {
					if imp == d || strings.HasPrefix(imp, d+"/") {
						t.Errorf("%s imports %q: auditlog does no I/O and takes time and randomness as arguments", name, imp)
					}
				}
			default:
				ok := false
				for _, a := range allowedImports {
					ok = ok || imp == a
				}
				if !ok {
					t.Errorf("%s imports %q: auditlog may import only the standard library, ecash and x/mod/sumdb", name, imp)
				}
			}
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(src), "time.Now(") {
			t.Errorf("%s reads the clock", name)
		}
	}
}
