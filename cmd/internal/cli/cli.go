// Package cli holds what the blindbank commands (bankd, merchantd, wallet,
// audit, loadgen, demo) share: a small subcommand tree on the standard flag package, help text,
// text-or-JSON output, exit codes, a signal-aware context, a progress bar, and
// the TLS-trust and admin-endpoint flags.
//
// Conventions every command follows:
//   - flags may be written -flag or --flag, before or after positional
//     arguments, and flags of a parent command (--json, --admin, --wallet…)
//     may also be given after the subcommand name;
//   - -h/--help prints help on stdout and exits 0;
//   - a usage error (unknown flag or command, missing required flag, wrong
//     number of arguments) prints one line on stderr and exits 2;
//   - any other failure prints one line "PROGRAM: message" on stderr and
//     exits 1;
//   - --json prints results as one indented JSON document on stdout.
package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/term"
)

// Env is the outside world of a command run: its streams and environment.
// Tests run commands in-process with their own Env.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// StdinTerminal and StderrTerminal report whether the streams are
	// interactive terminals (prompts and progress bars depend on it).
	StdinTerminal  bool
	StderrTerminal bool
}

// OSEnv is the process's real environment.
func OSEnv() *Env {
	return &Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		StdinTerminal:  term.IsTerminal(int(os.Stdin.Fd())),
		StderrTerminal: term.IsTerminal(int(os.Stderr.Fd())),
	}
}

// Command is a node of a command tree: a group of subcommands, or a leaf
// that runs. Build the tree afresh for every run: flag variables live in the
// closures of the Flags functions.
type Command struct {
	Name    string // e.g. "serve"
	Args    string // positional arguments for the usage line, e.g. "ORDER_ID"
	Short   string // one line for the parent's command list
	Long    string // what the command does; printed by --help
	Example string // one or more example invocations
	// Flags registers the command's own flags. The flags of a group are
	// registered on its subcommands too, so they can be given after the
	// subcommand name.
	Flags func(fs *flag.FlagSet)
	// NArgs is the exact number of positional arguments; -1 means any.
	NArgs int
	Sub   []*Command
	Run   func(ctx context.Context, inv *Invocation) error

	parent *Command
	fs     *flag.FlagSet
	own    map[string]bool
}

// Invocation is what a Run function receives.
type Invocation struct {
	*Env
	Program string   // the root command's name, e.g. "wallet"
	Path    string   // the full command, e.g. "wallet pay"
	Args    []string // positional arguments
	JSON    bool     // --json was given

	sets []*flag.FlagSet
}

// IsSet reports whether flag name was given on the command line, at any
// level of the command path.
func (inv *Invocation) IsSet(name string) bool {
	found := false
	for _, fs := range inv.sets {
		fs.Visit(func(f *flag.Flag) {
			if f.Name == name {
				found = true
			}
		})
	}
	return found
}

// Notef prints a human note on stderr (never on stdout, which carries the
// results).
func (inv *Invocation) Notef(format string, args ...any) {
	fmt.Fprintf(inv.Stderr, format+"\n", args...)
}

// PromptOut is where a command shows what it asks the user to agree to, and
// asks: stdout, unless stdout carries JSON.
func (inv *Invocation) PromptOut() io.Writer {
	if inv.JSON {
		return inv.Stderr
	}
	return inv.Stdout
}

