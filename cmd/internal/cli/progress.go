package cli

import (
	"fmt"
	"io"
	"strings"
)

// Progress draws a one-line progress bar on stderr, and only when stderr is
// a terminal: a log file or a pipe gets nothing (the command prints a
// summary line when it is done instead).
type Progress struct {
	w     io.Writer
	on    bool
	label string
	drawn bool
}

// NewProgress prepares a bar labelled label.
func (inv *Invocation) NewProgress(label string) *Progress {
	return &Progress{w: inv.Stderr, on: inv.StderrTerminal, label: label}
}

// Set draws done out of total.
func (p *Progress) Set(done, total int) {
	if !p.on || total <= 0 {
		return
	}
	done = min(max(done, 0), total)
	const width = 30
	fill := width * done / total
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d", p.label, strings.Repeat("#", fill), strings.Repeat(".", width-fill), done, total)
	p.drawn = true
}

// Finish erases the bar so the summary line starts clean.
func (p *Progress) Finish() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}
