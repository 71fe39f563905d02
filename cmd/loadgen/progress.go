package main

import (
	"fmt"
	"io"
	"sync"

	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// progress shows what loadgen is doing on stderr: a status line redrawn in
// place on a terminal, or one line per update otherwise (a log keeps the
// whole story). Notes are permanent lines. A nil *progress shows nothing.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	drawn bool
}

func newProgress(inv *cli.Invocation) *progress {
	return &progress{w: inv.Stderr, tty: inv.StderrTerminal}
}

// Status replaces the status line.
func (p *progress) Status(format string, args ...any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf(format, args...)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
		return
	}
	fmt.Fprintln(p.w, line)
}

// Note prints a permanent line.
func (p *progress) Note(format string, args ...any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, "loadgen: "+format+"\n", args...)
}

// Clear erases the status line.
func (p *progress) Clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}