// Agree asks "QUESTION [y/N] " on PromptOut and reads one line of stdin:
// only y or yes (in any case) agrees, so an empty line or no input refuses.
func (inv *Invocation) Agree(question string) bool {
	fmt.Fprint(inv.PromptOut(), question+" [y/N] ")
	line, _ := bufio.NewReader(inv.Stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// UsageError is a command-line mistake: the command exits 2.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{msg: fmt.Sprintf(format, args...)}
}

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// Main runs root with the process's arguments and environment, cancelling
// the context on SIGINT or SIGTERM. A second signal kills the process the
// usual way.
func Main(root *Command) int {
	ctx, stop := SignalContext(context.Background())
	defer stop()
	return Run(ctx, root, OSEnv(), os.Args[1:])
}

// SignalContext is cancelled on SIGINT or SIGTERM; after stop (or the first
// signal is delivered and stop called) signals behave as usual again.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// Run parses args against the tree under root, runs the chosen command and
// returns the exit code. It never panics: a panic in a command is reported
// as an internal error.
func Run(ctx context.Context, root *Command, env *Env, args []string) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(env.Stderr, "%s: internal error: %v (please report this)\n", root.Name, r)
			code = ExitError
		}
	}()
	var jsonOut bool
	build(root, nil, &jsonOut)

	cmd := root
	var sets []*flag.FlagSet
	for {
		sets = append(sets, cmd.fs)
		pos, err := parse(cmd.fs, args, len(cmd.Sub) == 0)
		if errors.Is(err, flag.ErrHelp) {
			writeHelp(env.Stdout, cmd)
			return ExitOK
		}
		if err != nil {
			return usage(env, cmd, err.Error())
		}
		if len(cmd.Sub) == 0 {
			args = pos
			break
		}
		if len(pos) == 0 {
			if cmd.parent == nil && len(args) == 0 {
				// The bare program name: show what it can do.
				writeHelp(env.Stderr, cmd)
				return ExitUsage
			}
			return usage(env, cmd, "missing command; one of "+strings.Join(names(cmd.Sub), ", "))
		}
		if pos[0] == "help" {
			return help(env, cmd, pos[1:])
		}
		sub := find(cmd, pos[0])
		if sub == nil {
			return usage(env, cmd, fmt.Sprintf("unknown command %q; one of %s", pos[0], strings.Join(names(cmd.Sub), ", ")))
		}
		cmd, args = sub, pos[1:]
	}
	if cmd.NArgs >= 0 && len(args) != cmd.NArgs {
		switch {
		case cmd.NArgs == 0:
			return usage(env, cmd, fmt.Sprintf("unexpected argument %q", args[0]))
		case len(args) < cmd.NArgs:
			return usage(env, cmd, "missing "+cmd.Args)
		default:
			return usage(env, cmd, fmt.Sprintf("too many arguments: want %s, got %q", cmd.Args, strings.Join(args, " ")))
		}
	}
	inv := &Invocation{Env: env, Program: root.Name, Path: cmd.path(), Args: args, JSON: jsonOut, sets: sets}
	err := cmd.Run(ctx, inv)
	if err == nil {
		return ExitOK
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return usage(env, cmd, ue.msg)
	}
	// Library errors of the same name ("wallet: …") need no second prefix.
	fmt.Fprintf(env.Stderr, "%s: %s\n", root.Name, strings.TrimPrefix(Message(err), root.Name+": "))
	return ExitError
}

func usage(env *Env, cmd *Command, msg string) int {
	fmt.Fprintf(env.Stderr, "%s: %s (see '%s --help')\n", cmd.root().Name, oneLine(msg), cmd.path())
	return ExitUsage
}

func help(env *Env, cmd *Command, path []string) int {
	for _, name := range path {
		sub := find(cmd, name)
		if sub == nil {
			return usage(env, cmd, fmt.Sprintf("no help for unknown command %q", name))
		}
		cmd = sub
	}
	writeHelp(env.Stdout, cmd)
	return ExitOK
}

