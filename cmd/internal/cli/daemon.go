package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/blindbank/blindbank/bank"
)

// LogFlags are --log-format and --log-level of a daemon.
type LogFlags struct {
	Format string
	Level  string
}

// Register adds the flags to fs.
func (l *LogFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&l.Format, "log-format", "text", "log `FORMAT` on stderr: text or json")
	fs.StringVar(&l.Level, "log-level", "info", "least `LEVEL` logged: debug, info, warn or error")
}

// Logger builds the logger the flags describe.
func (l *LogFlags) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		return nil, Usagef("bad --log-level %q: want debug, info, warn or error", l.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.Format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, Usagef("bad --log-format %q: want text or json", l.Format)
}

// WriteAddresses writes v (a struct embedding ServeInfo) to
// DIR/addresses.json atomically, so a reader never sees half a file.
func WriteAddresses(dir string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return bank.WriteFileAtomic(filepath.Join(dir, AddressesFile), append(b, '\n'), 0o644)
}

// RemoveAddresses removes DIR/addresses.json (the daemon stopped).
func RemoveAddresses(dir string) {
	os.Remove(filepath.Join(dir, AddressesFile))
}

// ServeRows adds a daemon's addresses to a table for people.
func ServeRows(t *Table, what string, info *ServeInfo) {
	mode := "TLS"
	if !info.TLS {
		mode = "plaintext, loopback only"
	}
	switch info.ClientAuth {
	case "merchants":
		mode += ", client certificate required for deposits and checks"
	case "all":
		mode += ", client certificate required"
	}
	t.Row(what+" address:", fmt.Sprintf("%s (%s)", info.Addr, mode))
	if info.AdminTLS {
		t.Row("admin address:", info.AdminAddr+" (TLS, client certificate and token required)")
	} else {
		t.Row("admin address:", info.AdminAddr+" (loopback, token required)")
	}
	if info.TLS {
		t.Row("TLS certificate:", info.CertFile)
		t.Row("SHA-256 fingerprint:", info.Fingerprint)
	}
	t.Row("admin token file:", info.TokenFile)
}

// QuietStdlibLog silences the standard library's log package, which Pebble
// uses for its chatter ("Found 0 WALs") when it is given no logger, unless
// BLINDBANK_DEBUG is set. Daemons route it into slog instead.
func QuietStdlibLog() {
	if os.Getenv("BLINDBANK_DEBUG") == "" {
		log.SetOutput(io.Discard)
	}
}