func find(cmd *Command, name string) *Command {
	for _, s := range cmd.Sub {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func names(cs []*Command) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// build creates every command's flag set: the flags of its ancestors, the
// built-in --json, then its own. All registration happens before any
// parsing, so registering a variable twice never resets a parsed value.
func build(c, parent *Command, jsonOut *bool) {
	c.parent = parent
	c.fs = flag.NewFlagSet(c.path(), flag.ContinueOnError)
	c.fs.SetOutput(io.Discard)
	c.fs.Usage = func() {}
	c.fs.BoolVar(jsonOut, "json", false, "print results as JSON")
	for _, a := range c.ancestors() {
		if a.Flags != nil {
			a.Flags(c.fs)
		}
	}
	inherited := map[string]bool{}
	c.fs.VisitAll(func(f *flag.Flag) { inherited[f.Name] = true })
	if c.Flags != nil {
		c.Flags(c.fs)
	}
	c.own = map[string]bool{}
	c.fs.VisitAll(func(f *flag.Flag) {
		if !inherited[f.Name] {
			c.own[f.Name] = true
		}
	})
	for _, s := range c.Sub {
		build(s, c, jsonOut)
	}
}

// ancestors lists the parents of c, root first.
func (c *Command) ancestors() []*Command {
	var out []*Command
	for p := c.parent; p != nil; p = p.parent {
		out = append([]*Command{p}, out...)
	}
	return out
}

func (c *Command) root() *Command {
	for c.parent != nil {
		c = c.parent
	}
	return c
}

func (c *Command) path() string {
	if c.parent == nil {
		return c.Name
	}
	return c.parent.path() + " " + c.Name
}

// parse parses flags. With interspersed, flags and positional arguments may
// mix ("withdraw EUR:5.00 --transcript t.jsonl"); "--" ends the flags.
// Without, parsing stops at the first positional argument (a subcommand).
func parse(fs *flag.FlagSet, args []string, interspersed bool) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if !interspersed || len(rest) == 0 {
			return append(pos, rest...), nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// writeHelp prints a command's help.
func writeHelp(w io.Writer, c *Command) {
	line := c.path()
	if len(c.Sub) > 0 {
		line += " [flags] COMMAND [flags]"
	} else {
		line += " [flags]"
		if c.Args != "" {
			line += " " + c.Args
		}
	}
	fmt.Fprintf(w, "Usage: %s\n", line)
	if text := strings.TrimSpace(c.Long); text != "" {
		fmt.Fprintf(w, "\n%s\n", text)
	} else if c.Short != "" {
		fmt.Fprintf(w, "\n%s.\n", c.Short)
	}
	if len(c.Sub) > 0 {
		fmt.Fprintf(w, "\nCommands:\n")
		width := 0
		for _, s := range c.Sub {
			width = max(width, len(s.Name))
		}
		for _, s := range c.Sub {
			fmt.Fprintf(w, "  %-*s  %s\n", width, s.Name, s.Short)
		}
		fmt.Fprintf(w, "  %-*s  %s\n", width, "help", "show help for a command, e.g. '"+c.path()+" help "+c.Sub[0].Name+"'")
	}
	// Own flags first, then the flags each ancestor contributes, then the
	// built-in ones.
	byName := map[string]*flag.Flag{}
	c.fs.VisitAll(func(f *flag.Flag) { byName[f.Name] = f })
	pick := func(names []string) []*flag.Flag {
		var out []*flag.Flag
		for _, n := range names {
			if f := byName[n]; f != nil {
				out = append(out, f)
			}
		}
		return out
	}
	var own []string
	for n := range c.own {
		own = append(own, n)
	}
	sort.Strings(own)
	if c.parent == nil {
		fmt.Fprintf(w, "\nFlags:\n")
		writeFlags(w, pick(own))
	} else {
		if len(own) > 0 {
			fmt.Fprintf(w, "\nFlags:\n")
			writeFlags(w, pick(own))
		}
		ancs := c.ancestors()
		for i := len(ancs) - 1; i >= 0; i-- {
			a := ancs[i]
			var names []string
			for n := range a.own {
				names = append(names, n)
			}
			if len(names) == 0 {
				continue
			}
			sort.Strings(names)
			if a.parent == nil {
				fmt.Fprintf(w, "\nGlobal flags:\n")
			} else {
				fmt.Fprintf(w, "\nFlags of '%s' (also accepted here):\n", a.path())
			}
			writeFlags(w, pick(names))
		}
		if c.root().own == nil || len(c.root().own) == 0 {
			fmt.Fprintf(w, "\nGlobal flags:\n")
		}
	}
	writeFlags(w, pick([]string{"json"}))
	fmt.Fprintf(w, "  %-26s %s\n", "-h, --help", "show this help")
	if ex := strings.TrimSpace(c.Example); ex != "" {
		fmt.Fprintf(w, "\nExample:\n")
		for _, l := range strings.Split(ex, "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if len(c.Sub) > 0 {
		fmt.Fprintf(w, "\nRun '%s COMMAND --help' for the flags of a command.\n", c.path())
	}
}

func writeFlags(w io.Writer, fs []*flag.Flag) {
	for _, f := range fs {
		arg, text := flag.UnquoteUsage(f)
		switch arg {
		case "string", "value":
			arg = "VALUE"
		case "int", "uint", "uint64", "int64", "float":
			arg = "N"
		case "duration":
			arg = "DURATION"
		}
		name := "--" + f.Name
		if arg != "" {
			name += " " + arg
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "0s" {
			text += " (default " + d + ")"
		}
		lines := wrap(text, 80-29)
		if len(name) > 26 {
			fmt.Fprintf(w, "  %s\n", name)
		} else {
			fmt.Fprintf(w, "  %-26s %s\n", name, lines[0])
			lines = lines[1:]
		}
		for _, l := range lines {
			fmt.Fprintf(w, "  %-26s %s\n", "", l)
		}
	}
}

// wrap breaks text into lines of at most width bytes at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) > width:
			lines = append(lines, line)
			line = word
		default:
			line += " " + word
		}
	}
	return append(lines, line)
}

// rpcPrefix matches the decoration gRPC puts on status errors, which may
// appear anywhere in a wrapped error's text.
var rpcPrefix = regexp.MustCompile(`rpc error: code = (\w+) desc = `)

// Message renders an error as one clean line: gRPC decoration replaced by a
// word a user understands, newlines folded.
func Message(err error) string {
	msg := rpcPrefix.ReplaceAllStringFunc(err.Error(), func(m string) string {
		switch rpcPrefix.FindStringSubmatch(m)[1] {
		case "Unavailable":
			return "unreachable: "
		case "DeadlineExceeded":
			return "timed out: "
		case "Unauthenticated":
			return "not authorised: "
		case "Internal":
			return "server error: "
		}
		return ""
	})
	return oneLine(msg)
}

// LockHint adds hint to an error caused by a store locked by another process.
func LockHint(err error, hint string) error {
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "resource temporarily unavailable") {
		return fmt.Errorf("%w (%s)", err, hint)
	}
	return err
}

func oneLine(s string) string {
	return escapeHidden(strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " "))
}
